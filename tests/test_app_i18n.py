"""One language: walk every window of the app (main window after an ingest, an answer, a
refusal and a reload; menus; Settings; About; the page viewer; the first-run panel; Tk's own
dialog strings) in Chinese and in English, and find no string of the other language.
Allowed: file and knowledge-base names, model ids, product and licence names, key names."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes import make_pdf

pytestmark = pytest.mark.gui

#: Names that stay as they are in both languages (products, formats, keys, licences, backends).
ALLOWED = {"TQT-s", "PDF", "Word", "Markdown", "OCR", "BM25", "LoRA", "top-k", "think", "Hugging", "Face",
           "ModelScope", "GGUF", "Ollama", "Qwen", "Ctrl", "Enter", "Esc", "Shift", "F1", "F9", "Tk", "Python",
           "linux", "darwin", "win32", "CPU", "GPU", "CUDA", "English", "auto", "transformers", "ollama", "llamacpp", "MIT", "Apache", "AGPL",
           "TCL", "Tcl", "chromadb", "TRL", "sentence", "PyMuPDF", "python", "docx", "jieba", "bm25s", "vosk",
           "tkinterdnd2", "sv", "ttk", "ms", "Instruct", "OK", "cpu", "cuda", "mps"}
ALLOWED_TEXT = ["Qwen2.5-0.5B-Instruct", "TQT-s", "top-k", "Hugging Face", "sv-ttk", "sentence-transformers", "python-docx", "Tcl/Tk"]
UI_TAGS = ("who", "srchdr", "note", "thinkhdr", "score", "refusal", "unverified")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def _var_text(w) -> str:
    try:
        name = str(w.cget("textvariable"))
        return str(w.getvar(name)) if name else ""
    except Exception:  # noqa: BLE001 - widgets without the option
        return ""


def ui_strings(widget) -> list[str]:
    """Every user-visible string under ``widget``: texts, titles, headings, choices, menu
    entries, and the UI-made parts of the conversation (not the documents' or model's words)."""
    out: list[str] = []
    cls = widget.winfo_class()
    if cls in ("Tk", "Toplevel"):
        out.append(widget.title())
    if cls not in ("TEntry", "TCombobox", "Entry", "TSpinbox"):   # what is typed there is data, not UI
        try:
            out.append(str(widget.cget("text")))
        except Exception:  # noqa: BLE001 - widgets without the option
            pass
        out.append(_var_text(widget))
    if cls == "TCombobox":
        out += [str(v) for v in widget.cget("values")]
    elif cls == "Treeview":
        out += [widget.heading(c)["text"] for c in widget.cget("columns")]
    elif cls == "Menu":
        last = widget.index("end")
        for i in range(0 if last is None else last + 1):
            if widget.type(i) in ("command", "cascade", "radiobutton", "checkbutton"):
                out += [str(widget.entrycget(i, "label")), str(widget.entrycget(i, "accelerator"))]
    elif cls == "Text":
        for tag in UI_TAGS + tuple(t for t in widget.tag_names() if t in ("ok", "skip", "fail")):
            r = widget.tag_ranges(tag)
            out += [widget.get(r[i], r[i + 1]) for i in range(0, len(r), 2)]
    for child in widget.winfo_children():
        out += ui_strings(child)
    return [s.strip() for s in out if s and s.strip()]


def foreign(strings: list[str], lang: str, allowed_text: list[str]) -> list[str]:
    """The strings that hold words of the other language (after removing ``allowed_text``)."""
    bad = []
    for s in strings:
        t = s
        for a in sorted(allowed_text + ALLOWED_TEXT, key=len, reverse=True):
            t = t.replace(a, " ")
        if lang == "zh":
            words = [w for w in WORD.findall(t) if w not in ALLOWED and not re.fullmatch(r"[A-Za-z]?\d+\w*", w)]
            if words:
                bad.append(f"{s!r} ({', '.join(words)})")
        elif CJK.search(t.replace("中文", "")):
            bad.append(repr(s))
    return bad


def tk_dialog_strings(root) -> list[str]:
    """What Tk's message box and file dialogs will say, from its message catalogue."""
    keys = ["&Yes", "&No", "&OK", "&Cancel", "&Open", "&Save", "File &names:", "Files of &type:",
            "&Directory:", "Show &Hidden Files and Directories", "Choose Directory", "All Files"]
    return [str(root.tk.call("namespace", "eval", "::tk", ["::msgcat::mc", k])).replace("&", "") for k in keys]


