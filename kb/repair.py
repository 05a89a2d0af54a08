"""``kb check`` / ``kb repair``: compare a knowledge base's three records of its documents.

A document is consistent when (1) the manifest names its current version, (2) chromadb holds
exactly ``chunks`` rows of that version and the vector index finds them, and (3)
``tokens/<version>.json`` holds the BM25 tokens of the same chunk ids. :func:`check` reports
every difference; :func:`fix_in_place` repairs what needs no re-embedding and says which
documents must be ingested again (the service does that, see
:meth:`kb.service.KnowledgeBaseService.repair`). Documents that are fine are never touched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kb.types import Message


@dataclass
class CheckReport:
    """What :func:`check` found in one knowledge base (lists of sources / versions / ids).

    Attributes:
        kb: display name; documents / chunks: as the manifest counts them.
        missing_chunks: documents whose chromadb rows are missing or incomplete.
        missing_tokens: documents whose BM25 tokens are missing or do not match their rows.
        orphan_versions: versions with chromadb rows that no manifest entry names.
        orphan_tokens: tokens files of versions that no manifest entry names.
        duplicates: documents whose bytes (sha256) are stored under another path too.
        unindexed: chunk ids in chromadb that its vector index does not return.
    """

    kb: str
    documents: int = 0
    chunks: int = 0
    missing_chunks: list[str] = field(default_factory=list)
    missing_tokens: list[str] = field(default_factory=list)
    orphan_versions: list[str] = field(default_factory=list)
    orphan_tokens: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unindexed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any((self.missing_chunks, self.missing_tokens, self.orphan_versions, self.orphan_tokens,
                        self.duplicates, self.unindexed))

    def lines(self) -> list[str]:
        """One line per kind of problem (with up to 3 examples), or one "consistent" line."""
        if self.ok:
            return [Message("repair_consistent", "«{kb}»: consistent ({documents} documents, {chunks} chunks)",
                            kb=self.kb, documents=self.documents, chunks=self.chunks)]
        out = []
        for items, key, what in (
                (self.missing_chunks, "missing_chunks", "document(s) without all their chunks in chromadb"),
                (self.missing_tokens, "missing_tokens", "document(s) without BM25 tokens"),
                (self.duplicates, "duplicates", "document(s) stored twice (same bytes under another path)"),
                (self.orphan_versions, "orphan_versions", "leftover version(s) with chunks no document uses"),
                (self.orphan_tokens, "orphan_tokens", "leftover BM25 tokens file(s)"),
                (self.unindexed, "unindexed", "chunk(s) missing from the vector index")):
            if items:
                eg = ", ".join(Path(x).name if "/" in x or "\\" in x else x for x in items[:3])
                out.append(Message(f"repair_{key}", "«{kb}»: {n} " + what + ": {eg}{more}", kb=self.kb,
                                   n=len(items), eg=eg, more=", …" if len(items) > 3 else ""))
        return out


def _rows_by_version(kb) -> tuple[dict[str, list[str]], int]:
    """version -> chunk ids of chromadb rows (read in pages), and the row count."""
    by: dict[str, list[str]] = {}
    total, page = 0, 5000
    while True:
        got = kb.collection.get(include=["metadatas"], limit=page, offset=total)
        for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
            by.setdefault((meta or {}).get("version", ""), []).append(cid)
        total += len(got["ids"])
        if len(got["ids"]) < page:
            return by, total


def _tokens_match(kb, version: str, ids: list[str]) -> bool:
    """True when the tokens file of ``version`` holds tokens for exactly the chunk ``ids``."""
    try:
        tok = kb.tokens_of(version)
        return sorted(tok["ids"]) == ids and len(tok["tokens"]) == len(ids)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def check(kb, vector_index: bool = True) -> CheckReport:
    """Compare manifest, chromadb rows and BM25 tokens of ``kb`` (a :class:`kb.store.KnowledgeBase`).

    Args:
        vector_index: also ask the vector index for every row (one query of all rows; the app's
            quick check on open leaves it out).

    Returns:
        A :class:`CheckReport`. Reads only, and is safe while another process writes: a manifest
        that changed during the check is checked again (up to 3 times), and versions a live
        writer has named in ``pending/`` are not called leftovers.
    """
    for _attempt in range(3):
        gen = kb.manifest().get("generation", 0)
        rep = _check_once(kb, vector_index)
        if kb.manifest().get("generation", 0) == gen:
            break
    with kb.writing_if_free() as free:
        if not free:                       # a writer is alive: its versions in flight are not orphans
            busy = _pending_versions(kb)
            rep.orphan_versions = [v for v in rep.orphan_versions if v not in busy]
            rep.orphan_tokens = [v for v in rep.orphan_tokens if v not in busy]
    return rep


def _pending_versions(kb) -> set[str]:
    """Versions named by ``pending/`` markers (written by writers that are alive or crashed)."""
    out: set[str] = set()
    for _name, info in kb._markers():
        out.update(v for v in list(info.get("new") or []) + list(info.get("old") or []) if v)
    return out


def _check_once(kb, vector_index: bool) -> CheckReport:
    manifest = kb.manifest()["docs"]
    rep = CheckReport(kb.name, len(manifest), sum(d.get("chunks", 0) for d in manifest.values()))
    rows, total = _rows_by_version(kb)
    current = {d["version"]: s for s, d in manifest.items()}
    seen_sha: dict[str, str] = {}
    for source, d in sorted(manifest.items(), key=lambda kv: (kv[1].get("added_at", ""), kv[0])):
        ids = sorted(rows.get(d["version"], []))
        if len(ids) != d.get("chunks", 0) or not ids:
            rep.missing_chunks.append(source)
        elif not _tokens_match(kb, d["version"], ids):    # (a document re-ingested gets new tokens anyway)
            rep.missing_tokens.append(source)
        if d["sha256"] in seen_sha:
            rep.duplicates.append(source)
        seen_sha.setdefault(d["sha256"], source)
    rep.orphan_versions = sorted(v for v in rows if v not in current)
    rep.orphan_tokens = [v for v in kb.token_versions() if v not in current]
    if vector_index and total:
        import numpy as np

        kb.refresh(force=True)              # the index as stored, with every process's writes
        dim = len(kb.collection.get(limit=1, include=["embeddings"])["embeddings"][0])
        found = kb.collection.query(query_embeddings=[np.full(dim, dim ** -0.5, dtype=np.float32)],
                                    n_results=total, include=[])["ids"][0]
        rep.unindexed = sorted(set(c for ids in rows.values() for c in ids) - set(found))
    return rep


def fix_in_place(kb, rep: CheckReport, log=lambda msg: None) -> list[str]:
    """Repair what needs no re-embedding; the caller holds ``kb.writing()``.

    - orphan versions' rows and orphan tokens files are deleted;
    - tokens missing while all rows are there are rebuilt from the rows' text (kb.retrieval.tokenize);
    - rows missing from the vector index are deleted and added again with their stored embeddings;
    - a duplicate and a document without all its chunks are dropped from the manifest (with any
      rows left of them).

    Args:
        log: called with one line per step.

    Returns:
        The dropped documents without all their chunks (sources): ingest them again from their
        files (:meth:`kb.service.KnowledgeBaseService.repair` does).
    """
    from kb import retrieval

    if rep.orphan_versions:
        kb.collection.delete(where={"version": {"$in": rep.orphan_versions}})
        log(f"deleted the chunks of {len(rep.orphan_versions)} leftover version(s)")
    for v in rep.orphan_tokens:
        kb._drop_tokens(v)
    docs = kb.manifest()["docs"]
    for source in rep.missing_tokens:
        version = docs[source]["version"]
        got = kb.collection.get(where={"version": version}, include=["documents"])
        pairs = sorted(zip(got["ids"], got["documents"], strict=True))
        kb._save_tokens(version, [c for c, _ in pairs], [retrieval.tokenize(t or "") for _, t in pairs])
        log(f"rebuilt the BM25 tokens of {Path(source).name}")
    for i in range(0, len(rep.unindexed), 1000):
        part = rep.unindexed[i:i + 1000]
        got = kb.collection.get(ids=part, include=["embeddings", "documents", "metadatas"])
        kb.collection.delete(ids=got["ids"])
        kb.collection.add(ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"],
                          metadatas=got["metadatas"])
        log(f"re-indexed {min(i + 1000, len(rep.unindexed))}/{len(rep.unindexed)} chunks in the vector index")
    drop = [s for s in dict.fromkeys(rep.missing_chunks + rep.duplicates) if s in docs]
    if drop:
        kb._flip({s: None for s in drop})
        versions = [docs[s]["version"] for s in drop]
        kb.collection.delete(where={"version": {"$in": versions}})
        for v in versions:
            kb._drop_tokens(v)
        log(f"dropped {len(drop)} inconsistent document(s) from the manifest")
    kb._flip({})               # a new generation: every process rebuilds its BM25 index
    return [s for s in rep.missing_chunks if s in docs]


def summary(rep: CheckReport) -> str:
    """The report as JSON-ready text (for ``kb check --json``)."""
    return json.dumps({**rep.__dict__, "ok": rep.ok}, ensure_ascii=False, indent=1)
