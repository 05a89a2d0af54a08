"""Retrieval quality on any SQuAD-format file: hit@1, hit@5, MRR@10 per search mode.

    python bench/retrieval.py FILE.json [--kb-dir DIR] [--embedder minilm|PATH]
                              [--reranker PATH] [--limit N] [--json]

Each ``context`` becomes one document (a text file); a question's gold document is its own
passage. Every question is searched with k=10 in the modes ``bm25``, ``vector`` and
``hybrid`` (BM25 + vector fused by RRF), and ``hybrid+rerank`` when a reranker is configured
(``--reranker`` or settings ``reranker_model``).

hit@k: share of questions whose gold passage is in the top k. MRR@10: mean of 1/rank of the
gold passage (0 when not in the top 10) — the MS MARCO convention. Ranks count documents (several
chunks of one passage count once).

The "hybrid (vector weight w)" rows re-fuse the BM25 and vector candidate lists offline with the
KB's own RRF and BM25 weight 1: what another ``kb.retrieval.WEIGHTS`` would score.

``--kb-dir`` keeps the data dir (and its knowledge base) between runs; unchanged documents are
skipped by hash on the next run, so only the questions are re-run.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Stopwatch,
    add_json_flag,
    emit,
    load_settings,
    log,
    resolve_embedder,
    table,
    temp_home,
)

K = 10
CANDIDATES = 50  # the KB fuses max(50, 4 x k) candidates per retriever (kb.retrieval.CANDIDATES)
BASE_MODES = ("bm25", "vector", "hybrid")
SWEEP = (0.0, 0.25, 0.5, 1.0)


def load_squad(path: Path, limit: int | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Contexts and (question, index of its context) pairs from a SQuAD v1/v2 JSON file.

    Raises:
        SystemExit: the file is not SQuAD-shaped (``data[].paragraphs[].context/qas``).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        contexts, qas = [], []
        for art in data:
            for para in art["paragraphs"]:
                contexts.append(para["context"])
                qas += [(q["question"], len(contexts) - 1) for q in para["qas"]]
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"error: {path} is not a SQuAD-format JSON file ({e!r}); expected "
                         "data[].paragraphs[].context and .qas[].question") from None
    return contexts, qas[:limit] if limit else qas


def write_docs(folder: Path, contexts: list[str]) -> list[Path]:
    """One text file per context (name = index + content hash, so reruns reuse them)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ctx in enumerate(contexts):
        p = folder / f"p{i:05d}-{hashlib.sha1(ctx.encode()).hexdigest()[:8]}.txt"
        if not p.exists():
            p.write_text(ctx, encoding="utf-8")
        paths.append(p)
    return paths


def score(ranked: list[list[str]], gold: list[str]) -> dict:
    """hit@1, hit@5, MRR@10 from ranked sources per question and the gold source per question."""
    h1 = h5 = rr = 0.0
    for sources, g in zip(ranked, gold, strict=True):
        ranks = [i + 1 for i, s in enumerate(dict.fromkeys(sources)) if s == g]  # dedupe chunks of one doc
        r = ranks[0] if ranks else None
        h1 += r == 1
        h5 += r is not None and r <= 5
        rr += 1 / r if r and r <= K else 0
    n = max(len(gold), 1)
    return {"hit@1": h1 / n, "hit@5": h5 / n, "mrr@10": rr / n}


def run_mode(svc, qas, paths, mode: str | None, keep: list | None = None) -> dict:
    """Search every question in ``mode`` (None: the service default); return the scores + ms/query.

    With ``keep`` (a list), the top :data:`CANDIDATES` hits per question are appended to it
    (for :func:`sweep`); the scores still use the top :data:`K`.
    """
    kw = {"mode": mode} if mode else {}
    ranked = []
    with Stopwatch() as sw:
        for q, _ in qas:
            hits = svc.search(q, kb="retrieval", k=CANDIDATES if keep is not None else K, **kw)
            ranked.append([str(Path(h.source).resolve()) for h in hits[:K]])
            if keep is not None:
                keep.append([(h.chunk_id, str(Path(h.source).resolve())) for h in hits])
    gold = [str(paths[i].resolve()) for _, i in qas]
    return {**score(ranked, gold), "ms_per_query": sw.seconds * 1000 / max(len(qas), 1)}