TEXTS = {"zh": ("资料.pdf", ["第一章 总纲\n宪法 国家", "第二章 公民\n宪法 权利"], "宪法", "没有的东西"),
         "en": ("notes.pdf", ["Chapter One\nconstitution state", "Chapter Two\nconstitution rights"],
                "constitution", "nothing here")}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_string_of_the_other_language(make_app, settings, tmp_path, lang):
    from tests.fakes import pump

    settings.set("ui_language", lang, persist=False)
    name, pages, question, missing = TEXTS[lang]
    pdf = make_pdf(tmp_path / name, pages)
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    allowed = [str(pdf), name, app.kb_name, settings.model, settings.embedding_model, str(settings.home),
               settings.ollama_model]
    app.kb_panel.ingest([str(pdf)])
    assert pump(app.root, lambda: app.kb_panel.ingest_job is None and app.kb_panel.tree.exists(str(pdf)))
    app.chats_pane.new()                       # a fresh chat: the welcome panel with example questions
    assert pump(app.root, lambda: len(app.chat.welcome.buttons) >= 2)
    app.services.answers.cited_inferred = True
    app.chat.ask(question)
    assert pump(app.root, lambda: not app.chat.busy)
    app.chat.ask(missing)                      # a refusal, in the UI language
    assert pump(app.root, lambda: not app.chat.busy)
    app.select_chat(app.chat.conversation, reload=True)   # reloaded history: notes and marks again
    assert pump(app.root, lambda: app.chat.transcript.turn_count() == 2 and not app.dispatcher.jobs)
    app.open_settings()
    app.open_about()
    app.open_source(str(pdf), 1)
    assert pump(app.root, lambda: sum(w.winfo_class() == "Toplevel" for w in app.root.winfo_children()) >= 3
                and app.viewer.page == 1)
    app.root.update()

    strings = ui_strings(app.root) + tk_dialog_strings(app.root)
    assert len(strings) > 80, "the walk found too few strings to mean anything"
    assert app.tr("chat.cited_inferred") in strings and app.tr("chats.title") in strings
    assert "\n".join(foreign(strings, lang, allowed)) == ""

    first = make_app(available=False)         # the first-run panel (it names the embedder folder)
    assert pump(first.root, lambda: first.first_run is not None)
    allowed.append(Path(str(first.settings.embedding_model)).name)
    assert "\n".join(foreign(ui_strings(first.root), lang, allowed)) == ""


def test_the_walk_finds_a_foreign_string(make_app, settings):
    """The check itself: an English label in the Chinese UI, and a Chinese one in the English UI, are found."""
    from tkinter import ttk

    app = make_app()
    ttk.Label(app.root, text="Chunks").pack()
    assert foreign(ui_strings(app.root), "zh", []) == ["'Chunks' (Chunks)"]
    assert foreign(["分块"], "en", []) == ["'分块'"]


def test_ingest_progress_in_the_ui_language(make_app, settings):
    from kb.types import Progress

    app = make_app()
    msg = Progress("page", "{name}: page {page}/{pages}", name="a.pdf", page=3, pages=30)
    assert app.kb_panel.progress_text(msg) == "a.pdf：第 3/30 页"
    assert app.kb_panel.progress_text("b.pdf") == "b.pdf"           # a file name stays as it is


def bad_files(tmp_path) -> list[Path]:
    """Three files that fail to ingest, made here: an empty .pdf, a text file renamed .pdf, and a
    real PDF whose one page has no text."""
    import pymupdf

    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    renamed = tmp_path / "renamed.pdf"
    renamed.write_text("just some notes, not a PDF\n", encoding="utf-8")
    blank = tmp_path / "blank.pdf"
    doc = pymupdf.open()
    doc.new_page()
    doc.save(blank)
    return [empty, renamed, blank]


#: what the results box says for each bad file, per language (the English is the CLI's own text)
REASONS = {"zh": ["文件是空的（0 字节）", "文件扩展名是 .pdf，但内容不是", "PDF 中没有找到文字"],
           "en": ["the file is empty (0 bytes)", "the file is named .pdf but is not one inside",
                  "no text found in the PDF"]}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_ingest_failure_reasons_in_the_ui_language(make_app, settings, tmp_path, lang):
    """Bad files through the real knowledge-base service and its worker: the results box and the
    document list give each reason in the UI language, and nothing of the other language."""
    from kb.service import KnowledgeBaseService
    from tests.fakes import pump

    settings.set("ui_language", lang, persist=False)
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.kb = KnowledgeBaseService(settings)
    files = bad_files(tmp_path)
    app.kb_panel.ingest([str(f) for f in files])
    assert pump(app.root, lambda: app.kb_panel.ingest_job is None and not app.dispatcher.jobs)
    lines = app.kb_panel.results.get("1.0", "end").strip().splitlines()
    assert len(lines) == 3, lines
    for f, line, reason in zip(files, lines, REASONS[lang], strict=True):
        assert line.startswith(f"✗ {f.name} — {reason}"), line
        assert reason in str(app.kb_panel.tree.item(str(f), "values"))          # the failed row in the list
    allowed = [str(f) for f in files] + [f.name for f in files] + [".pdf", app.kb_name]
    assert "\n".join(foreign(ui_strings(app.kb_panel), lang, allowed)) == ""


