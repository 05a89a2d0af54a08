"""Several conversations per knowledge base: the list (``history/chats.json``) and its side pane.

A conversation is ``{"id", "title"}``; id ``""`` is the knowledge base's first conversation
(the history file it always had), others are ``c`` + 8 hex digits. The turns themselves live
in the answer service's history files (``models.answer.history_file(dir, kb, id)``).
A new conversation is titled by its first question.

Threads: :class:`ChatStore` reads/writes a small JSON file on the Tk thread (a few hundred
bytes); deleting a conversation's turns runs on a worker.
"""
from __future__ import annotations

import json
import logging
import tkinter as tk
import uuid
from pathlib import Path
from tkinter import messagebox, ttk

from app.dialogs import ask_string

log = logging.getLogger(__name__)
TITLE_CHARS = 28


class ChatStore:
    """The conversations of every knowledge base, in creation order.

    Args:
        path: the JSON file (created on first write).
        default_title: the title of a conversation nobody has asked in yet.
    """

    def __init__(self, path: Path, default_title: str) -> None:
        self.path, self.default_title = Path(path), default_title
        try:
            self.data: dict[str, list[dict]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, ensure_ascii=False, indent=1), encoding="utf-8")
        except OSError as e:
            log.warning("cannot save %s: %s", self.path, e)

    def list(self, kb: str) -> list[dict]:
        """The conversations of ``kb`` (its first one, id "", always exists)."""
        chats = self.data.setdefault(kb, [])
        if not chats:
            chats.append({"id": "", "title": self.default_title})
        return chats

    def new(self, kb: str) -> dict:
        chat = {"id": "c" + uuid.uuid4().hex[:8], "title": self.default_title}
        self.list(kb).append(chat)
        self._save()
        return chat

    def rename(self, kb: str, chat_id: str, title: str) -> None:
        for c in self.list(kb):
            if c["id"] == chat_id:
                c["title"] = title.strip()[:80] or c["title"]
        self._save()

    def delete(self, kb: str, chat_id: str) -> None:
        self.data[kb] = [c for c in self.list(kb) if c["id"] != chat_id]
        self.list(kb)
        self._save()

    def touched(self, kb: str, chat_id: str, question: str) -> None:
        """A question was answered in ``chat_id``: an untitled conversation takes its words as title."""
        for c in self.list(kb):
            if c["id"] == chat_id and c["title"] == self.default_title and question.strip():
                q = " ".join(question.split())
                c["title"] = q[:TITLE_CHARS] + ("…" if len(q) > TITLE_CHARS else "")
                self._save()


class ChatsPane(ttk.Frame):
    """The side pane: the current knowledge base's conversations; new / rename / delete.

    Args:
        parent: container (the knowledge-base column).
        app: the :class:`app.main.App` (``chats``: the :class:`ChatStore`, ``select_chat``).
    """

    def __init__(self, parent, app) -> None:
        super().__init__(parent)
        self.app, self.tr = app, app.tr
        self.ids: list[str] = []
        head = ttk.Frame(self)
        head.pack(fill="x")
        ttk.Label(head, text=self.tr("chats.title"), style="Heading.TLabel").pack(side="left")
        self.buttons = []
        for key, cmd in (("chats.delete", self.delete), ("chats.rename", self.rename), ("chats.new", self.new)):
            b = ttk.Button(head, text=self.tr(key), command=cmd, style="Compact.TButton")
            b.pack(side="right", padx=(4, 0))
            self.buttons.append(b)
        self.listbox = tk.Listbox(self, height=3, activestyle="none", exportselection=False, font="TkDefaultFont")
        from app.theme import style_text

        style_text(self.listbox, app.palette, panel=True)
        self.listbox.pack(fill="x", pady=(4, 0))
        self.listbox.bind("<<ListboxSelect>>", self._on_select)
        self.listbox.bind("<Double-1>", lambda e: self.rename())

    def refresh(self, kb: str, current: str) -> None:
        """Show ``kb``'s conversations, ``current`` selected."""
        chats = self.app.chats.list(kb)
        self.ids = [c["id"] for c in chats]
        self.listbox.delete(0, "end")
        for c in chats:
            self.listbox.insert("end", c["title"])
        i = self.ids.index(current) if current in self.ids else 0
        self.listbox.selection_clear(0, "end")
        self.listbox.selection_set(i)
        self.listbox.see(i)

    def _on_select(self, _event=None) -> None:
        sel = self.listbox.curselection()
        if sel and self.ids[sel[0]] != self.app.chat.conversation:
            self.app.select_chat(self.ids[sel[0]])

    def new(self) -> str:
        """Start a new conversation in the current knowledge base and show it; returns its id."""
        chat = self.app.chats.new(self.app.kb_name)
        self.app.select_chat(chat["id"])
        return chat["id"]

    def rename(self, title: str | None = None) -> None:
        kb, chat_id = self.app.kb_name, self.app.chat.conversation
        old = next((c["title"] for c in self.app.chats.list(kb) if c["id"] == chat_id), "")
        title = title or ask_string(self, self.tr, self.tr("chats.rename"), self.tr("chats.rename_prompt"), old)
        if title:
            self.app.chats.rename(kb, chat_id, title)
            self.refresh(kb, chat_id)

    def delete(self, confirm: bool = True) -> None:
        """Delete the current conversation and its turns (asks first), then show the first one left."""
        kb, chat_id = self.app.kb_name, self.app.chat.conversation
        title = next((c["title"] for c in self.app.chats.list(kb) if c["id"] == chat_id), "")
        if confirm and not messagebox.askyesno(self.tr("chats.delete"), self.tr("chats.delete_confirm", title=title),
                                               parent=self):
            return
        self.app.chats.delete(kb, chat_id)
        answers = self.app.services.answers

        def on_event(kind, payload):
            if kind == "failed":
                self.app.show_error(payload)
            if kb == self.app.kb_name:
                self.app.select_chat(self.app.chats.list(kb)[0]["id"], reload=True)
        self.app.chat.cancel_for_switch()
        self.app.dispatcher.submit("chat-delete", lambda emit, cancel: answers.clear_history(
            kb, chat_id=chat_id), on_event)
