"""Several processes on one knowledge base: real services in subprocesses, real chromadb on disk.

Waits are on process exits and files, with generous deadlines; nothing asserts on elapsed time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import ROOT
from tests.kb_procs import HashEmbedder
from tests.test_kb_loaders import make_pdf

SCRIPT = Path(__file__).with_name("kb_procs.py")
DEADLINE = 900      # seconds; only a hung process ever gets near it


def _corpus(folder: Path, n: int = 16) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        (folder / f"note{k:02d}.txt").write_text(
            f"第{k}份文件。宪法是国家的根本法。token{k}word appears only here.\n\n"
            + "".join(f"段{k}之{j}根本制度。" for j in range(20 + 30 * k)),   # no two chunks alike
            encoding="utf-8")
    for k in range(2):
        make_pdf(folder / f"doc{k}.pdf", [f"第{k}份PDF。Document {k} page {p}. pdftoken{k}x" for p in range(3)])
    return folder


def _spawn(home: Path, mode: str, arg: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "TQTS_HOME": str(home), "KB_PROCS_PARENT": str(os.getpid())}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(ROOT), mode, str(arg), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> str:
    _, err = p.communicate(timeout=DEADLINE)
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return err


def _service(home: Path):
    import settings as settings_mod
    from kb.service import KnowledgeBaseService

    return KnowledgeBaseService(settings_mod.load(home), embedder=HashEmbedder())


def _vector_reachable(home: Path) -> tuple[int, int]:
    """(manifest chunks, chunk ids a vector query returns) as a new process sees the store."""
    code = f"""
