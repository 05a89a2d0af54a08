"""Grounded-QA rewards: answer from the numbered sources, cite them, refuse when they lack it.

Pure functions with TRL's reward signature ``f(prompts, completions, **columns) -> list[float |
None]``, registered by name in :data:`trainer.rewards.REWARDS`. The columns come from a tasks
file (:mod:`trainer.tasks`, one row per task):

- ``answers``: acceptable answers (list of str);
- ``gold``: 1-based number of the gold passage, ``0`` when the sources lack the answer (the
  right reply is a refusal);
- ``support``: numbers of every shown passage that contains an answer (gold included);
- ``n_passages``: passages shown; ``0`` marks a row that is not a grounded task (e.g. a gsm8k
  row mixed in): every grounded reward returns ``None`` there.

Design after Sim et al. 2025, "Lessons from Training Grounded LLMs with Verifiable Rewards"
(arXiv 2506.15522): separate answer-correctness, citation and refusal rewards. The answer is
read with the product's convention (:mod:`models.prompts`): the last ``<answer>…</answer>``
block, else the text after ``</think>``, else the whole completion; sources are cited ``[n]``.
"""
from __future__ import annotations

import re
import unicodedata

from models.prompts import cited_numbers
from trainer.rewards import REWARDS, completion_text, extract_answer, numbers_match

#: Phrases that mark a refusal ("the sources do not say"), Chinese and English, lowercase.
REFUSAL_PHRASES = (
    "资料中没有", "资料里没有", "资料中未", "资料未", "没有提到", "未提及", "没有相关信息", "没有相关内容", "无法回答",
    "无法从资料", "没有找到相关",
    "not in the sources", "sources do not", "sources don't", "not mentioned", "no information",
    "cannot answer", "can't answer", "cannot be answered", "not found in the", "nothing relevant",
)
_CITE_RE = re.compile(r"\[\s*\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\s*\]")
_FORMAT_RE = re.compile(r"^\s*(?:<think>(?:(?!</?think>|</?answer>).)*</think>\s*)?<answer>"
                        r"(?:(?!</?answer>|</?think>).)+</answer>\s*$", re.DOTALL)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def normalize_number_text(text: str) -> str:
    """NFKC (fullwidth digits -> ASCII), one minus sign, thousands commas/spaces dropped.

    >>> normalize_number_text("１,２００ 元 −3")
    '1200 元 -3'
    """
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("\u2013", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return re.sub(r"(?<=\d) (?=\d{3}(?!\d))", "", text)


def reply_answer(text: str) -> str:
    """The answer part of a completion: last ``<answer>`` block, else text after ``</think>``,
    else the whole text (stripped).

    >>> reply_answer("<think>x</think><answer> 42 [1] </answer>")
    '42 [1]'
    >>> reply_answer("<think>x</think> 42")
    '42'
    """
    found = extract_answer(text)
    if found is not None:
        return found
    return text.rsplit("</think>", 1)[-1].strip()


def normalize_text(text: str) -> str:
    """NFKC, lowercase, drop whitespace, citation markers and most punctuation (for matching).

    >>> normalize_text("Ｔhe  plan, 30 天 [2]。")
    'theplan30天'
    """
    text = _CITE_RE.sub("", normalize_number_text(str(text or ""))).lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in "%.$-/:")


