"""Widgets of the Retrain dialog (app/retrain.py): its strings, the live reward / accuracy
plot (matplotlib embedded with FigureCanvasTkAgg), the base-vs-trained table, the run history.
All of them are filled on the Tk thread from data the dialog already read.
"""
from __future__ import annotations

import tkinter as tk
from pathlib import Path
from tkinter import ttk

from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trainer import jobs_report as report

#: Local UI strings (zh, en); assets/strings_*.json may override them with "retrain.<key>".
TEXT = {
    "title": ("重新训练（GRPO）", "Retrain (GRPO)"),
    "setup": ("训练设置", "Setup"), "recipe": ("配方", "Recipe"), "model": ("基础模型", "Base model"),
    "dataset": ("数据集", "Dataset"), "local": ("本地文件…", "Local file…"),
    "steps": ("步数", "Steps"), "epochs": ("轮数", "Epochs"), "lora": ("LoRA 适配器", "LoRA adapter"),
    "run_name": ("运行名称", "Run name"), "start": ("开始训练", "Start"), "stop": ("停止", "Stop"),
    "resume": ("继续训练", "Resume"),
    "gpu_check": ("正在检测 GPU…", "Checking the GPU…"),
    "gpu": ("GPU：{name}，空闲显存 {free} MB / {total} MB", "GPU: {name}, {free} MB free of {total} MB"),
    "no_gpu": ("未检测到 CUDA GPU：只能运行 CPU 冒烟配方（验证流程，不会提升模型）。",
               "No CUDA GPU found: only the CPU smoke recipe can run (it proves the pipeline; "
               "it does not improve the model)."),
    "idle": ("尚未开始", "No run yet"), "progress": ("第 {step} / {total} 步", "Step {step} / {total}"),
    "eta": ("剩余约 {eta}", "about {eta} left"),
    "status": ("运行 {name}：{status}", "Run {name}: {status}"),
    "sample": ("最新样本", "Latest completion"), "log": ("日志", "Log"),
    "compare": ("对比（测试集，训练从未见过）", "Compare (test questions, never seen in training)"),
    "limit": ("题数", "Questions"),
    "questions": ("题数（95% 区间：Wilson）", "questions (95 % interval: Wilson)"),
    "stopping_after": ("第 {step} 步结束后停止…（最多等 {wait}）", "stopping after step {step}… (waiting up to {wait})"),
    "stop_why": ("停止原因：{detail}", "Why it stopped: {detail}"),
    "evaluate": ("评估", "Evaluate"), "use": ("使用此模型", "Use this model"),
    "metric": ("指标", "Metric"), "base": ("基础", "Base"), "trained": ("训练后", "Trained"),
    "history": ("历史运行", "Run history"),
    "evaluating": ("正在评估基础模型与训练后模型…", "Evaluating base and trained model…"),
    "adopted": ("已启用 {name}：下一个回答将由它生成。", "Now answering with {name}."),
    "no_ckpt": ("这个运行没有检查点可用。", "This run has no checkpoint to use."),
    "keeps_running": ("训练仍在后台运行；重新打开此窗口即可继续查看。",
                      "Training keeps running in the background; reopen this dialog to follow it."),
    "error": ("出错", "Error"),
    "starting": ("启动中", "starting"), "running": ("训练中", "running"),
    "stopping": ("停止中", "stopping"), "stopped": ("已停止", "stopped"),
    "finished": ("已完成", "finished"), "failed": ("失败", "failed"),
}
METRIC_NAMES = {"strict": "strict accuracy", "lenient": "lenient accuracy", "format_rate": "format rate"}


def fmt(value) -> str:
    return "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def printable(text: str) -> str:
    """``text`` with control characters (a random model's output may hold them) shown as "·"."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "·" for ch in text)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"



class RewardPlot(ttk.Frame):
    """Mean reward per reward function (and the total) over steps; held-out accuracy below."""

    def __init__(self, parent):
        super().__init__(parent)
        self.figure = Figure(figsize=(6.4, 4.4), dpi=100, layout="constrained")
        self.ax_reward = self.figure.add_subplot(2, 1, 1)
        self.ax_acc = self.figure.add_subplot(2, 1, 2, sharex=self.ax_reward)
        self.canvas = FigureCanvasTkAgg(self.figure, master=self)
        self.canvas.get_tk_widget().pack(fill="both", expand=True)
        self.show([])

    def show(self, rows: list[dict]) -> None:
        """Redraw from progress rows (see trainer/jobs_report.py for the series)."""
        ax_r, ax_a = self.ax_reward, self.ax_acc
        ax_r.clear()
        ax_a.clear()
        for name, (xs, ys) in report.reward_series(rows).items():
            ax_r.plot(xs, ys, marker="o", markersize=3, lw=2.2 if name == "reward" else 1.2,
                      label="total" if name == "reward" else name)
        xs, ys = report.accuracy_series(rows)
        ax_a.plot(xs, ys, marker="o", color="tab:green")
        ax_r.set_ylabel("mean reward")
        ax_a.set_ylabel("eval accuracy")
        ax_a.set_xlabel("step")
        ax_a.set_ylim(-0.05, 1.05)
        ax_a.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax_r.lines:
            ax_r.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3,
                        frameon=False, borderaxespad=0)
        for ax in (ax_r, ax_a):
            ax.grid(alpha=0.3)
        if self.canvas.get_tk_widget().winfo_width() > 50:    # not before the first layout
            self.canvas.draw_idle()


def set_text(widget: tk.Text, text: str, end: bool = False) -> None:
    """Replace a read-only Text's content (no-op when unchanged, so scrolling is kept)."""
    if widget.get("1.0", "end-1c") == text:
        return
    widget.configure(state="normal")
    widget.delete("1.0", "end")
    widget.insert("1.0", text)
    widget.configure(state="disabled")
    if end:
        widget.see("end")


