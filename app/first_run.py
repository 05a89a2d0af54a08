"""First-run panel: what is missing to answer (the answering model, the embedder) and how to get it.

Shown above the conversation while the answering model or the embedding model is not on this
machine (``registry.available()`` / ``registry.embedder_available()``) or failed to load. One
row per model says, in the UI language, whether it is here; each offers a local folder (and a
GGUF for the answering model) or a download with progress and Cancel. A failure stays on the
panel until it is resolved (never a status-bar flash). The panel sits inside the chat panel
above the transcript, so the question row below keeps its height however tall the panel is.

Threads: actions run on workers through ``app.dispatcher``; success re-runs ``app.check_model()``
(the embedder) or ``app.model_ready()`` (the answering model reloads), which hides the panel
once both are here.
"""
from __future__ import annotations

import re
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk

from app.model_manager import PullFailed, human_size, localized, pull_message

DEFAULT_REPO = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_EMBEDDER = "intfloat/multilingual-e5-small"
ERROR, OK = "#b00020", "#1b7f3b"


def _short(name: str) -> str:
    return Path(str(name)).name or str(name)


class FirstRunPanel(ttk.LabelFrame):
    """Get the answering model and the embedder.

    Args:
        parent: the chat panel (the panel is packed above its transcript).
        app: the :class:`app.main.App`.

    Attributes:
        state: ``{"model": s, "embedder": s}`` with s in ok | missing | broken.
        job: the running action (None when idle).
    """

    def __init__(self, parent, app) -> None:
        super().__init__(parent, text=app.tr("first.title"), padding=(8, 4))
        self.app, self.tr = app, app.tr
        self.job = None
        self.state = {"model": "missing", "embedder": "ok"}
        self.rows: dict[str, tuple[ttk.Label, list[ttk.Button]]] = {}
        self.bars: dict[str, ttk.Frame] = {}
        self.menus: dict[str, tk.Menu] = {}     # the download menus (Hugging Face, ModelScope, Ollama)
        self._row("model", [("first.import_folder", self.import_folder), ("first.import_gguf", self.import_gguf),
                            ("first.download", "model")])
        self._row("embedder", [("first.embedder_folder", self.embedder_folder), ("first.download", "embedder")])
        # progress + Cancel: shown only while an action runs (the panel stays short at 900x560)
        self.progress_row = ttk.Frame(self)
        self.cancel_button = ttk.Button(self.progress_row, text=self.tr("manager.cancel"), command=self.cancel,
                                        state="disabled")
        self.cancel_button.pack(side="right", padx=(6, 0))
        self.progress = ttk.Progressbar(self.progress_row, mode="determinate", maximum=1.0)
        self.progress.pack(side="left", fill="x", expand=True)
        self.message = ttk.Label(self, text="", justify="left", wraplength=520)   # packed when it has text
        for label in [self.message] + [lbl for lbl, _ in self.rows.values()]:
            label.bind("<Configure>", lambda e, w=label: w.configure(wraplength=max(200, e.width - 4)))

    def _row(self, what: str, actions) -> None:
        """A status line and its buttons; an action that is a string is a download menu
        (Hugging Face / ModelScope) for that model."""
        label = ttk.Label(self, text="", justify="left", wraplength=520)
        label.pack(fill="x", pady=(2, 0))
        bar = ttk.Frame(self)
        bar.pack(fill="x", pady=(0, 1))
        buttons = []
        for key, cmd in actions:
            if isinstance(cmd, str):
                button = ttk.Menubutton(bar, text=self.tr(key), width=len(self.tr(key)) + 3)
                menu = tk.Menu(button, tearoff=False)
                for source in ("hf", "modelscope"):
                    menu.add_command(label=self.tr("first.download_from", where=self.tr(f"manager.source.{source}")),
                                     command=lambda w=cmd, s=source: self.pull(w, s))
                if cmd == "model":   # the other way to get an answering model: an Ollama server
                    menu.add_separator()
                    menu.add_command(label=self.tr("first.use_ollama"), command=self.use_ollama)
                button.configure(menu=menu)
                self.menus[cmd] = menu
            else:
                button = ttk.Button(bar, text=self.tr(key), command=cmd)
            button.pack(side="left", padx=(0, 3))
            buttons.append(button)
        self.rows[what] = (label, buttons)
        self.bars[what] = bar

    # -- state -----------------------------------------------------------------------------
    def show_state(self, model: str, embedder: str) -> None:
        """Word both rows: each state is ok | missing | broken (failed to load)."""
        self.state = {"model": model, "embedder": embedder}
        s = self.app.settings
        names = {"model": f"{s.ollama_model} (Ollama)" if s.backend == "ollama" else _short(s.model),
                 "embedder": _short(s.embedding_model)}
        for what, state in self.state.items():
            label, buttons = self.rows[what]
            label.configure(text=self.tr(f"first.{what}_{state}", name=names[what]),
                            foreground=OK if state == "ok" else ERROR)
            for b in buttons:
                b.configure(state="disabled" if self.job is not None else "normal")
            if state == "ok":                      # a model that is here needs no buttons: less height
                self.bars[what].pack_forget()
            elif not self.bars[what].winfo_manager():
                self.bars[what].pack(fill="x", pady=(0, 1), after=label)

    def say(self, text: str, error: bool = False) -> None:
        """The panel's message line: it stays until the next action or until the panel goes."""
        self.message.configure(text=text, foreground=ERROR if error else "")
        if text and not self.message.winfo_manager():
            self.message.pack(fill="x")
        elif not text:
            self.message.pack_forget()

    # -- actions: answering model ----------------------------------------------------------
    def import_folder(self) -> None:
        path = filedialog.askdirectory(parent=self, title=self.tr("first.import_folder"))
        if path:
            self.import_path(path)

    def import_gguf(self) -> None:
        path = filedialog.askopenfilename(parent=self, title=self.tr("first.import_gguf"),
                                          filetypes=[("GGUF", "*.gguf"), ("*", "*")])
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        """Import an HF folder or a .gguf file and make it the answering model."""
        registry, tr = self.app.services.registry, self.tr

        def work(emit, cancel):
            entry = localized(tr, lambda: registry.import_path(path, on_progress=lambda d, t, _m="": emit(
                "progress", (d, t, tr("manager.import_step", done=int(d), total=int(t))))), path)
            return registry.use(entry.name)
        self._start("model", tr("first.importing", path=path), work)

    def use_ollama(self) -> None:
        """Answer with the Ollama server and model from settings (checked first)."""
        settings, registry = self.app.settings, self.app.services.registry
        host, model = settings.ollama_host, settings.ollama_model

        def work(emit, cancel):
            before = settings.backend
            settings.update({"backend": "ollama"})
            if not registry.available():
                settings.update({"backend": before})
                raise RuntimeError(self.tr("first.ollama_missing", host=host, model=model))
            return True
        self._start("model", self.tr("first.checking_ollama", host=host), work)

    # -- actions: embedder -----------------------------------------------------------------
    def embedder_folder(self) -> None:
        path = filedialog.askdirectory(parent=self, title=self.tr("first.embedder_folder"))
        if path:
            self.use_embedder(path)

    def use_embedder(self, path: str) -> None:
        """Use a local sentence-transformers folder as the embedding model."""
        registry, kb, tr = self.app.services.registry, self.app.services.kb, self.tr

        def work(emit, cancel):
            localized(tr, lambda: registry.use_embedder(path), path)
            kb.reload_embedder()
            return True
        self._start("embedder", self.tr("first.embedder_checking", path=path), work)

    # -- downloads -------------------------------------------------------------------------
    def pull(self, what: str, source: str = "hf") -> None:
        """Download the answering model (``what="model"``) or the embedder from ``source``
        (hf | modelscope), with byte progress and Cancel."""
        from models.model_files import PullError

        registry, kb, tr = self.app.services.registry, self.app.services.kb, self.tr
        configured = str(self.app.settings.embedding_model)
        repo = DEFAULT_REPO if what == "model" else (
            configured if re.fullmatch(r"[\w.\-]+/[\w.\-]+", configured) else DEFAULT_EMBEDDER)

        def work(emit, cancel):
            def step(done, total, _msg=""):
                emit("progress", (done, total, tr("manager.pull_bytes", done=human_size(int(done), tr),
                                                  total=human_size(int(total), tr)) if total > 1 else ""))
            try:
                if what == "model":
                    return registry.use(registry.pull(repo, source=source, on_progress=step, cancel=cancel).name)
                registry.pull_embedder(repo, source=source, on_progress=step, cancel=cancel)
                kb.reload_embedder()
                return True
            except PullError as e:
                return PullFailed(e.reason, str(e))
        self._start(what, tr("first.pulling", repo=repo), work, pull=(source, repo))

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
            self.say(self.tr("manager.cancelling"))

    # -- running -----------------------------------------------------------------------------
    def _start(self, what: str, message: str, work, pull: tuple[str, str] | None = None) -> None:
        if self.job is not None:
            return
        self.progress_row.pack(fill="x", pady=(2, 0), before=self.message if self.message.winfo_manager() else None)
        self.say(message)
        self.progress.configure(mode="indeterminate")
        self.progress.start(80)
        self.job = self.app.dispatcher.submit(f"setup-{what}", work,
                                              lambda kind, payload: self._on_event(what, pull, kind, payload))
        self.cancel_button.configure(state="normal" if pull else "disabled")
        self.show_state(**self.state)

    def _on_event(self, what: str, pull, kind: str, payload) -> None:
        if kind == "progress":
            done, total, text = payload
            if total:
                self.progress.stop()
                self.progress.configure(mode="determinate", maximum=total, value=done)
            if text:
                self.say(text)
            return
        self.progress.stop()
        self.progress.configure(mode="determinate", value=0)
        self.progress_row.pack_forget()
        self.job = None
        self.cancel_button.configure(state="disabled")
        self.show_state(**self.state)
        if kind == "failed":
            self.say(self.tr("first.failed", error=self.tr.message(payload)), error=True)
        elif isinstance(payload, PullFailed):
            self.say(pull_message(self.tr, payload.reason, *pull), error=payload.reason != "cancelled")
        elif kind == "finished":
            self.say(self.tr("first.done"))
            if what == "model":
                self.app.model_ready()
            else:
                self.app.check_model()


def update_setup(app, model_ok: bool, embedder_ok: bool, errors: dict | None = None) -> None:
    """Show, update or hide the first-run panel for what is here (Tk thread).

    Args:
        model_ok / embedder_ok: the files are on this machine.
        errors: ``{"model": msg, "embedder": msg}`` from loading them (warm-up): shown as broken.
    """
    errors = errors or {}
    state = {"model": "broken" if errors.get("model") else ("ok" if model_ok else "missing"),
             "embedder": "broken" if errors.get("embedder") else ("ok" if embedder_ok else "missing")}
    panel = app.first_run
    if all(v == "ok" for v in state.values()):
        if panel is not None and panel.job is None:
            panel.destroy()
            app.first_run = None
        return
    if panel is None or not panel.winfo_exists():
        panel = app.first_run = FirstRunPanel(app.chat, app)
        panel.pack(fill="x", pady=(0, 2), before=app.chat.transcript)
    panel.show_state(**state)
