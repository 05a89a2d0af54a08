"""Smoke test for bench/train.py: one GRPO step of the tiny Qwen through `python -m trainer`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import train

RECIPE = Path(__file__).resolve().parents[1] / "trainer" / "recipes" / "smoke-cpu.yaml"


@pytest.mark.slow
def test_train_reports_step_time(tiny_qwen_dir, shared_data, tmp_path, capsys):
    if not RECIPE.exists():
        pytest.skip(f"{RECIPE} not found")
    rc = train.main(["--recipe", str(RECIPE), "--model", str(tiny_qwen_dir), "--steps", "1",
                     "--home", str(tmp_path / "home"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r["error"]
    assert r["steps"] == 1 and r["status"] == "finished"
    assert r["mean_step_s"] > 0 and r["completions_per_step"] == 4 and r["completions_per_s"] > 0


def test_bench_recipe_turns_eval_off_and_keeps_the_rest(tmp_path):
    if not RECIPE.exists():
        pytest.skip(f"{RECIPE} not found")
    import yaml

    out = yaml.safe_load(train.bench_recipe(RECIPE, tmp_path, keep_eval=False).read_text(encoding="utf-8"))
    src = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    assert out["eval_every"] == 0 and out["grpo"] == src["grpo"]
    assert train.completions_per_step(RECIPE) == src["grpo"]["per_device_train_batch_size"] * \
        src["grpo"].get("gradient_accumulation_steps", 1)
