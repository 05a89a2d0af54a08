"""A PEFT LoRA adapter as a GGUF LoRA adapter, so llama.cpp (the fast CPU path) serves trained models.

``adapter_model.safetensors`` + ``adapter_config.json`` (what the trainer saves) become
``adapter_model.gguf`` in the same folder; llama.cpp loads it next to the base ``model.gguf``
(:func:`models.llamacpp_backend.load_server`, xllamacpp ``CommonParams.lora_adapters``).

Why an adapter GGUF and not a merged GGUF: the base stays the quantized file the user imported
(q4_k_m, ~400 MB for 0.5B) and is shared by every trained model; the adapter file is a few MB
written in about a second. A merged GGUF would need the base dequantized, the update added and
the result requantized — the ``gguf`` package cannot quantize to Q4_K, so it would be an f16
file of ~1 GB per trained model, slower to decode on the CPU.

Format (llama.cpp's ``convert_lora_to_gguf.py``, read by ``llama_adapter_lora_init``):
``general.type = adapter``, ``general.architecture`` = the base's, ``adapter.type = lora``,
``adapter.lora.alpha`` (float32); for each adapted weight ``W`` (GGUF name, e.g.
``blk.3.attn_q.weight``) two float32 tensors ``W.lora_a`` = PEFT ``lora_A`` of shape (r, in) and
``W.lora_b`` = PEFT ``lora_B`` of shape (out, r) — numpy row-major, so GGUF ``ne`` is [in, r] and
[r, out]. llama.cpp adds ``s * B (A x)`` with ``s = alpha / r`` (r = ``lora_b.ne[0]``, adapter
scale 1); PEFT's ``s`` is ``alpha / r`` too, or ``alpha / sqrt(r)`` (``use_rslora``), with
per-module ``alpha_pattern`` / ``rank_pattern``; where the two differ the ratio is folded into
``lora_b``, so the product is the same.

Architectures: ``qwen2`` only. Its HF names map 1:1 to GGUF names through the ``gguf`` package's
``TensorNameMap`` and llama.cpp's converter stores Q/K rows unpermuted for it (it permutes them
for ``llama``-family models, which would need the same permutation of ``lora_b`` here).
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path

from models.backend import BackendError

ADAPTER_GGUF = "adapter_model.gguf"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SUPPORTED_ARCHS = ("qwen2",)
FINGERPRINT_KEY = "tqts.adapter.sha256"

_FALLBACK = "answers use the transformers backend (slower) instead"


class LoraConversionError(BackendError):
    """The LoRA adapter cannot be served by llama.cpp (the message says why; transformers can)."""


def gguf_adapter_path(adapter_dir: str | Path) -> Path:
    """Where the GGUF form of the PEFT adapter in ``adapter_dir`` lives (``adapter_model.gguf``)."""
    return Path(adapter_dir) / ADAPTER_GGUF


def fingerprint(adapter_dir: str | Path) -> str:
    """sha256 of ``adapter_config.json`` + ``adapter_model.safetensors`` (stored in the GGUF as
    ``tqts.adapter.sha256``; file times are no proof: copies keep them)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("adapter_config.json", ADAPTER_WEIGHTS):
        with open(Path(adapter_dir) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def is_current(adapter_dir: str | Path) -> bool:
    """True when ``adapter_model.gguf`` exists and was made from the PEFT files now in the folder
    (or the folder holds only the GGUF). Hashes the adapter: ~0.1 s for a 0.5B model's."""
    d = Path(adapter_dir)
    out = gguf_adapter_path(d)
    if not out.is_file():
        return False
    if not (d / ADAPTER_WEIGHTS).is_file():
        return True
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(out)).fields.get(FINGERPRINT_KEY)
        return field is not None and bytes(field.parts[field.data[0]]).decode() == fingerprint(d)
    except (OSError, ValueError, KeyError, IndexError):
        return False


