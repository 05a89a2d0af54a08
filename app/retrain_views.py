"""Widgets of the Retrain dialog (app/retrain.py): the live panel (status, sample, the trainer's
log with a details toggle), the base-vs-trained table, the run history. All of them are filled
on the Tk thread from data the dialog already read. The plot is app/retrain_plot.py (matplotlib,
imported off the Tk thread); the strings are app/retrain_text.py.
"""
from __future__ import annotations

import tkinter as tk
from pathlib import Path
from tkinter import ttk

from app.retrain_text import TEXT
from trainer import jobs_report as report


def fmt(value) -> str:
    return "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def printable(text: str) -> str:
    """``text`` with control characters (a random model's output may hold them) shown as "·"."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "·" for ch in text)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"



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
    """Run status with step / total and ETA, the latest sampled completion, the trainer's log
    (its own lines; warnings and progress bars only with "show all output" ticked)."""

    LOG_LINES = 40

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
        self.sample_text = tk.Text(self, height=5, width=40, wrap="word", state="disabled", relief="solid", bd=1)
        self.sample_text.grid(row=4, column=0, sticky="nsew")
        head = ttk.Frame(self)
        head.grid(row=5, column=0, sticky="ew", pady=(6, 0))
        ttk.Label(head, text=t("log")).pack(side="left")
        self.details_var = tk.BooleanVar(value=False)
        self.details_check = ttk.Checkbutton(head, text=t("log_details"), variable=self.details_var,
                                             command=self._redraw_log)
        self.details_check.pack(side="right")
        self.log_text = tk.Text(self, height=7, width=40, wrap="none", state="disabled", relief="solid", bd=1,
                                font=("TkFixedFont", 9))
        self.log_text.grid(row=6, column=0, sticky="nsew")
        self.rowconfigure(4, weight=1)
        self.rowconfigure(6, weight=2)
        self._log_lines: list[str] = []

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
            head = self.t("sample_head", step=sample.get("step"), reward=fmt(sample.get("reward")))
            set_text(self.sample_text, f"{head}\n» {prompt}\n\n{printable(str(sample.get('completion', '')))}")

    def show_log(self, lines: list[str] | str) -> None:
        """The log's last lines (raw, as written); shown filtered unless "show all" is ticked
        (:func:`trainer.jobs_report.trainer_lines`)."""
        self._log_lines = lines.splitlines() if isinstance(lines, str) else list(lines)
        self._redraw_log()

    def _redraw_log(self) -> None:
        lines = self._log_lines if self.details_var.get() else report.trainer_lines(self._log_lines)
        set_text(self.log_text, "\n".join(lines[-self.LOG_LINES:]), end=True)


class ComparisonTable(ttk.Treeview):
    """One row per metric; columns base and trained. gsm8k runs: strict, lenient, format rate
    (with Wilson intervals); grounded runs: correct, cited right, refused right, refused
    wrongly, format on the held-out tasks."""

    def __init__(self, parent, t):
        super().__init__(parent, columns=("base", "trained"), height=6)
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
        grounded = report.is_grounded(comparison.get("trained") or {})
        keys = report.GROUNDED_METRICS if grounded else report.METRICS
        for key in keys:
            self.insert("", "end", text=self.t(f"m_{key}"), values=tuple(
                with_interval(comparison.get(side) or {}, key) for side in ("base", "trained")))
        self.insert("", "end", text=self.t("limit" if grounded else "questions"), values=tuple(
            fmt((comparison.get(side) or {}).get("n")) for side in ("base", "trained")))


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
        super().__init__(parent, columns=[c for c, _ in self.COLUMNS], height=6)
        self.t = t
        self.heading("#0", text=t("run"))
        self.column("#0", width=150)
        for col, width in self.COLUMNS:
            self.heading(col, text=t(f"col_{col}"))
            self.column(col, width=width, anchor="w")

    def show(self, runs) -> None:
        """``runs``: :class:`trainer.jobs_report.RunInfo` list (newest first). The test column
        is the held-out result: strict accuracy (gsm8k) or correct (grounded tasks)."""
        self.delete(*self.get_children())
        for r in runs:
            steps = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
            test = r.final_eval.get("correct", r.final_eval.get("strict"))
            self.insert("", "end", iid=str(r.path), text=r.name, values=(
                self.t(r.status) if r.status in TEXT else r.status, steps, fmt(r.last_reward),
                fmt(r.best_accuracy), fmt(test), Path(r.model).name,
                r.started[:16].replace("T", " ")))
