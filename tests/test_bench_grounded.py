"""bench/grounded_report.py on a run dir written here; bench/train_grounded_gpu.sh on the CPU (tiny model)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_report_reads_run_and_evals(tmp_path):
    from bench.grounded_report import main, summarize

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "step_time": 2.0 + (s == 1) * 10, "reward": 0.1 * s,
             "rewards": {"grounded_answer": {"mean": 0.05 * s}, "refusal": {"mean": 1.0}}} for s in range(1, 21)]
    (run / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"global_step": 20, "status": "finished", "gpu_peak_mb": 9000.5}))
    (tmp_path / "eval-before.json").write_text(json.dumps({"correct": 0.2, "n": 60}))
    s = summarize(tmp_path)
    assert (s["steps"], s["median_step_s"], s["gpu_peak_mb"]) == (20, 2.0, 9000.5)   # warm-up step left out
    assert s["rewards"]["grounded_answer"] == {"first10": 0.275, "last10": 0.775}
    assert s["before"]["correct"] == 0.2 and s["after"] is None
    assert main([str(tmp_path)]) == 0 and (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu_with_the_tiny_model(tmp_path, tiny_qwen_dir):
    """bench/train_grounded_gpu.sh end to end with a tasks file, the CPU smoke recipe and the
    tiny model: eval before -> 4 staged steps -> eval after -> report with curves.png."""
    from tests.test_trainer_grounded import task, write_tasks

    tasks = [task(tid=f"a{i}", question=f"问题{i}？") for i in range(4)] + \
            [task(tid="r", gold=0, support=[]), task(tid="h", split="heldout")]
    data = write_tasks(tmp_path / "tasks.jsonl", tasks)
    out = tmp_path / "out"
    env = {**os.environ, "MODEL": str(tiny_qwen_dir), "TASKS": str(data), "RECIPE": "grounded-cpu-smoke",
           "TRAIN_ARGS": "--allow-cpu", "EVAL_N": "2", "OUT": str(out), "TQTS_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "train_grounded_gpu.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "steps 4 (finished)" in proc.stdout and "held-out after: {" in proc.stdout
    assert (out / "eval-before.json").exists() and (out / "curves.png").exists()
