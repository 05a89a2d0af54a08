"""Reward functions for GRPO: pure, picked by name from :data:`REWARDS` (open-r1 style).

Every function has TRL's signature ``f(prompts, completions, **kwargs) -> list[float | None]``:
one float per completion, ``None`` when the gold answer cannot be judged (TRL turns it into NaN
and leaves it out of the reward). ``completions`` and ``prompts`` are strings or conversational
lists of messages (``[{"role": "assistant", "content": ...}]``); both are handled. The gold
answer comes from the dataset column ``answer``, the question from ``question`` (see
:mod:`trainer.data`).

Answer convention: DeepSeek-R1-Zero's ``<think>…</think><answer>…</answer>`` tags; the answer is
the content of the *last* ``<answer>`` block and its number is the *last* number in it
(:func:`extract_answer`, :func:`parse_number`).

Only real work is paid (:func:`shown_work`): the format rewards give nothing when the think or
answer text is empty or a copy of prompt text (the system prompt's worked example, the question),
or when the think block lacks the reasoning's numbers (one of the question's numbers and the
answer's number). A policy that copies a template therefore earns less than half of what a
correct answer earns under every recipe (tests/test_trainer_rewards.py).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from fractions import Fraction

from trainer.numerals import find_numbers

RewardFunc = Callable[..., list]

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_STRICT_RE = re.compile(r"^\s*<think>\n?(?:(?!</?think>).)*?\n?</think>\s*<answer>\n?(?:(?!</?answer>).)*?"
                        r"\n?</answer>\s*$", re.DOTALL)
_SOFT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
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
    An empty block gives ``""`` (not None): callers must not fall back to other text.

    >>> extract_answer("<think>3+5</think><answer> 8 </answer>")
    '8'
    >>> extract_answer("<think>3+5=8</think><answer></answer>")
    ''
    """
    found = _ANSWER_RE.findall(text or "")
    return found[-1].strip() if found else None


