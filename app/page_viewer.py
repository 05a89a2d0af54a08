"""In-app page view: a PDF page rendered with PyMuPDF, the cited passage highlighted.

Threads: :func:`render_page` (pure, no tkinter) runs on a worker and returns PNG bytes; the
:class:`PageViewer` turns them into a PhotoImage on the Tk thread. The document on disk is
never modified: highlight annotations go on the in-memory copy PyMuPDF opened.
Non-PDF sources show the passage as text; every source can open in the system viewer.
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import tkinter as tk
from pathlib import Path
from tkinter import ttk

from app.layout import place


def passage_snippets(text: str, min_len: int = 6, max_len: int = 160, limit: int = 12) -> list[str]:
    """The sentences of a chunk, to search for on its page (each cut to ``max_len``).

    >>> passage_snippets("第一条 中华人民共和国是社会主义国家。 Short. A longer English sentence here.")
    ['第一条 中华人民共和国是社会主义国家', 'A longer English sentence here']
    """
    parts = re.split(r"[\n。！？；!?;]|(?<=[a-z\d)])\.\s", re.sub(r"-\n(?=[a-z])", "", text))
    out = []
    for p in parts:
        p = re.sub(r"\s+", " ", p).strip(" .,，、")
        if len(p) >= min_len and p not in out:
            out.append(p[:max_len].strip())
    return out[:limit]


def find_passage(page, text: str, prefix: int = 40) -> list:
    """Rectangles on a PyMuPDF ``page`` covering the passage ``text`` (may be empty).

    Each sentence is searched whole, then whitespace-insensitively (:func:`find_loose`: a
    "第三条　" sentence has U+3000 on the page, line breaks differ); when both fail
    (hyphenation, a formula) its first ``prefix`` characters are searched the same two ways.
    """
    rects = []
    for snippet in passage_snippets(text):
        found = page.search_for(snippet) or find_loose(page, snippet)
        if not found and len(snippet) > prefix:
            found = page.search_for(snippet[:prefix]) or find_loose(page, snippet[:prefix])
        rects.extend(found)
    return rects


def find_loose(page, snippet: str) -> list:
    """Rectangles of ``snippet`` on ``page`` ignoring all whitespace on both sides (one
    rectangle per text line it covers), from the page's characters (``get_text("rawdict")``)."""
    import pymupdf

    target = re.sub(r"\s+", "", snippet)
    if not target:
        return []
    chars = []   # (character, bbox, line id) of every non-space character, in reading order
    for b, block in enumerate(page.get_text("rawdict")["blocks"]):
        for li, line in enumerate(block.get("lines", [])):
            for span in line["spans"]:
                chars += [(c["c"], c["bbox"], (b, li)) for c in span["chars"] if not c["c"].isspace()]
    at = "".join(c for c, _, _ in chars).find(target)
    if at < 0:
        return []
    lines: dict = {}
    for _, bbox, lid in chars[at:at + len(target)]:
        lines[lid] = lines[lid] | pymupdf.Rect(bbox) if lid in lines else pymupdf.Rect(bbox)
    return list(lines.values())


def render_page(path: str, page: int, passage: str = "", zoom: float = 1.4) -> dict:
    """Render one page with the passage highlighted.

    Args:
        path: a PDF file.
        page: 1-based page number (clamped to the document).
        passage: chunk text to highlight ("" for none).
        zoom: scale (1.0 = 72 dpi).

    Returns:
        ``{"png": bytes, "page": int, "pages": int, "hits": int, "width": px, "height": px}``.

    Raises:
        RuntimeError / FileNotFoundError: from PyMuPDF when the file cannot be opened.
    """
    import pymupdf

    with pymupdf.open(path) as doc:
        number = min(max(1, int(page or 1)), doc.page_count)
        pg = doc[number - 1]
        rects = find_passage(pg, passage) if passage else []
        for r in rects:
            pg.add_highlight_annot(r)
        pix = pg.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), annots=True)
        return {"png": pix.tobytes("png"), "page": number, "pages": doc.page_count, "hits": len(rects),
                "width": pix.width, "height": pix.height}


