"""A real KnowledgeBaseService in a subprocess, for the multi-process tests.

    python tests/kb_procs.py ROOT ingest FOLDER OUT.json     ingest, write the statuses
    python tests/kb_procs.py ROOT search STOPFILE OUT.json   search until STOPFILE exists
    python tests/kb_procs.py ROOT find WORD OUT.json         one BM25 and one hybrid search: sources
    python tests/kb_procs.py ROOT remove NAME OUT.json       remove a document by file name

KB_PROCS_STALL (env, a folder; Chroma server mode): the ingest's second manifest write touches
FOLDER/stalled and waits for FOLDER/go (its chunks are in the server, its manifest not yet), so a
test can stop the server in the middle of a write.

KB_PROCS_PARENT (env) is the spawner's pid: the search loop ends when its parent is another.

The data dir comes from TQTS_HOME. The embedder is :class:`HashEmbedder` (no torch import, so
the processes start in a second or two); EMBED_GROUP is 1 so every file is its own write.
New collections persist their vector index every 20 additions (chromadb's default is 1000;
TQTS_TEST_SYNC_THRESHOLD sets it, 0 keeps the default), so a few files exercise what large
ingests do. The search loop is bounded: it stops at the stop
file (after 3 searches at least), after MAX_SEARCHES, after DEADLINE_S, or when its parent dies.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

MAX_SEARCHES = 5000
DEADLINE_S = 900.0      # only reached when the parent test hangs; its own deadline is the same

class HashEmbedder:
    """Bag of hashed characters, 64 dims, L2-normalised: a deterministic stand-in embedder."""

    model_name = "hash-embedder"
    dimension = 64

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 64) float32, rows of unit length."""
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, int(hashlib.md5(ch.encode()).hexdigest(), 16) % 64] += 1
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
            seed = int(hashlib.md5(t.encode()).hexdigest()[:8], 16)  # distinct texts -> distinct vectors
            out[i] += 0.05 * np.random.default_rng(seed).standard_normal(64).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode_query(self, q: str) -> np.ndarray:
        return self.encode_documents([q])[0]


def main(argv: list[str]) -> int:
    root, mode, arg, out = argv[1], argv[2], Path(argv[3]), Path(argv[4])
    sys.path.insert(0, root)
    import kb.service
    import kb.store
    import settings as settings_mod

    kb.service.EMBED_GROUP = 1
    kb.store.READER_REFRESH_S = 0.0     # the searcher reloads for every write (the test's last check too)
    sync = int(os.environ.get("TQTS_TEST_SYNC_THRESHOLD", "20"))      # 0: chromadb's default (bench)
    if sync:
        kb.store.HNSW_CONFIG = {"space": "cosine", "sync_threshold": sync, "batch_size": min(10, sync)}
    svc = kb.service.KnowledgeBaseService(settings_mod.load(), embedder=HashEmbedder())
    svc.on_wait = lambda m: print(m, file=sys.stderr, flush=True)
    if os.environ.get("KB_PROCS_STALL"):
        _stall_second_write(Path(os.environ["KB_PROCS_STALL"]))
    if mode == "find":
        hits = {m: [h.source for h in svc.search(str(arg), k=3, mode=m)] for m in ("bm25", "hybrid")}
        out.write_text(json.dumps({**hits, "docs": [d.name for d in svc.documents()]}), encoding="utf-8")
        return 0
    if mode == "remove":
        out.write_text(json.dumps(svc.remove(str(arg)).source), encoding="utf-8")
        return 0
    if mode == "ingest":
        results = svc.ingest([arg])
        out.write_text(json.dumps([[r.path, r.status, r.message] for r in results]), encoding="utf-8")
        return 0
    done, errors, hits = 0, [], 0
    parent = int(os.environ.get("KB_PROCS_PARENT") or os.getppid())   # the spawner's pid (it may be gone by now)
    end, stopped = time.monotonic() + DEADLINE_S, "stop file"
    while not (arg.exists() and done >= 3):
        stopped = ("parent died" if os.getppid() != parent else "max searches" if done >= MAX_SEARCHES
                   else "deadline" if time.monotonic() > end else "")
        if stopped:
            break       # a bound, or the test that started this process died (its orphan must not spin)
        try:
            hits += len(svc.search("根本制度 document page", k=5))
            hits += len(svc.search("文件", k=3, mode="vector"))
        except Exception:  # noqa: BLE001  (counted: the test asserts there are none)
            errors.append(traceback.format_exc())
        done += 1
    base = svc.store.open("default", recover=False)     # after the writers: vector search reaches all?
    reachable = len(base.query(np.ones(64, dtype=np.float32) / 8, base.chunk_count()))
    out.write_text(json.dumps({"searches": done, "errors": errors, "hits": hits, "reachable": reachable,
                               "chunks": base.chunk_count(), "stopped": stopped or "stop file"}), encoding="utf-8")
    return 0


def _stall_second_write(folder: Path) -> None:
    """Make the second manifest write of this process wait for ``folder/go`` (see module docstring)."""
    from kb.server_store import ServerKnowledgeBase

    real, calls = ServerKnowledgeBase._write_manifest, []

    def stalled(self, m):
        calls.append(1)
        if len(calls) == 2:
            (folder / "stalled").touch()
            end = time.monotonic() + DEADLINE_S
            while not (folder / "go").exists() and time.monotonic() < end:
                time.sleep(0.05)
        return real(self, m)
    ServerKnowledgeBase._write_manifest = stalled


if __name__ == "__main__":
    sys.exit(main(sys.argv))
