"""First-run panel: shown when no answering model is available (``registry.available()``).

Offers: pull from Hugging Face or ModelScope, import a local folder or a GGUF file, or use
Ollama. Meanwhile the knowledge base works and questions show the top passages. Every action
runs on a worker; success calls ``app.model_ready()`` which hides this panel.
"""
from __future__ import annotations

import tkinter as tk
from tkinter import filedialog, ttk

DEFAULT_REPO = "Qwen/Qwen2.5-0.5B-Instruct"


def _progress_args(args) -> tuple[float, float, str]:
    """Normalise an ``on_progress`` call: (done, total, message) or (fraction,) or (message,)."""
    nums = [float(a) for a in args if isinstance(a, (int, float))]
    msg = next((str(a) for a in args if isinstance(a, str)), "")
    if len(nums) >= 2:
        return nums[0], nums[1] or 1.0, msg
    return (nums[0], 1.0, msg) if nums else (0.0, 0.0, msg)


class FirstRunPanel(ttk.LabelFrame):
    """Get an answering model.

    Args:
        parent: container (the chat side).
        app: the :class:`app.main.App`.
    """

    def __init__(self, parent, app) -> None:
        super().__init__(parent, text=app.tr("first.title"), padding=10)
        self.app, self.tr = app, app.tr
        self.job = None
        ttk.Label(self, text=self.tr("first.explain"), wraplength=560, justify="left").pack(anchor="w")
        row = ttk.Frame(self)
        row.pack(fill="x", pady=(8, 2))
        self.repo = tk.StringVar(value=DEFAULT_REPO)
        ttk.Entry(row, textvariable=self.repo, width=32).pack(side="left", fill="x", expand=True)
        ttk.Button(row, text=self.tr("first.pull_hf"), command=lambda: self.pull("hf")).pack(side="left", padx=3)
        ttk.Button(row, text=self.tr("first.pull_ms"), command=lambda: self.pull("modelscope")).pack(side="left")
        row = ttk.Frame(self)
        row.pack(fill="x", pady=2)
        ttk.Button(row, text=self.tr("first.import_folder"), command=self.import_folder).pack(side="left")
        ttk.Button(row, text=self.tr("first.import_gguf"), command=self.import_gguf).pack(side="left", padx=3)
        row = ttk.Frame(self)
        row.pack(fill="x", pady=2)
        self.host = tk.StringVar(value=app.settings.ollama_host)
        self.ollama_model = tk.StringVar(value=app.settings.ollama_model)
        ttk.Entry(row, textvariable=self.host, width=24).pack(side="left")
        ttk.Entry(row, textvariable=self.ollama_model, width=14).pack(side="left", padx=3)
        ttk.Button(row, text=self.tr("first.use_ollama"), command=self.use_ollama).pack(side="left")
        self.progress = ttk.Progressbar(self, mode="determinate", maximum=1.0)
        self.progress.pack(fill="x", pady=(6, 0))
        self.status = ttk.Label(self, text=self.tr("first.passages_meanwhile"), foreground="#555",
                                wraplength=560)
        self.status.pack(anchor="w")

    def pull(self, source: str) -> None:
        repo = self.repo.get().strip()
        if repo:
            self._run(self.tr("first.pulling", repo=repo), lambda reg, prog: reg.pull(repo, source=source,
                                                                                      on_progress=prog))

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
        self._run(self.tr("first.importing", path=path),
                  lambda reg, prog: reg.import_path(path, on_progress=prog))

    def use_ollama(self) -> None:
        host, model = self.host.get().strip(), self.ollama_model.get().strip()
        settings = self.app.settings

        def work(emit, cancel):
            settings.update({"backend": "ollama", "ollama_host": host, "ollama_model": model})
            if not self.app.services.registry.available():
                raise RuntimeError(self.tr("first.ollama_missing", host=host, model=model))
            return None
        self._start(self.tr("first.checking_ollama", host=host), work)

    def _run(self, message: str, action) -> None:
        registry = self.app.services.registry

        def work(emit, cancel):
            entry = action(registry, lambda *a: emit("progress", _progress_args(a)))
            return registry.use(entry.name)
        self._start(message, work)

    def _start(self, message: str, work) -> None:
        if self.job is not None:
            return
        self.status.configure(text=message, foreground="#555")
        self.progress.configure(mode="indeterminate")
        self.progress.start(80)
        self.job = self.app.dispatcher.submit("model-setup", work, self._on_event)

    def _on_event(self, kind: str, payload) -> None:
        if kind == "progress":
            done, total, msg = payload
            if total:
                self.progress.stop()
                self.progress.configure(mode="determinate", maximum=total, value=done)
            if msg:
                self.status.configure(text=msg[:100])
            return
        self.progress.stop()
        self.progress.configure(mode="determinate", value=0)
        self.job = None
        if kind == "failed":
            self.status.configure(text=str(payload), foreground="#b00020")
        elif kind == "finished":
            self.app.model_ready()
