"""App UI logic on fakes of the services (real Tk under Xvfb): drop, ingest results,
streaming with folded reasoning, citations, refusal, first run, history, close."""
from __future__ import annotations

import pytest

from tests.fakes import make_pdf

pytestmark = pytest.mark.gui


def test_drop_ingest_answer_cite(make_app, tmp_path):
    from tests.fakes import click_text_index, pump, simulate_drop

    pdf = make_pdf(tmp_path / "我的 文件.pdf", ["第一页 苹果", "第二页 宪法 国家"])
    bad = tmp_path / "broken file.pdf"
    bad.write_bytes(b"not a pdf")
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    assert simulate_drop(app.root, [str(pdf), str(bad)]) == "copy"
    tree = app.kb_panel.tree
    assert pump(app.root, lambda: tree.exists(str(pdf)) and tree.exists(str(bad)))
    assert tree.item(str(pdf))["values"][1] == 2
    assert "fail" in tree.item(str(bad))["tags"]
    results = app.kb_panel.results.get("1.0", "end")
    assert "我的 文件.pdf" in results and "broken file.pdf" in results

    t = app.chat.ask("宪法")
    tx = app.chat.transcript
    assert pump(app.root, lambda: not app.chat.busy)
    assert tx.answers[t].startswith("答案见第一条 [1]")
    assert tx.text.tag_cget(f"think_{t}", "elide") in (1, "1", True)
    assert tx.toggle_reasoning(t) is True
    cites = tx.text.tag_ranges("cite")
    assert len(cites) >= 4  # two [1] in the answer + one source line
    click_text_index(tx.text, str(cites[0]))  # the [1] inside the answer
    assert pump(app.root, lambda: app.viewer is not None and app.viewer.page == 2)
    assert app.viewer.source == str(pdf)
    assert app.chat.last_answer.startswith("答案见第一条")
    inferred_note = app.chat.tr("chat.cited_inferred")
    assert inferred_note not in tx.text.get("1.0", "end")

    app.services.answers.cited_inferred = True  # the service inferred the citation: say so
    app.chat.ask("宪法 国家")
    assert pump(app.root, lambda: not app.chat.busy)
    assert inferred_note in tx.text.get("1.0", "end")


def test_refusal_looks_different(make_app):
    from tests.fakes import pump

    app = make_app()
    t = app.chat.ask("没有的内容")
    assert pump(app.root, lambda: not app.chat.busy)
    tx = app.chat.transcript
    assert tx.text.tag_ranges("refusal") and not tx.text.tag_ranges("answer")
    assert tx.text.get(f"ans_{t}.first", f"ans_{t}.last").startswith("ⓘ")


def test_stop_cancels_generation(make_app, tmp_path):
    from tests.fakes import pump

    app = make_app(delay=0.05)
    app.services.kb.ingest([str(make_pdf(tmp_path / "a.pdf", ["宪法"]))])
    t = app.chat.ask("宪法")
    assert pump(app.root, lambda: len(app.chat.transcript.answers.get(t, "")) >= 2)
    app.chat.stop()
    assert pump(app.root, lambda: not app.chat.busy)
    assert len(app.chat.transcript.answers[t]) < len(app.services.answers.script)


def test_first_run_shows_passages(make_app, tmp_path):
    from tests.fakes import pump

    app = make_app(available=False)
    assert pump(app.root, lambda: app.first_run is not None)
    assert app.first_run.winfo_ismapped()
    app.services.kb.ingest([str(make_pdf(tmp_path / "b.pdf", ["苹果 香蕉"]))])
    t = app.chat.ask("苹果")
    assert pump(app.root, lambda: not app.chat.busy)
    assert "b.pdf" in app.chat.transcript.text.get("1.0", "end")
    assert app.chat.transcript.sources[t][1].page == 1
    app.first_run.import_path(str(tmp_path))
    assert pump(app.root, lambda: app.first_run is None and app.model_ok)


