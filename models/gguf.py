"""Convert a ``.gguf`` file once into a safetensors Hugging Face folder.

transformers reads GGUF natively (``from_pretrained(dir, gguf_file=...)``); we ask it to
dequantize every weight (``GgufConfig(dequantize=True)``) so the result is a plain model that
``save_pretrained`` writes as safetensors, loadable and trainable like any HF folder. The
tokenizer is rebuilt from the GGUF metadata; when transformers leaves out the chat template,
it is read from the ``tokenizer.chat_template`` metadata key with the ``gguf`` package.
The original file is kept next to it as ``model.gguf`` (hard link when possible) for the
llama.cpp backend.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from models.model_files import ModelFileError

GGUF_NAME = "model.gguf"


def gguf_chat_template(path: str | Path) -> str:
    """The ``tokenizer.chat_template`` string stored in a GGUF file ("" when absent)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.chat_template")
    if field is None:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def convert_gguf(path: str | Path, out: str | Path,
                 on_progress: Callable[[float, float, str], None] | None = None) -> Path:
    """Write a safetensors HF folder for the GGUF at ``path`` into ``out``; return ``out``.

    Args:
        path: a ``.gguf`` file of an architecture transformers supports (Qwen2, Llama, ...).
        out: destination folder (created; must not hold a model already).
        on_progress: ``(done, total, message)`` after each of the 4 steps.

    Raises:
        ModelFileError (a BackendError): the file cannot be read or its architecture is not supported.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    path, out = Path(path).resolve(), Path(out)
    step = on_progress or (lambda *_: None)
    try:
        step(0, 4, f"reading tokenizer from {path.name}")
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        step(1, 4, "dequantizing weights (a minute or two for 0.5B)")
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True))
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise ModelFileError(f"cannot convert {path}: {e}. Use a GGUF of a transformers-supported "
                             "architecture (e.g. Qwen2.5), or import an HF folder instead",
                             "gguf_unsupported", path) from None
    if not tok.chat_template:
        tok.chat_template = gguf_chat_template(path) or None
    step(2, 4, f"writing safetensors to {out}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    step(3, 4, f"keeping the original file as {GGUF_NAME}")
    _link_or_copy(path, out / GGUF_NAME)
    step(4, 4, "done")
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
