"""A stand-in for ``python -m trainer`` used by tests/test_retrain_jobs.py: same arguments,
same run-folder files (run.json, progress.jsonl, samples.jsonl, checkpoint-N/, final/, best/),
same SIGINT behaviour (stop after the current step with a checkpoint), no torch.

Knobs (environment): FAKE_STEP_SECONDS (default 0.2), FAKE_IGNORE_SIGINT=1 (to test the kill),
FAKE_SPLIT_LINES=1 (write each progress line in two flushes with a pause between them),
FAKE_CUDA=1 (``gpu --json`` reports a GPU), FAKE_FAIL=MESSAGE (the run fails with it),
FAKE_EXIT_DELAY=S (after writing its final run.json the process lingers S seconds, as a real
interpreter's exit may), FAKE_NOISE=1 (a FutureWarning and a progress bar in the console).
``tasks --kb K --out F`` writes 10 tasks with JSON progress lines; ``eval --tasks F`` reports
grounded metrics.
Run: ``python tests/fake_trainer.py train --recipe R --model M --output DIR [--max-steps N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

STOP = False
meta: dict = {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _save(run: Path, meta: dict) -> None:
    tmp = run / "run.json.tmp"
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    tmp.replace(run / "run.json")


def _adapter(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")


def train(a) -> int:
    global STOP
    if os.environ.get("FAKE_IGNORE_SIGINT") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        def on_sigint(*_):  # as trainer/train.py: say "stopping" at once, stop after the step
            globals().update(STOP=True)
            meta.update(status="stopping")
            _save(run, meta)

        signal.signal(signal.SIGINT, on_sigint)
    run = Path(a.output)
    run.mkdir(parents=True, exist_ok=True)
    total = a.max_steps or 5
    meta.update({"args": vars(a), "recipe": a.recipe, "model": a.model, "pid": os.getpid(),
            "status": "running", "started": _now(), "ended": None, "output": "lora"})
    _save(run, meta)
    if os.environ.get("FAKE_NOISE") == "1":
        print("/x/training_args.py:1541: FutureWarning: `gradient_checkpointing` is deprecated", file=sys.stderr)
        print("  warnings.warn(", file=sys.stderr)
        print("Loading weights: 100%|██████████| 291/291 [00:00<00:00, 99.0it/s]", file=sys.stderr, flush=True)
    if os.environ.get("FAKE_FAIL"):
        print(f"training failed: {os.environ['FAKE_FAIL']}", file=sys.stderr)
        meta.update(status="failed", error=os.environ["FAKE_FAIL"], ended=_now())
        _save(run, meta)
        return 1
    delay = float(os.environ.get("FAKE_STEP_SECONDS", "0.2"))
    step = max((int(c.name.split("-")[1]) for c in run.glob("checkpoint-*")), default=0) if a.resume else 0
    if a.resume:
        print(f"resuming from checkpoint-{step}", flush=True)
    with open(run / "progress.jsonl", "a", encoding="utf-8") as prog, \
            open(run / "samples.jsonl", "a", encoding="utf-8") as samples:
        while step < total and not STOP:
            time.sleep(delay)
            step += 1
            row = {"step": step, "total_steps": total, "reward": step / total,
                   "rewards": {"accuracy": {"mean": step / total / 2, "std": 0.1},
                               "format": {"mean": 0.5, "std": 0.0}},
                   "step_time": delay, "time": _now()}
            if step % 2 == 0:
                row["eval_accuracy"] = step / total
            line = json.dumps(row) + "\n"
            if os.environ.get("FAKE_SPLIT_LINES") == "1":
                prog.write(line[:10])
                prog.flush()
                time.sleep(delay)
            prog.write(line[10:] if os.environ.get("FAKE_SPLIT_LINES") == "1" else line)
            prog.flush()
            samples.write(json.dumps({"step": step, "prompt": "1+1?", "reward": 1.0,
                                      "completion": f"<think>step {step}</think><answer>2</answer>"})
                          + "\n")
            samples.flush()
            print(f"step {step}/{total}", flush=True)
    if STOP:
        _adapter(run / f"checkpoint-{step}")
        meta.update(status="stopped", ended=_now(), stop={
            "reason": "user", "step": step, "time": _now(),
            "detail": f"stopped by the user after step {step}; resume from checkpoint-{step}"})
    else:
        _adapter(run / "final")
        _adapter(run / "best")
        meta.update(status="finished", ended=_now())
    _save(run, meta)
    time.sleep(float(os.environ.get("FAKE_EXIT_DELAY", "0")))
    return 0


def tasks(a) -> int:
    """10 tasks (8 train, 2 held-out, 2 refusals) with one JSON progress line each."""
    if not a.kb or a.kb == "missing":
        print(f"error: no knowledge base named {a.kb!r}; add documents first", file=sys.stderr)
        return 2
    rows = []
    for i in range(10):
        gold = 0 if i in (3, 7) else 1
        rows.append({"id": f"t{i}", "kind": "number", "question": f"问题{i}有多少天？", "answers": [f"{i}天"],
                     "passages": [{"source": "a.pdf", "page": 1, "text": f"问题{i}有{i}天。"}], "gold": gold,
                     "support": [1] if gold else [], "n_passages": 1, "doc": "a.pdf",
                     "split": "heldout" if i >= 8 else "train"})
        print(json.dumps({"progress": [i + 1, 10], "message": rows[-1]["question"]}, ensure_ascii=False), flush=True)
        time.sleep(float(os.environ.get("FAKE_STEP_SECONDS", "0.2")) / 4)
    Path(a.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(json.dumps({"tasks": 10, "by_kind": {"number": 10}, "refusal": 2, "train": 8, "heldout": 2,
                      "documents": 1, "candidates": 10, "gold_present": 1.0, "skipped": 0}))
    return 0


def evaluate(a) -> int:
    if a.tasks:
        n = a.limit or 2
        result = [{"model": a.model, "adapter": a.adapter or "", "n": n, "correct": 0.5, "cited_right": 0.5,
                   "refused_right": 1.0, "over_refusal": 0.0, "format": 1.0, "no_think": a.no_think}]
        if a.compare:
            result.append({"model": a.compare, "adapter": "", "n": n, "correct": 0.0, "cited_right": 0.0,
                           "refused_right": 0.0, "over_refusal": 0.0, "format": 0.5})
        Path(a.output).write_text(json.dumps(result), encoding="utf-8")
        print(json.dumps(result))
        return 0
    n = a.limit or 3
    result = {"model": a.model, "n": n, "judged": n, "strict": 0.5, "lenient": 0.75, "format_rate": 1.0,
              "strict_ci95": [0.3, 0.7], "lenient_ci95": [0.53, 0.89], "split": a.split,
              "max_new_tokens": a.max_new_tokens}
    if a.compare:
        result["compare"] = {"model": a.compare, "n": n, "judged": n, "strict": 0.25, "lenient": 0.5,
                             "format_rate": 0.5}
    text = json.dumps(result)
    if a.output:
        Path(a.output).write_text(text, encoding="utf-8")
    print(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fake_trainer")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    for opt in ("--recipe", "--model", "--dataset", "--output", "--run-name", "--epochs", "--mix-dataset",
                "--mix-ratio"):
        t.add_argument(opt)
    t.add_argument("--max-steps", type=int)
    for flag in ("--lora", "--no-lora", "--resume", "--allow-cpu"):
        t.add_argument(flag, action="store_true")
    e = sub.add_parser("eval")
    for opt in ("--model", "--adapter", "--data", "--tasks", "--output", "--compare", "--compare-adapter",
                "--max-passages"):
        e.add_argument(opt)
    e.add_argument("--no-think", action="store_true")
    e.add_argument("--limit", type=int)
    e.add_argument("--split")
    e.add_argument("--max-new-tokens", type=int)
    e.add_argument("--json", action="store_true")
    sub.add_parser("gpu").add_argument("--json", action="store_true")
    k = sub.add_parser("tasks")
    for opt in ("--kb", "--out", "--max", "--home"):
        k.add_argument(opt)
    for flag in ("--json", "--progress-json"):
        k.add_argument(flag, action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "gpu":
        cuda = os.environ.get("FAKE_CUDA") == "1"
        print(json.dumps({"cuda": cuda, "name": "Fake GPU" if cuda else "", "free_mb": 70000 if cuda else 0,
                          "total_mb": 81559 if cuda else 0}))
        return 0
    if a.cmd == "tasks":
        return tasks(a)
    return train(a) if a.cmd == "train" else evaluate(a)


if __name__ == "__main__":
    sys.exit(main())
