"""The windows fit a laptop screen: default sizes from the screen, and every control reachable
at 1024x700, 1366x768 and at the main window's minimum size (real Tk under Xvfb)."""
from __future__ import annotations

import doctest

import pytest

from app import layout

pytestmark = pytest.mark.gui

SIZES = [(1024, 700), (1366, 768)]


def test_fit_size_cases():
    failed, attempted = doctest.testmod(layout)
    assert attempted >= 3 and failed == 0


def test_fit_size_never_taller_than_the_screen():
    for screen in [(1366, 768), (1280, 800), (1024, 700), (1920, 1080)]:
        w, h = layout.fit_size((1280, 820), screen, minimum=(900, 560))
        assert w <= screen[0] - layout.MARGIN_W and h <= screen[1] - layout.MARGIN_H


def _outside(root, widgets: dict) -> list[str]:
    """Names of the widgets whose bounding box is not wholly inside ``root``'s client area."""
    root.update()
    rx, ry, rw, rh = root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(), root.winfo_height()
    bad = []
    for name, w in widgets.items():
        x, y = w.winfo_rootx() - rx, w.winfo_rooty() - ry
        width, height = w.winfo_width(), w.winfo_height()
        least = 5 if w.winfo_class() == "TProgressbar" else 8   # the theme's progress bars are thin by design
        if not w.winfo_ismapped() or width < least or height < least or x < 0 or y < 0 \
                or x + width > rw or y + height > rh:
            bad.append(f"{name} at {x},{y} {width}x{height} in {rw}x{rh}")
    return bad


def _controls(app) -> dict:
    chat, kb = app.chat, app.kb_panel
    named = {"ask": chat.ask_button, "stop": chat.stop_button, "question": chat.input,
             "transcript": chat.transcript, "status bar": app.status, "document list": kb.tree,
             "kb choice": kb.kb_box, "ingest stop": kb.stop_button, "ingest results": kb.results,
             "ingest progress": kb.progress}
    named.update({f"chat tool {i}": b for i, b in enumerate(chat.tool_buttons)})
    kb_buttons = [b for row in kb.winfo_children() if row.winfo_class() == "TFrame"
                  for b in row.winfo_children() if b.winfo_class() == "TButton"]
    assert len(kb_buttons) >= 8, "the kb panel's buttons were not found"
    named.update({f"kb button {i}": b for i, b in enumerate(kb_buttons)})
    named.update({f"chats button {i}": b for i, b in enumerate(app.chats_pane.buttons)})
    named.update({"chat list": app.chats_pane.listbox, "stage line": chat.stage_row})
    named.update({f"toolbar {i}": b for i, b in enumerate(app.toolbar)})
    return named


@pytest.mark.parametrize("available,lang", [(True, "zh"), (False, "zh"), (True, "en"), (False, "en")],
                         ids=["model-zh", "first-run-zh", "model-en", "first-run-en"])
def test_every_control_on_screen(make_app, settings, available, lang):
    from app.main import MIN_SIZE

    settings.set("ui_language", lang, persist=False)
    app = make_app(available=available)
    from tests.fakes import pump

    assert pump(app.root, lambda: app.model_ok is not None and (available or app.first_run is not None))
    for width, height in [*SIZES, MIN_SIZE]:
        app.root.geometry(f"{width}x{height}")
        controls = _controls(app)
        assert _outside(app.root, controls) == [], f"at {width}x{height}"


def test_default_size_fits_the_screen(make_app):
    app = make_app()
    app.root.update()
    assert app.root.winfo_height() <= app.root.winfo_screenheight() - layout.MARGIN_H
    assert app.root.winfo_width() <= app.root.winfo_screenwidth()
    from app.page_viewer import PageViewer

    viewer = PageViewer(app)
    viewer.update()
    assert 360 <= viewer.winfo_height() <= viewer.winfo_screenheight() - layout.MARGIN_H
