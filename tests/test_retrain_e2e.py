"""Retrain end to end on real components: the main window's Retrain button opens the dialog,
Start runs the REAL ``python -m trainer train`` (smoke-cpu recipe, tiny Qwen, CPU), the plot
follows it live, Stop keeps a checkpoint, a second run finishes and is compared with its base
(``python -m trainer eval``), "Use this model" adopts it and the next answer comes from it.
Screenshots of the dialog mid-run and after adopting go to artifacts/retrain-dialog-*.png."""
from __future__ import annotations

import os
import tkinter as tk
from pathlib import Path
from tkinter import ttk

import pytest

from tests.test_retrain_dialog import pump

pytestmark = [pytest.mark.gui, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT / "artifacts" / "retrain-dialog-midrun.png"


def screenshot(widget, path: Path) -> Path:
    """Grab ``widget``'s window from the X display into a PNG."""
    from PIL import ImageGrab

    widget.update()
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    img = ImageGrab.grab(bbox=(x, y, x + widget.winfo_width(), y + widget.winfo_height()),
                         xdisplay=os.environ["DISPLAY"])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def find_button(widget, text: str) -> ttk.Button:
    for child in widget.winfo_children():
        if isinstance(child, ttk.Button | tk.Button) and child.cget("text") == text:
            return child
        found = find_button(child, text)
        if found is not None:
            return found
    return None


@pytest.fixture
def app(display, settings, tiny_qwen_dir, shared_data, tmp_path):
    """The real main window on real services, answering with the tiny Qwen; one tiny document."""
    from app.main import App
    from app.services import build_services

    settings.update({"relevance_floor": -1.0, "max_new_tokens": 8, "think": False})
    services = build_services(settings)
    services.registry.import_path(tiny_qwen_dir, name="tiny")
    services.registry.use("tiny")
    doc = tmp_path / "apples.txt"
    doc.write_text("小明有 3 个苹果，又买了 5 个，一共有 8 个苹果。", encoding="utf-8")
    [res] = services.kb.ingest([doc])
    assert res.chunks >= 1
    window = App(settings, services, root=tk.Tk())
    yield window
    window.close(timeout=60)


def test_retrain_button_to_adopted_answer(app):
    services, root = app.services, app.root
    find_button(root, app.tr("menu.retrain")).invoke()
    dlg = root._tqts_retrain
    pump(root, lambda: dlg.loaded and dlg.gpu is not None, timeout=120)           # GPU probe done
    assert dlg.data.source() == "kb"                       # the main window's knowledge base first
    dlg.data.source_var.set("gsm8k")                       # this test trains on math
    dlg.data._source_changed()
    pump(root, lambda: str(dlg.start_button["state"]) == "normal", timeout=120)
    assert dlg.recipe_var.get() == "smoke-cpu" and dlg.model_var.get() == "tiny"
    assert not dlg.gpu["cuda"] and "CUDA" in dlg.gpu_label["text"]

    # run 1: follow it live, then Stop -> SIGINT -> checkpoint kept
    dlg.steps_var.set("40")
    dlg.run_name_var.set("first")
    dlg.start_button.invoke()
    pump(root, lambda: len(dlg.rows) >= 2, timeout=300)
    assert len(dlg.ax_reward.lines[0].get_xdata()) >= 2
    assert {ln.get_label() for ln in dlg.ax_reward.lines} >= {dlg.t.reward(n) for n in (
        "reward", "correctness", "strict_format")}                    # names in the UI language
    pump(root, lambda: dlg.sample_text.get("1.0", "end").strip() != "", timeout=60)
    screenshot(dlg, SHOT)
    dlg.stop_button.invoke()
    pump(root, lambda: dlg.job.status() == "stopped" and not dlg._busy, timeout=180)
    assert dlg.job.proc.returncode == 0                           # it stopped itself, not killed
    ckpts = list(dlg.job.run_dir.glob("checkpoint-*/adapter_model.safetensors"))
    assert ckpts and dlg.job.checkpoint() is not None

    # run 2: completes, then base vs trained on the held-out split
    dlg.steps_var.set("2")
    dlg.run_name_var.set("second")
    dlg.limit_var.set("3")
    dlg.start_button.invoke()
    pump(root, lambda: dlg.comparison is not None and not dlg._busy, timeout=400)
    assert dlg.job.status() == "finished", dlg.job.log_tail(20)
    assert set(dlg.comparison["trained"]) == set(dlg.comparison["base"]) == {
        "strict", "lenient", "format_rate", "n", "strict_ci95", "lenient_ci95"}
    assert dlg.comparison["trained"]["n"] == 3                    # test questions, with Wilson intervals
    assert dlg.comparison["limit"] == 3
    names = {dlg.history.item(i, "text"): dlg.history.item(i, "values")[0] for i in dlg.history.get_children()}
    assert names == {"first": dlg.t("stopped"), "second": dlg.t("finished")}
    strict = dlg.history.item(str(dlg.job.run_dir), "values")[4]          # the comparison's number
    assert strict == f"{dlg.comparison['trained']['strict']:.3f}"

    # adopt: registry switches, the next answer comes from the adopted checkpoint
    dlg.use_button.invoke()
    pump(root, lambda: dlg.adopted is not None or "rror" in dlg.message, timeout=60)
    screenshot(dlg, SHOT.with_name("retrain-dialog-adopted.png"))
    active = services.registry.active()
    assert active.name == dlg.adopted.name and active.kind == "trained"
    assert Path(active.adapter) == (dlg.job.run_dir / "best").resolve()
    result = services.answers.answer("小明一共有多少个苹果？")
    assert result.model == active.name and result.sources
    assert Path(services.answers.backend().adapter) == Path(active.adapter)
