"""Fakes implementing the service contracts (kb.service, models.registry, models.answer) for
the app's UI-logic tests. They behave like the real ones at the interface (threads, cancel,
callbacks, event order) but keep everything in memory and generate scripted text.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from kb.types import DocumentInfo, Hit, IngestResult, KBInfo
from models.answer import AnswerEvent, AnswerResult, Source  # the real types, shared with the fakes


class FakeKB:
    """In-memory knowledge bases; PDFs are read with pymupdf (one chunk per page)."""

    def __init__(self, settings, delay: float = 0.0):
        self.settings, self.delay = settings, delay
        self.kbs: dict[str, dict[str, tuple[DocumentInfo, list[str]]]] = {}
        self.lock = threading.Lock()
        self.embedder_name = "fake"
        self.broken: set[str] = set()
        self.repaired: list[str] = []

    def _kb(self, kb):
        return self.kbs.setdefault(kb or self.settings.default_kb, {})

    def list_kbs(self):
        self._kb(None)
        return [KBInfo(n, n, len(d), sum(i.chunks for i, _ in d.values())) for n, d in self.kbs.items()]

    def create_kb(self, name):
        self._kb(name)
        return KBInfo(name, name)

    def rename_kb(self, old, new):
        self.kbs[new] = self.kbs.pop(old)
        return KBInfo(new, new)

    def delete_kb(self, name):
        self.kbs.pop(name, None)

    def ingest(self, paths, kb=None, *, on_progress=None, on_result=None, cancel=None):
        import pymupdf

        files = [f for p in paths for f in (sorted(Path(p).rglob("*")) if Path(p).is_dir() else [Path(p)])
                 if f.is_file()]
        out = []
        for i, f in enumerate(files):
            if cancel is not None and cancel.is_set():
                break
            time.sleep(self.delay)
            try:
                with pymupdf.open(f) as doc:
                    pages = [p.get_text() for p in doc]
                info = DocumentInfo(str(f), "0" * 64, len(pages), len(pages), f.name)
                with self.lock:
                    self._kb(kb)[str(f)] = (info, pages)
                r = IngestResult(str(f), "added", "", len(pages), len(pages))
            except Exception as e:  # noqa: BLE001
                r = IngestResult(str(f), "failed", f"cannot read {f.name}: {e}")
            out.append(r)
            if on_result:
                on_result(r)
            if on_progress:
                on_progress(i + 1, len(files), f.name)
        return out

    def search(self, query, kb=None, k=None):
        hits = []
        for src, (_info, pages) in self._kb(kb).items():
            for p, text in enumerate(pages, 1):
                if any(w and w in text for w in query.split()):
                    hits.append(Hit(len(hits) + 1, 1.0, src, p, text))
        return hits[: k or 5]

    def reload_embedder(self):
        self.reloads = getattr(self, "reloads", 0) + 1

    def is_relevant(self, hits):
        return bool(hits)

    def documents(self, kb=None):
        return [info for info, _ in self._kb(kb).values()]

    def chunks(self, kb=None):
        """(document, one Hit per page); a page's first line is its section title."""
        for info, pages in list(self._kb(kb).values()):
            yield info, [Hit(p, 0.0, info.source, p, text, section=text.strip().splitlines()[0] if text.strip() else "")
                         for p, text in enumerate(pages, 1)]

    def remove(self, doc, kb=None):
        return self._kb(kb).pop(doc)[0]

    def check(self, kb=None, vector_index=True):
        """Consistency reports (kb.repair.CheckReport); ``broken`` names KBs reported broken."""
        from kb.repair import CheckReport

        names = [kb] if kb else list(self.kbs)
        return [CheckReport(n, len(self._kb(n)), missing_chunks=["/x/broken.pdf"] if n in self.broken else [])
                for n in names]

    def repair(self, kb=None, *, on_progress=None, on_result=None):
        reps = self.check(kb)
        self.broken.difference_update(r.kb for r in reps)
        self.repaired.extend(r.kb for r in reps)
        return [(r, []) for r in reps]


