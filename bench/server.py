"""Chroma server vs embedded store: ingest and search speed on the same documents, in one run.

    python bench/server.py [--docs DIR] [--embedder minilm|e5|PATH] [--repeats 5] [--json]

Starts ``chroma run`` on a free port of 127.0.0.1 (over a temp folder), then:

1. warm-up: ingests the documents once into a scratch embedded store, so every chunk and
   query vector is computed once and cached (the embedder is the same for both stores and
   dominates ingest time; caching it leaves what differs: parsing + tokenizing + storing);
2. ingests them into an embedded store (data dir A) and into the server (data dir B);
3. the first search of a new client (embedded: BM25 index loaded from its saved copy; server:
   a third data dir rebuilds it from the tokens in the server's chunk rows);
4. every query (hybrid, top-5) ``--repeats`` times on each store: median and p95 latency.

Ingest time is split out: "store writes" is the time inside ``KnowledgeBase.put_documents``
(chunk rows, BM25 tokens, manifest, under the write lock / lease); the rest is parsing
(PyMuPDF, python-docx, OCR) and tokenizing, the same code for both stores.

Prints both side by side with the server / embedded ratio, the load average at start and end
(the machine may be shared: compare ratios from one run, not numbers across runs).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DATA,
    OFFLINE,
    Stopwatch,
    add_json_flag,
    emit,
    load_settings,
    log,
    machine,
    percentile,
    ratio,
    table,
)

QUERIES = [
    "Java 开发手册 命名风格", "数据库 索引 规约", "异常处理 日志", "新冠肺炎 诊断标准", "密切接触者 隔离 管理",
    "公民的基本权利和义务", "国家主席 任期", "WeKnora 知识库 架构", "trustee duties in chapter 13 cases",
    "background checks by month and state", "effective date of the rule", "Internal Revenue Manual procedures",
    "BGE M3 multi-lingual retrieval", "WARN notices layoffs in California", "mission and values of Zylon",
    "合并单元格 表格",
]


class CachedEmbedder:
    """An embedder that computes each text's vector once (both stores get identical vectors)."""

    def __init__(self, inner):
        self.inner, self.model_name = inner, inner.model_name
        self.docs: dict[str, object] = {}
        self.queries: dict[str, object] = {}

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode_documents(self, texts):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.docs]
        if todo:
            self.docs.update(zip(todo, self.inner.encode_documents(todo), strict=True))
        return np.stack([self.docs[t] for t in texts]) if texts else self.inner.encode_documents([])

    def encode_query(self, q):
        if q not in self.queries:
            self.queries[q] = self.inner.encode_query(q)
        return self.queries[q]


def _service(home: Path, embedder, url: str = ""):
    from kb.service import KnowledgeBaseService

    return KnowledgeBaseService(load_settings(home, chroma_url=url or None), embedder=embedder)


_STORE_S = [0.0]     # seconds spent in KnowledgeBase.put_documents (chunk rows, tokens, manifest)


def _timed_puts() -> None:
    """Count the time of every store write (the part of an ingest that differs between stores)."""
    from kb.store import KnowledgeBase

    real = KnowledgeBase.put_documents

    def put_documents(self, items, cancel=None):
        t = time.perf_counter()
        try:
            return real(self, items, cancel)
        finally:
            _STORE_S[0] += time.perf_counter() - t
    KnowledgeBase.put_documents = put_documents


def _ingest(svc, docs: Path) -> dict:
    _STORE_S[0] = 0.0
    with Stopwatch() as sw:
        results = svc.ingest([docs])
    ok = [r for r in results if r.status in ("added", "updated")]
    return {"seconds": sw.seconds, "store_seconds": _STORE_S[0], "files": len(ok),
            "chunks": sum(r.chunks for r in ok), "failed": sum(r.status == "failed" for r in results)}


def _searches(svc, repeats: int) -> dict:
    lat = []
    for _ in range(repeats):
        for q in QUERIES:
            t = time.perf_counter()
            svc.search(q, k=5)
            lat.append(time.perf_counter() - t)
    return {"median_ms": 1000 * percentile(lat, 50), "p95_ms": 1000 * percentile(lat, 95), "n": len(lat)}


def _first_search(svc) -> float:
    t = time.perf_counter()
    svc.search(QUERIES[0], k=5)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=Path, default=DATA / "documents")
    ap.add_argument("--embedder", default="minilm", help="minilm | e5 | a sentence-transformers folder")
    ap.add_argument("--repeats", type=int, default=5)
    add_json_flag(ap)
    args = ap.parse_args(argv)
    from kb import retrieval
    from kb.embeddings import Embedder
    from tests.chroma_server import CHROMA, ChromaServer

    if CHROMA is None:
        print("error: the `chroma` CLI is not on PATH (it comes with chromadb)", file=sys.stderr)
        return 2
    model = {"minilm": OFFLINE / "all-MiniLM-L6-v2", "e5": OFFLINE / "multilingual-e5-small"}.get(args.embedder,
                                                                                                  Path(args.embedder))
    embedder = CachedEmbedder(Embedder(str(model)))
    _timed_puts()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tqts-bench-server-") as tmp:
        tmp = Path(tmp)
        server = ChromaServer(tmp / "chroma-server").start()
        try:
            log("warm-up: parse + embed once (scratch embedded store)")
            warm = _ingest(_service(tmp / "warm", embedder), args.docs)
            log(f"warm-up: {warm['chunks']} chunks in {warm['seconds']:.1f} s; embedded ingest")
            emb = _service(tmp / "a", embedder)
            ing_e = _ingest(emb, args.docs)
            log("server ingest")
            srv = _service(tmp / "b", embedder, server.url)
            ing_s = _ingest(srv, args.docs)
            log("searches")
            retrieval.BM25Index._cache.clear()
            first_e = _first_search(_service(tmp / "a", embedder))
            first_s = _first_search(_service(tmp / "c", embedder, server.url))   # a new data dir: tokens from the server
            s_e, s_s = _searches(emb, args.repeats), _searches(srv, args.repeats)
        finally:
            server.stop()
    load_end = os.getloadavg()
    result = {"machine": machine(), "embedder": str(model), "docs": str(args.docs), "warmup": warm,
              "loadavg_start": [round(x, 2) for x in load_start], "loadavg_end": [round(x, 2) for x in load_end],
              "embedded": {"ingest": ing_e, "first_search_s": first_e, "search": s_e},
              "server": {"ingest": ing_s, "first_search_s": first_s, "search": s_s}}
    rows = [("ingest (s, vectors cached)", ing_e["seconds"], ing_s["seconds"], ratio(ing_s["seconds"], ing_e["seconds"])),
            ("  of which store writes (s)", ing_e["store_seconds"], ing_s["store_seconds"],
             ratio(ing_s["store_seconds"], ing_e["store_seconds"])),
            ("chunks stored", ing_e["chunks"], ing_s["chunks"], None),
            ("first search, new client (s)", first_e, first_s, ratio(first_s, first_e)),
            ("search median (ms)", s_e["median_ms"], s_s["median_ms"], ratio(s_s["median_ms"], s_e["median_ms"])),
            ("search p95 (ms)", s_e["p95_ms"], s_s["p95_ms"], ratio(s_s["p95_ms"], s_e["p95_ms"]))]
    text = (table(["", "embedded", "server", "server/embedded"], rows)
            + f"\nwarm-up (parse + embed + store, embedded): {warm['seconds']:.1f} s for {warm['chunks']} chunks; "
            f"{s_e['n']} searches per store; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end "
            f"({os.cpu_count()} cores, shared)")
    emit(result, text, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
