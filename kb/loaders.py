"""Document loaders: file extension -> loader -> :class:`LoadedDocument` (blocks of text/tables).

- PDF (PyMuPDF): text per page (1-based page numbers), ruled tables via ``page.find_tables()``
  as Markdown rows (their text removed from the page text), bookmarks as section path, pages
  without a text layer through OCR (:mod:`kb.ocr`).
- DOCX (python-docx): paragraphs and tables in document order, merged cells once, heading path
  from Heading styles; docx has no pages (page=None). A docx with no text has its images OCR'd.
- TXT / MD: utf-8 (with or without BOM), else detected by charset-normalizer (gb18030, big5...).
- PNG / JPEG: one image, OCR'd.

Before parsing, :func:`load` reads the file's first bytes (:func:`sniff`): the real type decides
the loader (a PNG named .pdf is OCR'd as an image; an OLE2 .doc named .docx gets the .doc
message), and a .docx's zip directory is checked for its unpacked size and member count before
python-docx opens it (a zip bomb is refused in milliseconds, see :func:`check_zip`).

Every problem a user can fix raises :class:`LoaderError` with one line: what is wrong, what to do.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kb import ocr as ocr_mod
from kb.guards import MAX_UNCOMPRESSED_MB, LoaderError, check_zip, os_error_line, sniff  # noqa: F401
from kb.guards import NAMES as _NAMES
from kb.types import Block, Message

#: Pages with fewer characters than this (and an image) are sent to OCR.
OCR_MIN_CHARS = 50
_CJK = r"\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])\s*\n\s*(?=[{_CJK}])")


@dataclass
class LoadedDocument:
    """A loaded file: its blocks in reading order plus counts for the ingest report."""

    path: Path
    blocks: list[Block]
    pages: int = 1
    ocr_pages: int = 0
    warnings: list[str] = field(default_factory=list)


def clean_text(text: str) -> str:
    """Join hard line breaks: none between two CJK characters, a space elsewhere.

    >>> clean_text("中华人民\\n共和国 is\\na country")
    '中华人民共和国 is a country'
    """
    text = _CJK_BREAK.sub("", text.replace("\r\n", "\n").replace("\x00", ""))
    return re.sub(r"[ \t]*\n[ \t]*", " ", text).strip()


def table_markdown(rows: list[list[str]]) -> str:
    """Markdown table from rows of cell strings (first row is the header); '|' escaped."""
    rows = [[(c or "").replace("\n", " ").replace("|", "/").strip() for c in r] for r in rows if any(r)]
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def load_image(path: Path, *, ocr_engine: str = "auto", ocr_languages: str = "chi_sim+eng",
               on_page: Callable[[int, int], None] | None = None, **_: object) -> LoadedDocument:
    """OCR one PNG/JPEG image -> a one-page document.

    Raises:
        LoaderError: no OCR engine, or no text recognised.
    """
    kind = _NAMES[sniff(path)]
    named = f" (named {Path(path).suffix})" if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg") else ""
    try:
        engine = ocr_mod.get_engine(ocr_engine, ocr_languages)
    except ocr_mod.OCRUnavailable as e:
        raise LoaderError(Message("image_no_ocr", "this is {kind}{named}; its text can only be read by OCR: {error}",
                                  kind=kind, named=named, error=str(e))) from None
    text = clean_text(engine.image_to_text(Path(path).read_bytes()).replace("\n", "\n\n"))
    if on_page:
        on_page(1, 1)
    if not text:
        raise LoaderError(Message("image_no_text", "this is {kind}{named} and OCR found no text in it",
                                  kind=kind, named=named))
    return LoadedDocument(Path(path), [Block(text, 1, "")], pages=1, ocr_pages=1)


# -- PDF ------------------------------------------------------------------------------------
def _toc_sections(doc) -> dict[int, str]:
    """Map 1-based page -> bookmark path ("A > B") of the last bookmark at or before it."""
    toc = doc.get_toc(simple=True)
    if not toc:
        return {}
    stack: list[str] = []
    starts: list[tuple[int, str]] = []
    for level, title, page in toc:
        stack = stack[: max(level - 1, 0)] + [" ".join(str(title).split())]
        if page >= 1:
            starts.append((page, " > ".join(stack)))
    out, j, current = {}, 0, ""
    starts.sort(key=lambda s: s[0])
    for p in range(1, doc.page_count + 1):
        while j < len(starts) and starts[j][0] <= p:
            current = starts[j][1]
            j += 1
        out[p] = current
    return out


def _has_rules(page) -> bool:
    """Cheap gate for the line-based table finder: at least 2 horizontal and 2 vertical rules."""
    h = v = 0
    for path in page.get_cdrawings():
        for it in path.get("items", ()):
            if it[0] in ("re", "qu"):
                h, v = h + 2, v + 2
            elif it[0] == "l":
                (x1, y1), (x2, y2) = it[1], it[2]
                h += abs(y1 - y2) < 1
                v += abs(x1 - x2) < 1
    return h >= 2 and v >= 2


def _pdf_page_blocks(page, number: int, section: str) -> list[Block]:
    """Text blocks in content order with each ruled table (Markdown) in place of its text."""
    tables = []
    if _has_rules(page):
        try:  # use_layout=False: the ONNX layout model costs ~1 s/page (README kb)
            tables = [t for t in page.find_tables(use_layout=False).tables if t.row_count > 1]
        except Exception:  # a table finder failure must not lose the page text
            tables = []
    rects = [page.rect.__class__(t.bbox) for t in tables]
    placed: set[int] = set()
    blocks: list[Block] = []
    for x0, y0, x1, y1, text, _no, btype in page.get_text("blocks"):
        if btype != 0:
            continue
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inside = [i for i, r in enumerate(rects) if r.x0 <= cx <= r.x1 and r.y0 <= cy <= r.y1]
        if inside:
            for i in inside:
                if i not in placed:
                    placed.add(i)
                    blocks.append(Block(table_markdown(tables[i].extract()), number, section, "table"))
            continue
        text = clean_text(text)
        if text:
            blocks.append(Block(text, number, section))
    for i, t in enumerate(tables):
        if i not in placed:
            blocks.append(Block(table_markdown(t.extract()), number, section, "table"))
    return [b for b in blocks if b.text]


def load_pdf(path: Path, *, ocr_engine: str = "auto", ocr_languages: str = "chi_sim+eng",
             on_page: Callable[[int, int], None] | None = None) -> LoadedDocument:
    """Load a PDF page by page (see module docstring).

    Args:
        path: the PDF.
        ocr_engine / ocr_languages: as in settings (``ocr_engine``, ``ocr_languages``).
        on_page: called with (pages done, pages total) after each page.

    Raises:
        LoaderError: corrupt/truncated or password-protected PDF, or no text and no OCR.
    """
    import pymupdf

    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as e:
        raise LoaderError(Message("pdf_unopenable", "the PDF is damaged (corrupt or truncated) and cannot be "
                                  "opened ({error}); re-download it or re-save it from a PDF viewer",
                                  error=str(e))) from None
    with doc:
        repaired = bool(getattr(doc, "is_repaired", False))
        if doc.needs_pass and not doc.authenticate(""):
            raise LoaderError(Message("pdf_password", "the PDF is password-protected; remove the password "
                                      "(e.g. print it to a new PDF) and ingest again"))
        sections = _toc_sections(doc)
        out = LoadedDocument(Path(path), [], pages=doc.page_count)
        need_ocr: list[int] = []
        try:
            for i, page in enumerate(doc):
                blocks = _pdf_page_blocks(page, i + 1, sections.get(i + 1, ""))
                if sum(len(b.text) for b in blocks) < OCR_MIN_CHARS and page.get_images():
                    need_ocr.append(i)
                out.blocks.extend(blocks)
                if on_page:
                    on_page(i + 1, doc.page_count)
        except RuntimeError as e:  # MuPDF errors on damaged page streams
            raise LoaderError(Message("pdf_page_damaged", "the PDF is damaged at page {page} ({error}); "
                                      "re-download or re-save it from a PDF viewer", page=i + 1,
                                      error=str(e))) from None
        if need_ocr:
            _ocr_pdf_pages(doc, need_ocr, sections, out, ocr_engine, ocr_languages)
    if not any(b.text.strip() for b in out.blocks):
        if repaired:
            raise LoaderError(Message("pdf_repaired_no_text", "the PDF is damaged (truncated or corrupt: its "
                                      "cross-reference table had to be rebuilt) and no text could be read from "
                                      "it; re-download it or re-save it from a PDF viewer"))
        raise LoaderError(Message("pdf_no_text", "no text found in the PDF{detail}",
                                  detail=f" ({out.warnings[0]})" if out.warnings else ""))
    if repaired:
        out.warnings.append("the PDF is damaged (truncated or corrupt) and was repaired to read it; pages may "
                            "be missing: re-download it to be sure")
    return out


def _ocr_pdf_pages(doc, numbers: list[int], sections: dict, out: LoadedDocument,
                   engine_name: str, languages: str) -> None:
    """OCR the 0-based pages ``numbers``; a page's OCR text replaces its scant text layer."""
    try:
        engine = ocr_mod.get_engine(engine_name, languages)
    except ocr_mod.OCRUnavailable as e:
        out.warnings.append(f"{len(numbers)} page(s) are scanned images: {e}")
        return
    for i in numbers:
        text = clean_text(engine.image_to_text(ocr_mod.render_page_png(doc[i])).replace("\n", "\n\n"))
        old = [b for b in out.blocks if b.page == i + 1]
        if len(text) > sum(len(b.text) for b in old):
            at = out.blocks.index(old[0]) if old else len(out.blocks)
            out.blocks = [b for b in out.blocks if b.page != i + 1]
            out.blocks[at:at] = [Block(text, i + 1, sections.get(i + 1, ""))]
            out.ocr_pages += 1


