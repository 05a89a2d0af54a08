"""Reward functions for GRPO: pure, picked by name from :data:`REWARDS` (open-r1 style).

Every function has TRL's signature ``f(prompts, completions, **kwargs) -> list[float | None]``:
one float per completion, ``None`` when the gold answer cannot be judged (TRL turns it into NaN
and leaves it out of the reward). ``completions`` are strings or conversational lists of
messages (``[{"role": "assistant", "content": ...}]``); both are handled. The gold answer comes
from the dataset column ``answer`` (see :mod:`trainer.data`).

Answer convention: DeepSeek-R1-Zero's ``<think>…</think><answer>…</answer>`` tags; the answer is
the content of the *last* ``<answer>`` block and its number is the *last* number in it
(:func:`extract_answer`, :func:`parse_number`).
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from fractions import Fraction

RewardFunc = Callable[..., list]

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_STRICT_RE = re.compile(r"^\s*<think>\n?(?:(?!</?think>).)*?\n?</think>\s*<answer>\n?(?:(?!</?answer>).)*?"
                        r"\n?</answer>\s*$", re.DOTALL)
_SOFT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def completion_text(completion) -> str:
    """Text of one completion: a string, or the joined ``content`` of a list of messages
    (content may itself be a list of ``{"type": "text", "text": ...}`` blocks)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", completion.get("text"))
        return completion_text(content) if isinstance(content, list) else str(content or "")
    return "".join(completion_text(m) for m in completion or [])


def extract_answer(text: str) -> str | None:
    """Content of the last ``<answer>…</answer>`` block (R1-Zero convention), else None.

    >>> extract_answer("<think>3+5</think><answer> 8 </answer>")
    '8'
    """
    found = _ANSWER_RE.findall(text or "")
    return found[-1].strip() if found else None


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{…}`` (the MATH / Qwen-Math convention), else None."""
    found = _BOXED_RE.findall(text or "")
    return found[-1].strip() if found else None


def normalize_number_text(text: str) -> str:
    """NFKC (fullwidth digits -> ASCII), unify minus signs, drop thousands commas and spaces."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("\u2013", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return re.sub(r"(?<=\d) (?=\d{3}(?!\d))", "", text)


def parse_number(text: str | None) -> Fraction | None:
    """The last number in ``text`` as an exact Fraction: ``"$1,234.50"``, ``"１８ 元"``,
    ``"-3"``, ``"3/4"``, ``"18.0 km"``; units and words around it are ignored. None if none.

    >>> parse_number("共 1,200 元")
    Fraction(1200, 1)
    >>> parse_number("３/４")
    Fraction(3, 4)
    """
    if text is None:
        return None
    found = _NUMBER_RE.findall(normalize_number_text(text))
    if not found:
        return None
    num, _, den = found[-1].replace(" ", "").partition("/")
    try:
        value = Fraction(num)
        return value / Fraction(den) if den else value
    except (ValueError, ZeroDivisionError):
        return None


def numbers_match(predicted: str | None, gold: str | None) -> bool | None:
    """True when both parse to the same number (exact, or within 1e-6 relative); None when
    the gold does not parse; False when the prediction does not."""
    g = parse_number(gold)
    if g is None:
        return None
    p = parse_number(predicted)
    if p is None:
        return False
    return p == g or math.isclose(float(p), float(g), rel_tol=1e-6, abs_tol=1e-9)


def _golds(kwargs: dict, n: int) -> list:
    answers = kwargs.get("answer")
    if answers is None:
        return [None] * n
    return list(answers) if isinstance(answers, (list, tuple)) else [answers] * n


# -- reward functions (registry names = function names, as TRL logs them) -----------------------

def _graded(extract, completions, answer) -> list[float | None]:
    """1.0 / 0.0 per completion for ``extract(text)`` matching the gold number (lenient), None
    where the gold cannot be parsed."""
    golds = _golds({"answer": answer}, len(completions))
    out = []
    for c, gold in zip(completions, golds, strict=True):
        ok = numbers_match(extract(completion_text(c)), gold)
        out.append(None if ok is None else float(ok))
    return out


