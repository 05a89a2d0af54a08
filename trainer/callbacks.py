"""Trainer callbacks: progress lines (progress.jsonl + stdout), samples, graceful stop, collapse guard.

All run in the training process, on the training thread (the Trainer calls them between steps).
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

from transformers import TrainerCallback

from trainer import evaluate as E


def now_iso() -> str:
    """Current UTC time, ISO 8601, seconds precision."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _clean(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line (UTF-8) and flush, so readers see whole lines only."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


class ProgressCallback(TrainerCallback):
    """One progress.jsonl line per logged step, a printed summary line, and samples.jsonl.

    Args:
        run_dir: the run folder.
        reward_weights: reward name -> weight (for each sample's total reward).
        shared: dict shared with :class:`EvalCallback` (``eval_accuracy`` of the current step).
        samples_per_step: completions written to samples.jsonl per logged step.
    """

    def __init__(self, run_dir: Path, reward_weights: dict, shared: dict, samples_per_step: int = 4):
        self.run_dir, self.weights, self.shared = Path(run_dir), reward_weights, shared
        self.samples_per_step = samples_per_step
        self.trainer = None  # set by train.py: the samples come from GRPOTrainer._logs
        self._t0 = None
        self._step_times: list[float] = []

    def on_step_begin(self, args, state, control, **kw):
        self._t0 = time.time()

    def on_step_end(self, args, state, control, **kw):
        if self._t0 is not None:
            self._step_times.append(time.time() - self._t0)

    def record(self, logs: dict, state) -> dict:
        """Map TRL's log keys onto our progress record (see the Trainer contract in README)."""
        rewards = {}
        for key, value in logs.items():
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key.split("/")[1]
                rewards[name] = {"mean": _clean(value), "std": _clean(logs.get(f"rewards/{name}/std"))}
        times = self._step_times
        rec = {"step": state.global_step, "total_steps": state.max_steps, "rewards": rewards,
               "reward": _clean(logs.get("reward")), "reward_std": _clean(logs.get("reward_std")),
               "completion_length": _clean(logs.get("completions/mean_length")),
               "learning_rate": _clean(logs.get("learning_rate")), "loss": _clean(logs.get("loss")),
               "step_time": round(sum(times) / len(times), 3) if times else None, "time": now_iso()}
        if "kl" in logs:
            rec["kl"] = _clean(logs["kl"])
        for key, name in (("frac_reward_zero_std", "frac_reward_zero_std"),
                          ("completions/clipped_ratio", "clipped_ratio")):
            if key in logs:  # share of groups without reward variance (no advantage); cut completions
                rec[name] = _clean(logs[key])
        if self.shared.get("eval_step") == state.global_step:
            rec["eval_accuracy"] = self.shared["eval_accuracy"]
            rec["eval_seconds"] = self.shared.get("eval_seconds")
        return rec

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "reward" not in logs or not state.is_world_process_zero:  # e.g. the train_runtime summary
            return
        rec = self.record(logs, state)
        self._step_times = []
        append_jsonl(self.run_dir / "progress.jsonl", rec)
        self.write_samples(state.global_step)
        parts = [f"step {rec['step']}/{rec['total_steps']}", f"reward {rec['reward'] or 0:.3f}"]
        parts += [f"{k} {v['mean']:.2f}" for k, v in rec["rewards"].items() if v["mean"] is not None]
        parts += [f"len {rec['completion_length'] or 0:.1f}", f"lr {rec['learning_rate'] or 0:.2e}",
                  f"{rec['step_time'] or 0:.1f} s/step"]
        if "eval_accuracy" in rec:
            parts.append(f"eval_acc {rec['eval_accuracy']:.3f}")
        print(" | ".join(parts), flush=True)

    def write_samples(self, step: int) -> None:
        """Write the newest completions with their weighted reward to samples.jsonl."""
        logs = getattr(self.trainer, "_logs", None)
        if not logs or not logs.get("completion"):
            return
        prompts, completions = list(logs["prompt"]), list(logs["completion"])
        per_func = {k: list(v) for k, v in logs["rewards"].items()}
        for i in range(min(self.samples_per_step, len(completions))):
            total = sum(self.weights.get(k, 1.0) * v[i] for k, v in per_func.items()
                        if i < len(v) and math.isfinite(v[i]))
            prompt = E.R.completion_text(prompts[i][-1:] if isinstance(prompts[i], list) else prompts[i])
            append_jsonl(self.run_dir / "samples.jsonl", {
                "step": step, "prompt": prompt, "completion": E.R.completion_text(completions[i]),
                "reward": round(total, 4)})


