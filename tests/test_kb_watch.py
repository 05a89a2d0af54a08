"""Folder sync (kb/folder_sync.py, ``python main.py watch``) with real watchdog events on a real
folder, an embedded store and a real ``chroma run`` server.

Every wait is on a sync event (the worker's ``on_event`` -> a condition) or a line the CLI
prints, with a generous deadline; nothing asserts after a fixed sleep.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.chroma_server import CHROMA, SKIP_REASON, ChromaServer
from tests.conftest import ROOT
from tests.kb_procs import HashEmbedder

DEADLINE = 300.0


class Events:
    """Collects :class:`kb.folder_sync.SyncEvent` from the worker thread; :meth:`wait` blocks
    until a predicate over them holds."""

    def __init__(self):
        self.items: list = []
        self.cond = threading.Condition()

    def __call__(self, ev) -> None:
        with self.cond:
            self.items.append(ev)
            self.cond.notify_all()

    def wait(self, pred, what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.items), timeout=DEADLINE), \
                f"no {what} within {DEADLINE:.0f} s; events: {[(e.kind, Path(e.path).name) for e in self.items]}"

    def result(self, name: str, status: str):
        return lambda items: any(e.kind == "result" and Path(e.path).name == name and e.result.status == status
                                 for e in items)

    def removed(self, name: str):
        return lambda items: any(e.kind == "removed" and Path(e.path).name == name for e in items)


def _service(home: Path, url: str = ""):
    import settings as settings_mod
    from kb.service import KnowledgeBaseService

    s = settings_mod.load(home)
    s.set("ingest_workers", 0, persist=False)        # many small ingests: no worker process each time
    s.set("chroma_url", url, persist=False)
    return KnowledgeBaseService(s, embedder=HashEmbedder())


def _sources(svc, word: str) -> list[str]:
    return [Path(h.source).name for h in svc.search(word, mode="bm25")]


@pytest.fixture(params=["embedded", "server"])
def svc(request, tmp_path):
    if request.param == "embedded":
        yield _service(tmp_path / "home")
        return
    if CHROMA is None:
        pytest.skip(SKIP_REASON)
    server = ChromaServer(tmp_path / "chroma-server").start()
    try:
        yield _service(tmp_path / "home", server.url)
    finally:
        server.stop()


def test_watch_created_modified_renamed_deleted_and_partial(tmp_path, svc):
    from kb.folder_sync import FolderSync

    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "old.txt").write_text("旧文件。oldword here.", encoding="utf-8")    # there before the watch
    (folder / ".hidden.txt").write_text("hiddenword", encoding="utf-8")
    ev = Events()
    sync = FolderSync(svc, folder, on_event=ev, quiet_s=0.5).start()
    try:
        ev.wait(lambda items: any(e.kind == "started" for e in items), "start")
        assert _sources(svc, "oldword") == ["old.txt"] and _sources(svc, "hiddenword") == []

        (folder / "new.txt").write_text("新文件。newword first.", encoding="utf-8")
        ev.wait(ev.result("new.txt", "added"), "ingest of a created file")
        assert _sources(svc, "newword") == ["new.txt"]

        (folder / "new.txt").write_text("改过的。changedword now.", encoding="utf-8")
        ev.wait(ev.result("new.txt", "updated"), "update of a modified file")
        assert _sources(svc, "newword") == [] and _sources(svc, "changedword") == ["new.txt"]

        (folder / "new.txt").rename(folder / "renamed.txt")
        ev.wait(lambda items: ev.removed("new.txt")(items) and ev.result("renamed.txt", "added")(items), "rename")
        assert _sources(svc, "changedword") == ["renamed.txt"]

        sub = folder / "sub"
        sub.mkdir()
        (sub / "deep.txt").write_text("深处。deepword.", encoding="utf-8")
        ev.wait(ev.result("deep.txt", "added"), "ingest in a new subfolder")
        (folder / "old.txt").unlink()
        ev.wait(ev.removed("old.txt"), "removal of a deleted file")
        assert _sources(svc, "oldword") == []
        assert sorted(d.name for d in svc.documents()) == ["deep.txt", "renamed.txt"]

        if sys.platform.startswith("linux"):   # inotify reports opens and closes: a writer's open file waits
            with open(folder / "big.txt", "w", encoding="utf-8") as f:
                f.write("写了一半。partword first half. ")
                f.flush()
                (folder / "marker.txt").write_text("markerword", encoding="utf-8")   # written after big.txt's last write
                ev.wait(ev.result("marker.txt", "added"), "ingest of a file written after the partial one")
                assert not any(Path(e.path).name == "big.txt" for e in ev.items if e.kind == "result")
                f.write("写完了。endword second half.")
            ev.wait(ev.result("big.txt", "added"), "ingest of the finished file")
            assert _sources(svc, "endword") == ["big.txt"] and _sources(svc, "partword") == ["big.txt"]
            assert sum(d.name == "big.txt" for d in svc.documents()) == 1
    finally:
        sync.stop(timeout=60)
    assert not sync.running and ev.items[-1].kind == "stopped"
    assert not [e for e in ev.items if e.kind == "error"]


def test_watch_reconciles_files_deleted_while_not_watching(tmp_path):
    from kb.folder_sync import FolderSync

    svc = _service(tmp_path / "home")
    folder = tmp_path / "watched"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(f"{name} alphaword", encoding="utf-8")
    svc.ingest([folder])
    (folder / "a.txt").unlink()
    (folder / "c.txt").write_text("c.txt gammaword", encoding="utf-8")
    ev = Events()
    sync = FolderSync(svc, folder, on_event=ev, quiet_s=0.5).start()
    try:
        ev.wait(lambda items: any(e.kind == "started" for e in items), "start")
    finally:
        sync.stop(timeout=60)
    assert ev.removed("a.txt")(ev.items) and ev.result("c.txt", "added")(ev.items)
    assert sorted(d.name for d in svc.documents()) == ["b.txt", "c.txt"]


def test_watch_cli_picks_up_a_new_file_and_a_deletion(tmp_path, tiny_embedder_dir):
    """``python main.py watch FOLDER``: a new file is announced added, a deleted one removed
    (and gone from search); SIGINT stops it cleanly."""
    folder = tmp_path / "watched"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQTS_")}
    env.update(TQTS_EMBEDDING_MODEL=str(tiny_embedder_dir), TQTS_INGEST_WORKERS="0")
    home = tmp_path / "home"
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--home", str(home), "watch", "--quiet-s", "0.5",
                          str(folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()

    def expect(text: str) -> str:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                assert p.poll() is None, p.stderr.read()[-3000:]
                continue
            if text in line:
                return line
        raise AssertionError(f"`watch` never printed {text!r}")

    try:
        expect("watching ")
        (folder / "fresh.txt").write_text("新来的。freshword.", encoding="utf-8")
        assert "fresh.txt" in expect("added")
        (folder / "fresh.txt").unlink()
        assert "fresh.txt" in expect("removed")
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=DEADLINE)
    assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--home", str(home), "search", "--json", "freshword"],
                       env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert r.returncode == 0 and "fresh.txt" not in r.stdout, r.stderr[-2000:]
