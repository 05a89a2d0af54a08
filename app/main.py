"""The TQT-s main window: knowledge bases on the left, the chat on the right, a status bar.

``python main.py`` calls :func:`run_app`. Tests build :class:`App` in-process and pump
``root.update()`` instead of ``mainloop()``.

Threads: everything here runs on the Tk thread. Service calls go through
:class:`app.worker.Dispatcher` (worker threads → queue → ``after()`` polling), so the window
never freezes; closing cancels running jobs and joins the workers with a timeout.
"""
from __future__ import annotations

import logging
import sys
import tkinter as tk
from pathlib import Path
from tkinter import ttk

from app.chat_panel import ChatPanel
from app.first_run import FirstRunPanel
from app.i18n import Strings, setup_fonts
from app.kb_panel import KBPanel
from app.layout import place
from app.worker import Dispatcher, error_message

log = logging.getLogger(__name__)


def make_root() -> tk.Tk:
    """A TkinterDnD root (file drops) or, when tkdnd cannot load, a plain Tk root."""
    try:
        from tkinterdnd2 import TkinterDnD

        return TkinterDnD.Tk()
    except (ImportError, RuntimeError, tk.TclError) as e:
        log.warning("drag and drop unavailable (%s); use 'Add files…'", e)
        return tk.Tk()


MIN_SIZE = (900, 560)   # every control reachable down to this (tests/test_app_layout.py)