def test_a_message_the_ui_does_not_know_shows_its_english_text(make_app):
    """A key missing from the strings file (a new kb/ message) falls back to the English text; an
    arg that is a message itself is rendered too."""
    from kb.types import Message

    app = make_app()
    assert app.tr.message(Message("no_such_key_yet", "something new: {x}", x=1)) == "something new: 1"
    nested = Message("not_stored", "{reason}; nothing of this file was stored",
                     reason=Message("gone", "the file is no longer there (moved or deleted); check the path"))
    assert app.tr.message(nested) == "文件已不在原处（被移动或删除）；请检查路径；这个文件没有保存任何内容"
    assert app.tr.message("plain text") == "plain text"


def tcl_strings(root, path: str) -> list[str]:
    """The texts under a window Tk made itself (a message box has no Python widget objects)."""
    out = [str(root.tk.call("wm", "title", path))] if root.tk.call("winfo", "toplevel", path) == path else []
    try:
        out.append(str(root.tk.call(path, "cget", "-text")))
    except Exception:  # noqa: BLE001 - frames have no text
        pass
    for child in root.tk.splitlist(root.tk.call("winfo", "children", path)):
        out += tcl_strings(root, str(child))
    return [s.strip() for s in out if s.strip()]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_model_manager_and_its_delete_question_in_the_ui_language(make_app, settings, lang):
    """The model manager (a fake registry: an HF folder, a download, an adapter) and Tk's own
    yes/no box asking before a delete: nothing of the other language."""
    from tests.fakes import pump
    from tests.test_app_models import FakeModelRegistry

    settings.set("ui_language", lang, persist=False)
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.registry = registry = FakeModelRegistry(settings)
    app.open_model_manager()
    m = app.model_manager
    assert pump(app.root, lambda: len(m.tree.get_children()) == 4)
    m.tree.selection_set("pulled")
    app.root.update()
    allowed = [r.name for r in registry.models] + [r.path for r in registry.models] + ["Qwen/Qwen2.5-0.5B-Instruct"]
    strings = ui_strings(m)
    assert m.tr("manager.delete") in strings and m.tr("manager.col.size") in strings
    assert "\n".join(foreign(strings, lang, allowed)) == ""

    seen: list[str] = []

    def answer_no():                     # the real message box: read it, then press No
        box = f"{m}.__tk__messagebox"
        if not app.root.tk.call("winfo", "exists", box):
            app.root.after(20, answer_no)
            return
        seen.extend(tcl_strings(app.root, box))
        app.root.tk.call(f"{box}.no", "invoke")
    app.root.after(20, answer_no)
    m.delete("pulled")                   # blocks in Tk's own loop until the box is answered
    assert any(s == m.tr("manager.title") for s in seen), seen
    question = m.tr("manager.delete_confirm_files", name="pulled", path="/home/models/pulled")
    assert question in seen and len(seen) >= 4, seen        # title, question, Yes, No
    assert "\n".join(foreign(seen, lang, allowed)) == ""
    assert any(r.name == "pulled" for r in registry.models)  # No: nothing deleted


#: the start of each chat error, per language (the English is what the CLI prints)
CHAT_ERRORS = {"zh": ["⚠ 问题是空的", "⚠ 无法连接 http://127.0.0.1:9 上的 Ollama 服务"],
               "en": ["⚠ the question is empty", "⚠ the Ollama server at http://127.0.0.1:9 is not reachable"]}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_chat_errors_in_the_ui_language(make_app, settings, lang):
    """An error event from the answering service (the real question check and its real wording)
    and an exception from a backend (the real Ollama explanation) read in the UI language."""
    from models import conversation
    from models.answer import AnswerEvent, _message
    from models.ollama_backend import explain
    from tests.fakes import pump

    settings.set("ui_language", lang, persist=False)
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)

    def ask(question, kb=None, **_):
        if question == "empty":
            try:
                conversation.check_question("   ")
            except ValueError as e:
                yield AnswerEvent("error", text=_message(e))
            yield AnswerEvent("done", data=None)
        else:
            raise explain(ConnectionError("refused"), "http://127.0.0.1:9", "qwen2.5:0.5b")
    app.services.answers.ask = ask
    for question in ("empty", "ollama"):
        app.chat.ask(question)
        assert pump(app.root, lambda: not app.chat.busy)
    text = app.chat.transcript.text.get("1.0", "end")
    for start in CHAT_ERRORS[lang]:
        assert start in text, text


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_voice_tooltip_in_the_ui_language(make_app, settings, lang):
    """No speech model in this data dir: the talk button's tooltip says what to do in the UI
    language (the command and the folder stay as they are)."""
    settings.set("ui_language", lang, persist=False)
    app = make_app()
    if app.voice is None:
        pytest.skip("voice controls unavailable here")
    tip = app.voice.tooltip.text
    assert tip == app.voice._status_tip.text and "python main.py voice pull " + lang in tip
    assert tip.startswith({"zh": "没有语音识别模型", "en": "no speech model"}[lang]), tip
    assert "\n".join(foreign([tip], lang, [str(settings.models_dir / "vosk"), "https://alphacephei.com/vosk/models",
                                           "python main.py voice pull zh", "vosk-model-small-cn-0.22", "stt_model",
                                           "zip"])) == ""


