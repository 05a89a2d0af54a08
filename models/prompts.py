"""Prompts for cited answers and the incremental ``<think>``/``<answer>`` stream parser.

Format convention: DeepSeek-R1-Zero's template (Guo et al. 2025, "DeepSeek-R1", Table 1):
reasoning inside ``<think>...</think>``, the final answer inside ``<answer>...</answer>`` — the
same format the trainer's format reward teaches. Sources are numbered ``[1]..[k]`` and the model
cites them inline as ``[n]``.
"""
from __future__ import annotations

import re
from pathlib import Path

#: The reply a model gives when the sources do not hold the answer (recognised as a refusal).
NOT_IN_SOURCES = {"zh": "资料中没有。", "en": "Not in the sources."}

# No example answer: a 0.5B model copied the old example sentence ("城市的土地属于国家所有[2]")
# into answers to questions the sources could not answer; only the citation form "[2]" is shown.
# Measured (README "Answer quality"): "简短 / short" made it answer with an article label
# ("第四条"); a strict "answer only 'Not in the sources.'" rule made it refuse most English
# questions; a reminder after the question did not help. So: the original wording, no example.
SYSTEM = {
    ("zh", True): (
        "你是一个基于知识库回答问题的助手。只根据用户给出的编号资料回答；资料里没有的内容，就说资料中没有。"
        "先在 <think> 和 </think> 之间简要推理，再在 <answer> 和 </answer> 之间用中文给出完整的答案句子，"
        "并在句末用方括号标出所依据资料的编号，例如 [2]。"),
    ("zh", False): (
        "你是一个基于知识库回答问题的助手。只根据用户给出的编号资料回答；资料里没有的内容，就说资料中没有。"
        "不要写推理过程，直接在 <answer> 和 </answer> 之间用中文给出完整的答案句子，"
        "并在句末用方括号标出所依据资料的编号，例如 [2]。"),
    ("en", True): (
        "You answer questions from a knowledge base, using only the numbered sources the user gives; "
        "if they do not contain the answer, say so. First reason briefly between <think> and </think>, "
        "then give the answer in English as a complete sentence between <answer> and </answer>, "
        "citing the sources as [n], e.g. [2]."),
    ("en", False): (
        "You answer questions from a knowledge base, using only the numbered sources the user gives; "
        "if they do not contain the answer, say so. Without reasoning, give the answer in English as a "
        "complete sentence between <answer> and </answer>, citing the sources as [n], e.g. [2]."),
}

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CITE = re.compile(r"\[(\d{1,3})(?:\s*[,，、]\s*(\d{1,3}))*\]")


def detect_language(text: str) -> str:
    """Return "zh" when the text contains any CJK ideograph, else "en"."""
    return "zh" if _CJK.search(text) else "en"


def system_prompt(question: str, think: bool) -> str:
    """The system prompt in the question's language, with or without the reasoning request."""
    return SYSTEM[(detect_language(question), bool(think))]


def format_source(n: int, source: str, page: int | None, text: str, section: str = "") -> str:
    """One numbered source block: ``[n] document name, p. page (section)`` then the chunk text."""
    where = Path(source).name + (f", p. {page}" if page else "") + (f" ({section})" if section else "")
    return f"[{n}] {where}\n{text.strip()}"


def user_message(question: str, blocks: list[str], think: bool = True) -> str:
    """The user turn: the numbered source blocks, then the question (``think`` kept for callers)."""
    head, ask = ("资料：", "问题：") if detect_language(question) == "zh" else ("Sources:", "Question: ")
    return f"{head}\n\n" + "\n\n".join(blocks) + f"\n\n{ask}{question}"


def grounded_messages(question: str, sources: list, think: bool, history: list[dict] | None = None) -> list[dict]:
    """Chat messages for a question over numbered sources: the ONE prompt builder shared by the
    AnswerService (inference) and the trainer's grounded tasks (training), so the model is trained
    on exactly what it sees when answering.

    Args:
        question: the user's question (its language picks the prompt language).
        sources: in citation order ([1] first); each a mapping or object with ``source``,
            ``page`` (None for page-less formats), ``text`` and optionally ``section``.
        think: ask for ``<think>`` reasoning before the ``<answer>``.
        history: earlier ``user``/``assistant`` turns placed between system and user message.

    Returns:
        ``[system, *history, user]`` message dicts (``role``/``content``).
    """
    def field(s, key, default=None):
        return s.get(key, default) if isinstance(s, dict) else getattr(s, key, default)

    blocks = [format_source(i, field(s, "source"), field(s, "page"), field(s, "text"), field(s, "section") or "")
              for i, s in enumerate(sources, 1)]
    return [{"role": "system", "content": system_prompt(question, think)}, *(history or []),
            {"role": "user", "content": user_message(question, blocks, think)}]


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"\s+", "", text.lower())
    return {text[i:i + 2] for i in range(len(text) - 1)}


