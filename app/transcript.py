"""The chat history view: a Text widget with one *turn* per question.

A turn is: the question; the reasoning (``<think>``) folded under a clickable header, dimmed
and elided until expanded; the answer (or a refusal / error, styled differently); the
sources. ``[n]`` citations in the answer and in the sources list carry the ``cite`` tag;
clicking one calls ``on_cite(source, n)`` with the :class:`models.answer.Source`.

Threads: Tk thread only (the chat panel feeds it events drained from the worker queue).
Tags per turn T: ``think_T`` (reasoning text), ``thinkhdr_T`` (its header), ``ans_T``
(answer text), ``src_T`` (sources lines).
"""
from __future__ import annotations

import re
import tkinter as tk
from pathlib import Path
from tkinter import ttk

CITE_RE = r"\[[0-9]+\]"
FOLDED, OPEN = "▸", "▾"


class Transcript(ttk.Frame):
    """Scrollable, read-only conversation view.

    Args:
        parent: container.
        tr: the :class:`app.i18n.Strings` lookup.
        on_cite: called as ``on_cite(source, n)`` when a citation is clicked.
    """

    def __init__(self, parent, tr, on_cite, palette: dict | None = None, menu=None) -> None:
        super().__init__(parent)
        self.tr, self.on_cite, self.menu_items = tr, on_cite, menu
        self.palette = palette or {}
        self.turn = 0
        self.sources: dict[int, dict[int, object]] = {}
        self.citations: dict[int, dict[int, object]] = {}
        self.answers: dict[int, str] = {}
        self.text = tk.Text(self, wrap="word", state="disabled", padx=10, pady=8, relief="flat", width=40, height=10,
                            font="TkTextFont", cursor="arrow", spacing1=2, spacing3=2)
        sb = ttk.Scrollbar(self, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=sb.set)
        self.text.pack(side="left", fill="both", expand=True)
        sb.pack(side="left", fill="y")
        self.recolor(self.palette)
        self.text.bind("<Button-3>", self._menu_clicked)

    def recolor(self, palette: dict) -> None:
        """Colour the view and its tags from a :data:`app.theme.PALETTES` entry (theme switch)."""
        from app.theme import PALETTES, style_text

        self.palette = p = {**PALETTES["light"], **(palette or {})}
        style_text(self.text, p)
        t = self.text
        t.configure(padx=14, pady=10, spacing1=3, spacing3=3)
        t.tag_configure("who", foreground=p["question"], font=("TkDefaultFont", 10, "bold"), spacing1=10)
        t.tag_configure("question", foreground=p["question"], lmargin1=6, lmargin2=6, spacing1=10)
        t.tag_configure("thinkhdr", foreground=p["dim"], font=("TkDefaultFont", 9, "italic"))
        t.tag_configure("reasoning", foreground=p["dim"], lmargin1=18, lmargin2=18, font=("TkDefaultFont", 9))
        t.tag_configure("answer", foreground=p["answer"], lmargin1=6, lmargin2=6)
        t.tag_configure("refusal", foreground=p["refusal_fg"], background=p["refusal_bg"], lmargin1=6,
                        lmargin2=6, font=("TkDefaultFont", 10, "italic"))
        t.tag_configure("error", foreground=p["error"], lmargin1=6, lmargin2=6)
        t.tag_configure("note", foreground=p["muted"], font=("TkDefaultFont", 9, "italic"))
        t.tag_configure("srchdr", foreground=p["muted"], font=("TkDefaultFont", 9, "bold"), spacing1=6)
        t.tag_configure("source", foreground=p["fg"], lmargin1=12, lmargin2=24, font=("TkDefaultFont", 9))
        t.tag_configure("score", foreground=p["muted"], font=("TkDefaultFont", 9))
        t.tag_configure("quote", foreground=p["quote"], lmargin1=12, lmargin2=24, font=("TkDefaultFont", 9, "italic"))
        t.tag_configure("unverified", foreground=p["refusal_fg"], lmargin1=12, lmargin2=24, font=("TkDefaultFont", 9))
        t.tag_configure("cite", foreground=p["accent"], underline=True)
        t.tag_raise("cite")
        t.tag_bind("cite", "<Button-1>", self._cite_clicked)
        t.tag_bind("cite", "<Enter>", lambda e: t.configure(cursor="hand2"))
        t.tag_bind("cite", "<Leave>", lambda e: t.configure(cursor="arrow"))
        t.tag_bind("thinkhdr", "<Button-1>", self._toggle_clicked)

    # -- writing -------------------------------------------------------------------------
    def _insert(self, index: str, text: str, *tags: str) -> None:
        at_bottom = self.text.yview()[1] > 0.98
        self.text.configure(state="normal")
        self.text.insert(index, text, tags)
        self.text.configure(state="disabled")
        if at_bottom:
            self.text.see("end")

    def clear(self) -> None:
        self.text.configure(state="normal")
        self.text.delete("1.0", "end")
        self.text.configure(state="disabled")
        self.sources.clear()
        self.citations.clear()
        self.answers.clear()

    def turn_count(self) -> int:
        """Turns shown now (0: an empty conversation)."""
        return len(self.answers)

    def note(self, text: str) -> None:
        """A grey line between turns (e.g. "history loaded")."""
        self._insert("end-1c", text + "\n", "note")

    def start_turn(self, question: str) -> int:
        """Begin a turn for ``question``; return its number T."""
        self.turn += 1
        t = self.turn
        if self.text.index("end-1c") != "1.0":
            self._insert("end-1c", "\n")
        self._insert("end-1c", self.tr("chat.you") + "  ", "who", f"turn_{t}")
        self._insert("end-1c", question + "\n", "question")
        self.sources[t], self.answers[t] = {}, ""
        return t

    def set_sources(self, t: int, sources) -> None:
        self.sources[t] = {s.n: s for s in sources}

    def show_retrieved(self, t: int, sources, header: str) -> None:
        """The sources as soon as retrieval ends (before the model has read them), under the
        question; replaced by the final, numbered list when the turn finishes."""
        if not sources or self.text.tag_ranges(f"pre_{t}"):
            return
        self.sources[t] = {s.n: s for s in sources}
        self._insert("end-1c", header + "\n", "srchdr", f"pre_{t}")
        for s in sources:
            self._source_line(t, s, sources, extra=(f"pre_{t}",))

    def add_reasoning(self, t: int, delta: str) -> None:
        tag = f"think_{t}"
        if not self.text.tag_ranges(tag):
            at = self.text.index(f"ans_{t}.first") if self.text.tag_ranges(f"ans_{t}") else "end-1c"
            self.text.tag_configure(tag, elide=True)
            self._insert(at, f"{FOLDED} {self.tr('chat.reasoning')}\n", "thinkhdr", f"thinkhdr_{t}")
            self._insert(f"thinkhdr_{t}.last", delta, "reasoning", tag)
            return
        self._insert(f"{tag}.last", delta, "reasoning", tag)

    def add_answer(self, t: int, delta: str, style: str = "answer") -> None:
        """Append answer text (``style``: answer | refusal | error); tag its citations."""
        if not self.text.tag_ranges(f"ans_{t}") and self.text.tag_ranges(f"think_{t}"):
            self._insert(f"think_{t}.last", "\n", "reasoning", f"think_{t}")
        self._insert("end-1c", delta, style, f"ans_{t}")
        self.answers[t] = self.answers.get(t, "") + delta
        self._tag_citations(f"ans_{t}")

    def _tag_citations(self, region: str) -> None:
        ranges = self.text.tag_ranges(region)
        if not ranges:
            return
        start, end = ranges[0], ranges[-1]
        self.text.tag_remove("cite", start, end)
        count = tk.IntVar()
        idx = self.text.search(CITE_RE, start, end, regexp=True, count=count)
        while idx:
            stop = f"{idx}+{count.get()}c"
            self.text.tag_add("cite", idx, stop)
            idx = self.text.search(CITE_RE, stop, end, regexp=True, count=count)

    def set_citations(self, t: int, citations) -> None:
        """The checked citations of turn ``t`` (:class:`models.citations.Citation` list)."""
        self.citations[t] = {c.n: c for c in citations or []}

    def replace_answer(self, t: int, text: str, style: str = "answer") -> None:
        """Put ``text`` in place of turn ``t``'s answer (citations moved, or the answer turned
        out to be the model's refusal: ``style`` "refusal")."""
        ranges = self.text.tag_ranges(f"ans_{t}")
        if not ranges:
            return self.add_answer(t, text, style)
        start = self.text.index(ranges[0])
        self.text.configure(state="normal")
        self.text.delete(ranges[0], ranges[-1])
        self.text.insert(start, text, (style, f"ans_{t}"))
        self.text.configure(state="disabled")
        self.answers[t] = text
        self._tag_citations(f"ans_{t}")

    def finish_turn(self, t: int, *, refused: bool = False, note: str = "") -> None:
        """Close turn ``t``: newline, the supporting sentences of its citations and the sources
        list (unless refused), an optional note."""
        pre = self.text.tag_ranges(f"pre_{t}")
        if pre:
            self.text.configure(state="normal")
            self.text.delete(pre[0], pre[-1])
            self.text.configure(state="disabled")
        self._insert("end-1c", "\n")
        sources = self.sources.get(t) or {}
        if self.citations.get(t) and not refused:
            self.show_support(t)
        if sources and not refused:
            self.show_sources(t, list(sources.values()), self.tr("chat.sources"))
        if note:
            self.note(note)

    def show_support(self, t: int) -> None:
        """Under the answer: ``[n] “quote”`` for each verified citation (click: the page with
        the quote highlighted); an unverified one says so."""
        self._insert("end-1c", self.tr("chat.support") + "\n", "srchdr")
        for n, c in self.citations[t].items():
            if not c.verified:
                self._insert("end-1c", self.tr("chat.unverified", n=n) + "\n", "unverified")
                continue
            where = Path(c.source).name + (" · " + self.tr("chat.page", page=c.page) if c.page else "")
            self._insert("end-1c", f"[{n}]", "quote", "cite", f"src_{t}")
            self._insert("end-1c", f" “{c.quote}” — {where}\n", "quote")
            if c.moved_from:
                self._insert("end-1c", self.tr("chat.moved", old=c.moved_from, new=n) + "\n", "note")

    def show_sources(self, t: int, sources, header: str, *, snippets: bool = False) -> None:
        """List sources as clickable ``[n] file · p. X`` lines (with text snippets if asked)."""
        self.sources[t] = {s.n: s for s in sources}
        self._insert("end-1c", header + "\n", "srchdr")
        for s in sources:
            self._source_line(t, s, sources, snippets=snippets)

    def _source_line(self, t: int, s, sources, *, snippets: bool = False, extra: tuple = ()) -> None:
        """``[n] file · p. X`` (clickable) and its match relative to the best source of the turn."""
        line = f"[{s.n}] {Path(s.source).name}"
        if s.page:
            line += " · " + self.tr("chat.page", page=s.page)
        self._insert("end-1c", line, "source", "cite", f"src_{t}", *extra)
        best = max((float(getattr(x, "score", 0) or 0) for x in sources), default=0.0)
        score = float(getattr(s, "score", 0) or 0)
        if best > 0 and score > 0:
            self._insert("end-1c", "  " + self.tr("chat.score", pct=round(100 * score / best)), "score", *extra)
        if snippets:
            snippet = re.sub(r"\s+", " ", s.text).strip()
            self._insert("end-1c", "\n" + snippet[:220] + ("…" if len(snippet) > 220 else ""), "source", *extra)
        self._insert("end-1c", "\n", *extra)

    # -- clicks --------------------------------------------------------------------------
    def cite_at(self, index: str) -> tuple[int, int] | None:
        """The (turn, n) of the citation covering ``index``, or None."""
        rng = self.text.tag_prevrange("cite", f"{index}+1c")
        if not rng or self.text.compare(rng[1], "<=", index):
            return None
        m = re.match(r"\[(\d+)\]", self.text.get(*rng))
        turn = next((int(n.split("_")[1]) for n in self.text.tag_names(index)
                     if n.startswith(("ans_", "src_"))), None)
        return (turn, int(m.group(1))) if m and turn is not None else None

    def open_citation(self, t: int, n: int) -> bool:
        """Open source ``n`` of turn ``t``; False when the answer cited a missing source."""
        source = self.sources.get(t, {}).get(n)
        if source is None:
            return False
        c = self.citations.get(t, {}).get(n)
        if c is not None and c.verified and c.quote:  # the page holding the quote, the quote lit
            from types import SimpleNamespace

            source = SimpleNamespace(n=n, source=source.source, page=c.page or source.page, text=c.quote,
                                     score=getattr(source, "score", 0.0), section=getattr(source, "section", ""))
        self.on_cite(source, n)
        return True

    def _cite_clicked(self, event) -> str:
        hit = self.cite_at(self.text.index(f"@{event.x},{event.y}"))
        if hit:
            self.open_citation(*hit)
        return "break"

    def toggle_reasoning(self, t: int) -> bool:
        """Fold/unfold the reasoning of turn ``t``; return True when now visible."""
        tag = f"think_{t}"
        if not self.text.tag_ranges(tag):
            return False
        show = bool(int(self.text.tag_cget(tag, "elide") or 0))
        self.text.tag_configure(tag, elide=not show)
        hdr = f"thinkhdr_{t}.first"
        self.text.configure(state="normal")
        self.text.delete(hdr)
        self.text.insert(hdr, OPEN if show else FOLDED, ("thinkhdr", f"thinkhdr_{t}"))
        self.text.configure(state="disabled")
        return show

    def turn_at(self, index: str) -> int | None:
        """The turn whose question, answer or sources cover ``index`` (None between turns)."""
        starts = sorted((int(str(self.text.tag_ranges(f"turn_{t}")[0]).split(".")[0]), t)
                        for t in self.answers if self.text.tag_ranges(f"turn_{t}"))
        line = int(self.text.index(index).split(".")[0])
        before = [t for start, t in starts if start <= line]
        return before[-1] if before else None

    def _menu_clicked(self, event) -> str | None:
        t = self.turn_at(f"@{event.x},{event.y}")
        if t is None or self.menu_items is None:
            return None
        menu = tk.Menu(self.text, tearoff=False)
        for label, command in self.menu_items(t):
            menu.add_command(label=label, command=command)
        menu.tk_popup(event.x_root, event.y_root)
        return "break"

    def _toggle_clicked(self, event) -> str:
        index = self.text.index(f"@{event.x},{event.y}")
        for name in self.text.tag_names(index):
            if name.startswith("thinkhdr_"):
                self.toggle_reasoning(int(name.split("_")[1]))
        return "break"
