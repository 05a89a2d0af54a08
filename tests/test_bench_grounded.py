"""bench/grounded_report.py on a run dir written here (the GPU script's last step)."""
from __future__ import annotations

import json


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
