"""What the Retrain dialog trains on: "my knowledge base «NAME»" (grounded tasks built from its
documents), "gsm8k-chinese (math reasoning)", or both (a data mix).

The knowledge base's tasks are built by ``python -m trainer tasks`` in a subprocess
(:class:`trainer.jobs_tasks.TasksJob`) followed from a worker thread; its progress, the counts
and three examples are shown before training starts. A tasks file built earlier for the same
knowledge base is offered again (its summary is kept next to it). No torch, no chromadb here:
the list of knowledge bases comes from ``services.kb.list_kbs()`` on a worker.
"""
from __future__ import annotations

import time
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk

from trainer import jobs
from trainer import jobs_tasks as tasks_mod

SOURCES = ("kb", "gsm8k", "both")
DEFAULT_MIX = 0.25


class DataPanel(ttk.Frame):
    """The "Train on" row and its data: knowledge base + tasks, gsm8k data spec, mix share.

    Args:
        parent: the setup frame.
        dialog: the Retrain dialog (``t``, ``settings``, ``services``, ``dispatcher``,
            ``launcher``, ``data_changed()``).
        kb: the main window's current knowledge base; given, "my knowledge base" is the first
            choice, else gsm8k (and the knowledge base is ``settings.default_kb``).

    Attributes used by tests: ``source_var``, ``kb_var``, ``dataset_var``, ``mix_var``,
    ``build_button``, ``tasks`` (the built tasks: ``{"path", "summary", "examples"}`` or None),
    ``examples_text``, ``summary_label``, ``progress``.
    """

    def __init__(self, parent, dialog, kb: str | None = None):
        super().__init__(parent)
        self.dialog, self.t = dialog, dialog.t
        settings = dialog.settings
        self.source_var = tk.StringVar(value="kb" if kb else "gsm8k")
        self.kb_var = tk.StringVar(value=kb or getattr(settings, "default_kb", "default"))
        self.dataset_var = tk.StringVar(value=jobs.DEFAULT_DATASET)
        self.mix_var = tk.StringVar(value=str(DEFAULT_MIX))
        self.tasks: dict | None = None
        self.building = None            # the worker Job while tasks are built
        self._build_layout()
        self.kb_var.trace_add("write", lambda *a: self._kb_changed())
        self._kb_changed()
        self._list_kbs()

    # -- layout ------------------------------------------------------------------------
    def _build_layout(self) -> None:
        t = self.t
        self.columnconfigure(1, weight=1)
        row = ttk.Frame(self)
        row.grid(row=0, column=0, columnspan=3, sticky="w")
        ttk.Label(row, text=t("source")).pack(side="left", padx=(0, 6))
        self.source_buttons = {}
        for key in SOURCES:
            b = ttk.Radiobutton(row, variable=self.source_var, value=key, command=self._source_changed)
            b.pack(side="left", padx=(0, 10))
            self.source_buttons[key] = b
        self.kb_row = ttk.Frame(self)
        self.kb_row.grid(row=1, column=0, columnspan=3, sticky="ew", pady=(4, 0))
        self.kb_row.columnconfigure(4, weight=1)
        ttk.Label(self.kb_row, text=t("kb")).grid(row=0, column=0, sticky="w", padx=(0, 4))
        self.kb_box = ttk.Combobox(self.kb_row, textvariable=self.kb_var, width=14, state="readonly")
        self.kb_box.grid(row=0, column=1, sticky="w", padx=(0, 6))
        self.build_button = ttk.Button(self.kb_row, text=t("build_tasks"), command=self.build)
        self.build_button.grid(row=0, column=2, padx=(0, 6))
        self.progress = ttk.Progressbar(self.kb_row, mode="determinate", maximum=1.0, length=100)
        self.progress.grid(row=0, column=3, padx=(0, 6))
        self.summary_label = ttk.Label(self.kb_row, text="", wraplength=640, foreground="#155")
        self.summary_label.grid(row=0, column=4, sticky="ew")
        self.examples_text = tk.Text(self.kb_row, height=3, width=60, wrap="none", state="disabled", relief="solid",
                                     bd=1, font=("TkDefaultFont", 9))
        self.examples_text.grid(row=1, column=0, columnspan=5, sticky="ew", pady=(4, 0))
        self.math_row = ttk.Frame(self)
        self.math_row.grid(row=2, column=0, columnspan=3, sticky="ew", pady=(4, 0))
        ttk.Label(self.math_row, text=t("dataset")).pack(side="left", padx=(0, 4))
        ttk.Entry(self.math_row, textvariable=self.dataset_var, width=40).pack(side="left", padx=(0, 6))
        ttk.Button(self.math_row, text=t("local"), command=self._pick_dataset).pack(side="left", padx=(0, 12))
        self.mix_label = ttk.Label(self.math_row, text=t("mix_ratio"))
        self.mix_box = ttk.Spinbox(self.math_row, from_=0.05, to=0.9, increment=0.05, textvariable=self.mix_var,
                                   width=5)
        self._source_changed(notify=False)

    def _pick_dataset(self) -> None:
        path = filedialog.askopenfilename(parent=self, filetypes=[
            ("gsm8k (jsonl, json, parquet)", "*.jsonl *.json *.parquet"), ("*", "*")])
        if path:
            self.dataset_var.set(path)

    # -- state -------------------------------------------------------------------------
    def source(self) -> str:
        """"kb", "gsm8k" or "both"."""
        return self.source_var.get()

    def grounded(self) -> bool:
        """True when the run trains on knowledge-base tasks (alone or mixed)."""
        return self.source() in ("kb", "both")

    def ready(self) -> bool:
        """The data is there: gsm8k needs nothing more; the knowledge base needs its tasks."""
        return not self.grounded() or (self.tasks is not None and self.building is None)

    def mix_ratio(self) -> float:
        try:
            return min(max(float(self.mix_var.get()), 0.05), 0.9)
        except ValueError:
            return DEFAULT_MIX

    def train_args(self) -> dict:
        """``dataset`` / ``mix_dataset`` / ``mix_ratio`` for :meth:`trainer.jobs.TrainingJob.start`."""
        gsm8k = self.dataset_var.get().strip() or None
        if not self.grounded():
            return {"dataset": gsm8k}
        out = {"dataset": self.tasks["path"] if self.tasks else None}
        if self.source() == "both":
            out.update(mix_dataset=gsm8k or jobs.DEFAULT_DATASET, mix_ratio=self.mix_ratio())
        return out

    def set_recipe_dataset(self, data: str) -> None:
        """The chosen gsm8k recipe's own dataset (a local path made absolute)."""
        local = jobs.ROOT / data
        self.dataset_var.set(str(local.resolve()) if data.startswith(".") and local.exists() else data)

    def _source_changed(self, notify: bool = True) -> None:
        src = self.source()
        if src == "gsm8k":
            self.kb_row.grid_remove()
        else:
            self.kb_row.grid()
        if src == "kb":
            self.math_row.grid_remove()
        else:
            self.math_row.grid()
        if src == "both":
            self.mix_label.pack(side="left", padx=(0, 4))
            self.mix_box.pack(side="left")
        else:
            self.mix_label.pack_forget()
            self.mix_box.pack_forget()
        if notify:
            self.dialog.data_changed()

    def _kb_changed(self) -> None:
        kb = self.kb_var.get()
        self.source_buttons["kb"].configure(text=self.t("source_kb", kb=kb))
        self.source_buttons["gsm8k"].configure(text=self.t("source_gsm8k"))
        self.source_buttons["both"].configure(text=self.t("source_both"))
        if self.building is not None:
            return
        found = tasks_mod.latest_tasks(self.dialog.settings, kb) if kb else None
        self.show_tasks(tasks_mod.read_summary(found) if found else None)
        self.dialog.data_changed()

    def _list_kbs(self) -> None:
        kb = getattr(self.dialog.services, "kb", None)
        if kb is None or not hasattr(kb, "list_kbs"):
            return
        self.dialog.dispatcher.submit("retrain-kbs", lambda emit, cancel: [k.name for k in kb.list_kbs()],
                                      self._kbs_event)

    def _kbs_event(self, kind: str, payload) -> None:
        if kind != "finished":
            return
        names = list(payload or [])
        self.kb_box.configure(values=names)
        if names and self.kb_var.get() not in names:
            self.kb_var.set(names[0])
        if not names:
            self.summary_label.configure(text=self.t("no_kb"), foreground="#a40")
            if self.source() != "gsm8k":
                self.source_var.set("gsm8k")
                self._source_changed()

    # -- tasks -------------------------------------------------------------------------
    def show_tasks(self, tasks: dict | None) -> None:
        """Counts and examples of built tasks (``{"path", "summary", "examples"}``), or the
        "no tasks yet" line."""
        self.tasks = tasks if tasks and tasks.get("path") and Path(tasks["path"]).is_file() else None
        self.progress.configure(value=1.0 if self.tasks else 0.0)
        self.build_button.configure(text=self.t("rebuild_tasks" if self.tasks else "build_tasks"))
        if not self.tasks:
            self.summary_label.configure(text=self.t("tasks_none"), foreground="#555")
            self._set_examples("")
            return
        s = self.tasks["summary"]
        kinds = ", ".join(f"{k} {v}" for k, v in (s.get("by_kind") or {}).items())
        self.summary_label.configure(foreground="#155", text=self.t(
            "tasks_summary", tasks=s.get("tasks", 0), documents=s.get("documents", 0), train=s.get("train", 0),
            heldout=s.get("heldout", 0), refusal=s.get("refusal", 0), kinds=kinds))
        lines = []
        for ex in self.tasks.get("examples") or []:
            answer = self.t("example_refusal") if not ex.get("gold") else ex.get("answer", "")
            lines.append(self.t("example", kind=ex.get("kind", ""), question=ex.get("question", ""),
                                answer=answer).replace("\n", "  "))
        self._set_examples("\n".join(lines))

    def _set_examples(self, text: str) -> None:
        self.examples_text.configure(state="normal")
        self.examples_text.delete("1.0", "end")
        self.examples_text.insert("1.0", text)
        self.examples_text.configure(state="disabled")

    def build(self) -> None:
        """Build tasks button: ``python -m trainer tasks`` for the chosen knowledge base, with
        progress; the counts and examples follow (:meth:`show_tasks`)."""
        kb = self.kb_var.get().strip()
        if not kb or self.building is not None:
            return
        settings, launcher = self.dialog.settings, self.dialog.launcher
        self.tasks = None
        self.progress.configure(value=0.0)
        self.summary_label.configure(text=self.t("tasks_reading"), foreground="#555")
        self._set_examples("")

        def work(emit, cancel):
            job = tasks_mod.TasksJob.start(settings, kb, launcher=launcher)
            while not job.done():
                if cancel.is_set():
                    job.stop()
                    return None
                emit("progress", job.progress())
                time.sleep(0.3)
            return job.result()

        self.building = self.dialog.dispatcher.submit("retrain-tasks", work, self._build_event)
        self.build_button.configure(state="disabled")
        self.dialog.data_changed()

    def _build_event(self, kind: str, payload) -> None:
        if kind == "progress":
            done, total, _msg = payload
            if total:
                self.progress.configure(value=done / total)
                self.summary_label.configure(text=self.t("tasks_building", done=done, total=total))
            return
        self.building = None
        self.build_button.configure(state="normal")
        if kind == "failed":
            self.show_tasks(None)
            self.summary_label.configure(text=self.t("tasks_failed", error=payload), foreground="#a00")
        elif kind == "finished" and payload:
            self.show_tasks(payload)
        self.dialog.data_changed()

    def cancel(self) -> None:
        """Stop a build in progress (the dialog closes)."""
        if self.building is not None:
            self.building.cancel.set()
