"""Right panel: the conversation, the stage line, the question box, Ask / Stop / tools.

Threads: questions run on a worker through ``app.dispatcher``; the AnswerService's events
(sources → reasoning/answer deltas → done, or refusal / error) and its stages (``on_stage``:
retrieved → loading → reading) come back on the Tk thread and are written into the
:class:`app.transcript.Transcript` and the stage line as they arrive. Each question is a
request id; a newer question marks the previous one stale (its late tokens are dropped).
Without an answering model (first run) a question shows the top passages instead.

Conversations: ``self.conversation`` is the id of the chat shown (``""`` = the knowledge
base's first chat); :mod:`app.chats` lists, creates, renames and deletes them.
"""
from __future__ import annotations

import logging
import time
import tkinter as tk
from tkinter import filedialog, ttk

from app.transcript import Transcript
from app.warm import DraftWarmer
from app.welcome import Welcome

log = logging.getLogger(__name__)


class ChatPanel(ttk.Frame):
    """Conversation + input.

    Args:
        parent: container.
        app: the :class:`app.main.App`.

    Attributes:
        stages: the stage keys of the current (or last) answer in the order they were shown:
            retrieved, loading, reading, generating (tests read it).
    """

    def __init__(self, parent, app) -> None:
        super().__init__(parent, padding=(8, 8, 8, 6))
        self.app, self.tr = app, app.tr
        self.job = None
        self.job_kb = ""
        self.conversation = ""
        self.turn: int | None = None
        self.questions: dict[int, str] = {}
        self.last_answer = ""
        self.last_result = None
        self.stages: list[str] = []
        self._tokens, self._first_token = 0, 0.0
        self._build_input()       # packed first, from the bottom: it keeps its room when the window shrinks
        self.warmer = DraftWarmer(self, app.dispatcher, self._draft, self._warm_work)
        self.input.bind("<KeyRelease>", self.warmer.schedule, add="+")
        self.welcome = Welcome(self, app, on_pick=self._ask_example)
        self.transcript = Transcript(self, self.tr, on_cite=self._open_source, palette=app.palette,
                                     menu=self._turn_menu_items)
        self.transcript.pack(fill="both", expand=True)

    def _build_input(self) -> None:
        tr = self.tr
        tools = ttk.Frame(self)
        tools.pack(side="bottom", fill="x", pady=(6, 0))
        self.input_row = row = ttk.Frame(self)
        row.pack(side="bottom", fill="x", pady=(6, 0))
        self.stage_row = stage = ttk.Frame(self)
        stage.pack(side="bottom", fill="x", pady=(4, 0))
        self.stage_label = ttk.Label(stage, text="", style="Stage.TLabel")
        self.stage_label.pack(side="left")
        self.busy_bar = ttk.Progressbar(stage, mode="indeterminate", length=160)
        # Ask/Stop first from the right, then the voice controls: a narrow window squeezes the text box.
        buttons = ttk.Frame(row)
        buttons.pack(side="right", padx=(6, 0), fill="y")
        self.ask_button = ttk.Button(buttons, text=tr("chat.ask"), command=self.ask, style="Accent.TButton")
        self.ask_button.pack(fill="x")
        self.stop_button = ttk.Button(buttons, text=tr("chat.stop"), command=self.stop, state="disabled")
        self.stop_button.pack(fill="x", pady=(4, 0))
        self.voice_slot = ttk.Frame(row)
        self.voice_slot.pack(side="right", padx=(6, 0))
        self.input = tk.Text(row, height=3, width=20, wrap="word", font="TkTextFont", undo=True, padx=6, pady=4)
        self.input.pack(side="left", fill="both", expand=True)
        self.input.bind("<Return>", self._on_return)
        self.input.bind("<KP_Enter>", self._on_return)
        self.input.bind("<Control-Return>", lambda e: (self.ask(), "break")[1])
        self.input.bind("<Control-o>", lambda e: (self.app.kb_panel.add_files(), "break")[1])   # not Text's "open line"
        self.tool_buttons = []
        for key, cmd in (("chat.copy", self.copy_answer), ("chat.regenerate", self.regenerate),
                         ("chat.export", self.export), ("chat.clear", self.clear_history)):
            b = ttk.Button(tools, text=tr(key), command=cmd)
            b.pack(side="left", padx=(0, 4))
            self.tool_buttons.append(b)
        self.info = ttk.Label(self.stage_row, text="", style="Muted.TLabel")   # timing, copied, exported…
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

    def _draft(self) -> str | None:
        """The question box's text to warm the model with (app/warm.py), or None while an
        answer streams or when no answering model is available."""
        if self.job is not None or self.app.model_ok is not True:
            return None
        return self.input.get("1.0", "end").strip()

    def _warm_work(self, draft: str):
        answers, kb, conv = self.app.services.answers, self.app.kb_name, self.conversation
        return lambda emit, cancel: answers.warm(draft, kb, cancel=cancel, chat_id=conv)

    def _ask_example(self, question: str) -> None:
        self.set_question(question)
        self.ask()

    # -- stage line ----------------------------------------------------------------------
    def set_stage(self, key: str, **kw) -> None:
        """Show stage ``key`` (retrieved | loading | reading | generating | "" to clear)."""
        if key and (not self.stages or self.stages[-1] != key):
            self.stages.append(key)
        self.stage_label.configure(text=self.tr(f"chat.stage.{key}", **kw) if key else "")
        if key and not self.busy_bar.winfo_ismapped():
            self.busy_bar.pack(side="left", padx=(8, 0))
            self.busy_bar.start(60)
        elif not key:
            self.busy_bar.stop()
            self.busy_bar.pack_forget()

    def _count_token(self) -> None:
        now = time.monotonic()
        if not self._tokens:
            self._first_token = now
        self._tokens += 1
        elapsed = now - self._first_token
        tps = (self._tokens - 1) / elapsed if elapsed > 0.2 else 0.0
        self.set_stage("generating", tps=tps)

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
        self.warmer.drop()
        self.input.delete("1.0", "end")
        self.welcome.hide()
        kb = self.job_kb = self.app.kb_name
        conv = self.conversation
        self.turn = t = self.transcript.start_turn(question)
        self.questions[t] = question
        self.stop_button.configure(state="normal")
        self.info.configure(text="")
        self.stages, self._tokens = [], 0
        self.set_stage("searching")
        if self.app.model_ok is False:
            self.job = self.app.dispatcher.submit(
                "passages", lambda emit, cancel: self.app.services.answers.passages(question, kb),
                lambda kind, payload: self._on_passages(t, kind, payload))
            return t
        answers = self.app.services.answers

        def work(emit, cancel):
            answered = False
            for event in answers.ask(question, kb, cancel=cancel, chat_id=conv,
                                     on_stage=lambda name, data=None: emit("stage", (name, data))):
                emit("event", event)
                answered = answered or event.kind == "answer"
            # the backend is loaded once something was generated: report where it runs
            return getattr(answers.backend(), "device", "") if answered else ""
        self.job = self.app.dispatcher.submit("answer", work, lambda kind, payload: self._on_event(t, kind, payload))
        return t

    def regenerate(self, t: int | None = None) -> int | None:
        """Ask turn ``t``'s question (default: the last one) again; returns the new turn."""
        t = t if t is not None else (max(self.questions) if self.questions else None)
        return self.ask(self.questions[t]) if t in self.questions else None

    def stop(self) -> None:
        """Cancel the running answer (generation stops at the next token)."""
        if self.job is not None:
            self.app.dispatcher.cancel(self.job)
            self.info.configure(text=self.tr("chat.stopping"))

    def cancel_for_switch(self) -> None:
        """The knowledge base or chat changes under a running answer: stop it and say so."""
        if self.job is None:
            return
        self.app.dispatcher.cancel(self.job, stale=True)
        self.job = None
        self.stop_button.configure(state="disabled")
        self.set_stage("")
        self.app.flash(self.tr("chat.cancelled_switch"))

    def _on_event(self, t: int, kind: str, payload) -> None:
        tx = self.transcript
        if kind == "failed":
            tx.add_answer(t, "⚠ " + self.tr.message(payload), "error")
            self._done(t, None)
            return
        if kind == "finished":
            if payload:
                self.app.backend_device = payload
                self.app.refresh_status()
            if self.job is not None and self.turn == t:
                self._done(t, None)
            return
        if kind == "stage":
            name, data = payload
            if name == "retrieved":
                tx.show_retrieved(t, data or [], self.tr("chat.retrieved_header"))
                self.set_stage("retrieved", n=len(data or []))
            elif name == "loading":
                self.set_stage("loading")
            elif name == "reading":
                self.set_stage("reading", n=data or 0)
            return
        ev = payload
        if ev.kind == "sources":
            tx.set_sources(t, ev.data or [])
        elif ev.kind == "reasoning":
            self._count_token()
            tx.add_reasoning(t, ev.text)
        elif ev.kind == "answer":
            self._count_token()
            tx.add_answer(t, ev.text)
        elif ev.kind == "refusal":
            tx.add_answer(t, "ⓘ " + ev.text, "refusal")
        elif ev.kind == "error":
            tx.add_answer(t, "⚠ " + self.tr.message(ev.text), "error")
        elif ev.kind == "done":
            self._done(t, ev.data)

    def _done(self, t: int, result) -> None:
        self.set_stage("")
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
        self.warmer.schedule()   # a next question typed while this one was answered
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
        self.app.chats.touched(self.app.kb_name, self.conversation, self.questions.get(t, ""))
        self.app.chats_pane.refresh(self.app.kb_name, self.conversation)

    def _on_passages(self, t: int, kind: str, payload) -> None:
        self.set_stage("")
        if kind == "finished":
            if payload:
                self.transcript.show_sources(t, payload, self.tr("chat.passages_header"), snippets=True)
            else:
                self.transcript.add_answer(t, "ⓘ " + self.tr("chat.no_passages"), "refusal")
                self.transcript.finish_turn(t, refused=True)
        elif kind == "failed":
            self.transcript.add_answer(t, "⚠ " + self.tr.message(payload), "error")
            self.transcript.finish_turn(t, refused=True)
        self.job = None
        self.stop_button.configure(state="disabled")
        self.info.configure(text="")

    def _open_source(self, source, n: int) -> None:
        self.app.open_source(source.source, source.page or 1, source.text)

    # -- tools ---------------------------------------------------------------------------
    def _turn_menu_items(self, t: int) -> list[tuple[str, object]]:
        """Right-click menu of turn ``t``: copy its answer, ask its question again."""
        return [(self.tr("chat.copy_this"), lambda: self.copy_answer(t)),
                (self.tr("chat.regenerate"), lambda: self.regenerate(t))]

    def copy_answer(self, t: int | None = None) -> str:
        """Put turn ``t``'s answer (default: the last answer) on the clipboard; return it."""
        text = self.transcript.answers.get(t, "") if t is not None else self.last_answer
        if text:
            self.clipboard_clear()
            self.clipboard_append(text)
            self.info.configure(text=self.tr("chat.copied"))
        return text

    def export(self) -> None:
        """Export the current conversation to a Markdown file (worker)."""
        kb = self.app.kb_name
        path = filedialog.asksaveasfilename(parent=self, defaultextension=".md", initialfile=f"{kb}.md",
                                            filetypes=[("Markdown", "*.md")])
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> None:
        kb, conv = self.app.kb_name, self.conversation

        def on_event(kind, payload):
            if kind == "finished":
                self.info.configure(text=self.tr("chat.exported", path=payload))
            elif kind == "failed":
                self.app.show_error(payload)
        self.app.dispatcher.submit("export", lambda emit, cancel:
                                   self.app.services.answers.export_markdown(kb, path, chat_id=conv), on_event)

    def clear_history(self) -> None:
        """Forget the current conversation (asks first)."""
        from tkinter import messagebox

        kb, conv = self.app.kb_name, self.conversation
        if not messagebox.askyesno(self.tr("chat.clear"), self.tr("chat.clear_confirm", kb=kb), parent=self):
            return
        self.transcript.clear()
        self.questions.clear()
        self.welcome.show(kb)
        self.app.dispatcher.submit("clear", lambda emit, cancel: self.app.services.answers.clear_history(
            kb, chat_id=conv), lambda kind, payload: kind == "failed" and self.app.show_error(payload))

    def load_history(self, kb: str, conversation: str = "") -> None:
        """Show the saved conversation ``conversation`` of ``kb`` (read on a worker)."""
        if self.job is not None and self.job_kb == kb and conversation == self.conversation:
            return  # a question about this chat is streaming: the view is already current
        self.cancel_for_switch()
        self.warmer.drop()   # a draft warmed for the other chat's sources and history
        self.conversation = conversation
        self.transcript.clear()
        self.questions.clear()
        self.info.configure(text="")
        self.last_answer, self.last_result = "", None

        def on_event(kind, payload):
            if kind == "finished" and kb == self.app.kb_name and conversation == self.conversation:
                for record in payload:
                    self._render_record(record)
                if payload:
                    self.welcome.hide()
                    self.transcript.note(self.tr("chat.history_loaded", n=len(payload)))
                else:
                    self.welcome.show(kb)
            elif kind == "failed":
                log.warning("history of %s: %s", kb, payload)
        self.app.dispatcher.submit("history", lambda emit, cancel: self.app.services.answers.history(
            kb, chat_id=conversation), on_event)

    def _render_record(self, r: dict) -> None:
        """One saved turn: ``{"question", "answer", "reasoning"?, "sources"?, "refused"?,
        "cited_inferred"?, "citations"?}``: the refusal mark, the supporting sentences and the
        notes come back as they were shown live."""
        from types import SimpleNamespace

        question = r.get("question") or (r.get("content") if r.get("role") == "user" else None)
        if question is None:
            return
        t = self.transcript.start_turn(question)
        self.questions[t] = question
        srcs = [SimpleNamespace(n=s.get("n", i + 1), source=s.get("source", ""), page=s.get("page"),
                                text=s.get("text", ""), score=s.get("score", 0.0), section=s.get("section", ""))
                for i, s in enumerate(r.get("sources") or []) if isinstance(s, dict)]
        self.transcript.set_sources(t, srcs)
        if r.get("reasoning"):
            self.transcript.add_reasoning(t, r["reasoning"])
        refused = bool(r.get("refused"))
        answer = r.get("answer", "")
        if refused:
            self.transcript.add_answer(t, "ⓘ " + answer, "refusal")
        else:
            self.transcript.add_answer(t, answer, "answer")
        self.transcript.set_citations(t, [SimpleNamespace(
            n=c.get("n"), verified=bool(c.get("verified")), source=c.get("source", ""), page=c.get("page"),
            quote=c.get("quote", ""), moved_from=c.get("moved_from")) for c in r.get("citations") or []
            if isinstance(c, dict) and c.get("n") is not None])   # the supporting sentences come back too
        note = self.tr("chat.cited_inferred") if r.get("cited_inferred") and not refused else ""
        self.transcript.finish_turn(t, refused=refused, note=note)
        self.last_answer = answer
