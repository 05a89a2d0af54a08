"""Pure scoring for the answer benchmark (bench/answers.py): lenient match, refusal detection,
citation check, retrieval hit, and the summary over a run's rows.

Conventions:
- *Lenient match* (SQuAD-style answer normalisation, Rajpurkar et al. 2016, adapted to Chinese):
  Unicode NFKC (fullwidth digits/letters and U+3000 become ASCII), case folded, all whitespace
  removed, thousands separators between digits dropped ("1,234" == "1234"). An answer is
  correct when any listed gold string is contained in it after both are normalised.
- *Refusal*: the service refused (its gate found nothing relevant), or the model itself said
  the sources do not hold the answer (资料中没有 / not in the sources ...).
- *Citation right*: one cited source's text contains a gold string, or it is the stated file
  (and page, when one is given).

No model, no store: every function here takes plain values so tests can hand-make cases.
"""
from __future__ import annotations

import re
import statistics
import unicodedata
from collections.abc import Iterable, Sequence

#: answers shorter than this (in tokens) are left out of the tokens/s median.
MIN_TOKENS = 8
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SPACE = re.compile(r"\s+")

#: Phrases that mean "the sources do not answer this" (normalised: no spaces, lower case).
REFUSAL_PATTERNS = [
    r"资料(中|里|内)?(并)?(没有|未|不)(提及|提到|包含|涉及|说明|给出|找到)?",
    r"(没有|未|无法)(在资料中)?找到(相关)?",
    r"(资料|文档|来源|材料)(中|里)?(并)?(没有|未)(相关)?(信息|内容|提及|提到)",
    r"知识库(中|里)?(没有|未)",
    r"(无法|不能)(根据|从)(所给|提供的|给出的)?(资料|文档|来源)",
    r"(无法|不能)回答",
    r"没有(相关)?(信息|内容|资料)",
    r"未(提及|提到|说明)",
    r"not(mentioned|found|provided|included|stated|given)in(the|any)?(given|provided)?(sources?|documents?|context|passages?)",
    r"(sources?|documents?|context|passages?)(do|does|did)not(contain|mention|say|provide|include|answer)",
    r"(sources?|documents?|context|passages?)(do|does)n't(contain|mention|say|provide|include|answer)",
    r"nothingrelevantwasfound",
    r"noinformation(about|on|regarding)",
    r"there(is|'s)noinformation",
    r"(cannot|can't)(answer|determine|findtheanswer)",
    r"idon'?tknow|idonotknow",
    r"isnotmentioned",
    r"notinthesources",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS))


def normalize(text: str) -> str:
    """Lenient form of ``text`` for containment tests (see module docstring).

    >>> normalize("１,２３４ 元　 Total")
    '1234元total'
    """
    t = unicodedata.normalize("NFKC", text or "").casefold()
    t = _SPACE.sub("", t)
    return _THOUSANDS.sub("", t)


def gold_list(expect: str | Sequence[str] | None) -> list[str]:
    """``expect`` as a list of gold strings ([] for an unanswerable row)."""
    if expect is None:
        return []
    return [expect] if isinstance(expect, str) else [str(e) for e in expect]


def contains_gold(text: str, expect: str | Sequence[str] | None) -> bool:
    """True when any gold string occurs in ``text`` after :func:`normalize` of both.

    >>> contains_gold("国家机构实行民主集中制的原则[1]", ["民主 集中制"])
    True
    >>> contains_gold("GDP was 12,345 yuan", "12345")
    True
    """
    t = normalize(text)
    return any(g and normalize(g) in t for g in gold_list(expect))


def is_refusal(answer: str, refused: bool = False) -> bool:
    """True when the service refused or the answer says the sources do not hold the answer.

    >>> is_refusal("资料中没有提到世界杯。")
    True
    >>> is_refusal("The sources do not mention the 2022 World Cup.")
    True
    >>> is_refusal("国家机构实行民主集中制的原则[1]。")
    False
    """
    if refused:
        return True
    t = normalize(answer).replace("’", "'")
    return bool(t) and bool(_REFUSAL.search(t))


