"""The main window as a daily tool (real Tk under Xvfb, fakes of the services): answer stages in
order, several chats per knowledge base, regenerate / copy any answer, scores, shortcuts,
welcome questions, About, theme switch, drop highlight and empty drop, knowledge-base switch."""
from __future__ import annotations

import pytest

from tests.fakes import make_pdf

pytestmark = pytest.mark.gui


@pytest.fixture
def app(make_app, tmp_path):
    from tests.fakes import pump

    a = make_app()
    a.services.kb.ingest([str(make_pdf(tmp_path / "宪法.pdf", ["第一章 总纲\n宪法 国家", "第二章 公民\n宪法 权利"]))])
    assert pump(a.root, lambda: a.model_ok is not None and not a.dispatcher.jobs)
    return a


def test_stages_in_order_and_sources_before_the_answer(app):
    from tests.fakes import pump

    seen = []
    tx = app.chat.transcript
    show, add = tx.show_retrieved, tx.add_answer
    tx.show_retrieved = lambda *a, **k: (seen.append("sources"), show(*a, **k))[1]
    tx.add_answer = lambda *a, **k: (seen.append("answer"), add(*a, **k))[1]
    label, shown = app.chat.stage_label, []
    set_stage = app.chat.set_stage
    app.chat.set_stage = lambda key, **kw: (set_stage(key, **kw), shown.append(
        (label.cget("text"), app.chat.busy_bar.winfo_manager())))[0]
    t = app.chat.ask("宪法")
    assert pump(app.root, lambda: not app.chat.busy)
    assert app.chat.stages == ["searching", "retrieved", "loading", "reading", "generating"]
    assert seen.index("sources") < seen.index("answer")
    texts = list(dict.fromkeys(text for text, _ in shown))
    assert texts[:5] == ["正在检索资料…", "找到 2 段资料", "加载模型…", "阅读 2 段资料…", "生成中 0 词元/秒"]
    assert all(bar == "pack" for text, bar in shown if text)             # the busy bar runs meanwhile
    assert texts[-1] == "" and label.cget("text") == "" and not app.chat.busy_bar.winfo_manager()
    assert not tx.text.tag_ranges(f"pre_{t}") and tx.sources[t]        # replaced by the final list
    assert "匹配度 100%" in tx.text.get("1.0", "end")                    # a score per source
    app.chat.ask("宪法 国家")
    assert pump(app.root, lambda: not app.chat.busy)
    assert "loading" not in app.chat.stages                             # loaded once


def test_several_chats_per_knowledge_base(app):
    from tests.fakes import pump

    chat, pane = app.chat, app.chats_pane
    chat.ask("宪法")
    assert pump(app.root, lambda: not chat.busy)
    first = chat.conversation
    second = pane.new()
    assert chat.conversation == second and chat.transcript.turn_count() == 0
    assert pump(app.root, lambda: len(chat.welcome.buttons) == 3)         # examples from the section titles
    assert chat.welcome.questions[0] == "「第一章 总纲」讲了什么？"
    chat.welcome.buttons[1].invoke()
    assert pump(app.root, lambda: not chat.busy and chat.transcript.turn_count() == 1)
    assert app.services.answers.history(app.kb_name, chat_id=second)[0]["question"] == "「第二章 公民」讲了什么？"
    assert pane.listbox.get(0, "end") == ("宪法", "「第二章 公民」讲了什么？")   # titled by their first question
    pane.rename("公民权利")
    assert pane.listbox.get(1) == "公民权利"
    app.select_chat(first)
    assert pump(app.root, lambda: chat.transcript.turn_count() == 1 and not app.dispatcher.jobs)
    assert "宪法" in chat.transcript.text.get("1.0", "end") and "第二章" not in chat.transcript.text.get("1.0", "end")
    app.select_chat(second)
    assert pump(app.root, lambda: chat.conversation == second and not app.dispatcher.jobs)
    pane.delete(confirm=False)
    assert pump(app.root, lambda: chat.conversation == first and not app.dispatcher.jobs)
    assert pane.listbox.get(0, "end") == ("宪法",)
    assert app.services.answers.history(app.kb_name, chat_id=second) == []


