"""GSM8K-style data: load rows from the hub or local files, map fields, build chat prompts.

A *data spec* is one of:

- a local ``.jsonl`` / ``.json`` / ``.parquet`` file;
- a local folder holding such files (the file whose name contains the split, e.g. ``train``
  or ``test``, is picked; with one file it is used whatever the split);
- a hub dataset id such as ``swulling/gsm8k_chinese`` (loaded lazily with
  ``datasets.load_dataset``: needs the network or a filled HF cache).

Every row becomes ``{"prompt": [system, user messages], "question": str, "answer": str,
"solution": str}``; TRL passes ``answer`` to the reward functions as a keyword argument.

Known layouts are detected from the column names (first match wins):

=====================  ============================  =====================
layout                 question                      answer
=====================  ============================  =====================
gsm8k_chinese (hub)    ``question_zh-cn``            ``answer_only``
../shared gsm8k_zh     ``question_zh``               ``answer_only``
gsm8k (English)        ``question``                  ``answer`` (``#### N``)
=====================  ============================  =====================

Any other layout needs an explicit :class:`FieldMap` (recipe ``fields:`` or CLI).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: DeepSeek-R1-Zero's template (DeepSeek-AI 2025, "DeepSeek-R1", Table 1), as a system prompt.
#: Kept for comparison only (``system_prompt: r1``): its literal ``<think> reasoning process here
#: </think>…`` was copied by the policy for format reward, and in English it drew tags, not
#: reasoning, from Qwen on Chinese questions (issue 15).
R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>. "
    "The answer is only the final number."
)

#: Chinese system prompt: the format in words plus a worked example on another question. Copying
#: the example earns nothing (its think and answer are prompt text, see trainer.rewards.shown_work)
#: and its answer, 24, is not the question's.
SYSTEM_PROMPT_ZH = (
    "你是一位细心的数学老师，用中文一步一步地解应用题。"
    "先写推理过程：以 <think> 开始，写出每一步的算式和得数，以 </think> 结束；"
    "再写答案：以 <answer> 开始，只写最后的数字，不写单位，以 </answer> 结束。"
    "例题：一盒鸡蛋有 6 个，4 盒一共有多少个？"
    "回答：<think>每盒 6 个，有 4 盒，6 × 4 = 24，一共 24 个。</think><answer>24</answer>"
)

#: English system prompt, same design as :data:`SYSTEM_PROMPT_ZH`.
SYSTEM_PROMPT_EN = (
    "You are a careful math teacher who solves word problems step by step. "
    "First write the reasoning: start with <think>, write every calculation with its result, "
    "end with </think>. Then write the answer: start with <answer>, write only the final number, "
    "no units, end with </answer>. "
    "Example question: a box holds 6 eggs; how many eggs are in 4 boxes? "
    "Reply: <think>Each box has 6 eggs and there are 4 boxes: 6 × 4 = 24 eggs.</think><answer>24</answer>"
)

#: Named system prompts (recipe ``system_prompt:``); "auto" picks by the question's language.
SYSTEM_PROMPTS = {"zh": SYSTEM_PROMPT_ZH, "en": SYSTEM_PROMPT_EN, "r1": R1_ZERO_PROMPT, "none": ""}
SYSTEM_PROMPT = "auto"


def system_prompt_for(question: str, choice: str = "auto") -> str:
    """The system prompt for one question: ``choice`` is "auto" (Chinese for a question with CJK
    characters, else English), a key of :data:`SYSTEM_PROMPTS`, or a literal prompt text.

    >>> system_prompt_for("小明有 3 个苹果") == SYSTEM_PROMPT_ZH, system_prompt_for("Tom has 3") == SYSTEM_PROMPT_EN
    (True, True)
    """
    if choice == "auto":
        return SYSTEM_PROMPT_ZH if re.search(r"[\u4e00-\u9fff]", question or "") else SYSTEM_PROMPT_EN
    return SYSTEM_PROMPTS.get(choice, choice)


DEFAULT_HUB_DATASET = "swulling/gsm8k_chinese"
QUESTION_KEYS = ("question_zh-cn", "question_zh", "question")
ANSWER_KEYS = ("answer_only", "answer")
SOLUTION_KEYS = ("answer", "solution")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
MIN_QUESTION_TOKENS = 32


@dataclass(frozen=True)
class FieldMap:
    """Which columns hold the question, the numeric gold answer and (optionally) the solution.

    Attributes:
        question: column with the question text.
        answer: column with the gold answer; GSM8K's ``... #### 72`` is reduced to ``72``.
        solution: column with a worked solution (kept for display only; "" = none).
    """

    question: str
    answer: str
    solution: str = ""

    @classmethod
    def parse(cls, spec: str | dict | None) -> FieldMap | None:
        """Build from ``"question=q,answer=a[,solution=s]"`` or a dict; None stays None.

        Raises:
            ValueError: when ``question`` or ``answer`` is missing, or a key is unknown.
        """
        if spec is None or spec == "" or spec == {}:
            return None
        if isinstance(spec, str):
            pairs = [p.split("=", 1) for p in spec.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"fields {spec!r}: write question=COL,answer=COL[,solution=COL]")
            spec = {k.strip(): v.strip() for k, v in pairs}
        unknown = set(spec) - {"question", "answer", "solution"}
        if unknown or "question" not in spec or "answer" not in spec:
            raise ValueError(f"fields {spec!r}: give question and answer (and optionally solution) "
                             f"column names; unknown keys: {sorted(unknown)}")
        return cls(str(spec["question"]), str(spec["answer"]), str(spec.get("solution", "")))


def detect_fields(columns: list[str]) -> FieldMap:
    """Pick a :class:`FieldMap` for a known layout from the column names.

    Raises:
        ValueError: when no known layout matches; the message lists the columns.
    """
    cols = set(columns)
    q = next((k for k in QUESTION_KEYS if k in cols), None)
    a = next((k for k in ANSWER_KEYS if k in cols), None)
    if q is None or a is None:
        raise ValueError(f"cannot tell question/answer columns apart in {sorted(cols)}; give "
                         f"--fields question=COL,answer=COL (or `fields:` in the recipe)")
    sol = next((k for k in SOLUTION_KEYS if k in cols and k != a), "")
    return FieldMap(q, a, sol)


def gold_answer(value: Any) -> str:
    """Reduce a gold answer to its number text: GSM8K's ``#### 1,000`` convention -> ``1000``.

    >>> gold_answer("She makes 9 * 2 = $18.\\n#### 18")
    '18'
    >>> gold_answer("1,000")
    '1000'
    """
    text = "" if value is None else str(value)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return re.sub(r"(?<=\d),(?=\d{3})", "", text.strip())


def read_rows(path: str | Path) -> list[dict]:
    """Read a ``.jsonl`` / ``.json`` (list of objects) / ``.parquet`` file into dicts.

    Raises:
        ValueError: unsupported suffix or a JSON line that does not parse (line number given).
    """
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("data", [])
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: use a .jsonl, .json or .parquet file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
    return rows


def pick_file(folder: Path, split: str) -> Path:
    """Return the data file in ``folder`` whose name contains ``split`` (or the only one).

    Raises:
        FileNotFoundError: no data file, or several and none matches the split.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix in FILE_SUFFIXES)
    matching = [p for p in files if split in p.name]
    if matching:
        return matching[0]
    if len(files) == 1:
        return files[0]
    raise FileNotFoundError(f"{folder}: no {'/'.join(FILE_SUFFIXES)} file named after split "
                            f"{split!r} among {[p.name for p in files]}; give the file itself")


