"""Right panel: the conversation, the question box, Ask / Stop / Copy / Export.

Threads: questions run on a worker through ``app.dispatcher``; the AnswerService's events
(sources → reasoning/answer deltas → done, or refusal / error) come back on the Tk thread
and are written into the :class:`app.transcript.Transcript` as they arrive. Each question is
a request id; a newer question marks the previous one stale (its late tokens are dropped).
Without an answering model (first run) a question shows the top passages instead.
"""
from __future__ import annotations

import logging
import tkinter as tk
from tkinter import filedialog, ttk

from app.transcript import Transcript

log = logging.getLogger(__name__)


class ChatPanel(ttk.Frame):
    """Conversation + input.

    Args:
        parent: container.
        app: the :class:`app.main.App`.
    """

    def __init__(self, parent, app) -> None:
        super().__init__(parent, padding=6)
        self.app, self.tr = app, app.tr
        self.job = None
        self.job_kb = ""
        self.turn: int | None = None
        self.last_answer = ""
        self.last_result = None
        self.transcript = Transcript(self, self.tr, on_cite=self._open_source)
        self.transcript.pack(fill="both", expand=True)
        self._build_input()

    def _build_input(self) -> None:
        tr = self.tr
        self.input_row = row = ttk.Frame(self)
        row.pack(fill="x", pady=(6, 0))
        self.input = tk.Text(row, height=3, width=30, wrap="word", font="TkTextFont", undo=True)
        self.input.pack(side="left", fill="both", expand=True)
        self.input.bind("<Return>", self._on_return)
        self.input.bind("<KP_Enter>", self._on_return)
        self.voice_slot = ttk.Frame(row)
        self.voice_slot.pack(side="left", padx=(4, 0))
        buttons = ttk.Frame(row)
        buttons.pack(side="left", padx=(4, 0), fill="y")
        self.ask_button = ttk.Button(buttons, text=tr("chat.ask"), command=self.ask, style="Accent.TButton")
        self.ask_button.pack(fill="x")
        self.stop_button = ttk.Button(buttons, text=tr("chat.stop"), command=self.stop, state="disabled")
        self.stop_button.pack(fill="x", pady=(3, 0))
        tools = ttk.Frame(self)
        tools.pack(fill="x", pady=(4, 0))
        ttk.Button(tools, text=tr("chat.copy"), command=self.copy_answer).pack(side="left")
        ttk.Button(tools, text=tr("chat.export"), command=self.export).pack(side="left", padx=4)
        ttk.Button(tools, text=tr("chat.clear"), command=self.clear_history).pack(side="left")
        self.info = ttk.Label(tools, text="", foreground="#666")
        self.info.pack(side="right")

    # -- voice hooks ---------------------------------------------------------------------
    def set_question(self, text: str) -> None:
        """Replace the question box's text (voice input calls this on the Tk thread)."""
        self.input.delete("1.0", "end")
        self.input.insert("1.0", text)

    def _on_return(self, event) -> str | None:
        if event.state & 0x0001:  # Shift+Enter: a newline
            return None
        self.ask()
        return "break"

    # -- asking --------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    def ask(self, question: str | None = None) -> int | None:
        """Ask ``question`` (default: the input box) about the current knowledge base.

        Returns:
            the turn number, or None when there was nothing to ask.
        """
        question = (question if question is not None else self.input.get("1.0", "end")).strip()
        if not question:
            return None
        if self.job is not None:
            self.app.dispatcher.cancel(self.job, stale=True)
            self.transcript.finish_turn(self.turn, note=self.tr("chat.superseded"))
        self.input.delete("1.0", "end")
        kb = self.job_kb = self.app.kb_name
        self.turn = t = self.transcript.start_turn(question)
        self.stop_button.configure(state="normal")
        self.info.configure(text=self.tr("chat.thinking"))
        if self.app.model_ok is False:
            self.job = self.app.dispatcher.submit(
                "passages", lambda emit, cancel: self.app.services.answers.passages(question, kb),
                lambda kind, payload: self._on_passages(t, kind, payload))
            return t
        answers = self.app.services.answers

        def work(emit, cancel):
            answered = False
            for event in answers.ask(question, kb, cancel=cancel):
                emit("event", event)
                answered = answered or event.kind == "answer"
            # the backend is loaded once something was generated: report where it runs
            return getattr(answers.backend(), "device", "") if answered else ""
        self.job = self.app.dispatcher.submit("answer", work, lambda kind, payload: self._on_event(t, kind, payload))
        return t

    def stop(self) -> None:
        """Cancel the running answer (generation stops at the next token)."""
        if self.job is not None:
            self.app.dispatcher.cancel(self.job)
            self.info.configure(text=self.tr("chat.stopping"))

    def _on_event(self, t: int, kind: str, payload) -> None:
        tx = self.transcript
        if kind == "failed":
            tx.add_answer(t, str(payload), "error")
            self._done(t, None)
            return
        if kind == "finished":
            if payload:
                self.app.backend_device = payload
                self.app.refresh_status()
            if self.job is not None and self.turn == t:
                self._done(t, None)
            return
        ev = payload
        if ev.kind == "sources":
            tx.set_sources(t, ev.data or [])
        elif ev.kind == "reasoning":
            tx.add_reasoning(t, ev.text)
        elif ev.kind == "answer":
            tx.add_answer(t, ev.text)
        elif ev.kind == "refusal":
            tx.add_answer(t, "ⓘ " + ev.text, "refusal")
        elif ev.kind == "error":
            tx.add_answer(t, "⚠ " + ev.text, "error")
        elif ev.kind == "done":
            self._done(t, ev.data)

    def _done(self, t: int, result) -> None:
        refused = bool(getattr(result, "refused", False))
        if result is not None and getattr(result, "answer", "") and not getattr(result, "error", ""):
            if refused:
                if result.sources:   # the model's own "not in the sources": an orange box too
                    self.transcript.replace_answer(t, "ⓘ " + result.answer, "refusal")
            elif result.answer != self.transcript.answers.get(t, ""):   # citations moved
                self.transcript.replace_answer(t, result.answer)
            self.transcript.set_citations(t, getattr(result, "citations", []))
        stopped = self.job is not None and self.job.cancel.is_set()
        note = self.tr("chat.stopped") if stopped else (
            self.tr("chat.cited_inferred") if getattr(result, "cited_inferred", False) else "")
        self.transcript.finish_turn(t, refused=refused, note=note)
        self.job = None
        self.stop_button.configure(state="disabled")
        self.last_result = result
        if result is None:
            self.info.configure(text="")
            return
        self.last_answer = result.answer or self.transcript.answers.get(t, "")
        tm = getattr(result, "timings", {}) or {}
        if refused or not tm.get("ttft_ms"):
            self.info.configure(text="")
        else:
            self.info.configure(text=self.tr("chat.timing", ttft=int(tm.get("ttft_ms", 0) or 0),
                                         tps=float(tm.get("tok_per_s", 0) or 0)))
        self.app.on_answer(result)

    def _on_passages(self, t: int, kind: str, payload) -> None:
        if kind == "finished":
            if payload:
                self.transcript.show_sources(t, payload, self.tr("chat.passages_header"), snippets=True)
            else:
                self.transcript.add_answer(t, "ⓘ " + self.tr("chat.no_passages"), "refusal")
                self.transcript.finish_turn(t, refused=True)
        elif kind == "failed":
            self.transcript.add_answer(t, "⚠ " + str(payload), "error")
            self.transcript.finish_turn(t, refused=True)
        self.job = None
        self.stop_button.configure(state="disabled")
        self.info.configure(text="")

    def _open_source(self, source, n: int) -> None:
        self.app.open_source(source.source, source.page or 1, source.text)

    # -- tools ---------------------------------------------------------------------------
    def copy_answer(self) -> None:
        """Put the last answer on the clipboard."""
        if self.last_answer:
            self.clipboard_clear()
            self.clipboard_append(self.last_answer)
            self.info.configure(text=self.tr("chat.copied"))

    def export(self) -> None:
        """Export the current knowledge base's conversation to a Markdown file (worker)."""
        kb = self.app.kb_name
        path = filedialog.asksaveasfilename(parent=self, defaultextension=".md", initialfile=f"{kb}.md",
                                            filetypes=[("Markdown", "*.md")])
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> None:
        kb = self.app.kb_name

        def on_event(kind, payload):
            if kind == "finished":
                self.info.configure(text=self.tr("chat.exported", path=payload))
            elif kind == "failed":
                self.app.show_error(payload)
        self.app.dispatcher.submit("export", lambda emit, cancel:
                                   self.app.services.answers.export_markdown(kb, path), on_event)

    def clear_history(self) -> None:
        """Forget the conversation of the current knowledge base (asks first)."""
        from tkinter import messagebox

        kb = self.app.kb_name
        if not messagebox.askyesno(self.tr("chat.clear"), self.tr("chat.clear_confirm", kb=kb), parent=self):
            return
        self.transcript.clear()
        self.app.dispatcher.submit("clear", lambda emit, cancel: self.app.services.answers.clear_history(kb),
                                   lambda kind, payload: kind == "failed" and self.app.show_error(payload))

    def load_history(self, kb: str) -> None:
        """Show the saved conversation of ``kb`` (read on a worker)."""
        if self.job is not None and self.job_kb == kb:
            return  # a question about this kb is streaming: the view is already current
        if self.job is not None:
            self.app.dispatcher.cancel(self.job, stale=True)
            self.job = None
            self.stop_button.configure(state="disabled")
        self.transcript.clear()

        def on_event(kind, payload):
            if kind == "finished" and kb == self.app.kb_name:
                for record in payload:
                    self._render_record(record)
                if payload:
                    self.transcript.note(self.tr("chat.history_loaded", n=len(payload)))
            elif kind == "failed":
                log.warning("history of %s: %s", kb, payload)
        self.app.dispatcher.submit("history", lambda emit, cancel: self.app.services.answers.history(kb), on_event)

    def _render_record(self, r: dict) -> None:
        """One saved turn: ``{"question", "answer", "reasoning"?, "sources"?, "refused"?}``."""
        from types import SimpleNamespace

        question = r.get("question") or (r.get("content") if r.get("role") == "user" else None)
        if question is None:
            return
        t = self.transcript.start_turn(question)
        srcs = [SimpleNamespace(n=s.get("n", i + 1), source=s.get("source", ""), page=s.get("page"),
                                text=s.get("text", ""), score=s.get("score", 0.0), section=s.get("section", ""))
                for i, s in enumerate(r.get("sources") or []) if isinstance(s, dict)]
        self.transcript.set_sources(t, srcs)
        if r.get("reasoning"):
            self.transcript.add_reasoning(t, r["reasoning"])
        refused = bool(r.get("refused"))
        self.transcript.add_answer(t, r.get("answer", ""), "refusal" if refused else "answer")
        self.transcript.finish_turn(t, refused=refused)
        self.last_answer = r.get("answer", "")
