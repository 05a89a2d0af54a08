"""Extractive fallback: when the model's answer is supported by no passage, answer with the
passage sentence that best matches the question, labelled as a quote.

*Supported* is a lexical check (string matching in place of an NLI model, as in
models/citations.py): every number of the answer occurs in one passage, and at least
:data:`SUPPORT_SHARE` of the answer's own character bigrams / words (those not already in the
question, and not made only of the question's characters: what the answer adds) occur in
that same passage. An answer that only restates the
question ("根本制度是根本制度") adds nothing and is not supported.

A question that asks for a quantity or a date (:func:`asks_number`: 几/多少/哪年, how many /
what date ...) gets two more rules, because a 0.5B model often copies a *different* number of
its sources ("100 working languages" for "how many languages does the unsupervised data
cover", the 100ml dose of another drug): the quote is the best-matching sentence that states a
number (or the best-matching one joined with the next sentence when only that states it: a
heading line, then its number), and an answer whose numbers stand only in sentences that match
the question clearly worse than that quote counts as unsupported (:func:`number_mismatch`).
"""
from __future__ import annotations

import math
import re
import unicodedata

from models.passages import sentences

#: least share of the answer's added bigrams/words one passage must hold.
SUPPORT_SHARE = 0.5
#: least share of the question's words/bigrams the quoted sentence must hold; below it the
#: fallback answers "资料中没有" instead (nothing in the passages matches the question). 0.35 refused
#: answerable questions whose wording (the document name) the answer sentence lacks; the refusal
#: gate (kb/relevance.py) now catches the unanswerable ones first.
QUOTE_MIN_SHARE = 0.2
#: least :func:`question_share` of the best quote for it to replace the model's own "资料中没有"
#: (the gate found the passages relevant and one sentence restates most of the question: the
#: 0.5B model refused a long question whose answer was right there).
REFUSAL_OVERRIDE_SHARE = 0.6
#: lead-ins that say nothing about the sources' content ("根据资料中的信息，", "According to the sources,").
_LEAD_IN = re.compile(r"^\s*(?:(?:根据|依据|按照)(?:所给|提供的|以上|给出的)?的?(?:资料|材料|信息|内容|文档)(?:中|里)?的?(?:内容|信息)?[，,：:]?"
                      r"|(?:according to|based on)(?: the)?(?: information)?(?: provided)?(?: in)?(?: the)?"
                      r" (?:sources?|paper|documents?|information|context)(?: provided)?,?\s*)", re.IGNORECASE)
QUOTE_LABEL = {"zh": "资料原文：", "en": "From the source: "}