# -- DOCX -----------------------------------------------------------------------------------
def _docx_table_rows(table) -> list[list[str]]:
    """Rows of cell text. A horizontally merged cell is written once per row; a vertically
    merged one is repeated in every row it spans, so each Markdown row stands on its own."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue  # horizontal merge: python-docx repeats the same cell across the row
            seen.add(id(cell._tc))
            cells.append(cell.text.strip())
        rows.append(cells)
    return rows


def _style_names(document) -> tuple[dict[str, str], str]:
    """Paragraph style id -> name, and the default paragraph style's name, read once per file.

    ``paragraph.style`` looks the style up in styles.xml on every call (~6 ms per paragraph in
    a large document: 18.7 min for 100k paragraphs); this dict makes the heading check O(1).
    """
    from docx.enum.style import WD_STYLE_TYPE

    names = {s.style_id: s.name or "" for s in document.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    return names, (default.name if default is not None else "") or ""


def _heading_level(paragraph, styles: tuple[dict[str, str], str] | None = None) -> int | None:
    """Heading level from the paragraph style name ("Heading 2" / "标题 2" -> 2, "Title" -> 0)."""
    if styles is None:
        name = (paragraph.style.name if paragraph.style is not None else "") or ""
    else:
        ppr = paragraph._p.pPr
        sid = ppr.style if ppr is not None else None
        name = styles[0].get(sid, styles[1]) if sid else styles[1]
    m = re.match(r"(?:Heading|标题)\s*(\d)", name)
    if m:
        return int(m.group(1))
    return 0 if name == "Title" else None


def load_docx(path: Path, *, ocr_engine: str = "auto", ocr_languages: str = "chi_sim+eng",
              on_page: Callable[[int, int], None] | None = None) -> LoadedDocument:
    """Load a .docx: paragraphs and tables in order, headings as section path (page=None).

    Raises:
        LoaderError: not a valid .docx (zip/XML broken), or no text anywhere.
    """
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except Exception as e:
        raise LoaderError(Message("docx_unopenable", "cannot open as .docx ({error}); re-save it from Word "
                                  "or LibreOffice as .docx", error=f"{type(e).__name__}: {e}")) from None
    out = LoadedDocument(Path(path), [], pages=1)
    heads: list[str] = []
    styles = _style_names(document)
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            md = table_markdown(_docx_table_rows(item))
            if md:
                out.blocks.append(Block(md, None, " > ".join(heads), "table"))
            continue
        text = " ".join(item.text.split())
        level = _heading_level(item, styles) if text else None
        if level is not None:
            heads = heads[: max(level - 1, 0)] + [text]
        if text:
            out.blocks.append(Block(text, None, " > ".join(heads)))
    _docx_textboxes_and_images(document, out, ocr_engine, ocr_languages)
    if on_page:
        on_page(1, 1)
    if not out.blocks:
        raise LoaderError(Message("docx_no_text", "no text found in the .docx{detail}",
                                  detail=f" ({out.warnings[0]})" if out.warnings else ""))
    return out


def _docx_textboxes_and_images(document, out: LoadedDocument, engine_name: str, languages: str) -> None:
    """Add text-box text; when the document has almost no text, OCR its embedded images."""
    ns = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    have = {b.text for b in out.blocks}
    for box in document.element.body.iter(f"{ns}txbxContent"):
        text = " ".join("".join(t.text or "" for t in p.iter(f"{ns}t")) for p in box.iter(f"{ns}p")).strip()
        if text and text not in have:
            have.add(text)
            out.blocks.append(Block(text, None, ""))
    images = [r.target_part.blob for r in document.part.rels.values() if "image" in r.reltype]
    if not images or sum(len(b.text) for b in out.blocks) >= OCR_MIN_CHARS:
        return
    try:
        engine = ocr_mod.get_engine(engine_name, languages)
    except ocr_mod.OCRUnavailable as e:
        out.warnings.append(f"text is in images: {e}")
        return
    for blob in images:
        text = clean_text(engine.image_to_text(blob).replace("\n", "\n\n"))
        if text:
            out.blocks.append(Block(text, None, "[OCR]"))
            out.ocr_pages += 1


# -- text -----------------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """Decode bytes: utf-8 / utf-8-sig, else the encoding charset-normalizer finds (gb18030, big5...).

    Raises:
        LoaderError: binary or undecodable content.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    # Chinese first: on short texts a full detection often picks a Korean code page instead
    best = from_bytes(data, cp_isolation=["gb18030", "big5"]).best() or from_bytes(data).best()
    if best is None:
        raise LoaderError(Message("encoding", "the text encoding could not be detected (binary file?); "
                                  "save it as UTF-8"))
    return str(best)