def open_external(path: str) -> None:
    """Open ``path`` in the system's viewer (argument list, never a shell string)."""
    if sys.platform.startswith("win"):
        os.startfile(path)  # noqa: S606 - the documented Windows way
    elif sys.platform == "darwin":
        subprocess.Popen(["open", path])
    else:
        subprocess.Popen(["xdg-open", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class PageViewer(tk.Toplevel):
    """A window showing one source at one page.

    Attributes:
        source: the file shown. page / pages: 1-based page and page count (PDFs).
        hits: highlight rectangles drawn for the passage on this page.
    """

    def __init__(self, app) -> None:
        super().__init__(app.root)
        self.app, self.tr = app, app.tr
        self.source, self.page, self.pages, self.hits, self.passage = "", 0, 0, 0, ""
        self.image = None
        place(self, (760, 900), minimum=(480, 360))
        self._build()
        self.protocol("WM_DELETE_WINDOW", self.withdraw)

    def _build(self) -> None:
        bar = ttk.Frame(self, padding=4)
        bar.pack(fill="x")
        ttk.Button(bar, text="◀", width=3, command=lambda: self.go(self.page - 1)).pack(side="left")
        self.page_label = ttk.Label(bar, text="")
        self.page_label.pack(side="left", padx=6)
        ttk.Button(bar, text="▶", width=3, command=lambda: self.go(self.page + 1)).pack(side="left")
        ttk.Button(bar, text=self.tr("viewer.open_external"),
                   command=lambda: self.source and open_external(self.source)).pack(side="right")
        body = ttk.Frame(self)
        body.pack(fill="both", expand=True)
        self.canvas = tk.Canvas(body, background="#808080", highlightthickness=0)
        ys = ttk.Scrollbar(body, orient="vertical", command=self.canvas.yview)
        xs = ttk.Scrollbar(self, orient="horizontal", command=self.canvas.xview)
        self.canvas.configure(yscrollcommand=ys.set, xscrollcommand=xs.set)
        self.canvas.pack(side="left", fill="both", expand=True)
        ys.pack(side="left", fill="y")
        xs.pack(fill="x")
        self.textview = tk.Text(self.canvas, wrap="word", padx=12, pady=12, font="TkTextFont")
        self.textview.tag_configure("hit", background="#fff176", foreground="#1c1c1c")
        if getattr(self.app, "palette", None):
            from app.theme import style_text

            style_text(self.textview, self.app.palette)
        self.canvas.bind("<MouseWheel>", lambda e: self.canvas.yview_scroll(-e.delta // 120, "units"))
        self.canvas.bind("<Button-4>", lambda e: self.canvas.yview_scroll(-3, "units"))
        self.canvas.bind("<Button-5>", lambda e: self.canvas.yview_scroll(3, "units"))

    def show(self, source: str, page: int, passage: str = "") -> None:
        """Show ``source`` at ``page`` with ``passage`` highlighted (renders on a worker)."""
        self.source, self.passage = source, passage
        self.title(f"{Path(source).name} — TQT-s")
        self.deiconify()
        self.lift()
        if Path(source).suffix.lower() == ".pdf":
            self.go(page)
        else:
            self._show_text(source, passage)

    def go(self, page: int) -> None:
        if not self.source or (self.pages and not 1 <= page <= self.pages):
            return
        self.page_label.configure(text=self.tr("viewer.loading"))
        source, passage = self.source, self.passage
        self.app.dispatcher.submit("render", lambda emit, cancel: render_page(source, page, passage),
                                   lambda kind, payload: self._on_render(source, kind, payload))

    def _on_render(self, source: str, kind: str, payload) -> None:
        if source != self.source:
            return  # a newer source was asked for meanwhile
        if kind == "failed":
            self.page_label.configure(text=self.tr("viewer.cannot_open", error=payload))
            return
        if kind != "finished":
            return
        self.page, self.pages, self.hits = payload["page"], payload["pages"], payload["hits"]
        self.image = tk.PhotoImage(master=self, data=base64.b64encode(payload["png"]).decode("ascii"),
                                   format="png")
        self.canvas.delete("all")
        self.canvas.create_image(0, 0, image=self.image, anchor="nw")
        self.canvas.configure(scrollregion=(0, 0, payload["width"], payload["height"]))
        self.canvas.yview_moveto(0)
        self.page_label.configure(text=self.tr("viewer.page_of", page=self.page, pages=self.pages))

    def _show_text(self, source: str, passage: str) -> None:
        self.page, self.pages, self.hits = 1, 1, 0
        self.canvas.delete("all")
        self.textview.delete("1.0", "end")
        self.textview.insert("1.0", passage or source)
        self.textview.tag_add("hit", "1.0", "end")
        self.hits = 1 if passage else 0
        self.canvas.create_window(0, 0, window=self.textview, anchor="nw", width=720, height=820)
        self.page_label.configure(text=Path(source).name)