class App:
    """The main window.

    Args:
        settings: loaded settings.
        services: an :class:`app.services.Services`.
        root: an existing root (default: :func:`make_root`).

    Attributes:
        model_ok: None until checked, then whether an answering model is available.
        viewer: the page viewer window once a source was opened.
    """

    def __init__(self, settings, services, root: tk.Tk | None = None) -> None:
        self.settings, self.services = settings, services
        self.tr = Strings(settings.ui_language)
        self.root = root or make_root()
        self.root.title("TQT-s")
        place(self.root, (1280, 820), minimum=MIN_SIZE)
        self.font_family = setup_fonts(self.root)
        self._style()
        self.dispatcher = Dispatcher(self.root)
        self.model_ok: bool | None = None
        self.viewer = None
        self.voice = None
        self.first_run: FirstRunPanel | None = None
        self.backend_device = ""
        self.closed = False
        self._reset_backend = False
        self._build()
        self._enable_drop()
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.kb_panel.refresh_kbs(select=settings.default_kb)
        self.check_model()

    # -- layout --------------------------------------------------------------------------
    def _style(self) -> None:
        style = ttk.Style(self.root)
        if "clam" in style.theme_names():
            style.theme_use("clam")
        style.configure("Heading.TLabel", font=("TkDefaultFont", 11, "bold"))
        style.configure("Status.TLabel", foreground="#333", padding=(6, 2))

    def _build(self) -> None:
        tr = self.tr
        self._menu()
        bar = ttk.Frame(self.root, padding=(6, 4))
        bar.pack(fill="x")
        ttk.Button(bar, text=tr("menu.settings"), command=self.open_settings).pack(side="left", padx=(0, 4))
        ttk.Button(bar, text=tr("menu.retrain"), command=self.open_retrain).pack(side="left")
        self.status_var = tk.StringVar(value="")
        self.status = ttk.Label(self.root, textvariable=self.status_var, style="Status.TLabel",
                                relief="sunken", anchor="w")
        self.status.pack(side="bottom", fill="x")
        panes = ttk.PanedWindow(self.root, orient="horizontal")
        panes.pack(fill="both", expand=True)
        self.kb_panel = KBPanel(panes, self)
        self.right = ttk.Frame(panes)
        panes.add(self.kb_panel, weight=2)
        panes.add(self.right, weight=3)
        self.root.after_idle(lambda: panes.sashpos(0, max(380, int(self.root.winfo_width() * 0.38))))
        self.chat = ChatPanel(self.right, self)
        self.chat.pack(fill="both", expand=True)
        self._mount_voice()

    def _menu(self) -> None:
        tr = self.tr
        menu = tk.Menu(self.root)
        file_menu = tk.Menu(menu, tearoff=False)
        file_menu.add_command(label=tr("menu.add_files"), command=lambda: self.kb_panel.add_files())
        file_menu.add_command(label=tr("menu.add_folder"), command=lambda: self.kb_panel.add_folder())
        file_menu.add_command(label=tr("menu.export"), command=lambda: self.chat.export())
        file_menu.add_separator()
        file_menu.add_command(label=tr("menu.quit"), command=self.close)
        model_menu = tk.Menu(menu, tearoff=False)
        model_menu.add_command(label=tr("menu.settings"), command=self.open_settings)
        model_menu.add_command(label=tr("menu.retrain"), command=self.open_retrain)
        menu.add_cascade(label=tr("menu.file"), menu=file_menu)
        menu.add_cascade(label=tr("menu.model"), menu=model_menu)
        self.root.configure(menu=menu)

    def _mount_voice(self) -> None:
        try:
            from app.voice import VoiceControls

            self.voice = VoiceControls(self.chat.voice_slot, self.settings, self.chat.set_question, self.chat.ask)
            self.voice.pack()
        except Exception as e:  # noqa: BLE001 - voice is optional; the app works without it
            log.info("voice controls unavailable: %s", e)
            self.voice = None

    def _enable_drop(self) -> None:
        if not hasattr(self.root, "drop_target_register"):
            return
        from tkinterdnd2 import COPY, DND_FILES

        self.root.drop_target_register(DND_FILES)
        self.root.dnd_bind("<<Drop>>", lambda event: (self.on_drop(event.data), COPY)[1])

    # -- events from panels --------------------------------------------------------------
    def on_drop(self, data: str) -> list[str]:
        """Ingest files/folders from a tkdnd drop (a Tcl list: spaces and CJK survive)."""
        paths = [p for p in self.root.tk.splitlist(data) if p]
        if paths:
            self.kb_panel.ingest(list(paths))
        return list(paths)

    @property
    def kb_name(self) -> str:
        return self.kb_panel.kb

    def on_kb_changed(self, name: str) -> None:
        self.chat.load_history(name)
        self.refresh_status()

    def on_answer(self, result) -> None:
        """An answer completed: read it aloud (voice input users), refresh the status bar."""
        if self.voice is not None and not getattr(result, "refused", False):
            try:
                self.voice.speak_answer(result.answer)
            except Exception as e:  # noqa: BLE001
                log.warning("voice: %s", e)
        self.refresh_status()

    def open_source(self, source: str, page: int, passage: str = "") -> None:
        """Show ``source`` at ``page`` in the in-app viewer, ``passage`` highlighted."""
        from app.page_viewer import PageViewer

        if not Path(source).exists():
            self.show_error(self.tr("viewer.missing", path=source))
            return
        if self.viewer is None or not self.viewer.winfo_exists():
            self.viewer = PageViewer(self)
        self.viewer.show(source, page, passage)

    def show_error(self, message) -> None:
        """Show one error line in the status bar (never a dialog per failure)."""
        log.warning("%s", message)
        self.status_var.set("⚠ " + str(message))
        self.status.configure(foreground="#b00020")
        self.root.after(8000, self.refresh_status)

    def refresh_status(self) -> None:
        s = self.settings
        model = f"{s.ollama_model} (Ollama)" if s.backend == "ollama" else s.model
        if self.model_ok is False:
            model = self.tr("status.no_model")
        adapter = Path(s.adapter).name if s.adapter else self.tr("status.no_adapter")
        info = self.kb_panel.kbs.get(self.kb_name)
        docs, chunks = (info.documents, info.chunks) if info is not None else (0, 0)
        self.status.configure(foreground="#333")
        self.status_var.set(self.tr("status.line", model=model, adapter=adapter,
                                    device=self.backend_device or s.device, kb=self.kb_name,
                                    docs=docs, chunks=chunks))

    # -- model ---------------------------------------------------------------------------
    def check_model(self) -> None:
        """Ask the registry (worker) whether a model is available; show the first-run panel if not."""
        def on_event(kind, payload):
            self.model_ok = bool(payload) if kind == "finished" else False
            self.warm_up()
            if self.model_ok and self.first_run is not None:
                self.first_run.destroy()
                self.first_run = None
            elif not self.model_ok and self.first_run is None:
                self.first_run = FirstRunPanel(self.right, self)
                self.first_run.pack(fill="x", padx=6, pady=(6, 0), before=self.chat)
            self.refresh_status()
        self.dispatcher.submit("available", lambda emit, cancel: self.services.registry.available(), on_event)

    def warm_up(self) -> None:
        """Load the embedder and (when available) the answering model on a worker now.

        The first ingest and the first question then start at once, and the one-time loads
        (which hold the GIL in places: tokenizer JSON, weights) happen while the status bar
        says so instead of in the middle of the user's first answer.
        """
        services, load_model, reset = self.services, bool(self.model_ok), self._reset_backend
        self._reset_backend = False
        self.status_var.set(self.tr("status.loading_model"))

        def work(emit, cancel):
            errors, device = [], ""
            if reset:
                services.answers.set_backend(None)
            try:
                services.kb.embedder_name  # noqa: B018 - the property creates the embedder
                getattr(getattr(services.kb, "embedder", None), "model", None)  # its weights, if lazy
            except Exception as e:  # noqa: BLE001 - reported, the app still opens
                errors.append(error_message(e))
            if load_model and not cancel.is_set():
                try:
                    device = getattr(services.answers.backend(), "device", "")
                except Exception as e:  # noqa: BLE001
                    errors.append(error_message(e))
            return device, errors

        def on_event(kind, payload):
            if kind == "finished":
                device, errors = payload
                self.backend_device = device or self.backend_device
                self.refresh_status()
                if errors:
                    self.show_error("; ".join(errors))
        self.dispatcher.submit("warm-up", work, on_event)

    def model_ready(self) -> None:
        """A model was pulled/imported/chosen: drop the loaded backend, recheck, load the new one."""
        self._reset_backend = True
        self.check_model()

    def open_settings(self) -> None:
        from app.settings_dialog import SettingsDialog

        def on_event(kind, payload):
            names = [e.name for e in payload] if kind == "finished" else []
            SettingsDialog(self, names, self._settings_saved)
        self.dispatcher.submit("models", lambda emit, cancel: self.services.registry.list(), on_event)

    def _settings_saved(self, changes: dict) -> None:
        from app.settings_dialog import RESTART_KEYS

        if "model" in changes:
            model, adapter = changes["model"], changes.get("adapter") or None
            self.dispatcher.submit("use-model", lambda emit, cancel: self.services.registry.use(model, adapter),
                                   lambda kind, p: self.show_error(p) if kind == "failed" else self.model_ready())
        elif changes.keys() & {"backend", "ollama_host", "ollama_model"}:
            self.model_ready()
        self.refresh_status()
        if changes.keys() & RESTART_KEYS:
            self.status_var.set(self.tr("settings.restart_needed"))

    def open_retrain(self) -> None:
        try:
            from app.retrain import open_retrain_dialog
        except Exception as e:  # noqa: BLE001 - the retrain area may be absent in this install
            self.show_error(self.tr("retrain.unavailable", error=e))
            return
        open_retrain_dialog(self.root, self.services, kb=self.kb_name)

    # -- closing -------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> list[str]:
        """Cancel running work, join workers (``timeout`` s), stop voice, destroy the window.

        Returns:
            names of jobs that did not stop in time.
        """
        if self.closed:
            return []
        self.closed = True
        left = self.dispatcher.shutdown(timeout)
        if left:
            log.warning("still running at exit: %s", ", ".join(left))
        if self.voice is not None:
            try:
                self.voice.shutdown()
            except Exception as e:  # noqa: BLE001
                log.warning("voice shutdown: %s", e)
        self.root.destroy()
        return left


def run_app(settings) -> int:
    """Open the main window and run the Tk loop until it is closed.

    Returns:
        exit status: 0, or 1 when the services cannot start (message on stderr).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from app.services import build_services

    try:
        services = build_services(settings)
    except Exception as e:  # noqa: BLE001 - one clear message instead of a traceback
        print(f"error: cannot start the services: {e}", file=sys.stderr)
        return 1
    app = App(settings, services)
    app.root.mainloop()
    return 0
