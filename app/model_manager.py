"""Model manager (menu 模型 → 管理模型… / Models → Manage models…).

Lists the registry's models (:meth:`models.registry.ModelRegistry.inventory`: kind, size on
disk, which answers now) and acts on them: import a folder or a GGUF, pull from Hugging Face or
ModelScope (byte progress, Cancel), use (the running app reloads its answering backend through
``app.model_ready()``: no restart), delete (after a confirmation; the active model cannot be
deleted), export to Ollama.

Threads: every registry call runs on a worker through ``app.dispatcher``; the worker only emits
events, the handlers here run on the Tk thread. One long job (import / pull / export) at a time.
"""
from __future__ import annotations

import logging
import shutil
import tkinter as tk
import tkinter.font as tkfont
from dataclasses import dataclass
from tkinter import filedialog, messagebox, ttk

from app.layout import place

log = logging.getLogger(__name__)
DEFAULT_REPO = "Qwen/Qwen2.5-0.5B-Instruct"
#: ``ModelFileError.reason`` values worded in assets/strings_*.json as ``manager.import_<reason>``
IMPORT_REASONS = {"missing", "not_model", "no_safetensors", "no_tokenizer", "name_taken", "gguf_unsupported",
                  "not_embedder"}


@dataclass
class PullFailed:
    """A pull that ended without a model (returned by the worker, worded on the Tk thread)."""

    reason: str      # models.model_files.PullError.reason
    message: str     # the registry's English message (logged)


def human_size(n: int | None, tr) -> str:
    """``1.2 GB`` / ``350 MB`` / ``12 KB`` (binary units: 1 GB = 1024³ bytes, as file managers
    count); the "not downloaded" text for None.

    >>> human_size(1_234_567_890, lambda k: k)
    '1.1 GB'
    >>> human_size(350 * 1024 ** 2, lambda k: k)
    '350 MB'
    """
    if n is None:
        return tr("manager.not_here")
    for unit, size in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def pull_message(tr, reason: str, source: str, repo: str) -> str:
    """One line in the UI language for a failed pull (never the hub's raw error)."""
    where = "ModelScope" if source == "modelscope" else "Hugging Face"
    key = {"offline": "manager.pull_offline", "not_found": "manager.pull_not_found",
           "missing_package": "manager.pull_no_modelscope", "cancelled": "manager.pull_cancelled"}
    return tr(key.get(reason, "manager.pull_failed"), where=where, repo=repo)


def import_message(tr, error: Exception, path: str) -> str:
    """One line in the UI language for an import that failed (the registry's English is logged)."""
    reason = getattr(error, "reason", "")
    key = f"manager.import_{reason}" if reason in IMPORT_REASONS else "manager.import_failed"
    return tr(key, path=path, name=getattr(error, "subject", "") or path)


def localized(tr, action, path: str):
    """Run ``action()`` (a registry import, on a worker); a BackendError comes back as a
    BackendError whose message is :func:`import_message` (the dispatcher shows it as is)."""
    from models.backend import BackendError

    try:
        return action()
    except BackendError as e:
        log.warning("import %s: %s", path, e)
        raise BackendError(import_message(tr, e, path)) from None