def extract_think(text: str) -> str | None:
    """Content of the first ``<think>…</think>`` block, else None."""
    found = _THINK_RE.search(text or "")
    return found.group(1).strip() if found else None


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{…}`` (the MATH / Qwen-Math convention), else None."""
    found = _BOXED_RE.findall(text or "")
    return found[-1].strip() if found else None


def parse_number(text: str | None) -> Fraction | None:
    """The last number in ``text`` as an exact Fraction (see :func:`trainer.numerals.find_numbers`
    for what counts as a number), or None.

    ======================  ==================
    text                    value
    ======================  ==================
    ``共 1,200 元``          1200
    ``３/４``                3/4
    ``5万``                  50000
    ``七十二``               72
    ``一百零五``             105
    ``1.5 million``         1500000
    ``3:30``                7/2 (hours)
    ======================  ==================

    >>> [parse_number(t) for t in ("共 1,200 元", "３/４", "5万", "七十二", "一百零五", "1.5 million", "3:30")]
    [Fraction(1200, 1), Fraction(3, 4), Fraction(50000, 1), Fraction(72, 1), Fraction(105, 1), \
Fraction(1500000, 1), Fraction(7, 2)]
    >>> parse_number("no number") is None
    True
    """
    found = find_numbers(text or "")
    return found[-1] if found else None


def _decimals(text: str) -> int | None:
    """Digits after the point of the last plain decimal in ``text`` (None when there is none)."""
    m = re.findall(r"\d\.(\d+)", unicodedata.normalize("NFKC", text or ""))
    return len(m[-1]) if m else None


def numbers_match(predicted: str | None, gold: str | None) -> bool | None:
    """True when the numbers are equal. Exact rationals: 2000001 is not 2000000. One allowance:
    a gold with no finite decimal form (1/3) matches a decimal rounded to its own places (0.33).

    ===================  ==========  ========
    predicted            gold        result
    ===================  ==========  ========
    ``2000001``          2000000     False
    ``5万``              50000       True
    ``七十二``           72          True
    ``0.33``             1/3         True
    ``3:30``             3.5         True
    ``""`` (empty)       18          False
    ``18``               unknown     None
    ===================  ==========  ========

    >>> [numbers_match(p, g) for p, g in [("2000001", "2000000"), ("5万", "50000"), ("七十二", "72"),
    ...                                    ("0.33", "1/3"), ("3:30", "3.5"), ("", "18"), ("18", "unknown")]]
    [False, True, True, True, True, False, None]
    """
    g = parse_number(gold)
    if g is None:
        return None
    p = parse_number(predicted)
    if p is None:
        return False
    if p == g:
        return True
    places = _decimals(predicted or "")
    den = g.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    return den != 1 and places is not None and round(g, places) == p


def _golds(answer, n: int) -> list:
    if answer is None:
        return [None] * n
    return list(answer) if isinstance(answer, (list, tuple)) else [answer] * n


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))


def is_copy(span: str | None, prompt_text: str, coverage: float = 0.8) -> bool:
    """True when ``span`` is empty or prompt text: it occurs in the prompt (whitespace ignored),
    or at least ``coverage`` of its characters lie in 4-character runs found in the prompt (a
    restated question with a changed comma is still a copy). Reasoning restates some of the question but adds its arithmetic.

    >>> p = "例如：<think>4+3 = 7</think>。题目：小明有 16 个鸡蛋，吃了 3 个，还剩几个？"
    >>> [is_copy(t, p) for t in ("4 + 3 = 7", "", "6 × 4 = 24", "小明有16个鸡蛋。吃了3个，还剩几个？",
    ...                          "小明有 16 个鸡蛋，吃了 3 个，16 - 3 = 13，还剩 13 个")]
    [True, True, False, True, False]
    """
    s, p = _squash(span or ""), _squash(prompt_text)
    if not s or s in p:
        return True
    if len(s) < 8:
        return False
    covered: set[int] = set()
    for i in range(len(s) - 3):
        if s[i:i + 4] in p:
            covered.update(range(i, i + 4))
    return len(covered) >= coverage * len(s)


def has_reasoning_numbers(think: str, question: str, answer: str | None) -> bool:
    """The think block holds one of the question's numbers (if it has any) and the answer's
    number (if it has one): the reasoning, not a restated heading.

    >>> has_reasoning_numbers("48 / 2 = 24, 48 + 24 = 72", "卖了48个，五月卖了一半", "72")
    True
    >>> has_reasoning_numbers("Let me think step by step", "卖了48个", "72")
    False
    >>> has_reasoning_numbers("48 个", "卖了48个", "72")
    False
    """
    mine = set(find_numbers(think))
    asked = set(find_numbers(question or ""))
    final = parse_number(answer) if answer else None
    return bool(mine) and (not asked or bool(mine & asked)) and (final is None or final in mine)


def shown_work(text: str, prompt_text: str, question: str) -> bool:
    """True when the completion has a think and an answer block, neither empty nor a copy of
    prompt text, and the think holds the reasoning's numbers (:func:`has_reasoning_numbers`)."""
    think, ans = extract_think(text), extract_answer(text)
    if think is None or ans is None or is_copy(think, prompt_text) or _answer_is_copy(ans, prompt_text):
        return False
    return has_reasoning_numbers(think, question, ans)


def _contexts(prompts, n: int, question) -> list[tuple[str, str]]:
    """(all prompt text, question) per completion; the question is the last prompt message
    when the ``question`` column is not given."""
    prompts = list(prompts) if prompts else [""] * n
    if len(prompts) != n:
        prompts = (prompts * n)[:n]
    texts = [completion_text(p) for p in prompts]
    if question is None:
        question = [completion_text(p[-1:]) if isinstance(p, list) else str(p or "") for p in prompts]
    qs = list(question) if isinstance(question, (list, tuple)) else [question] * n
    return list(zip(texts, [str(q or "") for q in qs], strict=True))


def _answer_is_copy(ans: str, prompt_text: str) -> bool:
    """An answer is a copy when it is empty or its whole tagged block stands in the prompt."""
    return not ans.strip() or f"<answer>{_squash(ans)}</answer>" in _squash(prompt_text)


# -- reward functions (registry names = function names, as TRL logs them) -----------------------

def _graded(extract, completions, answer) -> list[float | None]:
    """1.0 / 0.0 per completion for ``extract(text)`` matching the gold number, None where the
    gold cannot be parsed."""
    out = []
    for c, gold in zip(completions, _golds(answer, len(completions)), strict=True):
        ok = numbers_match(extract(completion_text(c)), gold)
        out.append(None if ok is None else float(ok))
    return out


