"""KnowledgeBaseService end to end: real chromadb on disk, tiny embedder, real PDF/DOCX files."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from kb.service import KnowledgeBaseService
from tests.conftest import ROOT
from tests.test_kb_loaders import make_docx, make_pdf


@pytest.fixture
def svc(settings):
    return KnowledgeBaseService(settings)


@pytest.fixture
def corpus(tmp_path) -> Path:
    d = tmp_path / "我的 文档"                                       # spaces + Chinese in the path
    d.mkdir()
    make_pdf(d / "宪法 摘要.pdf", toc=[[1, "第一章", 1], [1, "第二章", 2]])
    make_docx(d / "制度.docx")
    (d / "notes.txt").write_text("Retrieval augmented generation cites pages.\n\n知识库问答需要引用页码。", encoding="utf-8")
    return d


def stored_ids(svc, kb=None) -> list[str]:
    return svc.store.open(kb or svc.settings.default_kb).collection.get(include=[])["ids"]


def test_ingest_search_and_reingest(svc, corpus):
    seen = []
    results = svc.ingest([corpus], on_result=seen.append, on_progress=lambda d, t, m: None)
    assert [r.status for r in results] == ["added"] * 3 and seen == results
    docs = {d.name: d for d in svc.documents()}
    assert docs["宪法 摘要.pdf"].pages == 3 and docs["制度.docx"].chunks >= 1
    assert len(stored_ids(svc)) == sum(d.chunks for d in docs.values())

    hits = svc.search("根本制度是什么", k=3)
    assert hits and hits[0].source.endswith("宪法 摘要.pdf") and hits[0].page == 1
    assert hits[0].section == "第一章" and hits[0].similarity is not None
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert set(hits[0].to_json()) == {"rank", "score", "source", "page", "section", "chunk_id", "text"}

    again = svc.ingest([corpus])
    assert [r.status for r in again] == ["skipped"] * 3
    assert len(stored_ids(svc)) == sum(d.chunks for d in docs.values())


def test_changed_file_replaces_old_chunks(svc, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("苹果是一种水果。" * 5, encoding="utf-8")
    assert svc.ingest([f])[0].status == "added"
    f.write_text("香蕉是一种黄色的水果。" * 5, encoding="utf-8")
    r = svc.ingest([f])[0]
    assert r.status == "updated"
    texts = svc.store.open("default").collection.get(include=["documents"])["documents"]
    assert texts and all("香蕉" in t and "苹果" not in t for t in texts)
    assert svc.search("苹果", mode="bm25") == []
    assert svc.search("香蕉", mode="bm25")[0].source == str(f.resolve())


def test_bad_batch_goes_on(svc, tmp_path):
    good = make_pdf(tmp_path / "good.pdf")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "broken.pdf").write_bytes(good.read_bytes()[:200])
    (tmp_path / "gbk.txt").write_bytes("中文编码的文本。第二句。".encode("gb18030"))
    results = {Path(r.path).name: r for r in svc.ingest([tmp_path, tmp_path / "missing.pdf"])}
    assert results["good.pdf"].status == "added" and results["gbk.txt"].status == "added"
    for name in ("empty.txt", "old.doc", "broken.pdf", "missing.pdf"):
        assert results[name].status == "failed" and results[name].message and "\n" not in results[name].message
    assert {d.name for d in svc.documents()} == {"good.pdf", "gbk.txt"}


def test_kbs_with_chinese_names_persist_across_services(settings, corpus):
    a = KnowledgeBaseService(settings)
    info = a.create_kb("法律 文档")
    assert info.collection.isascii() and 3 <= len(info.collection) <= 512
    a.ingest([corpus / "notes.txt"], kb="法律 文档")
    with pytest.raises(ValueError):
        a.create_kb("法律 文档")
    b = KnowledgeBaseService(settings)                               # reopened store, new service
    assert {k.name: k.documents for k in b.list_kbs()} == {"法律 文档": 1}
    assert b.search("知识库 引用 页码", kb="法律 文档")[0].source.endswith("notes.txt")
    b.rename_kb("法律 文档", "Law")
    assert [k.name for k in b.list_kbs()] == ["Law"] and b.documents("Law")[0].name == "notes.txt"
    with pytest.raises(KeyError):
        b.search("x", kb="法律 文档")
    b.delete_kb("Law")
    assert b.list_kbs() == []


def test_remove_document(svc, corpus):
    svc.ingest([corpus])
    d = svc.remove("notes.txt")
    assert d.name == "notes.txt"
    assert "notes.txt" not in {x.name for x in svc.documents()}
    assert all(not h.source.endswith("notes.txt") for h in svc.search("Retrieval augmented generation", k=10))
    assert len(stored_ids(svc)) == sum(x.chunks for x in svc.documents())
    with pytest.raises(KeyError):
        svc.remove("notes.txt")


def test_cancel_keeps_store_consistent(svc, corpus, monkeypatch):
    import kb.service

    monkeypatch.setattr(kb.service, "EMBED_GROUP", 1)               # store file by file
    cancel = threading.Event()

    def progress(done, total, message):
        if done >= 1 and not message.startswith("embedding"):
            cancel.set()                                             # user cancels during file 2

    results = svc.ingest([corpus], on_progress=progress, cancel=cancel)
    assert [r.status for r in results] == ["added", "failed"] and "cancelled" in results[1].message
    assert [d.source for d in svc.documents()] == [results[0].path]
    assert len(stored_ids(svc)) == sum(d.chunks for d in svc.documents())


def test_relevance_floor(svc, corpus, settings):
    svc.ingest([corpus])
    hits = svc.search("根本制度")
    assert not svc.is_relevant([])
    settings.set("relevance_floor", -1.0, persist=False)
    assert svc.is_relevant(hits)
    settings.set("relevance_floor", 1.01, persist=False)
    assert not svc.is_relevant(hits)


def test_modes_and_model_mismatch(svc, corpus, settings, tmp_path):
    svc.ingest([corpus])
    for mode in ("bm25", "vector", "hybrid"):
        assert svc.search("社会主义制度", mode=mode)
    with pytest.raises(ValueError, match="unknown search mode"):
        svc.search("x", mode="magic")
    other = KnowledgeBaseService(settings, embedder=_Named(svc.embedder, "/elsewhere/other-model"))
    with pytest.raises(ValueError, match="was built with embedding model"):
        other.search("x")


class _Named:
    """The same embedder under another model name (to trigger the mismatch check)."""

    def __init__(self, inner, name):
        self.inner, self.model_name = inner, name

    def __getattr__(self, k):
        return getattr(self.inner, k)


CRASH_SCRIPT = textwrap.dedent("""
    import hashlib, os, re, signal, sys
    import numpy as np

    class HashEmbedder:
        \"\"\"Bag of hashed characters (no torch import: the subprocess starts fast).\"\"\"
        model_name = "hash-embedder"
        dimension = 64

        def encode_documents(self, texts):
            out = np.zeros((len(texts), 64), dtype=np.float32)
            for i, t in enumerate(texts):
                for ch in t:
                    out[i, int(hashlib.md5(ch.encode()).hexdigest(), 16) % 64] += 1
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

        def encode_query(self, q):
            return self.encode_documents([q])[0]

    if __name__ == "__main__":
        sys.path.insert(0, sys.argv[1])
        import settings as settings_mod
        from kb import store
        from kb.service import KnowledgeBaseService
        import kb.service
        kb.service.EMBED_GROUP = 1                     # one flush (and manifest flip) per file
        real_flip = store.KnowledgeBase._flip
        calls = {"n": 0}
        def flip(self, changes):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # doc 2's chunks written, manifest not flipped
            real_flip(self, changes)
        store.KnowledgeBase._flip = flip
        KnowledgeBaseService(settings_mod.load(), embedder=HashEmbedder()).ingest([sys.argv[2]])
