"""Chroma server mode (kb/server_store.py) against a real ``chroma run`` started by the test.

Clients are real services in subprocesses with their own data dirs (tests/kb_procs.py, the hash
embedder), plus this process as a reader with a third data dir. Waits are on process exits,
file states and the server's heartbeat, with generous deadlines; nothing asserts on elapsed time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chroma_server import CHROMA, SKIP_REASON, ChromaServer, free_port
from tests.conftest import ROOT
from tests.kb_procs import HashEmbedder
from tests.test_kb_multiprocess import DEADLINE, _corpus, _finish

pytestmark = pytest.mark.skipif(CHROMA is None, reason=SKIP_REASON)
SCRIPT = Path(__file__).with_name("kb_procs.py")


@pytest.fixture
def server(tmp_path):
    s = ChromaServer(tmp_path / "chroma-server").start()
    yield s
    s.stop()


def _spawn(home: Path, url: str, mode: str, arg, out: Path, **env) -> subprocess.Popen:
    env = {**os.environ, "TQTS_HOME": str(home), "TQTS_CHROMA_URL": url, "KB_PROCS_PARENT": str(os.getpid()), **env}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(ROOT), mode, str(arg), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(home: Path, url: str, mode: str, arg, out: Path):
    _finish(_spawn(home, url, mode, arg, out))
    return json.loads(out.read_text(encoding="utf-8"))


def _service(home: Path, url: str):
    import settings as settings_mod
    from kb.service import KnowledgeBaseService

    s = settings_mod.load(home)
    s.set("chroma_url", url, persist=False)
    return KnowledgeBaseService(s, embedder=HashEmbedder())


def _rows_match_manifest(svc) -> int:
    """chromadb rows == manifest chunks, one version per document, nothing left pending -> chunks."""
    base = svc.store.open("default", recover=False)
    docs = base.manifest()["docs"]
    got = base.collection.get(include=["metadatas"])
    assert len(got["ids"]) == len(set(got["ids"])) == sum(d["chunks"] for d in docs.values())
    assert {m["version"] for m in got["metadatas"]} == {d["version"] for d in docs.values()}
    assert all(m.get("bm25") is not None for m in got["metadatas"])     # the BM25 tokens live in the rows
    assert base._markers() == []
    return len(got["ids"])


def test_two_data_dirs_share_one_server(tmp_path, server):
    folder = _corpus(tmp_path / "docs")
    reader = _service(tmp_path / "home-c", server.url)          # open before anything is ingested
    assert reader.search("token7word", mode="bm25") == []
    a = _spawn(tmp_path / "home-a", server.url, "ingest", folder, tmp_path / "a.json")
    b = _spawn(tmp_path / "home-b", server.url, "ingest", folder, tmp_path / "b.json")
    _finish(a), _finish(b)
    ra = {p: s for p, s, _ in json.loads((tmp_path / "a.json").read_text())}
    rb = {p: s for p, s, _ in json.loads((tmp_path / "b.json").read_text())}
    assert set(ra) == set(rb) and len(ra) == 18
    for path in ra:                            # each file stored by exactly one of the two clients
        assert sorted([ra[path], rb[path]]) == ["added", "skipped"], (path, ra[path], rb[path])

    # the reader sees both ingests without a restart: BM25 (rebuilt from the shared tokens) and vectors
    for k in (0, 7, 15):
        assert reader.search(f"token{k}word", mode="bm25")[0].source.endswith(f"note{k:02d}.txt")
    assert reader.search("pdftoken1x", mode="hybrid")[0].source.endswith("doc1.pdf")
    chunks = _rows_match_manifest(reader)
    (rep,) = reader.check()
    assert rep.ok and rep.documents == 18 and rep.chunks == chunks, rep.lines()

    # remove in B; A (another data dir, a new process) and the reader no longer find it
    assert _run(tmp_path / "home-b", server.url, "remove", "note07.txt", tmp_path / "rm.json").endswith("note07.txt")
    found = _run(tmp_path / "home-a", server.url, "find", "token7word", tmp_path / "f.json")
    assert len(found["docs"]) == 17 and "note07.txt" not in found["docs"]
    assert not any(s.endswith("note07.txt") for s in found["bm25"] + found["hybrid"])
    assert not any(h.source.endswith("note07.txt") for h in reader.search("token7word"))
    assert len(reader.documents()) == 17 and _rows_match_manifest(reader) < chunks
    for h in ("home-a", "home-b", "home-c"):   # no local chroma folder in any data dir
        assert not (tmp_path / h / "store" / "chroma").exists()


def test_server_restart_in_the_middle_of_an_ingest(tmp_path, server, monkeypatch):
    """The server is killed (SIGKILL) after an ingest wrote a document's chunks but before its
    manifest write; then restarted on the same folder. Readers see only whole documents, the
    next write clears the leftovers, and ingesting again completes the folder."""
    from kb import server_store

    folder = tmp_path / "docs"
    folder.mkdir()
    for k in range(5):
        (folder / f"part{k}.txt").write_text(f"第{k}部分。part{k}word 段落。" * (40 + 10 * k), encoding="utf-8")
    stall = tmp_path / "stall"
    stall.mkdir()
    p = _spawn(tmp_path / "home-a", server.url, "ingest", folder, tmp_path / "a.json", KB_PROCS_STALL=str(stall))
    end = time.monotonic() + DEADLINE
    while not (stall / "stalled").exists():    # the second document's chunks are in, its manifest is not
        assert p.poll() is None and time.monotonic() < end, p.stderr.read()[-3000:] if p.poll() is not None else ""
        time.sleep(0.05)
    server.kill()
    (stall / "go").touch()
    _finish(p)                                 # no traceback: every file after the crash fails with one line
    results = json.loads((tmp_path / "a.json").read_text())
    assert [r[1] for r in results] == ["added"] + ["failed"] * 4, results
    assert all("Chroma server" in r[2] and "did not answer" in r[2] for r in results[1:]), results

    server.start()                             # the same folder and port
    monkeypatch.setattr(server_store, "LEASE_TTL_S", 1.0)   # the dead client's lease lapses sooner
    svc = _service(tmp_path / "home-b", server.url)
    assert [d.name for d in svc.documents()] == ["part0.txt"]   # only the whole document is visible
    base = svc.store.open("default", recover=False)
    assert base._markers(), "the interrupted write left its pending marker"
    assert svc.search("part1word", mode="bm25") == []
    assert svc.check()[0].ok

    again = svc.ingest([folder])               # the next writer clears the leftovers first
    assert [r.status for r in again] == ["skipped"] + ["added"] * 4
    assert _rows_match_manifest(svc) == sum(r.chunks for r in again)
    assert svc.search("part1word", mode="bm25")[0].source.endswith("part1.txt")
    assert svc.check()[0].ok


def test_no_server_is_one_clear_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"    # nothing listens there
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--home", str(tmp_path / "h"), "kb", "list"],
                       env={**os.environ, "TQTS_CHROMA_URL": url}, capture_output=True, text=True, timeout=DEADLINE)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"the Chroma server at {url} did not answer" in r.stderr and "chroma run --path" in r.stderr
    assert not (tmp_path / "h" / "store" / "chroma").exists()
