"""models/lora_gguf.py: a PEFT LoRA adapter converted to a GGUF LoRA makes llama.cpp answer like
transformers + peft. A tiny random Qwen2 GGUF (weights bf16-exact) is imported as an HF folder with
models.gguf.convert_gguf, so both backends run the same weights and tokenizer; adapters are made
with peft with random non-zero B. The registry serves adopted adapters on llama.cpp and falls
back to transformers with one log line when it cannot."""
from __future__ import annotations

import json
import logging
import os

import pytest

from models.backend import GenerationSettings

pytest.importorskip("xllamacpp", reason="xllamacpp is in requirements.txt; pip install -r requirements.txt")

GREEDY = GenerationSettings(max_new_tokens=24, temperature=0.0, repetition_penalty=1.0)
TOL = 1e-4     # log-probability; measured differences are ~1e-6 with llama.cpp computing in float32
MSGS = [{"role": "user", "content": "the cat sat on the mat"}]
PROMPT = "the cat sat on the mat, in the hat"
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An imported tiny Qwen2: HF safetensors folder + the original ``model.gguf``."""
    from models.gguf import convert_gguf
    from tests.tiny_gguf import build_tiny_qwen_gguf

    root = tmp_path_factory.mktemp("lora-base")
    return convert_gguf(build_tiny_qwen_gguf(root / "src.gguf", bf16_exact=True, utf8_safe=True), root / "hf")


def make_adapter(base, out, *, seed=1, **lora):
    """Save a peft LoRA adapter on ``base`` with lora_B ~ N(0, 0.5) (non-zero: it changes the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = {"r": 4, "lora_alpha": 8, "target_modules": ALL, **lora}
    torch.manual_seed(seed)                                            # lora_A's init
    peft_model = get_peft_model(model, LoraConfig(**cfg))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    return make_adapter(base, tmp_path_factory.mktemp("lora") / "final")


@pytest.fixture
def float32(home, monkeypatch):
    """Both backends compute in float32, so they can agree to ~1e-6: transformers as on a CPU
    without bf16; llama.cpp with a float32 KV cache and no flash attention (its defaults, an f16
    KV cache and flash attention on the CPU, move log-probabilities by up to ~5e-3 here)."""
    import xllamacpp

    monkeypatch.setenv("TQTS_CPU_FLAGS", "avx2 fma")
    server = xllamacpp.Server

    def f32_server(params):
        params.cache_type_k = params.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_F32
        params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        return server(params)

    monkeypatch.setattr(xllamacpp, "Server", f32_server)


def peft_logprobs(base, adapter, ids):
    """Log-probabilities (len(ids), vocab) of transformers (+ peft) at every position of ``ids``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].log_softmax(-1)             # (T, vocab)


def llamacpp_greedy(backend, ids, n, k=5):
    """llama.cpp's greedy continuation of the token ids ``ids``: per step (chosen id, its
    log-probability, top-``k`` [(id, log-probability)]) from the completion endpoint."""
    res = backend._server.handle_completions({"prompt": list(ids), "max_tokens": n, "n_probs": k,
                                              "temperature": 0.0, "post_sampling_probs": False})
    steps = res["choices"][0]["logprobs"]["content"]
    assert len(steps) == n, "llama.cpp left tokens out (an unfinished UTF-8 character?)"
    return [(s["id"], s["logprob"], [(t["id"], t["logprob"]) for t in s["top_logprobs"]]) for s in steps]


def prompt_ids(base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)(PROMPT)["input_ids"]


def test_conversion_writes_llamacpp_lora_format(base, adapter, tmp_path):
    import gguf

    from models.lora_gguf import convert_lora

    out = convert_lora(adapter, base / "model.gguf", tmp_path / "a.gguf")
    r = gguf.GGUFReader(str(out))

    def s(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode()

    assert (s("general.type"), s("general.architecture"), s("adapter.type")) == ("adapter", "qwen2", "lora")
    assert float(r.fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    shapes = {t.name: [int(n) for n in t.shape] for t in r.tensors}
    assert len(shapes) == 2 * 7 * 2                                     # a+b, 7 modules, 2 layers
    assert shapes["blk.1.attn_k.weight.lora_a"] == [64, 4]              # ne: [in, r]
    assert shapes["blk.1.attn_k.weight.lora_b"] == [4, 32]              # ne: [r, out] (2 kv heads x 16)
    assert shapes["blk.0.ffn_down.weight.lora_a"] == [128, 4]
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in r.tensors)


def test_llamacpp_with_the_adapter_matches_transformers_and_peft(base, adapter, float32):
    from models.llamacpp_backend import LlamaCppBackend
    from models.transformers_backend import TransformersBackend

    texts = {}
    for name, ad in (("base", ""), ("lora", str(adapter))):
        hf = TransformersBackend(base, _settings(base), adapter=ad)
        assert str(hf.dtype) == "torch.float32"
        llama = LlamaCppBackend(base, context_tokens=256, threads=1, adapter=ad)
        try:
            texts[name] = (hf.complete(MSGS, gen=GREEDY), llama.complete(MSGS, gen=GREEDY))
        finally:
            llama.close()
    assert texts["lora"][0] == texts["lora"][1]                         # same greedy tokens
    assert texts["base"][0] == texts["base"][1]
    assert len(texts["lora"][1]) >= 3
    assert texts["lora"][1] != texts["base"][1]                         # the adapter changes the answer
    assert (adapter / "adapter_model.gguf").is_file()                   # converted on first load


def _settings(base):
    import settings as settings_mod

    s = settings_mod.load()
    s.set("model", str(base), persist=False)
    return s


@pytest.mark.parametrize("variant", ["plain", "rslora+patterns"])
def test_llamacpp_greedy_tokens_and_logprobs_match_peft(base, tmp_path, float32, variant):
    """24 greedy steps of llama.cpp + adapter GGUF, teacher-forced through transformers + peft:
    every chosen token is transformers' argmax with the same log-probability (within TOL), and
    the top-5 agree; without the adapter the tokens differ. rsLoRA
    (alpha/sqrt(r)) and per-module rank/alpha patterns need the scale folded into lora_b: a wrong
    scale would show here."""
    from models.llamacpp_backend import LlamaCppBackend

    extra = {} if variant == "plain" else {"use_rslora": True, "rank_pattern": {"q_proj": 2},
                                           "alpha_pattern": {"down_proj": 3}}
    ad = make_adapter(base, tmp_path / variant, seed=2, **extra)
    ids = prompt_ids(base)
    runs = {}
    for name, lora in (("base", ""), ("lora", str(ad))):
        llama = LlamaCppBackend(base / "model.gguf", context_tokens=256, threads=1, adapter=lora)
        try:
            runs[name] = llamacpp_greedy(llama, ids, 24)
        finally:
            llama.close()
    steps = runs["lora"]
    chosen = [c for c, _, _ in steps]
    assert chosen != [c for c, _, _ in runs["base"]]
    logp = peft_logprobs(base, ad, ids + chosen)[len(ids) - 1:-1]               # (24, vocab)
    for t, (c, lp, top) in enumerate(steps):
        assert logp[t, c] >= logp[t].max() - TOL, f"step {t}: llama.cpp chose {c}, not peft's argmax"
        assert abs(logp[t, c].item() - lp) < TOL
        assert max(abs(logp[t, i].item() - v) for i, v in top) < TOL
    base_logp = peft_logprobs(base, "", ids)[-1]
    assert (logp[0] - base_logp).abs().max() > 50 * TOL                      # the adapter matters


def test_unsupported_adapters_say_why(base, tmp_path):
    from models.lora_gguf import LoraConversionError, convert_lora, convertible
    from tests.tiny_gguf import build_tiny_qwen_gguf

    emb = make_adapter(base, tmp_path / "emb", target_modules=["q_proj", "embed_tokens"])
    with pytest.raises(LoraConversionError, match="embed_tokens.*transformers backend"):
        convert_lora(emb, base / "model.gguf")
    assert not (emb / "adapter_model.gguf").exists()
    saved = make_adapter(base, tmp_path / "mts", target_modules=["q_proj"], modules_to_save=["lm_head"])
    with pytest.raises(LoraConversionError, match="modules_to_save|not a lora_A"):
        convert_lora(saved, base / "model.gguf")
    other = build_tiny_qwen_gguf(tmp_path / "other.gguf", hidden=32)           # another base model
    ok = make_adapter(base, tmp_path / "ok", target_modules=["q_proj"])
    with pytest.raises(LoraConversionError, match="another base model"):
        convert_lora(ok, other)
    (tmp_path / "empty").mkdir()
    assert not convertible(tmp_path / "empty") and convertible(ok)
    (ok / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(LoraConversionError, match="could not be converted"):
        convert_lora(ok, base / "model.gguf")


def test_base_shapes_from_the_folder_config_match_the_gguf(base, tmp_path):
    """The fast path (config.json beside model.gguf) describes the same tensors as the GGUF."""
    from models.lora_gguf import LoraConversionError, _base_info, convert_lora

    (tmp_path / "model.gguf").write_bytes((base / "model.gguf").read_bytes())     # no config.json here
    arch, from_gguf = _base_info(tmp_path / "model.gguf")
    arch2, from_config = _base_info(base / "model.gguf")
    assert arch == arch2 == "qwen2" and len(from_config) == 2 * 7
    assert all(from_gguf[name] == shape for name, shape in from_config.items())
    cfg = json.loads((base / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 96}))
    (other / "model.gguf").write_bytes(b"")                        # never read: config.json answers
    ok = make_adapter(base, tmp_path / "ok", target_modules=["down_proj"])
    with pytest.raises(LoraConversionError, match="another base model"):
        convert_lora(ok, other / "model.gguf")
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(LoraConversionError, match="architecture is 'llama'"):
        convert_lora(ok, other / "model.gguf")


def test_a_retrained_or_replaced_adapter_is_converted_again(base, tmp_path):
    """The GGUF records the sha256 of the PEFT files: new weights, even with an older file time
    (a copy keeps it), mean a new conversion; unchanged ones reuse the file."""
    import shutil

    from models.lora_gguf import ensure_lora_gguf, is_current

    ad = make_adapter(base, tmp_path / "a", target_modules=["q_proj"])
    first = ensure_lora_gguf(ad, base / "model.gguf")
    stamp = first.stat().st_mtime_ns
    assert is_current(ad) and ensure_lora_gguf(ad, base / "model.gguf").stat().st_mtime_ns == stamp
    other = make_adapter(base, tmp_path / "b", seed=5, target_modules=["q_proj"])
    shutil.copy2(other / "adapter_model.safetensors", ad / "adapter_model.safetensors")
    old = first.stat().st_mtime - 100
    os.utime(ad / "adapter_model.safetensors", (old, old))                # older than the GGUF
    assert not is_current(ad)
    again = ensure_lora_gguf(ad, base / "model.gguf")
    assert again.stat().st_mtime_ns != stamp and is_current(ad)
    (ad / "adapter_model.safetensors").unlink()                         # a folder with only the GGUF
    assert is_current(ad)


def _registry(home):
    import settings as settings_mod
    from models.registry import ModelRegistry

    return ModelRegistry(settings_mod.load())


def test_adopt_converts_the_adapter_and_auto_serves_it_on_llamacpp(base, home, tmp_path):
    """The Retrain dialog's adopt: register_trained + use + convert_adapter; then backend auto
    loads llama.cpp with the adapter GGUF."""
    from models.llamacpp_backend import LlamaCppBackend
    from models.registry import pick_chat_backend

    ckpt = make_adapter(base, tmp_path / "run1" / "best", target_modules=["q_proj", "v_proj"])
    reg = _registry(home)
    reg.import_path(base, name="tiny")
    entry = reg.register_trained(ckpt, name="grpo-run1", base="tiny")
    reg.use(entry.name)
    gguf_lora = reg.convert_adapter(entry.name)
    assert gguf_lora == ckpt / "adapter_model.gguf" and gguf_lora.is_file()
    assert pick_chat_backend(reg.settings, *reg.resolve(None)) == "llamacpp"
    backend = reg.load_backend()
    try:
        assert isinstance(backend, LlamaCppBackend) and backend.lora == gguf_lora
        assert backend.name == "grpo-run1"
        assert backend.complete(MSGS, gen=GREEDY)
    finally:
        backend.close()


def test_auto_falls_back_to_transformers_with_one_log_line(base, home, tmp_path, caplog):
    from models.transformers_backend import TransformersBackend

    reg = _registry(home)
    reg.import_path(base, name="tiny")
    bad = make_adapter(base, tmp_path / "emb", target_modules=["q_proj", "embed_tokens"])
    reg.use(reg.register_trained(bad, name="emb", base="tiny").name)
    with caplog.at_level(logging.INFO, logger="models.registry"):
        backend = reg.load_backend()
    assert isinstance(backend, TransformersBackend) and backend.adapter == str(bad)
    lines = [r.getMessage() for r in caplog.records if r.name == "models.registry"]
    assert len(lines) == 1 and "embed_tokens" in lines[0] and "transformers" in lines[0]

    hf_only = tmp_path / "hf-only"                                  # an HF folder without model.gguf
    hf_only.mkdir()
    for f in base.iterdir():
        if f.name != "model.gguf":
            (hf_only / f.name).write_bytes(f.read_bytes())
    ad = make_adapter(hf_only, tmp_path / "ad", target_modules=["q_proj"])
    cfg = json.loads((ad / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(hf_only)
    reg.use(str(ad))
    caplog.clear()
    assert reg.convert_adapter() is None                            # nothing for llama.cpp to serve
    with caplog.at_level(logging.INFO, logger="models.registry"):
        backend = reg.load_backend()
    assert isinstance(backend, TransformersBackend)
    assert [r.getMessage() for r in caplog.records if "has no model.gguf" in r.getMessage()]


def test_backend_llamacpp_explicit_reports_the_conversion_error(base, home, tmp_path):
    from models.lora_gguf import LoraConversionError

    reg = _registry(home)
    reg.import_path(base, name="tiny")
    bad = make_adapter(base, tmp_path / "emb", target_modules=["q_proj", "embed_tokens"])
    reg.use(reg.register_trained(bad, name="emb", base="tiny").name)
    reg.settings.set("backend", "llamacpp", persist=False)
    with pytest.raises(LoraConversionError, match="cannot run on llama.cpp"):
        reg.load_backend()
    with pytest.raises(LoraConversionError, match="cannot run on llama.cpp"):
        reg.convert_adapter()


@pytest.mark.real
def test_real_qwen_adapter_on_llamacpp_follows_transformers_and_peft(tmp_path):
    """The real Qwen2.5 0.5B (q4_k_m GGUF for llama.cpp, its dequantized copy for transformers)
    with a seeded random LoRA on q/k/v/o (bench/lora_gguf.py): on 3 prompts llama.cpp + adapter
    GGUF picks transformers+peft's next token, its log-probabilities stay within quantization
    noise of transformers+peft's while without the adapter they are far off, and the adapter
    changes llama.cpp's answer."""
    from pathlib import Path

    from bench.lora_gguf import random_adapter, run

    ready = Path("/work/tqts-real/READY")
    folder = Path(ready.read_text(encoding="utf-8").strip()) if ready.exists() else None
    if folder is None or not (folder / "model.gguf").is_file():
        pytest.skip("the imported real Qwen folder (/work/tqts-real/READY with model.gguf) is not here")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    res = run(folder, random_adapter(folder, tmp_path / "lora", b_std=0.05), max_new_tokens=16)
    for row in res["rows"]:
        assert row["top1_same"], row
        assert row["logprob_diff_lora"] < 0.5 and row["logprob_diff_base"] > 4 * row["logprob_diff_lora"], row
    assert any(r["adapter_changed_llama"] for r in res["rows"])
    assert sum(r["shared_prefix_tokens"] for r in res["rows"]) >= len(res["rows"]) * 2
