"""Citations that hold: every ``[n]`` of an answer checked against passage n.

A *claim* is one sentence of the answer with the ``[n]`` markers written in or right after it.
Its *facts* are the numbers it states (NFKC, thousands separators dropped: "8,192" = "8192")
and its key terms: content words (jieba / lowercase words, as :func:`kb.relevance.content_terms`)
that are not already in the question — what the answer adds. A passage *supports* a claim when
it holds every number and at least :data:`TERM_SHARE` of the key terms (length-weighted; a
claim with neither is judged on all its terms). This is a lexical attribution check (the
"attributable to identified sources" idea of Rashkin et al. 2021, AIS, with string matching in
place of an NLI model: a 0.5B answerer mostly copies its source's wording).

:func:`verify` returns one :class:`Citation` per cited source; a citation whose passage lacks
the facts is moved to the passage that has them (the answer's marker is rewritten), else it is
marked unverified. Each citation carries the supporting sentence (``quote``) of its passage.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

#: least (length-weighted) share of a claim's key terms its passage must contain.
TERM_SHARE = 0.5
#: longest quote shown under an answer, in characters.
QUOTE_CHARS = 160

_MARK = re.compile(r"\[(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\]")
_CLAIM_END = re.compile(r"(?<=[。！？；!?;\n])|(?<=[.])\s")
_NUMBER = re.compile(r"\d+(?:[,，]\d{3})*(?:\.\d+)?")


@dataclass
class Citation:
    """One cited source after checking.

    Attributes:
        n: the source number as the answer now cites it.
        verified: passage n holds the facts of the sentence(s) citing it.
        source / page: the document and the page holding ``quote`` (None for page-less files).
        quote: the passage's sentence that best supports the claim ("" when none does).
        moved_from: the number the model wrote, when the citation was moved to ``n``.
        claim: the answer sentence citing it (markers removed).
    """

    n: int
    verified: bool
    source: str = ""
    page: int | None = None
    quote: str = ""
    moved_from: int | None = None
    claim: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _norm(text: str) -> str:
    from kb.relevance import normalize

    return re.sub(r"(?<=\d)[,，](?=\d{3})", "", normalize(text))


def numbers(text: str) -> list[str]:
    """Numbers stated in ``text``, normalized (fullwidth to ASCII, thousands separators dropped).

    >>> numbers("支持 ８１９２ 个 token，共 1,000 人[2]")
    ['8192', '1000']
    """
    return [n for n in (_norm(m.group(0)) for m in _NUMBER.finditer(_MARK.sub("", _norm(text)))) if n]


def claims(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, cited numbers) for each answer sentence that cites.

    A marker at the start of a sentence (after the previous one's full stop) belongs to the
    previous sentence, as in "…原则。[1]".

    >>> claims("国家实行民主集中制[1]。城市土地属于国家。[2] 无引用。")
    [('国家实行民主集中制。', [1]), ('城市土地属于国家。', [2])]
    """
    text = re.sub(r"([。！？!?.])\s*((?:\[\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\]\s*)+)", r"\2\1 ", answer)
    out = []
    for sent in _CLAIM_END.split(text):
        cited = [int(x) for m in _MARK.finditer(sent) for x in re.findall(r"\d{1,3}", m.group(1))]
        plain = re.sub(r"\s+(?=[。！？!?.,，])", "", _MARK.sub("", sent)).strip()
        if cited and plain:
            out.append((plain, list(dict.fromkeys(cited))))
    return out


def key_terms(claim: str, question: str) -> list[str]:
    """Content terms of the claim not in the question (all its terms when that leaves none)."""
    from kb.relevance import content_terms

    asked = set(content_terms(question))
    terms = [t for t in content_terms(claim) if not re.fullmatch(r"[\d.,]+", t)]
    return [t for t in terms if t not in asked] or terms


def support(passage: str, nums: list[str], terms: list[str]) -> float:
    """How well ``passage`` supports facts: 0 when a number is missing, else the
    length-weighted share of ``terms`` it contains (1.0 when there are no terms)."""
    from kb.relevance import contains

    text = _norm(passage)
    if any(n not in text for n in nums):
        return 0.0
    if not terms:
        return 1.0
    total = sum(len(t) for t in terms)
    return sum(len(t) for t in terms if contains(text, t)) / total


def best_sentence(passage: str, claim: str, terms: list[str], nums: list[str]) -> str:
    """The passage sentence sharing most facts (numbers, terms, then character bigrams) with
    the claim, cut to :data:`QUOTE_CHARS`."""
    from kb.chunking import split_sentences
    from kb.relevance import contains

    sents = [s.strip() for line in passage.split("\n") for s in split_sentences(line) if s.strip()]
    if not sents:
        return ""
    grams = {claim[i:i + 2] for i in range(len(claim) - 1)}

    def score(s: str) -> tuple:
        t = _norm(s)
        return (sum(n in t for n in nums), sum(len(x) for x in terms if contains(t, x)),
                sum(g in s for g in grams))
    best = max(sents, key=score)
    return best if len(best) <= QUOTE_CHARS else best[: QUOTE_CHARS - 1] + "…"


def verify(answer: str, question: str, passages: list[str]) -> tuple[str, list[Citation]]:
    """Check every ``[n]`` of ``answer`` against ``passages[n-1]`` (see module docstring).

    Args:
        answer: the model's answer with ``[n]`` markers (1-based).
        question: the question (its terms are not counted as the answer's facts).
        passages: the numbered sources' texts, in order.

    Returns:
        (the answer with moved markers rewritten, one :class:`Citation` per cited source in
        first-use order; ``source``/``page`` are left for the caller to fill).
    """
    found: dict[int, Citation] = {}
    renames: list[tuple[str, int, int]] = []
    for claim, cited in claims(answer):
        nums, terms = numbers(claim), key_terms(claim, question)
        scores = [support(p, nums, terms) for p in passages]
        for n in cited:
            if not 1 <= n <= len(passages):
                continue
            target, moved = n, None
            if scores[n - 1] < TERM_SHARE:
                best = max(range(len(passages)), key=lambda i: scores[i])
                if scores[best] >= TERM_SHARE and best + 1 != n:
                    target, moved = best + 1, n
                    renames.append((claim, n, target))
            ok = scores[target - 1] >= TERM_SHARE
            if target in found and found[target].verified:
                continue
            quote = best_sentence(passages[target - 1], claim, terms, nums) if ok else ""
            found[target] = Citation(target, ok, quote=quote, moved_from=moved, claim=claim)
    return _rewrite(answer, renames), list(found.values())


def _rewrite(answer: str, renames: list[tuple[str, int, int]]) -> str:
    """Replace marker ``[old]`` by ``[new]`` in the sentence of each moved claim."""
    for claim, old, new in renames:
        head = claim.rstrip("。！？!?.")[:12]
        at = answer.find(head) if head else -1
        start = max(at, 0)
        m = re.compile(r"\[" + str(old) + r"\]").search(answer, start)
        if m:
            answer = answer[:m.start()] + f"[{new}]" + answer[m.end():]
    return answer
