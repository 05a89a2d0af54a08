"""Smoke test for bench/ttft.py on a tiny random GGUF (llama.cpp in its own subprocess): every
mode reports llama.cpp's own counts, and they show the warm at work (cold evaluates the whole
prompt; warm only the question's tail; other sources reuse only the system prompt)."""
from __future__ import annotations

import json

import pytest

from bench import ttft

pytest.importorskip("xllamacpp", reason="xllamacpp is in requirements.txt")


def test_ttft_reports_cold_and_warm_side_by_side(tmp_path, capsys):
    from tests.tiny_gguf import build_tiny_qwen_gguf

    gguf = build_tiny_qwen_gguf(tmp_path / "model.gguf")
    rc = ttft.main(["--model", str(gguf), "--prompt-tokens", "700", "--threads", "1", "--repeat", "1",
                    "--typing-s", "0", "--max-new-tokens", "4", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    w = r["workers"][0]
    assert "error" not in w, w
    s, (size,) = w["summary"], r["prompt_tokens"]
    assert s["cold"]["reused"] == 0 and s["cold"]["evaluated"] == size > 1000
    assert s["warm"]["reused"] > 0.9 * size and s["warm"]["evaluated"] < 0.1 * size
    assert s["other"]["evaluated"] > 0.5 * size      # other sources: the warm did not help
    assert all(s[m]["ttft_s"] > 0 for m in ttft.MODES) and r["machine"]["cores"] >= 1


def test_the_draft_is_the_final_prompt_with_half_the_question():
    p = ttft.prompts_for(len, 900, 0, "warm")
    final, draft = p["final"][1]["content"], p["draft"][1]["content"]
    assert p["draft"][0] == p["final"][0] and "[1]" in final
    assert final.startswith(draft) and final[len(draft):] == ttft.QUESTION[len(ttft.draft_of(ttft.QUESTION)):]
    assert p["other"][1]["content"].split("\n")[2] != final.split("\n")[2]   # other passages