def test_regenerate_and_copy_any_answer(app):
    from tests.fakes import pump

    chat = app.chat
    t1 = chat.ask("宪法")
    assert pump(app.root, lambda: not chat.busy)
    app.services.answers.script = "第二个回答 [1]"
    t2 = chat.ask("宪法 国家")
    assert pump(app.root, lambda: not chat.busy)
    assert chat.copy_answer(t1).startswith("答案见第一条") and app.root.clipboard_get().startswith("答案见第一条")
    assert chat.copy_answer() == "第二个回答 [1]"
    labels = [label for label, _ in chat._turn_menu_items(t1)]
    assert labels == ["复制这条回答", "重新生成"]
    assert chat.transcript.turn_at(f"ans_{t1}.first") == t1 and chat.transcript.turn_at(f"ans_{t2}.first") == t2
    t3 = chat.regenerate(t1)
    assert pump(app.root, lambda: not chat.busy)
    assert chat.questions[t3] == "宪法" and chat.transcript.answers[t3] == "第二个回答 [1]"


def test_keyboard_shortcuts(app, monkeypatch):
    from tests.fakes import pump

    opened = []
    monkeypatch.setattr(app.kb_panel, "add_files", lambda: opened.append(True))
    app.root.focus_force()
    app.chat.input.focus_set()
    app.root.update()
    app.chat.input.event_generate("<Control-o>")
    assert opened == [True] and app.chat.input.get("1.0", "end").strip() == ""   # no "open line" newline
    before = app.chat.conversation
    app.chat.input.event_generate("<Control-n>")
    assert pump(app.root, lambda: app.chat.conversation != before)
    app.services.answers.delay = 0.05
    app.chat.set_question("宪法")
    app.chat.input.event_generate("<Control-Return>")
    assert app.chat.busy
    assert pump(app.root, lambda: len(app.chat.transcript.answers.get(app.chat.turn, "")) >= 2)
    app.chat.input.event_generate("<Escape>")
    assert pump(app.root, lambda: not app.chat.busy)
    assert "已停止" in app.chat.transcript.text.get("1.0", "end")
    app.root.event_generate("<F1>")
    assert pump(app.root, lambda: getattr(app, "about", None) is not None and app.about.winfo_ismapped())
    about = app.about.licences.get("1.0", "end")
    assert "tkinterdnd2 — MIT" in about and str(app.settings.home) in str(
        [w.cget("text") for w in app.about.winfo_children()[0].winfo_children()[2].winfo_children()])


def test_theme_switch_light_dark(app):
    assert app.palette["theme"] in ("sun-valley-light", "sun-valley-dark")
    app.set_theme("dark")
    assert app.palette["name"] == "dark" and app.palette["theme"] == "sun-valley-dark"
    assert app.chat.transcript.text.cget("background") == app.palette["text_bg"]
    assert app.settings.theme == "dark"
    app.set_theme("light")
    assert app.chat.transcript.text.cget("background") == "#ffffff" and app.settings.theme == "light"


def test_drop_highlight_and_empty_drop(app):
    from tests.fakes import simulate_drop

    kb = app.kb_panel
    tk = app.root.tk
    x, y = app.root.winfo_rootx() + 50, app.root.winfo_rooty() + 50
    tk.call("tkdnd::generic::SetDroppedData", "")
    tk.call("tkdnd::generic::HandleEnter", ".", "0x1", ("text/uri-list",), ("0",), ("copy",), ())
    tk.call("tkdnd::generic::HandlePosition", ".", "0x1", (), x, y)
    assert kb.dropping and str(kb.drop_zone.cget("style")) == "Drop.TFrame"
    assert kb.progress_label.cget("text") == "松开鼠标即可导入到当前知识库"
    tk.call("tkdnd::generic::HandleLeave")
    assert not kb.dropping and str(kb.drop_zone.cget("style")) == "TFrame"
    assert simulate_drop(app.root, []) == "copy"
    assert kb.progress_label.cget("text").startswith("拖入的内容里没有文件")