def correctness(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the ``<answer>`` number equals the gold ``answer`` (:func:`numbers_match`),
    0.0 when not, when the block is empty or missing; None when the gold cannot be parsed.

    >>> gold = ["50000"]
    >>> [correctness(None, [c], answer=gold)[0] for c in ["<think>5×1万=5万</think><answer>5万</answer>",
    ...  "<answer>5</answer>", "<answer></answer> 50000", "50000"]]
    [1.0, 0.0, 0.0, 0.0]
    """
    return _graded(extract_answer, completions, answer)


def boxed(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    r"""1.0 when the last ``\boxed{}`` holds the gold number, else 0.0; None for an unparsable gold.

    >>> boxed(None, [r"\boxed{1,000}", r"\boxed{9}", "1000", r"\boxed{}", r"\boxed{一千}"], answer=["1000"] * 5)
    [1.0, 0.0, 0.0, 0.0, 1.0]
    """
    return _graded(extract_boxed, completions, answer)


def integer(prompts, completions, question=None, **kwargs) -> list[float]:
    """1.0 when the work is shown (:func:`shown_work`) and the ``<answer>`` holds exactly one
    number, an integer (units allowed: ``18 元``); else 0.0.

    >>> q = [[{"role": "user", "content": "3 个加 5 个"}]]
    >>> [integer(q, [c])[0] for c in ["<think>3+5=8</think><answer>8 个</answer>",
    ...  "<think>3+5=8</think><answer>8.5</answer>", "<think>想想</think><answer>8</answer>"]]
    [1.0, 0.0, 0.0]
    """
    out = []
    for c, (ptext, q) in zip(completions, _contexts(prompts, len(completions), question), strict=True):
        text = completion_text(c)
        nums = find_numbers(extract_answer(text) or "")
        ok = shown_work(text, ptext, q) and len(nums) == 1 and nums[0].denominator == 1
        out.append(1.0 if ok else 0.0)
    return out


def strict_format(prompts, completions, question=None, **kwargs) -> list[float]:
    """1.0 for exactly ``<think>…</think><answer>…</answer>`` with nothing around it and the
    work shown (:func:`shown_work`), else 0.0.

    >>> q = [[{"role": "system", "content": "例：<think>6 × 4 = 24</think><answer>24</answer>"},
    ...       {"role": "user", "content": "3 个加 5 个"}]]
    >>> [strict_format(q, [c])[0] for c in ["<think>3+5=8</think>\\n<answer>8</answer>",
    ...  "<think>6 × 4 = 24</think><answer>24</answer>",                     # the example, copied
    ...  "<think> reasoning process here </think><answer> answer here </answer>",   # old template
    ...  "<think></think><answer>8</answer>", "<think>3+5=8</think><answer></answer>",
    ...  "我算一下 <think>3+5=8</think><answer>8</answer>"]]
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    return [1.0 if _STRICT_RE.match(completion_text(c)) and shown_work(completion_text(c), p, q) else 0.0
            for c, (p, q) in zip(completions, _contexts(prompts, len(completions), question), strict=True)]


def soft_format(prompts, completions, question=None, **kwargs) -> list[float]:
    """1.0 when a ``<think>…</think>`` block is followed by an ``<answer>…</answer>`` block
    anywhere and the work is shown (:func:`shown_work`), else 0.0.

    >>> q = [[{"role": "user", "content": "3 个加 5 个"}]]
    >>> [soft_format(q, [c])[0] for c in ["我算一下 <think>3+5=8</think> <answer>8</answer>",
    ...  "<think>3 个加 5 个</think><answer>8</answer>", "<think>3+5=8</think>"]]
    [1.0, 0.0, 0.0]
    """
    return [1.0 if _SOFT_RE.search(completion_text(c)) and shown_work(completion_text(c), p, q) else 0.0
            for c, (p, q) in zip(completions, _contexts(prompts, len(completions), question), strict=True)]


def xml_count(prompts, completions, question=None, **kwargs) -> list[float]:
    """0.25 per R1 tag present exactly once (max 1.0), minus 0.001 per character after the
    last ``</answer>`` (after willccbb's GRPO demo ``count_xml``); a repeated tag earns nothing.
    0.0 when a think or answer block present is empty or a copy of prompt text, or a think block
    lacks the reasoning's numbers.

    >>> q = [[{"role": "user", "content": "3 个加 5 个"}]]
    >>> [xml_count(q, [c])[0] for c in ["<think>3+5=8</think><answer>8</answer>", "<answer>8</answer>",
    ...  "<think>3 个加 5 个</think><answer>8</answer>", "<think>3+5=8</think><answer></answer>", "8"]]
    [1.0, 0.5, 0.0, 0.0, 0.0]
    """
    out = []
    for c, (ptext, q) in zip(completions, _contexts(prompts, len(completions), question), strict=True):
        text = completion_text(c)
        think, ans = extract_think(text), extract_answer(text)
        bad = (ans is not None and _answer_is_copy(ans, ptext)) or (think is not None and (
            is_copy(think, ptext) or not has_reasoning_numbers(think, q, ans)))
        score = 0.0 if bad else 0.25 * sum(text.count(tag) == 1 for tag in _TAGS)
        if score and "</answer>" in text:
            score -= 0.001 * len(text.rsplit("</answer>", 1)[1].strip())
        out.append(max(score, 0.0))
    return out


def answer_tag(prompts, completions, question=None, **kwargs) -> list[float]:
    """Cold-start shaping: partial credit for any closed ``<answer>`` tag, so that a model that
    never writes tags gets reward variance (a gradient) as soon as one sample does.
    1.0 for a closed block holding a number, 0.5 for a closed block with other text, 0.2 for an
    ``<answer>`` never closed; 0.0 without the tag, for an empty or copied block, or when a
    think block present is a copy of prompt text.

    >>> q = [[{"role": "system", "content": "例：<answer>24</answer>"}, {"role": "user", "content": "3 加 5"}]]
    >>> [answer_tag(q, [c])[0] for c in ["<answer>8</answer>", "<answer>八</answer>", "<answer>eight</answer>",
    ...  "so <answer> 8", "<answer></answer>", "<answer>24</answer>", "<think>3 加 5</think><answer>8</answer>",
    ...  "8"]]
    [1.0, 1.0, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0]
    """
    out = []
    for c, (ptext, _q) in zip(completions, _contexts(prompts, len(completions), question), strict=True):
        text = completion_text(c)
        think, ans = extract_think(text), extract_answer(text)
        if (think is not None and is_copy(think, ptext)) or (ans is not None and _answer_is_copy(ans, ptext)):
            out.append(0.0)
        elif ans is not None:
            out.append(1.0 if find_numbers(ans) else 0.5)
        else:
            out.append(0.2 if "<answer>" in text else 0.0)
    return out


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def language(prompts, completions, question=None, **kwargs) -> list[float]:
    """Language consistency (DeepSeek-R1, section 2.3.3): the share of the reply's letters that
    are in the question's script — CJK characters for a question containing any, else Latin
    letters; R1 tags are not counted. 0.0 for a reply without letters. Keeps Chinese questions
    answered in Chinese. 0.0 when a think or answer block present is a copy of prompt text.

    >>> language([[{"role": "user", "content": "几个？"}]], ["<think>三加五</think>", "three", "123", "<think>几个</think>"])
    [1.0, 0.0, 0.0, 0.0]
    """
    out = []
    for c, (ptext, q) in zip(completions, _contexts(prompts, len(completions), question), strict=True):
        raw = completion_text(c)
        think, ans = extract_think(raw), extract_answer(raw)
        if (think is not None and is_copy(think, ptext)) or (ans is not None and _answer_is_copy(ans, ptext)):
            out.append(0.0)
            continue
        text = re.sub(r"</?(?:think|answer)>", "", raw)
        cjk = sum(_is_cjk(ch) for ch in text)
        latin = sum(ch.isascii() and ch.isalpha() for ch in text)
        want = cjk if any(_is_cjk(ch) for ch in q) else latin
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
    "answer_tag": answer_tag,
}

#: Default weights: correctness weighs most (format rewards alone lead to the reward hacking
#: seen in public runs: format up, accuracy down); answer_tag is a small cold-start term.
DEFAULT_WEIGHTS: dict[str, float] = {
    "correctness": 2.0, "integer": 0.5, "strict_format": 0.5, "soft_format": 0.5, "xml_count": 0.5,
    "answer_tag": 0.25,
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
