"""What the Retrain dialog shows about a run: curves and ETA from progress rows (pure),
base-vs-trained evaluation and the GPU probe (subprocesses: no torch in the app).

``python -m trainer eval --model M --adapter A --compare BASE --data D --json --output F``
compares a trained model with its base on held-out questions; :func:`comparison` turns its
report into ``{"base": {...}, "trained": {...}}`` with :data:`METRICS`. ``python -m trainer
gpu --json`` says which CUDA device there is (:func:`gpu_info`).

Threads: :func:`gpu_info` and :meth:`EvalJob.result` block for seconds: call them from a
worker thread, never the Tk thread.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from trainer.jobs import ROOT, TrainingJob, _env, _read_json, _tail_lines, stop_process, trainer_launcher


def latest_per_step(rows: list[dict]) -> list[dict]:
    """One row per step (the last logged; a resumed run may repeat steps), in step order."""
    by_step = {r["step"]: r for r in rows if isinstance(r.get("step"), int)}
    return [by_step[k] for k in sorted(by_step)]


def reward_series(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """Per reward function, the (steps, mean reward) points of progress rows; "reward" is the total."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    rows = latest_per_step(rows)

    def add(name, step, value):
        if isinstance(value, (int, float)):
            xs, ys = out.setdefault(name, ([], []))
            xs.append(step)
            ys.append(float(value))

    for row in rows:
        step = row.get("step")
        if step is None:
            continue
        add("reward", step, row.get("reward"))
        for name, stats in (row.get("rewards") or {}).items():
            add(name, step, stats.get("mean") if isinstance(stats, dict) else stats)
    return out


