"""The Retrain dialog's live plot: mean reward per reward function (and the total) over steps,
the guard's held-out accuracy below (matplotlib embedded with FigureCanvasTkAgg).

Importing this module imports matplotlib (about half a second): the dialog imports it on a
worker thread and builds :class:`RewardPlot` on the Tk thread once that is done, so opening the
dialog never waits for it.
"""
from __future__ import annotations

from tkinter import ttk

from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trainer import jobs_report as report

#: Figure margins (fractions), room for the legend above the reward axes.
MARGINS = {"left": 0.11, "right": 0.98, "top": 0.84, "bottom": 0.1, "hspace": 0.28}


def warm(t, family: str | None) -> None:
    """Draw a plot like :class:`RewardPlot`'s once off screen (Agg), so matplotlib's font lookup
    (the CJK family), text layout and first render happen here — on the worker that imports
    this module — and not on the Tk thread when the plot appears. No Tk is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    font = {"family": [family, "DejaVu Sans"]} if family else {}
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    fig.subplots_adjust(**MARGINS)
    ax = fig.add_subplot(2, 1, 1)
    ax.plot([1, 2], [0.0, 1.0], label=t("total"))
    ax.set_ylabel(t("mean_reward"), fontdict=font)
    ax.text(0.5, 0.5, t("no_data"), fontdict=font)
    ax.legend(prop={"size": 7, **font})
    fig.add_subplot(2, 1, 2).set_xlabel(t("step"), fontdict=font)
    FigureCanvasAgg(fig).draw()


class RewardPlot(ttk.Frame):
    """Mean reward per reward function (and the total) over steps; held-out accuracy below.

    Args:
        t: the dialog's strings (:class:`app.retrain_text.Text`): axis labels, reward names.
        family: the CJK font family for Chinese labels (:func:`app.i18n.cjk_family`), or None.
    """

    def __init__(self, parent, t, family: str | None = None):
        super().__init__(parent)
        self.t = t
        self.font = {"family": [family, "DejaVu Sans"]} if family else {}
        self.figure = Figure(figsize=(6.4, 4.4), dpi=100)
        self.figure.subplots_adjust(**MARGINS)      # fixed: constrained layout made each draw ~4x slower
        self.ax_reward = self.figure.add_subplot(2, 1, 1)
        self.ax_acc = self.figure.add_subplot(2, 1, 2, sharex=self.ax_reward)
        self.canvas = FigureCanvasTkAgg(self.figure, master=self)
        self.canvas.get_tk_widget().pack(fill="both", expand=True)
        self.show([])

    def show(self, rows: list[dict]) -> None:
        """Redraw from progress rows (see trainer/jobs_report.py for the series). Without
        points the axes show 0..1 and "no data yet" (not matplotlib's empty −0.05…0.05)."""
        ax_r, ax_a, t, font = self.ax_reward, self.ax_acc, self.t, self.font
        ax_r.clear()
        ax_a.clear()
        series = report.reward_series(rows)
        for name, (xs, ys) in series.items():
            ax_r.plot(xs, ys, marker="o", markersize=3, lw=2.2 if name == "reward" else 1.2,
                      label=t.reward(name))
        xs, ys = report.accuracy_series(rows)
        if xs:
            ax_a.plot(xs, ys, marker="o", color="tab:green")
        ax_r.set_ylabel(t("mean_reward"), fontdict={"size": 8, **font})
        ax_a.set_ylabel(t("eval_accuracy"), fontdict={"size": 8, **font})
        ax_a.set_xlabel(t("step"), fontdict=font)
        ax_a.set_ylim(-0.05, 1.05)
        ax_a.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not series:
            ax_r.set_xlim(0, 10)
            ax_r.set_ylim(0, 1)
            ax_r.text(0.5, 0.5, t("no_data"), transform=ax_r.transAxes, ha="center", va="center",
                      color="#888", fontdict=font)
        if ax_r.lines:
            ax_r.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3,
                        frameon=False, borderaxespad=0, prop={"size": 7, **font})
        for ax in (ax_r, ax_a):
            ax.grid(alpha=0.3)
        if self.canvas.get_tk_widget().winfo_width() > 50:    # not before the first layout
            self.canvas.draw_idle()
