"""Welcome panel above an empty conversation: three example questions made from the current
knowledge base's section titles (document names when it has none); clicking one asks it.

Threads: :meth:`Welcome.show` reads the sections on a worker (``kb.chunks``); the buttons
are made on the Tk thread when the reply arrives.
"""
from __future__ import annotations

import re
from pathlib import Path
from tkinter import ttk

TEMPLATES = {"zh": ("「{t}」讲了什么？", "《{t}》的主要内容是什么？"),
             "en": ("What does “{t}” say?", "What is “{t}” about?")}


def _title(section: str) -> str:
    """The last part of a heading path, without numbering noise: "第一章 总纲 > 第一条" -> "第一条"."""
    last = section.split(">")[-1].strip()
    return re.sub(r"\s+", " ", last)[:40]


def example_questions(sections: list[str], documents: list[str], lang: str, n: int = 3) -> list[str]:
    """Up to ``n`` questions: one per distinct section title, then per document name.

    >>> example_questions(["总纲 > 第一条", "总纲 > 第一条", "国家机构"], ["宪法.pdf"], "zh")
    ['「第一条」讲了什么？', '「国家机构」讲了什么？', '《宪法》的主要内容是什么？']
    """
    about_section, about_doc = TEMPLATES.get(lang, TEMPLATES["en"])
    seen, out = set(), []
    for s in sections:
        t = _title(s)
        if len(t) >= 2 and t not in seen:
            seen.add(t)
            out.append(about_section.format(t=t))
        if len(out) == n:
            return out
    for d in documents:
        t = Path(d).stem
        if t and t not in seen:
            seen.add(t)
            out.append(about_doc.format(t=t))
        if len(out) == n:
            break
    return out


def read_sections(kb_service, kb: str, limit: int = 60) -> tuple[list[str], list[str]]:
    """Section titles (at most ``limit``, spread over the documents) and document names of ``kb``.
    Worker thread."""
    sections, docs = [], []
    for doc, chunks in kb_service.chunks(kb):
        docs.append(doc.name or Path(doc.source).name)
        sections += [h.section for h in chunks if h.section][: max(3, limit // 10)]
        if len(sections) >= limit:
            break
    return sections, docs


class Welcome(ttk.Frame):
    """"Try asking" + up to three example-question buttons; hidden once a question is asked."""

    def __init__(self, parent, app, on_pick) -> None:
        super().__init__(parent, padding=(4, 4, 4, 8))
        self.app, self.on_pick = app, on_pick
        self.title = ttk.Label(self, text=app.tr("welcome.title"), style="Heading.TLabel")
        self.title.pack(anchor="w")
        self.hint = ttk.Label(self, text=app.tr("welcome.hint"), style="Muted.TLabel", wraplength=520)
        self.hint.pack(anchor="w", pady=(2, 6))
        self.buttons: list[ttk.Button] = []
        self.questions: list[str] = []

    def show(self, kb: str) -> None:
        """Read ``kb``'s sections on a worker, then show the panel with its example questions."""
        kb_service, lang = self.app.services.kb, self.app.tr.lang

        def on_event(kind, payload):
            if kind != "finished" or kb != self.app.kb_name or self.app.chat.transcript.turn_count():
                return
            sections, docs = payload
            self._fill(example_questions(sections, docs, lang))
        if hasattr(kb_service, "chunks"):
            self.app.dispatcher.submit("welcome", lambda emit, cancel: read_sections(kb_service, kb), on_event)
        else:
            self._fill([])

    def _fill(self, questions: list[str]) -> None:
        for b in self.buttons:
            b.destroy()
        self.questions = questions
        self.buttons = [ttk.Button(self, text=q, command=lambda q=q: self.on_pick(q)) for q in questions]
        for b in self.buttons:
            b.pack(anchor="w", pady=2)
        self.hint.configure(text=self.app.tr("welcome.hint" if questions else "welcome.empty"))
        if not self.winfo_ismapped():
            self.pack(fill="x", before=self.app.chat.transcript)

    def hide(self) -> None:
        self.pack_forget()
