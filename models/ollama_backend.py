"""Chat backend on an Ollama server (``ollama`` client), and export of a model to Ollama.

The server is the user's own (``settings.ollama_host``, local by default); nothing else is
contacted. Errors become :class:`BackendError` saying whether the server is down
(``ollama serve``) or the model is missing (``ollama pull NAME``).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from kb.types import Message
from models.backend import BackendError, ChatBackend, GenerationSettings

#: Qwen2.5's ChatML template in Ollama's Go-template syntax (as in the official qwen2.5 Modelfile,
#: without tool calls): a system turn, then user/assistant turns, then the assistant prompt.
QWEN_OLLAMA_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}{{ end }}<|im_start|>assistant
"""


def _client(host: str):
    import ollama

    return ollama.Client(host=host, timeout=600)


def explain(error: Exception, host: str, model: str) -> BackendError:
    """Turn an ollama/httpx exception into one BackendError that says what to do."""
    import httpx
    import ollama

    if isinstance(error, (ConnectionError, httpx.ConnectError, httpx.TimeoutException)):
        return BackendError(Message("ollama_unreachable", "the Ollama server at {host} is not reachable: start it "
                                    "with `ollama serve` (install from https://ollama.com), fix ollama_host, or set "
                                    "backend: transformers", host=host))
    if isinstance(error, ollama.ResponseError) and (error.status_code == 404 or "not found" in str(error)):
        return BackendError(Message("ollama_no_model", "Ollama has no model {model!r}: run `ollama pull {model}` "
                                    "(or `python main.py models export-ollama NAME` for a local model)", model=model))
    return BackendError(f"Ollama ({host}) failed for {model!r}: {error}")


class OllamaBackend(ChatBackend):
    """Chat through an Ollama server.

    Args:
        settings: uses ``ollama_host``, ``ollama_model``, ``context_tokens`` and generation knobs.
        model: Ollama model name (default ``settings.ollama_model``).

    The constructor contacts nobody; the server is first used by :meth:`stream` / :meth:`check`.
    """

    device = "ollama"

    def __init__(self, settings, model: str | None = None):
        self.settings = settings
        self.host = settings.ollama_host
        self.model = model or settings.ollama_model
        self.name = f"ollama:{self.model}"
        self.context_tokens = int(settings.context_tokens)
        self._client = _client(self.host)
        self.last_completion_tokens: int | None = None  # eval_count of the last stream()

    def check(self) -> dict:
        """Ask the server about the model (``/api/show``); set context_tokens from its info.

        Returns:
            the model_info mapping.

        Raises:
            BackendError: server down or model missing (message says what to do).
        """
        try:
            info = self._client.show(self.model).modelinfo or {}
        except Exception as e:  # noqa: BLE001 - mapped to one clear message
            raise explain(e, self.host, self.model) from None
        ctx = [v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)]
        if ctx:
            self.context_tokens = min(ctx[0], int(self.settings.context_tokens))
        return dict(info)

    def stream(self, messages: list[dict], *, gen: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield deltas of ``/api/chat`` (streamed NDJSON); see :meth:`ChatBackend.stream`."""
        gen = gen or GenerationSettings.from_settings(self.settings)
        options = {"num_predict": gen.max_new_tokens, "temperature": gen.temperature,
                   "top_p": gen.top_p, "repeat_penalty": gen.repetition_penalty,
                   "num_ctx": self.context_tokens}
        try:
            parts = self._client.chat(model=self.model, messages=messages, stream=True, options=options)
            for part in parts:
                if cancel is not None and cancel.is_set():
                    parts.close()
                    return
                delta = part.message.content or ""
                if delta:
                    yield delta
                if part.done:
                    self.last_completion_tokens = part.eval_count
                    return
        except BackendError:
            raise
        except Exception as e:  # noqa: BLE001 - mapped to one clear message
            raise explain(e, self.host, self.model) from None


def modelfile(template: str = QWEN_OLLAMA_TEMPLATE, settings=None) -> str:
    """A Modelfile for a safetensors folder in the same directory (``FROM .``)."""
    lines = ["FROM .", f'TEMPLATE """{template}"""', 'PARAMETER stop "<|im_end|>"',
             'PARAMETER stop "<|endoftext|>"']
    if settings is not None:
        lines += [f"PARAMETER temperature {settings.temperature}", f"PARAMETER top_p {settings.top_p}",
                  f"PARAMETER num_ctx {settings.context_tokens}"]
    return "\n".join(lines) + "\n"


def create_in_ollama(folder: str | Path, name: str, settings) -> None:
    """Upload the folder's files as blobs and ``/api/create`` the model ``name``.

    Raises:
        BackendError: server down or creation refused.
    """
    client = _client(settings.ollama_host)
    folder = Path(folder)
    try:
        files = {p.name: client.create_blob(p) for p in sorted(folder.iterdir())
                 if p.is_file() and p.suffix in (".safetensors", ".json", ".txt", ".model")}
        client.create(model=name, files=files, template=QWEN_OLLAMA_TEMPLATE,
                      parameters={"stop": ["<|im_end|>", "<|endoftext|>"]})
    except Exception as e:  # noqa: BLE001 - mapped to one clear message
        raise explain(e, settings.ollama_host, name) from None


def ollama_name(name: str) -> str:
    """An Ollama model name: lowercase ASCII letters, digits, ``.-_`` (others become ``-``)."""
    import re

    return re.sub(r"[^a-z0-9._\-]+", "-", name.lower()).strip("-.") or "tqts-model"


def export_model(model_dir: str, adapter: str, out: str | Path, settings, name: str) -> tuple[str, bool]:
    """Write a merged safetensors folder + Modelfile to ``out``; create it in Ollama if reachable.

    Args:
        model_dir: HF folder (or cached hub id) of the base model.
        adapter: LoRA adapter folder merged into the weights (peft ``merge_and_unload``), or "".
        out: output folder (created).
        name: model name; made Ollama-safe.

    Returns:
        (ollama model name, created?) — False when the server is not running.

    Raises:
        BackendError: the model or adapter cannot be loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, tag = Path(out), ollama_name(name)
    kw = {"trust_remote_code": False, "local_files_only": True}
    try:
        tok = AutoTokenizer.from_pretrained(model_dir, **kw)
        model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, **kw)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot load {model_dir} {adapter}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "Modelfile").write_text(modelfile(settings=settings), encoding="utf-8")
    try:
        create_in_ollama(out, tag, settings)
    except BackendError as e:
        if "not reachable" in str(e):
            return tag, False
        raise
    return tag, True
