"""The collapse guard (trainer.callbacks.EvalCallback) on scripted accuracies: it stops only on a
real drop, never on a flat or noisy-flat run, and says why; validation rows come from train."""
from __future__ import annotations

import json

from transformers import TrainerControl, TrainerState

from trainer.callbacks import EvalCallback


class ScriptedGuard(EvalCallback):
    """The real guard with the model's evaluation replaced by a list of accuracies."""

    def __init__(self, run_dir, accuracies, **kw):
        super().__init__(run_dir, [{"prompt": [], "answer": "1"}] * 40, every=25, max_new_tokens=8,
                         shared={}, **kw)
        self.accuracies = list(accuracies)
        self.saved: list[int] = []

    def evaluate(self, model):
        return {"lenient_accuracy": self.accuracies.pop(0), "strict_accuracy": 0.0, "rows": []}

    def save_best(self, step, report):
        self.saved.append(step)


def run(guard: ScriptedGuard, max_steps: int) -> int:
    """Drive on_step_end like the Trainer does; return the step the run ended at."""
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    for step in range(1, max_steps + 1):
        state.global_step = step
        guard.on_step_end(None, state, control)
        if control.should_training_stop:
            return step
    return max_steps


def test_flat_accuracy_runs_to_the_end(tmp_path):
    """The default recipe's guard (every 25 steps, patience 4) on ~1,868 steps of a flat accuracy,
    exact and with +-1 question of noise: never stops (the old guard stopped at step 125)."""
    n_evals = 1868 // 25
    flat = ScriptedGuard(tmp_path, [0.3] * n_evals, patience=4, margin=0.1)
    assert run(flat, 1868) == 1868 and flat.stop_reason is None and flat.saved == [25]
    noisy = ScriptedGuard(tmp_path, [0.3 + 0.025 * ((-1) ** i) for i in range(n_evals)], patience=4, margin=0.1)
    assert run(noisy, 1868) == 1868 and noisy.stop_reason is None


def test_a_real_drop_stops_and_says_why(tmp_path):
    accs = [0.3, 0.4, 0.45, 0.4, 0.3, 0.38, 0.3, 0.3, 0.3, 0.1]  # a dip, back within the margin, a drop
    guard = ScriptedGuard(tmp_path, accs, patience=4, margin=0.1)
    assert run(guard, 1000) == 250                                 # evaluations 7..10 below 0.35
    assert "0.450" in guard.stop_reason and "steps 175, 200, 225, 250" in guard.stop_reason
    assert [h["step"] for h in guard.history] == [25 * i for i in range(1, 11)]


def test_guard_validates_on_rows_held_out_of_train(tmp_path):
    from types import SimpleNamespace

    from trainer import recipes
    from trainer.train import load_data

    rows = [{"question": f"{i} + 1 = ?", "answer": str(i + 1)} for i in range(30)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    recipe = recipes.from_dict({"eval_every": 5, "eval_questions": 4, "train_size": 20, "max_prompt_tokens": 0},
                               trl_check=False)
    train, val = load_data(recipe, SimpleNamespace(dataset=str(data), fields=None), None)
    assert len(train) == 20 and len(val) == 4
    assert not {e["question"] for e in train} & {e["question"] for e in val}
    assert val[-1]["question"] == "23 + 1 = ?"                      # from the train split, not test