class LivePanel(ttk.Frame):
    """Run status with step / total and ETA, the latest sampled completion, the log tail."""

    def __init__(self, parent, t):
        super().__init__(parent, padding=(6, 0, 0, 0))
        self.t = t
        self.columnconfigure(0, weight=1)
        self.status_label = ttk.Label(self, text=t("idle"), font=("TkDefaultFont", 11, "bold"))
        self.status_label.grid(row=0, column=0, sticky="w")
        self.progress_bar = ttk.Progressbar(self, mode="determinate", maximum=1.0)
        self.progress_bar.grid(row=1, column=0, sticky="ew", pady=4)
        self.eta_label = ttk.Label(self, text="")
        self.eta_label.grid(row=2, column=0, sticky="w")
        ttk.Label(self, text=t("sample")).grid(row=3, column=0, sticky="w", pady=(6, 0))
        self.sample_text = tk.Text(self, height=7, wrap="word", state="disabled", relief="solid", bd=1)
        self.sample_text.grid(row=4, column=0, sticky="nsew")
        ttk.Label(self, text=t("log")).grid(row=5, column=0, sticky="w", pady=(6, 0))
        self.log_text = tk.Text(self, height=9, wrap="none", state="disabled", relief="solid", bd=1,
                                font=("TkFixedFont", 9))
        self.log_text.grid(row=6, column=0, sticky="nsew")
        self.rowconfigure(4, weight=1)
        self.rowconfigure(6, weight=2)

    def show_status(self, name: str, status: str, step: int, total: int, eta: float | None) -> None:
        """Status line ("Run NAME: running · Step 3 / 40"), progress bar, ETA (seconds or None)."""
        text = self.t("status", name=name, status=self.t(status) if status in TEXT else status)
        if total:
            text += "  ·  " + self.t("progress", step=step, total=total)
            self.progress_bar.configure(value=step / total)
        self.status_label.configure(text=text)
        self.eta_label.configure(text=self.t("eta", eta=duration(eta)) if eta is not None else "")

    def show_sample(self, sample: dict | None) -> None:
        """A samples.jsonl row: step, reward, prompt (cut to 160 characters), completion."""
        if sample:
            prompt = str(sample.get("prompt", "")).lstrip("\ufffd")
            prompt = prompt if len(prompt) < 160 else prompt[:157] + "…"
            set_text(self.sample_text, f"step {sample.get('step')}  ·  reward {fmt(sample.get('reward'))}\n"
                                       f"» {prompt}\n\n{printable(str(sample.get('completion', '')))}")

    def show_log(self, text: str) -> None:
        set_text(self.log_text, text, end=True)


class ComparisonTable(ttk.Treeview):
    """One row per metric (strict, lenient, format rate); columns base and trained."""

    def __init__(self, parent, t):
        super().__init__(parent, columns=("base", "trained"), height=4)
        self.t = t
        self.heading("#0", text=t("metric"))
        self.heading("base", text=t("base"))
        self.heading("trained", text=t("trained"))
        for col, width in (("#0", 150), ("base", 130), ("trained", 130)):
            self.column(col, width=width, anchor="w" if col == "#0" else "e")

    def show(self, comparison: dict | None) -> None:
        """``comparison``: ``{"base": {metric: value, "<metric>_ci95": [lo, hi], "n": int},
        "trained": {...}}`` or None (empty). Accuracies show their 95 % interval; a last row
        gives the number of test questions."""
        self.delete(*self.get_children())
        if not comparison:
            return
        for key in report.METRICS:
            self.insert("", "end", text=METRIC_NAMES[key], values=tuple(
                with_interval(comparison[side], key) for side in ("base", "trained")))
        self.insert("", "end", text=self.t("questions"), values=tuple(
            fmt(comparison[side].get("n")) for side in ("base", "trained")))


def with_interval(metrics: dict, key: str) -> str:
    """``0.450 [0.26–0.66]`` when the interval is known, else the value alone."""
    ci = metrics.get(f"{key}_ci95")
    value = fmt(metrics.get(key))
    return f"{value} [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else value


class HistoryTable(ttk.Treeview):
    """Every run folder with its numbers; the item id is the run folder path."""

    COLUMNS = (("status", 70), ("steps", 60), ("reward", 60), ("best_acc", 70), ("strict", 60),
               ("model", 120), ("started", 135))

    def __init__(self, parent, t):
        super().__init__(parent, columns=[c for c, _ in self.COLUMNS], height=5)
        self.t = t
        self.heading("#0", text="run")
        self.column("#0", width=150)
        for col, width in self.COLUMNS:
            self.heading(col, text=col.replace("_", " "))
            self.column(col, width=width, anchor="w")

    def show(self, runs) -> None:
        """``runs``: :class:`trainer.jobs_report.RunInfo` list (newest first)."""
        self.delete(*self.get_children())
        for r in runs:
            steps = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
            self.insert("", "end", iid=str(r.path), text=r.name, values=(
                self.t(r.status) if r.status in TEXT else r.status, steps, fmt(r.last_reward),
                fmt(r.best_accuracy), fmt(r.final_eval.get("strict")), Path(r.model).name,
                r.started[:16].replace("T", " ")))