def accuracy_series(rows: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, eval_accuracy) of the rows that carry an evaluation (the last one per step)."""
    by_step = {r["step"]: float(r["eval_accuracy"]) for r in rows
               if isinstance(r.get("eval_accuracy"), (int, float)) and isinstance(r.get("step"), int)}
    steps = sorted(by_step)
    return steps, [by_step[k] for k in steps]


def eta_seconds(rows: list[dict]) -> float | None:
    """Seconds left: mean ``step_time`` of the last 10 rows x steps remaining (None if unknown)."""
    if not rows:
        return None
    last = rows[-1]
    total, step = last.get("total_steps"), last.get("step")
    times = [r["step_time"] for r in rows[-10:] if isinstance(r.get("step_time"), (int, float))]
    if not total or step is None or not times:
        return None
    return max(0.0, (total - step) * sum(times) / len(times))


#: The metric keys of ``python -m trainer eval --json`` shown side by side.
METRICS = ("strict", "lenient", "format_rate")
#: The same for grounded tasks (``python -m trainer eval --tasks``; trainer/grounded_eval.py).
GROUNDED_METRICS = ("correct", "cited_right", "refused_right", "over_refusal", "format")


def is_grounded(metrics: dict) -> bool:
    """True for the numbers of a grounded-tasks evaluation (they have ``correct``)."""
    return isinstance(metrics, dict) and "correct" in metrics


#: Lines of a trainer console that are not the trainer's own: library warnings (and the source
#: line Python echoes under them), progress bars (tqdm's "45%|████▌ | 9/20 [00:03<00:04, 2.6it/s]"),
#: weight-loading reports.
_NOISE = re.compile(r"Warning:|^\s+warnings\.warn|^\s+warn\(|\d+%\|| \[\d+:\d+<|it/s\]|s/it\]|"
                    r"^Loading weights|^Notes:|^- (MISSING|UNEXPECTED)|^\s*$|[\u2580-\u259f]")


def trainer_lines(lines: list[str]) -> list[str]:
    """The trainer's own lines of a console (run dir, steps, stops, errors, the launch command),
    without library warnings and progress bars (:data:`_NOISE`).

    >>> trainer_lines(["$ python -m trainer train", "x.py:3: FutureWarning: old", "  warnings.warn(",
    ...                "Loading weights: 100%|██| 291/291 [00:00<00:00, 99.0it/s]", "step 1/2 | reward 1.000"])
    ['$ python -m trainer train', 'step 1/2 | reward 1.000']
    """
    return [ln for ln in lines if not _NOISE.search(ln)]


def eval_metrics(result: dict) -> dict:
    """Pick the comparable numbers (strict / lenient accuracy, format rate) out of an eval dict,
    with the number of questions (``n``: judged ones) and the Wilson 95 % intervals
    (``strict_ci95`` / ``lenient_ci95``, [low, high]) when the report has them; for a grounded
    report (:func:`is_grounded`) the :data:`GROUNDED_METRICS` and ``n``.

    Accepts them at the top level or under "metrics"; keys may carry an "_accuracy" suffix.
    """
    src = result.get("metrics", result) if isinstance(result, dict) else {}
    out: dict = {}
    if is_grounded(src):  # grounded tasks: rates in [0, 1] (None where no task of the kind)
        out.update({k: float(src[k]) if isinstance(src.get(k), (int, float)) else None for k in GROUNDED_METRICS})
        out["n"] = int(src.get("n") or 0)
        return out
    for key in METRICS:
        for cand in (key, f"{key}_accuracy", f"accuracy_{key}"):
            if isinstance(src.get(cand), (int, float)):
                out[key] = float(src[cand])
                break
        ci = src.get(f"{key}_ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            out[f"{key}_ci95"] = [float(ci[0]), float(ci[1])]
    n = src.get("judged", src.get("n"))
    if isinstance(n, int):
        out["n"] = n
    return out


def comparison(result, trained: str, adapter: str = "") -> dict[str, dict[str, float]]:
    """``{"base": metrics, "trained": metrics}`` from ``python -m trainer eval --compare`` output.

    Accepts a list of reports, a ``{"reports": [...]}`` mapping, or one report with the
    base under "compare"; the trained report is the one whose adapter (or model) matches.
    """
    if isinstance(result, dict) and isinstance(result.get("compare"), dict):
        return {"trained": eval_metrics(result), "base": eval_metrics(result["compare"])}
    reports = result.get("reports", []) if isinstance(result, dict) else list(result or [])
    reports = [r for r in reports if isinstance(r, dict)]

    def is_trained(r):
        return str(r.get("adapter") or "") == adapter if adapter else str(r.get("model")) == trained

    mine = next((r for r in reports if is_trained(r)), reports[0] if reports else {})
    other = next((r for r in reports if r is not mine), {})
    return {"trained": eval_metrics(mine), "base": eval_metrics(other)}



def gpu_info(settings=None, timeout: float = 120, launcher: list[str] | None = None) -> dict:
    """``{"cuda", "name", "free_mb", "total_mb"}`` from ``python -m trainer gpu --json``
    (a subprocess, so torch never loads in the UI process), else from ``nvidia-smi``.
    Blocks for seconds: call it off the UI thread. "error" says why nothing was found.

    Without ``nvidia-smi`` on PATH there is no NVIDIA driver, hence no CUDA: the answer is
    immediate (no torch import) unless ``launcher`` replaces the trainer (tests)."""
    smi = shutil.which("nvidia-smi")
    if smi is None and launcher is None:
        return {"cuda": False, "name": "", "free_mb": 0, "total_mb": 0,
                "error": "no NVIDIA driver (nvidia-smi not found)"}
    env = _env(settings) if settings is not None else None
    try:
        out = subprocess.run([*(launcher or trainer_launcher()), "gpu", "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
        info = json.loads(out.strip().splitlines()[-1])
        if isinstance(info, dict) and "cuda" in info:
            return info
        error = "python -m trainer gpu printed no JSON"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        error = f"python -m trainer gpu failed: {str(e).strip()[:200]}"
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.free,memory.total",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
            name, free, total = [x.strip() for x in out.splitlines()[0].split(",")]
            return {"cuda": True, "name": name, "free_mb": int(free), "total_mb": int(total)}
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return {"cuda": False, "name": "", "free_mb": 0, "total_mb": 0, "error": error}


class EvalJob:
    """``python -m trainer eval`` of a trained model against its base, as a subprocess.

    The JSON result goes to ``output`` (``--output``), the console to ``output``'s ".log".
    """

    def __init__(self, proc: subprocess.Popen, output: Path):
        self.proc, self.output = proc, Path(output)

    @classmethod
    def start(cls, settings, model: str, data: str, output: str | Path, *, adapter: str = "",
              compare: str = "", compare_adapter: str = "", limit: int | None = 20,
              split: str = "", max_new_tokens: int | None = None,
              launcher: list[str] | None = None, tasks: str = "", think: bool = True,
              max_passages: int = 0) -> EvalJob:
        """Launch the evaluation; see :meth:`result` for the outcome.

        Args:
            model / adapter: the trained model (registry name, hub id or folder; LoRA folder).
            data: the held-out split (hub id or local file).
            compare / compare_adapter: the base model evaluated on the same questions.
            limit: questions evaluated (None: all).
            split / max_new_tokens: passed on when given (trainer defaults: "test", 256).
            tasks: a grounded tasks file: evaluate on its held-out tasks instead of ``data``
                (``--tasks``), with the recipe's prompt (``think``, ``max_passages``).
        """
        output = Path(output)
        source = ["--tasks", str(tasks)] if tasks else ["--data", str(data)]
        cmd = [*(launcher or trainer_launcher()), "eval", "--model", str(model), *source,
               "--json", "--output", str(output)]
        if tasks:
            cmd += ([] if think else ["--no-think"]) + (["--max-passages", str(int(max_passages))]
                                                         if max_passages else [])
        cmd += ["--adapter", str(adapter)] if adapter else []
        cmd += ["--limit", str(int(limit))] if limit else []
        cmd += ["--split", split] if split else []
        cmd += ["--max-new-tokens", str(int(max_new_tokens))] if max_new_tokens else []
        cmd += ["--compare", str(compare)] if compare else []
        cmd += ["--compare-adapter", str(compare_adapter)] if compare and compare_adapter else []
        output.unlink(missing_ok=True)
        with open(output.with_suffix(".log"), "wb") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(settings), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(proc, output)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def result(self, timeout: float | None = None) -> dict | list:
        """Wait for the evaluation and return its JSON.

        Raises:
            RuntimeError: it failed; the message carries the end of its log.
        """
        rc = self.proc.wait(timeout)
        try:
            data = json.loads(self.output.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if rc != 0 or not data:
            tail = "\n".join(_tail_lines(self.output.with_suffix(".log"), 8))
            raise RuntimeError(f"evaluation failed (exit {rc}):\n{tail}")
        return data

    def stop(self, timeout: float = 10) -> None:
        """SIGINT, wait, kill."""
        stop_process(self.proc, timeout)


# -- history -------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One row of the run history (see :func:`list_runs`)."""

    name: str
    path: Path
    status: str
    model: str = ""
    recipe: str = ""
    started: str = ""
    ended: str = ""
    step: int = 0
    total_steps: int = 0
    last_reward: float | None = None
    best_accuracy: float | None = None
    final_eval: dict = field(default_factory=dict)


