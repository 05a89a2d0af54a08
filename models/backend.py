"""The chat backend interface: one abstract streaming method, conveniences built on it.

Threads: :meth:`ChatBackend.stream` may be called from any worker thread (never the Tk
thread); it blocks while generating and yields text deltas as they arrive. Setting the
``cancel`` event makes the generator stop at the next token and return.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


class BackendError(RuntimeError):
    """A backend cannot serve: the message says what is wrong and what to do."""


@dataclass
class GenerationSettings:
    """Sampling knobs; temperature 0 means greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.3
    top_p: float = 0.9
    repetition_penalty: float = 1.05

    @classmethod
    def from_settings(cls, settings) -> GenerationSettings:
        return cls(settings.max_new_tokens, settings.temperature, settings.top_p,
                   settings.repetition_penalty)


class ChatBackend(ABC):
    """A chat model. Subclasses implement :meth:`stream` only.

    Attributes:
        name: model name shown to users (registry name or path).
        context_tokens: prompt + completion budget in the model's tokens.
        device: where it runs ("cpu", "cuda", "mps", "ollama").
    """

    name: str = "model"
    context_tokens: int = 4096
    device: str = "cpu"
    adapter: str = ""

    @abstractmethod
    def stream(self, messages: list[dict], *, gen: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the completion as text deltas.

        Args:
            messages: chat messages ``[{"role": "system"|"user"|"assistant", "content": str}]``.
            gen: sampling settings (default :class:`GenerationSettings`).
            cancel: when set, generation stops at the next token.

        Raises:
            BackendError: the model cannot be reached or loaded; message says what to do.
        """

    def complete(self, messages: list[dict], **kw) -> str:
        """The whole completion as one string (joins :meth:`stream`)."""
        return "".join(self.stream(messages, **kw))

    def warm(self, messages: list[dict], *, cancel: threading.Event | None = None) -> dict | None:
        """Prefill ``messages`` into the model's prompt cache without answering, so that a later
        :meth:`stream` whose prompt starts the same way evaluates only the rest (the app calls
        it while the user types). Blocks; call on a worker thread; stops early when ``cancel``
        is set. Default: nothing (backends without a reusable prompt cache).

        Returns:
            what was prefilled (backend-specific counts, see LlamaCppBackend.warm), or None when
            nothing was.
        """
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer. Default: a conservative estimate
        (one token per CJK character, one per 3 other characters) for backends without one."""
        cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
        return cjk + (len(text) - cjk + 2) // 3
