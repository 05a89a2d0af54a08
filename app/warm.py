"""Warm the answering model while the user types (README "Performance", time to first token).

When the question box has been still for :data:`DEBOUNCE_MS` after a key, the draft goes to
``AnswerService.warm`` on a worker thread: it retrieves passages for the draft, loads the
model if needed and prefills [system prompt + numbered sources] into llama.cpp's prompt
cache. When the question is sent and retrieves the same sources, only the question's tokens
are evaluated before the first answer token.

Threads: everything here runs on the Tk thread; the warm itself runs through
``app.dispatcher`` (never blocks the Tk loop). One warm at a time: a newer draft cancels the
running one (it stops after its current prompt batch and keeps what it prefilled) and starts
when it has finished. Sending a question cancels the warm and drops a pending draft.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Quiet time after the last key before the draft is warmed, in milliseconds.
DEBOUNCE_MS = 500


class DraftWarmer:
    """Debounced, one-at-a-time, cancellable warm-ups of the question being typed.

    Args:
        widget: any Tk widget (its ``after`` runs the debounce timer).
        dispatcher: the app's :class:`app.worker.Dispatcher`.
        draft: returns the text to warm now, or None when warming is off (an answer is
            streaming, no model).
        work: ``work(draft)`` returns the job function ``fn(emit, cancel)`` for the dispatcher
            (the chat panel's: ``AnswerService.warm(draft, kb, cancel=cancel, ...)``).
        delay_ms: debounce delay (default :data:`DEBOUNCE_MS`).

    Attributes:
        results: ``(draft, kind, payload)`` of each finished warm, oldest first: kind is
            "finished" (payload: the service's dict) or "failed" (payload: the message).
    """

    def __init__(self, widget, dispatcher, draft: Callable[[], str | None],
                 work: Callable[[str], Callable], *, delay_ms: int = DEBOUNCE_MS) -> None:
        self.widget, self.dispatcher = widget, dispatcher
        self.draft, self.work, self.delay_ms = draft, work, delay_ms
        self.job = None
        self.results: list[tuple[str, str, object]] = []
        self._after = None
        self._running = ""      # the draft the running job warms
        self._warmed = ""       # the last draft started (no second warm of the same text)
        self._next: str | None = None

    def schedule(self, event=None) -> None:
        """(Re)start the debounce timer; bound to the question box's ``<KeyRelease>``."""
        self._cancel_timer()
        self._after = self.widget.after(self.delay_ms, self._fire)

    def drop(self) -> None:
        """A question is being sent: cancel the running warm (what it prefilled stays cached)
        and forget pending drafts."""
        self._cancel_timer()
        self._next = None
        self._warmed = ""
        if self.job is not None:
            self.dispatcher.cancel(self.job)

    def _cancel_timer(self) -> None:
        if self._after is not None:
            self.widget.after_cancel(self._after)
            self._after = None

    def _fire(self) -> None:
        self._after = None
        text = self.draft()
        if not text or text == self._warmed:
            return
        if self.job is not None:  # one at a time: stop the running warm, this draft goes next
            self.dispatcher.cancel(self.job)
            self._next = text
            return
        self._start(text)

    def _start(self, text: str) -> None:
        self._running = self._warmed = text
        self.job = self.dispatcher.submit("warm", self.work(text), self._on_event)

    def _on_event(self, kind: str, payload) -> None:
        if kind not in ("finished", "failed"):
            return
        self.job = None
        self.results.append((self._running, kind, payload))
        if kind == "failed":  # a warm only saves time: log it, never bother the user
            log.info("warming %r failed: %s", self._running[:40], payload)
        text, self._next = self._next, None
        if text and text != self._warmed and self.draft() == text:
            self._start(text)
