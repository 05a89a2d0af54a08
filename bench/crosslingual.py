"""Cross-lingual retrieval: Chinese questions over English documents and the reverse.

    python bench/crosslingual.py [--data bench/data/crosslingual.jsonl] [--embedder minilm|e5|PATH]
                                 [--kb-dir DIR] [--verify] [--json]

Rows: ``{"question", "lang", "file", "page", "evidence"}`` — ``file`` a name in
``../shared/data/documents``, ``page`` the 1-based page holding the answer (null for .docx),
``evidence`` a string on that page in the document's language (``--verify`` checks every row:
whitespace-insensitive, and nothing else is run).

The documents named by the rows are ingested into one knowledge base (kept in ``--kb-dir``
between runs); each question is searched with k=5 in the modes bm25, vector and hybrid. A hit
counts when it comes from the gold file and its page range covers the gold page.
Reports hit@5 per mode and per question language, and how many questions hybrid finds that
BM25 alone does not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DATA,
    OFFLINE,
    add_json_flag,
    emit,
    in_home,
    load_settings,
    log,
    resolve_embedder,
    table,
)

DEFAULT = Path(__file__).resolve().parent / "data" / "crosslingual.jsonl"
DOCS = DATA / "documents"
MODES = ("bm25", "vector", "hybrid")
K = 5


def load_rows(path: Path) -> list[dict]:
    """The rows of a crosslingual JSONL file. Raises SystemExit on a malformed line."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise SystemExit(f"error: {path}:{i} is not JSON ({e})") from None
    return rows


def page_text(file: str, page: int | None) -> str:
    """The text of one page of a shared document (the whole text for a .docx)."""
    if page is None:
        import docx

        d = docx.Document(str(DOCS / file))
        return "\n".join(p.text for p in d.paragraphs) + "\n".join(
            c.text for t in d.tables for r in t.rows for c in r.cells)
    import pymupdf

    with pymupdf.open(DOCS / file) as doc:
        return doc[page - 1].get_text()


def verify(rows: list[dict]) -> list[str]:
    """Rows whose evidence is not on the stated page (as messages; [] when all hold)."""
    from kb.pages import squash

    return [f"{r['file']} p.{r['page']}: {r['evidence']!r} not found ({r['question']})"
            for r in rows if squash(r["evidence"]) not in squash(page_text(r["file"], r["page"]))]


def found(hits, row) -> bool:
    """Is the gold (file, page) among ``hits``?"""
    for h in hits:
        if Path(h.source).name != row["file"]:
            continue
        if row["page"] is None or (h.page or 0) <= row["page"] <= (h.page_end or h.page or 0):
            return True
    return False


def measure(rows: list[dict], home: Path, embedder: str | None) -> dict:
    """Ingest the rows' documents into ``home`` and score every mode."""
    from kb.service import KnowledgeBaseService

    settings = load_settings(home, embedding_model=resolve_embedder(embedder, home))
    svc = KnowledgeBaseService(settings)
    files = sorted({r["file"] for r in rows})
    log(f"ingesting {len(files)} documents ...")
    for r in svc.ingest([str(DOCS / f) for f in files], kb="crosslingual"):
        if not r.ok:
            log(f"{r.path}: {r.message}")
    out: dict = {"embedder": settings.embedding_model, "embedder_backend": svc.embedder.backend,
                 "embedding_dtype": settings.embedding_dtype, "n": len(rows), "modes": {}, "per_question": []}
    got = {m: [] for m in MODES}
    for m in MODES:
        log(f"{len(rows)} questions, {m} ...")
        got[m] = [found(svc.search(r["question"], kb="crosslingual", k=K, mode=m), r) for r in rows]
    for m in MODES:
        by_lang = {lang: [g for g, r in zip(got[m], rows, strict=True) if r["lang"] == lang] for lang in ("zh", "en")}
        out["modes"][m] = {"hit@5": sum(got[m]) / len(rows),
                           **{f"hit@5 {lang} question": sum(v) / len(v) for lang, v in by_lang.items() if v}}
    out["hybrid_not_bm25"] = sum(h and not b for h, b in zip(got["hybrid"], got["bm25"], strict=True))
    out["bm25_not_hybrid"] = sum(b and not h for h, b in zip(got["hybrid"], got["bm25"], strict=True))
    out["per_question"] = [{"question": r["question"], **{m: got[m][i] for m in MODES}} for i, r in enumerate(rows)]
    return out


def render(r: dict) -> str:
    rows = [(m, v["hit@5"], v.get("hit@5 zh question"), v.get("hit@5 en question")) for m, v in r["modes"].items()]
    return (table(["mode", "hit@5", "zh question -> en doc", "en question -> zh doc"], rows)
            + f"\n\nhybrid finds {r['hybrid_not_bm25']} the BM25 top 5 misses; BM25 finds {r['bm25_not_hybrid']} hybrid misses"
            + f"\n{r['n']} questions; embedder {r['embedder']} (backend {r.get('embedder_backend')}, "
              f"embedding_dtype {r.get('embedding_dtype')})")


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--data", type=Path, default=DEFAULT)
    p.add_argument("--embedder", help="minilm | e5 | folder or hub id (default: settings embedding_model)")
    p.add_argument("--kb-dir", type=Path, help="data dir to keep between runs (default: a temp dir)")
    p.add_argument("--verify", action="store_true", help="only check that every evidence string is on its page")
    args = p.parse_args(argv)
    rows = load_rows(args.data)
    if args.verify:
        bad = verify(rows)
        print("\n".join(bad) or f"all {len(rows)} evidence strings found on their pages")
        return 1 if bad else 0
    embedder = str(OFFLINE / "multilingual-e5-small") if args.embedder == "e5" else args.embedder
    r = in_home(args.kb_dir, lambda home: measure(rows, home, embedder))
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
