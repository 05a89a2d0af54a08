"""The int8 ONNX embedder: backend choice from CPU flags, the cached export, agreement with torch
float32 (tiny model here; the real multilingual-e5-small on real PDF text in the real tier)."""
from __future__ import annotations

import numpy as np
import pytest

from kb.embeddings import Embedder, EmbedderError
from kb.onnx_embedder import ONNX_FILE, cpu_flags, pick_backend
from tests.conftest import DATA, OFFLINE, need

TEXTS = ["中华人民共和国的根本制度是社会主义制度。", "Retrieval augmented generation cites pages.",
         "小明有 3 个苹果，又买了 5 个。", "short"]

LAPTOP = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"}          # e.g. Core i5-8250U, Ryzen 5 3500U
XEON_SPR = LAPTOP | {"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
ZEN4 = LAPTOP | {"avx512f", "avx512_vnni", "avx512_bf16"}


@pytest.mark.parametrize("flags, device, want", [
    (LAPTOP, "cpu", "onnx-fp32"), (LAPTOP | {"avx512f", "avx512_vnni"}, "cpu", "onnx-fp32"),
    (XEON_SPR, "cpu", "torch"), (ZEN4, "cpu", "torch"), (LAPTOP, "cuda", "torch"), (LAPTOP, "mps", "torch")])
def test_auto_picks_float32_onnx_only_on_cpus_without_native_bf16(flags, device, want):
    assert pick_backend("auto", device, flags, onnx_available=True) == want


def test_explicit_backends_are_kept_and_missing_onnx_falls_back_to_torch():
    assert pick_backend("auto", "cpu", LAPTOP, onnx_available=False) == "torch"
    for b in ("torch", "onnx", "onnx-fp32", "openvino"):
        assert pick_backend(b, "cpu", XEON_SPR, onnx_available=True) == b
    with pytest.raises(ValueError, match="use auto, torch, onnx, onnx-fp32, openvino"):
        pick_backend("tensorrt", "cpu", LAPTOP)


def test_cpu_flags_env_override_drives_the_choice(monkeypatch):
    monkeypatch.setenv("TQTS_CPU_FLAGS", "avx2 fma")
    assert cpu_flags() == {"avx2", "fma"}
    assert pick_backend("auto", "cpu", onnx_available=True) == "onnx-fp32"
    monkeypatch.setenv("TQTS_CPU_FLAGS", "avx2 avx512_bf16")
    assert pick_backend("auto", "cpu", onnx_available=True) == "torch"


def test_settings_default_on_a_laptop_exports_float32_once_into_the_data_dir(settings, monkeypatch):
    import settings as settings_mod
    from kb.onnx_export import FP32_FILE

    monkeypatch.delenv("TQTS_EMBEDDING_BACKEND")                   # conftest's `home` pins torch
    settings = settings_mod.load()
    monkeypatch.setenv("TQTS_CPU_FLAGS", " ".join(XEON_SPR))
    on_bf16 = Embedder.from_settings(settings)
    on_bf16.encode_query("苹果")
    assert settings.embedding_backend == "auto" and on_bf16.backend == "torch"   # bf16 kernels: torch
    assert not (settings.home / "embeddings").exists()
    monkeypatch.setenv("TQTS_CPU_FLAGS", " ".join(LAPTOP))
    emb = Embedder.from_settings(settings)                         # the default on a laptop: float32 ONNX
    vecs = emb.encode_documents(TEXTS)
    assert emb.backend == "onnx-fp32"
    exports = list((settings.home / "embeddings").glob(f"*/{FP32_FILE}"))
    assert len(exports) == 1
    mtime = exports[0].stat().st_mtime_ns
    again = Embedder.from_settings(settings)
    np.testing.assert_allclose(again.encode_documents(TEXTS), vecs, atol=1e-6)
    assert exports[0].stat().st_mtime_ns == mtime                 # loaded from the cache, not re-exported
    assert vecs.dtype == np.float32 and vecs.shape == (4, 32) and emb.dimension == 32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert emb.encode_query("苹果").shape == (32,)


def test_int8_onnx_agrees_with_torch_float32_on_the_tiny_model(tiny_embedder_dir, tmp_path):
    full = Embedder(str(tiny_embedder_dir), dtype="float32", backend="torch").encode_documents(TEXTS)
    q = Embedder(str(tiny_embedder_dir), backend="onnx", cache_dir=tmp_path).encode_documents(TEXTS)
    cos = (full * q).sum(axis=1)
    assert cos.min() > 0.98, cos


def test_float32_onnx_has_no_int8_weights_and_matches_torch_float32(tiny_embedder_dir, tmp_path):
    import onnx

    from kb.onnx_export import FP32_FILE

    full = Embedder(str(tiny_embedder_dir), dtype="float32", backend="torch").encode_documents(TEXTS)
    emb = Embedder(str(tiny_embedder_dir), backend="onnx-fp32", cache_dir=tmp_path)
    vecs = emb.encode_documents(TEXTS)
    assert emb.backend == "onnx-fp32"
    (path,) = tmp_path.glob(f"*/{FP32_FILE}")
    assert not list(tmp_path.glob(f"*/{ONNX_FILE}"))                # the int8 file is not made
    types = {i.data_type for i in onnx.load(str(path)).graph.initializer}
    assert onnx.TensorProto.INT8 not in types and onnx.TensorProto.UINT8 not in types
    assert onnx.TensorProto.FLOAT in types
    assert not any(n.op_type.startswith(("DynamicQuantize", "MatMulInteger")) for n in onnx.load(str(path)).graph.node)
    np.testing.assert_allclose(vecs, full, atol=1e-4)               # the same vectors, not just close in cosine
    q = emb.encode_query("苹果")
    np.testing.assert_allclose(q, Embedder(str(tiny_embedder_dir), dtype="float32", backend="torch")
                               .encode_query("苹果"), atol=1e-4)


def test_float32_and_int8_exports_have_their_own_cache_folders(tiny_embedder_dir, tmp_path):
    import kb.onnx_embedder as oe

    int8 = oe.cache_dir_for("m", tiny_embedder_dir, tmp_path)
    assert oe.cache_dir_for("m", tiny_embedder_dir, tmp_path, "int8") == int8
    assert oe.cache_dir_for("m", tiny_embedder_dir, tmp_path, "float32") != int8
    with pytest.raises(ValueError, match="use int8, float32"):
        oe.OnnxEncoder(str(tiny_embedder_dir), tmp_path, precision="float16")


def test_an_unsupported_model_says_what_to_set(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    with pytest.raises(EmbedderError, match="set embedding_backend: torch"):
        Embedder(str(folder), backend="onnx", cache_dir=tmp_path / "cache").encode_documents(["x"])


def _pdf_chunks(n: int) -> list[str]:
    import pymupdf

    out = []
    for name in ("zh_prc_constitution_2018.pdf", "en_bge_m3_paper.pdf"):
        with pymupdf.open(need(DATA / "documents" / name, name)) as doc:
            text = "".join(page.get_text() for page in doc)
        out += [text[i:i + 500] for i in range(0, len(text), 420)][:n]
    return out


@pytest.mark.real
def test_int8_e5_small_keeps_cosine_to_float32_on_real_pdf_text(tmp_path):
    model = str(need(OFFLINE / "multilingual-e5-small", "multilingual-e5-small"))
    chunks = _pdf_chunks(40)
    full = Embedder(model, dtype="float32", backend="torch").encode_documents(chunks)
    q = Embedder(model, backend="onnx", cache_dir=tmp_path).encode_documents(chunks)
    cos = (full * q).sum(axis=1)
    # recipe int8-v2 measured median 0.9991, min 0.9982 on the 443 cross-lingual chunks (v1: 0.9963, 0.9911)
    assert np.median(cos) >= 0.998 and cos.min() >= 0.99, (np.median(cos), cos.min())
    f32 = Embedder(model, backend="onnx-fp32", cache_dir=tmp_path).encode_documents(chunks)
    cos32 = (full * f32).sum(axis=1)
    assert cos32.min() >= 0.99999, cos32.min()                      # float32 ONNX: torch's vectors


def test_export_saves_the_float32_models_tokenizer_and_int8_rows(tiny_embedder_dir, tmp_path):
    import onnx
    from transformers import AutoTokenizer

    from kb.onnx_embedder import load_tokenizer
    from kb.onnx_export import TOKENIZER_FILE, export_int8

    out = export_int8(tiny_embedder_dir, tmp_path / "x")
    assert (tmp_path / "x" / TOKENIZER_FILE).exists()
    inits = {i.name: i for i in onnx.load(str(out)).graph.initializer}
    assert inits["word_embeddings_int8"].data_type == onnx.TensorProto.INT8  # one scale per row
    assert list(inits["word_embeddings_scale"].dims)[1] == 1
    assert not any(n.endswith("word_embeddings.weight") for n in inits)
    fast = load_tokenizer(tmp_path / "x", tiny_embedder_dir, 32)(TEXTS)
    hf = AutoTokenizer.from_pretrained(str(tiny_embedder_dir))(TEXTS, padding=True, truncation=True,
                                                              max_length=32, return_tensors="np")
    for k in hf:
        np.testing.assert_array_equal(fast[k], hf[k])


def test_a_new_recipe_is_exported_again_not_read_from_an_old_cache(tiny_embedder_dir, tmp_path, monkeypatch):
    import kb.onnx_embedder as oe

    before = oe.cache_dir_for("m", tiny_embedder_dir, tmp_path)
    assert oe.cache_dir_for("m", tiny_embedder_dir, tmp_path) == before
    monkeypatch.setattr(oe, "RECIPE", "int8-v1: all ops, per-tensor word embeddings")
    assert oe.cache_dir_for("m", tiny_embedder_dir, tmp_path) != before


GUARD = """
import json, sys
import settings as settings_mod
from app.services import build_services
from models.backend import GenerationSettings
svc = build_services(settings_mod.load())
vec = svc.kb.embedder.encode_query("苹果")
backend = svc.answers.backend()
text = backend.complete([{"role": "user", "content": "hi"}], gen=GenerationSettings(max_new_tokens=2, temperature=0.0))
print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "embedder": svc.kb.embedder.backend, "chat": type(backend).__name__, "dim": len(vec)}))
sys.stdout.flush()
backend.close()
# llama.cpp's server threads once aborted the interpreter's teardown here ("FATAL: exception not
# rethrown", rc -6); teardown is not what this test checks, so leave without it
import os; os._exit(0)
"""


def test_the_app_with_onnx_embedder_and_llamacpp_never_imports_torch(home, tiny_embedder_dir, tmp_path):
    """~200 MiB of RSS (issue 14, item 4): neither model needs torch, so the app process must not
    import it — not for the device choice, the tokenizer, nor the one-time export (a child process)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.tiny_gguf import build_tiny_qwen_gguf

    folder = home / "models" / "tiny"
    build_tiny_qwen_gguf(folder / "model.gguf")
    (folder / "config.json").write_text("{}")
    env = dict(os.environ, TQTS_EMBEDDING_MODEL=str(tiny_embedder_dir), TQTS_EMBEDDING_BACKEND="onnx",
               TQTS_MODEL=str(folder), TQTS_CPU_ONLY="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for first_run in (True, False):                                  # exports, then reads the cache
        r = subprocess.run([sys.executable, "-c", GUARD], capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        got = json.loads(r.stdout.strip().splitlines()[-1])
        assert got == {"torch": False, "transformers": False, "embedder": "onnx", "chat": "LlamaCppBackend",
                       "dim": 32}, (first_run, got)
    assert len(list((home / "embeddings").glob(f"*/{ONNX_FILE}"))) == 1