class FakeRegistry:
    def __init__(self, available=True):
        self._available = available

    def available(self):
        return self._available

    embedder_ok = True  # set False: the embedder is not on this machine (first-run panel)

    def embedder_available(self):
        return self.embedder_ok

    def use_embedder(self, folder):
        self.embedder_ok = True
        return Path(folder)

    def list(self):
        return []

    def import_path(self, path, name=None, on_progress=None):
        if on_progress:
            on_progress(1, 1, "done")
        self._available = True
        return type("E", (), {"name": name or Path(path).name})()

    def use(self, name, adapter=None):
        return name

    def load_backend(self, name=None):
        return type("B", (), {"device": "cpu", "name": "fake"})()


class FakeAnswers:
    """Streams a scripted <think> + answer with citation [1], one token per ``delay`` seconds."""

    def __init__(self, kb, delay=0.01, answer="答案见第一条 [1]。The answer cites [1]."):
        self.kb, self.delay, self.script = kb, delay, answer
        self.cited_inferred = False  # set True to mimic a model that cited nothing itself
        self.citations: list = []     # models.citations.Citation objects the next answers carry
        self.refused = False          # True: the model's answer is its own "not in the sources"
        self.rows: dict[tuple[str, str], list[dict]] = {}   # (kb, conversation) -> turns
        self.backend_name = "fake"
        self.loaded = False           # the first answer reports the "loading" stage
        self.warmed: list[str] = []   # drafts passed to warm(), in call order
        self.warm_gate: threading.Event | None = None   # an Event: warm() waits for it or cancel
        self.warming = self.most_warming = 0            # warms running now / at most at once
        self._warm_lock = threading.Lock()

    def passages(self, question, kb=None):
        return [Source(h.rank, h.source, h.page, h.text, h.score) for h in self.kb.search(question, kb)]

    def backend(self):
        return type("B", (), {"device": "cpu"})()

    def set_backend(self, backend):
        pass

    def ask(self, question, kb=None, *, think=None, cancel=None, use_history=True, chat=False, on_stage=None,
            chat_id=""):
        from models.conversation import refusal_text

        stage = on_stage or (lambda name, data=None: None)
        sources = self.passages(question, kb)
        key = (kb or self.kb.settings.default_kb, chat_id)
        if not sources:
            text = refusal_text("", self.kb.settings.ui_language, key[0])
            yield AnswerEvent("sources", data=[])
            yield AnswerEvent("refusal", text=text)
            self.rows.setdefault(key, []).append({"question": question, "answer": text, "sources": [],
                                                  "refused": True})
            yield AnswerEvent("done", data=AnswerResult(question, text, "", [], True, "fake"))
            return
        stage("retrieved", sources)
        if not self.loaded:
            self.loaded = True
            stage("loading", None)
        yield AnswerEvent("sources", data=sources)
        stage("reading", len(sources))
        for word in ["先", "想", "一", "想"]:
            time.sleep(self.delay)
            yield AnswerEvent("reasoning", text=word)
        answer = ""
        for ch in self.script:
            if cancel is not None and cancel.is_set():
                break
            time.sleep(self.delay)
            answer += ch
            yield AnswerEvent("answer", text=ch)
        result = AnswerResult(question, answer, "先想一想", sources, self.refused, "fake", {"ttft_ms": 5, "tok_per_s": 50},
                              cited_inferred=self.cited_inferred, citations=list(self.citations))
        self.rows.setdefault(key, []).append({"question": question, "answer": answer, "reasoning": "先想一想",
                                             "sources": [s.__dict__ for s in sources], "refused": False,
                                             "cited_inferred": self.cited_inferred,
                                             "citations": [c.to_json() for c in self.citations]})
        yield AnswerEvent("done", data=result)

    def warm(self, draft, kb=None, *, cancel=None, think=None, use_history=True, chat=False, chat_id=""):
        """Records the draft (``warmed``); while ``warm_gate`` (an Event) is unset it holds the
        worker until the gate opens or ``cancel`` is set, like a long prefill."""
        with self._warm_lock:
            self.warmed.append(draft)
            self.warming += 1
            self.most_warming = max(self.most_warming, self.warming)
        try:
            gate = self.warm_gate
            while gate is not None and not gate.is_set() and not (cancel is not None and cancel.is_set()):
                gate.wait(0.01)
            return {"sources": len(self.passages(draft, kb)), "cancelled": bool(cancel is not None and cancel.is_set())}
        finally:
            with self._warm_lock:
                self.warming -= 1

    def history(self, kb=None, chat_id=""):
        return list(self.rows.get((kb or self.kb.settings.default_kb, chat_id), []))

    def clear_history(self, kb=None, chat_id=""):
        self.rows.pop((kb or self.kb.settings.default_kb, chat_id), None)

    def export_markdown(self, kb, path, chat_id=""):
        rows = self.history(kb, chat_id)
        Path(path).write_text("\n".join(f"## {r['question']}\n\n{r['answer']}" for r in rows), encoding="utf-8")
        return Path(path)