def test_history_survives_restart_and_exports(make_app, tmp_path):
    from app.main import App
    from tests.fakes import pump

    app = make_app()
    app.services.kb.ingest([str(make_pdf(tmp_path / "c.pdf", ["宪法"]))])
    app.chat.ask("宪法")
    assert pump(app.root, lambda: not app.chat.busy)
    services = app.services
    app.close()
    app2 = App(app.settings, services)
    try:
        assert pump(app2.root, lambda: "宪法" in app2.chat.transcript.text.get("1.0", "end"))
        out = tmp_path / "对话.md"
        app2.chat.export_to(str(out))
        assert pump(app2.root, lambda: str(out) in app2.chat.info.cget("text"))   # the export job finished
        assert "## 宪法" in out.read_text(encoding="utf-8")
    finally:
        app2.close()


def test_settings_parse_changes(settings):
    from app.settings_dialog import parse_changes

    changes, errors = parse_changes(settings, {"top_k": "8", "temperature": "abc", "ui_language": "en"})
    assert changes == {"top_k": 8, "ui_language": "en"}
    assert errors and errors[0].startswith("temperature")
    _, errors = parse_changes(settings, {"chunk_size": "100", "chunk_overlap": "200"})
    assert errors == ["chunk_overlap: must be smaller than chunk_size"]


def test_settings_dialog_saves_to_file(make_app):
    import yaml

    from tests.fakes import pump

    app = make_app()
    app.open_settings()
    assert pump(app.root, lambda: any(w.winfo_class() == "Toplevel" for w in app.root.winfo_children()))
    dialog = next(w for w in app.root.winfo_children() if w.winfo_class() == "Toplevel")
    assert "English" in dialog.widgets["ui_language"].cget("values")   # names, not codes
    dialog.vars["top_k"].set("9")
    dialog.vars["ui_language"].set("English")
    dialog.vars["temperature"].set("hot")
    assert dialog.save() is None and dialog.error.cget("text").startswith("温度：")   # in the UI language
    dialog.vars["temperature"].set("0.7")
    assert dialog.save() == {"top_k": 9, "ui_language": "en", "temperature": 0.7}
    saved = yaml.safe_load(app.settings.path.read_text(encoding="utf-8"))
    assert saved["top_k"] == 9 and saved["ui_language"] == "en" and saved["temperature"] == 0.7


def test_a_new_embedder_from_settings_applies_at_once_the_language_after_a_restart(make_app, tmp_path):
    """Saving another embedding_model reloads the embedder (as the first-run panel does) and asks
    for no restart; a new UI language still says it needs one."""
    from tests.fakes import pump

    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    checks = []
    app.check_model = lambda: checks.append(True)
    app._settings_saved({"embedding_model": str(tmp_path / "e5")})
    assert pump(app.root, lambda: getattr(app.services.kb, "reloads", 0) == 1 and checks)
    assert app.status_var.get() != app.tr("settings.restart_needed")
    app._settings_saved({"ui_language": "en"})
    assert app.status_var.get() == "界面语言的更改将在重启后生效"


def test_english_ui_and_retrain_fallback(make_app, settings, monkeypatch):
    import sys

    settings.set("ui_language", "en", persist=False)
    app = make_app()
    assert app.chat.ask_button.cget("text") == "Ask"
    monkeypatch.setitem(sys.modules, "app.retrain", None)  # import fails -> a status line, no crash
    app.open_retrain()
    assert "Retraining is unavailable" in app.status_var.get()


def test_broken_kb_is_checked_on_open_and_repaired_when_the_user_agrees(make_app, monkeypatch):
    from tkinter import messagebox

    from tests.fakes import pump

    asked = []
    monkeypatch.setattr(messagebox, "askyesno", lambda title, msg, **kw: asked.append(msg) or True)
    app = make_app(broken={"default"})
    assert pump(app.root, lambda: app.services.kb.repaired == ["default"], timeout=60)
    assert "broken.pdf" in asked[0] and "default" in asked[0]
    assert pump(app.root, lambda: not app.dispatcher.jobs, timeout=60)
    assert app.services.kb.check("default")[0].ok and len(asked) == 1   # checked once, not again