def test_switching_kb_clears_results_and_says_an_answer_stopped(app, tmp_path):
    from tests.fakes import pump

    kb = app.kb_panel
    kb.ingest([str(make_pdf(tmp_path / "b.pdf", ["宪法 b"]))])
    assert pump(app.root, lambda: kb.ingest_job is None and "b.pdf" in kb.results.get("1.0", "end"))
    app.services.answers.delay = 0.05
    app.chat.ask("宪法")
    assert pump(app.root, lambda: len(app.chat.transcript.answers.get(app.chat.turn, "")) >= 1)
    app.chat.info.configure(text="首字 5 ms")
    app.services.kb.create_kb("其他")
    kb.select_kb("其他")
    assert not app.chat.busy and kb.results.get("1.0", "end").strip() == "" and app.chat.info.cget("text") == ""
    assert app.status_var.get() == "已切换知识库，正在生成的回答已停止"
    pump(app.root, lambda: not app.dispatcher.jobs)
    assert app.status_var.get() == "已切换知识库，正在生成的回答已停止"   # not overwritten by the status line


def test_document_filter_and_full_name_tooltip(app, tmp_path):
    from tests.fakes import pump

    kb = app.kb_panel
    other = make_pdf(tmp_path / "a much longer document name that the column cuts off.pdf", ["x"])
    kb.ingest([str(other)])
    assert pump(app.root, lambda: kb.ingest_job is None and kb.tree.exists(str(other)))
    assert len(kb.tree.get_children()) == 2
    kb.filter_var.set("LONGER")
    assert kb.tree.get_children() == (str(other),)
    kb.filter_var.set("")
    assert len(kb.tree.get_children()) == 2
    app.root.update()
    x, y, _w, h = kb.tree.bbox(str(other))
    kb.tree.event_generate("<Motion>", x=x + 5, y=y + h // 2)
    assert kb.tip.text == str(other) and kb.tip.top is not None
    kb.tree.event_generate("<Leave>")
    assert kb.tip.top is None


def test_stop_speaking_only_while_speaking(app):
    if app.voice is None:
        pytest.skip("voice controls unavailable here")
    assert str(app.voice.stop_button["state"]) == "disabled"


def test_reloaded_chat_keeps_marks_notes_and_supporting_sentences(app):
    from models.citations import Citation
    from tests.fakes import pump

    answers = app.services.answers
    answers.citations = [Citation(n=1, verified=True, source="/x/宪法.pdf", page=2, quote="国家机构实行民主集中制")]
    answers.cited_inferred = True
    app.chat.ask("宪法")
    assert pump(app.root, lambda: not app.chat.busy)
    answers.citations, answers.cited_inferred = [], False
    app.chat.ask("没有的东西")
    assert pump(app.root, lambda: not app.chat.busy)
    live = app.chat.transcript.text.get("1.0", "end")
    app.select_chat(app.chat.conversation, reload=True)
    assert pump(app.root, lambda: app.chat.transcript.turn_count() == 2 and not app.dispatcher.jobs)
    tx = app.chat.transcript
    again = tx.text.get("1.0", "end")
    for part in ("“国家机构实行民主集中制”", app.tr("chat.cited_inferred"), "ⓘ 在知识库「default」中没有找到相关内容。"):
        assert part in live and part in again
    assert tx.text.tag_ranges("refusal")


def test_auto_theme_follows_the_system_where_readable(monkeypatch):
    import darkdetect

    from app import theme

    monkeypatch.setattr(darkdetect, "theme", lambda: "Dark")
    assert theme.resolve("auto") == "dark" and theme.resolve("light") == "light"
    monkeypatch.setattr(darkdetect, "theme", lambda: None)        # a desktop it cannot read
    assert theme.resolve("auto") == "light"
    monkeypatch.setattr(darkdetect, "theme", lambda: (_ for _ in ()).throw(OSError("no dbus")))
    assert theme.resolve("auto") == "light"
