"""The Retrain dialog on real Tk (Xvfb) driving tests/fake_trainer.py: start, live plot,
stop keeps a checkpoint, a finished run is compared and adopted, reopening finds a live run.
The real trainer end to end is tests/test_retrain_e2e.py."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.gui
FAKE = [sys.executable, str(Path(__file__).with_name("fake_trainer.py"))]


@dataclass
class Entry:
    name: str
    kind: str = "base"
    path: str = ""
    adapter: str = ""
    base: str = ""
    metrics: dict = field(default_factory=dict)


class FakeRegistry:
    """The ModelRegistry methods the dialog uses, in memory."""

    def __init__(self):
        self.entries = {"tiny": Entry("tiny", path="/x/tiny")}
        self.active_name = "tiny"

    def list(self):
        return list(self.entries.values())

    def active(self):
        return self.entries.get(self.active_name)

    def register_trained(self, path, name=None, base=None, metrics=None):
        e = Entry(name or Path(path).name, "trained", path=base, adapter=str(path), base=base,
                  metrics=metrics or {})
        self.entries[e.name] = e
        return e

    def use(self, name, adapter=None):
        self.active_name = name
        return self.entries[name]

    def convert_adapter(self, name=None):
        return None           # no model.gguf beside the base: nothing for llama.cpp to serve


def pump(root, pred, timeout=600.0):
    """Run the Tk loop until ``pred()`` holds; fail after ``timeout`` seconds (generous: only a
    failing test waits that long, and the suite must pass on a loaded machine)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        root.update()
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s: {pred}")


@pytest.fixture
def ui(display, home, monkeypatch):
    import tkinter as tk

    import settings as settings_mod

    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.15")
    root = tk.Tk()
    root.withdraw()
    services = SimpleNamespace(settings=settings_mod.load(), registry=FakeRegistry(), answers=None, kb=None)
    yield root, services
    root.destroy()


def test_start_plot_stop_finish_compare_adopt(ui):
    from app.retrain import open_retrain_dialog

    root, services = ui
    dlg = open_retrain_dialog(root, services, launcher=FAKE)
    assert open_retrain_dialog(root, services, launcher=FAKE) is dlg      # one dialog at a time
    pump(root, lambda: str(dlg.start_button["state"]) == "normal")
    assert "CUDA" in dlg.gpu_label["text"] and dlg.recipe_var.get() == "smoke-cpu"
    dlg.steps_var.set("100000")   # never ends by itself, however slow the machine
    dlg.run_name_var.set("first")
    dlg.start_button.invoke()
    pump(root, lambda: len(dlg.rows) >= 2)
    assert len(dlg.ax_reward.lines[0].get_xdata()) >= 2                # the plot follows
    assert "step" in dlg.sample_text.get("1.0", "end")
    dlg.stop_button.invoke()
    assert "stopping after step" in dlg.message or "结束后停止" in dlg.message
    pump(root, lambda: dlg.job.status() == "stopped" and not dlg._busy)
    assert dlg.job.checkpoint().name.startswith("checkpoint-")
    assert str(dlg.use_button["state"]) == "normal"
    pump(root, lambda: "stopped by the user after step" in dlg.message)      # why, shown

    stopped_at = dlg.rows[-1]["step"]                                 # Resume continues the run
    pump(root, lambda: str(dlg.resume_button["state"]) == "normal")
    dlg.resume_button.invoke()
    pump(root, lambda: dlg.rows and dlg.rows[-1]["step"] > stopped_at + 1)
    assert dlg.job.run_dir.name == "first" and "--resume" in dlg.job.log_tail(100)
    xs = list(dlg.ax_reward.lines[0].get_xdata())
    assert xs == sorted(set(xs))                                      # one point per step
    dlg.stop_button.invoke()
    pump(root, lambda: dlg.job.status() == "stopped" and not dlg._busy)

    dlg.steps_var.set("4")
    dlg.run_name_var.set("second")
    dlg.start_button.invoke()
    pump(root, lambda: dlg.comparison is not None and not dlg._busy)     # finished -> auto eval
    assert dlg.comparison["trained"]["strict"] == 0.5 and dlg.comparison["base"]["strict"] == 0.25
    assert len(dlg.compare_tree.get_children()) == 4                   # 3 metrics + questions
    first = dlg.compare_tree.get_children()[0]
    assert "[0.30–0.70]" in dlg.compare_tree.item(first)["values"][1]   # the Wilson interval
    assert dlg.comparison["trained"]["n"] == 20
    assert set(dlg.history.get_children()) == {str(dlg.job.run_dir), str(dlg.job.run_dir.parent / "first")}
    dlg.use_button.invoke()
    pump(root, lambda: dlg.adopted is not None)
    active = services.registry.active()
    assert active.name == "grpo-second" and active.kind == "trained"
    assert active.adapter.endswith("best") and active.base == "tiny" and active.metrics["strict"] == 0.5


def test_reopening_follows_the_running_job(ui, monkeypatch):
    from app.retrain import open_retrain_dialog

    monkeypatch.setenv("FAKE_CUDA", "1")
    root, services = ui
    dlg = open_retrain_dialog(root, services, launcher=FAKE)
    pump(root, lambda: str(dlg.start_button["state"]) == "normal")
    assert "Fake GPU" in dlg.gpu_label["text"] and "70000" in dlg.gpu_label["text"]
    assert set(dlg.recipe_box["values"]) >= {"smoke-cpu", "tqts-default"}   # a GPU offers every recipe
    dlg.steps_var.set("100000")   # never ends by itself, however slow the machine
    dlg.start_button.invoke()
    pump(root, lambda: len(dlg.rows) >= 1)
    run_dir = dlg.job.run_dir
    dlg.close()                                                      # the run keeps going
    assert dlg.job.status() == "running"
    again = open_retrain_dialog(root, services, launcher=FAKE)
    assert again is not dlg and again.plot is None          # open first, fill in afterwards
    pump(root, lambda: again.loaded)
    assert again.job.run_dir == run_dir and again.job.proc is None
    n = len(again.rows)
    pump(root, lambda: len(again.rows) > n)
    pump(root, lambda: str(again.stop_button["state"]) == "normal")
    again.stop_button.invoke()
    pump(root, lambda: again.job.status() == "stopped")
    dlg.job.proc.wait(300)
    again.close()


def test_a_failed_run_says_why_and_offers_nothing_to_adopt(ui, monkeypatch):
    from app.retrain import open_retrain_dialog

    monkeypatch.setenv("FAKE_FAIL", "FileNotFoundError: no data at /nowhere.jsonl")
    root, services = ui
    dlg = open_retrain_dialog(root, services, launcher=FAKE)
    pump(root, lambda: str(dlg.start_button["state"]) == "normal")
    dlg.dataset_var.set("/nowhere.jsonl")
    dlg.start_button.invoke()
    pump(root, lambda: dlg.job.status() == "failed" and dlg.message)
    assert "/nowhere.jsonl" in dlg.message
    assert str(dlg.use_button["state"]) == "disabled" and str(dlg.start_button["state"]) == "normal"
    assert "/nowhere.jsonl" in (dlg.job.run_dir / "train.log").read_text()   # the argument list reached it
    dlg.close()
