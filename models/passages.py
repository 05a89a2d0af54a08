"""What of the retrieved chunks a small answering model is shown, and in which order.

Two knobs, both measured with ``bench/answers.py`` (README "Answer quality"):

- ``passage_sentences`` (int, default 0): 0 shows the whole chunk; N > 0 shows a *sentence
  window*: the chunk's sentence that best matches the question plus N sentences on each side
  (the "sentence window retrieval" of LlamaIndex's ``SentenceWindowNodeParser``, applied at
  answer time). Shorter prompts: faster prefill, fewer distractors for a 0.5B model.
- ``source_order`` ("best_first" | "best_last", default "best_first"): "best_last" puts the
  best-ranked passage last, next to the question (models use the end of a long context best:
  Liu et al. 2023, "Lost in the Middle", TACL 2024). Sources are numbered in prompt order.

Pure functions on :class:`models.answer.Source`-like objects (``text``, ``n``); no model.
"""
from __future__ import annotations

import re
from dataclasses import replace

_SENTENCE_END = re.compile(r"(?<=[。！？；!?;\n])|(?<=[.])\s+")
_ENDS = tuple("。！？；!?;：:")
_HAN = re.compile(r"[\u3400-\u9fff，、“”（）]")


def unwrap(text: str) -> str:
    r"""Join hard-wrapped lines (PDF text breaks lines every ~20 Han characters): a line that
    does not end a sentence is joined to the next, without a space between Han characters;
    Markdown table rows (``|`` ...) and blank lines stay on their own.

    >>> unwrap("传染源主要是新冠病毒感染者，在潜伏期即有传\n染性。\n| a | b |\n| c | d |")
    '传染源主要是新冠病毒感染者，在潜伏期即有传染性。\n| a | b |\n| c | d |'
    """
    out: list[str] = []
    for line in text.split("\n"):
        prev = out[-1] if out else ""
        joinable = (prev.strip() and line.strip() and not prev.rstrip().endswith(_ENDS)
                    and not prev.lstrip().startswith("|") and not line.lstrip().startswith("|"))
        if joinable:
            han = _HAN.match(prev.rstrip()[-1]) and _HAN.match(line.lstrip()[0])
            out[-1] = prev.rstrip() + ("" if han else " ") + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def sentences(text: str) -> list[str]:
    """Split (after :func:`unwrap`) after 。！？；!?; and newlines, and after '.' followed by
    whitespace; blanks dropped.

    >>> sentences("第一条　甲。第二条　乙！ A b. C d")
    ['第一条　甲。', '第二条　乙！', 'A b.', 'C d']
    """
    return [s.strip() for s in _SENTENCE_END.split(unwrap(text)) if s and s.strip()]


def _grams(text: str) -> set[str]:
    """English words and Chinese character bigrams of ``text`` (lower case)."""
    t = text.lower()
    words = [w for w in re.findall(r"[a-z0-9]+", t) if len(w) > 1]
    han = re.sub(r"[^\u3400-\u9fff]", "", t)
    return set(words) | {han[i:i + 2] for i in range(len(han) - 1)}


def best_sentence(question: str, text: str) -> int:
    """Index of the sentence of ``text`` sharing the most words / character bigrams with
    ``question`` (the first one on ties; 0 for an empty text)."""
    q = _grams(question)
    scores = [len(q & _grams(s)) for s in sentences(text)]
    return scores.index(max(scores)) if scores else 0


def window(question: str, text: str, n: int) -> str:
    """The best-matching sentence of ``text`` and ``n`` sentences each side; ``text`` when n <= 0.

    >>> window("首都是哪里", "国旗是五星红旗。国歌是义勇军进行曲。首都是北京。国徽有天安门。", 1)
    '国歌是义勇军进行曲。首都是北京。国徽有天安门。'
    """
    parts = sentences(text)
    if n <= 0 or len(parts) <= 2 * n + 1:
        return text
    i = best_sentence(question, text)
    lo = max(0, min(i - n, len(parts) - (2 * n + 1)))
    return "".join(p if re.match(r"[\u3400-\u9fff（(“「]", p) or not k else " " + p
                   for k, p in enumerate(parts[lo:lo + 2 * n + 1]))


def shape(question: str, sources: list, *, sentences_each_side: int = 0, order: str = "best_first") -> list:
    """Sources as the model will see them: windowed texts, in prompt order, renumbered 1..k.

    Args:
        sources: ranked best first (``n`` 1..k), objects with ``text`` and ``n`` (dataclasses).
        sentences_each_side: see ``passage_sentences`` in the module docstring.
        order: "best_first" | "best_last".

    Raises:
        ValueError: an unknown ``order``.
    """
    if order not in ("best_first", "best_last"):
        raise ValueError(f"source_order must be best_first or best_last, not {order!r}")
    out = [replace(s, text=window(question, s.text, sentences_each_side)) for s in sources]
    if order == "best_last":
        out.reverse()
    return [replace(s, n=i) for i, s in enumerate(out, 1)]
