"""Chat backend on a local Hugging Face folder (safetensors only) with an optional LoRA adapter.

Device ``auto`` picks CUDA, then MPS, then CPU. Dtype ``auto`` picks bfloat16 where the hardware
computes it natively (CUDA with bf16 support; a CPU with AVX512-BF16/AMX, where oneDNN runs bf16
matmuls — measured ~1.6x faster than float32 for the 0.5B model on this machine's Xeon, see
README "models") and float32 otherwise (older CPUs emulate bf16, which is slower than float32;
fp16 on MPS/old GPUs risks overflow in Qwen's attention, so float32 there too).

Threads: :meth:`TransformersBackend.stream` runs ``generate`` in a worker thread of its own and
yields from a :class:`transformers.TextIteratorStreamer` on the calling thread.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from models.backend import BackendError, ChatBackend, GenerationSettings


def pick_device(preference: str = "auto") -> str:
    """Return "cuda", "mps" or "cpu" for a ``device`` setting (auto | cpu | cuda | mps).

    Raises:
        BackendError: an explicit device that this machine does not have.
    """
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
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
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


def _cancel_criteria(events: list[threading.Event]):
    """A StoppingCriteria that stops generation when any of ``events`` is set."""
    import torch
    from transformers import StoppingCriteria

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # input_ids: (B, T)
            stop = any(e.is_set() for e in events)
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return _Cancel()


class TransformersBackend(ChatBackend):
    """A causal LM loaded with ``AutoModelForCausalLM`` from a local folder.

    Args:
        model_dir: HF folder (config.json, *.safetensors, tokenizer files), or a hub id that is
            already in the local Hugging Face cache (nothing is downloaded here).
        settings: TQT-s settings (device, context_tokens, generation knobs).
        adapter: optional peft LoRA adapter folder (adapter_config.json) applied on top.
        name: the name shown to users (default: the folder name).

    Raises:
        BackendError: missing folder, non-safetensors weights, bad adapter, unknown device.
    """

    def __init__(self, model_dir: str | Path, settings, adapter: str | Path = "", name: str | None = None):
        self.settings = settings
        self.model_dir = str(model_dir)
        self.adapter = str(adapter or "")
        self.name = name or Path(self.model_dir).name
        self.device = pick_device(getattr(settings, "device", "auto"))
        self.dtype = pick_dtype(self.device)
        self.tokenizer, self.model = self._load()
        cfg_ctx = getattr(self.model.config, "max_position_embeddings", None) or settings.context_tokens
        self.context_tokens = min(int(cfg_ctx), int(settings.context_tokens))
        self._lock = threading.Lock()  # one generate at a time per loaded model

    def _load(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(self.model_dir).is_dir()
        if local and not (Path(self.model_dir) / "config.json").is_file():
            raise BackendError(f"{self.model_dir} has no config.json: pick a Hugging Face model folder, "
                               "or `python main.py models import FILE.gguf`")
        kw = {"trust_remote_code": False, "local_files_only": True}
        try:
            tok = AutoTokenizer.from_pretrained(self.model_dir, **kw)
            model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=self.dtype,
                                                         use_safetensors=True, **kw)
        except (OSError, ValueError) as e:
            where = "folder" if local else "model (not in the local Hugging Face cache)"
            raise BackendError(
                f"cannot load the {where} {self.model_dir!r}: {e}. It needs config.json, "
                f"*.safetensors and tokenizer files; run `python main.py models pull ID` or "
                f"`python main.py models import FOLDER_OR_GGUF`") from None
        if self.adapter:
            model = self._apply_adapter(model)
        model.to(self.device).eval()
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok, model

    def _apply_adapter(self, model):
        if not (Path(self.adapter) / "adapter_config.json").is_file():
            raise BackendError(f"{self.adapter!r} is not a LoRA adapter folder (no adapter_config.json); "
                               "pick the run's final/ or best/ folder, or clear the adapter setting")
        from peft import PeftModel

        return PeftModel.from_pretrained(model, self.adapter, is_trainable=False)

    # -- interface ---------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_messages(self, messages: list[dict]) -> int:
        """Tokens of ``messages`` rendered through the chat template, generation prompt included."""
        return len(self._encode(messages)[0])

    def _encode(self, messages: list[dict]):
        """Chat template -> input ids tensor of shape (1, T)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def _gen_kwargs(self, gen: GenerationSettings) -> dict:
        kw = {"max_new_tokens": gen.max_new_tokens, "repetition_penalty": gen.repetition_penalty,
              "pad_token_id": self.tokenizer.pad_token_id}
        if gen.temperature and gen.temperature > 0:
            kw.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def stream(self, messages: list[dict], *, gen: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the completion as text deltas (see :meth:`ChatBackend.stream`).

        ``generate`` runs in a worker thread; an exception there is re-raised here as
        BackendError. Closing this generator early also stops the worker.
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        gen = gen or GenerationSettings.from_settings(self.settings)
        input_ids = self._encode(messages).to(self.device)  # (1, T)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        closed = threading.Event()
        events = [closed] + ([cancel] if cancel is not None else [])
        errors: list[BaseException] = []

        def work():
            try:
                with self._lock:
                    self.model.generate(input_ids=input_ids, attention_mask=input_ids.new_ones(input_ids.shape),
                                        streamer=streamer, **self._gen_kwargs(gen),
                                        stopping_criteria=StoppingCriteriaList([_cancel_criteria(events)]))
            except BaseException as e:  # noqa: BLE001 - surfaced on the caller's thread
                errors.append(e)
                streamer.end()

        worker = threading.Thread(target=work, name="tqts-generate", daemon=True)
        worker.start()
        try:
            for delta in streamer:
                if delta:
                    yield delta
        finally:
            closed.set()
            worker.join()
        if errors:
            raise BackendError(f"generation failed on {self.device}: {errors[0]}") from errors[0]