def sweep(bm25: list, vector: list, gold: list[str], weights=SWEEP) -> dict:
    """hybrid scores for other vector weights, fusing the kept candidate lists with the KB's own
    :func:`kb.retrieval.rrf` (BM25 weight 1) — what changing ``kb.retrieval.WEIGHTS`` would give."""
    from kb.retrieval import rrf

    out = {}
    for w in weights:
        ranked = []
        for b, v in zip(bm25, vector, strict=True):
            src = dict(b + v)
            fused = rrf({"bm25": [c for c, _ in b], "vector": [c for c, _ in v]}, {"bm25": 1.0, "vector": w})
            ranked.append([src[c] for c, _ in fused[:K]])
        out[f"hybrid (vector weight {w:g})"] = score(ranked, gold)
    return out


def measure(file: Path, home: Path, embedder: str | None, reranker: str | None, limit: int | None) -> dict:
    """Ingest the contexts into ``home`` and score each mode; return the result dict."""
    from kb.service import KnowledgeBaseService

    contexts, qas = load_squad(file, limit)
    settings = load_settings(home, embedding_model=resolve_embedder(embedder, home), reranker_model="")
    paths = write_docs(home / "retrieval-docs" / file.stem, contexts)
    svc = KnowledgeBaseService(settings)
    log(f"ingesting {len(paths)} passages ...")
    with Stopwatch() as sw:
        bad = [r for r in svc.ingest([str(p) for p in paths], kb="retrieval") if not r.ok]
    for r in bad:
        log(f"{r.path}: {r.message}")
    has_mode = "mode" in inspect.signature(svc.search).parameters
    modes, kept = {}, {"bm25": [], "vector": []}
    for mode in BASE_MODES if has_mode else ("hybrid",):
        log(f"{len(qas)} questions, {mode} ...")
        modes[mode] = run_mode(svc, qas, paths, mode if has_mode else None, kept.get(mode) if has_mode else None)
    fusion = sweep(kept["bm25"], kept["vector"], [str(paths[i].resolve()) for _, i in qas]) if has_mode else {}
    reranker = reranker or load_settings(home).reranker_model
    if reranker:
        rs = load_settings(home, embedding_model=settings.embedding_model, reranker_model=reranker)
        log(f"{len(qas)} questions, hybrid+rerank ({reranker}) ...")
        modes["hybrid+rerank"] = run_mode(KnowledgeBaseService(rs), qas, paths, "hybrid" if has_mode else None)
    return {"file": str(file), "n_questions": len(qas), "n_passages": len(contexts),
            "embedder": settings.embedding_model, "reranker": reranker or None,
            "ingest_s": sw.seconds, "failed_docs": len(bad), "modes": modes, "fusion_sweep": fusion}


def render(r: dict) -> str:
    rows = [(m, v["hit@1"], v["hit@5"], v["mrr@10"], v["ms_per_query"]) for m, v in r["modes"].items()]
    rows += [(m, v["hit@1"], v["hit@5"], v["mrr@10"], None) for m, v in r.get("fusion_sweep", {}).items()]
    out = table(["mode", "hit@1", "hit@5", "MRR@10", "ms/query"], rows)
    m = r["modes"]
    if all(k in m for k in BASE_MODES):
        gain = m["hybrid"]["hit@5"] - max(m["bm25"]["hit@5"], m["vector"]["hit@5"])
        out += f"\n\nhybrid hit@5 - best single mode: {gain * 100:+.1f} points (target >= +5)"
    return out + (f"\n{r['n_questions']} questions over {r['n_passages']} passages of {Path(r['file']).name}; "
                  f"embedder {r['embedder']}; reranker {r['reranker'] or 'none'}")


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("file", type=Path, help="SQuAD-format JSON")
    p.add_argument("--kb-dir", type=Path, help="data dir to keep (default: a temp dir, deleted)")
    p.add_argument("--embedder", help="minilm | tiny | folder or hub id (default: settings embedding_model)")
    p.add_argument("--reranker", help="cross-encoder folder or hub id (default: settings reranker_model)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    args = p.parse_args(argv)
    if not args.file.is_file():
        raise SystemExit(f"error: {args.file} not found; give a SQuAD-format JSON file")
    if args.kb_dir:
        r = measure(args.file, args.kb_dir, args.embedder, args.reranker, args.limit)
    else:
        with temp_home() as home:
            r = measure(args.file, home, args.embedder, args.reranker, args.limit)
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
