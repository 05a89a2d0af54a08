"""The model manager and the first-run panel on fakes of the services (real Tk under Xvfb):
list with kind/size/active, use without restart, delete with confirmation (not the active one),
import progress off the UI thread, pull progress + cancel + the offline message, export to
Ollama without Ollama; first-run states for the answering model and the embedder, failures
kept on the panel, the question row's height at 1024x700."""
from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from models.model_files import PullError
from models.registry import DEFAULT_MODEL, ModelInfo
from tests.fakes import FakeRegistry, pump

pytestmark = pytest.mark.gui
MB = 1024 ** 2
#: words allowed in the Chinese UI: product and model names, file kinds
ALLOWED = re.compile(r"Hugging Face|ModelScope|Ollama|GGUF|HF|Qwen[\w.\-/]*|[\w.\-]+/[\w.\-]+|[\w.\-]*e5[\w.\-]*|"
                     r"MB|GB|KB|tiny[\w.\-]*|fake|pip install modelscope|ollama create|Modelfile")


def english_left(text: str, *names: str) -> list[str]:
    """Latin words (2+ letters) in ``text`` once allowed names (and ``names``) are taken out."""
    for name in names:
        text = text.replace(name, "")
    return re.findall(r"[A-Za-z]{2,}", ALLOWED.sub("", text))


class FakeModelRegistry(FakeRegistry):
    """The registry's model-manager interface over an in-memory list (``settings.model`` is the
    active one). ``gate`` holds an import after its first step; ``pull_mode`` picks how a pull
    ends: "wait-cancel" (reports bytes, then waits for Cancel) or a PullError reason."""

    def __init__(self, settings):
        super().__init__(available=True)
        self.settings = settings
        settings.set("model", "tiny", persist=False)
        self.models = [ModelInfo(DEFAULT_MODEL, "hf", None, False, False, DEFAULT_MODEL),
                       ModelInfo("tiny", "hf", 3 * MB, False, True, "/models/tiny"),
                       ModelInfo("pulled", "hf", 5 * MB, False, True, "/home/models/pulled", True),
                       ModelInfo("run1-final", "adapter", 12 * 1024, False, True, "/runs/run1/final")]
        self.gate, self.threads, self.pull_mode = threading.Event(), [], "wait-cancel"

    def inventory(self):
        return [replace(m, active=m.name == self.settings.model,
                        deletable=m.deletable and m.name != self.settings.model) for m in self.models]

    def list(self):
        return self.inventory()

    def switch_to(self, name):
        self.threads.append(threading.current_thread())
        self.settings.set("model", name, persist=False)
        return name

    def delete(self, name):
        self.models = [m for m in self.models if m.name != name]

    def import_path(self, path, name=None, on_progress=None):
        self.threads.append(threading.current_thread())
        on_progress(0, 4, "reading")
        on_progress(1, 4, "dequantizing")
        assert self.gate.wait(120), "the test never opened the gate"
        on_progress(4, 4, "done")
        self.models.append(ModelInfo(Path(path).stem, "gguf", 400 * MB, False, True, str(path), True))
        return type("E", (), {"name": Path(path).stem})()

    def pull(self, repo_id, source="hf", name=None, on_progress=None, tqdm_class=None, cancel=None):
        if self.pull_mode != "wait-cancel":
            raise PullError("could not download (LocalEntryNotFoundError: ... 'HF_HUB_OFFLINE)", self.pull_mode)
        on_progress(0, 1, "start")
        on_progress(1 * MB, 10 * MB, "")
        assert cancel.wait(120), "the test never pressed Cancel"
        raise PullError("download cancelled", "cancelled")

    def export_ollama(self, name, out=None):
        return "tiny", False, Path("/tmp/exports") / name


@pytest.fixture
def manager_app(make_app, settings):
    """The main window on fakes, its registry a :class:`FakeModelRegistry`, and the manager open."""
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.registry = FakeModelRegistry(settings)
    app.open_model_manager()
    m = app.model_manager
    assert pump(app.root, lambda: len(m.tree.get_children()) == 4)
    return app, m


