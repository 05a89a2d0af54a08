"""The embedder on ONNX Runtime (float32 or int8 weights): fast sentence embeddings on CPUs without bf16.

Which backend runs the embedder (settings ``embedding_backend``):

* ``torch``: sentence-transformers on torch (bfloat16 where the CPU computes it natively).
* ``onnx``: the model exported once to ONNX and quantized to int8 (:mod:`kb.onnx_export`, in a
  child process: ONNX Runtime's dynamic quantization of the MatMul weights per output channel,
  activations quantized per batch at run time, no calibration data; the word-embedding table
  int8 per row), run by ONNX Runtime; texts tokenized by the ``tokenizers`` library with the
  pipeline the float32 model uses (saved at export). No torch or transformers in the process.
* ``onnx-fp32``: the same export without quantization (float32 weights, ~4× the int8 file),
  run by ONNX Runtime one text per call: the vectors of torch float32, without torch in the process.
* ``openvino``: the same int8 ONNX file run by OpenVINO's runtime (optional ``openvino`` package).
* ``auto`` (the default): :func:`pick_backend` — torch on GPUs and on CPUs with native bf16
  (AVX512-BF16/AMX, where torch's bf16 kernels are fast), onnx-fp32 on the other CPUs (most
  laptops). Measured there (README, issue 14 "float32 ONNX"): float32 ONNX keeps torch float32's
  retrieval exactly (cross-lingual hit@5 0.486/0.457 both), ingests 2.5× the LangChain-style
  baseline and keeps the app at 1,486 MiB RSS; int8 (``onnx``) is faster still but one
  cross-lingual question short.

Why not sentence-transformers' own ``backend="onnx"`` / ``export_dynamic_quantized_onnx_model``:
they need ``optimum-onnx`` (0.1.0 pins transformers < 4.58) or ``optimum-intel`` (2.2.0 pins
transformers < 5.6), which cannot be installed next to transformers 5.23. We keep their recipe
(dynamic int8, per-channel weights) with the two libraries underneath it.

The export is cached per model under ``<data dir>/embeddings/<name>-<hash>/model_int8.onnx``
(the hash covers :data:`kb.onnx_export.RECIPE` and the model's config and weight files' sizes and
times, so a changed model or recipe is exported again); a file lock keeps two processes from
exporting at once. Supported models: the sentence-transformers stack ``Transformer -> Pooling
(mean or cls) [-> Normalize]``; others raise :class:`UnsupportedModel` (``auto`` then falls back
to torch).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from kb.onnx_export import (  # noqa: F401
    ONNX_FILE,
    PRECISIONS,
    RECIPE,
    TOKENIZER_FILE,
    TOKENIZER_META,
    ExportError,
    export_in_child,
)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "onnx-fp32", "openvino")
#: The backends that run an ONNX export (no torch in the process) and the precision of their export.
ONNX_BACKENDS = {"onnx": "int8", "onnx-fp32": "float32", "openvino": "int8"}
#: /proc/cpuinfo flags meaning native bf16 matmuls (oneDNN uses them through torch).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class UnsupportedModel(ValueError):
    """The model is not a ``Transformer -> Pooling [-> Normalize]`` stack this module can run."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; elsewhere derived from torch's CPU
    capability). ``TQTS_CPU_FLAGS`` (space-separated) replaces them, to reproduce another CPU's
    choices (e.g. ``TQTS_CPU_FLAGS="avx2 fma"`` for a laptop without bf16)."""
    env = os.environ.get("TQTS_CPU_FLAGS")
    if env is not None:
        return set(env.split())
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
        if m:
            return set(m.group(1).split())
    except OSError:
        pass
    from models.device import cpu_has_native_bf16

    return {"avx512_bf16"} if cpu_has_native_bf16() else set()


def pick_backend(setting: str, device: str = "cpu", flags: set[str] | None = None,
                 onnx_available: bool | None = None) -> str:
    """Resolve settings ``embedding_backend`` to "torch", "onnx", "onnx-fp32" or "openvino".

    Args:
        setting: auto | torch | onnx | onnx-fp32 | openvino.
        device: where torch would run ("cpu", "cuda", "mps"): auto keeps torch off the CPU.
        flags: CPU feature flags (default :func:`cpu_flags`).
        onnx_available: whether onnxruntime + onnx import (default: checked).

    Raises:
        ValueError: an unknown setting.

    >>> pick_backend("auto", "cpu", {"avx2", "fma"}, onnx_available=True)
    'onnx-fp32'
    >>> pick_backend("auto", "cpu", {"avx2", "avx512_bf16"}, onnx_available=True)
    'torch'
    """
    if setting not in BACKENDS:
        raise ValueError(f"embedding_backend={setting!r}: use {', '.join(BACKENDS)}")
    if setting != "auto":
        return setting
    if device != "cpu":
        return "torch"
    flags = cpu_flags() if flags is None else flags
    if any(f in flags for f in BF16_FLAGS):
        return "torch"
    if onnx_available is None:
        onnx_available = _importable("onnxruntime") and _importable("onnx")
    return "onnx-fp32" if onnx_available else "torch"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def model_folder(model: str) -> Path:
    """The local folder of a sentence-transformers model (a path, or a hub id already in the
    Hugging Face cache; downloaded when missing and the hub is reachable)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model))


