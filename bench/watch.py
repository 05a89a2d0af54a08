"""How soon ``python main.py watch`` takes a new file and drops a deleted one.

    python bench/watch.py [--embedder minilm|e5|PATH] [--files 5] [--quiet-s 2] [--json]

Runs the real CLI on a temp folder and data dir; writes ``--files`` small text files one at a
time, each after the previous one was announced, then deletes them one at a time. Reports the
seconds from each write (delete) to the CLI's "added" ("removed") line: the quiet period plus
the ingest (parse, embed, store, BM25 rebuild). The first file also loads the embedder.
"""
from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OFFLINE, ROOT, add_json_flag, emit, machine, percentile, table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--quiet-s", type=float, default=2.0)
    add_json_flag(ap)
    args = ap.parse_args(argv)
    model = {"minilm": OFFLINE / "all-MiniLM-L6-v2", "e5": OFFLINE / "multilingual-e5-small"}.get(args.embedder,
                                                                                                  Path(args.embedder))
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tqts-bench-watch-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TQTS_")},
               "TQTS_EMBEDDING_MODEL": str(model)}
        p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--home", str(Path(tmp) / "home"), "watch",
                              "--quiet-s", str(args.quiet_s), str(folder)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()

        def wait_for(text: str, name: str = "") -> float:
            t = time.perf_counter()
            while True:
                line = lines.get(timeout=600)
                if text in line and name in line:
                    return time.perf_counter() - t

        try:
            wait_for("watching ")
            added, removed = [], []
            for k in range(args.files):
                (folder / f"note{k}.txt").write_text(f"第{k}份笔记。note {k} says token{k}word.\n" * 20, encoding="utf-8")
                added.append(wait_for("added", f"note{k}.txt"))
            for k in range(args.files):
                (folder / f"note{k}.txt").unlink()
                removed.append(wait_for("removed", f"note{k}.txt"))
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
    load_end = os.getloadavg()
    later = added[1:] or added
    result = {"machine": machine(), "embedder": str(model), "quiet_s": args.quiet_s, "added_s": added,
              "removed_s": removed, "loadavg_start": load_start[0], "loadavg_end": load_end[0]}
    rows = [("new file -> added (first: loads the embedder)", added[0], None),
            ("new file -> added (the others)", percentile(later, 50), max(later)),
            ("deleted file -> removed", percentile(removed, 50), max(removed))]
    emit(result, table(["seconds", "median", "max"], rows)
         + f"\nquiet period {args.quiet_s:g} s; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end",
         args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