def convertible(adapter: str | Path) -> bool:
    """Can llama.cpp get this adapter: a ``.gguf`` file, a GGUF in the folder, or the PEFT files
    to make one? (Files only; the conversion may still refuse, see :func:`convert_lora`.)"""
    p = Path(adapter)
    if p.is_file():
        return p.suffix.lower() == ".gguf"
    return gguf_adapter_path(p).is_file() or ((p / "adapter_config.json").is_file() and (p / ADAPTER_WEIGHTS).is_file())


def ensure_lora_gguf(adapter: str | Path, base_gguf: str | Path) -> Path:
    """The GGUF LoRA file for ``adapter``: the file itself when it is a ``.gguf``, the folder's
    current ``adapter_model.gguf``, else one converted now (:func:`convert_lora`).

    Raises:
        LoraConversionError: as :func:`convert_lora`.
    """
    p = Path(adapter)
    if p.is_file() and p.suffix.lower() == ".gguf":
        return p
    if is_current(p):
        return gguf_adapter_path(p)
    return convert_lora(p, base_gguf)


def convert_lora(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path | None = None) -> Path:
    """Write the PEFT LoRA adapter in ``adapter_dir`` as a GGUF LoRA adapter for ``base_gguf``.

    Args:
        adapter_dir: a PEFT folder (``adapter_config.json``, ``adapter_model.safetensors``).
        base_gguf: the base model's GGUF; its architecture and tensor shapes are checked.
        out: the file to write (default ``adapter_dir/adapter_model.gguf``); written to a
            temporary name first and renamed, so readers never see half a file.

    Returns:
        the path written.

    Raises:
        LoraConversionError: missing/unreadable files, an architecture other than qwen2, or an
            adapter llama.cpp cannot apply (DoRA, LoRA biases, embeddings / lm_head, modules_to_save,
            shapes that do not match the base).
    """
    from safetensors import SafetensorError

    d = Path(adapter_dir)
    out = Path(out) if out else gguf_adapter_path(d)
    try:
        cfg = json.loads((d / "adapter_config.json").read_text(encoding="utf-8"))
        arch, base_shapes = _base_info(base_gguf)
        tensors = _gguf_tensors(cfg, _load_pairs(d), arch, base_shapes)
        _write(out, arch, float(cfg.get("lora_alpha") or 0), tensors, fingerprint(d))
    except LoraConversionError as e:
        raise LoraConversionError(f"LoRA adapter {d} cannot run on llama.cpp: {e}; {_FALLBACK}") from None
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:   # files, json, gguf
        raise LoraConversionError(f"LoRA adapter {d} could not be converted to GGUF "
                                  f"({type(e).__name__}: {e}); {_FALLBACK}") from None
    return out


def _base_info(base_gguf: str | Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(architecture, {GGUF weight name: ne shape}) of the base model: from the ``config.json``
    beside the GGUF (every imported model folder has one, converted from that GGUF), else from
    the GGUF itself (``GGUFReader`` parses every metadata field: ~10 s for Qwen's 151k-token
    vocabulary on a busy 2-core machine). llama.cpp checks the shapes again when it loads."""
    cfg_file = Path(base_gguf).parent / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        arch = _check_arch(str(cfg.get("model_type") or ""))
        return arch, _config_shapes(cfg)
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))
    field = reader.fields.get("general.architecture")
    arch = _check_arch(bytes(field.parts[field.data[0]]).decode("utf-8") if field else "")
    return arch, {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}


def _check_arch(arch: str) -> str:
    if arch not in SUPPORTED_ARCHS:
        raise LoraConversionError(f"the base model's architecture is {arch or 'unknown'!r}; "
                                  f"GGUF LoRA conversion supports {', '.join(SUPPORTED_ARCHS)}")
    return arch


def _config_shapes(cfg: dict) -> dict[str, tuple[int, int]]:
    """GGUF ne shapes ([in, out]) of a Qwen2 model's projection weights, from its HF config."""
    hidden, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    heads, kv = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    per_block = {"attn_q": (hidden, heads * head_dim), "attn_k": (hidden, kv * head_dim),
                 "attn_v": (hidden, kv * head_dim), "attn_output": (heads * head_dim, hidden),
                 "ffn_gate": (hidden, inter), "ffn_up": (hidden, inter), "ffn_down": (inter, hidden)}
    return {f"blk.{i}.{name}.weight": shape for i in range(int(cfg["num_hidden_layers"]))
            for name, shape in per_block.items()}


def _load_pairs(d: Path) -> dict[str, dict[str, object]]:
    """{HF module name: {"A": tensor (r, in), "B": tensor (out, r)}} from adapter_model.safetensors."""
    from safetensors.torch import load_file

    pairs: dict[str, dict[str, object]] = {}
    for key, t in load_file(str(d / ADAPTER_WEIGHTS), device="cpu").items():
        m = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[\w-]+)?\.weight", key)
        if m is None:
            raise LoraConversionError(f"it holds {key!r}, which is not a lora_A/lora_B weight "
                                      "(modules_to_save, embeddings or biases are not supported)")
        pairs.setdefault(m.group(1), {})[m.group(2)] = t
    if not pairs:
        raise LoraConversionError(f"{ADAPTER_WEIGHTS} holds no LoRA weights")
    return pairs