import sys, json, numpy as np; sys.path.insert(0, {str(ROOT)!r})
import settings as S
from kb.store import Store
base = Store(S.load({str(home)!r}).store_dir).open("default", recover=False)
total = base.chunk_count()
res = base.collection.query(query_embeddings=[np.ones(64, dtype=np.float32) / 8], n_results=total, include=[])
print(json.dumps([total, len(set(res["ids"][0]))]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE)
    assert r.returncode == 0, r.stderr[-2000:]
    total, reachable = json.loads(r.stdout.split("\n")[-2])
    return total, reachable


def _assert_stored_once(svc, folder: Path) -> int:
    """Every file of ``folder`` stored once, chromadb rows == manifest chunks, one version per
    document, the vector index finds every row, BM25 finds each file's own word. -> chunks."""
    docs = svc.documents()
    assert sorted(d.name for d in docs) == sorted(p.name for p in folder.iterdir())
    base = svc.store.open("default", recover=False)
    got = base.collection.get(include=["metadatas"])
    total = sum(d.chunks for d in docs)
    assert len(got["ids"]) == len(set(got["ids"])) == total
    versions: dict[str, set] = {}
    for m in got["metadatas"]:
        versions.setdefault(m["source"], set()).add(m["version"])
    assert all(len(v) == 1 for v in versions.values()) and len(versions) == len(docs)
    assert len(base.query(np.ones(64, dtype=np.float32) / 8, total)) == total
    for k in (0, 7, 15):
        assert svc.search(f"token{k}word", mode="bm25")[0].source.endswith(f"note{k:02d}.txt")
    return total


def test_two_ingests_and_a_search_loop_on_one_kb(tmp_path):
    folder = _corpus(tmp_path / "docs")
    home, stop = tmp_path / "home", tmp_path / "stop"
    searcher = _spawn(home, "search", stop, tmp_path / "s.json")
    a = _spawn(home, "ingest", folder, tmp_path / "a.json")
    b = _spawn(home, "ingest", folder, tmp_path / "b.json")
    err_a, err_b = _finish(a), _finish(b)
    stop.touch()
    _finish(searcher)

    ra = {p: s for p, s, _ in json.loads((tmp_path / "a.json").read_text())}
    rb = {p: s for p, s, _ in json.loads((tmp_path / "b.json").read_text())}
    assert set(ra) == set(rb) and len(ra) == 18
    for path in ra:                            # each file added by exactly one of the two
        assert sorted([ra[path], rb[path]]) == ["added", "skipped"], (path, ra[path], rb[path])
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["errors"] == [] and s["searches"] >= 3 and s["stopped"] == "stop file"
    assert s["reachable"] == s["chunks"]        # a reader opened before the writes sees all of them

    total, reachable = _vector_reachable(home)  # chromadb's vector index lost none of either writer's chunks
    assert reachable == total > 0, f"vector search reaches {reachable} of {total} chunks"
    chunks = _assert_stored_once(_service(home), folder)
    single = _service(tmp_path / "single")     # the same files ingested by one process
    assert all(r.status == "added" for r in single.ingest([folder]))
    assert chunks == _assert_stored_once(single, folder)
    print(f"concurrent ingest: {chunks} chunks; {s['searches']} searches, 0 errors; "
          f"waits: {err_a.count('waiting') + err_b.count('waiting')}")


def test_second_writer_waits_with_a_message(tmp_path):
    """While this process holds the write lock, another process's ingest says it is waiting,
    then finishes once the lock is released."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.txt").write_text("只有一个文件。One file only.", encoding="utf-8")
    home = tmp_path / "home"
    base = _service(home).store.open("default")
    with base.writing():
        p = _spawn(home, "ingest", folder, tmp_path / "r.json")
        line = p.stderr.readline()             # blocks until the child says something
        assert "another TQT-s process is writing to «default»; waiting…" in line
        assert not (tmp_path / "r.json").exists()
    _finish(p)
    assert [r[1] for r in json.loads((tmp_path / "r.json").read_text())] == ["added"]


def test_open_by_a_reader_never_deletes_a_live_writers_versions(tmp_path):
    """The old failure: a second process opening the KB deleted the versions a live writer had
    written but not yet made current. Now a marker is only resolved by whoever holds the lock."""
    from kb.store import write_json_atomic

    svc = _service(tmp_path / "home")
    base = svc.store.open("default")
    emb = HashEmbedder()
    with base.writing():                       # a live writer, mid-way: chunks in, manifest not flipped
        write_json_atomic(base.dir / "pending" / "v1.json", {"new": ["v1"], "old": [], "pid": os.getpid()})
        base.collection.add(ids=["v1-00000"], embeddings=emb.encode_documents(["x"]), documents=["x"],
                            metadatas=[{"source": "/x", "version": "v1", "sha256": "0", "chunk_index": 0}])
        r = subprocess.run([sys.executable, "-c", f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from tests.kb_procs import HashEmbedder
import settings as S
from kb.service import KnowledgeBaseService
svc = KnowledgeBaseService(S.load({str(tmp_path / 'home')!r}), embedder=HashEmbedder())
print(svc.search('x'), svc.store.open('default').recover())
"""], capture_output=True, text=True, timeout=DEADLINE)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split()[-1] == "0"     # recover() found a live writer: did nothing
        assert base.collection.get(ids=["v1-00000"])["ids"] == ["v1-00000"]
    assert base.recover() == 1 and base.collection.get(ids=["v1-00000"])["ids"] == []   # writer gone


def test_search_loop_stops_when_its_parent_dies(tmp_path):
    """A search process whose parent is gone (a crashed test) writes its summary and exits
    instead of searching on as an orphan; the stop file never appears."""
    out, stop = tmp_path / "s.json", tmp_path / "never"
    env = {**os.environ, "TQTS_HOME": str(tmp_path / "home")}
    code = (f"import os, subprocess, sys; subprocess.Popen([sys.executable, {str(SCRIPT)!r}, {str(ROOT)!r}, "
            f"'search', {str(stop)!r}, {str(out)!r}], env={{**os.environ, 'KB_PROCS_PARENT': str(os.getpid())}})")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=DEADLINE)   # the parent exits at once
    import time

    end = time.monotonic() + DEADLINE
    while not out.exists() and time.monotonic() < end:    # a file state with a generous deadline
        time.sleep(0.2)
    from tests.kb_procs import MAX_SEARCHES

    s = json.loads(out.read_text())
    assert not stop.exists() and s["errors"] == [] and s["stopped"] == "parent died"
    assert s["searches"] < MAX_SEARCHES
