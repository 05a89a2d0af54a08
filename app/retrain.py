"""The Retrain dialog: launch a GRPO run, watch it live, stop it, compare, adopt the result.

Training runs in a subprocess (``python -m trainer train``, via :mod:`trainer.jobs`), never in
this process. Threads: the Tk thread polls the run folder every ``POLL_MS`` with ``after()``
(it only reads what was appended since the last poll); anything that blocks — the GPU probe,
stopping (SIGINT, wait, kill), the evaluation, registering a model — runs on a worker of
:class:`app.worker.Dispatcher`, whose events come back on the Tk thread.

Opening is quick: the window appears with its controls at once; matplotlib (the plot), the
recipe list and the run history are loaded on a worker and filled in afterwards (the dialog's
``loaded`` turns True). What to train on (knowledge base tasks, gsm8k, both) is
app/retrain_data.py; the strings are app/retrain_text.py (zh and en, through app/i18n.py).

Closing the dialog (or the app) leaves a run going; opening the dialog again finds it from
its run folder (``<data dir>/runs/<name>/run.json``) and follows it again.
"""
from __future__ import annotations

import json
import tkinter as tk
from tkinter import messagebox, ttk

from app.layout import place
from app.retrain_compare import DEFAULT_EVAL_LIMIT, CompareMixin  # noqa: F401 - re-exported
from app.retrain_data import DataPanel
from app.retrain_text import Text
from app.retrain_views import HistoryTable, LivePanel
from app.retrain_views import duration as report_duration
from app.worker import Dispatcher
from trainer import jobs
from trainer import jobs_report as report

POLL_MS = 500
LOG_TAIL = 200          # raw lines read; the log pane shows the trainer's own ones (details: all)


def open_retrain_dialog(root, services, *, launcher: list[str] | None = None, kb: str | None = None) -> RetrainDialog:
    """Open the Retrain dialog (or raise the one already open) over ``root``.

    Args:
        root: the main Tk window.
        services: ``app.services.Services`` (uses ``.settings``, ``.registry``, ``.answers``,
            ``.kb`` for the list of knowledge bases).
        launcher: command that replaces ``python -m trainer`` (tests: a fake trainer).
        kb: the knowledge base offered as "my knowledge base" (the main window's current one).

    Returns:
        The dialog (a ``tk.Toplevel``).
    """
    existing = getattr(root, "_tqts_retrain", None)
    if existing is not None and existing.winfo_exists():
        existing.deiconify()
        existing.lift()
        return existing
    dlg = RetrainDialog(root, services, launcher=launcher, kb=kb)
    root._tqts_retrain = dlg
    return dlg