# -- GUI test helpers ----------------------------------------------------------------------
def make_pdf(path, pages: list[str]):
    """Write a PDF at ``path`` with one page per text (CJK font), return ``path``."""
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_text((72, 72), text, fontname="china-s", fontsize=12)
    doc.save(path)
    return path


def pump(root, until=lambda: False, timeout: float = 300.0, step: float = 0.005) -> bool:
    """Run the Tk event loop (``root.update()``) until ``until()`` is true or ``timeout`` s pass
    (a generous deadline: only a failing test waits that long; the suite runs on busy machines)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        root.update()
        if until():
            return True
        time.sleep(step)
    root.update()
    return bool(until())


def simulate_drop(root, paths: list[str], target: str = ".") -> str:
    """Drop ``paths`` on widget ``target`` through tkdnd's own generic Tcl handlers.

    The same procs the X11 XDND code calls (tkdnd_generic.tcl): SetDroppedData, HandleEnter
    (drop_target drag_source typelist codelist actionlist pressedkeys), HandlePosition
    (drop_target drag_source pressedkeys rootX rootY), HandleDrop (... rootX rootY time).

    Returns:
        the action tkdnd returned from the drop ("copy" when accepted).
    """
    tk = root.tk
    data = tk.call("list", *paths)
    x, y = root.winfo_rootx() + 50, root.winfo_rooty() + 50
    tk.call("tkdnd::generic::SetDroppedData", data)
    tk.call("tkdnd::generic::HandleEnter", target, "0x1", ("text/uri-list",), ("0",), ("copy",), ())
    tk.call("tkdnd::generic::HandlePosition", target, "0x1", (), x, y)
    return str(tk.call("tkdnd::generic::HandleDrop", target, "0x1", (), x, y, 0))


def click_text_index(text, index: str) -> None:
    """Click a Text widget at ``index`` the way a user does: pointer motion, press, release
    (Text tag bindings dispatch on the ``current`` mark, which motion events move)."""
    text.see(index)
    text.update()
    x, y, _w, h = text.bbox(index)
    for event in ("<Motion>", "<Button-1>", "<ButtonRelease-1>"):
        text.event_generate(event, x=x + 2, y=y + h // 2)


def screenshot(widget, path) -> str:
    """Save a PNG of ``widget``'s window area from the X display (Pillow's xcb grabber)."""
    import os

    from PIL import ImageGrab

    widget.update()
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    box = (x, y, x + widget.winfo_width(), y + widget.winfo_height())
    ImageGrab.grab(bbox=box, xdisplay=os.environ.get("DISPLAY")).save(path)
    return str(path)
