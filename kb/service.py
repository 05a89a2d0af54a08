"""KnowledgeBaseService: the one object the app, the CLI and the answering service use.

All public methods take an internal lock (thread-safe); the app calls them from worker threads.
``kb`` arguments are display names (any Unicode); None means ``settings.default_kb``, created on
demand.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path

from kb import loaders, retrieval
from kb import repair as repair_mod
from kb.embeddings import Embedder, EmbedderError
from kb.repair import CheckReport
from kb.store import KnowledgeBase, Store, StoreBusy
from kb.types import DocumentInfo, Hit, IngestResult, KBInfo, Message, Progress, one_line, reason

log = logging.getLogger(__name__)

#: chunks embedded per progress step (sentence-transformers batches inside each step).
EMBED_GROUP = 256


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files and folders -> files: folders recursively (supported types and .doc, hidden
    entries skipped, sorted); named files kept as given, even unsupported ones (reported later)."""
    return expand_paths_checked(paths, follow_symlinks=True)[0]


def expand_paths_checked(paths: Iterable[str | Path], follow_symlinks: bool = False) -> tuple[list[Path], list[IngestResult]]:
    """:func:`expand_paths`, and a "skipped" result for each file found in a folder through a
    link that leads outside that folder (unless ``follow_symlinks``): a link to a private key
    dropped in a folder must not end up in the knowledge base. Files named directly are kept."""
    out: list[Path] = []
    skipped: list[IngestResult] = []
    for p in paths:
        p = Path(p).expanduser()
        if not p.is_dir():
            out.append(p)
            continue
        root = p.resolve()
        for f in sorted(f for f in p.rglob("*") if f.is_file()
                        and not any(part.startswith(".") for part in f.relative_to(p).parts)
                        and (loaders.is_supported(f) or f.suffix.lower() == ".doc")):
            target = f.resolve()
            if not follow_symlinks and not target.is_relative_to(root):
                skipped.append(IngestResult(str(f), "skipped", f"a link to {target}, outside the folder {p}; not "
                                            "followed (set follow_symlinks: true to allow links)"))
            else:
                out.append(f)
    return out, skipped


