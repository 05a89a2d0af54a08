"""The KB panel's "keep a folder in sync" switch (app/folder_sync.py) on a real knowledge base
service (hash embedder, embedded store), real watchdog events and real Tk under Xvfb.

Waits pump the Tk loop until the window shows the expected state (generous deadlines)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def open_app(display, home):
    """``open_app()``: the main window on a real KnowledgeBaseService in ``home`` (settings
    reloaded from disk each time, as a restart would); every window is closed at the end."""
    import settings as settings_mod
    from app.main import App
    from app.services import Services
    from kb.service import KnowledgeBaseService
    from tests.fakes import FakeAnswers, FakeRegistry
    from tests.kb_procs import HashEmbedder

    apps = []

    def make():
        s = settings_mod.load(home)
        s.set("ingest_workers", 0, persist=False)
        s.set("watch_quiet_s", 0.5, persist=False)
        kb = KnowledgeBaseService(s, embedder=HashEmbedder())
        app = App(s, Services(s, kb, FakeAnswers(kb), FakeRegistry(True)))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close(timeout=60)
    import gc

    gc.collect()


def _results(app) -> str:
    return app.kb_panel.results.get("1.0", "end")


def test_switch_syncs_a_folder_and_resumes_after_a_restart(open_app, home, tmp_path):
    import settings as settings_mod
    from tests.fakes import pump

    folder = tmp_path / "同步 folder"
    folder.mkdir()
    (folder / "a.txt").write_text("第一份。alphaword.", encoding="utf-8")
    app = open_app()
    assert pump(app.root, lambda: not app.dispatcher.jobs)
    row, tree = app.kb_panel.sync_row, app.kb_panel.tree
    row.on.set(True)
    row.start(str(folder))                      # what the switch does once the folder is chosen
    assert settings_mod.load(home).watched_folders == {"default": [str(folder.resolve())]}   # remembered
    a = str((folder / "a.txt").resolve())
    assert pump(app.root, lambda: tree.exists(a))                 # ingested by the first reconcile

    (folder / "b.txt").write_text("第二份。betaword.", encoding="utf-8")
    b = str((folder / "b.txt").resolve())
    assert pump(app.root, lambda: tree.exists(b) and "b.txt" in _results(app))
    (folder / "a.txt").unlink()
    assert pump(app.root, lambda: not tree.exists(a) and "a.txt" in _results(app).split("b.txt")[-1])
    assert pump(app.root, lambda: "1" in row.status.cget("text"))   # "In sync: 1 added, 0 updated, 1 removed"
    app.close(timeout=60)

    app = open_app()                            # a restart: the sync resumes from settings
    row, tree = app.kb_panel.sync_row, app.kb_panel.tree
    assert pump(app.root, lambda: bool(app.folder_sync.syncs) and row.on.get())
    (folder / "c.txt").write_text("第三份。gammaword.", encoding="utf-8")
    c = str((folder / "c.txt").resolve())
    assert pump(app.root, lambda: tree.exists(c))
    assert sorted(Path(d.source).name for d in app.services.kb.documents()) == ["b.txt", "c.txt"]

    row.on.set(False)
    row.toggle()                                # switched off: forgotten, documents stay
    assert settings_mod.load(home).watched_folders == {} and not app.folder_sync.syncs
    assert tree.exists(b) and tree.exists(c)
