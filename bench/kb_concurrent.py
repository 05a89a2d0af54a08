"""Chunks the vector index keeps after concurrent ingests into one knowledge base.

    python bench/kb_concurrent.py [--files 100] [--writers 2] [--sync-threshold N]

Makes ``--files`` text files (every chunk's text distinct), runs ``--writers`` ingests of the
folder at once (``tests/kb_procs.py``: real services, the hash embedder, one write per file),
then a new process counts the chunk ids a vector query with ``n_results`` = the manifest's
chunks returns. Prints manifest chunks, chromadb rows and reachable ids; zero loss is
reachable == chunks. ``--sync-threshold`` sets chromadb's ``hnsw:sync_threshold`` of the new
collection (default: chromadb's, 1000; the tests use 20).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COUNT = r"""
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
import settings as S
from kb.store import Store
base = Store(S.load({home!r}).store_dir).open("default", recover=False)
total = base.chunk_count()
res = base.collection.query(query_embeddings=[np.ones(64, dtype=np.float32) / 8], n_results=total, include=[])
print(json.dumps({{"chunks": total, "rows": base.collection.count(), "reachable": len(set(res["ids"][0]))}}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--sync-threshold", type=int, default=0, help="0: chromadb's default")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "docs", Path(tmp) / "home"
        folder.mkdir()
        for k in range(args.files):
            (folder / f"note{k:03d}.txt").write_text(
                f"第{k}份文件。宪法是国家的根本法。token{k}word appears only here.\n\n"
                + "".join(f"段{k}之{j}根本制度。" for j in range(20 + 90 * (k % 16))), encoding="utf-8")
        env = {**os.environ, "TQTS_HOME": str(home), "TQTS_TEST_SYNC_THRESHOLD": str(args.sync_threshold)}
        procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "kb_procs.py"), str(ROOT), "ingest",
                                   str(folder), str(Path(tmp) / f"w{i}.json")], env=env, stderr=subprocess.DEVNULL)
                 for i in range(args.writers)]
        if any(p.wait() != 0 for p in procs):
            print("an ingest failed", file=sys.stderr)
            return 1
        out = subprocess.run([sys.executable, "-c", COUNT.format(root=str(ROOT), home=str(home))],
                             capture_output=True, text=True, check=True).stdout
        print(json.loads(out.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