""")


def _check_consistent(svc, folder: Path) -> None:
    docs = svc.documents()
    assert sorted(d.name for d in docs) == sorted(p.name for p in folder.iterdir())
    col = svc.store.open("default").collection.get(include=["metadatas"])
    assert len(col["ids"]) == len(set(col["ids"])) == sum(d.chunks for d in docs)
    per_doc: dict[str, set] = {}
    for m in col["metadatas"]:
        per_doc.setdefault(m["source"], set()).add(m["version"])
    assert all(len(v) == 1 for v in per_doc.values())              # never a mix of versions


def test_kill_9_mid_ingest_then_again(settings, corpus, tmp_path):
    import importlib.util

    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(ROOT), str(corpus)], timeout=300)
    assert proc.returncode == -signal.SIGKILL
    spec = importlib.util.spec_from_file_location("crash", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    again = KnowledgeBaseService(settings, embedder=mod.HashEmbedder())
    assert len(again.documents()) == 1                               # doc 2 never became visible
    results = again.ingest([corpus])
    assert [r.status for r in results].count("skipped") == 1 and all(r.ok for r in results)
    _check_consistent(again, corpus)


class _Crash(BaseException):
    pass


def test_crash_after_manifest_flip_keeps_new_version_only(svc, corpus, monkeypatch):
    from kb.store import KnowledgeBase

    svc.ingest([corpus])
    (corpus / "notes.txt").write_text("全新内容。New content only.", encoding="utf-8")
    real = KnowledgeBase._flip

    def crash(self, changes):      # die right after the manifest flip, before the old chunks go
        real(self, changes)
        raise _Crash()

    monkeypatch.setattr(KnowledgeBase, "_flip", crash)
    with pytest.raises(_Crash):
        svc.ingest([corpus / "notes.txt"])
    monkeypatch.setattr(KnowledgeBase, "_flip", real)
    again = KnowledgeBaseService(svc.settings)
    hits = again.search("Retrieval augmented generation New content", mode="bm25", k=10)
    assert any("New content" in h.text for h in hits) and not any("Retrieval augmented" in h.text for h in hits)
    assert [r.status for r in again.ingest([corpus])] == ["skipped"] * 3
    _check_consistent(again, corpus)
    texts = again.store.open("default").collection.get(include=["documents"])["documents"]
    assert sum("New content" in t for t in texts) == 1 and not any("Retrieval augmented" in t for t in texts)


def test_cli_handlers(settings, corpus, capsys):
    import main

    home = ["--home", str(settings.home)]
    assert main.main(home + ["ingest", str(corpus), str(corpus / "nope.doc")]) == 0
    out = capsys.readouterr().out
    assert "3 added" in out and "1 failed" in out
    assert main.main(home + ["search", "--json", "--k", "2", "根本制度"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and set(hits[0]) == {"rank", "score", "source", "page", "section", "chunk_id", "text"}
    assert main.main(home + ["kb", "list"]) == 0 and "3 documents" in capsys.readouterr().out
    assert main.main(home + ["kb", "docs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main.main(home + ["kb", "remove", "notes.txt"]) == 0
    assert main.main(home + ["kb", "remove", "notes.txt"]) == 2
    assert main.main(home + ["ingest", str(corpus / "nope.doc")]) == 1   # every file failed


@pytest.mark.real
def test_real_minilm_and_real_documents(home, minilm_dir, shared_data, monkeypatch):
    import settings as settings_mod

    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(minilm_dir))
    svc = KnowledgeBaseService(settings_mod.load())
    doc = shared_data / "documents" / "zh_prc_constitution_2018.pdf"
    if not doc.exists():
        pytest.skip(f"{doc} absent")
    svc.ingest([doc, shared_data / "documents" / "en_zylon_mission_values.docx"])
    hits = svc.search("中华人民共和国的根本制度是什么")
    assert any(h.source == str(doc) and h.page in (4, 5) for h in hits)
    assert svc.embedder.dimension == 384


def _parses(caplog) -> list[tuple[str, int]]:
    """(file name, pid) of each "parsed ... in process PID" debug line of kb.service."""
    return [(r.args[0], r.args[1]) for r in caplog.records
            if r.name == "kb.service" and r.msg.startswith("parsed %s in process")]


def _pdfs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for k in range(n):
        make_pdf(folder / f"doc{k}.pdf", [f"第{k}份文件。宪法是国家的根本法。Document {k} page {p}." for p in range(3)])
    return folder


def test_parsing_runs_in_one_worker_process(svc, settings, tmp_path, caplog):
    import os

    caplog.set_level("DEBUG", logger="kb.service")
    folder = _pdfs(tmp_path / "pdfs", 4)
    assert [r.status for r in svc.ingest([folder])] == ["added"] * 4
    pids = {pid for _, pid in _parses(caplog)}
    assert len(_parses(caplog)) == 4 and len(pids) == 1 and os.getpid() not in pids   # one worker per call

    caplog.clear()                                                   # unchanged files never reach the parser
    assert [r.status for r in svc.ingest([folder])] == ["skipped"] * 4 and _parses(caplog) == []

    settings.set("ingest_workers", 0, persist=False)                 # fallback: parse in this process
    (folder / "doc0.pdf").unlink()
    make_pdf(folder / "doc0.pdf", ["换了内容的第一份文件。New text."])
    assert [r.status for r in svc.ingest([folder])] == ["updated"] + ["skipped"] * 3
    assert _parses(caplog) == [("doc0.pdf", os.getpid())]
    assert len(stored_ids(svc)) == sum(d.chunks for d in svc.documents())


def test_killed_worker_is_replaced_and_the_batch_goes_on(svc, tmp_path, caplog):
    import multiprocessing
    import os

    caplog.set_level("DEBUG", logger="kb.service")
    folder = _pdfs(tmp_path / "pdfs", 5)
    killed = []

    def progress(done, total, message):
        if ": page " in message and not killed:                     # the worker is up: kill it
            for p in multiprocessing.active_children():
                if p.name.startswith("SpawnProcess"):
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)

    results = svc.ingest([folder], on_progress=progress)
    assert killed and [r.status for r in results] == ["added"] * 5
    pids = {pid for _, pid in _parses(caplog)}
    # a second worker took over (the killed one may or may not have finished a file first: that
    # depends on scheduling, so only "someone other than the killed worker parsed" is asserted)
    assert pids - set(killed) and len(pids) <= 2 and os.getpid() not in pids
    assert any("worker process died" in r.getMessage() for r in caplog.records)
    _check_consistent(svc, folder)


STDIN_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import settings as S
from kb.service import KnowledgeBaseService
results = KnowledgeBaseService(S.load()).ingest([{folder!r}])
print(json.dumps([r.status for r in results]))
"""


def test_worker_that_cannot_start_falls_back_to_this_process(settings, tmp_path):
    """A program read from stdin cannot be re-imported by a spawned worker, which then dies
    before it starts: the files must still go in (parsed in-process), not fail as damaged."""
    import os

    folder = _pdfs(tmp_path / "pdfs", 3)
    env = {**os.environ, "TQTS_HOME": str(settings.home), "TQTS_EMBEDDING_MODEL": settings.embedding_model}
    r = subprocess.run([sys.executable, "-"], input=STDIN_SCRIPT.format(root=str(ROOT), folder=str(folder)),
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["added"] * 3
    assert "parsing in this process" in r.stderr
    assert sum(d.chunks for d in KnowledgeBaseService(settings).documents()) > 0
