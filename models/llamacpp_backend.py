"""A GGUF-native chat backend on llama-cpp-python (optional dependency, imported lazily).

Used by the model registry when ``settings.backend == "llamacpp"``. It reads the model from
a ``.gguf`` file, or from an imported model folder holding ``model.gguf`` (any single
``*.gguf`` in the folder is accepted too). The chat template is the one stored in the GGUF
metadata (``tokenizer.chat_template``), applied by llama-cpp-python.

Install (builds llama.cpp from source, ~15 min on 2 cores; not in requirements.txt)::

    python -m pip install llama-cpp-python==0.3.36

Threads: :meth:`LlamaCppBackend.stream` may be called from any worker thread; one lock
serialises generations on the shared model. Setting ``cancel`` stops at the next token.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kb.types import Message
from models.backend import BackendError, ChatBackend, GenerationSettings

INSTALL_HINT = "python -m pip install llama-cpp-python==0.3.36"


def find_gguf(path: str | Path) -> Path:
    """Return the GGUF file for ``path``: the file itself, ``DIR/model.gguf``, or the one
    ``*.gguf`` in ``DIR``.

    Raises:
        BackendError: no such file, or a folder with no (or several, none named model.gguf) GGUF.
    """
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        return p
    if p.is_dir():
        if (p / "model.gguf").is_file():
            return p / "model.gguf"
        found = sorted(p.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        what = "several .gguf files and none named model.gguf" if found else "no .gguf file"
        raise BackendError(f"{p} has {what}; import a .gguf model (main.py models import FILE.gguf) "
                           "or use the transformers backend for HF folders")
    raise BackendError(Message("gguf_missing", "GGUF model not found at {path}; give a .gguf file or an imported "
                               "model folder", path=str(p)))


def _import_llama():
    """Import ``llama_cpp.Llama`` or raise a BackendError that says how to install it."""
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise BackendError(f"the llamacpp backend needs llama-cpp-python ({e}); install it with "
                           f"`{INSTALL_HINT}` or set backend: transformers") from None
    return Llama


_PARAMS_LOCK = threading.Lock()


def amx_build() -> bool:
    """True when the installed llama.cpp was compiled with its AMX int8 matmul path.

    On the 2-core Xeon (AMX) machines this project is tested on, that path segfaults in ``ggml_backend_amx_mul_mat``
    on the first evaluation (Q4_K_M and Q4_1 files, llama-cpp-python 0.3.36 built with
    ``GGML_NATIVE``), so :func:`load_llama` turns llama.cpp's extra buffer types off there.
    """
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def _extra_buffers(enabled: bool):
    """Load models with llama.cpp's ``use_extra_bufts`` (AMX / weight repacking) on or off.

    llama-cpp-python exposes no argument for it, so its default-params factory is wrapped
    while the model loads (under a lock; the factory is only read at load time).
    """
    import llama_cpp.llama_cpp as C

    if enabled:
        yield
        return
    orig = C.llama_model_default_params

    def params():
        p = orig()
        p.use_extra_bufts = False
        return p

    with _PARAMS_LOCK:
        C.llama_model_default_params = params
        try:
            yield
        finally:
            C.llama_model_default_params = orig


def load_llama(path: str | Path, *, n_ctx: int, threads: int, **kw):
    """``llama_cpp.Llama`` for ``path`` with ``threads`` for both prompt and decode, quiet,
    and the AMX workaround of :func:`amx_build`. Used by the backend and by bench/generate.py.

    Raises:
        BackendError: llama-cpp-python is not installed.
        ValueError: llama.cpp cannot load the file.
    """
    Llama = _import_llama()
    with _extra_buffers(not amx_build()):
        return Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                     n_threads_batch=threads, verbose=False, **kw)


class LlamaCppBackend(ChatBackend):
    """Chat with a GGUF model through llama.cpp on the CPU.

    Args:
        path: a ``.gguf`` file or a folder holding ``model.gguf``.
        settings: TQT-s settings, optional: ``context_tokens``, ``adapter`` and the generation
            knobs (used when :meth:`stream` gets no ``gen``) come from it.
        name: shown to users (default: the file name).
        context_tokens: llama.cpp context size ``n_ctx`` (prompt + completion), in tokens
            (default: settings ``context_tokens``, else 4096).
        threads: CPU threads for prompt processing and decoding (default: all cores, which
            llama-cpp-python would otherwise halve).
        adapter: must be empty (default: settings ``adapter``): PEFT LoRA adapters need the
            transformers backend.

    Raises:
        BackendError: llama-cpp-python missing, no GGUF at ``path``, a LoRA adapter given,
            or llama.cpp cannot load the file.
    """

    device = "cpu"

    def __init__(self, path: str | Path, settings=None, *, name: str | None = None,
                 context_tokens: int | None = None, threads: int | None = None,
                 adapter: str | None = None) -> None:
        self.settings = settings
        adapter = adapter if adapter is not None else getattr(settings, "adapter", "") if settings else ""
        if adapter:
            raise BackendError("the llamacpp backend cannot apply a PEFT LoRA adapter; "
                               "set backend: transformers to use it, or merge it into the model first")
        self.path = find_gguf(path)
        self.name = name or (self.path.parent.name if self.path.name == "model.gguf" else self.path.stem)
        self.context_tokens = int(context_tokens or (settings.context_tokens if settings else 4096))
        self.threads = threads or os.cpu_count() or 1
        try:
            self._llm = load_llama(self.path, n_ctx=self.context_tokens, threads=self.threads)
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"llama.cpp could not load {self.path}: {e}; is it a complete GGUF "
                               "file of a llama.cpp-supported architecture?") from None
        self._lock = threading.Lock()

    def stream(self, messages: list[dict], *, gen: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the completion as text deltas (about one token each); see :class:`ChatBackend`.

        ``gen.temperature == 0`` is greedy decoding (llama.cpp's greedy sampler).

        Raises:
            BackendError: the prompt does not fit in ``context_tokens``.
        """
        gen = gen or (GenerationSettings.from_settings(self.settings) if self.settings else GenerationSettings())
        with self._lock:
            try:
                chunks = self._llm.create_chat_completion(
                    messages=messages, stream=True, max_tokens=gen.max_new_tokens,
                    temperature=gen.temperature, top_p=gen.top_p,
                    repeat_penalty=gen.repetition_penalty)
            except ValueError as e:  # "Requested tokens (N) exceed context window of M"
                raise BackendError(f"{e}; shorten the question or raise context_tokens") from None
            try:
                for chunk in chunks:
                    if cancel is not None and cancel.is_set():
                        return
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            except ValueError as e:
                raise BackendError(f"{e}; shorten the question or raise context_tokens") from None
            finally:
                chunks.close()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the GGUF's own tokenizer (no BOS, special tokens parsed)."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def close(self) -> None:
        """Free the model now (otherwise freed when garbage collected)."""
        self._llm.close()
