"""The Retrain dialog's data choice (knowledge base tasks, gsm8k, both), Stop's states and the
log pane, on real Tk (Xvfb) driving tests/fake_trainer.py. The real trainer on a real knowledge
base is tests/test_retrain_kb_e2e.py."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from tests.test_retrain_dialog import FAKE, FakeRegistry, pump

pytestmark = pytest.mark.gui


@dataclass
class KBInfo:
    name: str


class FakeKBs:
    def list_kbs(self):
        return [KBInfo("手册"), KBInfo("other")]


@pytest.fixture
def ui(display, home, monkeypatch):
    import tkinter as tk

    import settings as settings_mod

    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.15")
    root = tk.Tk()
    root.withdraw()
    services = SimpleNamespace(settings=settings_mod.load(), registry=FakeRegistry(), answers=None, kb=FakeKBs())
    yield root, services
    root.destroy()


def open_dialog(ui, **kw):
    from app.retrain import open_retrain_dialog

    root, services = ui
    dlg = open_retrain_dialog(root, services, launcher=FAKE, **kw)
    pump(root, lambda: dlg.loaded and dlg.gpu is not None)
    return dlg


def test_knowledge_base_tasks_then_data_mix_run_compare_adopt(ui):
    root, services = ui
    dlg = open_dialog(ui, kb="手册")
    assert dlg.data.source() == "kb" and "手册" in dlg.data.source_buttons["kb"]["text"]
    assert set(dlg.recipe_box["values"]) == {"grounded-cpu-smoke"}      # CPU + grounded recipes only
    assert str(dlg.start_button["state"]) == "disabled"                   # no tasks yet
    assert dlg.t("tasks_none") in dlg.data.summary_label["text"]

    dlg.data.build_button.invoke()
    seen = []
    pump(root, lambda: seen.append(float(dlg.data.progress["value"])) or dlg.data.tasks is not None)
    assert any(0 < v < 1 for v in seen), seen                             # progress moved through the build
    summary = dlg.data.summary_label["text"]
    assert "10" in summary and "8" in summary and "2" in summary          # tasks, train, held-out
    examples = dlg.data.examples_text.get("1.0", "end").strip().splitlines()
    assert len(examples) == 3 and all("问题" in line for line in examples)
    path = dlg.data.tasks["path"]
    assert path.endswith(".jsonl") and "手册-" in path
    pump(root, lambda: str(dlg.start_button["state"]) == "normal")

    dlg.data.source_var.set("both")                                       # tasks + gsm8k mixed
    dlg.data._source_changed()
    dlg.data.dataset_var.set("/data/gsm8k_zh")
    dlg.data.mix_var.set("0.3")
    dlg.steps_var.set("4")
    dlg.run_name_var.set("kb-mix")
    dlg.start_button.invoke()
    pump(root, lambda: dlg.comparison is not None and not dlg._busy)     # finished -> held-out eval
    argv = (dlg.job.run_dir / "train.log").read_text().splitlines()[0]
    assert f"--dataset {path}" in argv and "--mix-dataset /data/gsm8k_zh --mix-ratio 0.3" in argv
    assert "grounded-cpu-smoke" in argv
    report_log = (dlg.job.run_dir / "compare-report.log").read_text()
    assert f"--tasks {path}" in report_log and "--no-think" in report_log  # the recipe's prompt
    assert dlg.comparison["trained"]["correct"] == 0.5 and dlg.comparison["base"]["correct"] == 0.0
    rows = [dlg.compare_tree.item(i) for i in dlg.compare_tree.get_children()]
    assert [r["text"] for r in rows[:3]] == [dlg.t("m_correct"), dlg.t("m_cited_right"), dlg.t("m_refused_right")]
    dlg.use_button.invoke()
    pump(root, lambda: dlg.adopted is not None)
    assert services.registry.active().name == "grpo-kb-mix"

    dlg.close()
    again = open_dialog(ui, kb="手册")                                  # the built tasks are offered again
    assert again.data.tasks is not None and again.data.tasks["path"] == path
    again.close()


def test_gsm8k_choice_offers_the_math_recipes(ui):
    dlg = open_dialog(ui)                                  # no knowledge base given: gsm8k
    assert dlg.data.source() == "gsm8k" and dlg.recipe_var.get() == "smoke-cpu"
    assert "grounded-cpu-smoke" not in dlg.recipe_box["values"]
    assert str(dlg.start_button["state"]) == "normal"
    dlg.close()


def test_a_bad_knowledge_base_says_why(ui):
    root, _ = ui
    dlg = open_dialog(ui, kb="missing")
    dlg.data.kb_var.set("missing")                         # the fake trainer refuses it
    dlg.data.build_button.invoke()
    pump(root, lambda: dlg.data.building is None and "missing" in dlg.data.summary_label["text"])
    assert "add documents first" in dlg.data.summary_label["text"] and dlg.data.tasks is None
    assert str(dlg.start_button["state"]) == "disabled"
    dlg.close()


def test_stop_says_stopping_then_the_real_state_while_the_process_exits(ui, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT_DELAY", "600")       # the process lingers after run.json says stopped
    root, _ = ui
    dlg = open_dialog(ui)
    dlg.steps_var.set("100000")
    dlg.start_button.invoke()
    pump(root, lambda: len(dlg.rows) >= 1)
    dlg.stop_button.invoke()
    assert dlg.t("stopping") in dlg.live.status_label["text"]            # at once, before the trainer answers
    assert str(dlg.stop_button["state"]) == "disabled"
    pump(root, lambda: dlg.t("stopped") in dlg.live.status_label["text"])
    assert dlg.job.proc.poll() is None                                     # shown before the process is gone
    pump(root, lambda: str(dlg.start_button["state"]) == "normal")
    assert str(dlg.resume_button["state"]) == "disabled"                  # not while it still exits
    dlg.job.proc.kill()
    dlg.job.proc.wait(60)
    pump(root, lambda: str(dlg.resume_button["state"]) == "normal")
    dlg.close()


def test_log_pane_shows_the_trainers_lines_and_the_rest_on_request(ui, monkeypatch):
    monkeypatch.setenv("FAKE_NOISE", "1")
    root, _ = ui
    dlg = open_dialog(ui)
    dlg.steps_var.set("3")
    dlg.start_button.invoke()
    pump(root, lambda: dlg.job is not None and dlg.job.status() == "finished" and "step 3/3" in
         dlg.log_text.get("1.0", "end"))
    text = dlg.log_text.get("1.0", "end")
    assert "FutureWarning" not in text and "█" not in text and "warnings.warn" not in text
    dlg.live.details_check.invoke()
    text = dlg.log_text.get("1.0", "end")
    assert "FutureWarning" in text and "█" in text and "step 3/3" in text
    dlg.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_plot_and_tables_speak_the_ui_language(ui, lang):
    root, services = ui
    services.settings.ui_language = lang
    dlg = open_dialog(ui, kb="手册")
    assert dlg.plot.ax_reward.get_ylabel() == ("平均奖励" if lang == "zh" else "mean reward")
    assert dlg.history.heading("#0")["text"] == ("运行" if lang == "zh" else "run")
    assert dlg.recipe_label["text"] == dlg.t.recipe("grounded-cpu-smoke", "")
    assert ("冒烟" in dlg.recipe_label["text"]) == (lang == "zh")
    assert ax_range(dlg.plot.ax_reward) == (0, 1)          # an empty plot has a readable axis
    dlg.close()


def ax_range(ax):
    return tuple(round(v) for v in ax.get_ylim())
