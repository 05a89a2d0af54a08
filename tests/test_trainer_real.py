"""Real weights (deselected by default; `pytest -m real`): a few LoRA GRPO steps on Qwen2.5 0.5B
(the offline GGUF converted to an HF folder) on CPU, then `trainer eval` on its adapter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


@pytest.fixture(scope="module")
def qwen_model(request) -> Path:
    """The imported real Qwen folder of this machine (/work/tqts-real, READ-ONLY: runs go to the
    test's own data dir) when it is there, else the GGUF converted here."""
    ready = Path("/work/tqts-real/READY")
    if ready.exists():
        folder = Path(ready.read_text(encoding="utf-8").strip())
        if (folder / "config.json").exists():
            return folder
    return request.getfixturevalue("qwen_hf")


def test_real_stop_leaves_a_resumable_checkpoint(tmp_path, qwen_model, shared_data):
    """Stop (trainer.jobs: SIGINT, wait for the measured step) on a CPU run of the real model:
    status stopped with why, a checkpoint, and --resume continues from it."""
    import settings as settings_mod
    from trainer import jobs

    home = tmp_path / "home"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = settings_mod.load(home)
    job = jobs.TrainingJob.start(settings, "smoke-cpu", str(qwen_model), dataset=str(shared_data / "gsm8k_zh"),
                                 max_steps=50, run_name="stop-real", allow_cpu=True)
    deadline = time.monotonic() + 3600
    while not job.progress() and job.is_alive() and time.monotonic() < deadline:
        time.sleep(2)
    assert job.progress(), job.log_tail(30)
    assert job.stop() == "stopped", job.log_tail(30)              # the default wait: from the step time
    assert job.returncode() == 0, job.log_tail(30)                 # it ended by itself, not killed
    info = job.info()
    step = info["global_step"]
    assert info["stop"]["reason"] == "user" and (job.run_dir / f"checkpoint-{step}" / "adapter_model.safetensors").exists()
    assert job.resumable()
    again = jobs.TrainingJob.start(settings, "smoke-cpu", str(qwen_model), dataset=str(shared_data / "gsm8k_zh"),
                                   max_steps=step + 1, run_name="stop-real", allow_cpu=True, resume=True)
    assert again.wait(3600) and again.status() == "finished", again.log_tail(30)
    info = again.info()
    assert info["global_step"] == step + 1 and info["started"] == info["attempts"][0]["started"]
    assert f"resuming from {job.run_dir / f'checkpoint-{step}'}" in again.log_tail(200)