_MARK = re.compile(r"\[\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: a number that is not part of a name ("M3", "ORF1a"): no letter or digit right before it.
_FREE_NUMBER = re.compile(r"(?<![a-z\d.])\d+(?:\.\d+)?")
_HAN = re.compile(r"[\u3400-\u9fff]")


def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKC", _MARK.sub("", text)).lower()
    return re.sub(r"(?<=\d),(?=\d{3})", "", t)


#: words and characters that only ask ("how many", 几/哪/吗): no answer sentence is found by them.
_ASKING = frozenset({"many", "much"})
_ASKING_HAN = re.compile(r"[几哪吗啥谁]")


def _units(text: str) -> set[str]:
    """English words (2+ letters/digits) and character bigrams of Han runs, stopwords
    ("what", "was", "in", "什么", "多少": :data:`kb.retrieval.STOPWORDS`) and asking words
    ("how many", bigrams with 几/哪/吗/啥/谁) left out: they match any sentence, or none.

    >>> sorted(_units("What was Apple's revenue in 2023?"))
    ['2023', 'apple', 'revenue']
    """
    from kb.retrieval import STOPWORDS

    t = _norm(text)
    words = {w for w in re.findall(r"[a-z0-9.]+", t) if len(w) > 1}
    grams = set()
    for run in re.findall(r"[\u3400-\u9fff]+", t):
        grams |= {run[i:i + 2] for i in range(len(run) - 1)} or {run}
    return {u for u in (words | grams) - STOPWORDS - _ASKING if not _ASKING_HAN.search(u)}


def supported(answer: str, question: str, texts: list[str]) -> bool:
    """True when one passage of ``texts`` holds the answer's numbers and added words.

    >>> supported("国家机构实行民主集中制的原则[1]。", "国家机构实行什么原则？", ["实行民主集中制的原则。"])
    True
    >>> supported("根据资料中的信息，国家机构实行民主集中制的原则。", "国家机构实行什么原则？", ["实行民主集中制的原则。"])
    True
    >>> supported("根本制度是根本制度。", "根本制度是什么？", ["社会主义制度是根本制度。"])
    False
    >>> supported("It follows ColBert [2].", "Which model does it follow?", ["Following ColBert, we use"])
    True
    """
    answer = _LEAD_IN.sub("", answer)
    qchars = set(_norm(question))
    added = {u for u in _units(answer) - _units(question)
             if not (_HAN.match(u) and set(u) <= qchars)}  # a bigram of question characters adds nothing
    numbers = set(_NUMBER.findall(_norm(answer))) - set(_NUMBER.findall(_norm(question)))
    if not added:
        return False
    for text in texts:
        t = _norm(text)
        if not all(n in re.sub(r"\s+", "", t) for n in numbers):
            continue
        have = _units(text)
        if sum(u in have for u in added) / len(added) >= SUPPORT_SHARE:
            return True
    return False


#: question words that ask for a number: a quantity, a date, a year, a share.
_ASKS_NUMBER = re.compile(
    r"几|多少|多大|多长|多久|多高|多重|多远|多宽|多厚|哪(?:一)?(?:年|天|月|日)|何时|什么时(?:候|间)|日期|百分之|比例|比率"
    r"|\bhow (?:many|much|long|old|far|large|big|high|often)\b|\bwhen\b"
    r"|\b(?:what|which) (?:\w+ )?(?:year|date|day|month|time|percentage|share|number|size|length|age)\b",
    re.IGNORECASE)
#: Chinese numerals before a measure word ("五年", "三个").
_ZH_NUMERAL = re.compile(r"[一二三四五六七八九十百]+分之[一二三四五六七八九十百]+|[一二两三四五六七八九十百千万]+(?:个|天|年|月|日|次|种|项|名|人|岁|倍|小时|分钟|秒|周|张|层|级|类|位|届|期|代|轮|票|份|页|行|元|米|克|公里|部|台|家|批|组|段|字|%|％)")
#: English number words ("three sources", "1.2 billion").
_EN_NUMERAL = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                         r"fifty|hundred|thousand|million|billion|half|twice|double|triple)\b")
#: a list enumerator or article label at the start of a sentence ("1.", "（二）", "第十条"): no stated number.
_ENUMERATOR = re.compile(r"^\s*(?:\d{1,4}\s+(?=\d{1,3}[.、]))?(?:\d{1,2}(?:\.\d{1,2})+\s+(?=[a-z\u3400-\u9fff])|[(（]?\d{1,3}[.、)）](?!\d)|[(（][一二三四五六七八九十]+[)）]|第[一二三四五六七八九十百零\d]+[条章节款项])\s*")
#: an enumerator inside a sentence ("three sources: 1) the ..., 2) the ...", a page number and
#: a list number run into the text: "…不应使用。 12 2.阿兹夫定片。").
_INLINE_ENUMERATOR = re.compile(r"(?:^|(?<=[\s:;,。；：]))(?:\(?\d{1,2}\)|(?:\d{1,4}\s+)?\d{1,2}[.、](?![\d\s]))")
#: an answer whose numbers stand only in sentences matching the question at most this share as
#: well as the best number-stating sentence counts as a copied *other* number (:func:`number_mismatch`).
MISMATCH_RATIO = 0.6
#: least passage-level factor of a question unit's weight (:class:`_Scorer`).
PASSAGE_FLOOR = 0.1
#: weight of a word/bigram only in the conversation's earlier question (a follow-up's
#: ``context``), relative to one of the question itself.
CONTEXT_WEIGHT = 0.5


def asks_number(question: str) -> bool:
    """True when ``question`` asks for a quantity, date, year or share.

    >>> asks_number("全国人民代表大会每届任期几年？"), asks_number("By what date must the FAA receive comments?")
    (True, True)
    >>> asks_number("宪法规定国家机构实行什么原则？"), asks_number("What does M3 stand for?")
    (False, False)
    """
    return bool(_ASKS_NUMBER.search(question))


