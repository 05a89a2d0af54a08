"""Smoke tests for bench/ingest.py, bench/search.py and bench/retrieval.py on tiny inputs
(tiny random embedder, a two-page PDF, a few hundred chunks, a 3-passage SQuAD file)."""
from __future__ import annotations

import json

import pytest

from bench import ingest, retrieval, search
from bench.common import HashEmbedder, percentile


@pytest.fixture
def tiny_env(home, tiny_embedder_dir, monkeypatch):
    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(tiny_embedder_dir))
    return home


def test_ingest_compares_three_pipelines(tiny_env, tmp_path, capsys):
    import pymupdf

    pdf = tmp_path / "docs" / "two.pdf"
    pdf.parent.mkdir()
    doc = pymupdf.open()
    for i in range(2):
        doc.new_page().insert_text((72, 72), f"Page {i + 1}. " + "Retrieval cites pages. " * 30)
    doc.save(pdf)
    assert ingest.main([str(pdf.parent), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["tqts"]["pages"] == 2 == r["langchain_style"]["pages"]
    assert r["tqts"]["chunks"] == r["embedder_only"]["chunks"] > 0
    assert r["ratio_vs_bound"] > 0 and r["ratio_vs_baseline"] > 0


def test_search_latency_grows_a_kb(tiny_env, capsys):
    assert search.main(["--sizes", "60,150", "--queries", "5", "--query-model", "", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [s["target_chunks"] for s in r["sizes"]] == [60, 150]
    assert r["sizes"][1]["chunks"] > r["sizes"][0]["chunks"] >= 30
    for mode in ("hybrid", "bm25", "vector"):
        assert 0 < r["sizes"][1][mode]["p50_ms"] <= r["sizes"][1][mode]["p95_ms"]


def test_retrieval_scores_each_mode(tiny_env, tmp_path, capsys):
    ctx = ["The capital of Freedonia is Glorptown, founded in 1802.",
           "Zorblax engines burn liquid quartz at 900 degrees.",
           "Mellowfruit trees grow only on the island of Pim."]
    qs = ["What is the capital of Freedonia?", "What do Zorblax engines burn?", "Where do Mellowfruit trees grow?"]
    squad = {"data": [{"paragraphs": [{"context": c, "qas": [{"id": str(i), "question": q, "answers": []}]}]}
                      for i, (c, q) in enumerate(zip(ctx, qs, strict=True))]}
    f = tmp_path / "tiny.json"
    f.write_text(json.dumps(squad), encoding="utf-8")
    assert retrieval.main([str(f), "--kb-dir", str(tmp_path / "kbhome"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_questions"] == 3 and set(r["modes"]) == {"bm25", "vector", "hybrid"}
    assert r["modes"]["bm25"]["hit@1"] == 1.0  # each question shares rare words only with its passage
    for m in r["modes"].values():
        assert 0 <= m["hit@1"] <= m["hit@5"] <= 1 and 0 <= m["mrr@10"] <= 1
    same = r["fusion_sweep"]["hybrid (vector weight 1)"]  # offline re-fusion reproduces the service
    assert same == {k: v for k, v in r["modes"]["hybrid"].items() if k != "ms_per_query"}
    assert r["fusion_sweep"]["hybrid (vector weight 0)"] == \
        {k: v for k, v in r["modes"]["bm25"].items() if k != "ms_per_query"}


def test_score_and_percentile_conventions():
    s = retrieval.score([["a", "b"], ["b", "b", "a"], ["c"]], ["a", "a", "a"])
    assert s == {"hit@1": 1 / 3, "hit@5": 2 / 3, "mrr@10": (1 + 1 / 2) / 3}  # chunks of one doc count once
    assert percentile([4, 1, 3, 2], 50) == 2.5 and percentile([5], 95) == 5


def test_hash_embedder_is_stable_and_normalised():
    import numpy as np

    e = HashEmbedder(64)
    v = e.encode_documents(["知识库检索", "knowledge base", "知识库检索"])
    assert v.shape == (3, 64) and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.array_equal(v[0], v[2]) and float(v[0] @ v[1]) < 0.5
    assert np.array_equal(e.encode_query("知识库检索"), v[0])
