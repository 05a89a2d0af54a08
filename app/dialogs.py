"""Small dialogs in the UI language: a one-line question (tkinter's simpledialog has English
OK/Cancel) and Help → About. Tk's own message boxes and file dialogs are localised through
Tk's message catalogue (:func:`localize_tk`).

Threads: Tk thread only.
"""
from __future__ import annotations

import platform
import sys
import tkinter as tk
from tkinter import ttk

from app.layout import place

#: Tk's catalogue (msgs/zh_cn.msg) answers "&Yes"/"&No" with 确定/取消; a yes/no question reads better with 是/否.
TK_OVERRIDES = {"zh_cn": {"&Yes": "是(&Y)", "&No": "否(&N)", "yes": "是", "no": "否"}}
TK_LOCALES = {"zh": "zh_cn", "en": "en"}
VERSION = "0.13"
LICENCES = [("TQT-s", "MIT"), ("Qwen2.5-0.5B-Instruct", "Apache-2.0"), ("Tcl/Tk", "TCL"),
            ("tkinterdnd2", "MIT"), ("sv-ttk", "MIT"), ("chromadb", "Apache-2.0"), ("transformers", "Apache-2.0"),
            ("TRL", "Apache-2.0"), ("sentence-transformers", "Apache-2.0"), ("PyMuPDF", "AGPL-3.0"),
            ("python-docx", "MIT"), ("jieba", "MIT"), ("bm25s", "MIT"), ("vosk", "Apache-2.0")]


def localize_tk(root, lang: str) -> str:
    """Point Tk's message catalogue at ``lang`` (its file/save/message dialogs follow); returns the
    Tk locale used."""
    locale = TK_LOCALES.get(lang, "en")
    root.tk.eval("package require msgcat")
    root.tk.call("::msgcat::mclocale", locale)
    for src, dst in TK_OVERRIDES.get(locale, {}).items():
        root.tk.call("namespace", "eval", "::tk", ["::msgcat::mcset", locale, src, dst])
    return locale


def ask_string(parent, tr, title: str, prompt: str, initial: str = "") -> str | None:
    """A modal one-line question; the text typed (stripped), or None on cancel / empty."""
    top = tk.Toplevel(parent)
    top.title(title)
    top.transient(parent.winfo_toplevel())
    frame = ttk.Frame(top, padding=16)
    frame.pack(fill="both", expand=True)
    ttk.Label(frame, text=prompt).pack(anchor="w")
    var = tk.StringVar(top, value=initial)
    entry = ttk.Entry(frame, textvariable=var, width=36)
    entry.pack(fill="x", pady=(6, 12))
    result: list[str | None] = [None]

    def done(ok: bool) -> None:
        result[0] = var.get().strip() if ok else None
        top.destroy()
    bar = ttk.Frame(frame)
    bar.pack(fill="x")
    ttk.Button(bar, text=tr("dialog.ok"), style="Accent.TButton", command=lambda: done(True)).pack(side="right")
    ttk.Button(bar, text=tr("dialog.cancel"), command=lambda: done(False)).pack(side="right", padx=(0, 6))
    top.bind("<Return>", lambda e: done(True))
    top.bind("<Escape>", lambda e: done(False))
    entry.focus_set()
    entry.select_range(0, "end")
    top.wait_visibility()
    top.grab_set()
    top.wait_window()
    return result[0] or None


class Tooltip:
    """A small borderless window with one line of text near the pointer; ``show("")`` hides it."""

    def __init__(self, widget) -> None:
        self.widget, self.text, self.top = widget, "", None
        widget.bind("<Leave>", lambda e: self.show(""), add="+")

    def show(self, text: str, x: int = 0, y: int = 0) -> None:
        if text == self.text and (self.top is not None or not text):
            return
        self.text = text
        if self.top is not None:
            self.top.destroy()
            self.top = None
        if text:
            self.top = tk.Toplevel(self.widget)
            self.top.wm_overrideredirect(True)
            self.top.wm_geometry(f"+{x}+{y}")
            ttk.Label(self.top, text=text, padding=(6, 3), relief="solid", borderwidth=1).pack()


class AboutDialog(tk.Toplevel):
    """Help → About: version, data dir, model, Python/Tk, and the licences of what ships with us."""

    def __init__(self, app) -> None:
        super().__init__(app.root)
        tr, s = app.tr, app.settings
        self.title(tr("about.title"))
        self.transient(app.root)
        place(self, (560, 520), minimum=(420, 360))
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=f"TQT-s {VERSION}", style="Heading.TLabel").pack(anchor="w")
        ttk.Label(frame, text=tr("about.tagline"), wraplength=500).pack(anchor="w", pady=(2, 10))
        model = f"{s.ollama_model} (Ollama)" if s.backend == "ollama" else s.model
        rows = [(tr("about.data_dir"), str(s.home)), (tr("about.model"), model),
                (tr("about.embedder"), s.embedding_model),
                (tr("about.runtime"), f"Python {platform.python_version()} · Tk {app.root.tk.eval('info patchlevel')}"
                                      f" · {sys.platform}")]
        grid = ttk.Frame(frame)
        grid.pack(fill="x")
        for i, (k, v) in enumerate(rows):
            ttk.Label(grid, text=k, style="Muted.TLabel").grid(row=i, column=0, sticky="nw", padx=(0, 12), pady=1)
            ttk.Label(grid, text=v, wraplength=380).grid(row=i, column=1, sticky="w", pady=1)
        ttk.Label(frame, text=tr("about.licences"), style="Muted.TLabel").pack(anchor="w", pady=(12, 2))
        self.licences = tk.Text(frame, height=8, width=50, wrap="word", font="TkDefaultFont")
        from app.theme import style_text

        style_text(self.licences, app.palette, panel=True)
        self.licences.insert("1.0", "\n".join(f"{name} — {lic}" for name, lic in LICENCES))
        self.licences.configure(state="disabled")
        self.licences.pack(fill="both", expand=True)
        ttk.Label(frame, text=tr("about.shortcuts"), style="Muted.TLabel", wraplength=500,
                  justify="left").pack(anchor="w", pady=(10, 0))
        ttk.Button(frame, text=tr("dialog.close"), command=self.destroy).pack(anchor="e", pady=(10, 0))
        self.bind("<Escape>", lambda e: self.destroy())