def states_number(sentence: str, question: str = "") -> bool:
    """True when ``sentence`` states a number that ``question`` does not already contain.

    >>> states_number("适用人群为发病5天以内的患者。"), states_number("每届任期五年。"), states_number("1.组合包装。")
    (True, True, False)
    >>> states_number("12 2.阿兹夫定片。"), states_number("M3-Embedding"), states_number("3.1 Data Curation")
    (False, False, False)
    >>> states_number("以全体组成人员的三分之二以上的多数通过"), states_number("不应使用。 12 2.阿兹夫定片。")
    (True, False)
    >>> states_number("The max length is 8192. It"), states_number("about 12. Then")
    (True, True)
    >>> states_number("Our dataset has these sources: 1) unsupervised data, 2) supervised data.")
    False
    >>> states_number("连续任职不得超过两届。"), states_number("It has three sources.")
    (True, True)
    """
    asked = set(_FREE_NUMBER.findall(_norm(question)))
    t = _INLINE_ENUMERATOR.sub(" ", _ENUMERATOR.sub("", _norm(sentence)))
    return (any(m not in asked for m in _FREE_NUMBER.findall(t)) or bool(_ZH_NUMERAL.search(t))
            or bool(_EN_NUMERAL.search(t)))


class _Scorer:
    """Question match of sentences, weighted by how rare each question word/bigram is among the
    given passages: BM25's IDF over their sentences, ``ln(1 + (N - df + 0.5) / (df + 0.5))``,
    times the same IDF over the passages themselves (scaled to 1 for a unit in one passage, at
    least :data:`PASSAGE_FLOOR`). "新型冠状病毒" in every sentence of a treatment plan, or the
    manual's name in the running header of every page, says little; "潜伏期" or "缩进" says which
    sentence is meant. A follow-up's earlier question (``context``) counts at
    :data:`CONTEXT_WEIGHT`: "它每次服用多少？" after "阿兹夫定片用于治疗什么患者？" looks for a dose of
    that drug."""

    def __init__(self, question: str, texts: list[str], context: str = ""):
        self.parts = [sentences(t) for t in texts]
        own = _units(question)
        self.q = own | _units(context)
        sent_df: dict[str, int] = {}
        doc_df: dict[str, int] = {}
        for part in self.parts:
            seen: set[str] = set()
            for sent in part:
                hit = self.q & _units(sent)
                seen |= hit
                for u in hit:
                    sent_df[u] = sent_df.get(u, 0) + 1
            for u in seen:
                doc_df[u] = doc_df.get(u, 0) + 1
        n, k = sum(map(len, self.parts)), len(self.parts)
        idf = lambda df, n: math.log(1 + (n - df + 0.5) / (df + 0.5))  # noqa: E731
        self.w = {u: idf(sent_df.get(u, 0), n) * max(PASSAGE_FLOOR, idf(doc_df.get(u, 1), k) / idf(1, k))
                  * (1.0 if u in own else CONTEXT_WEIGHT) for u in self.q}

    def score(self, text: str) -> float:
        """Summed weight of the question units ``text`` holds."""
        return sum(self.w[u] for u in self.q & _units(text))


def _candidates(sc: _Scorer, question: str):
    """``(score, passage index 1-based, sentence)`` for every sentence of every passage and, when
    a sentence states no number, that sentence joined with the next one or two of its passage
    until one states a number (a heading, its scope, then its dose), scored 10 % lower per
    sentence added (the single sentence wins a tie)."""
    for i, parts in enumerate(sc.parts, 1):
        for j, s in enumerate(parts):
            yield sc.score(s), i, s
            joined = s
            for extra, nxt in enumerate(parts[j + 1:j + 3], 1):
                if states_number(joined, question):
                    break
                joined += ("" if _HAN.match(nxt[:1] or " ") else " ") + nxt
                yield (1 - 0.1 * extra) * sc.score(joined), i, joined


def _best(cands, keep=lambda s: True) -> tuple[float, int, str]:
    """The highest-scoring candidate passing ``keep`` (ties: the shorter sentence, then the
    earlier passage); ``(0, 0, "")`` when none scores above 0."""
    best = (0.0, 0, "")
    for score, i, s in cands:
        if score > 0 and keep(s) and (score > best[0] + 1e-9 or (abs(score - best[0]) <= 1e-9 and len(s) < len(best[2]))):
            best = (score, i, s)
    return best


