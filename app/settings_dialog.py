"""Settings dialog: answering model/adapter, backend, embedder, retrieval and sampling knobs,
UI language. Saved with ``settings.update`` (one write); a model change goes through
``registry.use`` on a worker so the registry and settings agree.
"""
from __future__ import annotations

import tkinter as tk
from tkinter import filedialog, ttk

#: key -> (kind, choices or None); order is the dialog's order.
FIELDS: dict[str, tuple[str, tuple | None]] = {
    "model": ("model", None),
    "adapter": ("path", None),
    "backend": ("choice", ("auto", "transformers", "ollama", "llamacpp")),
    "ollama_host": ("str", None),
    "ollama_model": ("str", None),
    "embedding_model": ("str", None),
    "top_k": ("int", (1, 50)),
    "chunk_size": ("int", (100, 5000)),
    "chunk_overlap": ("int", (0, 1000)),
    "temperature": ("float", (0.0, 2.0)),
    "max_new_tokens": ("int", (16, 8192)),
    "think": ("bool", None),
    "ui_language": ("choice", ("zh", "en")),
    "theme": ("choice", ("auto", "light", "dark")),
}
#: settings that apply after a restart (a new embedding_model applies at once, as on the first-run panel)
RESTART_KEYS = {"ui_language"}
#: Choices shown by name, not by code: the languages in their own words, the themes in the UI's.
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}


def choice_labels(key: str, tr) -> dict[str, str]:
    """value -> label shown for the choice field ``key`` (values that are names stay as they are)."""
    if key == "ui_language":
        return dict(LANGUAGE_NAMES)
    if key == "theme":
        return {m: tr(f"theme.{m}") for m in FIELDS["theme"][1]}
    return {v: v for v in FIELDS[key][1]}


def parse_changes(settings, raw: dict[str, object], tr=None) -> tuple[dict, list[str]]:
    """Validate the dialog's raw values against :data:`FIELDS`.

    Args:
        settings: current settings (only changed keys are returned).
        raw: key -> value as read from the widgets (strings, or bool for checkboxes).
        tr: an :class:`app.i18n.Strings` for messages in the UI language (default: English).

    Returns:
        ``(changes, errors)``: typed values that differ from the current ones, and one
        message per bad field ("top_k: give a whole number from 1 to 50").
    """
    changes, errors = {}, []
    for key, value in raw.items():
        kind, limits = FIELDS[key]
        try:
            if kind == "int":
                value = int(str(value).strip())
            elif kind == "float":
                value = float(str(value).strip())
            if kind in ("int", "float") and not limits[0] <= value <= limits[1]:
                raise ValueError
        except ValueError:
            if tr is not None:
                errors.append(tr(f"settings.bad_{kind}", field=tr(f"settings.{key}"), low=limits[0], high=limits[1]))
            else:
                word = "a whole number" if kind == "int" else "a number"
                errors.append(f"{key}: give {word} from {limits[0]} to {limits[1]}")
            continue
        if isinstance(value, str):
            value = value.strip()
        if value != getattr(settings, key):
            changes[key] = value
    if "chunk_overlap" in raw and not errors:
        size = changes.get("chunk_size", settings.chunk_size)
        if changes.get("chunk_overlap", settings.chunk_overlap) >= size:
            errors.append(tr("settings.bad_overlap", overlap=tr("settings.chunk_overlap"),
                             size=tr("settings.chunk_size")) if tr is not None
                          else "chunk_overlap: must be smaller than chunk_size")
    return changes, errors


class SettingsDialog(tk.Toplevel):
    """Modal-less settings window; ``on_saved(changes)`` is called after a save."""

    def __init__(self, app, model_names: list[str], on_saved) -> None:
        super().__init__(app.root)
        self.app, self.tr, self.on_saved = app, app.tr, on_saved
        self.title(self.tr("settings.title"))
        self.transient(app.root)
        self.vars: dict[str, tk.Variable] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.widgets: dict[str, tk.Widget] = {}
        form = ttk.Frame(self, padding=16)
        form.pack(fill="both", expand=True)
        for row, key in enumerate(FIELDS):
            ttk.Label(form, text=self.tr(f"settings.{key}")).grid(row=row, column=0, sticky="w", pady=3,
                                                                  padx=(0, 12))
            self._field(form, row, key, model_names)
        self.error = ttk.Label(form, text="", foreground=app.palette["error"], wraplength=420)
        self.error.grid(row=len(FIELDS), column=0, columnspan=3, sticky="w")
        bar = ttk.Frame(self, padding=(16, 0, 16, 16))
        bar.pack(fill="x")
        ttk.Button(bar, text=self.tr("settings.save"), command=self.save, style="Accent.TButton").pack(side="right")
        ttk.Button(bar, text=self.tr("settings.cancel"), command=self.destroy).pack(side="right", padx=6)

    def _field(self, form, row: int, key: str, model_names: list[str]) -> None:
        kind, choices = FIELDS[key]
        value = getattr(self.app.settings, key)
        if kind == "bool":
            var = tk.BooleanVar(value=bool(value))
            ttk.Checkbutton(form, variable=var).grid(row=row, column=1, sticky="w")
        else:
            var = tk.StringVar(value=str(value))
            if kind == "choice":    # shown by label ("中文 / English"), saved by value
                labels = choice_labels(key, self.tr)
                self.labels[key] = labels
                var = tk.StringVar(self, value=labels.get(str(value), str(value)))
                widget = ttk.Combobox(form, textvariable=var, values=list(labels.values()), width=40,
                                      state="readonly")
            elif kind == "model":
                values = sorted(set(model_names) | {str(value)})
                widget = ttk.Combobox(form, textvariable=var, values=values, width=40)
            else:
                widget = ttk.Entry(form, textvariable=var, width=42)
            widget.grid(row=row, column=1, sticky="we")
            self.widgets[key] = widget
            if kind == "path":
                ttk.Button(form, text="…", width=3, command=lambda: var.set(
                    filedialog.askdirectory(parent=self) or var.get())).grid(row=row, column=2)
        self.vars[key] = var

    def save(self) -> dict | None:
        """Validate and save; return the changes (None when a field is wrong)."""
        raw = {k: v.get() for k, v in self.vars.items()}
        for key, labels in self.labels.items():
            raw[key] = next((value for value, label in labels.items() if label == raw[key]), raw[key])
        changes, errors = parse_changes(self.app.settings, raw, self.tr)
        if errors:
            self.error.configure(text="\n".join(errors))
            return None
        model = changes.pop("model", None)
        adapter = changes.pop("adapter", None)
        if changes:
            self.app.settings.update(changes)
        if model is not None or adapter is not None:
            changes.update({"model": model or self.app.settings.model,
                            "adapter": adapter if adapter is not None else self.app.settings.adapter})
        self.on_saved(changes)
        self.destroy()
        return changes
