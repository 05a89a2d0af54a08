"""Plain data passed between the knowledge base, the answering service, the CLI and the app."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Block:
    """A paragraph-like run of text, or one table (``kind="table"``, Markdown rows)."""

    text: str
    page: int | None = None
    section: str = ""
    kind: str = "text"


@dataclass
class Hit:
    """One retrieved chunk.

    Attributes:
        rank: 1-based position in the result list.
        score: fused relevance (reciprocal-rank-fusion score; higher is better).
        source: absolute path of the document the chunk came from.
        page: 1-based first page of the chunk (None for formats without pages).
        page_end: 1-based last page of the chunk.
        section: heading path such as "第一章 总纲 > 第一条" ("" when unknown).
        chunk_id: stable id in the store.
        text: the chunk's text.
        similarity: cosine similarity of the query and chunk embeddings (None if not scored).
    """

    rank: int
    score: float
    source: str
    page: int | None
    text: str
    chunk_id: str = ""
    section: str = ""
    page_end: int | None = None
    similarity: float | None = None

    def to_json(self) -> dict:
        """The ``search --json`` shape: rank, score, source, page, section, chunk_id, text."""
        return {k: getattr(self, k) for k in ("rank", "score", "source", "page", "section", "chunk_id", "text")}


@dataclass
class IngestResult:
    """Outcome for one file of an ingest.

    Attributes:
        path: the file.
        status: "added" | "updated" | "skipped" (unchanged) | "failed".
        message: one line for the user; for failures, what is wrong and what to do.
        pages: pages (PDF) or 1 for page-less formats.
        chunks: chunks now stored for the file.
        ocr_pages: pages whose text came from OCR.
    """

    path: str
    status: str
    message: str = ""
    pages: int = 0
    chunks: int = 0
    ocr_pages: int = 0

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class DocumentInfo:
    """A document stored in a knowledge base."""

    source: str
    sha256: str
    pages: int
    chunks: int
    name: str = ""
    added_at: str = ""        # ISO 8601 UTC
    ocr_pages: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class KBInfo:
    """A knowledge base: display name (any Unicode) and its chromadb collection name."""

    name: str
    collection: str
    documents: int = 0
    chunks: int = 0
    extra: dict = field(default_factory=dict)


class Message(str):
    """A user-facing line: the English text (what the CLI prints and logs) that also carries a
    ``key`` and its ``args``, so a UI can show it in its own language without kb/ or models/
    knowing the UI (the app looks up ``<area>.<key>`` and formats it with ``args``; a key it
    does not know shows the English text). Used for ingest progress and for failure reasons.

    >>> p = Message("page", "{name}: page {page}/{pages}", name="a.pdf", page=3, pages=30)
    >>> str(p), p.key, p.args["page"]
    ('a.pdf: page 3/30', 'page', 3)
    """

    key: str
    args: dict

    def __new__(cls, key: str, text: str, **args):
        obj = super().__new__(cls, text.format(**args))
        obj.key, obj.args = key, args
        return obj

    def __reduce__(self):                  # crosses process boundaries (the ingest workers)
        return _rebuild, (type(self), str(self), self.key, self.args)


def _rebuild(cls, text: str, key: str, args: dict) -> Message:
    obj = str.__new__(cls, text)
    obj.key, obj.args = key, args
    return obj


def one_line(text: str) -> str:
    """``text`` with its whitespace runs collapsed to single spaces; a :class:`Message` keeps
    its key and args."""
    flat = " ".join(str(text).split())
    return _rebuild(type(text), flat, text.key, text.args) if isinstance(text, Message) else flat


def reason(e: BaseException) -> str:
    """The one line an error carries for the user: the :class:`Message` it was raised with (key
    and args kept for the UI), else ``str(e)``."""
    first = e.args[0] if e.args else None
    return first if isinstance(first, Message) else str(e)


#: ingest progress lines are Messages (the app renders ``progress.<key>``)
Progress = Message