def correctness(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the ``<answer>`` number equals the gold ``answer`` (lenient), 0.0 when not or
    when there is no ``<answer>`` block, None when the gold cannot be parsed."""
    return _graded(extract_answer, completions, answer)


def boxed(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    r"""1.0 when the last ``\boxed{}`` holds the gold number, else 0.0; None for an unparsable gold."""
    return _graded(extract_boxed, completions, answer)


def integer(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the ``<answer>`` block holds one integer (units allowed: ``18 元``), else 0.0."""
    out = []
    for c in completions:
        ans = extract_answer(completion_text(c))
        value = parse_number(ans) if ans else None
        single = ans is not None and len(_NUMBER_RE.findall(normalize_number_text(ans))) == 1
        out.append(1.0 if single and value is not None and value.denominator == 1 else 0.0)
    return out


def strict_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 for exactly ``<think>…</think><answer>…</answer>`` with nothing around it, else 0.0."""
    return [1.0 if _STRICT_RE.match(completion_text(c)) else 0.0 for c in completions]


def soft_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 when a ``<think>…</think>`` block is followed by an ``<answer>…</answer>`` block anywhere."""
    return [1.0 if _SOFT_RE.search(completion_text(c)) else 0.0 for c in completions]


def xml_count(prompts, completions, **kwargs) -> list[float]:
    """0.25 per R1 tag present exactly once (max 1.0), minus 0.001 per character after the
    last ``</answer>`` (after willccbb's GRPO demo ``count_xml``); a repeated tag earns nothing."""
    out = []
    for c in completions:
        text = completion_text(c)
        score = sum(0.25 for tag in _TAGS if text.count(tag) == 1)
        if "</answer>" in text:
            score -= 0.001 * len(text.rsplit("</answer>", 1)[1].strip())
        out.append(max(score, 0.0))
    return out


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def language(prompts, completions, question=None, **kwargs) -> list[float]:
    """Language consistency (DeepSeek-R1, section 2.3.3): the share of the reply's letters that
    are in the question's script — CJK characters for a question containing any, else Latin
    letters; R1 tags are not counted. 0.0 for a reply without letters. Keeps Chinese questions answered in Chinese."""
    if question is None:
        question = [completion_text(p[-1:] if isinstance(p, list) else p) for p in (prompts or [])]
    questions = list(question) if isinstance(question, (list, tuple)) else [question] * len(completions)
    out = []
    for c, q in zip(completions, questions, strict=True):
        text = re.sub(r"</?(?:think|answer)>", "", completion_text(c))
        cjk = sum(_is_cjk(ch) for ch in text)
        latin = sum(ch.isascii() and ch.isalpha() for ch in text)
        want = cjk if any(_is_cjk(ch) for ch in str(q or "")) else latin
        out.append(want / (cjk + latin) if cjk + latin else 0.0)
    return out


REWARDS: dict[str, RewardFunc] = {
    "language": language,
    "correctness": correctness,
    "boxed": boxed,
    "integer": integer,
    "strict_format": strict_format,
    "soft_format": soft_format,
    "xml_count": xml_count,
}

#: Default weights: correctness weighs most (format rewards alone lead to the reward hacking
#: seen in public runs: format up, accuracy down).
DEFAULT_WEIGHTS: dict[str, float] = {
    "correctness": 2.0, "integer": 0.5, "strict_format": 0.5, "soft_format": 0.5, "xml_count": 0.5,
}


def get_reward_funcs(names) -> list[RewardFunc]:
    """Return the reward functions for ``names`` (in order).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; choose from {sorted(REWARDS)}")
    return [REWARDS[n] for n in names]


# Grounded-QA rewards (trainer/grounded.py: grounded_answer, citation, refusal, answer_format):
# importing the module adds them to REWARDS; last, because they build on the helpers above.
import trainer.grounded  # noqa: E402,F401