def number_mismatch(answer: str, question: str, texts: list[str], context: str = "") -> bool:
    """True when ``question`` asks for a number, the answer states numbers, and every sentence
    (or heading + sentence, :func:`_candidates`) of ``texts`` holding all of them matches the
    question at most :data:`MISMATCH_RATIO` as
    well as the best number-stating sentence (the model copied another sentence's number).
    ``context``: a follow-up's earlier question (see :class:`_Scorer`). A number in a table row
    is never judged so (the row holds the cell, its header the question's words).

    >>> texts = ["M3-Embedding supports more than 100 working languages.",
    ...          "The unsupervised data of M3-Embedding covers 194 languages and 2655 cross-lingual pairs."]
    >>> q = "How many languages does the unsupervised data of M3-Embedding cover?"
    >>> number_mismatch("It covers 100 languages [1].", q, texts), number_mismatch("It covers 194 languages [2].", q, texts)
    (True, False)
    """
    if not asks_number(question):
        return False
    nums = set(_FREE_NUMBER.findall(_norm(_LEAD_IN.sub("", answer)))) - set(_FREE_NUMBER.findall(_norm(question)))
    if not nums:
        return False
    sc = _Scorer(question, texts, context)
    cands = list(_candidates(sc, question))
    best = _best(cands, lambda s: states_number(s, question))[0]
    holding = [(score, s) for score, _, s in cands if nums <= set(_FREE_NUMBER.findall(_norm(s)))]
    if any("|" in s for _, s in holding):  # a table cell: its row need not repeat the question
        return False
    return bool(holding) and max(score for score, _ in holding) <= MISMATCH_RATIO * best


def best_quote(question: str, texts: list[str], context: str = "") -> tuple[int, str]:
    """``(1-based passage index, sentence)``: the sentence of all passages that best matches the
    question (rare words count more, see :class:`_Scorer`; ties: the shorter sentence, then the
    earlier passage); for a question that asks for a number (:func:`asks_number`), the
    best-matching sentence that states one when it matches at least half as well (a sentence
    joined with the next one counts, see :func:`_candidates`), else ``(0, "")`` (the number
    asked for is not in the passages: "新冠病毒疫苗一剂的价格是多少元？"); ``(0, "")`` when the best
    sentence holds :data:`QUOTE_MIN_SHARE` of the question's words/bigrams (numbers alone do not
    count). ``context``: a follow-up's earlier question (see :class:`_Scorer`).

    >>> best_quote("首都是哪里？", ["国旗是五星红旗。", "首都是北京。"])
    (2, '首都是北京。')
    >>> best_quote("珠穆朗玛峰有多高？", ["首都是北京。"])
    (0, '')
    >>> best_quote("What was Apple's revenue in 2023?", ["Other methods (Zhang et al., 2023) exist."])
    (0, '')
    >>> best_quote("新冠病毒疫苗一剂的价格是多少元？", ["接种新冠病毒疫苗后可获得一定的免疫力。"])
    (0, '')
    >>> best_quote("组合包装适用于发病几天以内的患者？", ["1.组合包装。适用人群为发病5天以内的患者。"])
    (1, '适用人群为发病5天以内的患者。')
    """
    sc = _Scorer(question, texts, context)
    best = _best((sc.score(s), i, s) for i, part in enumerate(sc.parts, 1) for s in part)
    # does any sentence match the question? (unweighted share of its words/bigrams; a sentence
    # sharing only its numbers does not: "What was Apple's revenue in 2023?")
    share = max((len(sc.q & _units(x)) for part in sc.parts for x in part
                 if not all(_NUMBER.fullmatch(u) for u in sc.q & _units(x))), default=0)
    if not sc.q or not best[0] or share / len(sc.q) < QUOTE_MIN_SHARE:
        return 0, ""
    if asks_number(question) and not states_number(best[2], question):
        num = _best(_candidates(sc, question), lambda s: states_number(s, question))
        if num[0] * 2 < best[0]:  # a number is asked and no sentence that matches states one
            return 0, ""
        best = num
    return best[1], best[2]


def question_share(question: str, sentence: str) -> float:
    """Share of the question's words/bigrams (:func:`_units`) that ``sentence`` holds, 0..1.

    >>> question_share("首都是哪里？", "首都是北京。")
    1.0
    """
    q = _units(question)
    return len(q & _units(sentence)) / len(q) if q else 0.0


def quote_answer(question: str, sentence: str, n: int, lang: str) -> str:
    """The fallback answer text: a label, the quoted sentence and its ``[n]``."""
    quote = f"“{sentence.strip()}”" if lang == "zh" else f'"{sentence.strip()}"'
    return f"{QUOTE_LABEL[lang]}{quote}[{n}]"
