"""Extractive fallback: when the model's answer is supported by no passage, answer with the
passage sentence that best matches the question, labelled as a quote.

*Supported* is a lexical check (string matching in place of an NLI model, as in
models/citations.py): every number of the answer occurs in one passage, and at least
:data:`SUPPORT_SHARE` of the answer's own character bigrams / words (those not already in the
question, and not made only of the question's characters: what the answer adds) occur in
that same passage. An answer that only restates the
question ("根本制度是根本制度") adds nothing and is not supported.
"""
from __future__ import annotations

import re
import unicodedata

from models.passages import best_sentence, sentences

#: least share of the answer's added bigrams/words one passage must hold.
SUPPORT_SHARE = 0.5
#: least share of the question's words/bigrams the quoted sentence must hold; below it the
#: fallback answers "资料中没有" instead (nothing in the passages matches the question). 0.35 refused
#: answerable questions whose wording (the document name) the answer sentence lacks; the refusal
#: gate (kb/relevance.py) now catches the unanswerable ones first.
QUOTE_MIN_SHARE = 0.2
#: lead-ins that say nothing about the sources' content ("根据资料中的信息，", "According to the sources,").
_LEAD_IN = re.compile(r"^\s*(?:(?:根据|依据|按照)(?:所给|提供的|以上|给出的)?的?(?:资料|材料|信息|内容|文档)(?:中|里)?的?(?:内容|信息)?[，,：:]?"
                      r"|(?:according to|based on)(?: the)?(?: information)?(?: provided)?(?: in)?(?: the)?"
                      r" (?:sources?|paper|documents?|information|context)(?: provided)?,?\s*)", re.IGNORECASE)
QUOTE_LABEL = {"zh": "资料原文：", "en": "From the source: "}

_MARK = re.compile(r"\[\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_HAN = re.compile(r"[\u3400-\u9fff]")


def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKC", _MARK.sub("", text)).lower()
    return re.sub(r"(?<=\d),(?=\d{3})", "", t)


def _units(text: str) -> set[str]:
    """English words (2+ letters/digits) and character bigrams of Han runs."""
    t = _norm(text)
    words = {w for w in re.findall(r"[a-z0-9.]+", t) if len(w) > 1}
    grams = set()
    for run in re.findall(r"[\u3400-\u9fff]+", t):
        grams |= {run[i:i + 2] for i in range(len(run) - 1)} or {run}
    return words | grams


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


def best_quote(question: str, texts: list[str]) -> tuple[int, str]:
    """``(1-based passage index, sentence)``: the sentence of all passages sharing the most
    words/bigrams with the question (ties: the shorter sentence, then the earlier passage);
    ``(0, "")`` when none shares at least :data:`QUOTE_MIN_SHARE` of the question's.

    >>> best_quote("首都是哪里？", ["国旗是五星红旗。", "首都是北京。"])
    (2, '首都是北京。')
    >>> best_quote("珠穆朗玛峰有多高？", ["首都是北京。"])
    (0, '')
    """
    q = _units(question)
    best = (0, 0, "")
    for i, text in enumerate(texts, 1):
        parts = sentences(text)
        if not parts:
            continue
        s = parts[best_sentence(question, text)]
        score = len(q & _units(s))
        if score > best[0] or (score == best[0] and score and len(s) < len(best[2])):
            best = (score, i, s)
    if not q or best[0] / len(q) < QUOTE_MIN_SHARE:
        return 0, ""
    return best[1], best[2]


def quote_answer(question: str, sentence: str, n: int, lang: str) -> str:
    """The fallback answer text: a label, the quoted sentence and its ``[n]``."""
    quote = f"“{sentence.strip()}”" if lang == "zh" else f'"{sentence.strip()}"'
    return f"{QUOTE_LABEL[lang]}{quote}[{n}]"
