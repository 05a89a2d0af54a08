"""Evaluation: scoring of crafted completions, and `python -m trainer eval` on the tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainer.evaluate import score

ROOT = Path(__file__).resolve().parents[1]


def test_score_strict_lenient_format():
    completions = ["<think>3+5=8</think><answer>8</answer>",    # strict + right
                   "<think>3+5=8</think><answer>8 个</answer> extra",  # right number, format broken
                   r"The answer is \boxed{8}",                     # lenient only (boxed)
                   "<think>3+6=9</think><answer>9</answer>",       # format only
                   "whatever"]                                     # gold unparsable: not judged
    report = score(completions, ["8", "8", "8", "8", "n/a"], [10, 12, 6, 8, 3])
    assert report["judged"] == 4 and report["n"] == 5
    assert report["strict_accuracy"] == 0.25 and report["lenient_accuracy"] == 0.75
    assert report["format_rate"] == 2 / 5 and report["mean_completion_tokens"] == 39 / 5
    assert [r["strict"] for r in report["rows"]] == [True, False, False, False, False]


def write_rows(path: Path) -> Path:
    rows = [{"question_zh": "小明有 3 个苹果，又买了 5 个，一共有多少个？", "answer_only": "8"},
            {"question_zh": "一本书 20 元，买 3 本要多少元？", "answer_only": "60"},
            {"question_zh": "一盒 6 个鸡蛋，4 盒有多少个？", "answer_only": "24"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_eval_cli_with_adapter_and_compare(tmp_path, tiny_qwen_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen_dir),
                        LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    lm.save_pretrained(adapter)
    data = write_rows(tmp_path / "test.jsonl")
    out = tmp_path / "report.json"
    env = {**os.environ, "TQTS_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trainer", "eval", "--model", str(tiny_qwen_dir), "--adapter", str(adapter),
           "--data", str(data), "--limit", "2", "--max-new-tokens", "8", "--output", str(out),
           "--compare", str(tiny_qwen_dir)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "strict_accuracy" in res.stdout and "adapter" in res.stdout  # side-by-side table
    reports = json.loads(out.read_text(encoding="utf-8"))
    assert [r["adapter"] for r in reports] == [str(adapter), ""]
    for r in reports:
        assert r["n"] == 2 and 0 < r["mean_completion_tokens"] <= 8
        assert r["rows"][0]["question"].startswith("小明") and r["rows"][0]["gold"] == "8"
    bad = subprocess.run([*cmd[:6], "--data", str(tmp_path / "missing.jsonl")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert bad.returncode == 2 and "not found" in bad.stderr
