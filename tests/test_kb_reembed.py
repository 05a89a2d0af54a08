"""kb reembed: a KB built with one embedder moves to another (other dimension); the old
vectors stay the KB until the new ones are stored; a cancelled run changes nothing."""
from __future__ import annotations

import threading

import pytest

from kb.service import KnowledgeBaseService

DOC = "en_zylon_mission_values.docx"


@pytest.fixture(scope="module")
def wide_embedder_dir(tmp_path_factory):
    from tests.tiny import build_tiny_embedder

    return build_tiny_embedder(tmp_path_factory.mktemp("tiny-embedder-48") / "tiny-wide-embedder", hidden=48, seed=1)


@pytest.fixture
def built(settings, shared_data):
    svc = KnowledgeBaseService(settings)
    [r] = svc.ingest([shared_data / "documents" / DOC], kb="values")
    assert r.status == "added", r.message
    return svc, r.chunks


def test_reembed_switches_model_and_keeps_every_chunk(settings, built, wide_embedder_dir, capsys, monkeypatch):
    import main

    svc, chunks = built
    before = svc.search("customer at core", kb="values", k=3, mode="bm25")
    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(wide_embedder_dir))
    settings.set("embedding_model", str(wide_embedder_dir), persist=False)
    other = KnowledgeBaseService(settings)
    with pytest.raises(ValueError, match="kb reembed --kb values"):
        other.search("customer", kb="values")

    assert main.main(["kb", "reembed", "--kb", "values"]) == 0
    assert f"re-embedded {chunks} chunks" in capsys.readouterr().out

    fresh = KnowledgeBaseService(settings)
    [info] = fresh.list_kbs()
    assert (info.name, info.chunks, info.extra["embedding_model"]) == ("values", chunks, str(wide_embedder_dir))
    hits = fresh.search("customer at core", kb="values", k=3)
    assert hits and all(h.similarity is not None for h in hits)
    assert fresh.embedder.encode_query("x").shape == (48,)
    after = fresh.search("customer at core", kb="values", k=3, mode="bm25")
    assert [h.text for h in after] == [h.text for h in before]
    names = [c.name for c in fresh.store.client.list_collections()]
    assert len(names) == 1, names  # the old collection was deleted after the switch


def test_cancelled_reembed_leaves_the_old_vectors(settings, built, wide_embedder_dir):
    svc, chunks = built
    col_before = svc.store.find("values").collection.name
    settings.set("embedding_model", str(wide_embedder_dir), persist=False)
    other = KnowledgeBaseService(settings)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError, match="keeps its old vectors"):
        other.reembed("values", cancel=cancel)
    cols = other.store.client.list_collections()
    assert [c.name for c in cols] == [col_before]    # the hidden copy is gone too
    assert other.store.find("values").chunk_count() == chunks


def test_interrupted_switch_is_finished_on_next_open(settings, built, wide_embedder_dir):
    """A crash between the switch and the delete: the replaced collection is hidden at once
    and deleted by kb.reembed.finish."""
    from kb import reembed

    svc, chunks = built
    settings.set("embedding_model", str(wide_embedder_dir), persist=False)
    other = KnowledgeBaseService(settings)
    real_finish = reembed.finish
    reembed.finish = lambda store: 0          # "crash" right after the switch
    try:
        other.reembed("values")
    finally:
        reembed.finish = real_finish
    assert len(other.store.client.list_collections()) == 2
    assert list(other.store.collections()) == ["values"]
    assert other.store.find("values").collection.metadata["embedding_model"] == str(wide_embedder_dir)
    assert reembed.finish(other.store) == 1
    assert len(other.store.client.list_collections()) == 1
