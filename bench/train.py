"""Training speed: seconds per GRPO step and completions/s for a fixed number of steps.

    python bench/train.py --recipe trainer/recipes/smoke-cpu.yaml [--steps 4] [--model NAME]
                          [--dataset SPEC] [--home DIR] [--json]

Runs ``python -m trainer train --recipe FILE --max-steps N --allow-cpu --output DIR`` in a
subprocess (a temp data dir unless ``--home``), then reads the run's ``progress.jsonl``
(``step_time`` per logged step) and ``run.json``; completions per step come from the recipe:
``per_device_train_batch_size x gradient_accumulation_steps`` (TRL's GRPO convention: the
batch counts completions). Step 1 includes warm-up, so the steady-state mean excludes it
when there are 2+ steps. The recipe's periodic evaluation is switched off (``eval_every: 0``)
unless ``--keep-eval``, so the numbers are training steps only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, Stopwatch, add_json_flag, emit, log, peak_rss_mb, ratio, table, temp_home  # noqa: E402


def completions_per_step(recipe: Path) -> int | None:
    """Completions per optimizer step from the recipe YAML's ``grpo`` section (None when absent)."""
    import yaml

    rec = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    flat = {**rec, **(rec.get("grpo") or {})}
    bs = flat.get("per_device_train_batch_size")
    return int(bs) * int(flat.get("gradient_accumulation_steps") or 1) if bs else None


def read_run(out: Path) -> tuple[dict, list[dict]]:
    """run.json and the progress.jsonl records with a step_time."""
    run = json.loads((out / "run.json").read_text(encoding="utf-8")) if (out / "run.json").exists() else {}
    prog = []
    if (out / "progress.jsonl").exists():
        for line in (out / "progress.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("step_time") is not None:
                    prog.append(rec)
    return run, prog


def bench_recipe(recipe: Path, home: Path, keep_eval: bool) -> Path:
    """The recipe to run: a copy with ``eval_every: 0`` (unless ``keep_eval``) so the step times
    measure training only; a relative dataset path is made absolute (from the repo root)."""
    import yaml

    if keep_eval:
        return recipe
    data = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    data["eval_every"] = 0
    ds = data.get("dataset")
    if isinstance(ds, str) and not Path(ds).is_absolute() and (ROOT / ds).exists():
        data["dataset"] = str((ROOT / ds).resolve())
    out = home / f"bench-{recipe.name}"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def run_trainer(args, home: Path, out: Path) -> tuple[int, float, str]:
    """Run the trainer; return (exit code, wall seconds, last stderr line)."""
    home.mkdir(parents=True, exist_ok=True)
    recipe = bench_recipe(args.recipe, home, args.keep_eval)
    cmd = [sys.executable, "-m", "trainer", "train", "--recipe", str(recipe), "--max-steps", str(args.steps),
           "--allow-cpu", "--output", str(out)]
    cmd += ["--model", args.model] if args.model else []
    cmd += ["--dataset", args.dataset] if args.dataset else []
    env = {**os.environ, "TQTS_HOME": str(home)}
    log(" ".join(cmd))
    with Stopwatch() as sw:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = (p.stderr.strip().splitlines() or [""])[-1]
    return p.returncode, sw.seconds, tail


def measure(args, home: Path) -> dict:
    out = home / "runs" / "bench-train"
    rc, wall, tail = run_trainer(args, home, out)
    run, prog = read_run(out)
    times = [float(r["step_time"]) for r in prog]
    steady = times[1:] if len(times) > 1 else times
    per_step = completions_per_step(args.recipe)
    mean = sum(steady) / len(steady) if steady else None
    return {"recipe": str(args.recipe), "model": run.get("model") or args.model, "steps": len(times),
            "exit_code": rc, "error": tail if rc else "", "status": run.get("status"),
            "wall_s": wall, "step_times_s": times, "first_step_s": times[0] if times else None,
            "mean_step_s": mean, "completions_per_step": per_step,
            "completions_per_s": ratio(per_step, mean), "peak_rss_mb_trainer": peak_rss_mb(children=True),
            "mean_completion_length": (sum(r.get("completion_length") or 0 for r in prog) / len(prog)) if prog else None}


def render(r: dict) -> str:
    rows = [(Path(r["recipe"]).name, r["model"], r["steps"], r["first_step_s"], r["mean_step_s"],
             r["completions_per_step"], r["completions_per_s"], r["mean_completion_length"], r["wall_s"],
             r["peak_rss_mb_trainer"])]
    out = table(["recipe", "model", "steps", "step 1 s", "s/step (2..N)", "completions/step", "completions/s",
                 "mean completion tokens", "wall s (incl. load)", "peak RSS MiB"], rows)
    if r["exit_code"]:
        out += f"\n\ntrainer exited {r['exit_code']}: {r['error']}"
    return out


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--recipe", type=Path, required=True, help="trainer recipe YAML")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps (--max-steps)")
    p.add_argument("--model", help="model name or folder (default: the recipe's)")
    p.add_argument("--dataset", help="dataset spec (default: the recipe's)")
    p.add_argument("--home", type=Path, help="data dir (default: a temp dir, deleted)")
    p.add_argument("--keep-eval", action="store_true",
                   help="keep the recipe's periodic evaluation (default: eval_every 0, training steps only)")
    args = p.parse_args(argv)
    if not args.recipe.is_file():
        raise SystemExit(f"error: recipe {args.recipe} not found; see `python -m trainer recipes`")
    if args.home:
        r = measure(args, args.home)
    else:
        with temp_home() as home:
            r = measure(args, home)
    emit(r, render(r), args.json)
    return 0 if r["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