class StopCallback(TrainerCallback):
    """SIGINT / SIGTERM: finish the current step, save a checkpoint, stop. A second signal
    restores the default handlers (a third one kills as usual).

    Attributes:
        requested: a signal arrived.
        step: the step after which the run stopped (set at that step's end), else None.
    """

    def __init__(self, on_request=None):
        self.requested = False
        self.step: int | None = None
        self.on_request = on_request  # called once, in the signal handler (main thread)

    def install(self) -> StopCallback:
        """Install the handlers (main thread only)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            return
        self.requested = True
        print(f"signal {signal.Signals(signum).name}: stopping after this step with a checkpoint", flush=True)
        if self.on_request is not None:
            self.on_request()

    def on_step_end(self, args, state, control, **kw):
        if self.requested:
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class BudgetCallback(TrainerCallback):
    """Ends training at the first step end past a wall-clock budget (``--max-minutes``), counted
    from the start of training (model loading excluded). ``step`` is where it ended, else None."""

    def __init__(self, seconds: float):
        self.seconds, self.deadline, self.step = seconds, None, None

    def on_train_begin(self, args, state, control, **kw):
        self.deadline = time.time() + self.seconds

    def on_step_end(self, args, state, control, **kw):
        if self.deadline is not None and time.time() >= self.deadline and state.global_step < state.max_steps:
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class EvalCallback(TrainerCallback):
    """Collapse guard: greedy accuracy on the validation questions (held out of the training
    split) every ``every`` steps; best/ kept by accuracy; optional early stop on a real drop.

    A real drop: ``patience`` evaluations in a row below ``best - margin``. A tie, a rise or a dip
    within the margin resets the count, so a flat accuracy never stops a run. With n questions
    one question moves the accuracy by 1/n; the margin should span a few questions (binomial
    noise: the standard error of an accuracy p on n questions is sqrt(p(1-p)/n), 0.08 at
    p = 0.5, n = 40).

    Accuracy is the lenient one (right number in the answer) — it is what collapsed in the
    public Qwen2.5-0.5B run while format rewards kept rising.

    Attributes:
        stop_reason: why the guard stopped the run (None while it has not).
        history: one dict per evaluation (step, accuracies, seconds).
    """

    def __init__(self, run_dir: Path, examples: list[dict], every: int, max_new_tokens: int,
                 patience: int, shared: dict, batch_size: int = 8, margin: float = 0.1,
                 history: list[dict] | None = None):
        self.run_dir, self.examples, self.every = Path(run_dir), examples, every
        self.max_new_tokens, self.patience, self.shared = max_new_tokens, patience, shared
        self.batch_size, self.margin = batch_size, margin
        self.trainer = None  # set by train.py (save_model, tokenizer)
        self.best, self.below = self.previous_best(), 0
        self.history: list[dict] = list(history or [])
        self.stop_reason: str | None = None

    def previous_best(self) -> float:
        """Best accuracy already in best/best.json (a resumed run keeps its best), else -1."""
        try:
            return float(json.loads((self.run_dir / "best" / "best.json").read_text(encoding="utf-8"))
                         ["lenient_accuracy"])
        except (OSError, ValueError, KeyError):
            return -1.0

    def evaluate(self, model) -> dict:
        """Greedy completions on the held-out examples; the :func:`trainer.evaluate.score` report."""
        tok = self.trainer.processing_class
        texts, lengths = E.generate(model, tok, [e["prompt"] for e in self.examples],
                                    self.max_new_tokens, self.batch_size)
        return E.score(texts, [e["answer"] for e in self.examples], lengths, [e["prompt"] for e in self.examples])

    def on_step_end(self, args, state, control, model=None, **kw):
        if not self.every or not self.examples or state.global_step % self.every:
            return control
        t0 = time.time()
        report = self.evaluate(model)
        seconds = round(time.time() - t0, 1)
        acc = report["lenient_accuracy"]
        self.shared.update(eval_step=state.global_step, eval_accuracy=acc, eval_seconds=seconds)
        self.history.append({"step": state.global_step, "seconds": seconds, "questions": len(self.examples),
                             **{k: v for k, v in report.items() if k != "rows"}})
        if acc > self.best:
            self.best = acc
            self.save_best(state.global_step, report)
        self.below = self.below + 1 if acc < self.best - self.margin else 0
        if self.patience and self.below >= self.patience:
            steps = [h["step"] for h in self.history[-self.below:]]
            self.stop_reason = (f"collapse guard: validation accuracy below best {self.best:.3f} - margin "
                                f"{self.margin:.3f} at {self.below} evaluations in a row (steps "
                                f"{', '.join(map(str, steps))}; last {acc:.3f})")
            print(f"early stop: {self.stop_reason}", flush=True)
            control.should_save = True
            control.should_training_stop = True
        return control

    def save_best(self, step: int, report: dict) -> None:
        """Save the current weights to best/ (replacing the previous best)."""
        best = self.run_dir / "best"
        tmp = self.run_dir / "best.tmp"
        main = self.trainer.is_world_process_zero()
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.trainer.save_model(str(tmp))  # every process: sharded setups gather the weights
        if not main:
            return
        (tmp / "training_args.bin").unlink(missing_ok=True)  # pickle; not needed to load the weights
        (tmp / "best.json").write_text(json.dumps(
            {"step": step, **{k: v for k, v in report.items() if k != "rows"}}, indent=1), encoding="utf-8")
        shutil.rmtree(best, ignore_errors=True)
        tmp.replace(best)