class KnowledgeBaseService:
    """Knowledge bases on disk: ingest, search, list, remove (contract in helpers' brief).

    Args:
        settings: :class:`settings.Settings`.
        embedder: an :class:`kb.embeddings.Embedder` (or anything with ``model_name``,
            ``encode_documents``, ``encode_query``); default: built from settings, loaded lazily.
    """

    def __init__(self, settings, embedder=None):
        self.settings = settings
        self._embedder = embedder
        self._store: Store | None = None
        self._lock = threading.RLock()
        #: called with one line when a write waits for another process (CLI: stderr; app: status)
        self.on_wait: Callable[[str], None] | None = None

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = Embedder.from_settings(self.settings)
        return self._embedder

    @property
    def embedder_name(self) -> str:
        return self.embedder.model_name

    def reload_embedder(self) -> None:
        """Forget the loaded embedder and store: the next use builds them from settings again
        (after the first-run panel set ``embedding_model``). Call when no ingest/search runs."""
        with self._lock:
            self._embedder, self._store = None, None

    @property
    def store(self) -> Store:
        if self._store is None:
            from kb.server_store import open_store

            self._store = open_store(self.settings, self.embedder)
        return self._store

    def _kb(self, name: str | None, create: bool = True, write: bool = True, on_wait=None) -> KnowledgeBase:
        """Open a knowledge base; ``write`` opens it to write (crash leftovers are cleaned when no
        other process is writing; waits for the inter-process lock report to ``on_wait``)."""
        name = name or self.settings.default_kb
        kb = self.store.open(name, create=create or name == self.settings.default_kb, recover=write)
        kb.lock_timeout = float(getattr(self.settings, "kb_lock_timeout_s", kb.lock_timeout))
        kb.on_wait = on_wait or self.on_wait
        return kb

    def indexed(self, source: str, chunk) -> str:
        """The text indexed for a chunk: with its contextual header (document title + section,
        :func:`kb.chunking.indexed_text`) when ``settings.chunk_headers`` is on."""
        from kb.chunking import indexed_text

        if not getattr(self.settings, "chunk_headers", True):
            return chunk.text
        return indexed_text(source, chunk.section, chunk.text)

    def _check_model(self, kb: KnowledgeBase) -> None:
        """Raise ValueError when the KB was built with another embedding model."""
        built = (kb.collection.metadata or {}).get("embedding_model", "")
        base = lambda s: s.replace("\\", "/").rstrip("/").split("/")[-1]  # noqa: E731
        if built and kb.chunk_count() and base(built) != base(self.embedder_name):
            raise ValueError(Message("embedder_mismatch", "knowledge base {kb!r} was built with embedding model "
                                     "{built!r} but embedding_model is {now!r}; set it back "
                                     "(TQTS_EMBEDDING_MODEL={built}), or re-embed it with the new model: "
                                     "python main.py kb reembed --kb {kb}", kb=kb.name, built=built,
                                     now=self.embedder_name))

    # -- knowledge bases --------------------------------------------------------------------
    def list_kbs(self) -> list[KBInfo]:
        """All knowledge bases with document and chunk counts, by name."""
        with self._lock:
            out = []
            for name, col in sorted(self.store.collections().items()):
                kb = self.store.kb_class(self.store.dir, col)
                docs = kb.manifest()["docs"]
                out.append(KBInfo(name, col.name, len(docs), sum(d.get("chunks", 0) for d in docs.values()),
                                  {"embedding_model": (col.metadata or {}).get("embedding_model", "")}))
            return out

    def _info(self, kb: KnowledgeBase) -> KBInfo:
        docs = kb.manifest()["docs"]
        return KBInfo(kb.name, kb.collection.name, len(docs), sum(d.get("chunks", 0) for d in docs.values()))

    def create_kb(self, name: str) -> KBInfo:
        """Create an empty knowledge base. Raises ValueError when the name is empty or taken."""
        with self._lock:
            return self._info(self.store.create(name))

    def rename_kb(self, old: str, new: str) -> KBInfo:
        """Rename (display name only). Raises KeyError (no such KB) / ValueError (bad new name)."""
        with self._lock:
            return self._info(self.store.rename(old, new))

    def delete_kb(self, name: str) -> None:
        """Delete a knowledge base and everything in it. Raises KeyError when absent."""
        with self._lock:
            self.store.delete(name)

    def reembed(self, kb: str | None = None, on_progress=None, cancel=None) -> KBInfo:
        """Re-embed a knowledge base with the current ``embedding_model`` (crash-safe, the old
        vectors stay until the new ones are stored; see :mod:`kb.reembed`).

        Raises:
            KeyError: no such knowledge base; InterruptedError: cancelled;
            kb.embeddings.EmbedderError: the new model cannot load.
        """
        from kb import reembed

        with self._lock:
            if getattr(self.settings, "chroma_url", ""):
                raise ValueError("re-embedding is not available with a Chroma server (chroma_url) yet: clear "
                                 "chroma_url, or make a new knowledge base and ingest the documents again")
            self.embedder.dimension  # noqa: B018 - load the model (clear error) before touching the store
            base = reembed.reembed(self.store, kb or self.settings.default_kb, self.embedder,
                                   headers=bool(getattr(self.settings, "chunk_headers", True)),
                                   on_progress=on_progress, cancel=cancel)
            return self._info(base)

    # -- documents --------------------------------------------------------------------------
    def documents(self, kb: str | None = None) -> list[DocumentInfo]:
        """Documents of a knowledge base, by file name."""
        with self._lock:
            docs = self._kb(kb, create=False, write=False).manifest()["docs"]
            return sorted((DocumentInfo(source=s, sha256=d["sha256"], pages=d.get("pages", 0), chunks=d.get("chunks", 0),
                                        name=d.get("name", Path(s).name), added_at=d.get("added_at", ""),
                                        ocr_pages=d.get("ocr_pages", 0)) for s, d in docs.items()),
                          key=lambda d: (d.name, d.source))

    def remove(self, doc: str, kb: str | None = None) -> DocumentInfo:
        """Remove a document by absolute path, file name or sha256 prefix (>= 6 hex chars).

        Raises:
            KeyError: nothing matches, or several documents match (the message lists them).
        """
        with self._lock:
            base = self._kb(kb, create=False)
            full = str(Path(doc).expanduser().resolve())   # (a full path names one document, never all of them)
            infos = [d for d in self.documents(kb) if doc in (d.source, d.name) or full == d.source
                     or (len(doc) >= 6 and d.sha256.startswith(doc.lower()))]
            if len(infos) != 1:
                names = ", ".join(d.source for d in infos)
                raise KeyError(f"{'several documents match' if infos else 'no document matches'} {doc!r}"
                               + (f": {names}; give the full path" if infos else
                                  f" in {base.name!r}; see `python main.py kb docs`"))
            base.remove_document(infos[0].source)
            _reindex(base)
            return infos[0]

    # -- ingest -----------------------------------------------------------------------------
    def ingest(self, paths, kb: str | None = None, *, on_progress: Callable[[float, float, str], None] | None = None,
               on_result: Callable[[IngestResult], None] | None = None, cancel=None) -> list[IngestResult]:
        """Add files and folders (recursive) to a knowledge base.

        Files are hashed here, then loaded and chunked in a worker process a few files ahead (see
        :class:`_Parser`) while this thread embeds and stores; chunks of consecutive small files are embedded
        together (at least :data:`EMBED_GROUP` per call) so many small files ingest as fast as
        one big one. A file already stored with the same sha256 is "skipped"; a changed file's
        old chunks are replaced (see kb.store for crash safety). Problems with one file become a
        "failed" result with one line; the rest go on.

        Args:
            paths: files and/or folders.
            kb: display name (None: settings.default_kb; created on demand).
            on_progress: ``(done, total, message)`` in files (fractional within a file).
            on_result: called once per file with its :class:`IngestResult`, in input order.
            cancel: threading.Event; when set, stops between files/batches (store consistent).

        Returns:
            One result per file, in order (files not reached after a cancel are left out).
        """
        with self._lock:
            files, links = expand_paths_checked([paths] if isinstance(paths, (str, Path)) else paths,
                                                bool(getattr(self.settings, "follow_symlinks", False)))
            waited = _ProgressWait(self.on_wait, on_progress, len(files))
            base = self._kb(kb, on_wait=waited)
            run = _IngestRun(self, base, len(files), on_progress, on_result, cancel)
            for r in links:
                run.emit(r)
            run.run(files)
            if any(r.status in ("added", "updated") for r in run.results):
                if on_progress:
                    on_progress(len(files), len(files), Progress("indexing", "indexing (BM25)"))
                try:
                    _reindex(base)
                except ConnectionError as e:   # the Chroma server went away: the next search rebuilds it
                    log.warning("BM25 index not rebuilt: %s", e)
            return run.results

    # -- search -----------------------------------------------------------------------------
    def search(self, query: str, kb: str | None = None, k: int | None = None, mode: str = "hybrid") -> list[Hit]:
        """Top-k hits for a query (hybrid BM25 + vector fused by RRF; see kb.retrieval).

        Args:
            mode: "hybrid" (default) | "bm25" | "vector".

        Raises:
            KeyError: a named knowledge base that does not exist; ValueError: model mismatch / bad mode.
        """
        with self._lock:
            base = self._kb(kb, create=False, write=False)
            if mode != "bm25":
                self._check_model(base)
            return retrieval.search(base, self.embedder, query, k or self.settings.top_k, mode)

    def chunks(self, kb: str | None = None) -> Iterable[tuple[DocumentInfo, list[Hit]]]:
        """Every stored chunk, document by document (for building training tasks).

        Yields:
            ``(document, chunks)`` per document, by file name; chunks in document order as
            :class:`Hit` with ``rank`` = 1-based chunk position and ``score`` 0.

        Raises:
            KeyError: a named knowledge base that does not exist.
        """
        for doc in self.documents(kb):
            with self._lock:
                base = self._kb(kb, create=False, write=False)
                version = base.manifest()["docs"].get(doc.source, {}).get("version")
                got = base.collection.get(where={"version": version}, include=["documents", "metadatas"]) \
                    if version else {"ids": []}
            rows = sorted(zip(got["ids"], got.get("documents") or [], got.get("metadatas") or [], strict=True),
                          key=lambda r: r[2].get("chunk_index", 0))
            yield doc, [Hit(rank=i, score=0.0, source=m.get("source", doc.source), page=m.get("page") or None,
                            text=t, chunk_id=cid, section=m.get("section", ""), page_end=m.get("page_end") or None)
                        for i, (cid, t, m) in enumerate(rows, 1)]

    # -- check and repair (kb/repair.py) ---------------------------------------------------------
    def check(self, kb: str | None = None, vector_index: bool = True) -> list[CheckReport]:
        """Consistency of one knowledge base (None: all of them); reads only.

        Args:
            vector_index: also ask the vector index for every chunk (slower; the app's check
                on open leaves it out).

        Raises:
            KeyError: a named knowledge base that does not exist.
        """
        with self._lock:
            names = [kb] if kb else [k.name for k in self.list_kbs()]
            return [repair_mod.check(self._kb(n, create=False, write=False), vector_index) for n in names]

    def repair(self, kb: str | None = None, *, on_progress: Callable[[float, float, str], None] | None = None,
               on_result: Callable[[IngestResult], None] | None = None) -> list[tuple[CheckReport, list[IngestResult]]]:
        """Make inconsistent knowledge bases consistent; documents that are fine are not touched.

        Under the write lock: leftovers are deleted, missing BM25 tokens rebuilt from the stored
        chunks, chunks missing from the vector index added again, duplicates and documents
        without all their chunks dropped; then those documents are ingested again from their
        files (progress and one result per file as in :meth:`ingest`; a file that is gone gets a
        "failed" line).

        Returns:
            Per knowledge base: (the report found before repairing, results of the re-ingest).

        Raises:
            KeyError: a named knowledge base that does not exist; StoreBusy: another process
            kept writing past ``kb_lock_timeout_s``.
        """
        out = []
        with self._lock:
            for name in [kb] if kb else [k.name for k in self.list_kbs()]:
                base = self._kb(name, create=False)
                say = (lambda m: on_progress(0, 1, m)) if on_progress else (lambda m: None)  # noqa: E731
                with base.writing():
                    rep = repair_mod.check(base)
                    again = [] if rep.ok else repair_mod.fix_in_place(base, rep, log=say)
                results = [IngestResult(s, "failed", Message("gone_repair", "the file is no longer there, so its "
                                                             "chunks could not be restored; ingest it again from "
                                                             "where it is now"))
                           for s in again if not Path(s).is_file()]
                for r in results:
                    if on_result:
                        on_result(r)
                present = [s for s in again if Path(s).is_file()]
                if present:
                    results += self.ingest(present, name, on_progress=on_progress, on_result=on_result)
                if not rep.ok:
                    _reindex(base)
                out.append((rep, results))
        return out

    def is_relevant(self, hits: list[Hit], query: str | None = None, kb: str | None = None) -> bool:
        """True when ``hits`` may answer ``query`` (see :meth:`relevance`). Without a query:
        the old rule, best cosine >= ``settings.relevance_floor`` (BM25-only hits count)."""
        if query is not None:
            return self.relevance(query, hits, kb).relevant
        sims = [h.similarity for h in hits if h.similarity is not None]
        if not hits:
            return False
        return max(sims) >= float(self.settings.relevance_floor) if sims else True

    def relevance(self, query: str, hits: list[Hit], kb: str | None = None):
        """The refusal gate's verdict on ``hits`` for ``query`` (:func:`kb.relevance.judge`):
        BM25 term coverage with this KB's IDF, and the cosine against the KB's calibrated floor
        when the embedder can read the query's script.

        Returns:
            :class:`kb.relevance.Relevance`.
        Raises:
            KeyError: a named knowledge base that does not exist.
        """
        from kb import relevance

        with self._lock:
            base = self._kb(kb, create=False, write=False)
            df, n = retrieval.BM25Index(base).doc_freq()
            floor = None
            readable = retrieval.fusion_weights(self.embedder_name, query)["vector"] > 0
            if readable and any(h.similarity is not None for h in hits):
                floor = relevance.vector_floor(base, self.embedder)
            return relevance.judge(query, hits, df, n, floor)