def _grams(text: str) -> list[str]:
    """Words for Latin text, characters for Chinese (the unit of the overlap F1)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [m for m in re.findall(r"[\u3400-\u9fff]|[a-z0-9]+", text)]


def overlap_f1(predicted: str, gold: str) -> float:
    """SQuAD-style token F1 (Rajpurkar et al. 2016) over words / Chinese characters.

    >>> round(overlap_f1("the state owns urban land", "urban land is owned by the state"), 2)
    0.67
    """
    p, g = _grams(predicted), _grams(gold)
    common = sum(min(p.count(t), g.count(t)) for t in set(p) & set(g))
    if not common:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def answer_score(predicted: str, gold: str) -> float:
    """How well ``predicted`` states ``gold``, in [0, 1] (lenient, citation markers ignored):

    1.0 when the normalised gold is contained in the normalised prediction, or when the gold is
    a number (``parse_number``: ``1,200``, ``２５%``) equal to a number in the prediction; else
    the overlap F1 when it reaches 0.5 (long definitions paraphrased); else 0.0.

    ======================  ===================  =====
    predicted               gold                 score
    ======================  ===================  =====
    ``共 1,200 元 [2]``     ``1200元``           1.0
    ``百分之25``            ``25%``              1.0
    ``It is 3 [1]``         ``4``                0.0
    ``国家机构实行民主集中制``  ``民主集中制``          1.0
    ======================  ===================  =====

    >>> [answer_score(p, g) for p, g in [("共 1,200 元 [2]", "1200元"), ("百分之25", "25%"),
    ...                                 ("It is 3 [1]", "4"), ("国家机构实行民主集中制", "民主集中制")]]
    [1.0, 1.0, 0.0, 1.0]
    """
    pred, want = normalize_text(predicted), normalize_text(gold)
    if not want:
        return 0.0
    if _contains(pred, want):
        return 1.0
    gold_nums = _NUMBER_RE.findall(normalize_number_text(str(gold)))
    if len(gold_nums) == 1:
        bare = _CITE_RE.sub(" ", str(predicted))
        if any(numbers_match(n, gold) for n in _NUMBER_RE.findall(normalize_number_text(bare))):
            return 1.0
    if gold_nums or len(_grams(str(gold))) < 4:   # numbers and short answers: exact only
        return 0.0
    f1 = overlap_f1(_CITE_RE.sub(" ", str(predicted)), str(gold))
    return round(f1, 4) if f1 >= 0.5 else 0.0


def _contains(text: str, part: str) -> bool:
    """``part`` in ``text``, not glued to more digits (``14天`` is not in ``114天``)."""
    start = text.find(part)
    while start >= 0:
        before = text[start - 1] if start else ""
        after = text[start + len(part):start + len(part) + 1]
        if not (part[0].isdigit() and before.isdigit()) and not (part[-1].isdigit() and after.isdigit()):
            return True
        start = text.find(part, start + 1)
    return False


def is_refusal(text: str) -> bool:
    """True when an answer says the sources do not contain the answer (:data:`REFUSAL_PHRASES`).

    >>> is_refusal("资料中没有提到这一点。"), is_refusal("The sources do not say."), is_refusal("42 [1]")
    (True, True, False)
    """
    low = unicodedata.normalize("NFKC", text or "").lower()
    return any(p in low for p in REFUSAL_PHRASES)


def _column(value, n: int, default=None) -> list:
    if value is None:
        return [default] * n
    return list(value) if isinstance(value, (list, tuple)) and len(value) == n else [value] * n


def _rows(completions, kwargs: dict):
    """Yield (answer text, answers, gold, support, grounded?) per completion."""
    n = len(completions)
    answers = kwargs.get("answers")
    answers = [[]] * n if answers is None else (list(answers) if len(answers) == n and
                                                  all(isinstance(a, (list, tuple)) for a in answers)
                                                  else [list(answers)] * n)
    golds = _column(kwargs.get("gold"), n, 0)
    supports = kwargs.get("support")
    supports = [[]] * n if supports is None else (list(supports) if len(supports) == n and
                                                    all(isinstance(s, (list, tuple)) for s in supports)
                                                    else [list(supports)] * n)
    shown = _column(kwargs.get("n_passages"), n, 0)
    for c, ans, gold, sup, k in zip(completions, answers, golds, supports, shown, strict=True):
        yield reply_answer(completion_text(c)), list(ans or []), int(gold or 0), list(sup or []), int(k or 0)


_PROMPT_LABELS = ("资料：", "问题：", "Sources:", "Question:")
_SOURCE_HEADER = re.compile(r"\[\d+\]\s*[^\s\[\]]+\.(?:pdf|docx|txt|md)\b", re.I)


def copies_prompt(answer: str, answers: list[str]) -> bool:
    """Whether an answer is a dump of the prompt rather than an answer (a reward hack: pasting
    every passage "contains" the gold answer and cites the gold passage): it carries the
    prompt's labels or a source header line, or it is far longer than any acceptable answer
    (more than 3x the longest + 80 characters, citation markers left out).

    >>> copies_prompt("全国人民代表大会每届任期五年。[1]", ["五年"])
    False
    >>> copies_prompt("资料：[1] 宪法.pdf, p. 12 全国人民代表大会每届任期五年。", ["五年"])
    True
    >>> copies_prompt("全国人民代表大会每届任期五年。" * 8, ["五年"])
    True
    """
    if any(label in answer for label in _PROMPT_LABELS) or _SOURCE_HEADER.search(answer):
        return True
    body = normalize_text(re.sub(r"\[\d+\]", "", answer))
    return len(body) > 3 * max((len(normalize_text(a)) for a in answers), default=0) + 80


# -- reward functions ---------------------------------------------------------------------------

def grounded_answer(prompts, completions, **kwargs) -> list[float | None]:
    """Answer correctness on answerable grounded tasks: the best :func:`answer_score` over the
    acceptable ``answers``; 0.0 for a refusal; None for unanswerable tasks (``gold`` 0, judged
    by :func:`refusal`) and for rows that are not grounded tasks.

    ===========================  ===============  ====  =====
    completion                   answers          gold  value
    ===========================  ===============  ====  =====
    ``<answer>五年 [2]</answer>``  ``["五年"]``      2     1.0
    ``<answer>资料中没有</answer>``  ``["五年"]``      2     0.0
    ``<answer>五年</answer>``      ``["五年"]``      0     None
    ===========================  ===============  ====  =====

    >>> grounded_answer(None, ["<answer>五年 [2]</answer>", "<answer>资料中没有</answer>", "<answer>五年</answer>"],
    ...                 answers=[["五年"]] * 3, gold=[2, 2, 0], n_passages=[3, 3, 3], support=[[2], [2], []])
    [1.0, 0.0, None]
    """
    out = []
    for ans, answers, gold, _sup, k in _rows(completions, kwargs):
        if not k or not gold or not answers:
            out.append(None)
        elif is_refusal(ans) or copies_prompt(ans, answers):
            out.append(0.0)
        else:
            out.append(max(answer_score(ans, a) for a in answers))
    return out


def citation(prompts, completions, **kwargs) -> list[float | None]:
    """Citation F1 on answerable grounded tasks: precision = share of cited ``[n]`` that are in
    ``support`` (citing a passage without the answer costs), recall = 1 when the gold passage
    (or another supporting one) is cited; reward = 2PR/(P+R), 0.0 without any citation, for a
    refusal, for a wrong answer (a citation vouches for the answer given) and for a prompt dump
    (:func:`copies_prompt`). None for unanswerable tasks and non-grounded rows.

    ===========================  =======  =======  =====
    answer                       gold     support  value
    ===========================  =======  =======  =====
    ``五年 [2]``                   2        [2]      1.0
    ``五年 [1][2]``                2        [2]      0.667
    ``五年 [1]``                   2        [2]      0.0
    ``五年``                       2        [2]      0.0
    ===========================  =======  =======  =====

    >>> citation(None, ["五年 [2]", "五年 [1][2]", "五年 [1]", "五年"], gold=[2] * 4, support=[[2]] * 4,
    ...          n_passages=[3] * 4, answers=[["五年"]] * 4)
    [1.0, 0.667, 0.0, 0.0]
    """
    out = []
    for ans, answers, gold, sup, k in _rows(completions, kwargs):
        if not k or not gold:
            out.append(None)
            continue
        cited = cited_numbers(ans, k)
        good = set(sup) | {gold}
        hits = sum(c in good for c in cited)
        wrong = answers and (copies_prompt(ans, answers) or not max(answer_score(ans, a) for a in answers))
        if not cited or not hits or is_refusal(ans) or wrong:
            out.append(0.0)
            continue
        precision, recall = hits / len(cited), 1.0
        out.append(round(2 * precision * recall / (precision + recall), 3))
    return out


def refusal(prompts, completions, **kwargs) -> list[float | None]:
    """Refuse iff the sources lack the answer: 1.0 for a refusal when ``gold`` is 0 and for an
    answer when ``gold`` > 0; 0.0 otherwise (refusing an answerable task costs as much as
    answering an unanswerable one). None for non-grounded rows.

    >>> refusal(None, ["<answer>资料中没有。</answer>", "<answer>五年[1]</answer>", "<answer>Not in the sources.</answer>"],
    ...         gold=[0, 0, 2], n_passages=[3, 3, 3])
    [1.0, 0.0, 0.0]
    """
    out = []
    for ans, _answers, gold, _sup, k in _rows(completions, kwargs):
        if not k:
            out.append(None)
        else:
            out.append(1.0 if is_refusal(ans) == (gold == 0) else 0.0)
    return out


def answer_format(prompts, completions, **kwargs) -> list[float | None]:
    """The product's answer format (:data:`models.prompts.SYSTEM`): an optional
    ``<think>…</think>`` then one non-empty ``<answer>…</answer>`` and nothing else: 1.0; an
    ``<answer>`` block with text around it: 0.5; no ``<answer>`` block, an empty one or a prompt
    dump (:func:`copies_prompt`): 0.0. None for non-grounded rows.

    >>> answer_format(None, ["<think>a</think><answer>b [1]</answer>", "<answer>b</answer>", "x <answer>b</answer> y",
    ...                      "b [1]"], n_passages=[3] * 4)
    [1.0, 1.0, 0.5, 0.0]
    """
    out = []
    for c, (ans, answers, _g, _s, k) in zip(completions, _rows(completions, kwargs), strict=True):
        text = completion_text(c)
        if not k:
            out.append(None)
        elif copies_prompt(ans, answers) or not ans.strip():
            out.append(0.0)
        elif _FORMAT_RE.match(text):
            out.append(1.0)
        else:
            out.append(0.5 if extract_answer(text) else 0.0)
    return out


GROUNDED_REWARDS = {
    "grounded_answer": grounded_answer,
    "citation": citation,
    "refusal": refusal,
    "answer_format": answer_format,
}
REWARDS.update(GROUNDED_REWARDS)  # selectable by name in recipes
