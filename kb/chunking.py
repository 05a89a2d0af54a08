"""Chinese-aware chunking (pure: blocks in, chunks out; no I/O).

Sizes are in CHARACTERS (``len(str)``), not tokens: ``chunk_size`` is the most characters in a
chunk (one sentence or table row longer than that is cut), ``chunk_overlap`` the characters of
whole trailing sentences repeated at the start of the next chunk. Text is split after
``。！？；…`` (plus closing quotes/brackets) and after ``. ! ?`` followed by a space; a table is
cut only between rows, and its header row is repeated at the top of each continuation chunk.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kb.loaders import Block

_SENT = re.compile(r"(?<=[。！？；…!?][”’」』）)\]\"'])|(?<=[。！？；…])(?![”’」』）)\]\"'…])|(?<=[.!?])\s+(?=\S)")
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]")


@dataclass
class Chunk:
    """One piece of a document to embed and index.

    Attributes:
        text: the chunk's text.
        index: 0-based position in the document.
        page_start / page_end: 1-based pages covered (None for page-less formats).
        section: heading / bookmark path of the chunk's first unit.
    """

    text: str
    index: int
    page_start: int | None
    page_end: int | None
    section: str = ""


@dataclass
class _Unit:
    text: str
    page: int | None
    section: str
    table_head: str = ""   # header rows of the table this row belongs to ("" for prose)
    new_block: bool = True


def split_sentences(text: str) -> list[str]:
    """Split text after sentence-final punctuation (Chinese and English), keeping it.

    >>> split_sentences("第一句。第二句！Third one. Fourth?")
    ['第一句。', '第二句！', 'Third one.', 'Fourth?']
    """
    return [s for s in (p.strip() for p in _SENT.split(text)) if s]


def _hard_cut(text: str, size: int) -> list[str]:
    """Cut an over-long sentence into pieces of at most ``size`` chars, at a space or comma if one is near."""
    out = []
    while len(text) > size:
        cut = max(text.rfind(c, size // 2, size) for c in " ，,、")
        cut = cut + 1 if cut > 0 else size
        out.append(text[:cut].strip())
        text = text[cut:].strip()
    return out + ([text] if text else [])


def _units(blocks: Iterable[Block], size: int) -> list[_Unit]:
    units: list[_Unit] = []
    for b in blocks:
        if b.kind == "table":
            rows = [r for r in b.text.split("\n") if r.strip()]
            head = "\n".join(rows[:2]) if len(rows) > 2 and rows[1].startswith("|-") else ""
            head = head if len(head) <= size // 3 else ""  # a huge header is not repeated
            body = rows[2:] if head else rows
            first = True
            for r in body:
                for piece in _hard_cut(r, max(size - len(head) - 1, size // 2)):
                    units.append(_Unit(piece, b.page, b.section, head, first))
                    first = False
            if head and first:  # a header-only table
                units.append(_Unit(head, b.page, b.section, "", True))
            continue
        first = True
        for s in split_sentences(b.text):
            for piece in _hard_cut(s, size):
                units.append(_Unit(piece, b.page, b.section, "", first))
                first = False
    return units


def _join(units: list[_Unit]) -> str:
    out = ""
    for i, u in enumerate(units):
        if i == 0:
            out = (u.table_head + "\n" + u.text) if u.table_head else u.text
            continue
        prev = units[i - 1]
        if u.table_head and u.table_head != prev.table_head:
            out += "\n" + u.table_head + "\n" + u.text
        elif u.table_head or prev.table_head:
            out += "\n" + u.text
        elif u.new_block and out[-1:] in "。！？；….!?:：”":
            out += "\n" + u.text
        elif _CJK.match(u.text[:1]) or _CJK.match(out[-1:]):
            out += u.text
        else:
            out += " " + u.text
    return out


def _make(units: list[_Unit], index: int) -> Chunk:
    pages = [u.page for u in units if u.page is not None]
    return Chunk(_join(units), index, min(pages) if pages else None, max(pages) if pages else None,
                 units[0].section)


def chunk_blocks(blocks: Iterable[Block], size: int = 500, overlap: int = 80) -> list[Chunk]:
    """Pack sentences / table rows greedily into chunks of at most ``size`` characters.

    Args:
        blocks: loader output, in reading order.
        size: max characters per chunk (settings ``chunk_size``); must be > 0.
        overlap: characters of whole trailing sentences carried into the next chunk
            (settings ``chunk_overlap``); table rows are not carried (the header is repeated).

    Returns:
        Chunks with 0-based ``index``; a new section starts a new chunk once the current one
        is at least a third full.

    Raises:
        ValueError: size <= 0 or overlap < 0 or overlap >= size.
    """
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError(f"need 0 <= chunk_overlap < chunk_size, got size={size} overlap={overlap}")
    chunks: list[Chunk] = []
    cur: list[_Unit] = []
    length = 0
    for u in _units(blocks, size):
        extra = len(u.text) + 1 + (len(u.table_head) + 1 if u.table_head and (not cur or cur[-1].table_head != u.table_head) else 0)
        section_break = cur and u.section != cur[-1].section and length >= size // 3
        if cur and (length + extra > size or section_break):
            chunks.append(_make(cur, len(chunks)))
            cur = _carry(cur, overlap) if not section_break else []
            length = len(_join(cur)) if cur else 0
            if cur and length + extra > size:
                cur, length = [], 0
        cur.append(u)
        length += extra
    if cur and any(not c.table_head or c.text for c in cur):
        chunks.append(_make(cur, len(chunks)))
    return chunks


def _carry(units: list[_Unit], overlap: int) -> list[_Unit]:
    """Trailing prose units whose total length fits in ``overlap`` characters."""
    out: list[_Unit] = []
    total = 0
    for u in reversed(units):
        if u.table_head or total + len(u.text) > overlap:
            break
        out.insert(0, u)
        total += len(u.text)
    return out


def chunk_header(source: str, section: str = "") -> str:
    """The contextual chunk header: document title (file name without extension, ``_``/``-``
    as spaces) and section path. Indexed with the chunk (BM25 tokens and the embedder's
    input) but not stored as its text, so look-alike passages of different documents
    ("the 2023 report of city A / city B") differ in the index (Anthropic, "Introducing
    Contextual Retrieval", 2024, prepends such context; here it is the cheap, model-free part).

    >>> chunk_header("/docs/shenzhen_annual-report_2023.pdf", "第二章 > 经济")
    'shenzhen annual report 2023 > 第二章 > 经济'
    """
    import os

    title = " ".join(re.split(r"[_\-\s]+", os.path.splitext(os.path.basename(source))[0])).strip()
    return " > ".join(p for p in (title, section) if p)


def indexed_text(source: str, section: str, text: str) -> str:
    """What BM25 and the embedder see for a chunk: its header line, then its text."""
    header = chunk_header(source, section)
    return f"{header}\n{text}" if header else text