_CANCELLED = Message("cancelled", "cancelled; nothing of this file was stored")


class FileTimeout(Exception):
    """A file parsed longer than ``settings.file_time_budget_s``; its worker was killed."""


class _Parser:
    """Load + chunk for one ingest call: in ONE worker process ("spawn"; it imports kb.loaders,
    kb.ocr and kb.chunking only: no chromadb, no torch) so parsing overlaps embedding and never
    holds this process's GIL (the app's UI thread keeps ticking); in this process when
    ``settings.ingest_workers`` is 0 or the worker cannot start. The worker starts on the first
    submit and serves the whole call (its start-up is paid once per ingest, not per file)."""

    def __init__(self, settings):
        self.opts = {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap,
                     "ocr_engine": settings.ocr_engine, "ocr_languages": settings.ocr_languages,
                     "max_uncompressed_mb": float(getattr(settings, "max_uncompressed_mb", loaders.MAX_UNCOMPRESSED_MB))}
        self.budget = float(getattr(settings, "file_time_budget_s", 900.0))
        self.in_process = int(getattr(settings, "ingest_workers", 1)) <= 0
        self.pool = self.queue = None
        self.live: set = set()             # Futures of the current worker
        self.started = False               # has any worker come up (sent loaders.READY)?
        self.began: dict[int, float] = {}  # file index -> time.monotonic() its parse began in the worker

    def submit(self, i: int, path: Path):
        """Queue file ``i`` in the worker -> a Future, or None to parse it in :meth:`wait`."""
        for _ in range(2):
            if self.in_process:
                return None
            try:
                if self.pool is None:
                    ctx = multiprocessing.get_context("spawn")
                    self.queue = ctx.SimpleQueue()
                    self.pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=loaders.worker_init,
                                                    initargs=(self.queue,))
                fut = self.pool.submit(loaders.worker_load_and_chunk, i, str(path), self.opts)
                self.live.add(fut)
                return fut
            except BrokenProcessPool:
                self.restart()
            except (OSError, RuntimeError, ImportError, NotImplementedError) as e:
                log.warning("ingest worker process cannot start (%s); parsing in this process", e)
                self.close()
                self.in_process = True
        return None

    def wait(self, handle, i: int, path: Path, report: Callable[[int, int], None], cancel) -> dict:
        """The parsed file (see loaders.load_and_chunk); ``report(page, pages)`` while it parses.

        Raises:
            the loader's exception; BrokenProcessPool (worker died); InterruptedError (cancel set).
        """
        if handle is None:
            return loaders.load_and_chunk(path, on_page=report, **self.opts)
        while True:
            try:
                return handle.result(timeout=0.1)
            except TimeoutError:
                pass
            finally:
                last = None
                while self.queue is not None and not self.queue.empty():
                    msg = self.queue.get()
                    self.started = self.started or msg == loaders.READY
                    if msg[2] == loaders.BEGIN:
                        self.began[msg[0]] = time.monotonic()
                    elif msg[0] == i:
                        last = msg
                if last:
                    report(last[1], last[2])
            if cancel is not None and cancel.is_set():
                raise InterruptedError("cancelled")
            if i in self.began and time.monotonic() - self.began[i] > self.budget:
                self.kill()
                raise FileTimeout(Message("timeout", "parsing took longer than file_time_budget_s = {s:g} s, so the "
                                          "file was abandoned (nothing of it stored); split it into smaller files, "
                                          "or raise file_time_budget_s in settings", s=self.budget))

    def kill(self) -> None:
        """Kill the worker now (a file ran past its time budget); the next submit starts a new one."""
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.kill()
        self.close(wait=False)

    def restart(self, handle=None) -> None:
        """Drop the broken worker (unless ``handle`` came from an earlier, already dropped one);
        the next submit starts a fresh one."""
        if handle is None or handle in self.live:
            log.warning("ingest worker process died; starting a new one")
            self.close(wait=False)

    def close(self, wait: bool = True) -> None:
        """Stop the worker: pending files are dropped; ``wait`` for the one it is parsing."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
        self.pool = self.queue = None
        self.live = set()


class _IngestRun:
    """One ingest call: checks files (hash, dedup) here, parses them ahead in the worker process
    (:class:`_Parser`), embeds pending chunks in big groups, stores each document, and reports
    results in input order."""

    #: files parsed ahead of the one being embedded (the worker never waits for the embedder)
    AHEAD = 2

    def __init__(self, svc: KnowledgeBaseService, base: KnowledgeBase, total: int, on_progress, on_result, cancel):
        self.svc, self.base, self.total = svc, base, total
        self.on_progress, self.on_result, self.cancel = on_progress, on_result, cancel
        self.results: list[IngestResult] = []
        self.pending: list[dict] = []
        self.parser = _Parser(svc.settings)
        self.queued: set[str] = set()      # sha256 of files sent to the parser in this call
        self.embedder_error: str | None = None   # the embedder could not load: files fail, unparsed

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def step(self, at: float, message: str) -> None:
        if self.on_progress:
            self.on_progress(min(at, self.total), self.total, message)

    def emit(self, res: IngestResult) -> None:
        self.results.append(res)
        if self.on_result:
            self.on_result(res)

    def run(self, files: list[Path]) -> None:
        """Ingest ``files`` in order; up to :attr:`AHEAD` files beyond the current one are parsing."""
        window: deque[dict] = deque()
        nxt = 0
        try:
            while not self.cancelled():
                while nxt < len(files) and sum("handle" in w for w in window) <= self.AHEAD:
                    window.append(self.check(nxt, files[nxt]))
                    nxt += 1
                if not window:
                    break
                self.add(window.popleft(), window)
            self.flush()
        finally:
            self.parser.close(wait=not self.cancelled())

    def check(self, i: int, path: Path) -> dict:
        """Hash and dedup file ``i`` here; send it to the parser only when it must be read."""
        item = {"i": i, "path": path}
        try:
            if not path.exists():
                raise loaders.LoaderError(Message("no_such_file", "no such file or folder; check the path"))
            limit = float(getattr(self.svc.settings, "max_file_mb", 512))
            if path.stat().st_size > limit * 2**20:
                raise loaders.LoaderError(Message("too_big", "the file is {mb:,.0f} MB (limit max_file_mb = {limit:g}); "
                                                  "it was not read. Split it, or raise max_file_mb in settings",
                                                  mb=path.stat().st_size / 2**20, limit=limit))
            source, sha = str(path.resolve()), file_sha256(path)
            docs = self.base.manifest()["docs"]
            if docs.get(source, {}).get("sha256") == sha:
                d = docs[source]
                return {**item, "result": IngestResult(source, "skipped", "unchanged", d.get("pages", 0),
                                                       d.get("chunks", 0), d.get("ocr_pages", 0))}
            self.svc._check_model(self.base)
        except ConnectionError as e:           # the Chroma server (chroma_url) did not answer
            return {**item, "result": IngestResult(str(path), "failed", str(e))}
        except OSError as e:
            return {**item, "result": IngestResult(str(path), "failed", loaders.os_error_line(e))}
        except (loaders.LoaderError, ValueError) as e:
            return {**item, "result": IngestResult(str(path), "failed", reason(e))}
        entry = {"sha256": sha, "name": path.name}
        item.update(source=source, entry=entry, status="updated" if source in docs else "added")
        if self.embedder_error:
            return {**item, "result": IngestResult(str(path), "failed", self.embedder_error)}
        if sha not in self.queued and not any(d["sha256"] == sha for d in docs.values()):
            self.queued.add(sha)
            item["handle"] = self.parser.submit(i, path)
            if not self.embedder_ready():
                return {**item, "result": IngestResult(str(path), "failed", self.embedder_error)}
        return item

    def embedder_ready(self) -> bool:
        """Load the embedder once (while the worker parses the first file); on failure remember
        its one-line message: every file then fails with it, before its parse is waited for."""
        if self.embedder_error is None:
            try:
                getattr(self.svc.embedder, "model", None)      # a real Embedder loads here
            except EmbedderError as e:
                self.embedder_error = one_line(reason(e))
        return self.embedder_error is None

    def add(self, item: dict, window: deque) -> None:
        """Finish file ``item``: wait for its parse, queue its chunks; failures and skips are
        reported after the files queued before it."""
        i, path = item["i"], item["path"]
        self.step(i, path.name)
        try:
            prep = item.get("result") or self.twin(item) or self.parse(item, window)
        except ConnectionError as e:           # the Chroma server (chroma_url) went away
            prep = IngestResult(str(path), "failed", str(e))
        if isinstance(prep, IngestResult):
            self.flush()
            self.emit(prep)
            return
        self.pending.append(prep)
        if sum(len(p["chunks"]) for p in self.pending) >= EMBED_GROUP:
            self.flush()

    def twin(self, item: dict) -> IngestResult | None:
        """"skipped" when the same bytes are stored, or pending under another name."""
        sha = item["entry"]["sha256"]
        twin = next((s for s, d in self.base.manifest()["docs"].items() if d["sha256"] == sha), None)
        twin = twin or next((p["source"] for p in self.pending if p["entry"]["sha256"] == sha), None)
        if twin:
            return IngestResult(item["source"], "skipped", f"same content as {twin} (already stored)")
        if "handle" not in item:           # its twin failed or was cancelled: parse it after all
            item["handle"] = self.parser.submit(item["i"], item["path"])
        return None

    def parse(self, item: dict, window: deque):
        """Wait for the parse of ``item`` -> a pending dict, or a failed IngestResult. A dead
        worker is replaced and the file retried once (then it fails with one line)."""
        i, path = item["i"], item["path"]
        report = lambda d, t: self.step(i + 0.5 * d / max(t, 1), Progress(  # noqa: E731
            "page", "{name}: page {page}/{pages}", name=path.name, page=d, pages=t))
        for attempt in (1, 2, 3):
            try:
                out = self.parser.wait(item["handle"], i, path, report, self.cancel)
                break
            except BrokenProcessPool:
                self.parser.restart(item["handle"])
                if attempt >= 2 and self.parser.started:
                    return IngestResult(item["source"], "failed", Message(
                        "parser_crashed", "the document parser crashed on this file; it may be damaged: re-save "
                        "it (PDF viewer / Word) and ingest again"))
                if attempt >= 2:  # no worker ever came up (e.g. spawn cannot re-import a stdin __main__)
                    log.warning("ingest worker process cannot start here; parsing in this process")
                    self.parser.close(wait=False)
                    self.parser.in_process = True
                for w in [item, *window]:
                    if "handle" in w and not _parsed_ok(w["handle"]):
                        w["handle"] = self.parser.submit(w["i"], w["path"])
            except InterruptedError:
                return IngestResult(item["source"], "failed", _CANCELLED)
            except FileTimeout as e:       # the worker was killed: files parsing ahead go to a new one
                for w in window:
                    if "handle" in w and not _parsed_ok(w["handle"]):
                        w["handle"] = self.parser.submit(w["i"], w["path"])
                return IngestResult(item["source"], "failed", reason(e))
            except Exception as e:  # noqa: BLE001  (the worker's error, whatever it is, fails this file only)
                msg = reason(e) if isinstance(e, loaders.LoaderError) else loaders.os_error_line(e) \
                    if isinstance(e, OSError) else \
                    Message("unreadable", "could not read the file ({error}); re-save it and ingest again",
                            error=f"{type(e).__name__}: {e}")
                return IngestResult(str(path), "failed", one_line(msg))
        log.debug("parsed %s in process %d (%.2f s)", path.name, out["pid"], out["seconds"])
        doc = out["doc"]
        entry = {**item["entry"], "pages": doc.pages, "ocr_pages": doc.ocr_pages,
                 "added_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return {"i": i, "path": path, "source": item["source"], "doc": doc, "chunks": out["chunks"],
                "entry": entry, "status": item["status"], "pid": out["pid"]}

    def flush(self) -> None:
        """Embed all pending chunks (in groups, with progress), then store each document."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        texts = [self.svc.indexed(p["source"], c) for p in pending for c in p["chunks"]]
        try:
            vectors = self.embed(texts, pending[0]["i"], pending[-1]["i"] + 1)
        except InterruptedError:
            for p in pending:
                self.emit(IngestResult(p["source"], "failed", _CANCELLED))
            return
        at, items = 0, []
        for p in pending:
            n = len(p["chunks"])
            items.append((p["source"], p["entry"], p["chunks"], vectors[at:at + n],
                          [retrieval.tokenize(t) for t in texts[at:at + n]]))
            at += n
        try:
            entries = self.base.put_documents(items, self.cancel)
        except (InterruptedError, StoreBusy, ConnectionError) as e:   # ConnectionError: the Chroma server went away
            msg = _CANCELLED if isinstance(e, InterruptedError) else Message(
                "not_stored", "{reason}; nothing of this file was stored", reason=reason(e))
            for p in pending:
                self.emit(IngestResult(p["source"], "failed", msg))
            return
        for p, e in zip(pending, entries, strict=True):
            if e.get("stored_by") == "other":
                self.emit(IngestResult(p["source"], "skipped", "the same content was stored meanwhile by another "
                                       "TQT-s process", e.get("pages", 0), e.get("chunks", 0), e.get("ocr_pages", 0)))
            else:
                self.emit(self.result(p))

    def embed(self, texts: list[str], first: int, last: int):
        """Embed ``texts`` in groups of EMBED_GROUP; progress moves from file ``first`` to ``last``."""
        import numpy as np

        parts = []
        for j in range(0, len(texts), EMBED_GROUP):
            if self.cancel is not None and self.cancel.is_set():
                raise InterruptedError("cancelled")
            parts.append(self.svc.embedder.encode_documents(texts[j:j + EMBED_GROUP]))
            frac = min(1.0, (j + EMBED_GROUP) / max(len(texts), 1))
            self.step(first + 0.5 + (last - first - 0.5) * frac,
                      Progress("embedding", "embedding {n} chunks", n=len(texts)))
        return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)

    @staticmethod
    def result(p: dict) -> IngestResult:
        """The result line of a stored document."""
        doc, chunks = p["doc"], p["chunks"]
        msg = f"{len(chunks)} chunks from {doc.pages} page(s)" + (f", {doc.ocr_pages} by OCR" if doc.ocr_pages else "")
        if doc.warnings:
            msg += f" (warning: {'; '.join(doc.warnings)})"
        return IngestResult(p["source"], p["status"], msg, doc.pages, len(chunks), doc.ocr_pages)


class _ProgressWait:
    """``on_wait`` of an ingest: the "waiting for another process" line goes to the service's
    ``on_wait`` and to the ingest's progress message (the app shows it in its status line)."""

    def __init__(self, on_wait, on_progress, total: int):
        self.on_wait, self.on_progress, self.total = on_wait, on_progress, total

    def __call__(self, message: str) -> None:
        log.info("%s", message)
        if self.on_wait:
            self.on_wait(message)
        if self.on_progress:
            self.on_progress(0, self.total, message)


def _reindex(base: KnowledgeBase) -> None:
    """Build (or load) the BM25 index of the new generation, then drop older saved ones under
    the write lock (a reader of another process may still be loading them otherwise)."""
    retrieval.BM25Index(base).load()
    with base.writing_if_free() as free:
        if free:                           # else another writer is busy: its own reindex prunes
            retrieval.BM25Index(base).prune()


def _parsed_ok(handle) -> bool:
    """True when a parse Future finished with a result (so a new worker need not redo it)."""
    return handle is not None and handle.done() and not handle.cancelled() and handle.exception() is None