class RetrainDialog(CompareMixin, tk.Toplevel):
    """The dialog. Attributes used by tests: ``start_button``, ``stop_button``, ``use_button``,
    ``evaluate_button``, ``job`` (the followed :class:`trainer.jobs.TrainingJob`), ``rows``
    (its progress rows), ``comparison`` (the last eval result), ``message`` (status line),
    ``data`` (the :class:`app.retrain_data.DataPanel`), ``loaded`` (plot, recipes and history
    filled in), ``plot`` (None until then)."""

    def __init__(self, root, services, *, launcher: list[str] | None = None, kb: str | None = None):
        super().__init__(root)
        self.services, self.settings = services, services.settings
        self.launcher = launcher
        self.t = Text(getattr(self.settings, "ui_language", "zh"))
        self.title(self.t("title"))
        place(self, (1180, 800), minimum=(900, 560))
        self.job: jobs.TrainingJob | None = None
        self.rows: list[dict] = []
        self.comparison: dict | None = None
        self.gpu: dict | None = None
        self.recipes: list[dict] = []          # the recipes this machine can run
        self._all_recipes: list[dict] | None = None
        self.plot = None
        self.loaded = False
        self._kb = kb
        self._eval: report.EvalJob | None = None
        self._busy = ""            # "stopping" | "evaluating" | "adopting" | ""
        self._closed = False
        self._was_live = False
        self.message = ""
        self.adopted = None
        self.dispatcher = Dispatcher(self, interval_ms=100)
        self._build()
        self.protocol("WM_DELETE_WINDOW", lambda: self.close(notify=True))
        self._probe_gpu()
        self._load()
        self._after = self.after(POLL_MS, self._tick)

    def _load(self) -> None:
        """On a worker: import matplotlib (the plot module), read the recipes and the run
        history; then, on the Tk thread, build the plot and fill everything in."""
        settings, t = self.settings, self.t
        from app.i18n import cjk_family

        self._family = cjk_family(self)

        def work(emit, cancel):
            import importlib

            importlib.import_module("app.retrain_plot").warm(t, self._family)
            return jobs.list_recipes(), report.list_runs(settings)

        self.dispatcher.submit("retrain-load", work, self._loaded)

    def _loaded(self, kind: str, payload) -> None:
        from app.retrain_plot import RewardPlot

        recipes, runs = payload if kind == "finished" else ([], [])
        self._plot_holder.destroy()
        self.plot = RewardPlot(self._plot_frame, self.t, self._family)
        self.plot.pack(fill="both", expand=True)
        self.ax_reward, self.ax_acc = self.plot.ax_reward, self.plot.ax_acc
        self.update_idletasks()
        self._body.sashpos(0, int(self._body.winfo_width() * 0.58))   # the plot gets most of the width
        self._all_recipes = recipes
        self.history.show(runs)
        live = [r for r in runs if r.status in ("starting", "running", "stopping")]
        pick = (live or runs or [None])[0]
        if pick is not None and self.job is None:
            self._follow(jobs.TrainingJob.attach(pick.path))
        self.loaded = True
        self._fill_recipes()
        if kind == "failed":
            self._message(str(payload), error=True)

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.columnconfigure(0, weight=1)
        self.rowconfigure(1, weight=1)
        self._build_setup().grid(row=0, column=0, sticky="ew", padx=8, pady=(8, 4))
        body = self._body = ttk.PanedWindow(self, orient="horizontal")
        body.grid(row=1, column=0, sticky="nsew", padx=8, pady=4)
        body.add(self._build_plot(body), weight=3)
        body.add(self._build_live(body), weight=2)
        bottom = ttk.Frame(self)
        bottom.grid(row=2, column=0, sticky="ew", padx=8, pady=(4, 8))
        bottom.columnconfigure(1, weight=1)
        self._build_compare(bottom).grid(row=0, column=0, sticky="nsew", padx=(0, 8))
        self._build_history(bottom).grid(row=0, column=1, sticky="nsew")

    def _build_setup(self) -> ttk.LabelFrame:
        f = ttk.LabelFrame(self, text=self.t("setup"), padding=6)
        f.columnconfigure(3, weight=1)
        self.data = DataPanel(f, self, kb=self._kb)
        self.data.grid(row=0, column=0, columnspan=6, sticky="ew", pady=(0, 6))
        self.dataset_var = self.data.dataset_var
        self.recipe_var = tk.StringVar()
        self.model_var = tk.StringVar(value=self._default_model())
        self.steps_var = tk.StringVar(value="")
        self.epochs_var = tk.StringVar(value="")
        self.lora_var = tk.BooleanVar(value=True)
        self.run_name_var = tk.StringVar(value="")
        self.recipe_box = ttk.Combobox(f, textvariable=self.recipe_var, state="readonly", width=20)
        self.recipe_box.bind("<<ComboboxSelected>>", lambda e: self._recipe_chosen())
        self.model_box = ttk.Combobox(f, textvariable=self.model_var, width=30,
                                      values=self._model_names())
        for i, (label, widget) in enumerate(((self.t("recipe"), self.recipe_box), (self.t("model"), self.model_box))):
            ttk.Label(f, text=label).grid(row=1, column=2 * i, sticky="w", padx=(0, 4))
            widget.grid(row=1, column=2 * i + 1, sticky="w", padx=(0, 10))
        row = ttk.Frame(f)
        row.grid(row=2, column=0, columnspan=6, sticky="ew", pady=(6, 0))
        for label, var, width in ((self.t("steps"), self.steps_var, 6),
                                  (self.t("epochs"), self.epochs_var, 5),
                                  (self.t("run_name"), self.run_name_var, 18)):
            ttk.Label(row, text=label).pack(side="left", padx=(0, 4))
            ttk.Entry(row, textvariable=var, width=width).pack(side="left", padx=(0, 12))
        ttk.Checkbutton(row, text=self.t("lora"), variable=self.lora_var).pack(side="left")
        self.resume_button = ttk.Button(row, text=self.t("resume"), command=self.resume, state="disabled")
        self.resume_button.pack(side="right")
        self.stop_button = ttk.Button(row, text=self.t("stop"), command=self.stop, state="disabled")
        self.stop_button.pack(side="right", padx=(0, 6))
        self.start_button = ttk.Button(row, text=self.t("start"), command=self.start, state="disabled")
        self.start_button.pack(side="right", padx=6)
        self.recipe_label = ttk.Label(f, text="", foreground="#555")
        self.recipe_label.grid(row=1, column=4, columnspan=2, sticky="w")
        self.gpu_label = ttk.Label(f, text=self.t("gpu_check"), foreground="#555")
        self.gpu_label.grid(row=3, column=0, columnspan=6, sticky="w", pady=(4, 0))
        return f

    def _build_plot(self, parent) -> ttk.Frame:
        """A frame that shows "loading…" until matplotlib is imported (see :meth:`_load`)."""
        self._plot_frame = ttk.Frame(parent)
        self._plot_holder = ttk.Label(self._plot_frame, text=self.t("loading"), anchor="center")
        self._plot_holder.pack(fill="both", expand=True)
        return self._plot_frame

    def _build_live(self, parent) -> ttk.Frame:
        self.live = LivePanel(parent, self.t)
        self.sample_text, self.log_text = self.live.sample_text, self.live.log_text
        return self.live

    def _build_history(self, parent) -> ttk.LabelFrame:
        f = ttk.LabelFrame(parent, text=self.t("history"), padding=6)
        self.history = HistoryTable(f, self.t)
        self.history.pack(fill="both", expand=True)
        self.history.bind("<<TreeviewSelect>>", lambda e: self._history_chosen())
        return f

    # -- choices -----------------------------------------------------------------------
    def _model_names(self) -> list[str]:
        try:
            names = [e.name for e in self.services.registry.list() if e.kind != "trained"]
        except Exception:  # noqa: BLE001 - no registry yet: the settings' model only
            names = []
        model = self.settings.model
        return names if model in names else [model, *names]

    def _default_model(self) -> str:
        try:
            active = self.services.registry.active()
        except Exception:  # noqa: BLE001
            active = None
        if active is not None and active.kind == "trained" and active.base:
            return active.base
        return active.name if active is not None else self.settings.model

    def _recipe_chosen(self) -> None:
        recipe = next((r for r in self.recipes if r["name"] == self.recipe_var.get()), None)
        if recipe:
            steps = recipe["max_steps"] if recipe["max_steps"] and recipe["max_steps"] > 0 else ""
            self.steps_var.set(str(steps))
            self.epochs_var.set("" if steps else str(recipe.get("epochs") or ""))
            self.lora_var.set(bool(recipe["lora"]))
            self.recipe_label.configure(text=self.t.recipe(recipe["name"], recipe.get("description", "")))
            if not recipe.get("grounded"):
                self.data.set_recipe_dataset(str(recipe.get("dataset") or jobs.DEFAULT_DATASET))

    def _fill_recipes(self) -> None:
        """The recipes offered: those this machine can run (every one with a GPU, else the CPU
        ones) that train on the chosen data (grounded recipes for knowledge-base tasks)."""
        if self.gpu is None or self._all_recipes is None:
            return
        grounded = self.data.grounded()
        self.recipes = [r for r in self._all_recipes if (self.gpu.get("cuda") or r["cpu"])
                        and bool(r.get("grounded")) == grounded]
        names = [r["name"] for r in self.recipes]
        self.recipe_box.configure(values=names)
        if self.recipe_var.get() not in names:
            self.recipe_var.set(names[0] if names else "")
            self._recipe_chosen()
        self._update_buttons()

    def data_changed(self) -> None:
        """The data panel changed (source, knowledge base, tasks built): recipes and buttons."""
        if hasattr(self, "recipe_box"):
            self._fill_recipes()
            self._update_buttons()

    def _probe_gpu(self) -> None:
        self.dispatcher.submit("retrain-gpu", lambda emit, cancel: report.gpu_info(
            self.settings, launcher=self.launcher), self._gpu_event)

    def _gpu_event(self, kind: str, payload) -> None:
        info = payload if kind == "finished" else {"cuda": False, "error": str(payload)}
        self.gpu = info
        if info.get("cuda"):
            self.gpu_label.configure(text=self.t("gpu", name=info.get("name", "?"),
                                                 free=info.get("free_mb", "?"),
                                                 total=info.get("total_mb", "?")))
        else:
            self.gpu_label.configure(text=self.t("no_gpu"), foreground="#a40")
        self._fill_recipes()
        self._update_buttons()

    # -- actions -----------------------------------------------------------------------
    def start(self) -> None:
        """Start button: launch a run with the chosen settings and follow it."""
        try:
            steps = int(self.steps_var.get()) if self.steps_var.get().strip() else None
            epochs = float(self.epochs_var.get()) if self.epochs_var.get().strip() else None
            if not self.data.ready():
                raise ValueError(self.t("tasks_needed"))
            job = jobs.TrainingJob.start(
                self.settings, self.recipe_var.get(), self.model_var.get().strip(),
                max_steps=steps, epochs=epochs,
                lora=self.lora_var.get(), run_name=self.run_name_var.get().strip() or None,
                allow_cpu=not (self.gpu or {}).get("cuda"), launcher=self.launcher, **self.data.train_args())
        except (ValueError, OSError) as e:
            messagebox.showerror(self.t("error"), str(e), parent=self)
            return
        self.run_name_var.set("")
        self._follow(job)
        self._refresh_history()

    def resume(self) -> None:
        """Resume button: continue a stopped run from its latest checkpoint-N (same arguments)."""
        job = self.job
        if job is None or self._live():
            return
        args = job.info().get("args") or {}
        try:
            new = jobs.TrainingJob.start(
                self.settings, args.get("recipe") or self.recipe_var.get(),
                args.get("model") or self.model_var.get(), dataset=args.get("dataset"),
                max_steps=args.get("max_steps"), epochs=args.get("epochs"), lora=args.get("lora"),
                run_name=job.name, allow_cpu=bool(args.get("allow_cpu")), resume=True,
                launcher=self.launcher, mix_dataset=args.get("mix_dataset"), mix_ratio=args.get("mix_ratio"))
        except (ValueError, OSError) as e:
            messagebox.showerror(self.t("error"), str(e), parent=self)
            return
        self._follow(new)

    def stop(self) -> None:
        """Stop button: SIGINT, then wait for the step in progress to end and its checkpoint to
        be saved (the wait is derived from the measured step time, see
        :func:`trainer.jobs.stop_timeout`), kill only after that — on a worker. The message says
        "stopping after step N…" meanwhile."""
        if self.job is None or self._busy:
            return
        self._busy = "stopping"
        job = self.job
        timeout = job.stop_timeout()
        step = (self.rows[-1].get("step", 0) if self.rows else 0) + 1
        self._message(self.t("stopping_after", step=step, wait=report_duration(timeout)))
        self.dispatcher.submit("retrain-stop", lambda emit, cancel: job.stop(timeout=timeout),
                               lambda kind, payload: self._done_busy())
        self._show_status(job, "stopping")
        self._update_buttons()

    def _done_busy(self) -> None:
        self._busy = ""
        self._update_buttons()

    # -- following a run ---------------------------------------------------------------
    def _follow(self, job: jobs.TrainingJob) -> None:
        self.job, self.rows, self.comparison = job, [], None
        self._message("")
        self._show_comparison(json.loads((job.run_dir / "compare.json").read_text(encoding="utf-8"))
                              if (job.run_dir / "compare.json").is_file() else None)
        self._was_live = job.status() not in jobs.FINAL_STATUSES
        if not self._was_live and self.stop_detail():
            self._message(self.t("stop_why", detail=self.stop_detail()))
        self.live.show_sample(job.latest_sample())
        self.live.show_log(job.log_tail(LOG_TAIL))
        self._tick(schedule=False)

    def _tick(self, schedule: bool = True) -> None:
        """Every POLL_MS on the Tk thread: read what the run appended and show it."""
        if self._closed:
            return
        job = self.job
        if job is not None:
            new = job.poll_progress()
            self.rows.extend(new)
            if new:
                self._redraw()
                self._refresh_history()
            status = job.status()
            self._show_status(job, status)
            if self._was_live:
                self.live.show_sample(job.latest_sample())
                self.live.show_log(job.log_tail(LOG_TAIL))
            if status in jobs.FINAL_STATUSES and self._was_live:
                self._was_live = False
                self._run_ended(status)
        self._update_buttons()
        if schedule:
            self._after = self.after(POLL_MS, self._tick)

    def _run_ended(self, status: str) -> None:
        self._refresh_history()
        if status == "failed":
            error = self.job.info().get("error") or self.job.log_tail(1)
            self._message(f"{self.t('failed')}: {error}", error=True)
        elif status == "stopped":
            self._message(self.t("stop_why", detail=self.stop_detail()))
        if status == "finished" and self.comparison is None and self.job.checkpoint() is not None:
            self.evaluate()

    def stop_detail(self) -> str:
        """Why and when the followed run stopped (run.json ``stop``), "" when it did not."""
        stop = (self.job.info().get("stop") or {}) if self.job else {}
        if not stop or stop.get("reason") == "end":
            return ""
        return f"{stop.get('detail', stop.get('reason', ''))} ({str(stop.get('time', ''))[:19].replace('T', ' ')})"

    def _show_status(self, job, status: str) -> None:
        if self._busy == "stopping" and status not in jobs.FINAL_STATUSES:
            status = "stopping"          # from the click on: "stopping…" until the real end state
        last = self.rows[-1] if self.rows else {}
        eta = report.eta_seconds(self.rows) if status == "running" else None
        self.live.show_status(job.name, status, last.get("step", 0), last.get("total_steps") or 0, eta)

    def _redraw(self) -> None:
        if self.plot is not None:
            self.plot.show(self.rows)

    def _refresh_history(self) -> None:
        self.history.show(report.list_runs(self.settings))

    def _history_chosen(self) -> None:
        sel = self.history.selection()
        if sel and (self.job is None or str(self.job.run_dir) != sel[0]) and not self._live():
            self._follow(jobs.TrainingJob.attach(sel[0]))
            self._redraw()

    # -- small helpers -----------------------------------------------------------------
    def _live(self) -> bool:
        return self.job is not None and self.job.status() in ("starting", "running", "stopping")

    def _update_buttons(self) -> None:
        live = self._live()
        ready = self.gpu is not None and bool(self.recipes) and self.loaded and self.data.ready()
        has_ckpt = self.job is not None and not live and self.job.checkpoint() is not None
        resumable = not live and self.job is not None and self.job.resumable() and not self.job.is_alive()
        stopping = self._busy == "stopping"
        states = {self.start_button: ready and not live and self._busy in ("", "stopping"),
                  self.stop_button: live and not stopping,
                  self.resume_button: ready and resumable and not self._busy,
                  self.evaluate_button: has_ckpt and not self._busy,
                  self.use_button: has_ckpt and not self._busy}
        for button, on in states.items():
            button.configure(state="normal" if on else "disabled")

    def _message(self, text: str, error: bool = False) -> None:
        self.message = text
        self.message_label.configure(text=text, foreground="#a00" if error else "#155")

    def close(self, notify: bool = False) -> None:
        """Close the dialog; a running job keeps going (``notify``: say so in a message box);
        an evaluation is stopped."""
        if notify and self._live():
            messagebox.showinfo(self.t("title"), self.t("keeps_running"), parent=self)
        if self._eval is not None:
            self._eval.stop()
        self.data.cancel()
        self._closed = True
        self.after_cancel(self._after)
        self.dispatcher.shutdown(timeout=1)
        self.destroy()
