"""Summary of a grounded GRPO bench run (bench/train_grounded_gpu.sh): step time, peak memory,
reward curves (curves.png) and the held-out before/after table.

    python bench/grounded_report.py OUT_DIR [--json]

Reads ``OUT_DIR/run/progress.jsonl`` and ``run.json`` (the trainer's run dir) and
``OUT_DIR/eval-before.json`` / ``eval-after.json`` (``python -m trainer eval --tasks``); any that
is missing is reported as missing. Step 1 (warm-up) is left out of the median step time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def profile(rows: list[dict]) -> dict:
    """Why a run learns or not: GRPO's advantage is a completion's reward minus its group's mean,
    so a group whose completions all earn the same reward teaches nothing (Shao et al. 2024,
    DeepSeekMath §4.1.2). Returns the mean per-group reward std, the share of groups with zero
    reward std (TRL's ``frac_reward_zero_std``, averaged over steps), mean completion length
    (tokens) and the share of completions cut at ``max_completion_length``; None when not logged."""
    def mean(key):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return round(statistics.mean(vals), 4) if vals else None

    return {"reward_std": mean("reward_std"), "zero_std_groups": mean("frac_reward_zero_std"),
            "completion_length": mean("completion_length"), "clipped_ratio": mean("clipped_ratio")}


def per_step(rows: list[dict]) -> list[dict]:
    """One compact row per step: total and per-function mean reward, reward std, zero-std share,
    completion length, step time."""
    out = []
    for r in rows:
        row = {"step": r.get("step"), "reward": r.get("reward"), "reward_std": r.get("reward_std"),
               "zero_std": r.get("frac_reward_zero_std"), "len": r.get("completion_length"),
               "step_time": r.get("step_time")}
        row.update({k: v.get("mean") for k, v in (r.get("rewards") or {}).items() if isinstance(v, dict)})
        out.append(row)
    return out


def summarize(out: Path) -> dict:
    """Step time (median s, step 1 excluded), peak memory (MB), steps, per-reward first/last
    means (mean of the first and last 10 steps), the learning :func:`profile`, the per-step rows
    and the before/after held-out metrics (with eval seconds)."""
    from trainer.jobs_report import reward_series

    run = out / "run"
    rows = []
    if (run / "progress.jsonl").exists():
        rows = [json.loads(line) for line in (run / "progress.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
    info = _read_json(run / "run.json") or {}
    times = [r["step_time"] for r in rows if isinstance(r.get("step_time"), (int, float)) and r.get("step", 0) > 1]
    series = reward_series(rows)
    curves = {k: {"first10": round(statistics.mean(ys[:10]), 4), "last10": round(statistics.mean(ys[-10:]), 4)}
              for k, (_xs, ys) in series.items() if ys}
    before, after = _read_json(out / "eval-before.json"), _read_json(out / "eval-after.json")
    keys = ("correct", "answer_score", "cited_right", "citation_f1", "refused_right", "over_refusal", "format",
            "n", "answerable", "unanswerable", "mean_completion_tokens", "seconds")
    return {"steps": info.get("global_step"), "status": info.get("status"),
            "profile": profile(rows), "per_step": per_step(rows),
            "median_step_s": round(statistics.median(times), 2) if times else None,
            "gpu_peak_mb": info.get("gpu_peak_mb"), "cpu_peak_mb": info.get("cpu_peak_mb"), "rewards": curves,
            "before": {k: before.get(k) for k in keys} if before else None,
            "after": {k: after.get(k) for k in keys} if after else None, "series": series}


def plot(series: dict, path: Path) -> Path | None:
    """One line per reward function (mean per step) into ``path``; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name, linewidth=2.0 if name == "reward" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    s = summarize(args.out)
    png = plot(s.pop("series"), args.out / "curves.png") if (args.out / "run").exists() else None
    if args.json:
        print(json.dumps({**s, "curves_png": str(png) if png else None}, ensure_ascii=False))
        return 0
    print(f"steps {s['steps']} ({s['status']}), median step {s['median_step_s']} s, "
          f"GPU peak {s['gpu_peak_mb']} MB, CPU peak {s['cpu_peak_mb']} MB")
    for name, v in s["rewards"].items():
        print(f"  {name:<16} first 10 steps {v['first10']:.3f}  last 10 steps {v['last10']:.3f}")
    print("profile: " + ", ".join(f"{k} {v}" for k, v in s["profile"].items()))
    for row in s["per_step"]:
        print("  " + " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    for label in ("before", "after"):
        print(f"held-out {label}: {s[label] if s[label] else 'missing'}")
    if png:
        print(f"curves: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