def load_text(path: Path, **_: object) -> LoadedDocument:
    """Load .txt/.md: paragraphs split at blank lines; Markdown '#' headings set the section."""
    text = decode_text(Path(path).read_bytes())
    out = LoadedDocument(Path(path), [], pages=1)
    heads: list[str] = []
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        m = re.match(r"(#{1,6})\s+(.*)", para.strip())
        if m and "\n" not in para.strip():
            heads = heads[: len(m.group(1)) - 1] + [m.group(2).strip()]
        para = para.strip() if para.lstrip().startswith("|") else clean_text(para)
        if para:
            out.blocks.append(Block(para, None, " > ".join(heads), "table" if para.startswith("|") else "text"))
    if not out.blocks:
        raise LoaderError(Message("blank", "the file has no text (only whitespace)"))
    return out


LOADERS: dict[str, Callable[..., LoadedDocument]] = {
    ".pdf": load_pdf, ".docx": load_docx, ".txt": load_text, ".md": load_text, ".markdown": load_text,
    ".png": load_image, ".jpg": load_image, ".jpeg": load_image,
}
_BY_KIND = {"pdf": load_pdf, "png": load_image, "jpeg": load_image}
_HINTS = {
    ".doc": Message("doc_legacy", "legacy Word .doc is not supported; save it as .docx (Word/LibreOffice, or "
                    "`soffice --headless --convert-to docx FILE`) and ingest the .docx"),
}


