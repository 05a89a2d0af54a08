"""Which page of a chunk's page range holds a sentence (a chunk may span pages).

Whitespace-insensitive: PDF text has hard line breaks, U+3000 ideographic spaces ("第三条　…")
and hyphenation that the chunk text no longer has, so both sides are compared with all
whitespace removed.
"""
from __future__ import annotations

import re
from pathlib import Path

_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """``text`` without any whitespace (U+3000 included) and without soft hyphens at line ends.

    >>> squash("第三条\u3000中华人民共和国\\n的国家机构")
    '第三条中华人民共和国的国家机构'
    """
    return _SPACE.sub("", re.sub(r"-\n(?=[a-z])", "", text))


def page_of(path: str, sentence: str, first: int | None, last: int | None, probe: int = 24) -> int | None:
    """The 1-based page in ``first..last`` whose text contains ``sentence`` (its first
    ``probe`` non-space characters, then its last ones), else ``first``.

    Only PDFs have pages; anything else (or an unreadable file) returns ``first``.
    """
    if not first or not last or last <= first or not sentence or Path(path).suffix.lower() != ".pdf":
        return first
    s = squash(sentence.rstrip("…"))
    heads = [h for h in (s[:probe], s[-probe:]) if len(h) >= 6]
    try:
        import pymupdf

        with pymupdf.open(path) as doc:
            for number in range(first, min(last, doc.page_count) + 1):
                text = squash(doc[number - 1].get_text())
                if any(h in text for h in heads):
                    return number
    except (RuntimeError, OSError, ValueError):
        return first
    return first