def test_menu_entry_and_list(manager_app):
    app, m = manager_app
    menubar = app.root.nametowidget(app.root["menu"])
    cascade = next(menubar.entrycget(i, "menu") for i in range(menubar.index("end") + 1)
                   if menubar.type(i) == "cascade" and menubar.entrycget(i, "label") == app.tr("menu.model"))
    models = app.root.nametowidget(cascade)
    labels = [models.entrycget(i, "label") for i in range(models.index("end") + 1) if models.type(i) == "command"]
    assert "管理模型…" in labels
    rows = {iid: m.tree.item(iid) for iid in m.tree.get_children()}
    assert rows["tiny"]["values"] == ["HF 文件夹", "3.0 MB", "✓"]
    assert rows["run1-final"]["values"][:2] == ["训练的适配器", "12 KB"]
    assert rows[DEFAULT_MODEL]["values"][1] == "未下载"
    app.open_model_manager()                                 # a second open raises the same dialog
    assert app.model_manager is m


def test_use_switches_the_answering_model_without_restart(manager_app, monkeypatch):
    app, m = manager_app
    resets = []
    monkeypatch.setattr(app.services.answers, "set_backend", lambda b: resets.append(b))
    m.tree.selection_set("pulled")
    m.update()
    assert str(m.buttons["use"]["state"]) == "normal"
    m.buttons["use"].invoke()
    assert pump(app.root, lambda: m.tree.exists("pulled") and m.tree.item("pulled")["values"][2] == "✓")
    assert app.settings.model == "pulled" and m.tree.item("tiny")["values"][2] == ""
    assert pump(app.root, lambda: resets == [None])         # the answer service drops its backend
    assert app.services.registry.threads[-1] is not threading.main_thread()
    assert "无需重启" in m.status["text"]


def test_delete_asks_first_and_the_active_model_cannot_be_deleted(manager_app):
    app, m = manager_app
    asked = []
    m.confirm = lambda text: asked.append(text) or answer[0]
    answer = [False]
    m.tree.selection_set("tiny")
    m.update()
    assert str(m.buttons["delete"]["state"]) == "disabled"   # the active model
    m.delete("tiny")
    assert "正在使用" in m.status["text"] and asked == []
    m.tree.selection_set("pulled")
    m.update()
    assert str(m.buttons["delete"]["state"]) == "normal"
    m.buttons["delete"].invoke()                              # the user says no
    assert len(asked) == 1 and "pulled" in asked[0] and "/home/models/pulled" in asked[0]
    assert [r.name for r in app.services.registry.models].count("pulled") == 1
    answer[0] = True
    m.buttons["delete"].invoke()
    assert pump(app.root, lambda: not m.tree.exists("pulled"))
    assert "已删除" in m.status["text"]


def test_import_shows_progress_and_runs_off_the_ui_thread(manager_app, tmp_path):
    app, m = manager_app
    reg = app.services.registry
    m.import_path(str(tmp_path / "qwen-q4.gguf"))
    assert pump(app.root, lambda: float(m.progress["value"]) == 1 and float(m.progress["maximum"]) == 4)
    assert "1/4" in m.status["text"] and not english_left(m.status["text"].replace(str(tmp_path), ""))
    assert str(m.buttons["import_gguf"]["state"]) == "disabled" and m.job is not None
    assert reg.threads[-1] is not threading.main_thread()
    reg.gate.set()
    assert pump(app.root, lambda: m.job is None and m.tree.exists("qwen-q4"))
    assert m.tree.item("qwen-q4")["values"][:2] == ["GGUF", "400 MB"]
    assert "已导入 qwen-q4" in m.status["text"]