def _gguf_tensors(cfg: dict, pairs: dict, arch: str, base_shapes: dict) -> dict:
    """{GGUF tensor name: float32 numpy array} (``.lora_a`` / ``.lora_b``), checked against the base."""
    import gguf

    for flag in ("use_dora", "lora_bias", "fan_in_fan_out"):
        if cfg.get(flag):
            raise LoraConversionError(f"adapter_config.json sets {flag}, which llama.cpp cannot apply")
    if cfg.get("modules_to_save") or cfg.get("trainable_token_indices"):
        raise LoraConversionError("the adapter trains whole modules or token embeddings (modules_to_save / "
                                  "trainable_token_indices), which a GGUF LoRA cannot hold")
    alpha = float(cfg.get("lora_alpha") or 0)
    n_blocks = 1 + max((int(b) for b in re.findall(r"\.layers\.(\d+)\.", " ".join(pairs))), default=0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, max(n_blocks, 1))
    out = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise LoraConversionError(f"{module} has lora_{''.join(ab)} but not both lora_A and lora_B")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or target.startswith(("token_embd", "output.")):
            raise LoraConversionError(f"it adapts {module}, which has no GGUF LoRA counterpart for {arch} "
                                      "(attention and MLP projections only)")
        a, b = ab["A"].float().numpy(), ab["B"].float().numpy()         # (r, in), (out, r)
        r = a.shape[0]
        want = base_shapes.get(target)
        if want is None or len(want) != 2 or (want[0], want[1]) != (a.shape[1], b.shape[0]) or b.shape[1] != r:
            raise LoraConversionError(f"{module} is {b.shape[0]}x{a.shape[1]} (rank {r}) but the base GGUF's "
                                      f"{target} is {want}: is this adapter for another base model?")
        b = b * (_peft_scale(cfg, module, r) / (alpha / r if alpha else 1.0))
        out[target + ".lora_a"] = a
        out[target + ".lora_b"] = b.astype("float32")
    return out


def _peft_scale(cfg: dict, module: str, r_module: int) -> float:
    """PEFT's LoRA scaling for ``module``: alpha / r, or alpha / sqrt(r) with ``use_rslora``;
    ``alpha_pattern`` keys are regexes / suffixes of the module name (peft ``LoraModel``)."""
    alpha = float(cfg.get("lora_alpha") or 0)
    for key, val in (cfg.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            alpha = float(val)
            break
    return alpha / (math.sqrt(r_module) if cfg.get("use_rslora") else r_module)


def _write(out: Path, arch: str, alpha: float, tensors: dict, source: str) -> None:
    """Write the adapter GGUF to a temporary file beside ``out``, then rename it into place."""
    import gguf

    tmp = out.with_name(f".{out.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        w = gguf.GGUFWriter(str(tmp), arch)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        w.add_string(FINGERPRINT_KEY, source)
        for name, t in tensors.items():
            w.add_tensor(name, t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
