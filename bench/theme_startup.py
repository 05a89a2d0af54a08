"""Start-up cost of a ttk theme, side by side in one run: stock "clam", sv-ttk, ttkbootstrap.

Each sample is a fresh Python process that creates a Tk root, applies the theme, builds
~60 widgets (buttons, entries, a treeview, a progress bar) and renders them once
(``update()``); its wall time from process start to the first full render is printed.
Themes alternate within each round so a busy machine slows all of them alike.

    DISPLAY=:1 python bench/theme_startup.py --rounds 5 [--tb-path /tmp/ttkbootstrap-dir]

Prints one line per theme: median and min milliseconds, and the ratio to clam.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import sys, time
t0 = float(sys.argv[2])
kind = sys.argv[1]
if kind == "ttkbootstrap":
    import ttkbootstrap as tb
    root = tb.Window(themename="flatly")
    from tkinter import ttk
else:
    import tkinter as tk
    from tkinter import ttk
    root = tk.Tk()
    if kind == "sv_ttk":
        import sv_ttk
        sv_ttk.set_theme("light", root)
    else:
        ttk.Style(root).theme_use("clam")
frame = ttk.Frame(root, padding=8)
frame.pack(fill="both", expand=True)
for i in range(20):
    ttk.Button(frame, text=f"button {i}").grid(row=i, column=0)
    ttk.Entry(frame).grid(row=i, column=1)
    ttk.Label(frame, text=f"label {i}").grid(row=i, column=2)
tree = ttk.Treeview(frame, columns=("a", "b"), show="headings")
tree.grid(row=0, column=3, rowspan=10)
ttk.Progressbar(frame, mode="indeterminate").grid(row=11, column=3)
root.update()
print(f"{(time.time() - t0) * 1000:.1f}")
root.destroy()
"""


def sample(kind: str, env: dict) -> float:
    """One cold start of theme ``kind``; milliseconds from spawn to first render."""
    out = subprocess.run([sys.executable, "-c", CHILD, kind, repr(time.time())], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tb-path", default="", help="extra sys.path entry holding ttkbootstrap")
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.tb_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.tb_path, env.get("PYTHONPATH", "")]))
    kinds = ["clam", "sv_ttk", "ttkbootstrap"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for k in kinds:
            times[k].append(sample(k, env))
    base = statistics.median(times["clam"])
    for k in kinds:
        med = statistics.median(times[k])
        print(f"{k:13s} median {med:7.1f} ms  min {min(times[k]):7.1f} ms  x{med / base:.2f} of clam")
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
