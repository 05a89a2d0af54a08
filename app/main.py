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

from app import theme
from app.chat_panel import ChatPanel
from app.chats import ChatStore
from app.dialogs import localize_tk
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
        localize_tk(self.root, self.tr.lang)
        self.palette = theme.apply(self.root, getattr(settings, "theme", "auto"))
        self.theme_var = tk.StringVar(self.root, value=getattr(settings, "theme", "auto"))
        self.chats = ChatStore(Path(settings.history_dir) / "chats.json", self.tr("chats.untitled"))
        self._flash_until = 0.0
        self.dispatcher = Dispatcher(self.root)
        self.model_ok: bool | None = None
        self.embedder_ok: bool | None = None
        self.model_manager = None
        self.viewer = None
        self.voice = None
        self.first_run: FirstRunPanel | None = None
        self.backend_device = ""
        self.closed = False
        self._reset_backend = False
        self._build()
        self._enable_drop()
        self._bind_keys()
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.kb_panel.refresh_kbs(select=settings.default_kb)
        self.check_model()

    # -- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        tr = self.tr
        self._menu()
        bar = ttk.Frame(self.root, padding=(8, 6, 8, 2))
        bar.pack(fill="x")
        self.toolbar = [ttk.Button(bar, text=tr("menu.settings"), command=self.open_settings),
                        ttk.Button(bar, text=tr("menu.retrain"), command=self.open_retrain),
                        ttk.Button(bar, text=tr("menu.about"), command=self.open_about)]
        for b in self.toolbar:
            b.pack(side="left", padx=(0, 6))
        self.status_var = tk.StringVar(value="")
        self.status = ttk.Label(self.root, textvariable=self.status_var, style="Status.TLabel", anchor="w")
        self.status.pack(side="bottom", fill="x")
        ttk.Separator(self.root, orient="horizontal").pack(side="bottom", fill="x")
        panes = ttk.PanedWindow(self.root, orient="horizontal")
        panes.pack(fill="both", expand=True)
        self.kb_panel = KBPanel(panes, self)
        self.chats_pane = self.kb_panel.chats_pane
        self.right = ttk.Frame(panes)
        panes.add(self.kb_panel, weight=2)
        panes.add(self.right, weight=3)
        self.root.after_idle(lambda: panes.sashpos(0, max(380, int(self.root.winfo_width() * 0.38))))
        self.chat = ChatPanel(self.right, self)
        self.chat.pack(fill="both", expand=True)
        self._mount_voice()

    def _menu(self) -> None:
        tr = self.tr
        self.menu = menu = tk.Menu(self.root)
        self.menus: dict[str, tk.Menu] = {}

        def cascade(key: str, items) -> None:
            sub = tk.Menu(menu, tearoff=False)
            for item in items:
                if item is None:
                    sub.add_separator()
                    continue
                label, command, accel = item
                sub.add_command(label=tr(label), command=command, accelerator=accel)
            menu.add_cascade(label=tr(key), menu=sub)
            self.menus[key] = sub
        cascade("menu.file", [("menu.add_files", lambda: self.kb_panel.add_files(), "Ctrl+O"),
                              ("menu.add_folder", lambda: self.kb_panel.add_folder(), ""),
                              ("menu.export", lambda: self.chat.export(), ""), None,
                              ("menu.quit", self.close, "Ctrl+Q")])
        cascade("menu.chat", [("chats.new", lambda: self.chats_pane.new(), "Ctrl+N"),
                              ("chat.regenerate", lambda: self.chat.regenerate(), "Ctrl+R"),
                              ("chat.copy", lambda: self.chat.copy_answer(), ""),
                              ("chat.stop", lambda: self.chat.stop(), "Esc")])
        cascade("menu.model", [("menu.manage_models", self.open_model_manager, ""),
                               ("menu.settings", self.open_settings, ""), ("menu.retrain", self.open_retrain, "")])
        view = tk.Menu(menu, tearoff=False)
        for mode in theme.MODES:
            view.add_radiobutton(label=tr(f"theme.{mode}"), value=mode, variable=self.theme_var,
                                 command=lambda m=mode: self.set_theme(m))
        menu.add_cascade(label=tr("menu.view"), menu=view)
        self.menus["menu.view"] = view
        cascade("menu.help", [("menu.about", self.open_about, "F1")])
        self.root.configure(menu=menu)

    def _bind_keys(self) -> None:
        """Ctrl+O add files, Ctrl+N new chat, Ctrl+Enter send, Ctrl+R regenerate, Esc stop, F1 about."""
        keys = {"<Control-o>": lambda: self.kb_panel.add_files(), "<Control-n>": lambda: self.chats_pane.new(),
                "<Control-Return>": lambda: self.chat.ask(), "<Control-r>": lambda: self.chat.regenerate(),
                "<Escape>": lambda: self.chat.stop(), "<F1>": self.open_about, "<Control-q>": self.close}
        for seq, fn in keys.items():
            self.root.bind(seq, lambda e, fn=fn: (fn(), "break")[1])

    def set_theme(self, mode: str) -> None:
        """Switch to ``mode`` (auto | light | dark) now and save it."""
        self.palette = theme.apply(self.root, mode)
        self.theme_var.set(mode)
        self.chat.transcript.recolor(self.palette)
        self.kb_panel.recolor(self.palette)
        try:
            self.settings.set("theme", mode)
        except Exception as e:  # noqa: BLE001 - an unknown key in an older settings module
            log.info("theme not saved: %s", e)

    def open_about(self) -> None:
        from app.dialogs import AboutDialog

        self.about = AboutDialog(self)

    def select_chat(self, chat_id: str, reload: bool = False) -> None:
        """Show conversation ``chat_id`` of the current knowledge base."""
        if chat_id != self.chat.conversation or reload:
            self.chat.load_history(self.kb_name, chat_id)
        self.chats_pane.refresh(self.kb_name, chat_id)

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
        self.root.dnd_bind("<<DropEnter>>", lambda event: (self.kb_panel.highlight_drop(True), COPY)[1])
        self.root.dnd_bind("<<DropLeave>>", lambda event: (self.kb_panel.highlight_drop(False), COPY)[1])
        self.root.dnd_bind("<<Drop>>", lambda event: (self.on_drop(event.data), COPY)[1])

    # -- events from panels --------------------------------------------------------------
    def on_drop(self, data: str) -> list[str]:
        """Ingest files/folders from a tkdnd drop (a Tcl list: spaces and CJK survive); a drop
        with nothing usable in it says so."""
        self.kb_panel.highlight_drop(False)
        paths = [p for p in self.root.tk.splitlist(data) if p] if data else []
        if paths:
            self.kb_panel.ingest(list(paths))
        else:
            self.kb_panel.say(self.tr("kb.drop_empty"))
        return list(paths)

    @property
    def kb_name(self) -> str:
        return self.kb_panel.kb

    def on_kb_changed(self, name: str) -> None:
        self.refresh_status()
        first = self.chats.list(name)[0]["id"]
        self.chat.load_history(name, first)
        self.chats_pane.refresh(name, first)

    def flash(self, message: str, seconds: float = 8.0) -> None:
        """Show ``message`` in the status bar for ``seconds`` (status refreshes wait for it)."""
        import time

        self._flash_until = time.monotonic() + seconds
        self.status_var.set(message)
        self.root.after(int(seconds * 1000) + 50, self.refresh_status)

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
        self.status.configure(foreground=self.palette["error"])
        self.flash("⚠ " + self.tr.message(message))

    def refresh_status(self) -> None:
        import time

        if time.monotonic() < self._flash_until:
            return
        s = self.settings
        model = f"{s.ollama_model} (Ollama)" if s.backend == "ollama" else s.model
        if self.model_ok is False:
            model = self.tr("status.no_model")
        adapter = Path(s.adapter).name if s.adapter else self.tr("status.no_adapter")
        info = self.kb_panel.kbs.get(self.kb_name)
        docs, chunks = (info.documents, info.chunks) if info is not None else (0, 0)
        self.status.configure(foreground=self.palette["muted"])
        self.status_var.set(self.tr("status.line", model=model, adapter=adapter,
                                    device=self.backend_device or s.device, kb=self.kb_name,
                                    docs=docs, chunks=chunks))

    # -- model ---------------------------------------------------------------------------
    def check_model(self) -> None:
        """Ask the registry (worker) whether the answering model and the embedder are on this
        machine; the first-run panel (app/first_run.py) shows what is missing."""
        from app.first_run import update_setup

        registry = self.services.registry

        def on_event(kind, payload):
            self.model_ok, self.embedder_ok = payload if kind == "finished" else (False, True)
            self.warm_up()
            update_setup(self, self.model_ok, self.embedder_ok)
            self.refresh_status()
        self.dispatcher.submit("available", lambda emit, cancel: (bool(registry.available()),
                                                                  bool(registry.embedder_available())), on_event)

    def warm_up(self) -> None:
        """Load the embedder and (when available) the answering model on a worker now.

        The first ingest and the first question then start at once, and the one-time loads
        (which hold the GIL in places: tokenizer JSON, weights) happen while the status bar
        says so instead of in the middle of the user's first answer.
        """
        services, load_model, reset = self.services, bool(self.model_ok), self._reset_backend
        load_embedder = self.embedder_ok is not False   # a missing one is offered on the first-run panel
        self._reset_backend = False
        self.status_var.set(self.tr("status.loading_model"))
        if load_model and not self.chat.busy:   # the first load takes a while: say so where the answer comes
            self.chat.set_stage("loading")

        def work(emit, cancel):
            errors, device = {}, ""
            if reset:
                services.answers.set_backend(None)
            try:
                if load_embedder:
                    services.kb.embedder_name  # noqa: B018 - the property creates the embedder
                    getattr(getattr(services.kb, "embedder", None), "model", None)  # its weights, if lazy
            except Exception as e:  # noqa: BLE001 - reported on the first-run panel, the app still opens
                errors["embedder"] = error_message(e)
            if load_model and not cancel.is_set():
                try:
                    device = getattr(services.answers.backend(), "device", "")
                except Exception as e:  # noqa: BLE001
                    errors["model"] = error_message(e)
            return device, errors

        def on_event(kind, payload):
            if not self.chat.busy:
                self.chat.set_stage("")
            if kind == "finished":
                device, errors = payload
                self.backend_device = device or self.backend_device
                self.refresh_status()
                if errors:
                    from app.first_run import update_setup

                    log.warning("loading failed: %s", errors)
                    update_setup(self, bool(self.model_ok), bool(self.embedder_ok), errors)
        self.dispatcher.submit("warm-up", work, on_event)

    def reload_embedder(self) -> None:
        """``embedding_model`` changed: drop the loaded embedder (on a worker: it waits for a
        running ingest or search to end), then check and load the new one as at start-up
        (a missing or broken one shows on the first-run panel)."""
        kb = self.services.kb
        self.dispatcher.submit("reload-embedder", lambda emit, cancel: kb.reload_embedder(),
                               lambda kind, p: self.show_error(p) if kind == "failed" else self.check_model())

    def model_ready(self) -> None:
        """A model was pulled/imported/chosen: drop the loaded backend, recheck, load the new one."""
        self._reset_backend = True
        self.check_model()

    def open_model_manager(self) -> None:
        """Menu 模型 → 管理模型…: list, import, pull, use, delete, export models (app/model_manager.py)."""
        from app.model_manager import open_model_manager

        open_model_manager(self)

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
        if "theme" in changes:
            self.set_theme(changes["theme"])
        if "embedding_model" in changes:
            self.reload_embedder()
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