def read_stack(folder: Path) -> dict:
    """The pieces of a sentence-transformers folder the ONNX path needs.

    Returns:
        {"transformer": Path, "pooling": "mean"|"cls", "normalize": bool, "max_seq_length": int}.

    Raises:
        UnsupportedModel: other modules or pooling modes.
    """
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8")) \
        if (folder / "modules.json").exists() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModel(f"{folder}: modules {kinds or 'unknown'}; the onnx backend runs "
                               "Transformer -> Pooling [-> Normalize] models only")
    transformer = folder / modules[0]["path"]
    pool_cfg = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    if isinstance(pool_cfg.get("pooling_mode"), str):     # sentence-transformers >= 6 writes one string
        modes = [pool_cfg["pooling_mode"]]
    else:                                                  # older folders: one boolean per mode
        modes = [k for k, v in pool_cfg.items() if k.startswith("pooling_mode_") and v is True]
    mode = {"pooling_mode_mean_tokens": "mean", "mean": "mean", "pooling_mode_cls_token": "cls",
            "cls": "cls"}.get(modes[0] if len(modes) == 1 else "")
    if mode is None:
        raise UnsupportedModel(f"{folder}: pooling {modes}; the onnx backend supports mean or cls pooling")
    st_cfg = transformer / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length") if st_cfg.exists() else None
    return {"transformer": transformer, "pooling": mode, "normalize": len(kinds) == 3,
            "max_seq_length": int(max_len or 512)}


def cache_dir_for(model: str, folder: Path, cache_root: Path, precision: str = "int8") -> Path:
    """``cache_root/<name>-<12 hex>``: the hash covers the export recipe of ``precision``
    (:data:`kb.onnx_export.RECIPE` for "int8", :data:`kb.onnx_export.RECIPE_FP32` for "float32"),
    the model id and its config/weight files' names, sizes and modification times."""
    recipe = RECIPE if precision == "int8" else PRECISIONS[precision][0]
    h = hashlib.sha256(f"{recipe}\n{model}".encode())
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
            st = f.stat()
            h.update(f"{f.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}".encode())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[:60]
    return cache_root / f"{name}-{h.hexdigest()[:12]}"


