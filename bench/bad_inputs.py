"""Hostile inputs: time and peak memory to refuse a docx zip bomb, and to parse a large docx.

    python bench/bad_inputs.py [--bomb-mb 1150] [--paragraphs 100000] [--json]

Each measurement runs ``kb.loaders.load`` in a fresh subprocess (peak RSS = that process's
``ru_maxrss``, which includes the interpreter and python-docx/PyMuPDF imports):

1. **bomb**: a .docx whose word/document.xml declares ``--bomb-mb`` MB (the issue's bomb: 3.5 MB
   on disk, 1.15 GB of XML); default settings (``max_uncompressed_mb`` 512). Refused from the zip
   directory, never unpacked.
2. **large docx**: ``--paragraphs`` short paragraphs (a heading every 500), parsed with the
   cached style lookup; and the same parse with python-docx's per-paragraph ``Paragraph.style``
   lookup (the old heading check) on a tenth of the paragraphs, scaled, for the ratio.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBE = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from kb import loaders
old = {old!r}
if old:                                    # the heading check before the style cache
    loaders._style_names = lambda document: None
t = time.perf_counter()
try:
    doc = loaders.load({path!r})
    out = {{"ok": True, "blocks": len(doc.blocks)}}
except loaders.LoaderError as e:
    out = {{"ok": False, "message": str(e)}}
out["seconds"] = round(time.perf_counter() - t, 3)
out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(out))
"""


def probe(path: Path, old: bool = False) -> dict:
    """Load ``path`` in a fresh interpreter -> {ok, message|blocks, seconds, peak_rss_mb}."""
    code = PROBE.format(root=str(ROOT), path=str(path), old=old)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        return {"ok": False, "message": r.stderr.strip().splitlines()[-1] if r.stderr else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bomb-mb", type=int, default=1150)
    ap.add_argument("--paragraphs", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from tests.bad_inputs import docx_bomb, slow_docx

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        bomb = docx_bomb(Path(tmp) / "bomb.docx", args.bomb_mb)
        rows["bomb"] = {"size_mb": round(bomb.stat().st_size / 2**20, 2), "unpacked_mb": args.bomb_mb, **probe(bomb)}
        big = slow_docx(Path(tmp) / "big.docx", args.paragraphs)
        rows["large_docx"] = {"paragraphs": args.paragraphs, **probe(big)}
        tenth = slow_docx(Path(tmp) / "tenth.docx", args.paragraphs // 10)
        old = probe(tenth, old=True)
        rows["large_docx_old_heading_check"] = {"paragraphs": args.paragraphs // 10, **old,
                                                "scaled_seconds": round(old.get("seconds", 0) * 10, 1)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for name, r in rows.items():
        print(name, " ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
