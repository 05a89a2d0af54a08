"""The look: the Sun Valley ttk theme (sv-ttk), light or dark, and colours for plain Tk widgets.

sv-ttk was picked over ttkbootstrap by start-up time (``bench/theme_startup.py``, README
"The look"); without it the stock "clam" theme is used with the same palettes.

``settings.theme``: ``auto`` follows the system where it can be read (darkdetect: macOS,
Windows, GNOME's colour scheme), else light; ``light`` / ``dark`` force one.

Threads: Tk thread only.
"""
from __future__ import annotations

import logging
from tkinter import ttk

log = logging.getLogger(__name__)
MODES = ("auto", "light", "dark")

#: Colours the ttk theme does not reach: Text widgets, their tags, status colours.
PALETTES: dict[str, dict[str, str]] = {
    "light": {
        "bg": "#fafafa", "fg": "#1c1c1c", "text_bg": "#ffffff", "muted": "#5f6368", "dim": "#8a8a8a",
        "question": "#1a3a8f", "answer": "#1c1c1c", "accent": "#005fb8", "error": "#b00020",
        "ok": "#1b6e20", "refusal_fg": "#8a4b00", "refusal_bg": "#fff3e0", "quote": "#2e5a2e",
        "panel_bg": "#f3f3f3", "drop_bg": "#dbeafe", "select_bg": "#cfe3ff",
    },
    "dark": {
        "bg": "#1c1c1c", "fg": "#e8e8e8", "text_bg": "#232323", "muted": "#a0a0a0", "dim": "#8c8c8c",
        "question": "#9ec1ff", "answer": "#ececec", "accent": "#60cdff", "error": "#ff8a80",
        "ok": "#8fd694", "refusal_fg": "#ffcc80", "refusal_bg": "#3a2a12", "quote": "#a5d6a7",
        "panel_bg": "#2b2b2b", "drop_bg": "#1e3a5f", "select_bg": "#2f4f7f",
    },
}
SPACING = 8   # px between groups; half of it inside a group


def system_mode() -> str | None:
    """"light" / "dark" as the desktop reports it, or None when it cannot be read."""
    try:
        import darkdetect

        value = darkdetect.theme()
    except Exception:  # noqa: BLE001 - an unknown desktop: not readable
        return None
    return value.lower() if isinstance(value, str) and value.lower() in ("light", "dark") else None


def resolve(mode: str) -> str:
    """``mode`` (auto | light | dark) -> light | dark.

    >>> resolve("dark"), resolve("light")
    ('dark', 'light')
    """
    if mode in ("light", "dark"):
        return mode
    return system_mode() or "light"


def apply(root, mode: str = "auto") -> dict[str, str]:
    """Use the light or dark theme on ``root`` (a ``tk.Tk``); return its :data:`PALETTES` entry
    with ``name`` (light | dark) and ``theme`` (the ttk theme in use) added."""
    name = resolve(mode)
    style = ttk.Style(root)
    try:
        import sv_ttk

        sv_ttk.set_theme(name, root)
    except Exception as e:  # noqa: BLE001 - no sv-ttk: the stock theme with our colours
        log.info("sv-ttk unavailable (%s); using clam", e)
        if "clam" in style.theme_names():
            style.theme_use("clam")
    palette = dict(PALETTES[name], name=name, theme=style.theme_use())
    style.configure("Heading.TLabel", font=("TkDefaultFont", 12, "bold"))
    style.configure("Status.TLabel", foreground=palette["muted"], padding=(SPACING, 3))
    style.configure("Muted.TLabel", foreground=palette["muted"])
    style.configure("Stage.TLabel", foreground=palette["accent"])
    style.configure("Compact.TButton", padding=(6, 3))   # the narrow knowledge-base column's rows
    style.configure("Drop.TFrame", background=palette["drop_bg"])
    style.configure("Drop.TLabel", background=palette["drop_bg"], foreground=palette["accent"])
    root.configure(background=palette["bg"])
    return palette


def style_text(widget, palette: dict[str, str], *, panel: bool = False) -> None:
    """Colour a plain ``tk.Text`` (or Listbox) to match the theme."""
    bg = palette["panel_bg"] if panel else palette["text_bg"]
    opts = {"background": bg, "foreground": palette["fg"], "selectbackground": palette["select_bg"],
            "selectforeground": palette["fg"], "highlightthickness": 0, "borderwidth": 0}
    if widget.winfo_class() == "Text":
        opts["insertbackground"] = palette["fg"]
    widget.configure(**opts)
