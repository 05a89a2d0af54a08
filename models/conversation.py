"""Conversation rules around one question (pure: strings in, strings out).

- :func:`check_question`: bad input (empty, too long, a third language) -> one clear message.
- :func:`is_follow_up` / :func:`retrieval_query`: the condense-question step, as a cheap rule a
  0.5B model does not need: a short question, or one with a pronoun / ellipsis marker, is
  searched together with the previous question (LangChain's ConversationalRetrievalChain and
  LlamaIndex's CondenseQuestionChatEngine rewrite it with the LLM instead).
- :func:`is_model_refusal`: the model's own "not in the sources" answer, shown as a refusal.
- :func:`refusal_text`: the refusal in the question's language (the UI language's when unknown).
"""
from __future__ import annotations

import re

from kb.types import Message

#: longest question accepted, in characters (a 0.5B model's prompt budget is ~3.5k tokens).
MAX_QUESTION_CHARS = 1000

_ZH_MARKERS = re.compile(r"[它这那该呢]|其(?!他|实|次|余|它)")
_EN_MARKERS = re.compile(r"\b(it|its|this|that|these|those|they|them|their|last|former|latter|above|"
                         r"same|mentioned|previous)\b|^(and|or|what about|how about|why not)\b", re.I)
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+")
#: max length of a "short" follow-up: Han characters / English words.
SHORT_HAN, SHORT_WORDS = 6, 3

_SCRIPTS = {
    "Korean": r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]", "Japanese": r"[\u3040-\u30ff]",
    "Russian (Cyrillic)": r"[\u0400-\u04ff]", "Arabic": r"[\u0600-\u06ff]", "Thai": r"[\u0e00-\u0e7f]",
    "Hindi (Devanagari)": r"[\u0900-\u097f]", "Greek": r"[\u0370-\u03ff]", "Hebrew": r"[\u0590-\u05ff]",
}
_ACCENTED = re.compile(r"[\u00c0-\u00ff\u0100-\u024f]")

REFUSALS = {
    "zh": "在知识库「{kb}」中没有找到相关内容。",
    "en": "Nothing relevant was found in the knowledge base \"{kb}\".",
}
_MODEL_REFUSAL = re.compile(
    r"资料(中|里|中并|里并)?(没有|未|并未|不)(提到|提及|包含|涉及|说明|给出|找到)?|没有(找到|提到|提及|相关)|未(提及|提到|找到|涉及)|"
    r"无法(回答|确定|从|根据)|不知道|"
    r"\b(not|isn't|is not|aren't|are not)\s+(mentioned|found|covered|stated|given|contained|provided|in)\b.{0,30}\bsources?\b|"
    r"\bsources?\b.{0,40}\b(do|does|did)\s*n[o']t\b|\bno (relevant )?information\b|\bcannot (be )?(answer|determine|found)|"
    r"\bI (don't|do not) know\b", re.I)
#: a refusal phrase must start within this many characters of the answer.
REFUSAL_WITHIN = 30


def check_question(question: str) -> str:
    """The question, stripped; raises ValueError with one clear line for bad input.

    Raises:
        ValueError: empty; longer than :data:`MAX_QUESTION_CHARS`; mostly in a script other
            than Chinese or English (Korean, Japanese kana, Cyrillic ...), or Latin text with
            many accented letters (French, German, Spanish ...).

    >>> check_question("  国家机构实行什么原则？ ")
    '国家机构实行什么原则？'
    """
    q = (question or "").strip()
    if not q:
        raise ValueError(Message("question_empty", "the question is empty: type a question about your documents"))
    if len(q) > MAX_QUESTION_CHARS:
        raise ValueError(Message("question_long", "the question is {n:,} characters long; TQT-s takes up to "
                                 "{limit:,}: ask the point you want answered in a sentence or two",
                                 n=len(q), limit=MAX_QUESTION_CHARS))
    letters = sum(ch.isalpha() for ch in q) or 1
    for name, pattern in _SCRIPTS.items():
        if len(re.findall(pattern, q)) / letters > 0.3:
            return _third_language(name)
    accented = len(_ACCENTED.findall(q))
    if not _HAN.search(q) and accented >= 2 and accented / letters > 0.04:
        return _third_language("a language other than English")
    return q


def _third_language(name: str) -> str:
    raise ValueError(Message("question_language", "the question looks like {name}; TQT-s answers questions in "
                             "Chinese or English: please ask in one of them (问题请用中文或英文)", name=name))


def is_follow_up(question: str) -> bool:
    """True for a question that leans on the previous one: a pronoun / ellipsis marker
    (它/这/那/其/该/呢; it/this/that/these/they/last ...) or a short one
    (<= :data:`SHORT_HAN` Han characters / <= :data:`SHORT_WORDS` words).

    >>> is_follow_up("How does the last of these three work?"), is_follow_up("那第五条呢？")
    (True, True)
    >>> is_follow_up("What is the maximum input length of M3-Embedding?")
    False
    """
    q = question.strip()
    if _ZH_MARKERS.search(q) or _EN_MARKERS.search(q):
        return True
    han, words = len(_HAN.findall(q)), len(_WORD.findall(q))
    return (han > 0 and han <= SHORT_HAN and words <= 1) or (han == 0 and words <= SHORT_WORDS)


def retrieval_query(question: str, previous: str | None, max_chars: int = 300) -> str:
    """The query to search and to judge relevance with: the question, joined after the
    previous turn's query when the question is a follow-up (:func:`is_follow_up`).

    >>> retrieval_query("那第五条呢？", "宪法第三条讲什么？")
    '宪法第三条讲什么？ 那第五条呢？'
    >>> retrieval_query("宪法第三条讲什么？", "WeKnora 是什么？")
    '宪法第三条讲什么？'
    """
    if not previous or not is_follow_up(question):
        return question
    return (previous[-max(max_chars - len(question) - 1, 0):] + " " + question).strip()


def is_model_refusal(answer: str) -> bool:
    """True when the model's answer says the sources do not have it ("资料中没有",
    "not mentioned in the sources", ...) within its first :data:`REFUSAL_WITHIN` characters.

    >>> is_model_refusal("资料中没有提到2022年世界杯的冠军。"), is_model_refusal("实行民主集中制的原则[1]。")
    (True, False)
    >>> is_model_refusal("The sources do not say who won.")
    True
    """
    m = _MODEL_REFUSAL.search(re.sub(r"\[\d+\]", "", answer or ""))
    return m is not None and m.start() <= REFUSAL_WITHIN


def refusal_text(template: str, ui_language: str, kb: str) -> str:
    """The refusal shown when nothing relevant was found: ``template`` (settings ``refusal``)
    when set, else the built-in one in ``ui_language`` (zh | en; the answering service passes
    the question's language, so an English question is refused in English in a Chinese UI).

    >>> refusal_text("", "en", "laws")
    'Nothing relevant was found in the knowledge base "laws".'
    """
    return (template or REFUSALS.get(ui_language, REFUSALS["en"])).format(kb=kb)