def test_every_reason_from_kb_and_models_has_chinese_words():
    """Each ``Message("key", ...)`` made in kb/ and models/ has its ``reason.<key>`` in the
    Chinese strings, with the same argument names (a new message without words fails here)."""
    import json
    import string

    from app.i18n import Strings
    from kb.types import Message

    root = Path(__file__).resolve().parents[1]
    zh = json.loads((root / "assets" / "strings_zh.json").read_text(encoding="utf-8"))
    made = {}
    for path in [*(root / "kb").glob("*.py"), *(root / "models").rglob("*.py")]:
        for key, text in re.findall(r'Message\(\s*"(\w+)",\s*((?:"[^"]*"\s*)+)', path.read_text(encoding="utf-8")):
            made[key] = "".join(re.findall(r'"([^"]*)"', text))
    assert len(made) >= 35, sorted(made)
    names = lambda t: {f for _, f, _, _ in string.Formatter().parse(t) if f}  # noqa: E731
    made = {k: v for k, v in made.items() if f"progress.{k}" not in zh}     # the doctest's progress line
    assert [k for k in made if f"reason.{k}" not in zh] == []
    # a Chinese text may leave an argument out, never use one the message lacks (it would show English)
    assert {k: names(zh[f"reason.{k}"]) - names(made[k]) for k in made} == {k: set() for k in made}
    assert Strings("zh").message(Message("empty", made["empty"])) == zh["reason.empty"]


def test_the_repair_report_in_the_ui_language():
    """A knowledge-base check's report (the repair offer's text) in zh; English as the CLI prints it."""
    from app.i18n import Strings
    from kb.repair import CheckReport

    broken = CheckReport("资料库", 3, 40, missing_chunks=["/d/a.pdf"], missing_tokens=["/d/b.pdf"],
                         duplicates=["/d/c.pdf"], orphan_versions=["v1"], orphan_tokens=["t1.json"],
                         unindexed=["c1", "c2", "c3", "c4"])
    lines = broken.lines() + CheckReport("资料库", 3, 40).lines()
    zh = [Strings("zh").message(line) for line in lines]
    assert len(zh) == 7 and zh[-1] == "「资料库」：完好（3 个文档，40 个分块）"
    assert zh[0] == "「资料库」：1 个文档在向量库中缺少分块：a.pdf" and zh[5].endswith("c1, c2, c3, …")
    assert foreign(zh, "zh", ["a.pdf", "b.pdf", "c.pdf", "v1", "t1.json", "c1", "c2", "c3"]) == []
    assert [Strings("en").message(line) for line in lines] == [str(line) for line in lines]
    assert str(lines[-1]) == "«资料库»: consistent (3 documents, 40 chunks)"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_retrain_dialog_in_the_ui_language(make_app, settings, lang):
    """The Retrain dialog (opened from the app's menu action, filled in, a knowledge base chosen)
    holds no word of the other language: data choice, recipes, tables, plot labels, buttons."""
    from app import retrain
    from tests.fakes import pump
    from tests.test_retrain_dialog import FAKE

    settings.update({"ui_language": lang})
    app = make_app()
    opened = []
    real_open = retrain.open_retrain_dialog

    def open_with_fake_trainer(*a, **kw):
        opened.append(real_open(*a, launcher=FAKE, **kw))
        return opened[-1]

    retrain.open_retrain_dialog = open_with_fake_trainer
    try:
        app.open_retrain()
    finally:
        retrain.open_retrain_dialog = real_open
    dlg = opened[0]
    assert pump(app.root, lambda: dlg.loaded and dlg.gpu is not None, timeout=600)
    app.root.update()
    strings = ui_strings(dlg)
    plot = dlg.plot.ax_reward
    strings += [plot.get_ylabel(), plot.get_xlabel(), plot.get_title()]
    assert len(strings) > 20, "the walk found too few strings to mean anything"
    allowed = [app.kb_name, settings.model, "gsm8k-chinese", "gsm8k", "grounded-cpu-smoke", "grounded-kb", "GRPO"]
    recipes = [r["name"] for r in dlg.recipes]
    assert "\n".join(foreign(strings, lang, allowed + recipes)) == ""
    dlg.close()
