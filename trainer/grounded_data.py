"""Training examples from a tasks file (:mod:`trainer.tasks`): prompts, reward columns, stages, mix.

Each task becomes ``{"prompt": messages, "question", "answer": "", "solution": "", "answers",
"gold", "support", "n_passages", "kind", "id"}``; the prompt is built by
:func:`models.prompts.grounded_messages`, the function the AnswerService uses at inference.
``answer`` stays empty so the gsm8k rewards (``correctness`` ...) return None on grounded rows,
and gsm8k rows mixed in get ``n_passages`` 0 so the grounded rewards return None on them.

Stages (recipe ``stages:``) are a curriculum inside one run (one LoRA adapter, one optimizer):
the training list is the concatenation of one block per stage, ``steps x prompts per step``
rows long, and TRL's shuffling is turned off (``shuffle_dataset: false``) so the blocks are
seen in order. A stage with ``refusal: false`` draws only answerable tasks (Sim et al. 2025,
arXiv 2506.15522: answer + citation first, refusal in a second stage).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

TASK_KEYS = {"question", "answers", "passages", "gold"}


def is_tasks_file(spec: str | None) -> bool:
    """True when ``spec`` is a .jsonl file whose first row is a grounded task."""
    path = Path(str(spec or "")).expanduser()
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        return TASK_KEYS <= set(json.loads(first))
    except ValueError:
        return False


def load_tasks(path: str | Path, split: str | None = None) -> list[dict]:
    """Tasks of a tasks file, optionally only one ``split`` ("train" | "heldout"; "" = all).

    Raises:
        ValueError: a line that does not parse (line number given), or no task in the split.
    """
    from trainer.data import read_rows

    tasks = [t for t in read_rows(path) if not split or t.get("split", "train") == split]
    if not tasks:
        raise ValueError(f"{path}: no task with split {split!r}; build tasks with `python -m trainer tasks`")
    return tasks


def _count(tokenizer, messages: list[dict]) -> int:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids)


def _drop_spare(task: dict, keep_support: bool = True) -> bool:
    """Drop the last shown passage that neither is the gold one nor (``keep_support``) holds the
    answer (gold and support renumbered, in place); False when there is none to drop."""
    spare = [i for i in range(len(task["passages"]), 0, -1)
             if (i not in task["support"] or not keep_support) and i != task["gold"]]
    if not spare or len(task["passages"]) <= 1:
        return False
    drop = spare[0]
    task["passages"] = [p for i, p in enumerate(task["passages"], 1) if i != drop]
    task["support"] = [n - (n > drop) for n in task["support"] if n != drop]
    task["gold"] = task["gold"] - (task["gold"] > drop)
    task["n_passages"] = len(task["passages"])
    return True


def fit_task(task: dict, tokenizer=None, max_tokens: int = 0, think: bool = True, max_passages: int = 0) -> dict:
    """The task with passages dropped until at most ``max_passages`` are shown (0 = no limit) and
    its prompt fits ``max_tokens`` (passages without the answer go first, last shown first; then
    the other passages holding the answer; then the longest passage is cut down to a window
    around its answer, see :func:`_trim_longest`; gold and support are renumbered). Unchanged
    when it fits or no tokenizer is given; the gold passage is never dropped, and the limit is
    hard unless the question alone exceeds it."""
    from models.prompts import grounded_messages

    task = dict(task, support=list(task.get("support", [])))
    while max_passages and len(task["passages"]) > max_passages and _drop_spare(task):
        pass
    while tokenizer is not None and max_tokens:
        if _count(tokenizer, grounded_messages(task["question"], task["passages"], think)) <= max_tokens:
            break
        if not _drop_spare(task):
            break
    while tokenizer is not None and max_tokens and len(task["passages"]) > 1:
        if _count(tokenizer, grounded_messages(task["question"], task["passages"], think)) <= max_tokens:
            break
        if not _drop_spare(task, keep_support=False):
            break
    while tokenizer is not None and max_tokens:
        over = _count(tokenizer, grounded_messages(task["question"], task["passages"], think)) - max_tokens
        if over <= 0 or not _trim_longest(task, over):
            break
    return task


#: Shortest passage text (characters) :func:`_trim_longest` cuts down to.
MIN_PASSAGE_CHARS = 40


def _trim_longest(task: dict, over_tokens: int) -> bool:
    """Shorten the longest passage's text (in place) by about ``over_tokens`` tokens plus 10 %,
    keeping a window centred on the first acceptable answer it holds (so a gold passage still
    holds its answer), else its beginning. Tokens are estimated from the text's share of
    characters; False when every passage is already at :data:`MIN_PASSAGE_CHARS`."""
    passages = [dict(p) for p in task["passages"]]
    i = max(range(len(passages)), key=lambda k: len(passages[k].get("text", "")))
    text = passages[i].get("text", "")
    if len(text) <= MIN_PASSAGE_CHARS:
        return False
    # ~1.5 characters per token for mixed Chinese/English (Qwen's tokenizer); cut at least 8 %
    cut = max(int(over_tokens * 1.1 * 1.5), len(text) // 12, 1)
    keep = max(len(text) - cut, MIN_PASSAGE_CHARS)
    # answers as written or with PDF spacing inside ("1 小时" for "1小时"), else the evidence sentence
    keys = [r"\s*".join(map(re.escape, a.replace(" ", ""))) for a in task.get("answers", []) if a.strip()]
    keys += [re.escape(task["evidence"][:30])] if task.get("evidence") else []
    hits = sorted((m.start(), m.end() - m.start()) for m in (re.search(k, text) for k in keys) if m)
    centre = hits[0][0] + hits[0][1] // 2 if hits else 0
    start = min(max(centre - keep // 2, 0), len(text) - keep) if hits else 0
    trimmed = ("…" if start else "") + text[start:start + keep] + ("…" if start + keep < len(text) else "")
    if len(trimmed) >= len(text):
        return False
    passages[i]["text"] = trimmed
    task["passages"] = passages
    return True


def task_example(task: dict, think: bool = True, tokenizer=None, max_tokens: int = 0, max_passages: int = 0) -> dict:
    """One training/eval example (prompt + reward columns) from a task (see :func:`fit_task`)."""
    from models.prompts import grounded_messages

    t = fit_task(task, tokenizer, max_tokens, think, max_passages)
    return {"prompt": grounded_messages(t["question"], t["passages"], think), "question": t["question"],
            "answer": "", "solution": "", "answers": list(t["answers"]), "gold": int(t["gold"]),
            "support": [int(n) for n in t.get("support", [])], "n_passages": len(t["passages"]),
            "kind": t.get("kind", ""), "id": t.get("id", "")}


def mixed_example(example: dict) -> dict:
    """A gsm8k example with the grounded columns added (``n_passages`` 0: not a grounded task)."""
    return {**example, "answers": [], "gold": 0, "support": [], "n_passages": 0, "kind": "gsm8k", "id": ""}


def prompts_per_step(grpo: dict) -> int:
    """Distinct prompts per optimizer step: per_device_train_batch_size x
    gradient_accumulation_steps / num_generations (one process)."""
    per_dev = int(grpo.get("per_device_train_batch_size", 8))
    accum = int(grpo.get("gradient_accumulation_steps", 1))
    return max(per_dev * accum // int(grpo.get("num_generations", 8)), 1)


def _interleave(main: list, extra: list, ratio: float, rng: random.Random) -> list:
    """``main`` with items of ``extra`` replacing about ``ratio`` of the positions (cycled)."""
    if not extra or ratio <= 0:
        return main
    out, j = [], 0
    for item in main:
        if rng.random() < ratio:
            out.append(extra[j % len(extra)])
            j += 1
        else:
            out.append(item)
    return out


def _cycle(pool: list, n: int, rng: random.Random) -> list:
    """``n`` items drawn from ``pool`` in shuffled rounds (each round a fresh shuffle)."""
    out: list = []
    while pool and len(out) < n:
        batch = list(pool)
        rng.shuffle(batch)
        out.extend(batch)
    return out[:n]


def train_examples(recipe, spec: str, tokenizer=None, mix: list[dict] | None = None, seed: int = 0) -> list[dict]:
    """Training examples for a grounded recipe: the train split of the tasks file, staged when
    ``recipe.stages`` is set (see module docstring), with ``mix`` (gsm8k examples) interleaved
    at ``recipe.mix_ratio``.

    Raises:
        ValueError: no training task, or a stage with nothing to draw from.
    """
    rng = random.Random(seed)
    tasks = load_tasks(spec, recipe.dataset_split)
    if recipe.train_size:
        tasks = tasks[:recipe.train_size]
    think = bool(getattr(recipe, "think", True))
    examples = [task_example(t, think, tokenizer, recipe.max_prompt_tokens, recipe.max_passages) for t in tasks]
    mix = [mixed_example(m) for m in (mix or [])]
    if not recipe.stages:
        rng.shuffle(examples)
        return _interleave(examples, mix, recipe.mix_ratio, rng) if mix else examples
    per_step = prompts_per_step(recipe.grpo)
    out = []
    for stage in recipe.stages:
        pool = [e for e in examples if stage.get("refusal", True) or e["gold"] > 0]
        if not pool:
            raise ValueError(f"stage {stage.get('name', '?')!r}: no task to draw from in {spec}")
        block = _cycle(pool, int(stage["steps"]) * per_step, rng)
        out.extend(_interleave(block, mix, recipe.mix_ratio, rng))
    return out


def heldout_examples(recipe, spec: str, tokenizer=None, limit: int | None = None) -> list[dict]:
    """Held-out examples (split ``recipe.eval_split``), first ``limit``."""
    tasks = load_tasks(spec, recipe.eval_split)[:limit or None]
    return [task_example(t, bool(getattr(recipe, "think", True)), tokenizer, recipe.max_prompt_tokens,
                         recipe.max_passages) for t in tasks]


def load_for_recipe(recipe, spec: str, tokenizer=None) -> tuple[list[dict], list[dict]]:
    """(train, held-out) examples of a grounded recipe; gsm8k rows from ``recipe.mix_dataset``
    are mixed in when ``recipe.mix_ratio`` > 0."""
    from trainer.data import load_examples

    mix = []
    if recipe.mix_ratio and recipe.mix_dataset:
        mix = load_examples(recipe.mix_dataset, split="train", tokenizer=tokenizer,
                            max_prompt_tokens=recipe.max_prompt_tokens)
    held = heldout_examples(recipe, spec, tokenizer, recipe.eval_questions) \
        if recipe.eval_every and recipe.eval_questions else []
    return train_examples(recipe, spec, tokenizer, mix, int(recipe.grpo.get("seed", 0))), held


def check_dataset(recipe, spec: str) -> None:
    """Refuse a recipe with grounded rewards or stages whose data is not a tasks file.

    Raises:
        ValueError: with the command that builds a tasks file.
    """
    from trainer.grounded import GROUNDED_REWARDS

    if (recipe.stages or set(recipe.rewards) & set(GROUNDED_REWARDS)) and not is_tasks_file(spec):
        raise ValueError(f"recipe {recipe.name!r} trains on grounded tasks but {spec!r} is not a tasks file; "
                         f"build one with `python -m trainer tasks --kb NAME --out tasks.jsonl` and pass "
                         f"--dataset tasks.jsonl")


def scale_stages(stages: list[dict], total: int) -> list[dict]:
    """Stages resized to add up to ``total`` steps, keeping their proportions (each >= 1 step;
    stages are dropped from the end when ``total`` is smaller than their number).

    >>> [s["steps"] for s in scale_stages([{"steps": 60}, {"steps": 40}], 10)]
    [6, 4]
    >>> [s["steps"] for s in scale_stages([{"steps": 60}, {"steps": 40}], 1)]
    [1]
    """
    stages = [dict(s) for s in stages][:max(total, 1)]
    old = sum(int(s["steps"]) for s in stages) or 1
    for s in stages:
        s["steps"] = max(1, round(int(s["steps"]) * total / old))
    stages[-1]["steps"] = max(1, total - sum(s["steps"] for s in stages[:-1]))
    return stages
