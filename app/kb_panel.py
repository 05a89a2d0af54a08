"""Left panel: knowledge bases (select, create, rename, delete), their documents, ingest.

Threads: every service call runs through ``app.dispatcher`` (a worker thread); the handlers
here run on the Tk thread. Ingest reports one line per file in the results pane and marks
failed files in the document list; it never opens one dialog per file.
"""
from __future__ import annotations

import os
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, messagebox, ttk

from app.chats import ChatsPane
from app.dialogs import Tooltip, ask_string
from app.folder_sync import SyncRow  # "keep this folder in sync" (its own module)
from app.layout import wrap_row

STATUS_TAGS = {"added": "ok", "updated": "ok", "skipped": "skip", "failed": "fail"}


class KBPanel(ttk.Frame):
    """Knowledge bases + documents + ingest progress.

    Args:
        parent: container widget.
        app: the :class:`app.main.App` (gives ``services``, ``dispatcher``, ``tr``, callbacks).
    """

    def __init__(self, parent, app) -> None:
        super().__init__(parent, padding=6)
        self.app, self.tr = app, app.tr
        self.kb_var = tk.StringVar(value=app.settings.default_kb)
        self.kbs: dict[str, object] = {}
        self.failed: dict[str, str] = {}           # path -> message, for the current kb
        self.pending: list[str] = []
        self.ingest_job = None
        self.checked: set[str] = set()             # knowledge bases checked since the app opened
        self.dropping = False                      # files are being dragged over the window
        self._build_kb_row()
        self.chats_pane = ChatsPane(self, app)
        self.chats_pane.pack(fill="x", pady=(0, 8))
        self._build_ingest()      # packed from the bottom before the list: it stays visible when short
        self.sync_row = SyncRow(self, app)
        self.sync_row.pack(side="bottom", fill="x", pady=(4, 0))
        self._build_docs()
        self.recolor(app.palette)

    # -- layout --------------------------------------------------------------------------
    def _build_kb_row(self) -> None:
        tr = self.tr
        ttk.Label(self, text=tr("kb.title"), style="Heading.TLabel").pack(anchor="w")
        row = ttk.Frame(self)
        row.pack(fill="x", pady=(4, 8))
        self.kb_box = ttk.Combobox(row, textvariable=self.kb_var, state="readonly", width=8)
        self.kb_box.pack(side="left", fill="x", expand=True)
        self.kb_box.bind("<<ComboboxSelected>>", lambda e: self.select_kb(self.kb_var.get()))
        for key, cmd in (("kb.new", self.create_kb), ("kb.rename", self.rename_kb),
                         ("kb.delete", self.delete_kb)):
            ttk.Button(row, text=tr(key), command=cmd, style="Compact.TButton").pack(side="left", padx=(4, 0))

    def _build_docs(self) -> None:
        tr = self.tr
        row = ttk.Frame(self)
        row.pack(side="bottom", fill="x", pady=(6, 0))
        wrap_row(row, [ttk.Button(row, text=tr(key), command=cmd, style="Compact.TButton") for key, cmd in (
            ("kb.add_files", self.add_files), ("kb.add_folder", self.add_folder), ("kb.remove", self.remove_selected),
            ("kb.reingest", self.reingest_selected), ("kb.open", self.open_selected))])   # wraps when narrow
        find = ttk.Frame(self)
        find.pack(fill="x", pady=(0, 4))
        ttk.Label(find, text=tr("kb.filter"), style="Muted.TLabel").pack(side="left", padx=(0, 6))
        self.filter_var = tk.StringVar(self)
        self.filter_entry = ttk.Entry(find, textvariable=self.filter_var, width=10)
        self.filter_entry.pack(side="left", fill="x", expand=True)
        self.filter_var.trace_add("write", lambda *_: self._fill_tree(list(getattr(self, "docs", {}).values())))
        frame = ttk.Frame(self)
        frame.pack(fill="both", expand=True)
        cols = ("name", "pages", "chunks", "status")
        self.tree = ttk.Treeview(frame, columns=cols, show="headings", height=8, selectmode="extended")
        import tkinter.font as tkfont

        heading = tkfont.nametofont("TkHeadingFont")
        for col, width, anchor in (("name", 200, "w"), ("pages", 50, "e"), ("chunks", 55, "e"),
                                   ("status", 110, "w")):
            self.tree.heading(col, text=tr(f"kb.col.{col}"))
            need = heading.measure(tr(f"kb.col.{col}")) + 24   # the header never clips ("Chunks")
            self.tree.column(col, width=max(width, need), minwidth=need, anchor=anchor,
                             stretch=col in ("name", "status"))
        self.tree.bind("<Double-1>", lambda e: self.open_selected())
        self.tip = Tooltip(self.tree)
        self.tree.bind("<Motion>", self._hover, add="+")
        sb = ttk.Scrollbar(frame, orient="vertical", command=self.tree.yview)
        self.tree.configure(yscrollcommand=sb.set)
        self.tree.pack(side="left", fill="both", expand=True)
        sb.pack(side="left", fill="y")

    def _build_ingest(self) -> None:
        self.results = tk.Text(self, height=3, width=30, wrap="none", state="disabled", relief="flat",
                               font="TkDefaultFont", padx=6, pady=4)
        self.results.pack(side="bottom", fill="x", pady=(6, 0))
        self.drop_zone = row = ttk.Frame(self, padding=(6, 4))
        row.pack(side="bottom", fill="x")
        self.progress_label = ttk.Label(row, text=self.tr("kb.drop_hint"), style="Muted.TLabel", wraplength=320)
        self.progress_label.pack(side="left", fill="x", expand=True)
        row.bind("<Configure>", lambda e: self.progress_label.configure(wraplength=max(120, e.width - 100)), add="+")
        self.stop_button = ttk.Button(row, text=self.tr("kb.stop_ingest"), command=self.stop_ingest,
                                      state="disabled")
        self.stop_button.pack(side="right")
        self.progress = ttk.Progressbar(self, mode="determinate", maximum=1.0)
        self.progress.pack(side="bottom", fill="x", pady=(6, 0))

    def recolor(self, palette: dict) -> None:
        """Colours of the plain Tk widgets here (theme switch)."""
        from app.theme import style_text

        style_text(self.results, palette, panel=True)
        for tag, key in (("ok", "ok"), ("skip", "muted"), ("fail", "error")):
            self.results.tag_configure(tag, foreground=palette[key])
        self.tree.tag_configure("fail", foreground=palette["error"])
        style_text(self.chats_pane.listbox, palette, panel=True)

    def highlight_drop(self, on: bool) -> None:
        """Light the drop zone while files are dragged over the window (tkdnd DropEnter/Leave)."""
        self.dropping = on
        self.drop_zone.configure(style="Drop.TFrame" if on else "TFrame")
        if on:
            self.progress_label.configure(text=self.tr("kb.drop_now"), style="Drop.TLabel")
        else:
            self.progress_label.configure(style="Muted.TLabel")
            if self.ingest_job is None:
                self.progress_label.configure(text=self.tr("kb.drop_hint"))

    def say(self, message: str) -> None:
        """One line in the drop zone (an empty drop, a hint)."""
        self.progress_label.configure(text=message)

    def progress_text(self, msg) -> str:
        """An ingest progress message in the UI language: a ``kb.types.Progress`` by its key;
        a plain string (a file name) as it is."""
        key = getattr(msg, "key", None)
        if key:
            text = self.tr(f"progress.{key}", **msg.args)
            if text != f"progress.{key}":
                return text
        return str(msg)

    # -- knowledge bases -----------------------------------------------------------------
    @property
    def kb(self) -> str:
        return self.kb_var.get() or self.app.settings.default_kb

    def refresh_kbs(self, select: str | None = None) -> None:
        """Reload the knowledge-base list (worker), then select ``select`` or keep the current."""
        def on_event(kind, payload):
            if kind == "finished":
                self.kbs = {k.name: k for k in payload}
                names = list(self.kbs) or [self.app.settings.default_kb]
                self.kb_box.configure(values=names)
                want = select or self.kb
                self.select_kb(want if want in names else names[0], reload=bool(select) or want != self.kb)
                self.app.refresh_status()
            elif kind == "failed":
                self.app.show_error(payload)
        self.app.dispatcher.submit("kbs", lambda emit, cancel: self.app.services.kb.list_kbs(), on_event)

    def select_kb(self, name: str, reload: bool = True) -> None:
        """Make ``name`` the current knowledge base; reload its documents and chat."""
        changed = name != self.kb_var.get()
        self.kb_var.set(name)
        if changed or reload:
            self.failed = {}
            if changed and self.ingest_job is None:   # the other one's results and timing go
                self._results_clear()
                self.progress.configure(value=0)
                self.progress_label.configure(text=self.tr("kb.drop_hint"))
            self.refresh_docs()
            self.app.on_kb_changed(name)
        if name not in self.checked:
            self.checked.add(name)
            self.check_kb(name)

    # -- consistency check on open, repair on request --------------------------------------
    def check_kb(self, name: str) -> None:
        """Check ``name`` on a worker (quick: no vector-index pass); offer repair when broken."""
        def on_event(kind, payload):
            if kind == "finished" and payload and not all(r.ok for r in payload):
                problems = "\n".join(self.tr.message(line) for r in payload for line in r.lines())
                if messagebox.askyesno(self.tr("kb.repair_title"),
                                       self.tr("kb.repair_offer", name=name, problems=problems), parent=self):
                    self.repair_kb(name)
        if name in self.kbs:               # a knowledge base not created yet has nothing to check
            self.app.dispatcher.submit("kb-check", lambda emit, cancel: self.app.services.kb.check(
                name, vector_index=False), on_event)

    def repair_kb(self, name: str) -> None:
        """Repair ``name`` on a worker; progress and per-file lines as for an ingest."""
        self._results_clear()
        self.progress_label.configure(text=self.tr("kb.repairing", name=name))

        def work(emit, cancel):
            done = self.app.services.kb.repair(name, on_result=lambda r: emit("result", r),
                                               on_progress=lambda d, t, m: emit("progress", (d, t, m)))
            return [r for _, results in done for r in results]
        self.ingest_job = self.app.dispatcher.submit("ingest", work, self._on_ingest_event)

    def create_kb(self) -> None:
        name = ask_string(self, self.tr, self.tr("kb.new"), self.tr("kb.new_prompt"))
        if name and name.strip():
            self._kb_job("create", lambda: self.app.services.kb.create_kb(name.strip()), name.strip())

    def rename_kb(self) -> None:
        old = self.kb
        new = ask_string(self, self.tr, self.tr("kb.rename"), self.tr("kb.rename_prompt", name=old), old)
        if new and new.strip() and new.strip() != old:
            self._kb_job("rename", lambda: self.app.services.kb.rename_kb(old, new.strip()), new.strip())

    def delete_kb(self) -> None:
        name = self.kb
        if messagebox.askyesno(self.tr("kb.delete"), self.tr("kb.delete_confirm", name=name), parent=self):
            self._kb_job("delete", lambda: self.app.services.kb.delete_kb(name), None)

    def _kb_job(self, what: str, call, select: str | None) -> None:
        def on_event(kind, payload):
            if kind == "finished":
                self.refresh_kbs(select=select)
            elif kind == "failed":
                self.app.show_error(payload)
        self.app.dispatcher.submit(f"kb-{what}", lambda emit, cancel: call(), on_event)

    # -- documents -----------------------------------------------------------------------
    def refresh_docs(self) -> None:
        """Reload the document list of the current knowledge base (worker)."""
        kb = self.kb

        def on_event(kind, payload):
            if kind == "finished" and kb == self.kb:
                self._fill_tree(payload)
                self.app.refresh_status()
            elif kind == "failed":
                self.app.show_error(payload)
        self.app.dispatcher.submit("docs", lambda emit, cancel: self.app.services.kb.documents(kb), on_event)

    def _hover(self, event) -> None:
        """The full path of the document under the pointer in a tooltip (names are cut in the column)."""
        row = self.tree.identify_row(event.y)
        self.tip.show(row if row else "", event.x_root + 12, event.y_root + 16)

    def _fill_tree(self, docs) -> None:
        """Show ``docs`` (those whose name holds the filter text) and the files that failed."""
        self.tree.delete(*self.tree.get_children())
        self.docs = {d.source: d for d in docs}
        needle = self.filter_var.get().strip().lower()
        for d in docs:
            if needle and needle not in (d.name or Path(d.source).name).lower():
                continue
            status = self.tr("kb.status_ocr", n=d.ocr_pages) if d.ocr_pages else self.tr("kb.status_ok")
            self.tree.insert("", "end", iid=d.source, values=(d.name or Path(d.source).name, d.pages,
                                                              d.chunks, status))
        for path, msg in self.failed.items():
            if not self.tree.exists(path):
                self.tree.insert("", "end", iid=path, tags=("fail",),
                                 values=(Path(path).name, "", "", f"{self.tr('kb.status_failed')}: {msg}"))

    def selected_sources(self) -> list[str]:
        return [s for s in self.tree.selection() if s in getattr(self, "docs", {})]

    def remove_selected(self) -> None:
        sources, kb = self.selected_sources(), self.kb
        for s in [s for s in self.tree.selection() if s in self.failed]:
            self.failed.pop(s, None)
            self.tree.delete(s)
        if not sources:
            return

        def work(emit, cancel):
            for s in sources:
                self.app.services.kb.remove(s, kb)
        self.app.dispatcher.submit("remove", work, self._after_change)

    def reingest_selected(self) -> None:
        """Remove the selected documents and ingest their files again."""
        sources, kb = self.selected_sources(), self.kb
        missing = [s for s in sources if not os.path.exists(s)]
        if missing:
            self.app.show_error(self.tr("kb.missing_file", path=missing[0]))
            return
        if sources:
            def work(emit, cancel):
                for s in sources:
                    self.app.services.kb.remove(s, kb)
            self.app.dispatcher.submit("remove", work, lambda k, p: (
                self.ingest(sources) if k == "finished" else self._after_change(k, p)))

    def open_selected(self) -> None:
        sel = self.tree.selection()
        if sel:
            self.app.open_source(sel[0], 1, "")

    def _after_change(self, kind, payload) -> None:
        if kind == "finished":
            self.refresh_docs()
            self.refresh_kbs()
        elif kind == "failed":
            self.app.show_error(payload)

    # -- ingest --------------------------------------------------------------------------
    def add_files(self) -> None:
        paths = filedialog.askopenfilenames(parent=self, title=self.tr("kb.add_files"), filetypes=[
            (self.tr("kb.filetypes"), "*.pdf *.docx *.txt *.md"), (self.tr("kb.all_files"), "*")])
        if paths:
            self.ingest(list(paths))

    def add_folder(self) -> None:
        path = filedialog.askdirectory(parent=self, title=self.tr("kb.add_folder"))
        if path:
            self.ingest([path])

    def ingest(self, paths: list[str]) -> None:
        """Add files/folders to the current knowledge base on a worker; queue if one runs."""
        if self.ingest_job is not None:
            self.pending.extend(paths)
            return
        kb = self.kb
        self._results_clear()
        self.progress.configure(value=0, maximum=1.0)
        self.progress_label.configure(text=self.tr("kb.ingesting", n=len(paths)))
        self.stop_button.configure(state="normal")

        def work(emit, cancel):
            return self.app.services.kb.ingest(
                paths, kb, cancel=cancel, on_result=lambda r: emit("result", r),
                on_progress=lambda done, total, msg: emit("progress", (done, total, msg)))
        self.ingest_job = self.app.dispatcher.submit("ingest", work, self._on_ingest_event)

    def stop_ingest(self) -> None:
        self.app.dispatcher.cancel(self.ingest_job)
        self.pending.clear()
        self.progress_label.configure(text=self.tr("kb.stopping"))

    def _on_ingest_event(self, kind, payload) -> None:
        if kind == "progress":
            done, total, msg = payload
            self.progress.configure(maximum=max(float(total), 1e-9), value=float(done))
            self.progress_label.configure(text=self.progress_text(msg)[:80])
        elif kind == "result":
            self._show_result(payload)
        elif kind in ("finished", "failed"):
            if kind == "failed":
                self._results_add(f"✗ {self.tr.message(payload)}", "fail")
            results = payload if kind == "finished" else []
            ok = sum(1 for r in results if r.ok)
            self.progress.configure(value=self.progress.cget("maximum"))
            self.progress_label.configure(text=self.tr("kb.ingest_done", ok=ok, failed=len(results) - ok))
            self.stop_button.configure(state="disabled")
            self.ingest_job = None
            self.refresh_kbs()
            self.refresh_docs()
            if self.pending:
                paths, self.pending = self.pending, []
                self.ingest(paths)

    def _show_result(self, r) -> None:
        name = Path(r.path).name
        if r.status == "failed":
            self.failed[r.path] = reason = self.tr.message(r.message)
            self._results_add(f"✗ {name} — {reason}", "fail")
            if not self.tree.exists(r.path):
                self.tree.insert("", "end", iid=r.path, tags=("fail",), values=(
                    name, "", "", f"{self.tr('kb.status_failed')}: {reason}"))
            return
        self.failed.pop(r.path, None)
        text = self.tr(f"kb.result.{r.status}", name=name, pages=r.pages, chunks=r.chunks)
        if r.ocr_pages:
            text += " " + self.tr("kb.status_ocr", n=r.ocr_pages)
        self._results_add(("✓ " if r.status != "skipped" else "• ") + text, STATUS_TAGS.get(r.status, "ok"))

    def _results_clear(self) -> None:
        self.results.configure(state="normal")
        self.results.delete("1.0", "end")
        self.results.configure(state="disabled")

    def _results_add(self, line: str, tag: str) -> None:
        self.results.configure(state="normal")
        self.results.insert("end", line + "\n", tag)
        self.results.see("end")
        self.results.configure(state="disabled")
