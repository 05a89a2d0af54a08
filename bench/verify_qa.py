"""Check a QA set's gold strings against the documents themselves.

    python bench/verify_qa.py QA.jsonl [DOCS_FOLDER]      (default folder: ../shared/data/documents)

For every answerable row, at least one of its ``expect`` strings must occur on the stated page
of the stated file (PyMuPDF page text; the whole text of a DOCX, tables included), compared
after :func:`bench.answer_scoring.normalize` (NFKC, no whitespace, no thousands commas). For a
follow-up the check is on the scored (second) question. For an unanswerable row, none of its
``absent`` terms may occur in any document the set names. Prints one line per problem and
exits 1 when there is any.
"""
from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.answer_scoring import gold_list, normalize  # noqa: E402
from bench.answers import read_qa  # noqa: E402

DEFAULT_DOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "documents"


@cache
def page_texts(path: Path) -> dict[int | None, str]:
    """Normalised text per 1-based page of a PDF (key None: the whole document), or of a DOCX
    / text file as one page None."""
    if path.suffix.lower() == ".pdf":
        import pymupdf

        with pymupdf.open(path) as doc:
            pages = {i: normalize(p.get_text()) for i, p in enumerate(doc, 1)}
        return {**pages, None: "".join(pages.values())}
    if path.suffix.lower() == ".docx":
        import docx

        d = docx.Document(str(path))
        parts = [p.text for p in d.paragraphs]
        parts += [c.text for t in d.tables for row in t.rows for c in row.cells]
        return {None: normalize("\n".join(parts))}
    return {None: normalize(path.read_text(encoding="utf-8"))}


def find_file(folder: Path, part: str) -> Path | None:
    """The first file in ``folder`` (recursive) whose name contains ``part``."""
    return next((f for f in sorted(folder.rglob("*")) if f.is_file() and part in f.name), None)


def problems(rows: list[dict], folder: Path) -> list[str]:
    """One line per gold string that is not where the row says (empty list: all verified)."""
    out = []
    named = sorted({r["source_contains"] for r in rows if r.get("source_contains")})
    files = {part: find_file(folder, part) for part in named}
    for part, f in files.items():
        if f is None:
            out.append(f"no file in {folder} has {part!r} in its name")
    for n, row in enumerate(rows, 1):
        q = row["question"][:50]
        gold = gold_list(row.get("expect"))
        if not gold:
            for term in row.get("absent", []):
                hits = [f.name for f in files.values() if f and normalize(term) in page_texts(f)[None]]
                if hits:
                    out.append(f"row {n} ({q}): unanswerable, but {term!r} occurs in {', '.join(hits)}")
            continue
        f = files.get(row.get("source_contains"))
        if f is None:
            out.append(f"row {n} ({q}): no source_contains file")
            continue
        texts = page_texts(f)
        page = row.get("page")
        if page not in texts:
            out.append(f"row {n} ({q}): {f.name} has no page {page}")
        elif not any(normalize(g) in texts[page] for g in gold):
            out.append(f"row {n} ({q}): none of {gold} on {f.name} p. {page}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    rows = read_qa(Path(argv[0]))
    folder = Path(argv[1]) if len(argv) > 1 else DEFAULT_DOCS
    found = problems(rows, folder)
    for line in found:
        print(line)
    print(f"{len(rows)} rows, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