def source_matches(source: str, page: int | None, want_file: str | None, want_page: int | None,
                   page_end: int | None = None) -> bool:
    """True when ``source`` (a path) contains ``want_file`` and, if ``want_page`` is given, the
    chunk's pages ``page..page_end`` include it. A ``want_file`` of None never matches.

    >>> source_matches("/d/zh_prc_constitution_2018.pdf", 4, "constitution", 5, page_end=5)
    True
    """
    if not want_file or want_file not in str(source):
        return False
    if want_page is None:
        return True
    return page is not None and page <= want_page <= (page_end or page)


def citation_right(cited: Iterable[dict], expect, want_file: str | None = None,
                   want_page: int | None = None) -> bool:
    """True when a cited source holds the answer: its text contains a gold string, or it is
    the stated file (and page).

    Args:
        cited: the sources the answer cites, each ``{"source", "page", "text"}`` (``page_end``
            optional: a chunk spanning pages counts for each of them).
        expect: the row's gold string(s).
        want_file, want_page: the row's ``source_contains`` and ``page``.
    """
    return any(contains_gold(c.get("text", ""), expect)
               or source_matches(c.get("source", ""), c.get("page"), want_file, want_page, c.get("page_end"))
               for c in cited)


def retrieval_hit(hits: Iterable[dict], expect, want_file: str | None = None,
                  want_page: int | None = None) -> bool:
    """True when any retrieved hit holds the answer (same test as :func:`citation_right`)."""
    return citation_right(hits, expect, want_file, want_page)


def score_row(row: dict, answer: str, refused: bool, cited: list[dict], hits: list[dict]) -> dict:
    """Scores of one question: ``answerable``, ``refused``, ``correct``, ``cited_right``,
    ``correct_and_cited``, ``hit`` (None where it does not apply: unanswerable rows)."""
    expect = row.get("expect")
    answerable = bool(gold_list(expect))
    refusal = is_refusal(answer, refused)
    out = {"answerable": answerable, "refused": refusal}
    if not answerable:
        return {**out, "correct": None, "cited_right": None, "correct_and_cited": None, "hit": None}
    want_file, want_page = row.get("source_contains"), row.get("page")
    correct = not refusal and contains_gold(answer, expect)
    cited_ok = citation_right(cited, expect, want_file, want_page)
    return {**out, "correct": correct, "cited_right": cited_ok, "correct_and_cited": correct and cited_ok,
            "hit": retrieval_hit(hits, expect, want_file, want_page)}


def _share(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def summarize(scored: list[dict]) -> dict:
    """Run totals from scored rows (each :func:`score_row` plus ``followup``, ``ttft_ms``,
    ``tok_per_s``): shares in 0..1, medians in ms and tokens/s.

    >>> summarize([{"answerable": True, "refused": False, "correct": True, "cited_right": True,
    ...             "correct_and_cited": True, "hit": True},
    ...            {"answerable": False, "refused": True}])["refusal_recall"]
    1.0
    """
    ans = [r for r in scored if r["answerable"] and not r.get("followup")]
    una = [r for r in scored if not r["answerable"]]
    fol = [r for r in scored if r.get("followup") and r["answerable"]]
    ttft = [r["ttft_ms"] for r in scored if r.get("ttft_ms")]
    # tokens/s of a 2-token answer is one inter-token gap: noise; count answers of MIN_TOKENS+
    tps = [r["tok_per_s"] for r in scored if r.get("tok_per_s") and (r.get("tokens") or MIN_TOKENS) >= MIN_TOKENS]
    return {
        "answerable": len(ans), "unanswerable": len(una), "followups": len(fol),
        "correct": _share([r["correct"] for r in ans]),
        "cited_right": _share([r["cited_right"] for r in ans]),
        "correct_and_cited": _share([r["correct_and_cited"] for r in ans]),
        "refusal_recall": _share([r["refused"] for r in una]),
        "false_refusal": _share([r["refused"] for r in ans]),
        "hit_at_k": _share([r["hit"] for r in ans]),
        "followup_correct": _share([r["correct"] for r in fol]),
        "followup_correct_and_cited": _share([r["correct_and_cited"] for r in fol]),
        "median_ttft_ms": round(statistics.median(ttft), 1) if ttft else None,
        "median_tok_per_s": round(statistics.median(tps), 2) if tps else None,
    }
