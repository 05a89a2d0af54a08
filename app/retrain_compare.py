"""The Retrain dialog's comparison and adoption (a mixin of :class:`app.retrain.RetrainDialog`):
base vs trained on held-out questions — gsm8k's test split, or the held-out tasks of a
knowledge base (``python -m trainer eval --tasks``) — as a subprocess followed from a worker,
and "Use this model" (register the run's checkpoint, make it answer).
"""
from __future__ import annotations

import json
import logging
import tkinter as tk
from pathlib import Path
from tkinter import ttk

from app.retrain_views import ComparisonTable
from models.backend import BackendError
from trainer import jobs_report as report

log = logging.getLogger(__name__)

DEFAULT_EVAL_LIMIT = 20


def recipe_fields(meta: dict) -> dict:
    """The fields of the run's recipe read from its file (run.json lacks ``recipe_fields``:
    an older trainer); {} when it cannot be read."""
    import dataclasses

    from trainer import recipes

    try:
        path = (meta.get("args") or {}).get("recipe") or meta.get("recipe") or ""
        return dataclasses.asdict(recipes.load(path, trl_check=False))
    except (ValueError, OSError, TypeError):
        return {}


class CompareMixin:
    """Compare and adopt; uses the dialog's ``t``, ``settings``, ``services``, ``launcher``,
    ``dispatcher``, ``job``, ``_busy``, ``_message``, ``_update_buttons``, ``_done_busy``,
    ``_refresh_history``, ``model_var``."""

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
        self.compare_tree = ComparisonTable(f, self.t)
        self.compare_tree.pack(fill="both", expand=True, pady=(4, 0))
        self.message_label = ttk.Label(f, text="", wraplength=330, foreground="#155")
        self.message_label.pack(fill="x", pady=(4, 0))
        return f

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
            self._eval = report.EvalJob.start(self.settings, output=job.run_dir / "compare-report.json",
                                            limit=limit, launcher=self.launcher, **kw)
            raw = self._eval.result()
            result = {**report.comparison(raw, kw["model"], kw["adapter"]), "limit": limit,
                      "data": kw.get("tasks") or kw["data"]}
            (job.run_dir / "compare.json").write_text(json.dumps(result, ensure_ascii=False),
                                                      encoding="utf-8")
            return result

        self.dispatcher.submit("retrain-eval", work,
                               lambda kind, payload: self._eval_event(job, kind, payload))
        self._update_buttons()

    def _eval_args(self, job, ckpt: Path) -> dict:
        """``python -m trainer eval`` arguments from the run's run.json: the trained model
        (base + adapter, or the full checkpoint), the base to compare, the held-out data."""
        meta = job.info()
        args, recipe = meta.get("args") or {}, meta.get("recipe_fields") or recipe_fields(meta)
        base = str(meta.get("model") or args.get("model") or self.model_var.get())
        data = str(recipe.get("eval_data") or args.get("dataset") or recipe.get("dataset")
                   or self.dataset_var.get())
        lora = (ckpt / "adapter_config.json").exists()
        tokens = recipe.get("eval_max_new_tokens") or (recipe.get("grpo") or {}).get("max_completion_length")
        out = {"model": base if lora else str(ckpt), "adapter": str(ckpt) if lora else "",
               "compare": base, "data": data, "split": recipe.get("eval_split") or "test",
               "max_new_tokens": tokens}
        from trainer.grounded_data import is_tasks_file

        if is_tasks_file(args.get("dataset") or ""):     # grounded: the held-out tasks, the recipe's prompt
            out.update(tasks=str(args["dataset"]), data="", split="heldout", think=bool(recipe.get("think", True)),
                       max_passages=int(recipe.get("max_passages") or 0))
        return out

    def _eval_event(self, job, kind: str, payload) -> None:
        self._eval = None
        if kind == "failed":
            self._message(str(payload), error=True)
        elif kind == "finished" and self.job is job:        # else another run is shown now
            self._show_comparison(payload)
            self._message("")
        self._refresh_history()
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

        self._adopt_note = ""

        def work(emit, cancel):
            entry = registry.register_trained(str(ckpt), name=f"grpo-{job.name}", base=base,
                                              metrics=metrics)
            active = registry.use(entry.name)
            try:                    # the fast path (llama.cpp) serves the adapter as a GGUF LoRA
                registry.convert_adapter(entry.name)
            except BackendError as e:   # adopted all the same: transformers answers with it
                log.warning("%s", e)
                self._adopt_note = str(e)
            return active

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
            note = getattr(self, "_adopt_note", "")
            self._message(self.t("adopted_slow", name=payload.name, why=note) if note
                          else self.t("adopted", name=payload.name))
            for widget in (self, self.master):       # the main window may bind it to refresh
                widget.event_generate("<<ModelAdopted>>", when="tail")
        self._done_busy()

    def _show_comparison(self, comparison: dict | None) -> None:
        self.comparison = comparison
        self.compare_tree.show(comparison)