class ModelManager(tk.Toplevel):
    """The dialog.

    Args:
        app: the :class:`app.main.App` (its ``services.registry``, ``dispatcher``, ``tr`` and
            ``model_ready()`` hook are used).

    Attributes:
        rows: name → ``ModelInfo`` as last listed.
        job: the running import / pull / export job (None when idle).
        job_kind: "import" | "pull" | "export" while ``job`` runs.
    """

    def __init__(self, app) -> None:
        super().__init__(app.root)
        self.app, self.tr = app, app.tr
        self.registry = app.services.registry
        self.rows: dict = {}
        self.job, self.job_kind = None, ""     # job_kind: import | pull | export
        self.title(self.tr("manager.title"))
        place(self, (820, 480), minimum=(600, 380))
        self.transient(app.root)
        self._build()
        self.refresh()

    # -- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        """Top to bottom: the list, the actions, the pull row, progress, the message line
        (packed from the bottom so the rows keep their room when the dialog is short)."""
        tr = self.tr
        body = ttk.Frame(self, padding=8)
        body.pack(fill="both", expand=True)
        self.status = ttk.Label(body, text="", wraplength=560, justify="left")
        self.status.pack(side="bottom", fill="x", pady=(4, 0))
        self.status.bind("<Configure>", lambda e: self.status.configure(wraplength=max(200, e.width - 8)))
        self.progress = ttk.Progressbar(body, mode="determinate", maximum=1.0)
        self.progress.pack(side="bottom", fill="x", pady=(6, 0))
        self._build_pull(body)
        row = ttk.Frame(body)
        row.pack(side="bottom", fill="x", pady=(6, 0))
        self.buttons = {}
        for key, command in (("import_folder", self.ask_import_folder), ("import_gguf", self.ask_import_gguf),
                             ("use", self.use), ("delete", self.delete), ("export", self.export)):
            self.buttons[key] = ttk.Button(row, text=tr(f"manager.{key}"), command=command)
            self.buttons[key].pack(side="left", padx=(0, 4))
        cols = ("kind", "size", "active")
        line = tkfont.nametofont("TkDefaultFont", self).metrics("linespace")
        ttk.Style(self).configure("Models.Treeview", rowheight=line + 8)   # room for CJK glyphs
        self.tree = ttk.Treeview(body, columns=cols, show="tree headings", selectmode="browse", height=8,
                                 style="Models.Treeview")
        self.tree.heading("#0", text=tr("manager.col.name"), anchor="w")
        self.tree.column("#0", width=320, stretch=True)
        for col, width in zip(cols, (130, 90, 70), strict=True):
            self.tree.heading(col, text=tr(f"manager.col.{col}"), anchor="w")
            self.tree.column(col, width=width, stretch=False, anchor="w")
        self.tree.pack(fill="both", expand=True)
        self.tree.bind("<<TreeviewSelect>>", lambda _e: self._update_buttons())

    def _build_pull(self, body) -> None:
        tr = self.tr
        row = ttk.Frame(body)
        row.pack(side="bottom", fill="x", pady=(6, 0))
        ttk.Label(row, text=tr("manager.pull_label")).pack(side="left")
        self.source_names = {tr("manager.source.hf"): "hf", tr("manager.source.modelscope"): "modelscope"}
        self.source = tk.StringVar(value=tr("manager.source.hf"))
        ttk.Combobox(row, textvariable=self.source, values=list(self.source_names), state="readonly",
                     width=14).pack(side="left", padx=4)
        self.cancel_button = ttk.Button(row, text=tr("manager.cancel"), command=self.cancel, state="disabled")
        self.cancel_button.pack(side="right", padx=(4, 0))
        self.pull_button = ttk.Button(row, text=tr("manager.pull"), command=self.pull)
        self.pull_button.pack(side="right", padx=(4, 0))
        self.repo = tk.StringVar(value=DEFAULT_REPO)
        ttk.Entry(row, textvariable=self.repo, width=20).pack(side="left", fill="x", expand=True)

    # -- listing ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the models again (sizes are measured on a worker)."""
        def on_event(kind, payload):
            if kind == "finished" and self.winfo_exists():
                self._fill(payload)
            elif kind == "failed" and self.winfo_exists():
                self.say(payload, error=True)
        self.app.dispatcher.submit("models-inventory", lambda emit, cancel: self.registry.inventory(), on_event)

    def _fill(self, rows) -> None:
        selected = self.selected()
        self.tree.delete(*self.tree.get_children())
        self.rows = {r.name: r for r in rows}
        for r in rows:
            self.tree.insert("", "end", iid=r.name, text=r.name,
                             values=(self.tr(f"manager.kind.{r.kind}"), human_size(r.size_bytes, self.tr),
                                     "✓" if r.active else ""))
        if selected in self.rows:
            self.tree.selection_set(selected)
        self._update_buttons()

    def selected(self) -> str | None:
        sel = self.tree.selection()
        return sel[0] if sel else None

    def _update_buttons(self) -> None:
        row = self.rows.get(self.selected() or "")
        busy = self.job is not None
        states = {"import_folder": not busy, "import_gguf": not busy,
                  "use": row is not None and not row.active and not busy,
                  "delete": row is not None and row.deletable and not busy,
                  "export": row is not None and row.kind != "ollama" and row.size_bytes is not None and not busy}
        for key, on in states.items():
            self.buttons[key].configure(state="normal" if on else "disabled")
        self.pull_button.configure(state="disabled" if busy else "normal")
        self.cancel_button.configure(state="normal" if busy and self.job_kind == "pull" else "disabled")

    def say(self, text: str, error: bool = False) -> None:
        """Show one line under the list (errors stay until the next action)."""
        self.status.configure(text=self.tr.message(text), foreground="#b00020" if error else "")

    # -- long jobs -------------------------------------------------------------------------
    def _start(self, kind: str, message: str, work, done) -> None:
        if self.job is not None:
            return
        self.job_kind = kind
        self.say(message)
        self.progress.configure(mode="indeterminate")
        self.progress.start(80)

        def on_event(ev, payload):
            if not self.winfo_exists():
                return
            if ev == "progress":
                self._progress(*payload)
                return
            self.progress.stop()
            self.progress.configure(mode="determinate", value=0)
            self.job, self.job_kind = None, ""
            if ev == "failed":
                self.say(payload, error=True)
            elif ev == "finished":
                done(payload)
            self._update_buttons()
            self.refresh()
        self.job = self.app.dispatcher.submit(f"models-{kind}", work, on_event)
        self._update_buttons()

    def _progress(self, done: float, total: float, text: str) -> None:
        if total:
            self.progress.stop()
            self.progress.configure(mode="determinate", maximum=total, value=done)
        if text:
            self.say(text)

    def ask_import_folder(self) -> None:
        path = filedialog.askdirectory(parent=self, title=self.tr("manager.import_folder"))
        if path:
            self.import_path(path)

    def ask_import_gguf(self) -> None:
        path = filedialog.askopenfilename(parent=self, title=self.tr("manager.import_gguf"),
                                          filetypes=[("GGUF", "*.gguf"), ("*", "*")])
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        """Import an HF folder (referenced) or a .gguf (converted once) on a worker."""
        tr, registry = self.tr, self.registry
        active_before = self.app.settings.model

        def work(emit, cancel):
            def step(done, total, _msg=""):
                emit("progress", (done, total, tr("manager.import_step", done=int(done), total=int(total))))
            return localized(tr, lambda: registry.import_path(path, on_progress=step), path)

        def done(entry):
            self.say(tr("manager.imported", name=entry.name))
            if self.app.settings.model != active_before:   # adopted: the old model was not here
                self.app.model_ready()
        self._start("import", tr("manager.importing", path=path), work, done)

    def pull(self) -> None:
        """Download the repo id in the entry from the chosen source, with progress and Cancel."""
        tr, registry = self.tr, self.registry
        repo, source = self.repo.get().strip(), self.source_names.get(self.source.get(), "hf")
        if not repo:
            self.say(tr("manager.pull_need_repo"), error=True)
            return
        active_before = self.app.settings.model

        def work(emit, cancel):
            from models.model_files import PullError

            def step(done, total, _msg=""):
                emit("progress", (done, total, tr("manager.pull_bytes", done=human_size(int(done), tr),
                                                  total=human_size(int(total), tr)) if total > 1 else ""))
            try:
                return registry.pull(repo, source=source, on_progress=step, cancel=cancel)
            except PullError as e:
                return PullFailed(e.reason, str(e))

        def done(result):
            if isinstance(result, PullFailed):
                self.say(pull_message(tr, result.reason, source, repo), error=result.reason != "cancelled")
                return
            self.say(tr("manager.pulled", name=result.name))
            if self.app.settings.model != active_before:
                self.app.model_ready()
        self._start("pull", tr("manager.pulling", repo=repo), work, done)

    def cancel(self) -> None:
        """Ask the running pull to stop (it stops at its next chunk and removes the new folder)."""
        if self.job is not None:
            self.job.cancel.set()
            self.say(self.tr("manager.cancelling"))

    def export(self, name: str | None = None) -> None:
        """Export a model to Ollama (merged safetensors + Modelfile; created when Ollama runs)."""
        tr, registry, name = self.tr, self.registry, name or self.selected()
        if not name:
            return

        def done(result):
            tag, created, out = result
            if created:
                self.say(tr("manager.exported", tag=tag))
            elif shutil.which("ollama") is None:
                self.say(tr("manager.ollama_not_found", out=out, tag=tag), error=True)
            else:
                self.say(tr("manager.ollama_not_running", out=out, tag=tag), error=True)
        self._start("export", tr("manager.exporting", name=name),
                    lambda emit, cancel: registry.export_ollama(name), done)

    # -- quick actions ---------------------------------------------------------------------
    def use(self, name: str | None = None) -> None:
        """Make the model the answering model; the app reloads its backend (no restart)."""
        tr, registry, name = self.tr, self.registry, name or self.selected()
        if not name:
            return

        def on_event(kind, payload):
            if kind == "failed":
                self.say(payload, error=True)
                return
            self.say(tr("manager.now_active", name=name))
            self.app.model_ready()
            if self.winfo_exists():
                self.refresh()
        self.app.dispatcher.submit("models-use", lambda emit, cancel: registry.switch_to(name), on_event)

    def confirm(self, text: str) -> bool:
        """Ask yes/no (tests replace this)."""
        return messagebox.askyesno(self.tr("manager.title"), text, parent=self)

    def delete(self, name: str | None = None) -> None:
        """Delete a model after a confirmation; the active model cannot be deleted."""
        tr, registry, name = self.tr, self.registry, name or self.selected()
        row = self.rows.get(name or "")
        if row is None:
            return
        if row.active:
            self.say(tr("manager.delete_active", name=name), error=True)
            return
        if not row.deletable:
            self.say(tr("manager.delete_builtin", name=name), error=True)
            return
        question = tr("manager.delete_confirm_files" if row.owned else "manager.delete_confirm_ref",
                      name=name, path=row.path)
        if not self.confirm(question):
            return

        def on_event(kind, payload):
            if not self.winfo_exists():
                return
            self.say(payload if kind == "failed" else tr("manager.deleted", name=name), error=kind == "failed")
            self.refresh()
        self.app.dispatcher.submit("models-delete", lambda emit, cancel: registry.delete(name), on_event)


def open_model_manager(app) -> ModelManager:
    """Open the dialog (or raise the one already open). Call on the Tk thread."""
    dialog = getattr(app, "model_manager", None)
    if dialog is not None and dialog.winfo_exists():
        dialog.deiconify()
        dialog.lift()
        return dialog
    app.model_manager = ModelManager(app)
    return app.model_manager
