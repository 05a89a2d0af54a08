"""Is anything in a knowledge base about the question? A refusal gate that works with any embedder.

A question passes the gate (:func:`judge`) when either signal says so:

1. **BM25 query-term coverage** of the best hits: the share of the question's content terms,
   weighted by their IDF in *this* knowledge base, that occur in one hit (the best of the top
   hits; a hit's text with its contextual header, document title + section, as BM25 saw it). IDF is the Lucene BM25 form ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (Robertson &
   Spärck Jones; bm25s' default) over the KB's own chunks, so a term in every chunk weighs
   nothing and a term the KB never contains weighs most: "2022年世界杯冠军" over a constitution
   leaves 世界杯/冠军/2022 uncovered. Independent of the embedder. Threshold
   :data:`COVERAGE_FLOOR`.
2. **Vector cosine** of the best hit, only when the embedder can read the question's script
   (see :func:`kb.retrieval.fusion_weights`), against a floor calibrated per knowledge base
   and embedder: the best cosine each off-topic probe question (:data:`PROBES`) reaches in
   this KB, the floor = their maximum + :data:`COSINE_MARGIN`. Cosines of unrelated text differ
   a lot between embedders (all-MiniLM-L6-v2 ~0.1-0.3, multilingual-e5-small ~0.75-0.8), so a
   fixed floor (the old ``relevance_floor`` 0.3) lets everything through with e5. Cached in
   ``<kb dir>/relevance.json`` per manifest generation and embedder. This is the signal that
   passes cross-lingual questions (a Chinese question over an English document shares no terms).
3. A reranker score would be a third signal; the service has no reranker yet
   (``reranker_model`` is read by bench/retrieval.py only), so none is used.

The calibration choice (probe questions, not a fixed number) is documented in README "kb".
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import asdict, dataclass

#: least IDF-weighted share of the question's content terms one hit must contain.
COVERAGE_FLOOR = 0.6
#: the vector floor is the best off-topic probe cosine plus this margin.
COSINE_MARGIN = 0.02
#: hits whose coverage is looked at (best first).
TOP_HITS = 5
#: bump when the calibration rule changes (stale relevance.json files are recomputed).
CALIBRATION_VERSION = 1

#: off-topic probe questions (Chinese and English, everyday subjects a document collection of
#: laws, manuals, papers and reports rarely covers) for the per-KB cosine floor.
PROBES = (
    "2022年世界杯冠军是哪个国家？", "怎样做一碗好吃的牛肉拉面？", "明天北京会下雨吗？",
    "周杰伦最有名的歌是哪一首？", "猫为什么喜欢晒太阳？", "火星上有没有生命？",
    "哪部电影获得了去年的奥斯卡最佳影片？", "怎么给自行车换内胎？",
    "Who won the 2018 FIFA World Cup?", "How do I bake sourdough bread at home?",
    "What is the tallest mountain on Mars?", "Which band recorded the album Abbey Road?",
    "How long should I boil an egg?", "What do pandas eat in the wild?",
    "Who painted the Mona Lisa?", "How do I change a flat bicycle tyre?",
)

#: question words and fillers that are not content (on top of kb.retrieval.STOPWORDS).
QUESTION_WORDS = frozenset(
    "哪个 哪些 哪里 哪儿 哪一 哪种 哪年 哪位 哪家 几 几个 多少 多久 多长 多大 如何 怎么 怎样 怎么样 为什么 为何 "
    "是否 是不是 有没有 能否 可以 请问 请 吗 呢 吧 呀 么 谁 何时 何地 何种 一下 告诉 我 你 他 她 它 我们 "
    "你们 他们 这个 那个 这些 那些 这里 那里 哪 什么样 是什么 有 什么 啥 要 会 能 应该 应当 需要 如果 "
    "please tell me about explain describe list give name mention can could should would will shall "
    "whom whose there their they them these those i you we he she my your our me us if any some "
    "much many does say says said according "
    # reference words of follow-ups and generic verbs ("how does the last one work?")
    "last first second third former latter one ones other else also more about then again "
    "work works working mean means meant use uses used happen happens 分别 其中 以及 还有 呢 第一个 第二个 最后 最后一个 "
    "一种 这种 那种 作用 意思 区别".split())

_ASKING = ("几", "哪", "多少", "什么")     # 几年, 哪一年, 多少种, 什么时候: asking, not content
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_TERM = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:[.'-][a-z0-9]+)*")


@dataclass
class Relevance:
    """The gate's verdict and the numbers behind it (shown by ``search`` and kept in --json).

    Attributes:
        relevant: the question may be answered from the hits.
        coverage: best hit's IDF-weighted share of the question's content terms (0..1).
        similarity: best hit's cosine (None: no vector search or the embedder cannot read the script).
        vector_floor: the KB's calibrated cosine floor (None when not used).
        reason: "coverage" | "vector" | "no hits" | "low coverage" ...
    """

    relevant: bool
    coverage: float = 0.0
    similarity: float | None = None
    vector_floor: float | None = None
    reason: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def normalize(text: str) -> str:
    """NFKC (fullwidth digits/letters to ASCII), lowercase.

    >>> normalize("２０２２年ＧＤＰ")
    '2022年gdp'
    """
    return unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")


def content_terms(query: str) -> list[str]:
    """The question's content terms: jieba precise-mode words for Han runs, lowercase ASCII
    words; stopwords and question words dropped; order kept, duplicates removed.

    >>> content_terms("2022年世界杯冠军是哪个国家？")
    ['2022', '年', '世界杯', '冠军', '国家']
    """
    from kb.retrieval import STOPWORDS, _jieba_lock, tokenize

    tokenize("")  # quiets jieba's logger once
    import jieba

    out: list[str] = []
    for m in _TERM.finditer(normalize(query)):
        w = m.group(0)
        if _HAN.match(w):
            with _jieba_lock:
                words = jieba.lcut(w)
        else:
            words = [re.sub(r"'s$", "", w)]
        out += [x for x in words if x not in STOPWORDS and x not in QUESTION_WORDS and x not in out
                and not x.startswith(_ASKING)]
    return out


def idf(df: int, n: int) -> float:
    """Lucene BM25 inverse document frequency ``ln(1 + (n - df + 0.5) / (df + 0.5))``.

    >>> round(idf(0, 100), 3), round(idf(100, 100), 3)
    (5.308, 0.005)
    """
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def _stem(word: str) -> str:
    """A crude English stem for prefix matching: "unify" and "unifies" both match "unif"."""
    for suffix in ("ies", "ing", "es", "ed", "s", "y", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def contains(text: str, term: str) -> bool:
    """Does normalized ``text`` contain ``term``? Han terms as substrings; ASCII terms as a
    word start (so "mode" matches "modes", "it" does not match "with").

    >>> contains("the three retrieval modes", "mode"), contains("with", "it")
    (True, False)
    """
    if _HAN.search(term):
        return term in text
    return re.search(r"(?<![a-z0-9])" + re.escape(_stem(term)), text) is not None


def found_share(text: str, term: str) -> float:
    """1.0 when normalized ``text`` contains ``term``; for a Han compound it lacks as a whole
    ("首都北京" in "首都是北京"), the share of its jieba search-mode sub-words it contains."""
    if contains(text, term):
        return 1.0
    if not _HAN.search(term) or len(term) < 3:
        return 0.0
    import jieba

    from kb.retrieval import _jieba_lock

    with _jieba_lock:
        parts = [p for p in jieba.lcut_for_search(term) if p != term and len(p) > 1]
    return sum(p in text for p in parts) / len(parts) if parts else 0.0


def coverage(terms: list[str], weights: list[float], text: str) -> float:
    """IDF-weighted share of ``terms`` found in ``text`` (:func:`found_share`; 0 without terms)."""
    total = sum(weights)
    if not terms or total <= 0:
        return 0.0
    t = normalize(text)
    return sum(w * found_share(t, term) for term, w in zip(terms, weights, strict=True)) / total


def term_weights(terms: list[str], doc_freq, n_docs: int) -> list[float]:
    """IDF per term from ``doc_freq(term) -> int | None`` (None: not a BM25 token). A Han term
    the index lacks as a whole (jieba cut it differently) takes the smallest df of its
    search-mode sub-words, so it is not mistaken for a term the KB never contains."""
    import jieba

    from kb.retrieval import _jieba_lock

    out = []
    for t in terms:
        df = doc_freq(t)
        if df is None and _HAN.search(t) and len(t) > 1:
            with _jieba_lock:
                parts = [p for p in jieba.lcut_for_search(t) if p != t and len(p) > 1]
            dfs = [d for d in (doc_freq(p) for p in parts) if d is not None]
            df = min(dfs) if dfs else None
        out.append(idf(df or 0, n_docs))
    return out


def judge(query: str, hits: list, doc_freq, n_docs: int, vector_floor: float | None) -> Relevance:
    """The gate (see module docstring).

    Args:
        query: the retrieval query (for a follow-up: with the previous question).
        hits: :class:`kb.types.Hit` list, best first (``text``, ``section``, ``similarity``).
        doc_freq: ``term -> document frequency | None`` of the KB's BM25 index.
        n_docs: chunks in the KB.
        vector_floor: the KB's calibrated cosine floor, or None when the vector signal must not
            be used (the embedder cannot read the query's script, or no vector search).

    Returns:
        :class:`Relevance`.
    """
    if not hits:
        return Relevance(False, reason="no hits")
    terms = content_terms(query)
    weights = term_weights(terms, doc_freq, max(n_docs, 1))
    from kb.chunking import indexed_text

    cov = max(coverage(terms, weights, indexed_text(h.source, h.section, h.text)) for h in hits[:TOP_HITS])
    sims = [h.similarity for h in hits if h.similarity is not None]
    sim = max(sims) if sims and vector_floor is not None else None
    if not terms:  # nothing to weigh (e.g. only question words): trust what vector search says
        return Relevance(sim is not None and sim >= vector_floor, cov, sim, vector_floor, "no content terms")
    if cov >= COVERAGE_FLOOR:
        return Relevance(True, cov, sim, vector_floor, "coverage")
    if sim is not None and sim >= vector_floor:
        return Relevance(True, cov, sim, vector_floor, "vector")
    return Relevance(False, cov, sim, vector_floor, "low coverage" + (", low cosine" if sim is not None else ""))


def vector_floor(kb, embedder) -> float:
    """The KB's calibrated cosine floor for ``embedder`` (see module docstring), cached in
    ``<kb dir>/relevance.json`` and recomputed when the manifest generation, the embedder or
    :data:`CALIBRATION_VERSION` change. Encodes the :data:`PROBES` (one batch) on a miss."""
    from kb.store import write_json_atomic

    key = {"generation": kb.manifest().get("generation", 0), "embedder": embedder.model_name,
           "version": CALIBRATION_VERSION}
    path = kb.dir / "relevance.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if all(cached.get(k) == v for k, v in key.items()):
            return max(cached["probe_best"]) + COSINE_MARGIN
    except (OSError, ValueError, KeyError):
        pass
    best = []
    for q in PROBES:
        got = kb.query(embedder.encode_query(q), 1)
        best.append(got[0][1] if got else -1.0)
    floor = max(best) + COSINE_MARGIN
    write_json_atomic(path, {**key, "vector_floor": floor, "probe_best": best}, sync=False)
    return floor
