"""Model-proposed questions for the task builder (issue 16, item 1c): the answering model reads a
chunk and proposes one question with a short answer; the pair is kept only when the answer is a
verbatim span of the chunk and the question does not contain it (so the task stays verifiable
and is not answered by copying the question).

``python -m trainer tasks --kb NAME --out F --propose-with MODEL [--propose N]`` adds up to N
such candidates to the rule-made ones (kind ``model``). The generator is any function
``messages -> text``; :func:`hf_generator` makes one from a local HF folder (greedy, CPU or CUDA).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from trainer.tasks_rules import Candidate

MAX_ANSWER_CHARS = 40
PROMPTS = {
    "zh": ("阅读下面的资料，提出一个可以只凭这段资料回答的问题，答案必须是资料中原样出现的一小段文字"
           "（数字、日期、名称等，不超过20个字）。只按下面的格式输出两行：\n问题：……\n答案：……\n\n资料：\n{text}"),
    "en": ("Read the passage below and ask one question that the passage alone answers; the answer must be a "
           "short span copied word for word from the passage (a number, date or name; at most 8 words). "
           "Reply with exactly two lines:\nQuestion: ...\nAnswer: ...\n\nPassage:\n{text}"),
}
_LINE = re.compile(r"^\s*(问题|答案|Question|Answer)\s*[:：]\s*(.+?)\s*$", re.I | re.M)


def proposal_messages(text: str, lang: str) -> list[dict]:
    """The chat messages asking for one question/answer pair on ``text`` (in ``lang``)."""
    return [{"role": "user", "content": PROMPTS["zh" if lang == "zh" else "en"].format(text=text.strip())}]


def parse_proposal(reply: str) -> tuple[str, str] | None:
    """(question, answer) from a reply in the two-line format, else None.

    >>> parse_proposal("问题：隔离医学观察多少天？\\n答案：14天")
    ('隔离医学观察多少天？', '14天')
    >>> parse_proposal("Sure! Question: What is the fee?\\nAnswer: $313.") is None
    True
    """
    found = {m.group(1).lower(): m.group(2) for m in _LINE.finditer(reply or "")}
    q = found.get("问题") or found.get("question")
    a = found.get("答案") or found.get("answer")
    return (q.strip(), a.strip().rstrip("。.")) if q and a else None


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


def accept(question: str, answer: str, chunk: str) -> bool:
    """Keep a proposed pair: a question (4+ characters, ends with "?"/"？"), an answer of at most
    :data:`MAX_ANSWER_CHARS` characters that occurs verbatim in the chunk (whitespace and width
    ignored) and does not occur in the question.

    >>> accept("密切接触者应当隔离医学观察多少天？", "14天", "密切接触者应当集中隔离医学观察14天。")
    True
    >>> accept("隔离14天吗？", "14天", "隔离14天。"), accept("隔离多久？", "两周", "隔离14天。")
    (False, False)
    """
    q, a = _norm(question), _norm(answer)
    return (len(q) >= 4 and question.strip()[-1:] in "?？" and 0 < len(answer.strip()) <= MAX_ANSWER_CHARS
            and a in _norm(chunk) and a not in q)


def model_candidates(chunks: list[tuple[str, str]], generate: Callable[[list[dict]], str]) -> list[Candidate | None]:
    """One proposal per ``(text, lang)`` chunk: a :class:`Candidate` of kind ``model`` when
    :func:`accept` keeps it, else None (same order as ``chunks``)."""
    out: list[Candidate | None] = []
    for text, lang in chunks:
        pair = parse_proposal(generate(proposal_messages(text, lang)))
        ok = pair is not None and accept(pair[0], pair[1], text)
        out.append(Candidate("model", pair[0], [pair[1]], pair[1], lang) if ok else None)
    return out


def hf_generator(model: str, max_new_tokens: int = 64) -> Callable[[list[dict]], str]:
    """``messages -> reply`` with a local transformers model (greedy; bf16 on CUDA, fp32 on CPU).

    Raises:
        OSError: the folder cannot be loaded.
    """
    import torch

    from trainer.evaluate import load_model

    lm, tok = load_model(model)

    def generate(messages: list[dict]) -> str:
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        ids = {k: v.to(lm.device) for k, v in ids.items()}
        with torch.no_grad():
            out = lm.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate
