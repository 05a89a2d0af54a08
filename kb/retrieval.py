"""Hybrid retrieval: BM25 (bm25s; jieba words for Chinese, lowercase words for English) plus
vector search (chromadb, cosine), fused by reciprocal rank fusion.

RRF (Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
Rank Learning Methods", SIGIR 2009): ``score(d) = sum_i w_i / (k + rank_i(d))`` with k = 60 and
1-based ranks; we add per-retriever weights ``w_i`` (:data:`WEIGHTS`).

The BM25 index of each knowledge base is persisted in ``<kb dir>/bm25`` and stamped with the
manifest generation; it is rebuilt from the stored per-chunk tokens (no re-tokenizing) when the
stamp is stale, and cached in memory between searches.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

import numpy as np

from kb.types import Hit

RRF_K = 60
#: RRF weight per retriever.
WEIGHTS = {"bm25": 1.0, "vector": 1.0}
#: vector weight for a Chinese query and an English-only embedding model. Measured on
#: cmrc2018_trial with all-MiniLM-L6-v2 (hit@5: vector alone 0.181, BM25 0.988; fused with
#: vector weight 1.0: 0.818, 0.5: 0.861, 0.3: 0.948, 0.2: 0.982, 0.1: 0.987, 0: 0.988; hit@1
#: at 0.2 is 0.627 against 0.962 at 0). An embedder that cannot read the query's script only
#: adds noise, so it gets no vote: hybrid search is then BM25 alone.
WEAK_VECTOR_WEIGHT = 0.0
#: vector weight for a multilingual embedding model (name with "multilingual" or bge-m3).
#: Measured with multilingual-e5-small (bench/crosslingual.py, 35 zh<->en questions; CMRC trial,
#: 1,002 zh questions), re-fusing the kept BM25/vector candidate lists:
#: weight 1.0: cross-lingual hit@5 0.371, hit@1 0.171; CMRC hit@5 0.990, hit@1 0.967.
#: weight 2.0: cross-lingual hit@5 0.457, hit@1 0.286; CMRC hit@5 0.990, hit@1 0.970.
#: (weight 0 = BM25 alone: cross-lingual 0.229, CMRC 0.989.) The vector list is the only one
#: that can match across languages, so it gets the larger vote.
MULTILINGUAL_VECTOR_WEIGHT = 2.0
_MULTILINGUAL = re.compile(r"multilingual|bge-m3")
_ENGLISH_ONLY = re.compile(r"minilm|mpnet|bge-[a-z]+-en|gte-(small|base|large)$|e5-[a-z]+-v2$|nomic-embed-text-v1")
#: candidates taken from each retriever before fusion, as a multiple of top-k (at least 50).
CANDIDATES = 4
MODES = ("hybrid", "bm25", "vector")

_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:[._'-][a-z0-9]+)*")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 就 都 而 之 其 这 那 有 为 以 于 上 中 对 把 被 从 到 个 什么 哪 哪些 "
    "吗 呢 吧 啊 如何 怎么 怎样 多少 谁 何 "
    "a an the of to in on at for by and or is are was were be been it its this that with as from "
    "what which who how when where why do does did".split())
_jieba_lock = threading.Lock()
log = logging.getLogger(__name__)


def tokenize(text: str) -> list[str]:
    """BM25 tokens: jieba search-mode words for Han runs, lowercase ASCII words; stopwords dropped.

    >>> tokenize("社会主义制度是根本制度 Retrieval-Augmented")
    ['社会', '会主', '主义', '社会主义', '制度', '根本', '制度', 'retrieval-augmented']
    """
    import jieba

    if not getattr(jieba, "_tqts_quiet", False):
        jieba.setLogLevel(logging.WARNING)
        jieba._tqts_quiet = True
    out: list[str] = []
    for m in _WORD.finditer(text.lower()):
        w = m.group(0)
        if _HAN.match(w):
            with _jieba_lock:  # jieba's lazy dictionary load is not thread-safe
                words = jieba.lcut_for_search(w)
            out.extend(x for x in words if x not in STOPWORDS)
        elif w not in STOPWORDS:
            out.append(w)
    return out


class BM25Index:
    """A bm25s index over a knowledge base's current chunks (see module docstring).

    Saved per manifest generation in ``bm25/g<generation>/`` (written to a temp folder, then
    renamed: another process never reads half an index); any process may save one, only a
    writer (holding the knowledge base's write lock) deletes older ones (:meth:`prune`).
    """

    _cache: dict[str, tuple[int, object]] = {}
    _lock = threading.Lock()
    #: documents of the last build without stored tokens (``kb repair`` restores them)
    missing: list[str] = []

    def __init__(self, kb):
        self.kb = kb
        self.dir = Path(kb.dir) / "bm25"

    def build(self) -> tuple[object, list[str]]:
        """Rebuild from stored tokens, save, and return (bm25s.BM25 | None, chunk ids).

        A version whose tokens another process just replaced is retried with the new manifest;
        a document whose tokens are missing (a store broken by an old version, see ``kb check``)
        is left out with a warning instead of failing every search.
        """
        import bm25s

        for _attempt in range(5):
            manifest = self.kb.manifest()
            ids, corpus, missing = [], [], []
            for source, entry in manifest["docs"].items():
                try:
                    t = self.kb.tokens_of(entry["version"])
                except (OSError, ValueError):
                    missing.append(source)
                    continue
                ids.extend(t["ids"])
                corpus.extend(tok or [""] for tok in t["tokens"])
            if not missing or self.kb.manifest().get("generation", 0) == manifest.get("generation", 0):
                break
        self.missing = missing
        if missing:
            log.warning("knowledge base «%s»: %d document(s) have no BM25 tokens (e.g. %s); run "
                        "`python main.py kb repair --kb %s`", self.kb.name, len(missing), missing[0], self.kb.name)
        model = None
        if ids:
            model = bm25s.BM25()
            model.index(corpus, show_progress=False)
        self._save(manifest.get("generation", 0), model, ids)
        return model, ids

    def _save(self, gen: int, model, ids: list[str]) -> None:
        """Write ``g<gen>/`` atomically (temp folder + rename); a lost race keeps the other copy."""
        import shutil
        import uuid

        final = self.dir / f"g{gen}"
        if final.exists():
            return
        tmp = self.dir / f"tmp-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            if model is not None:
                model.save(str(tmp), show_progress=False)
            (tmp / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
            tmp.rename(final)
        except OSError as e:   # another process saved it first, or the disk is full: the index is in memory
            log.debug("BM25 index not saved (%s)", e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self) -> tuple[object, list[str]]:
        """The current index (memory cache, else disk, else rebuilt)."""
        gen = self.kb.manifest().get("generation", 0)
        key = str(self.dir)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] == gen:
                return cached[1]
            found = self._load_saved(gen)
            model, ids = found if found is not None else self.build()
            self._cache[key] = (gen, (model, ids))
            return model, ids

    def doc_freq(self):
        """``(term -> document frequency | None, number of chunks)`` of the current index
        (None: the term is not in the vocabulary). Read from bm25s' CSC score matrix: one
        column per term, one stored value per chunk containing it."""
        model, ids = self.load()
        if model is None:
            return (lambda term: None), 0
        vocab, indptr = model.vocab_dict, model.scores["indptr"]

        def df(term: str) -> int | None:
            j = vocab.get(term)
            return None if j is None else int(indptr[j + 1] - indptr[j])
        return df, len(ids)

    def _load_saved(self, gen: int):
        """(model, ids) from ``g<gen>/``, or None when absent or pruned while reading."""
        folder = self.dir / f"g{gen}"
        try:
            ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
            if not ids:
                return None, ids
            import bm25s

            return bm25s.BM25.load(str(folder), show_progress=False), ids
        except (OSError, ValueError):
            return None

    def prune(self) -> None:
        """Delete saved indexes of older generations (and the old one-folder layout). Only
        under the knowledge base's write lock: then no reader of another process is told to
        use them (the manifest already names the newer generation)."""
        import shutil

        keep = f"g{self.kb.manifest().get('generation', 0)}"
        if not self.dir.exists():
            return
        for p in self.dir.iterdir():
            if p.name == keep or p.name.startswith("tmp-"):
                continue
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """Top ``n`` (chunk id, BM25 score > 0), best first."""
        model, ids = self.load()
        tokens = tokenize(query)
        if model is None or not tokens:
            return []
        docs, scores = model.retrieve([tokens], k=min(n, len(ids)), show_progress=False, n_threads=1)
        return [(ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def fusion_weights(model_name: str, query: str) -> dict[str, float]:
    """RRF weights for a query: :data:`WEIGHTS`; the vector weight raised to
    :data:`MULTILINGUAL_VECTOR_WEIGHT` for a multilingual embedding model, lowered to
    :data:`WEAK_VECTOR_WEIGHT` when the query has Han characters and the embedding model is
    English-only (its vectors then rank Chinese text little better than chance).

    >>> fusion_weights("/m/all-MiniLM-L6-v2", "根本制度")["vector"]
    0.0
    >>> fusion_weights("BAAI/bge-small-zh-v1.5", "根本制度")["vector"]
    1.0
    >>> fusion_weights("intfloat/multilingual-e5-small", "What is it?")["vector"]
    2.0
    """
    name = model_name.replace("\\", "/").rstrip("/").split("/")[-1].lower()
    if _MULTILINGUAL.search(name):
        return dict(WEIGHTS, vector=MULTILINGUAL_VECTOR_WEIGHT)
    if _HAN.search(query) and _ENGLISH_ONLY.search(name):
        return dict(WEIGHTS, vector=WEAK_VECTOR_WEIGHT)
    return dict(WEIGHTS)


def rrf(rankings: dict[str, list[str]], weights: dict[str, float] | None = None, k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion (Cormack et al. 2009): ``sum_i w_i / (k + rank_i)``, rank 1-based.

    >>> rrf({"a": ["x", "y"], "b": ["y"]})[0][0]
    'y'
    """
    weights = weights or {}
    scores: dict[str, float] = {}
    for name, ids in rankings.items():
        w = weights.get(name, 1.0)
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def search(kb, embedder, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
    """Search one knowledge base.

    Args:
        kb: :class:`kb.store.KnowledgeBase`; embedder: :class:`kb.embeddings.Embedder`
            (unused for mode "bm25").
        query: the question; k: hits to return; mode: "hybrid" | "bm25" | "vector".

    Returns:
        Up to ``k`` hits, best first; ``score`` is the RRF score, ``similarity`` the cosine
        similarity of query and chunk embeddings (None in mode "bm25").

    Raises:
        ValueError: unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    n = max(50, CANDIDATES * k)
    rankings: dict[str, list[str]] = {}
    qvec = None
    if mode in ("hybrid", "bm25"):
        rankings["bm25"] = [cid for cid, _ in BM25Index(kb).search(query, n)]
    if mode in ("hybrid", "vector"):
        qvec = embedder.encode_query(query)
        rankings["vector"] = [cid for cid, _ in kb.query(qvec, n)]
    fused = rrf(rankings, fusion_weights(getattr(embedder, "model_name", ""), query))[:k]
    rows = kb.get([cid for cid, _ in fused], embeddings=qvec is not None)
    hits = []
    for cid, score in fused:
        row = rows.get(cid)
        if row is None:
            continue
        m = row["meta"]
        sim = float(np.dot(row["embedding"], qvec)) if qvec is not None else None
        hits.append(Hit(rank=len(hits) + 1, score=score, source=m.get("source", ""), page=m.get("page") or None,
                        text=row["text"], chunk_id=cid, section=m.get("section", ""),
                        page_end=m.get("page_end") or None, similarity=sim))
    return hits
