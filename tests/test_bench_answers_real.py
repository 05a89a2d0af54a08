"""Real tier: bench/answers.py on 10 questions of the documents set (the constitution PDF),
the offline Qwen2.5-Coder-0.5B GGUF imported through transformers, offline MiniLM.
Run with ``pytest -m real tests/test_bench_answers_real.py`` (~10 min on 2 shared cores)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

QA = Path(__file__).resolve().parents[1] / "bench" / "data" / "documents.jsonl"


def test_answer_benchmark_on_ten_constitution_questions(home, qwen_gguf, minilm_dir, shared_data, tmp_path):
    import settings as settings_mod
    from bench import answers
    from models.registry import ModelRegistry

    entry = ModelRegistry(settings_mod.load(home)).import_path(qwen_gguf)
    out = tmp_path / "result.json"
    assert answers.main([str(shared_data / "documents"), str(QA), "--limit", "10", "--home", str(home),
                         "--include", "zh_prc_constitution_2018.pdf", "--embedding-model", str(minilm_dir),
                         "--model", entry.name, "--no-think", "--temperature", "0", "--max-new-tokens", "96",
                         "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    s = result["summary"]
    assert result["rows_asked"] == 10 and s["answerable"] == 10 and s["unanswerable"] == 0
    assert s["hit_at_k"] >= 0.8                   # BM25 finds the constitution's articles
    assert s["correct"] >= 0.5, [(r["question"], r["answer"]) for r in result["rows"]]
    assert s["median_ttft_ms"] > 0 and s["median_tok_per_s"] > 0
