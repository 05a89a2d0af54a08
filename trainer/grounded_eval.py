"""Held-out grounded evaluation (``python -m trainer eval --tasks FILE``): greedy answers to the
held-out tasks of a tasks file, scored with the grounded rewards.

Metrics (rates in [0, 1]):

- ``correct``: answerable tasks whose answer matches (``grounded_answer`` == 1);
- ``answer_score``: mean ``grounded_answer`` over answerable tasks (partial credit included);
- ``cited_right``: answerable tasks whose citations are exactly right (``citation`` == 1);
- ``citation_f1``: mean ``citation`` over answerable tasks;
- ``refused_right``: unanswerable tasks (gold removed) answered with a refusal;
- ``over_refusal``: answerable tasks answered with a refusal;
- ``format``: completions in the product's answer format (``answer_format`` == 1).
"""
from __future__ import annotations

import time

from trainer import grounded as G


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def score_tasks(completions: list[str], examples: list[dict]) -> dict:
    """Score completions against grounded examples (:func:`trainer.grounded_data.task_example`).

    Returns:
        ``{"n", "answerable", "unanswerable", "correct", "answer_score", "cited_right",
        "citation_f1", "refused_right", "over_refusal", "format", "rows"}``; a metric is None
        when no task of its kind is there.
    """
    cols = {k: [e[k] for e in examples] for k in ("answers", "gold", "support", "n_passages")}
    ans = G.grounded_answer(None, completions, **cols)
    cite = G.citation(None, completions, **cols)
    ref = G.refusal(None, completions, **cols)
    fmt = G.answer_format(None, completions, **cols)
    answerable = [i for i, e in enumerate(examples) if e["gold"] > 0]
    unanswerable = [i for i, e in enumerate(examples) if e["gold"] == 0]
    rows = [{"id": e.get("id", ""), "kind": e.get("kind", ""), "question": e["question"], "answers": e["answers"],
             "gold": e["gold"], "completion": c, "answer": ans[i], "citation": cite[i], "refusal": ref[i],
             "format": fmt[i]} for i, (c, e) in enumerate(zip(completions, examples, strict=True))]
    return {"n": len(examples), "answerable": len(answerable), "unanswerable": len(unanswerable),
            "correct": _mean([float(ans[i] == 1.0) for i in answerable]),
            "answer_score": _mean([ans[i] for i in answerable]),
            "cited_right": _mean([float(cite[i] == 1.0) for i in answerable]),
            "citation_f1": _mean([cite[i] for i in answerable]),
            "refused_right": _mean([ref[i] for i in unanswerable]),
            "over_refusal": _mean([1.0 - ref[i] for i in answerable]),
            "format": _mean([float(f == 1.0) for f in fmt]), "rows": rows}


def evaluate_tasks(model: str, tasks: str, *, adapter: str = "", split: str = "heldout", limit: int | None = 60,
                   max_new_tokens: int = 256, batch_size: int = 8, think: bool = True,
                   max_prompt_tokens: int = 1024, max_passages: int = 0, dtype: str = "auto",
                   progress: bool = True) -> dict:
    """Evaluate one model (+ LoRA adapter) on the ``split`` tasks of a tasks file (greedy,
    batched; ``max_passages`` as in :func:`trainer.grounded_data.fit_task`).

    Returns:
        The :func:`score_tasks` report plus ``model``, ``adapter``, ``tasks``, ``split``,
        ``seconds``, ``mean_completion_tokens``.

    Raises:
        ValueError: no task in the split; OSError: the model cannot be loaded.
    """
    from trainer import evaluate as E
    from trainer.grounded_data import load_tasks, task_example

    lm, tok = E.load_model(model, adapter, dtype=dtype)
    examples = [task_example(t, think, tok, max_prompt_tokens, max_passages)
                for t in load_tasks(tasks, split)[:limit or None]]
    t0 = time.time()
    texts, lengths = E.generate(lm, tok, [e["prompt"] for e in examples], max_new_tokens, batch_size, progress)
    report = score_tasks(texts, examples)
    report.update(model=model, adapter=adapter, tasks=str(tasks), split=split, seconds=round(time.time() - t0, 1),
                  mean_completion_tokens=round(sum(lengths) / max(len(lengths), 1), 1), max_new_tokens=max_new_tokens, max_passages=max_passages,
                  dtype=dtype)
    return report


KEYS = ["correct", "answer_score", "cited_right", "citation_f1", "refused_right", "over_refusal", "format",
        "answerable", "unanswerable", "mean_completion_tokens", "seconds"]


def format_reports(reports: list[dict]) -> str:
    """Side-by-side text table of grounded reports (columns = models)."""
    from pathlib import Path

    heads = [Path(r["adapter"]).name if r.get("adapter") else Path(str(r["model"])).name for r in reports]
    lines = [f"{'metric':<24}" + "".join(f"{h[:22]:>24}" for h in heads)]
    for k in KEYS:
        cells = [f"{r.get(k):>24.3f}" if isinstance(r.get(k), float) else f"{r.get(k)!s:>24}" for r in reports]
        lines.append(f"{k:<24}" + "".join(cells))
    return "\n".join(lines)