def infer_citations(answer: str, question: str, texts: list[str], min_shared: int = 3) -> list[int]:
    """Sources an uncited answer most likely comes from: the 1-based index of the text sharing
    the most character bigrams with the answer (bigrams of the question do not count), when it
    shares at least ``min_shared``. A lexical-overlap attribution, used only when the model
    wrote no ``[n]`` at all.

    >>> infer_citations("实行民主集中制的原则。", "实行什么原则？", ["实行民主管理", "实行民主集中制的原则"])
    [2]
    """
    grams = _bigrams(answer) - _bigrams(question)
    scores = [len(grams & _bigrams(t)) for t in texts]
    if not scores or max(scores) < min_shared:
        return []
    return [scores.index(max(scores)) + 1]


def cited_numbers(answer: str, k: int) -> list[int]:
    """Source numbers cited as ``[n]`` / ``[n, m]`` in ``answer``, in first-use order, 1..k only.

    >>> cited_numbers("A [2]. B [1，2] C [9]", 3)
    [2, 1]
    """
    seen: list[int] = []
    for m in _CITE.finditer(answer):
        for n in re.findall(r"\d{1,3}", m.group(0)):
            if 1 <= int(n) <= k and int(n) not in seen:
                seen.append(int(n))
    return seen


class TagStreamParser:
    """Split a streamed completion into ("reasoning" | "answer", text) pieces as it arrives.

    Tolerates tags split across deltas (text that could be the start of a tag is held back
    until it can be decided) and a model that skips the tags: text outside ``<think>`` is answer,
    and ``<answer>``/``</answer>`` tags are dropped. Text after ``</answer>`` is ignored.

    >>> p = TagStreamParser()
    >>> p.feed("<thi") + p.feed("nk>a</think><answer>b</ans") + p.feed("wer>") + p.close()
    [('reasoning', 'a'), ('answer', 'b')]
    """

    TAGS = ("<think>", "</think>", "<answer>", "</answer>")

    def __init__(self) -> None:
        self.mode = "answer"
        self.buf = ""
        self.finished = False
        self.reasoning = ""
        self.answer = ""

    def feed(self, delta: str) -> list[tuple[str, str]]:
        """Add a delta; return the pieces that are now certain (possibly none)."""
        self.buf += delta
        out: list[tuple[str, str]] = []
        while self.buf and not self.finished:
            i = self.buf.find("<")
            if i < 0:
                self._emit(out, self.buf)
                self.buf = ""
            elif i > 0:
                self._emit(out, self.buf[:i])
                self.buf = self.buf[i:]
            elif not self._take_tag():
                if any(t.startswith(self.buf) for t in self.TAGS):
                    break  # maybe a tag split across deltas: wait for more text
                self._emit(out, "<")
                self.buf = self.buf[1:]
        return out

    def close(self) -> list[tuple[str, str]]:
        """Flush held-back text at the end of the stream."""
        out: list[tuple[str, str]] = []
        if self.buf and not self.finished:
            self._emit(out, self.buf)
        self.buf = ""
        return out

    def _take_tag(self) -> bool:
        for tag in self.TAGS:
            if self.buf.startswith(tag):
                self.buf = self.buf[len(tag):]
                if tag == "<think>":
                    self.mode = "reasoning"
                elif tag == "</think>":
                    self.mode = "answer"
                elif tag == "</answer>":
                    self.finished = True
                else:
                    self.mode = "answer"
                return True
        return False

    def _emit(self, out: list, text: str) -> None:
        if not text:
            return
        if self.mode == "reasoning":
            self.reasoning += text
        else:
            if not self.answer:
                text = text.lstrip()
                if not text:
                    return
            self.answer += text
        if out and out[-1][0] == self.mode:
            out[-1] = (self.mode, out[-1][1] + text)
        else:
            out.append((self.mode, text))
