"""The Retrain dialog: launch a GRPO run, watch it live, stop it, compare, adopt the result.

Training runs in a subprocess (``python -m trainer train``, via :mod:`trainer.jobs`), never in
this process. Threads: the Tk thread polls the run folder every ``POLL_MS`` with ``after()``
(it only reads what was appended since the last poll); anything that blocks — the GPU probe,
stopping (SIGINT, wait, kill), the evaluation, registering a model — runs on a worker of
:class:`app.worker.Dispatcher`, whose events come back on the Tk thread.

Closing the dialog (or the app) leaves a run going; opening the dialog again finds it from
its run folder (``<data dir>/runs/<name>/run.json``) and follows it again.
"""
from __future__ import annotations

import json
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, messagebox, ttk

from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from app.worker import Dispatcher
from trainer import jobs

POLL_MS = 500
DEFAULT_EVAL_LIMIT = 20

#: Local UI strings (zh, en); assets/strings_*.json may override them with "retrain.<key>".
TEXT = {
    "title": ("重新训练（GRPO）", "Retrain (GRPO)"),
    "setup": ("训练设置", "Setup"), "recipe": ("配方", "Recipe"), "model": ("基础模型", "Base model"),
    "dataset": ("数据集", "Dataset"), "local": ("本地文件…", "Local file…"),
    "steps": ("步数", "Steps"), "epochs": ("轮数", "Epochs"), "lora": ("LoRA 适配器", "LoRA adapter"),
    "run_name": ("运行名称", "Run name"), "start": ("开始训练", "Start"), "stop": ("停止", "Stop"),
    "gpu_check": ("正在检测 GPU…", "Checking the GPU…"),
    "gpu": ("GPU：{name}，空闲显存 {free} MB / {total} MB", "GPU: {name}, {free} MB free of {total} MB"),
    "no_gpu": ("未检测到 CUDA GPU：只能运行 CPU 冒烟配方（验证流程，不会提升模型）。",
               "No CUDA GPU found: only the CPU smoke recipe can run (it proves the pipeline; "
               "it does not improve the model)."),
    "idle": ("尚未开始", "No run yet"), "progress": ("第 {step} / {total} 步", "Step {step} / {total}"),
    "eta": ("剩余约 {eta}", "about {eta} left"),
    "status": ("运行 {name}：{status}", "Run {name}: {status}"),
    "sample": ("最新样本", "Latest completion"), "log": ("日志", "Log"),
    "compare": ("对比（留出集）", "Compare (held-out split)"), "limit": ("题数", "Questions"),
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


def open_retrain_dialog(root, services, *, launcher: list[str] | None = None) -> RetrainDialog:
    """Open the Retrain dialog (or raise the one already open) over ``root``.

    Args:
        root: the main Tk window.
        services: ``app.services.Services`` (uses ``.settings``, ``.registry``, ``.answers``).
        launcher: command that replaces ``python -m trainer`` (tests: a fake trainer).

    Returns:
        The dialog (a ``tk.Toplevel``).
    """
    existing = getattr(root, "_tqts_retrain", None)
    if existing is not None and existing.winfo_exists():
        existing.deiconify()
        existing.lift()
        return existing
    dlg = RetrainDialog(root, services, launcher=launcher)
    root._tqts_retrain = dlg
    return dlg


def _fmt(value) -> str:
    return "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _printable(text: str) -> str:
    """``text`` with control characters (a random model's output may hold them) shown as "·"."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "·" for ch in text)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RetrainDialog(tk.Toplevel):
    """The dialog. Attributes used by tests: ``start_button``, ``stop_button``, ``use_button``,
    ``evaluate_button``, ``job`` (the followed :class:`trainer.jobs.TrainingJob`), ``rows``
    (its progress rows), ``comparison`` (the last eval result), ``message`` (status line)."""

    def __init__(self, root, services, *, launcher: list[str] | None = None):
        super().__init__(root)
        self.services, self.settings = services, services.settings
        self.launcher = launcher
        lang = getattr(self.settings, "ui_language", "zh")
        self._lang = 0 if lang == "zh" else 1
        self.title(self.t("title"))
        self.geometry("1180x800")
        self.job: jobs.TrainingJob | None = None
        self.rows: list[dict] = []
        self.comparison: dict | None = None
        self.gpu: dict | None = None
        self._eval: jobs.EvalJob | None = None
        self._busy = ""            # "stopping" | "evaluating" | "adopting" | ""
        self._closed = False
        self._was_live = False
        self.message = ""
        self.adopted = None
        self.dispatcher = Dispatcher(self, interval_ms=100)
        self._build()
        self.protocol("WM_DELETE_WINDOW", lambda: self.close(notify=True))
        self._probe_gpu()
        self._reopen()
        self._after = self.after(POLL_MS, self._tick)

    def t(self, key: str, **kw) -> str:
        """The UI string ``key`` in the settings' language."""
        text = TEXT[key][self._lang]
        try:
            from app.i18n import Strings

            text = Strings(("zh", "en")[self._lang])._table.get(f"retrain.{key}", text)
        except Exception:  # noqa: BLE001 - strings are optional
            pass
        return text.format(**kw) if kw else text

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.columnconfigure(0, weight=1)
        self.rowconfigure(1, weight=1)
        self._build_setup().grid(row=0, column=0, sticky="ew", padx=8, pady=(8, 4))
        body = ttk.PanedWindow(self, orient="horizontal")
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
        self.recipe_var = tk.StringVar()
        self.model_var = tk.StringVar(value=self._default_model())
        self.dataset_var = tk.StringVar(value=jobs.DEFAULT_DATASET)
        self.steps_var = tk.StringVar(value="")
        self.epochs_var = tk.StringVar(value="")
        self.lora_var = tk.BooleanVar(value=True)
        self.run_name_var = tk.StringVar(value="")
        self.recipe_box = ttk.Combobox(f, textvariable=self.recipe_var, state="readonly", width=16)
        self.recipe_box.bind("<<ComboboxSelected>>", lambda e: self._recipe_chosen())
        self.model_box = ttk.Combobox(f, textvariable=self.model_var, width=30,
                                      values=self._model_names())
        cells = [(self.t("recipe"), self.recipe_box), (self.t("model"), self.model_box),
                 (self.t("dataset"), ttk.Entry(f, textvariable=self.dataset_var, width=34))]
        for i, (label, widget) in enumerate(cells):
            ttk.Label(f, text=label).grid(row=0, column=2 * i, sticky="w", padx=(0, 4))
            widget.grid(row=0, column=2 * i + 1, sticky="ew", padx=(0, 10))
        ttk.Button(f, text=self.t("local"), command=self._pick_dataset).grid(row=0, column=6)
        row = ttk.Frame(f)
        row.grid(row=1, column=0, columnspan=8, sticky="ew", pady=(6, 0))
        for label, var, width in ((self.t("steps"), self.steps_var, 6),
                                  (self.t("epochs"), self.epochs_var, 5),
                                  (self.t("run_name"), self.run_name_var, 18)):
            ttk.Label(row, text=label).pack(side="left", padx=(0, 4))
            ttk.Entry(row, textvariable=var, width=width).pack(side="left", padx=(0, 12))
        ttk.Checkbutton(row, text=self.t("lora"), variable=self.lora_var).pack(side="left")
        self.stop_button = ttk.Button(row, text=self.t("stop"), command=self.stop, state="disabled")
        self.stop_button.pack(side="right")
        self.start_button = ttk.Button(row, text=self.t("start"), command=self.start, state="disabled")
        self.start_button.pack(side="right", padx=6)
        self.gpu_label = ttk.Label(f, text=self.t("gpu_check"), foreground="#555")
        self.gpu_label.grid(row=2, column=0, columnspan=8, sticky="w", pady=(6, 0))
        self.recipe_label = ttk.Label(f, text="", foreground="#555")
        self.recipe_label.grid(row=3, column=0, columnspan=8, sticky="w")
        return f

    def _build_plot(self, parent) -> ttk.Frame:
        f = ttk.Frame(parent)
        self.figure = Figure(figsize=(6.4, 4.4), dpi=100, layout="constrained")
        self.ax_reward = self.figure.add_subplot(2, 1, 1)
        self.ax_acc = self.figure.add_subplot(2, 1, 2, sharex=self.ax_reward)
        self.canvas = FigureCanvasTkAgg(self.figure, master=f)
        self.canvas.get_tk_widget().pack(fill="both", expand=True)
        self._redraw()
        return f

    def _build_live(self, parent) -> ttk.Frame:
        f = ttk.Frame(parent, padding=(6, 0, 0, 0))
        f.columnconfigure(0, weight=1)
        self.status_label = ttk.Label(f, text=self.t("idle"), font=("TkDefaultFont", 11, "bold"))
        self.status_label.grid(row=0, column=0, sticky="w")
        self.progress_bar = ttk.Progressbar(f, mode="determinate", maximum=1.0)
        self.progress_bar.grid(row=1, column=0, sticky="ew", pady=4)
        self.eta_label = ttk.Label(f, text="")
        self.eta_label.grid(row=2, column=0, sticky="w")
        ttk.Label(f, text=self.t("sample")).grid(row=3, column=0, sticky="w", pady=(6, 0))
        self.sample_text = tk.Text(f, height=7, wrap="word", state="disabled", relief="solid", bd=1)
        self.sample_text.grid(row=4, column=0, sticky="nsew")
        ttk.Label(f, text=self.t("log")).grid(row=5, column=0, sticky="w", pady=(6, 0))
        self.log_text = tk.Text(f, height=9, wrap="none", state="disabled", relief="solid", bd=1,
                                font=("TkFixedFont", 9))
        self.log_text.grid(row=6, column=0, sticky="nsew")
        f.rowconfigure(4, weight=1)
        f.rowconfigure(6, weight=2)
        return f

    def _build_compare(self, parent) -> ttk.LabelFrame:
        f = ttk.LabelFrame(parent, text=self.t("compare"), padding=6)
        top = ttk.Frame(f)
        top.pack(fill="x")
        ttk.Label(top, text=self.t("limit")).pack(side="left")
        self.limit_var = tk.StringVar(value=str(DEFAULT_EVAL_LIMIT))
        ttk.Spinbox(top, from_=1, to=1319, textvariable=self.limit_var, width=5).pack(side="left", padx=4)
        self.evaluate_button = ttk.Button(top, text=self.t("evaluate"), command=self.evaluate,
                                          state="disabled")
        self.evaluate_button.pack(side="left", padx=4)
        self.use_button = ttk.Button(top, text=self.t("use"), command=self.adopt, state="disabled")
        self.use_button.pack(side="left")
        self.compare_tree = ttk.Treeview(f, columns=("base", "trained"), height=3)
        self.compare_tree.heading("#0", text=self.t("metric"))
        self.compare_tree.heading("base", text=self.t("base"))
        self.compare_tree.heading("trained", text=self.t("trained"))
        for col, width in (("#0", 130), ("base", 80), ("trained", 80)):
            self.compare_tree.column(col, width=width, anchor="w" if col == "#0" else "e")
        self.compare_tree.pack(fill="both", expand=True, pady=(4, 0))
        self.message_label = ttk.Label(f, text="", wraplength=330, foreground="#155")
        self.message_label.pack(fill="x", pady=(4, 0))
        return f

    def _build_history(self, parent) -> ttk.LabelFrame:
        f = ttk.LabelFrame(parent, text=self.t("history"), padding=6)
        cols = ("status", "steps", "reward", "best_acc", "strict", "model", "started")
        self.history = ttk.Treeview(f, columns=cols, height=5)
        self.history.heading("#0", text="run")
        self.history.column("#0", width=130)
        for col, width in zip(cols, (70, 60, 60, 70, 60, 160, 120), strict=True):
            self.history.heading(col, text=col.replace("_", " "))
            self.history.column(col, width=width, anchor="w")
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
            self.recipe_label.configure(text=recipe.get("description", ""))
            data = str(recipe.get("dataset") or jobs.DEFAULT_DATASET)
            local = jobs.ROOT / data
            self.dataset_var.set(str(local.resolve()) if data.startswith(".") and local.exists() else data)

    def _pick_dataset(self) -> None:
        path = filedialog.askopenfilename(parent=self, filetypes=[
            ("GSM8K-style data", "*.jsonl *.json *.parquet"), ("All files", "*")])
        if path:
            self.dataset_var.set(path)

    def _probe_gpu(self) -> None:
        self.dispatcher.submit("retrain-gpu", lambda emit, cancel: jobs.gpu_info(
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
        self.recipes = [r for r in jobs.list_recipes() if info.get("cuda") or r["cpu"]]
        self.recipe_box.configure(values=[r["name"] for r in self.recipes])
        if self.recipes and not self.recipe_var.get():
            self.recipe_var.set(self.recipes[0]["name"])
            self._recipe_chosen()
        self._update_buttons()

    # -- actions -----------------------------------------------------------------------
    def start(self) -> None:
        """Start button: launch a run with the chosen settings and follow it."""
        try:
            steps = int(self.steps_var.get()) if self.steps_var.get().strip() else None
            epochs = float(self.epochs_var.get()) if self.epochs_var.get().strip() else None
            job = jobs.TrainingJob.start(
                self.settings, self.recipe_var.get(), self.model_var.get().strip(),
                dataset=self.dataset_var.get().strip() or None, max_steps=steps, epochs=epochs,
                lora=self.lora_var.get(), run_name=self.run_name_var.get().strip() or None,
                allow_cpu=not (self.gpu or {}).get("cuda"), launcher=self.launcher)
        except (ValueError, OSError) as e:
            messagebox.showerror(self.t("error"), str(e), parent=self)
            return
        self.run_name_var.set("")
        self._follow(job)
        self._refresh_history()

    def stop(self) -> None:
        """Stop button: SIGINT, wait, kill — on a worker; the checkpoint is kept."""
        if self.job is None or self._busy:
            return
        self._busy = "stopping"
        job = self.job
        self.dispatcher.submit("retrain-stop", lambda emit, cancel: job.stop(timeout=60),
                               lambda kind, payload: self._done_busy())
        self._update_buttons()

    def evaluate(self) -> None:
        """Evaluate button: base vs trained on the held-out split (subprocess, on a worker)."""
        job, ckpt = self.job, self.job.checkpoint() if self.job else None
        if job is None or ckpt is None or self._busy:
            return
        kw = self._eval_args(job, ckpt)
        try:
            limit = max(1, int(self.limit_var.get()))
        except ValueError:
            limit = DEFAULT_EVAL_LIMIT
        self._busy = "evaluating"
        self._message(self.t("evaluating"))

        def work(emit, cancel):
            self._eval = jobs.EvalJob.start(self.settings, output=job.run_dir / "compare.json",
                                            limit=limit, launcher=self.launcher, **kw)
            raw = self._eval.result()
            result = {**jobs.comparison(raw, kw["model"], kw["adapter"]), "limit": limit,
                      "data": kw["data"]}
            (job.run_dir / "compare.json").write_text(json.dumps(result, ensure_ascii=False),
                                                      encoding="utf-8")
            return result

        self.dispatcher.submit("retrain-eval", work, self._eval_event)
        self._update_buttons()

    def _eval_args(self, job, ckpt: Path) -> dict:
        """``python -m trainer eval`` arguments from the run's run.json: the trained model
        (base + adapter, or the full checkpoint), the base to compare, the held-out data."""
        meta = job.info()
        args, recipe = meta.get("args") or {}, meta.get("recipe_fields") or {}
        base = str(meta.get("model") or args.get("model") or self.model_var.get())
        data = str(recipe.get("eval_data") or args.get("dataset") or recipe.get("dataset")
                   or self.dataset_var.get())
        lora = (ckpt / "adapter_config.json").exists()
        return {"model": base if lora else str(ckpt), "adapter": str(ckpt) if lora else "",
                "compare": base, "data": data, "split": recipe.get("eval_split") or "",
                "max_new_tokens": recipe.get("eval_max_new_tokens")}

    def _eval_event(self, kind: str, payload) -> None:
        self._eval = None
        if kind == "failed":
            self._message(str(payload), error=True)
        elif kind == "finished":
            self._show_comparison(payload)
            self._message("")
        self._done_busy()

    def adopt(self) -> None:
        """Use this model: register the run's best/final checkpoint and make it answer."""
        job = self.job
        ckpt = job.checkpoint() if job else None
        if ckpt is None:
            self._message(self.t("no_ckpt"), error=True)
            return
        base = self._eval_args(job, ckpt)["compare"]
        metrics = (self.comparison or {}).get("trained") or {}
        registry = self.services.registry
        self._busy = "adopting"

        def work(emit, cancel):
            entry = registry.register_trained(str(ckpt), name=f"grpo-{job.name}", base=base,
                                              metrics=metrics)
            return registry.use(entry.name)

        self.dispatcher.submit("retrain-adopt", work, self._adopt_event)
        self._update_buttons()

    def _adopt_event(self, kind: str, payload) -> None:
        if kind == "failed":
            self._message(str(payload), error=True)
        elif kind == "finished":
            self.adopted = payload
            answers = getattr(self.services, "answers", None)
            if answers is not None and hasattr(answers, "set_backend"):
                answers.set_backend(None)       # the next question loads the adopted model
            self._message(self.t("adopted", name=payload.name))
            for widget in (self, self.master):       # the main window may bind it to refresh
                widget.event_generate("<<ModelAdopted>>", when="tail")
        self._done_busy()

    def _done_busy(self) -> None:
        self._busy = ""
        self._update_buttons()

    # -- following a run ---------------------------------------------------------------
    def _reopen(self) -> None:
        """Find a running run (else the newest) in the runs folder and show it."""
        runs = jobs.list_runs(self.settings)
        live = [r for r in runs if r.status in ("starting", "running", "stopping")]
        pick = (live or runs or [None])[0]
        if pick is not None:
            self._follow(jobs.TrainingJob.attach(pick.path))
        self._refresh_history()

    def _follow(self, job: jobs.TrainingJob) -> None:
        self.job, self.rows, self.comparison = job, [], None
        self._show_comparison(json.loads((job.run_dir / "compare.json").read_text(encoding="utf-8"))
                              if (job.run_dir / "compare.json").is_file() else None)
        self._was_live = job.status() not in jobs.FINAL_STATUSES
        self._show_sample(job.latest_sample())
        self._set_text(self.log_text, job.log_tail(40), end=True)
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
                self._show_sample(job.latest_sample())
                self._set_text(self.log_text, job.log_tail(40), end=True)
            if status in jobs.FINAL_STATUSES and self._was_live:
                self._was_live = False
                self._run_ended(status)
        self._update_buttons()
        if schedule:
            self._after = self.after(POLL_MS, self._tick)

    def _run_ended(self, status: str) -> None:
        self._refresh_history()
        if status == "finished" and self.comparison is None and self.job.checkpoint() is not None:
            self.evaluate()

    def _show_status(self, job, status: str) -> None:
        last = self.rows[-1] if self.rows else {}
        step, total = last.get("step", 0), last.get("total_steps") or 0
        text = self.t("status", name=job.name, status=self.t(status) if status in TEXT else status)
        if total:
            text += "  ·  " + self.t("progress", step=step, total=total)
            self.progress_bar.configure(value=step / total)
        self.status_label.configure(text=text)
        eta = jobs.eta_seconds(self.rows) if status == "running" else None
        self.eta_label.configure(text=self.t("eta", eta=_duration(eta)) if eta is not None else "")

    def _show_sample(self, sample: dict | None) -> None:
        if sample:
            prompt = str(sample.get("prompt", "")).lstrip("\ufffd")
            prompt = prompt if len(prompt) < 160 else prompt[:157] + "…"
            text = (f"step {sample.get('step')}  ·  reward {_fmt(sample.get('reward'))}\n"
                    f"» {prompt}\n\n{_printable(str(sample.get('completion', '')))}")
            self._set_text(self.sample_text, text)

    def _show_comparison(self, comparison: dict | None) -> None:
        self.comparison = comparison
        self.compare_tree.delete(*self.compare_tree.get_children())
        for key in jobs.METRICS if comparison else ():
            base, trained = comparison["base"].get(key), comparison["trained"].get(key)
            self.compare_tree.insert("", "end", text=METRIC_NAMES[key],
                                     values=(_fmt(base), _fmt(trained)))

    def _redraw(self) -> None:
        ax_r, ax_a = self.ax_reward, self.ax_acc
        ax_r.clear()
        ax_a.clear()
        for name, (xs, ys) in jobs.reward_series(self.rows).items():
            ax_r.plot(xs, ys, marker="o", markersize=3, lw=2.2 if name == "reward" else 1.2,
                      label="total" if name == "reward" else name)
        xs, ys = jobs.accuracy_series(self.rows)
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

    def _refresh_history(self) -> None:
        self.history.delete(*self.history.get_children())
        for r in jobs.list_runs(self.settings):
            steps = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
            self.history.insert("", "end", iid=str(r.path), text=r.name, values=(
                self.t(r.status) if r.status in TEXT else r.status, steps, _fmt(r.last_reward),
                _fmt(r.best_accuracy), _fmt(r.final_eval.get("strict")), Path(r.model).name,
                r.started[:16].replace("T", " ")))

    def _history_chosen(self) -> None:
        sel = self.history.selection()
        if sel and (self.job is None or str(self.job.run_dir) != sel[0]) and not self._live():
            self._follow(jobs.TrainingJob.attach(sel[0]))
            self._redraw()

    # -- small helpers -----------------------------------------------------------------
    def _live(self) -> bool:
        return self.job is not None and self.job.status() in ("starting", "running", "stopping")

    def _update_buttons(self) -> None:
        live, ready = self._live(), self.gpu is not None and bool(getattr(self, "recipes", []))
        has_ckpt = self.job is not None and not live and self.job.checkpoint() is not None
        states = {self.start_button: ready and not live,
                  self.stop_button: live and self._busy != "stopping",
                  self.evaluate_button: has_ckpt and not self._busy,
                  self.use_button: has_ckpt and not self._busy}
        for button, on in states.items():
            button.configure(state="normal" if on else "disabled")

    def _message(self, text: str, error: bool = False) -> None:
        self.message = text
        self.message_label.configure(text=text, foreground="#a00" if error else "#155")

    @staticmethod
    def _set_text(widget: tk.Text, text: str, end: bool = False) -> None:
        if widget.get("1.0", "end-1c") == text:
            return
        widget.configure(state="normal")
        widget.delete("1.0", "end")
        widget.insert("1.0", text)
        widget.configure(state="disabled")
        if end:
            widget.see("end")

    def close(self, notify: bool = False) -> None:
        """Close the dialog; a running job keeps going (``notify``: say so in a message box);
        an evaluation is stopped."""
        if notify and self._live():
            messagebox.showinfo(self.t("title"), self.t("keeps_running"), parent=self)
        if self._eval is not None:
            self._eval.stop()
        self._closed = True
        self.after_cancel(self._after)
        self.dispatcher.shutdown(timeout=1)
        self.destroy()
