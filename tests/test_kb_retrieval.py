"""Tokenizer, RRF, persisted BM25 index and search modes."""
from __future__ import annotations

import json

import pytest

from kb import retrieval
from kb.evaluate import hit_at_k, load_squad
from kb.retrieval import BM25Index, rrf, tokenize
from kb.service import KnowledgeBaseService


def test_tokenize_chinese_and_english():
    toks = tokenize("社会主义制度是中华人民共和国的根本制度。The Quick-Brown fox, 2024!")
    assert "社会主义" in toks and "根本" in toks and "制度" in toks
    assert "的" not in toks and "是" not in toks and "the" not in toks
    assert "quick-brown" in toks and "fox" in toks and "2024" in toks


def test_rrf_formula_and_weights():
    fused = dict(rrf({"bm25": ["a", "b"], "vector": ["b", "c"]}, k=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["c"] == pytest.approx(1 / 62)
    weighted = rrf({"bm25": ["a"], "vector": ["c"]}, {"bm25": 1.0, "vector": 2.0})
    assert weighted[0][0] == "c"


@pytest.fixture
def filled(settings, tmp_path):
    svc = KnowledgeBaseService(settings)
    texts = {"apple.txt": "苹果是一种常见的水果，富含维生素。",
             "train.txt": "高速铁路列车的最高时速可达三百五十公里。",
             "tea.txt": "Green tea is brewed from unoxidized leaves."}
    for name, t in texts.items():
        (tmp_path / name).write_text(t, encoding="utf-8")
    svc.ingest([tmp_path])
    return svc


def test_bm25_index_is_persisted_and_rebuilt_when_stale(filled, tmp_path):
    kb = filled.store.open("default")
    gen = kb.manifest()["generation"]
    assert [p.name for p in (kb.dir / "bm25").iterdir()] == [f"g{gen}"]   # saved per generation, older pruned
    assert len(json.loads((kb.dir / "bm25" / f"g{gen}" / "ids.json").read_text())) == kb.chunk_count()
    BM25Index._cache.clear()                                         # a new process: loads from disk
    assert BM25Index(kb).search("高速铁路", 3)[0][0].split("-")[0] == kb.manifest()["docs"][str((tmp_path / "train.txt").resolve())]["version"]
    (tmp_path / "more.txt").write_text("铁路货运列车。", encoding="utf-8")
    filled.ingest([tmp_path / "more.txt"])
    ids = [cid for cid, _ in BM25Index(kb).search("列车", 5)]
    assert len(ids) == 2
    assert [p.name for p in (kb.dir / "bm25").iterdir()] == [f"g{kb.manifest()['generation']}"]


def test_modes(filled):
    assert filled.search("维生素 水果", k=1, mode="bm25")[0].source.endswith("apple.txt")
    assert filled.search("维生素 水果", k=1, mode="bm25")[0].similarity is None
    vec = filled.search("Green tea leaves", k=3, mode="vector")
    assert len(vec) == 3 and all(h.similarity is not None for h in vec)
    assert vec == sorted(vec, key=lambda h: -h.similarity)
    assert filled.search("zzzz qqqq", mode="bm25") == []


def test_hit_at_k_on_squad_shaped_data(filled, tmp_path):
    data = {"data": [{"paragraphs": [
        {"id": "P1", "context": "长江是中国最长的河流。", "qas": [{"question": "中国最长的河流是哪条？", "answers": []}]},
        {"id": "P2", "context": "熊猫主要吃竹子。", "qas": [{"question": "熊猫吃什么？", "answers": []}]}]}]}
    f = tmp_path / "squad.json"
    f.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    passages, questions = load_squad(f)
    assert passages[0] == ("P1", "长江是中国最长的河流。") and questions[1] == ("熊猫吃什么？", "P2")
    from kb.evaluate import ingest_passages

    ingest_passages(filled, passages, "eval", tmp_path / "passages")
    scores = hit_at_k(filled, questions, "eval", k=1, modes=("bm25", "hybrid"))
    assert scores["bm25"]["hit@k"] == 1.0 and scores["bm25"]["n"] == 2
    assert 0.0 <= scores["hybrid"]["mrr"] <= 1.0


def test_real_cmrc_sample_bm25(shared_data, settings):
    f = shared_data / "retrieval" / "cmrc2018_trial.json"
    if not f.exists():
        pytest.skip(f"{f} absent")
    from kb.evaluate import evaluate_file

    passages, _ = load_squad(f)
    assert len(passages) == 256
    scores = evaluate_file(settings, f, k=5, modes=("bm25",), limit=40)
    assert scores["bm25"]["hit@k"] > 0.6                             # jieba BM25 finds most gold passages


def test_weights_are_known_modes():
    assert set(retrieval.WEIGHTS) == {"bm25", "vector"} and retrieval.RRF_K == 60


def test_fusion_weights_for_english_only_embedders():
    assert retrieval.fusion_weights("/x/all-MiniLM-L6-v2", "根本制度是什么")["vector"] == retrieval.WEAK_VECTOR_WEIGHT
    assert retrieval.fusion_weights("/x/all-MiniLM-L6-v2", "what is the basic system")["vector"] == 1.0
    assert retrieval.fusion_weights("BAAI/bge-small-zh-v1.5", "根本制度是什么")["vector"] == 1.0
    assert retrieval.fusion_weights("paraphrase-multilingual-MiniLM-L12-v2", "根本制度")["vector"] == retrieval.MULTILINGUAL_VECTOR_WEIGHT
