"""Summary of a training run: step time, peak memory, reward curves per function, samples, and
the before/after evaluation with Wilson 95 % intervals.

    python bench/train_report.py RUN_DIR [--before EVAL.json] [--after EVAL.json] [--png FILE] [--json]

Reads the run folder of ``python -m trainer train`` (run.json, progress.jsonl, samples.jsonl) and
reports of ``python -m trainer eval``. ``--png`` draws the mean reward of every reward function
(and the total) per step. Used by bench/train_gpu.sh; works on CPU runs too.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.jobs_report import latest_per_step, reward_series  # noqa: E402


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def summarize(run: Path, before: Path | None = None, after: Path | None = None) -> dict:
    """The numbers of one run (see the module docstring); eval reports are optional."""
    info = json.loads((run / "run.json").read_text(encoding="utf-8")) if (run / "run.json").exists() else {}
    rows = latest_per_step(_jsonl(run / "progress.jsonl"))
    times = [r["step_time"] for r in rows if isinstance(r.get("step_time"), (int, float))]
    series = reward_series(rows)
    curves = {name: {"first": ys[0], "last": ys[-1], "mean_first5": sum(ys[:5]) / len(ys[:5]),
                     "mean_last5": sum(ys[-5:]) / len(ys[-5:])} for name, (_, ys) in series.items() if ys}
    out = {"run": str(run), "status": info.get("status"), "stop": info.get("stop"), "steps": len(rows),
           "mean_step_s": sum(times[1:] or times) / len(times[1:] or times) if times else None,
           "first_step_s": times[0] if times else None, "gpu_peak_mb": info.get("gpu_peak_mb"),
           "cpu_peak_mb": info.get("cpu_peak_mb"), "rewards": curves,
           "samples": _jsonl(run / "samples.jsonl")[-4:]}
    for key, path in (("before", before), ("after", after)):
        if path and Path(path).exists():
            rep = json.loads(Path(path).read_text(encoding="utf-8"))
            rep = rep[0] if isinstance(rep, list) else rep
            out[key] = {k: rep.get(k) for k in ("judged", "strict_accuracy", "strict_ci95", "lenient_accuracy",
                                                "lenient_ci95", "format_rate", "mean_completion_tokens", "seconds")}
    return out


def plot(run: Path, png: Path) -> Path:
    """Mean reward per function (and the total) over steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for name, (xs, ys) in reward_series(_jsonl(run / "progress.jsonl")).items():
        ax.plot(xs, ys, marker="o", markersize=3, lw=2.2 if name == "reward" else 1.2,
                label="total (weighted)" if name == "reward" else name)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.set_title(run.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def render(s: dict) -> str:
    lines = [f"run {s['run']}: {s['status']}, {s['steps']} steps, step 1 {s['first_step_s']} s, "
             f"mean step {s['mean_step_s'] and round(s['mean_step_s'], 1)} s, GPU peak {s['gpu_peak_mb']} MB, "
             f"CPU peak {s['cpu_peak_mb']} MB"]
    if s.get("stop"):
        lines.append(f"stop: {s['stop'].get('reason')} — {s['stop'].get('detail')}")
    lines.append(f"{'reward':<16}{'first':>8}{'last':>8}{'mean 1-5':>10}{'mean last 5':>13}")
    for name, c in s["rewards"].items():
        lines.append(f"{name:<16}{c['first']:>8.3f}{c['last']:>8.3f}{c['mean_first5']:>10.3f}{c['mean_last5']:>13.3f}")
    for key in ("before", "after"):
        if key in s:
            e = s[key]
            lines.append(f"eval {key:<6} n={e['judged']} strict {e['strict_accuracy']:.3f} {e['strict_ci95']} "
                         f"lenient {e['lenient_accuracy']:.3f} {e['lenient_ci95']} format {e['format_rate']:.3f} "
                         f"tokens {e['mean_completion_tokens']}")
    for smp in s["samples"][-2:]:
        lines.append(f"sample step {smp.get('step')} reward {smp.get('reward')}: {str(smp.get('completion'))[:200]!r}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--before", type=Path)
    p.add_argument("--after", type=Path)
    p.add_argument("--png", type=Path)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not (a.run / "progress.jsonl").exists():
        print(f"error: {a.run} has no progress.jsonl (not a training run folder)", file=sys.stderr)
        return 2
    s = summarize(a.run, a.before, a.after)
    if a.png:
        s["png"] = str(plot(a.run, a.png))
    print(json.dumps(s, ensure_ascii=False, indent=1) if a.json else render(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