def load_raw(spec: str, split: str = "train") -> list[dict]:
    """Load raw rows from a file, a folder or a hub dataset id (see module docstring).

    Raises:
        FileNotFoundError: a path-like spec that does not exist, or a hub id that cannot be loaded.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        path = pick_file(path, split)
    if path.is_file():
        return read_rows(path)
    if path.suffix in FILE_SUFFIXES or spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"data {spec!r} not found; give a file, a folder or a hub id")
    from datasets import load_dataset  # lazy: only for hub ids

    try:
        return list(load_dataset(spec, split=split))
    except Exception as e:  # offline, unknown id, missing split: one message with the way out
        raise FileNotFoundError(f"cannot load hub dataset {spec!r} split {split!r} ({type(e).__name__}: "
                                f"{str(e)[:200]}); offline? give a local file or folder with --dataset") from None


def to_example(row: dict, fields: FieldMap, system_prompt: str = SYSTEM_PROMPT) -> dict:
    """Turn one raw row into a TRL conversational prompt plus gold answer columns
    (``system_prompt``: see :func:`system_prompt_for`)."""
    question = str(row.get(fields.question) or "").strip()
    messages = [{"role": "user", "content": question}]
    system = system_prompt_for(question, system_prompt)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return {"prompt": messages, "question": question, "answer": gold_answer(row.get(fields.answer)),
            "solution": str(row.get(fields.solution) or "") if fields.solution else ""}


def truncate_prompt(messages: list[dict], tokenizer, max_tokens: int) -> list[dict]:
    """Cut the user message so the templated prompt fits ``max_tokens`` (TRL 1.16 dropped
    ``max_prompt_length``). The start of the question is dropped: GSM8K asks at the end.
    The last :data:`MIN_QUESTION_TOKENS` tokens of the question are always kept, even when the
    system prompt alone is over the budget.

    Returns:
        ``messages`` itself when it fits, else a copy with a shortened last message.
    """
    if not max_tokens:
        return messages
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    over = len(ids) - max_tokens
    if over <= 0:
        return messages
    user = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    cut = min(over, max(len(user) - MIN_QUESTION_TOKENS, 0))
    if cut == 0:
        return messages
    kept = tokenizer.decode(user[cut:])
    return [*messages[:-1], {**messages[-1], "content": kept}]


def load_examples(spec: str | None = None, *, split: str = "train", fields: FieldMap | str | dict | None = None,
                  limit: int | None = None, tokenizer=None, max_prompt_tokens: int = 0,
                  system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    """Load a data spec into prompt examples (see :func:`to_example`).

    Args:
        spec: file, folder or hub id; None = :data:`DEFAULT_HUB_DATASET`.
        split: ``train`` / ``test`` (file picked in a folder, split of a hub dataset).
        fields: explicit column mapping; None = detect a known layout.
        limit: keep the first N usable rows.
        tokenizer, max_prompt_tokens: when both given, prompts are cut to fit.
        system_prompt: "auto" (by the question's language), "zh", "en", "r1", "none" or a text.

    Returns:
        Examples; rows with an empty question are skipped (counted in the error if none is left).

    Raises:
        ValueError: no usable row, or an unknown layout without ``fields``.
    """
    rows = load_raw(spec or DEFAULT_HUB_DATASET, split)
    if not rows:
        raise ValueError(f"data {spec!r} ({split}) has no rows")
    fmap = FieldMap.parse(fields) if not isinstance(fields, FieldMap) else fields
    fmap = fmap or detect_fields(list(rows[0]))
    out = []
    for row in rows:
        ex = to_example(row, fmap, system_prompt)
        if not ex["question"]:
            continue
        if tokenizer is not None and max_prompt_tokens:
            ex["prompt"] = truncate_prompt(ex["prompt"], tokenizer, max_prompt_tokens)
        out.append(ex)
        if limit and len(out) >= limit:
            break
    if not out:
        raise ValueError(f"data {spec!r}: no row has a question in column {fmap.question!r}")
    return out
