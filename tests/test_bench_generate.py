"""Smoke test for bench/generate.py on the tiny Qwen (transformers backend, its own subprocess)."""
from __future__ import annotations

import json

from bench import generate


def test_generate_reports_speed_for_the_transformers_backend(tiny_qwen_dir, capsys):
    rc = generate.main(["--model", str(tiny_qwen_dir), "--backends", "transformers", "--prompt-tokens", "3000",
                        "--max-new-tokens", "4", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    run = r["runs"][0]
    assert run["backend"] == "transformers" and "error" not in run, run
    assert 1500 < r["prompt_tokens"] <= 3000  # at least one passage added
    assert run["tokens"] >= 1 and run["ttft_s"] > 0 and run["peak_rss_mb"] > 0
    assert r["machine"]["cores"] >= 1


def test_prompt_is_sized_with_the_given_tokenizer():
    count = len  # one "token" per character
    msgs = generate.build_messages(count, 600)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert 300 < len(msgs[0]["content"] + msgs[1]["content"]) <= 600
    assert "[1]" in msgs[1]["content"]
