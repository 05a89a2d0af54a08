"""Real weights (deselected by default; `pytest -m real`): a few LoRA GRPO steps on Qwen2.5 0.5B
(the offline GGUF converted to an HF folder) on CPU, then `trainer eval` on its adapter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def qwen_hf(qwen_gguf, tmp_path_factory) -> Path:
    """The GGUF as an HF safetensors folder (models.gguf.convert_gguf)."""
    from models.gguf import convert_gguf

    return convert_gguf(qwen_gguf, tmp_path_factory.mktemp("qwen") / "hf")


def test_real_lora_steps_and_eval(tmp_path, qwen_hf, shared_data):
    data = shared_data / "gsm8k_zh"
    env = {**os.environ, "TQTS_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainer", "train", "--recipe", "smoke-cpu", "--allow-cpu", "--model", str(qwen_hf),
           "--dataset", str(data), "--output", str(run), "--max-steps", "2"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    progress = [json.loads(x) for x in (run / "progress.jsonl").read_text(encoding="utf-8").splitlines()]
    print(f"real Qwen LoRA: {[p['step_time'] for p in progress]} s/step, peak {info['cpu_peak_mb']} MB")
    assert info["status"] == "finished" and len(progress) == 2
    assert (run / "final" / "adapter_model.safetensors").exists()
    out = tmp_path / "eval.json"
    res = subprocess.run([sys.executable, "-m", "trainer", "eval", "--model", str(qwen_hf), "--adapter",
                          str(run / "final"), "--data", str(data), "--limit", "3", "--max-new-tokens", "64",
                          "--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n"] == 3 and report["mean_completion_tokens"] > 0