def load_tokenizer(cache: Path, transformer: Path, max_length: int):
    """A function ``texts -> {input name: int64 array (B, T)}`` (padded on the right to the
    longest text, truncated to ``max_length`` tokens) that tokenizes as the float32 model does.
    Uses the ``tokenizers`` pipeline the export saved in ``cache`` (no transformers/torch
    import: ~230 MiB less RSS in the app); without one, ``transformers.AutoTokenizer``."""
    file, meta_file = cache / TOKENIZER_FILE, cache / TOKENIZER_META
    if not (file.exists() and meta_file.exists()):
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(transformer))

        def slow(texts: list[str]) -> dict[str, np.ndarray]:
            enc = hf(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            return {k: v.astype(np.int64) for k, v in enc.items()}
        return slow
    from tokenizers import Tokenizer

    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    tok = Tokenizer.from_file(str(file))
    tok.enable_truncation(max_length=min(max_length, int(meta["max_length"])))
    tok.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"])

    def fast(texts: list[str]) -> dict[str, np.ndarray]:
        encs = tok.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
    return fast


class OnnxEncoder:
    """A sentence-transformers model on ONNX Runtime (or OpenVINO) with int8 or float32 weights.

    Args:
        model: hub id or local sentence-transformers folder.
        cache_root: where exports are cached (``<data dir>/embeddings``).
        runtime: "onnx" or "openvino".
        precision: "int8" (:data:`kb.onnx_export.RECIPE`) or "float32" (no quantization).
        threads: intra-op threads (default ``$OMP_NUM_THREADS``, else all cores).
        on_progress: called with one message before a (slow, one-time) export.

    Raises:
        UnsupportedModel: not a Transformer -> Pooling [-> Normalize] stack, or export failed.
        ImportError: onnxruntime / onnx (or openvino) not installed.
    """

    def __init__(self, model: str, cache_root: Path, runtime: str = "onnx", threads: int | None = None,
                 on_progress=None, precision: str = "int8"):
        from filelock import FileLock

        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: use {', '.join(PRECISIONS)}")
        folder = model_folder(model)
        self.stack = read_stack(folder)
        self.precision = precision
        cache = cache_dir_for(model, folder, Path(cache_root), precision)
        path = cache / PRECISIONS[precision][1]
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with FileLock(str(cache / ".export.lock")):
                if not path.exists():
                    (on_progress or log.info)(f"exporting {model} to {precision} ONNX once (about a minute), "
                                              f"cached in {cache}")
                    try:
                        export_in_child(self.stack["transformer"], cache, precision=precision)
                    except ExportError as e:
                        raise UnsupportedModel(str(e)) from None
        self.path = path
        self.tokenize = load_tokenizer(cache, self.stack["transformer"], self.stack["max_seq_length"])
        self.threads = int(threads or os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        self.runtime = runtime
        self._run = self._open_openvino(path) if runtime == "openvino" else self._open_onnx(path)

    def _open_onnx(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        # Do not spin idle threads: the machine is shared with parsing, OCR and the chat model.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in sess.get_inputs()]
        return lambda feed: sess.run(None, feed)[0]

    def _open_openvino(self, path: Path):
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("embedding_backend: openvino needs the openvino package "
                              "(python -m pip install openvino); or set embedding_backend: onnx") from None
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": self.threads})
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        return lambda feed: compiled(feed)[0]

    @property
    def dimension(self) -> int:
        """Length of one embedding vector (the transformer's hidden size)."""
        return int(self.encode(["x"], 1).shape[1])

    def encode(self, texts: list[str], batch_size: int = 1) -> np.ndarray:
        """Embed ``texts`` (prefixes already applied). Returns float32 (len(texts), hidden),
        rows L2-normalised when the model ends with Normalize; rows in the input order.

        One text per run by default: measured on 443 chunks of multilingual-e5-small, 1 thread,
        batches of 32 (sorted by length) took 74 CPU s against 30 one at a time (the exported
        attention builds (batch, heads, seq, seq) masks over the padding), and the int8 model's
        per-batch activation scales then depend on a text's neighbours (median cosine to float32
        0.9991 batched, 0.9992 alone; the float32 export gives the same vectors either way)."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenize([texts[i] for i in idx])
            hidden = self._run({n: enc[n] for n in self.input_names})                  # (B, T, H)
            vecs = _pool(hidden, enc["attention_mask"], self.stack["pooling"])      # (B, H)
            if out is None:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        if out is not None and self.stack["normalize"]:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Mean over unmasked tokens, or the first token (sentence-transformers' Pooling).
    hidden (B, T, H), mask (B, T) -> (B, H) float32."""
    if mode == "cls":
        return hidden[:, 0].astype(np.float32)
    m = mask[..., None].astype(np.float32)                                           # (B, T, 1)
    return ((hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)).astype(np.float32)
