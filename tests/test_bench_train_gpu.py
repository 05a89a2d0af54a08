"""bench/train_gpu.sh without a GPU (argument checks, dry run) and bench/train_report.py on a
run folder written here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "train_gpu.sh"


def sh(*args, **kw):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kw)


def test_dry_run_lists_the_stages(tmp_path, shared_data):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    out = sh("--gguf", str(gguf), "--data", str(shared_data / "gsm8k_zh"), "--out", str(tmp_path / "o"),
             "--train-minutes", "5", "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = [x.strip() for x in out.stdout.splitlines()[1:]]
    assert [x.split()[1:3] for x in lines] == [["main.py", "models"], ["-m", "trainer"], ["-m", "trainer"],
                                              ["-m", "trainer"], ["bench/train_report.py", str(tmp_path / "o" / "run")]]
    assert "--max-minutes 5" in lines[2] and "--limit 100" in lines[1] and "--adapter" in lines[3]
    assert not (tmp_path / "o").exists()                                   # a dry run writes nothing


def test_bad_arguments_say_what_to_do(tmp_path):
    for args, message in ((["--questions", "x"], "positive integer"), (["--nope"], "unknown argument"),
                          (["--gguf", str(tmp_path / "missing.gguf")], "--gguf FILE or --model"),
                          (["--data", str(tmp_path / "none")], "--data")):
        out = sh(*args, "--dry-run")
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def test_report_curves_per_reward_function_and_evals(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": i, "total_steps": 6, "reward": 0.1 * i, "step_time": 2.0 + i,
             "rewards": {"correctness": {"mean": 0.05 * i}, "strict_format": {"mean": 0.5}}} for i in range(1, 7)]
    (run / "progress.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"status": "finished", "gpu_peak_mb": 1234.5,
                                              "stop": {"reason": "budget", "detail": "time budget"}}))
    (run / "samples.jsonl").write_text(json.dumps({"step": 6, "reward": 1.0, "completion": "<answer>8</answer>"}))
    ev = {"judged": 100, "strict_accuracy": 0.2, "strict_ci95": [0.13, 0.29], "lenient_accuracy": 0.3,
          "lenient_ci95": [0.22, 0.4], "format_rate": 0.5, "mean_completion_tokens": 90.0, "seconds": 30}
    (tmp_path / "after.json").write_text(json.dumps(ev))
    png = tmp_path / "r.png"
    out = subprocess.run([sys.executable, "bench/train_report.py", str(run), "--after", str(tmp_path / "after.json"),
                          "--png", str(png), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["steps"] == 6 and s["mean_step_s"] == sum(range(4, 9)) / 5 and s["gpu_peak_mb"] == 1234.5
    assert abs(s["rewards"]["correctness"]["last"] - 0.3) < 1e-9 and s["rewards"]["strict_format"]["mean_first5"] == 0.5
    assert s["after"]["lenient_ci95"] == [0.22, 0.4] and "before" not in s
    assert png.read_bytes()[:4] == b"\x89PNG"