def test_pull_progress_cancel_and_offline_message(manager_app):
    app, m = manager_app
    reg = app.services.registry
    m.pull_button.invoke()
    assert pump(app.root, lambda: float(m.progress["value"]) == MB)
    assert str(m.cancel_button["state"]) == "normal" and "1.0 MB / 10 MB" in m.status["text"]
    m.cancel_button.invoke()
    assert pump(app.root, lambda: m.job is None)
    assert m.status["text"] == app.tr("manager.pull_cancelled")
    assert str(m.cancel_button["state"]) == "disabled"

    reg.pull_mode = "offline"
    m.pull_button.invoke()
    assert pump(app.root, lambda: m.job is None and m.status["text"] != app.tr("manager.pulling", repo=m.repo.get()))
    text = m.status["text"]
    assert text == app.tr("manager.pull_offline", where="Hugging Face")
    assert app.tr("manager.import_gguf") in text and app.tr("manager.import_folder") in text
    assert not english_left(text) and "HF_HUB" not in text and "Error" not in text


def test_export_without_ollama_says_so(manager_app, monkeypatch):
    import app.model_manager as mm

    app, m = manager_app
    monkeypatch.setattr(mm.shutil, "which", lambda _name: None)
    m.export("tiny")
    assert pump(app.root, lambda: m.job is None and "Ollama" in m.status["text"] and "找不到" in m.status["text"])
    assert "ollama create tiny -f Modelfile" in m.status["text"]


# -- first-run panel -------------------------------------------------------------------
def first_run_app(make_app, embedder_ok=False, registry=None):
    app = make_app(available=False)
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    if registry is not None:
        app.services.registry = registry
    app.services.registry.embedder_ok = embedder_ok
    app.check_model()
    want = {"model": "missing", "embedder": "ok" if embedder_ok else "missing"}
    assert pump(app.root, lambda: app.first_run is not None and app.first_run.state == want
                and not app.dispatcher.jobs)
    return app


def panel_text(panel) -> str:
    texts = [panel.cget("text")] + [w.cget("text") for w in panel.winfo_children() if w.winfo_class() == "TLabel"]
    texts += [b.cget("text") for _lbl, bs in panel.rows.values() for b in bs]
    return "\n".join(texts)


def test_first_run_says_what_is_missing_and_goes_when_both_are_here(make_app, tmp_path):
    app = first_run_app(make_app)
    panel = app.first_run
    model_label, embedder_label = panel.rows["model"][0], panel.rows["embedder"][0]
    assert "回答模型" in model_label["text"] and "不在本机" in model_label["text"]
    assert "嵌入模型" in embedder_label["text"] and "不能添加文档" in embedder_label["text"]
    assert english_left(panel_text(panel), Path(app.settings.embedding_model).name) == []
    menu = panel.menus["model"]
    items = [menu.entrycget(i, "label") for i in range(menu.index("end") + 1) if menu.type(i) == "command"]
    assert items == ["从 Hugging Face 下载", "从 ModelScope 下载", app.tr("first.use_ollama")]
    panel.import_path(str(tmp_path))
    assert pump(app.root, lambda: panel.state == {"model": "ok", "embedder": "missing"} and panel.job is None)
    assert app.first_run is panel and "✓" in model_label["text"]
    assert not panel.bars["model"].winfo_ismapped()          # nothing to do for a model that is here
    panel.use_embedder(str(tmp_path))
    assert pump(app.root, lambda: app.first_run is None and app.embedder_ok)
    assert app.services.kb.reloads == 1                       # the KB builds its embedder again


def test_first_run_english_ui_has_no_chinese(make_app, settings):
    settings.set("ui_language", "en", persist=False)
    app = first_run_app(make_app)
    text = panel_text(app.first_run)
    assert "answering model" in text and "embedding model" in text
    assert not re.search(r"[\u4e00-\u9fff]", text)


def test_offline_download_message_stays_and_points_at_the_import_buttons(make_app, settings):
    reg = FakeModelRegistry(settings)
    reg.pull_mode = "offline"
    reg._available = False
    app = first_run_app(make_app, embedder_ok=True, registry=reg)
    panel = app.first_run
    panel.pull("model")
    assert pump(app.root, lambda: panel.job is None and panel.message["text"].startswith("无法连接"))
    text = panel.message["text"]
    assert app.tr("first.import_gguf") in text and app.tr("first.import_folder") in text
    assert english_left(text) == [] and panel.message.winfo_ismapped()
    app.refresh_status()                                      # a status refresh does not clear it
    app.root.update()
    assert panel.message["text"] == text and app.first_run is panel


