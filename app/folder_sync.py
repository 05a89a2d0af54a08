""""Keep this folder in sync" for the current knowledge base: a row in the KB panel plus the
controller that runs one :class:`kb.folder_sync.FolderSync` per watched folder.

Watched folders are remembered in settings (``watched_folders``: knowledge base -> folders) and
resumed when the window opens. Threads: each sync's worker calls :meth:`SyncController._on_event`,
which only puts the event on a queue; the Tk thread drains it with ``after()`` and updates the
row's status line, the panel's results pane and its document list (STYLE.md habit 7).
"""
from __future__ import annotations

import logging
import queue
import threading
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk

log = logging.getLogger(__name__)
POLL_MS = 150


class SyncController:
    """The folder syncs of one window (no widgets; its listeners run on the Tk thread).

    Args:
        root: the Tk root (for ``after``); services: :class:`app.services.Services`.
    """

    def __init__(self, root, services):
        self.root, self.services = root, services
        self.settings = services.settings
        self.syncs: dict[tuple[str, str], object] = {}     # (kb, folder) -> FolderSync
        self.listeners: list = []                          # called on the Tk thread: (kb, SyncEvent)
        self.queue: queue.Queue = queue.Queue()
        self._poll_id = root.after(POLL_MS, self._poll)

    def watched(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in dict(self.settings.watched_folders or {}).items()}

    def folders(self, kb: str) -> list[str]:
        return self.watched().get(kb, [])

    def resume(self) -> list[str]:
        """Start the syncs remembered in settings; returns one line per folder that cannot start."""
        problems = []
        for kb, folders in self.watched().items():
            for folder in folders:
                try:
                    self._start(kb, folder)
                except (OSError, ValueError) as e:
                    problems.append(f"{folder}: {e}")
        return problems

    def enable(self, kb: str, folder: str) -> None:
        """Keep ``folder`` in sync with ``kb`` from now on (remembered). Raises FileNotFoundError."""
        folder = str(Path(folder).expanduser().resolve())
        self._start(kb, folder)
        watched = self.watched()
        if folder not in watched.setdefault(kb, []):
            watched[kb].append(folder)
        self.settings.set("watched_folders", watched)

    def disable(self, kb: str, folder: str) -> None:
        """Stop syncing ``folder`` (its documents stay in the knowledge base) and forget it."""
        watched = self.watched()
        watched[kb] = [f for f in watched.get(kb, []) if f != folder]
        self.settings.set("watched_folders", {k: v for k, v in watched.items() if v})
        sync = self.syncs.pop((kb, folder), None)
        if sync is not None:     # stop() joins the worker, which may be mid-file: not on the Tk thread
            threading.Thread(target=sync.stop, daemon=True, name="folder-sync stop").start()

    def _start(self, kb: str, folder: str) -> None:
        from kb.folder_sync import FolderSync

        if (kb, folder) in self.syncs:
            return
        quiet = float(getattr(self.settings, "watch_quiet_s", 2.0))
        sync = FolderSync(self.services.kb, folder, kb, on_event=lambda ev: self.queue.put((kb, ev)), quiet_s=quiet)
        self.syncs[(kb, folder)] = sync.start()

    def _poll(self) -> None:
        try:
            while True:
                kb, ev = self.queue.get_nowait()
                for listener in list(self.listeners):
                    listener(kb, ev)
        except queue.Empty:
            pass
        self._poll_id = self.root.after(POLL_MS, self._poll)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every sync (window closing); their settings stay, so they resume next time."""
        try:
            self.root.after_cancel(self._poll_id)
        except tk.TclError:
            pass
        for sync in self.syncs.values():
            sync.stop(timeout)
        self.syncs.clear()


class SyncRow(ttk.Frame):
    """The switch in the KB panel: "keep a folder in sync", the folder, and what the sync did.

    Args:
        panel: the :class:`app.kb_panel.KBPanel` (its ``kb``, ``kb_var``, results pane and
            ``refresh_docs`` are used); app: the :class:`app.main.App`.
    """

    def __init__(self, panel, app):
        super().__init__(panel)
        self.panel, self.app, self.tr = panel, app, app.tr
        if getattr(app, "folder_sync", None) is None:
            app.folder_sync = SyncController(app.root, app.services)
        self.ctl = app.folder_sync
        self.on = tk.BooleanVar(value=False)
        self.check = ttk.Checkbutton(self, text=self.tr("sync.keep"), variable=self.on, command=self.toggle)
        self.check.pack(side="left")
        self.folder_label = ttk.Label(self, text="", foreground="#555")
        self.folder_label.pack(side="left", fill="x", expand=True, padx=(4, 0))
        self.status = ttk.Label(self, text="", foreground="#555")
        self.status.pack(side="right")
        self.counts: dict[str, int] = {}
        self.ctl.listeners.append(self.on_event)
        panel.kb_var.trace_add("write", lambda *_: self.show_kb())
        self.bind("<Destroy>", lambda e: self._closing() if e.widget is self else None)
        self.after_idle(self._resume)

    def _resume(self) -> None:
        for line in self.ctl.resume():
            self.panel._results_add(f"✗ {self.tr('sync.cannot_resume', problem=line)}", "fail")
        self.show_kb()

    def show_kb(self) -> None:
        """Show the switch's state for the current knowledge base."""
        folders = self.ctl.folders(self.panel.kb)
        self.on.set(bool(folders))
        self.folder_label.configure(text=", ".join(Path(f).name for f in folders))

    def toggle(self) -> None:
        """Switch on: ask for the folder and start syncing it; off: stop syncing (documents stay)."""
        kb = self.panel.kb
        if not self.on.get():
            for folder in self.ctl.folders(kb):
                self.ctl.disable(kb, folder)
            self.status.configure(text=self.tr("sync.off"))
            self.show_kb()
            return
        folder = filedialog.askdirectory(parent=self, title=self.tr("sync.choose"))
        if folder:
            self.start(folder)
        else:
            self.on.set(False)

    def start(self, folder: str) -> None:
        """Keep ``folder`` in sync with the current knowledge base (the switch's "on")."""
        try:
            self.ctl.enable(self.panel.kb, folder)
        except (OSError, ValueError) as e:
            self.on.set(False)
            self.panel._results_add(f"✗ {e}", "fail")
            return
        self.status.configure(text=self.tr("sync.starting"))
        self.show_kb()

    def on_event(self, kb: str, ev) -> None:
        """A sync event, on the Tk thread: status line, results pane, document list."""
        current = kb == self.panel.kb
        if ev.kind == "progress" and current:
            self.status.configure(text=self.tr("sync.progress", done=f"{ev.done:.0f}", total=f"{ev.total:.0f}"))
        elif ev.kind == "result" and ev.result.status != "skipped":
            self.counts[ev.result.status] = self.counts.get(ev.result.status, 0) + 1
            if current:
                self.panel._show_result(ev.result)
        elif ev.kind == "removed":
            self.counts["removed"] = self.counts.get("removed", 0) + 1
            if current:
                self.panel._results_add("− " + self.tr("sync.removed", name=Path(ev.path).name), "skip")
        elif ev.kind == "error" and current:
            self.panel._results_add(f"✗ {ev.message}", "fail")
        elif ev.kind in ("started", "idle") and current:
            self.status.configure(text=self.tr("sync.watching", added=self.counts.get("added", 0),
                                               updated=self.counts.get("updated", 0),
                                               removed=self.counts.get("removed", 0)))
            self.panel.refresh_docs()

    def _closing(self) -> None:
        if self.on_event in self.ctl.listeners:
            self.ctl.listeners.remove(self.on_event)
        self.ctl.stop_all()
