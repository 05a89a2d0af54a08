"""Search latency (p50/p95) at growing knowledge-base sizes.

    python bench/search.py [--sizes 1000,10000,100000] [--embedder hash|tiny|minilm|PATH]
                           [--queries 50] [--kb-dir DIR] [--json]

Builds one knowledge base in a temp data dir and grows it to each size in turn with chunks of
real text (CMRC 2018 contexts and ~480-char pieces of ../shared/data/documents), each passage
varied (section number, sentence rotation) so no two chunks are identical; they are stored
through the KB's own store (see :func:`fill`). At each size it times ``KnowledgeBaseService.search`` (hybrid BM25 +
vector, RRF; plus the ``bm25`` / ``vector`` modes when the service offers them) for N real
CMRC questions, after 3 warm-up queries.

The default ``--embedder hash`` (:class:`bench.common.HashEmbedder`: 384-d hashed character
bigrams, no model) makes 100k chunks affordable on 2 cores: latency is BM25 + the ANN lookup +
fusion, whose cost depends on the vector dimension, not on the vectors' quality. What a real
model adds per query (encoding the question) is measured separately with ``--query-model``
(default all-MiniLM-L6-v2 when present) and reported next to it. ``--kb-dir`` keeps the data
dir: a rerun re-times the queries at sizes the knowledge base has already reached (sizes it has
grown past are skipped; use a fresh dir for the full series).
"""
from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DATA,
    OFFLINE,
    HashEmbedder,
    Stopwatch,
    add_json_flag,
    emit,
    load_settings,
    log,
    peak_rss_mb,
    percentile,
    resolve_embedder,
    table,
    temp_home,
)

CMRC = DATA / "retrieval" / "cmrc2018_trial.json"
CHUNKS_PER_FILE = 100
DOCS = ("en_bge_m3_paper.pdf", "en_federal_register_2020-17221.pdf", "zh_prc_constitution_2018.pdf",
        "zh_covid19_diagnosis_treatment_plan_v10.pdf", "zh_alibaba_java_dev_manual_huangshan.pdf")


def passages() -> list[str]:
    """Real text: CMRC contexts plus ~500-char pieces of a few shared documents (:data:`DOCS`)."""
    out: list[str] = []
    if CMRC.exists():
        data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
        out += [p["context"] for art in data for p in art["paragraphs"]]
    docs = [DATA / "documents" / n for n in DOCS if (DATA / "documents" / n).exists()]
    if docs:
        import pymupdf

        for f in docs:
            with pymupdf.open(f) as doc:
                text = " ".join(page.get_text() for page in doc)
            text = re.sub(r"\s+", " ", text)
            out += [text[i:i + 500] for i in range(0, len(text) - 100, 500)]
    if not out:
        out = [f"Passage {i}: the quick brown fox jumps over the lazy dog {i} times." * 8 for i in range(50)]
    return out


def queries(n: int) -> list[str]:
    """The first ``n`` CMRC questions (or fixed English ones without the data)."""
    if CMRC.exists():
        data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
        qs = [q["question"] for art in data for p in art["paragraphs"] for q in p["qas"]]
    else:
        qs = ["what does the fox jump over", "how many times", "quick brown fox"]
    return [qs[i % len(qs)] for i in range(n)]


def vary(text: str, n: int, rng: random.Random) -> str:
    """A distinct variant of ``text``: numbered, its sentences rotated by a random offset."""
    parts = [s for s in re.split(r"(?<=[。！？.!?])", text) if s.strip()]
    k = rng.randrange(len(parts)) if parts else 0
    return f"第{n}节 Section {n}. " + "".join(parts[k:] + parts[:k])


