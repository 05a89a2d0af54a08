"""Held-out evaluation: batched greedy generation and accuracy on GSM8K-style questions.

Metrics (over the rows whose gold answer parses):

- ``strict_accuracy``: strict R1 format (:func:`trainer.rewards.strict_format`) and the
  ``<answer>`` number right;
- ``lenient_accuracy``: the right number in the answer — the ``<answer>`` block (an empty one
  counts as no answer), else the last ``\\boxed{}``, else the last number of the whole completion;
- ``format_rate``: share of completions in strict format;
- ``mean_completion_tokens``: mean generated tokens (up to and including EOS).

Used by ``python -m trainer eval`` and by the training collapse guard (trainer.callbacks).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from trainer import rewards as R
from trainer.data import load_examples


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % confidence interval of an accuracy ``successes / n`` (Wilson score interval: E. B.
    Wilson, "Probable inference, the law of succession, and statistical inference", JASA 22,
    1927; recommended for small n by Brown, Cai & DasGupta, Statistical Science 16, 2001).
    It stays inside [0, 1] and is not empty at 0 or n successes, unlike the normal interval.

    Returns:
        (low, high), rounded to 3 decimals; (0.0, 1.0) for n = 0.

    >>> wilson_interval(0, 20), wilson_interval(10, 20), wilson_interval(50, 100)
    ((0.0, 0.161), (0.299, 0.701), (0.404, 0.596))
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)


def lenient_answer(text: str) -> str:
    r"""The answer span for lenient scoring: ``<answer>`` content (even when empty: an empty
    answer is no answer), else the last ``\boxed{}``, else the whole text.

    >>> lenient_answer("<think>3+5=8</think><answer></answer> 8"), lenient_answer("so 8")
    ('', 'so 8')
    """
    answer = R.extract_answer(text)
    if answer is not None:
        return answer
    boxed = R.extract_boxed(text)
    return boxed if boxed is not None else text


def score(completions: list[str], golds: list[str], lengths: list[int] | None = None,
          prompts: list | None = None) -> dict:
    """Score completions against gold answers.

    Args:
        completions: generated texts, one per question.
        golds: gold answers (numbers as text), same length.
        lengths: generated token counts, same length (optional).
        prompts: the chat prompts, same length (optional): the strict format then also needs
            shown work, as in training (:func:`trainer.rewards.shown_work`: no copied prompt
            text, the question's numbers in the think block).

    Returns:
        ``{"n", "judged", "strict_accuracy", "lenient_accuracy", "format_rate",
        "mean_completion_tokens", "rows": [{"strict", "lenient", "format", "gold", "answer"}]}``;
        accuracies are over ``judged`` rows (gold parses), rates in [0, 1].
    """
    fmt = R.strict_format(prompts, completions)
    rows, judged = [], 0
    for i, (text, gold) in enumerate(zip(completions, golds, strict=True)):
        right = R.numbers_match(R.extract_answer(text), gold)
        lenient = R.numbers_match(lenient_answer(text), gold)
        judged += right is not None
        rows.append({"gold": gold, "answer": R.extract_answer(text), "format": bool(fmt[i]),
                     "strict": bool(right) and bool(fmt[i]), "lenient": bool(lenient)})
    denom = max(judged, 1)
    strict, lenient = sum(r["strict"] for r in rows), sum(r["lenient"] for r in rows)
    return {"n": len(completions), "judged": judged,
            "strict_accuracy": strict / denom, "lenient_accuracy": lenient / denom,
            "strict_ci95": list(wilson_interval(strict, judged)),
            "lenient_ci95": list(wilson_interval(lenient, judged)),
            "format_rate": sum(fmt) / max(len(fmt), 1),
            "mean_completion_tokens": sum(lengths) / len(lengths) if lengths else None,
            "rows": rows}


def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 256,
             batch_size: int = 8, progress: bool = False) -> tuple[list[str], list[int]]:
    """Greedy completions for chat prompts, batched with left padding.

    Args:
        model: a causal LM (plain or PEFT), on any device.
        tokenizer: its tokenizer (padding side is set to left here, restored after).
        prompts: chat message lists.
        max_new_tokens: generation budget per completion.

    Returns:
        (texts, lengths): decoded completions without special tokens, and generated token counts.
    """
    import torch
    from tqdm.auto import tqdm

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    texts, lengths = [], []
    try:
        starts = range(0, len(prompts), batch_size)
        for s in tqdm(starts, desc="eval", disable=not progress):
            batch = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
                     for p in prompts[s:s + batch_size]]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]  # (B, T_new)
            for row in new:
                keep = row[row != tokenizer.pad_token_id]
                lengths.append(int(keep.numel()))
                texts.append(tokenizer.decode(keep, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return texts, lengths


def load_model(model: str, adapter: str = "", device: str = "auto", dtype: str = "auto"):
    """Load (model, tokenizer) for evaluation; apply a LoRA adapter when given.

    ``dtype``: "auto" (bfloat16 on CUDA, float32 on the CPU), "bfloat16" or "float32" (a CPU
    with AVX512-BF16 runs bfloat16 matmuls ~2.5x faster than float32: bench/results).

    Raises:
        OSError: the folder / hub id cannot be loaded (message from transformers).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    elif dtype in ("bfloat16", "float32"):
        dtype = getattr(torch, dtype)
    else:
        raise ValueError(f"dtype {dtype!r}: use auto, bfloat16 or float32")
    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    return lm, tok


def evaluate(model: str, data: str, *, adapter: str = "", limit: int | None = 50, split: str = "test",
             fields=None, max_new_tokens: int = 256, batch_size: int = 8, progress: bool = True,
             system_prompt: str = "auto", offset: int = 0) -> dict:
    """Evaluate one model (+ adapter) on a data spec; return the report (see :func:`score`).

    The report adds ``model``, ``adapter``, ``data``, ``seconds`` and per-row ``question`` /
    ``completion``.
    """
    examples = load_examples(data, split=split, fields=fields, system_prompt=system_prompt,
                             limit=(limit + offset) if limit else None)[offset:]
    lm, tok = load_model(model, adapter)
    t0 = time.time()
    texts, lengths = generate(lm, tok, [e["prompt"] for e in examples], max_new_tokens, batch_size, progress)
    report = score(texts, [e["answer"] for e in examples], lengths, [e["prompt"] for e in examples])
    for row, ex, text in zip(report["rows"], examples, texts, strict=True):
        row.update(question=ex["question"], completion=text)
    report.update(model=model, adapter=adapter, data=data, split=split, offset=offset,
                  system_prompt=system_prompt, seconds=round(time.time() - t0, 1),
                  max_new_tokens=max_new_tokens)
    return report


def format_report(reports: list[dict]) -> str:
    """Side-by-side text table of one or more reports (columns = models)."""
    keys = ["strict_accuracy", "lenient_accuracy", "format_rate", "mean_completion_tokens", "judged", "seconds"]
    heads = [Path(r["adapter"]).name if r.get("adapter") else Path(str(r["model"])).name for r in reports]
    lines = [f"{'metric':<24}" + "".join(f"{h[:22]:>24}" for h in heads)]
    for k in keys:
        cells = []
        for r in reports:
            v = r.get(k)
            ci = r.get(k.replace("_accuracy", "_ci95")) if k.endswith("_accuracy") else None
            text = f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(f"{text + (f' [{ci[0]:.2f}, {ci[1]:.2f}]' if ci else ''):>24}")
        lines.append(f"{k:<24}" + "".join(cells))
    first = reports[0] if reports else {}
    lines.append(f"{first.get('judged')} held-out questions ({first.get('data')}, split {first.get('split')}, "
                 f"from #{first.get('offset', 0)}); [..] = Wilson 95 % interval")
    return "\n".join(lines)


def write_report(report: dict | list, path: str | Path) -> Path:
    """Write a report (or list of reports) as UTF-8 JSON (temp file + rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path