def is_supported(path: Path) -> bool:
    """True when the extension has a loader."""
    return Path(path).suffix.lower() in LOADERS


def load(path: str | Path, *, max_uncompressed_mb: float = MAX_UNCOMPRESSED_MB, **kw) -> LoadedDocument:
    """Load any supported file: the real type (:func:`sniff`) picks the loader, else the extension.

    Args:
        path: the file; ``kw`` go to the loader (ocr_engine, ocr_languages, on_page).
        max_uncompressed_mb: a .docx unpacking to more is refused unopened (:func:`check_zip`).

    Raises:
        LoaderError: unsupported type, empty/unreadable file, a type that does not match its
            name in a way we cannot read, or the loader's own errors.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in LOADERS:
        raise LoaderError(_HINTS.get(ext, Message("unsupported", "unsupported file type {ext}; supported: "
                                                  "{supported}", ext=ext or "(none)",
                                                  supported=", ".join(sorted(LOADERS)))))
    try:
        if path.stat().st_size == 0:
            raise LoaderError(Message("empty", "the file is empty (0 bytes); nothing to add"))
    except OSError as e:
        raise LoaderError(os_error_line(e)) from None
    kind = sniff(path)
    if kind == "ole2":
        raise LoaderError(Message("ole2", "this is an old-style Office file (OLE2), not a real {ext}: a legacy "
                                  "Word .doc or a password-protected Office file; open it in Word/LibreOffice, "
                                  "remove any password, save as .docx and ingest that", ext=ext))
    if kind == "zip":
        check_zip(path, max_uncompressed_mb)
        return load_docx(path, **kw)
    if kind in _BY_KIND:
        return _BY_KIND[kind](path, **kw)
    if ext in (".pdf", ".docx", ".png", ".jpg", ".jpeg"):
        raise LoaderError(Message("misnamed", "the file is named {ext} but is not one inside (no {kind} header: "
                                  "it may be damaged, truncated at the start, or something else renamed); "
                                  "re-download or re-save it", ext=ext, kind=ext[1:].upper()))
    return LOADERS[ext](path, **kw)


# -- ingest worker process ------------------------------------------------------------------
# KnowledgeBaseService.ingest runs load_and_chunk in a "spawn" worker process, so parsing
# overlaps embedding and never holds the app's GIL. This module (with kb.ocr, kb.chunking)
# is all the worker imports: no chromadb, no torch.
_PROGRESS = None      # the worker's multiprocessing.SimpleQueue of (file index, page, pages)


def load_and_chunk(path: str | Path, *, chunk_size: int, chunk_overlap: int, ocr_engine: str = "auto",
                   ocr_languages: str = "chi_sim+eng", on_page: Callable[[int, int], None] | None = None,
                   max_uncompressed_mb: float = MAX_UNCOMPRESSED_MB) -> dict:
    """Load one file and cut it into chunks: everything ingest needs, as picklable data.

    Returns:
        {"doc": LoadedDocument with ``blocks`` emptied, "chunks": list[kb.chunking.Chunk],
        "pid": id of the process that parsed, "seconds": wall time of load + chunk}.

    Raises:
        LoaderError: as :func:`load`.
    """
    from kb import chunking

    t0 = time.perf_counter()
    doc = load(path, ocr_engine=ocr_engine, ocr_languages=ocr_languages, on_page=on_page,
               max_uncompressed_mb=max_uncompressed_mb)
    chunks = chunking.chunk_blocks(doc.blocks, chunk_size, chunk_overlap)
    doc.blocks = []
    return {"doc": doc, "chunks": chunks, "pid": os.getpid(), "seconds": time.perf_counter() - t0}


#: first message of a worker on the progress queue, once it has started
READY = (-1, 0, 0)
#: ``pages`` value of the (file index, 0, BEGIN) message a worker sends when it starts a file
#: (the parent's per-file time budget counts from there, not from when the file was queued)
BEGIN = -1


def worker_init(progress) -> None:
    """Initializer of the ingest worker process: keep the page-progress queue, and exit when the
    parent process dies (a killed app must not leave an orphan parser behind): on Linux the
    kernel kills it (``PR_SET_PDEATHSIG``, which works even while a C parser holds the GIL);
    everywhere a thread waiting on the parent's sentinel exits the process."""
    import multiprocessing
    import threading

    global _PROGRESS
    _PROGRESS = progress
    parent = multiprocessing.parent_process()
    _die_with_parent(parent.pid if parent is not None else None)
    progress.put(READY)  # the parent tells "cannot start here" from "a file crashed the parser"
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (no-op elsewhere)."""
    import signal
    import sys

    if not sys.platform.startswith("linux") or parent_pid is None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))    # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:            # the parent died before prctl: nobody to signal us
        os._exit(0)


def _exit_with(sentinel) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(0)


def worker_load_and_chunk(i: int, path: str, opts: dict) -> dict:
    """:func:`load_and_chunk` in the worker; page progress goes to the queue as (i, page, pages),
    at most 4 a second (the parent reads it only while it waits for this file: a full pipe
    would stall the worker)."""
    last = [0.0]
    if _PROGRESS is not None:
        _PROGRESS.put((i, 0, BEGIN))

    def on_page(done: int, total: int) -> None:
        now = time.monotonic()
        if _PROGRESS is not None and (now - last[0] >= 0.25 or done == total):
            last[0] = now
            _PROGRESS.put((i, done, total))

    return load_and_chunk(path, on_page=on_page, **opts)