def test_an_embedder_that_fails_to_load_stays_on_the_panel(make_app):
    app = first_run_app(make_app, embedder_ok=True)

    class BrokenKB(type(app.services.kb)):
        @property
        def embedder_name(self):
            raise RuntimeError("cannot load the embedding model 'x' (OSError: ...)")

        @embedder_name.setter
        def embedder_name(self, _value):
            pass

    app.services.kb = BrokenKB(app.settings)
    app.check_model()
    assert pump(app.root, lambda: app.first_run is not None and app.first_run.state["embedder"] == "broken"
                and not app.dispatcher.jobs)
    label = app.first_run.rows["embedder"][0]["text"]
    assert "无法加载" in label and english_left(label, Path(app.settings.embedding_model).name) == []
    assert "cannot load" not in app.status_var.get()          # not a status-bar flash in English


@pytest.mark.parametrize("lang,size", [("zh", (1024, 700)), ("en", (1024, 700)), ("zh", "min")])
def test_question_row_keeps_its_height_at_1024x700(make_app, settings, lang, size):
    from app.main import MIN_SIZE

    settings.set("ui_language", lang, persist=False)
    app = first_run_app(make_app)
    app.first_run.say(app.tr("manager.pull_offline", where="Hugging Face"), error=True)
    width, height = MIN_SIZE if size == "min" else size
    app.root.geometry(f"{width}x{height}")
    app.root.update()
    chat = app.chat
    rw, rh = app.root.winfo_width(), app.root.winfo_height()
    for widget, min_h in ((chat.input, 40), (chat.ask_button, 20), (chat.stop_button, 20)):
        y = widget.winfo_rooty() - app.root.winfo_rooty()
        assert widget.winfo_ismapped() and widget.winfo_height() >= min_h, widget
        assert 0 <= y and y + widget.winfo_height() <= rh and widget.winfo_width() >= 20 and rw
    panel = app.first_run
    assert panel.winfo_height() >= panel.winfo_reqheight()   # the panel is not cut off either
    if size != "min":      # at 900x560 with both models missing and an error, the panel takes its room
        assert chat.transcript.winfo_ismapped() and chat.transcript.winfo_height() >= 40


def test_a_failed_import_is_worded_in_the_ui_language(make_app, settings, tmp_path):
    from models.registry import ModelRegistry

    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.registry = ModelRegistry(settings)          # the real registry: real checks
    app.open_model_manager()
    m = app.model_manager
    empty = tmp_path / "空文件夹"
    empty.mkdir()
    m.import_path(str(empty))
    assert pump(app.root, lambda: m.job is None and m.status["text"] != app.tr("manager.importing", path=str(empty)))
    assert m.status["text"] == app.tr("manager.import_not_model", path=str(empty))
    assert english_left(m.status["text"], str(empty), "config.json", ".gguf") == []
    m.import_path(str(tmp_path / "nope.gguf"))
    assert pump(app.root, lambda: m.job is None and "不存在" in m.status["text"])


def test_a_model_that_fails_to_load_shows_on_the_panel(make_app, monkeypatch):
    app = make_app()
    assert pump(app.root, lambda: app.model_ok and not app.dispatcher.jobs)
    assert app.first_run is None

    def broken():
        raise RuntimeError("Error while deserializing header: MetadataIncompleteBuffer")

    monkeypatch.setattr(app.services.answers, "backend", broken)
    app.model_ready()
    assert pump(app.root, lambda: app.first_run is not None and app.first_run.state["model"] == "broken"
                and not app.dispatcher.jobs)
    label = app.first_run.rows["model"][0]["text"]
    assert "无法加载" in label and english_left(label, app.settings.model) == []
    assert app.first_run.bars["model"].winfo_manager()        # the import/download buttons are offered


def test_size_column_cases():
    import doctest

    import app.model_manager as mm

    failed, attempted = doctest.testmod(mm)
    assert attempted >= 2 and failed == 0
    assert mm.human_size(None, lambda k: "未下载") == "未下载" and mm.human_size(512, str) == "512 B"
