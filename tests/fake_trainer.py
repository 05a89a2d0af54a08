"""A stand-in for ``python -m trainer`` used by tests/test_retrain_jobs.py: same arguments,
same run-folder files (run.json, progress.jsonl, samples.jsonl, checkpoint-N/, final/, best/),
same SIGINT behaviour (stop after the current step with a checkpoint), no torch.

Knobs (environment): FAKE_STEP_SECONDS (default 0.2), FAKE_IGNORE_SIGINT=1 (to test the kill),
FAKE_SPLIT_LINES=1 (write each progress line in two flushes with a pause between them),
FAKE_CUDA=1 (``gpu --json`` reports a GPU), FAKE_FAIL=MESSAGE (the run fails with it).
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
    return 0


def evaluate(a) -> int:
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
    for opt in ("--recipe", "--model", "--dataset", "--output", "--run-name", "--epochs"):
        t.add_argument(opt)
    t.add_argument("--max-steps", type=int)
    for flag in ("--lora", "--no-lora", "--resume", "--allow-cpu"):
        t.add_argument(flag, action="store_true")
    e = sub.add_parser("eval")
    for opt in ("--model", "--adapter", "--data", "--output", "--compare", "--compare-adapter"):
        e.add_argument(opt)
    e.add_argument("--limit", type=int)
    e.add_argument("--split")
    e.add_argument("--max-new-tokens", type=int)
    e.add_argument("--json", action="store_true")
    sub.add_parser("gpu").add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "gpu":
        cuda = os.environ.get("FAKE_CUDA") == "1"
        print(json.dumps({"cuda": cuda, "name": "Fake GPU" if cuda else "", "free_mb": 70000 if cuda else 0,
                          "total_mb": 81559 if cuda else 0}))
        return 0
    return train(a) if a.cmd == "train" else evaluate(a)


if __name__ == "__main__":
    sys.exit(main())