def fill(svc, kb_name: str, start: int, count: int, pool: list[str], pool_tokens: list[list[str]]) -> None:
    """Add ``count`` chunks (numbered from ``start``) to ``kb_name`` through the store, as documents
    of :data:`CHUNKS_PER_FILE` chunks.

    This is ``KnowledgeBaseService.ingest`` minus loading, chunking and tokenizing (measured by
    bench/ingest.py): the variant of passage j gets passage j's BM25 tokens plus its number, so
    100k chunks take minutes instead of an hour of jieba on 2 shared cores. Embeddings come from
    the service's embedder; storage is the real ``KnowledgeBase.put_document``.
    """
    import hashlib
    from datetime import datetime, timezone

    from kb.chunking import Chunk

    kb = svc.store.open(kb_name)
    rng = random.Random(start)
    for f0 in range(start, start + count, CHUNKS_PER_FILE):
        idx = range(f0, min(f0 + CHUNKS_PER_FILE, start + count))
        texts = [vary(pool[i % len(pool)], i, rng) for i in idx]
        tokens = [pool_tokens[i % len(pool)] + ["第", str(i), "节", "section", str(i)] for i in idx]
        chunks = [Chunk(t, n, 1, 1) for n, t in enumerate(texts)]
        sha = hashlib.sha256("".join(texts).encode("utf-8")).hexdigest()
        entry = {"sha256": sha, "pages": 1, "ocr_pages": 0, "name": f"doc{f0:07d}.txt",
                 "added_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        kb.put_document(f"/bench/corpus/doc{f0:07d}.txt", entry, chunks, svc.embedder.encode_documents(texts), tokens)


def time_queries(svc, qs: list[str], mode: str | None) -> list[float]:
    """Milliseconds per ``svc.search`` call for each query, after 3 warm-up calls."""
    kw = {"mode": mode} if mode else {}
    for q in qs[:3]:
        svc.search(q, kb="bench", **kw)
    times = []
    for q in qs:
        with Stopwatch() as sw:
            svc.search(q, kb="bench", **kw)
        times.append(sw.seconds * 1000)
    return times


def query_encode_ms(model: str | None, qs: list[str]) -> dict | None:
    """p50/p95 ms of ``Embedder.encode_query`` with a real model (what ``hash`` leaves out)."""
    if not model:
        return None
    from kb.embeddings import Embedder

    emb = Embedder(model, query_instruction="auto", device="cpu")
    for q in qs[:3]:
        emb.encode_query(q)
    times = []
    for q in qs:
        with Stopwatch() as sw:
            emb.encode_query(q)
        times.append(sw.seconds * 1000)
    return {"model": model, "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95)}


def measure(sizes: list[int], embedder: str, n_queries: int, home: Path, query_model: str | None,
            chunk_chars: int = 480) -> dict:
    """Grow the KB to each size, time the queries; return {"embedder", "sizes": [...]}."""
    from kb.retrieval import tokenize
    from kb.service import KnowledgeBaseService

    pool, qs = passages(), queries(n_queries)
    pool = [p[:chunk_chars] for p in pool]
    pool_tokens = [tokenize(p) for p in pool]
    results = []
    obj = HashEmbedder() if embedder == "hash" else None
    settings = load_settings(home, embedding_model=None if obj else resolve_embedder(embedder, home))
    svc = KnowledgeBaseService(settings, embedder=obj)
    modes = ["hybrid", "bm25", "vector"] if "mode" in inspect.signature(svc.search).parameters else [None]
    for size in sorted(sizes):
        info = next((k for k in svc.list_kbs() if k.name == "bench"), None)
        have = info.chunks if info else 0
        if have > size * 1.1:  # a reused --kb-dir already grew past this size
            log(f"skipping {size}: the knowledge base already holds {have} chunks")
            continue
        with Stopwatch() as sw:
            if have < size:
                log(f"adding {size - have} chunks ...")
                fill(svc, "bench", have, size - have, pool, pool_tokens)
        info = next(k for k in svc.list_kbs() if k.name == "bench")
        row = {"target_chunks": size, "chunks": info.chunks, "build_s": sw.seconds if have < size else None}
        for mode in modes:
            t = time_queries(svc, qs, mode)
            row[mode or "hybrid"] = {"p50_ms": percentile(t, 50), "p95_ms": percentile(t, 95),
                                     "mean_ms": sum(t) / len(t)}
        log(f"{info.chunks} chunks: hybrid p50 {row['hybrid']['p50_ms']:.1f} ms")
        results.append(row)
    return {"embedder": obj.model_name if obj else settings.embedding_model, "queries": n_queries,
            "top_k": settings.top_k, "sizes": results, "query_encode": query_encode_ms(query_model, qs),
            "peak_rss_mb": peak_rss_mb()}


def render(r: dict) -> str:
    modes = [m for m in ("hybrid", "bm25", "vector") if m in r["sizes"][0]]
    headers = ["chunks", "build s"] + [f"{m} {s}" for m in modes for s in ("p50 ms", "p95 ms")]
    rows = [[row["chunks"], row["build_s"]] + [row[m][k] for m in modes for k in ("p50_ms", "p95_ms")]
            for row in r["sizes"]]
    out = table(headers, rows) + (f"\n\nembedder: {r['embedder']}; {r['queries']} CMRC questions, "
                                  f"top_k {r['top_k']}; target: hybrid p50 <= 50 ms at 100k chunks; "
                                  f"peak RSS {r['peak_rss_mb']:.0f} MiB")
    q = r.get("query_encode")
    if q:
        out += (f"\nquery encoding with {Path(q['model']).name} (add to hybrid/vector for a real model): "
                f"p50 {q['p50_ms']:.1f} ms, p95 {q['p95_ms']:.1f} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated chunk counts")
    p.add_argument("--embedder", default="hash", help="hash (default) | tiny | minilm | folder or hub id")
    p.add_argument("--queries", type=int, default=50, help="timed queries per size and mode")
    p.add_argument("--kb-dir", type=Path, help="data dir to keep between runs (default: a temp dir, deleted)")
    p.add_argument("--query-model", default=str(OFFLINE / "all-MiniLM-L6-v2"),
                   help="real model whose query encoding time is reported ('' to skip)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    qm = args.query_model if args.query_model and Path(args.query_model).exists() else None
    if args.kb_dir:
        r = measure(sizes, args.embedder, args.queries, args.kb_dir, qm)
    else:
        with temp_home() as home:
            r = measure(sizes, args.embedder, args.queries, home, qm)
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
