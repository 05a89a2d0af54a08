"""How quickly the Retrain dialog opens, by the tick-gap method (app.worker.Dispatcher's
``max_gap_ms``: the longest time the Tk event loop did not tick).

    python bench/retrain_open.py [--runs-from DIR] [--json]

In a fresh process (cold imports, as in the app's first click): a Tk root with a Dispatcher
ticking every 40 ms; then ``open_retrain_dialog`` is imported and called from an ``after()``
callback, as the main window's button does. Prints: the time that took (the window is up), the
time until the dialog is filled in (plot, recipes, history: ``dialog.loaded``), and the longest
tick gap over the whole opening. Needs a display (run under ``xvfb-run`` on a server).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Registry:
    def list(self):
        return []

    def active(self):
        return None


def measure(home: Path) -> dict:
    """Open the dialog once in this process; return the timings (ms)."""
    import tkinter as tk

    import settings as settings_mod
    from app.worker import Dispatcher

    os.environ["TQTS_HOME"] = str(home)
    root = tk.Tk()
    disp = Dispatcher(root, interval_ms=40)
    services = SimpleNamespace(settings=settings_mod.load(), registry=_Registry(), answers=None, kb=None)
    out: dict = {}

    def click():
        disp.reset_gap()
        t0 = time.perf_counter()
        from app.retrain import open_retrain_dialog

        dlg = open_retrain_dialog(root, services)
        out["open_call_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        out["t0"], out["dlg"] = t0, dlg

    root.after(300, click)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        root.update()
        dlg = out.get("dlg")
        if dlg is not None and dlg.loaded and dlg.gpu is not None:
            out["filled_in_ms"] = round((time.perf_counter() - out["t0"]) * 1000, 1)
            break
        time.sleep(0.005)
    out["max_tick_gap_ms"] = round(disp.max_gap_ms, 1)
    out.pop("t0", None)
    dlg = out.pop("dlg", None)
    if dlg is not None:
        dlg.close()
    root.destroy()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", help="data dir whose runs the dialog lists (default: an empty temp dir)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="tqts-open-"))
    res = measure(home)
    res["load"] = os.getloadavg()
    print(json.dumps(res) if args.json else
          f"open call {res['open_call_ms']} ms (window up), filled in after {res.get('filled_in_ms')} ms, "
          f"longest tick gap {res['max_tick_gap_ms']} ms; load {res['load'][0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
