"""Where models run: device and dtype choice, shared by the chat backends and the embedder.

Device ``auto`` picks CUDA, then MPS, then CPU. Dtype ``auto`` picks bfloat16 where the hardware
computes it natively (CUDA with bf16 support; a CPU with AVX512-BF16/AMX, where oneDNN runs bf16
matmuls) and float32 otherwise: older CPUs emulate bf16, which is slower than float32, and fp16
on MPS/old GPUs risks overflow in Qwen's attention. Imports torch lazily (not at all for ``auto``
on a machine without a GPU driver, see :func:`accelerator_possible`); no other project module.
"""
from __future__ import annotations

from models.backend import BackendError


def accelerator_possible() -> bool:
    """Could torch find a GPU here? False only when no driver for one is present: no NVIDIA or
    ROCm device node / driver on Linux, no ``nvcuda`` library on Windows, not Apple silicon.
    Lets ``device: auto`` answer "cpu" without importing torch (~200 MiB RSS) in a process whose
    models (llama.cpp, the ONNX embedder) do not use it. ``TQTS_CPU_ONLY=1`` says False."""
    import os
    import platform
    import sys

    if os.environ.get("TQTS_CPU_ONLY") == "1":
        return False
    if sys.platform == "darwin":
        return platform.machine() == "arm64"                       # MPS
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return True


def pick_device(preference: str = "auto") -> str:
    """Return "cuda", "mps" or "cpu" for a ``device`` setting (auto | cpu | cuda | mps).

    ``auto`` and ``cpu`` do not import torch when :func:`accelerator_possible` is False.

    Raises:
        BackendError: an explicit device that this machine does not have.
    """
    if preference == "cpu" or (preference in (None, "", "auto") and not accelerator_possible()):
        return "cpu"
    import torch

    has = {"cuda": torch.cuda.is_available(),
           "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
           "cpu": True}
    if preference in (None, "", "auto"):
        return next(d for d in ("cuda", "mps", "cpu") if has[d])
    if preference not in has:
        raise BackendError(f"device {preference!r} is unknown; set device to auto, cpu, cuda or mps")
    if not has[preference]:
        raise BackendError(f"device {preference!r} is not available here; set device: auto (or cpu)")
    return preference


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX).
    ``TQTS_CPU_FLAGS`` (see :func:`kb.onnx_embedder.cpu_flags`) answers instead when set."""
    import os

    if os.environ.get("TQTS_CPU_FLAGS") is not None:
        return bool({"avx512_bf16", "amx_bf16"} & set(os.environ["TQTS_CPU_FLAGS"].split()))
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and \
            torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")
    except (AttributeError, RuntimeError):
        return False


def pick_dtype(device: str):
    """bfloat16 where the device computes it natively, else float32 (see module docstring)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