def run_info(run_dir: str | Path) -> RunInfo:
    """Summarize a run folder: run.json, progress.jsonl, eval.json / compare.json."""
    job = TrainingJob.attach(run_dir)
    meta, rows = job.info(), job.progress()
    _, accs = accuracy_series(rows)
    last = rows[-1] if rows else {}
    final = eval_metrics(_read_json(job.run_dir / "eval.json"))
    compare = _read_json(job.run_dir / "compare.json")
    if not final and compare:
        final = compare.get("trained", {})
    recipe = meta.get("recipe", "")
    if isinstance(recipe, dict):
        recipe = recipe.get("name") or recipe.get("path", "")
    return RunInfo(
        name=job.name, path=job.run_dir, status=job.status(),
        model=str((meta.get("args") or {}).get("model") or meta.get("model") or ""),
        recipe=Path(str(recipe)).stem if recipe else "", started=meta.get("started", ""),
        ended=meta.get("ended") or "", step=int(last.get("step") or 0),
        total_steps=int(last.get("total_steps") or 0), last_reward=last.get("reward"),
        best_accuracy=max(accs) if accs else meta.get("best_eval_accuracy"), final_eval=final)


def list_runs(settings) -> list[RunInfo]:
    """All runs under ``settings.runs_dir`` (folders with run.json), newest first."""
    runs = [run_info(d) for d in Path(settings.runs_dir).iterdir() if (d / "run.json").is_file()]
    return sorted(runs, key=lambda r: (r.started, r.name), reverse=True)
