"""chromadb persistent store: one collection per knowledge base, plus a per-KB side folder.

Layout under ``settings.store_dir``::

    chroma/                       chromadb PersistentClient (telemetry off)
    kbs/<collection>/manifest.json   documents -> current version (written atomically)
    kbs/<collection>/tokens/<version>.json   BM25 tokens of that version's chunks
    kbs/<collection>/pending/<version>.json  an update in flight (for crash recovery)
    kbs/<collection>/bm25/        the persisted BM25 index (kb.retrieval)

With a shared Chroma server (setting ``chroma_url``) the same design runs over chromadb's
HttpClient: :mod:`kb.server_store` subclasses :class:`KnowledgeBase` and keeps the manifest,
pending markers, BM25 tokens and the write lock (a lease) in the server instead of these files.

Display names (any Unicode) map to collection names ``kb-<ascii slug>-<8 hex>`` (chromadb allows
[a-zA-Z0-9._-], 3-512 chars); the display name lives in the collection metadata.

Consistency: a document's chunks are written under a fresh version id, then the manifest is
flipped atomically (temp file + rename), then the old version's chunks are deleted. Reads only
return chunks whose version is in the manifest, so a crash leaves the old or the new version,
never a mix; :meth:`KnowledgeBase.recover` deletes leftovers named by ``pending/`` markers.

Several processes (the app, a CLI ingest, a script) may open one knowledge base. Every write
(chunks, tokens, manifest read-modify-write, recovery) holds the knowledge base's inter-process
lock ``kbs/<collection>/write.lock`` (:mod:`filelock`, an OS file lock the kernel releases when
its holder dies). So whoever holds the lock knows no other writer is alive, and only then are
``pending/`` leftovers deleted: a crashed writer's, never a live one's. Readers never take the
lock to read and never delete.

chromadb keeps each collection's vector (HNSW) index in memory per process, built when the
client opens, and persists it every ``hnsw:sync_threshold`` additions, purging its log. A process
whose index predates another process's writes would persist an index without them: the chunks
stay in the rows but vector search no longer reaches them (measured with chromadb 1.5.9, issue
11: two concurrent ingests, 2,013 to 2,048 of 2,127 chunks reachable). So every writer stamps
``kbs/<collection>/index.writer`` with its client's id under the write lock, and a writer that
finds another id there reopens chromadb before writing (:meth:`KnowledgeBase._sync_locked`);
readers reopen before a vector query when another process flipped the manifest since they
loaded it (:meth:`KnowledgeBase.refresh`, at most once a second). Measured after: 2,127 of
2,127 reachable from a new process (tests/test_kb_multiprocess.py checks a new process and a
reader open during the writes).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from kb.embeddings import TqtsEmbeddingFunction
from kb.types import Progress

_CLIENTS: dict[str, object] = {}
_MANIFESTS: dict[str, tuple] = {}     # manifest path -> ((inode, mtime_ns, size), parsed)
_LOCKS: dict[str, object] = {}        # write.lock path -> filelock.FileLock (one per process)
_OPENED: dict[str, int] = {}          # chroma path -> time.time_ns() when this process loaded it
#: chromadb configuration of new collections (tests lower ``sync_threshold`` to make chromadb
#: persist its vector index after a few additions instead of 1000)
HNSW_CONFIG: dict = {"space": "cosine"}
#: a reader reloads chromadb for another process's writes at most once per this many seconds
READER_REFRESH_S = 1.0
#: seconds a writer waits for another process's write before giving up (settings kb_lock_timeout_s)
LOCK_TIMEOUT = 600.0


class StoreBusy(TimeoutError):
    """Another process kept the knowledge base's write lock longer than the timeout."""


def _copy_docs(m: dict) -> dict:
    """A copy deep enough for callers to add/remove documents and edit entries."""
    return {"generation": m.get("generation", 0), "docs": {k: dict(v) for k, v in m["docs"].items()},
            "writer": m.get("writer", 0)}
_CLIENTS_LOCK = threading.Lock()


def client_for(store_dir: Path, fresh: bool = False):
    """The chromadb PersistentClient for ``store_dir/chroma`` (one per process and path).

    Opened under the inter-process lock ``store_dir/chroma.lock``: two processes opening a new
    store at once would both run chromadb's schema migrations ("table collections already exists").

    Args:
        fresh: drop this process's cached clients and load the store again from disk (its
            in-memory vector indexes then include other processes' writes; see module docstring).
    """
    import chromadb
    from chromadb.config import Settings
    from filelock import FileLock

    path = str(Path(store_dir) / "chroma")
    with _CLIENTS_LOCK:
        if fresh:
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()     # (public API; forgets every path's system)
            _CLIENTS.clear()
        if path not in _CLIENTS:
            _OPENED[path] = time.time_ns() - 50_000_000   # 50 ms margin for coarse file mtimes
            Path(store_dir).mkdir(parents=True, exist_ok=True)
            with FileLock(str(Path(store_dir) / "chroma.lock"), timeout=LOCK_TIMEOUT):
                _CLIENTS[path] = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
            _CLIENTS[path]._tqts_id = uuid.uuid4().hex     # stamped in index.writer by its writes
        return _CLIENTS[path]


def collection_name_for(display: str) -> str:
    """A valid, unique chromadb collection name for a display name.

    >>> collection_name_for("My Docs").startswith("kb-My-Docs-")
    True
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", display)
    slug = re.sub(r"\.{2,}", ".", slug).strip("-._")[:40]
    return f"kb-{slug + '-' if slug else ''}{uuid.uuid4().hex[:8]}"


def write_json_atomic(path: Path, data, sync: bool = True) -> None:
    """Write JSON to a temp file (fsync'd when ``sync``), then rename over ``path`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class KnowledgeBase:
    """One knowledge base: its chromadb collection and side folder (see module docstring)."""

    def __init__(self, store_dir: Path, collection):
        self.store_dir = Path(store_dir)
        self.collection = collection
        self.name: str = (collection.metadata or {}).get("display_name", collection.name)
        self.dir = Path(store_dir) / "kbs" / collection.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_batch = max(1, int(collection._client.get_max_batch_size()))
        #: called with one line when a write must wait for another process (set by the service)
        self.on_wait = None
        self.lock_timeout = LOCK_TIMEOUT

    # -- inter-process write lock -------------------------------------------------------------
    def _file_lock(self):
        from filelock import FileLock

        path = str(self.dir / "write.lock")
        with _CLIENTS_LOCK:
            if path not in _LOCKS:   # one object per process: reentrant per thread, exclusive across threads
                _LOCKS[path] = FileLock(path)
            return _LOCKS[path]

    @contextlib.contextmanager
    def writing(self, timeout: float | None = None):
        """Hold the knowledge base's inter-process write lock (reentrant in one thread).

        When another process holds it, ``self.on_wait`` gets "another TQT-s process is writing
        to «KB»; waiting…" once and this waits up to ``timeout`` seconds (default
        ``self.lock_timeout``).

        Raises:
            StoreBusy: still held by another process after the timeout.
        """
        from filelock import Timeout

        lock = self._file_lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if self.on_wait:
                self.on_wait(Progress("waiting", "another TQT-s process is writing to «{kb}»; waiting…", kb=self.name))
            limit = self.lock_timeout if timeout is None else timeout
            try:
                lock.acquire(timeout=limit)
            except Timeout:
                raise StoreBusy(f"another TQT-s process has been writing to «{self.name}» for over {limit:.0f} s; "
                                "let it finish (or close it) and try again") from None
        try:
            if lock.lock_counter == 1:
                self._sync_locked()
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def writing_if_free(self):
        """Yield True holding the write lock when no other process holds it, else yield False."""
        held = self._try_lock()
        try:
            yield held
        finally:
            if held:
                self._file_lock().release()

    def _try_lock(self) -> bool:
        """Take the write lock only when free (True: now held; release it with the lock's release)."""
        from filelock import Timeout

        lock = self._file_lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        if lock.lock_counter == 1:
            try:
                self._sync_locked()
            except BaseException:
                lock.release()
                raise
        return True

    def _sync_locked(self) -> None:
        """Make this process's chromadb view current before it writes; the caller has just taken
        the write lock.

        chromadb keeps each collection's vector (HNSW) index in memory, built when the client
        opens, and persists it from time to time (every ``hnsw:sync_threshold`` additions), after
        which its log is purged. A process whose index predates another process's writes would
        persist an index without them: they would stay in the rows but vanish from vector search
        (measured, issue 11). So every writer stamps ``index.writer`` with its client's id, and a
        writer that finds another id there (another process, or an older client of this one, wrote
        since) reopens chromadb first; the reopened index has every write (the lock serializes them).
        """
        stamp = self.dir / "index.writer"
        try:
            last = json.loads(stamp.read_text(encoding="utf-8"))
        except FileNotFoundError:
            last = None                 # no writer stamped it yet
        except (OSError, ValueError):
            last = ""                   # unreadable: assume another writer
        client = client_for(self.store_dir)     # (the id is read off the client used: another thread may reopen)
        if last is not None and last != client._tqts_id:
            client = client_for(self.store_dir, fresh=True)
        if getattr(self.collection, "_client", None) is not client._server:   # a client this process dropped
            self.collection = client.get_collection(self.collection.name)
        if last != client._tqts_id:
            write_json_atomic(stamp, client._tqts_id)

    # -- manifest ---------------------------------------------------------------------------
    #: True (server mode): each chunk row carries its BM25 tokens (metadata ``bm25``) instead of
    #: a ``tokens/<version>.json`` file, so they are written with the chunks in the same ``add``
    TOKENS_IN_ROWS = False

    def manifest(self) -> dict:
        """``{"generation": int, "docs": {source: {sha256, version, pages, chunks, ...}}}``."""
        path = self.dir / "manifest.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return {"generation": 0, "docs": {}}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)       # a flip renames a new file in: new inode
        cached = _MANIFESTS.get(str(path))
        if cached is None or cached[0] != key:
            cached = (key, json.loads(path.read_text(encoding="utf-8")))
            _MANIFESTS[str(path)] = cached
        return _copy_docs(cached[1])

    def _flip(self, changes: dict[str, dict | None]) -> None:
        """Apply source -> entry (None: remove) to the manifest in one atomic write."""
        m = self.manifest()
        for source, entry in changes.items():
            if entry is None:
                m["docs"].pop(source, None)
            else:
                m["docs"][source] = entry
        m["generation"] = m.get("generation", 0) + 1
        m["writer"] = os.getpid()
        self._write_manifest(m)

    def _write_manifest(self, m: dict) -> None:
        """Replace the manifest in one atomic step (here: temp file + rename)."""
        write_json_atomic(self.dir / "manifest.json", m)

    # -- side records: pending markers and BM25 tokens (kb/server_store.py keeps them in the server)
    def _write_marker(self, name: str, info: dict) -> None:
        """Record an update in flight (``{"new": [...], "old": [...], "pid"}``) before writing it."""
        write_json_atomic(self.dir / "pending" / f"{name}.json", info)

    def _markers(self) -> list[tuple[str, dict]]:
        """``(name, info)`` of every pending marker, by name; a marker cut short by a crash
        reads as ``{"new": [its version], "old": []}`` (its name is the version)."""
        folder = self.dir / "pending"
        out = []
        for marker in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                info = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = {"new": [marker.stem.removeprefix("rm-")], "old": []}
            out.append((marker.stem, info))
        return out

    def _drop_marker(self, name: str) -> None:
        (self.dir / "pending" / f"{name}.json").unlink(missing_ok=True)

    def _save_tokens(self, version: str, ids: list[str], tokens: list[list[str]]) -> None:
        """Store the BM25 tokens of a version's chunks (``ids`` in chunk order)."""
        write_json_atomic(self.dir / "tokens" / f"{version}.json", {"ids": ids, "tokens": tokens}, sync=False)

    def _drop_tokens(self, version: str) -> None:
        (self.dir / "tokens" / f"{version}.json").unlink(missing_ok=True)

    def token_versions(self) -> list[str]:
        """Versions that have a stored tokens record (``kb check`` looks for leftovers)."""
        tdir = self.dir / "tokens"
        return sorted(p.stem for p in tdir.glob("*.json")) if tdir.exists() else []

    def current_versions(self) -> set[str]:
        return {d["version"] for d in self.manifest()["docs"].values()}

    # -- writes -----------------------------------------------------------------------------
    def put_document(self, source: str, entry: dict, chunks: list, embeddings: np.ndarray,
                     tokens: list[list[str]], cancel=None) -> dict:
        """Store one document; see :meth:`put_documents`."""
        return self.put_documents([(source, entry, chunks, embeddings, tokens)], cancel)[0]

    def put_documents(self, items: list[tuple], cancel=None) -> list[dict]:
        """Store documents' chunks as new versions and make them current (see module docstring).

        Args:
            items: ``(source, entry, chunks, embeddings, tokens)`` per document: source is the
                absolute path (the key); entry the manifest fields (sha256, pages, ocr_pages,
                name, added_at; version and chunks are filled in here); chunks
                :class:`kb.chunking.Chunk` list; embeddings (len(chunks), dim) float32;
                tokens the BM25 tokens per chunk.
            cancel: optional threading.Event checked between batches; when set, the new
                versions are rolled back and ``InterruptedError`` raised.

        Returns:
            The manifest entries now current, in order. All documents of one call become
            visible together (one manifest write), and chromadb gets few large ``add`` calls.
            A document whose bytes (sha256) another process stored while this one was parsing
            is not stored twice: its entry is the stored one, with ``"stored_by": "other"``.

        Raises:
            StoreBusy: another process held the write lock past the timeout (nothing written).
        """
        with self.writing():
            self._recover_locked()          # a crashed writer's leftovers, now that no writer is live
            docs = self.manifest()["docs"]
            by_sha = {d["sha256"]: d for d in docs.values()}
            fresh = [it for it in items if it[1]["sha256"] not in by_sha]
            stored = self._put_locked(fresh, docs, cancel) if fresh else []
            done = dict(zip((id(it) for it in fresh), stored, strict=True))
            return [done.get(id(it)) or dict(by_sha[it[1]["sha256"]], stored_by="other") for it in items]

    def _put_locked(self, items: list[tuple], docs: dict, cancel) -> list[dict]:
        """:meth:`put_documents` for documents not stored yet; the caller holds the write lock."""
        versions = [uuid.uuid4().hex[:12] for _ in items]
        olds = [docs.get(it[0], {}).get("version") for it in items]
        self._write_marker(versions[0], {"new": versions, "old": [o for o in olds if o], "pid": os.getpid()})
        ids, metas, texts, vecs = [], [], [], []
        for (source, entry, chunks, emb, tokens), version in zip(items, versions, strict=True):
            vids = [f"{version}-{c.index:05d}" for c in chunks]
            if not self.TOKENS_IN_ROWS:
                self._save_tokens(version, vids, tokens)
            ids += vids
            texts += [c.text for c in chunks]
            vecs.append(np.asarray(emb, dtype=np.float32).reshape(len(chunks), -1))
            metas += [{"source": source, "sha256": entry["sha256"], "version": version, "chunk_index": c.index,
                       "page": c.page_start or 0, "page_end": c.page_end or 0, "section": c.section}
                      | ({"bm25": " ".join(tok)} if self.TOKENS_IN_ROWS else {})
                      for c, tok in zip(chunks, tokens, strict=True)]
        embeddings = np.concatenate(vecs) if vecs else np.zeros((0, 1), dtype=np.float32)
        for i in range(0, len(ids), self.max_batch):
            if cancel is not None and cancel.is_set():
                self._recover_locked()
                raise InterruptedError("cancelled")
            j = i + self.max_batch
            self.collection.add(ids=ids[i:j], embeddings=embeddings[i:j], metadatas=metas[i:j], documents=texts[i:j])
        entries = [dict(it[1], version=v, chunks=len(it[2])) for it, v in zip(items, versions, strict=True)]
        self._flip({it[0]: e for it, e in zip(items, entries, strict=True)})
        self._recover_locked()
        return entries

    def remove_document(self, source: str) -> dict:
        """Drop a document (manifest first, then its chunks). Raises KeyError when absent,
        StoreBusy when another process holds the write lock past the timeout."""
        with self.writing():
            entry = self.manifest()["docs"][source]
            self._write_marker(f"rm-{entry['version']}", {"new": [], "old": [entry["version"]], "pid": os.getpid()})
            self._flip({source: None})
            self._recover_locked()
            return entry

    def recover(self) -> int:
        """Delete leftovers of crashed writers (chunks/tokens of versions named by ``pending/``
        markers that are not current), but only when no writer is alive: when another process
        holds the write lock this does nothing and returns 0 (that writer cleans up itself).

        Returns:
            Number of markers resolved.
        """
        if not self._has_markers() or not self._try_lock():
            return 0
        try:
            return self._recover_locked()
        finally:
            self._file_lock().release()

    def _recover_locked(self) -> int:
        """:meth:`recover` for a caller that holds the write lock (so every marker's writer is
        gone, or is this very call, which has flipped the manifest already)."""
        pending = self._markers()
        if not pending:
            return 0
        current = self.current_versions()
        for name, info in pending:
            stale = [v for v in list(info.get("new") or []) + list(info.get("old") or []) if v and v not in current]
            if stale:
                self.collection.delete(where={"version": {"$in": stale}})
                for v in stale:
                    self._drop_tokens(v)
            self._drop_marker(name)
        return len(pending)

    def _has_markers(self) -> bool:
        """Cheap check before :meth:`recover` takes the lock."""
        return (self.dir / "pending").exists()

    def refresh(self, every: float = 0.0, force: bool = False) -> bool:
        """Reopen chromadb when another process wrote this knowledge base since this process
        loaded it (see module docstring), so the vector index has its rows.

        Args:
            every: skip when this process loaded the store less than ``every`` seconds ago.
            force: reopen regardless.

        Returns:
            True when the client was reopened.
        """
        path = str(self.store_dir / "chroma")
        opened = _OPENED.get(path, 0)
        if not force:
            try:
                mtime = (self.dir / "manifest.json").stat().st_mtime_ns
            except OSError:
                return False
            if mtime <= opened or self.manifest().get("writer", 0) == os.getpid():
                return False
            if time.time_ns() - opened < every * 1e9:
                return False
        self.collection = client_for(self.store_dir, fresh=True).get_collection(self.collection.name)
        return True

    # -- reads ------------------------------------------------------------------------------
    def tokens_of(self, version: str) -> dict:
        """``{"ids": [...], "tokens": [[...], ...]}`` for a version."""
        return json.loads((self.dir / "tokens" / f"{version}.json").read_text(encoding="utf-8"))

    def get(self, ids: list[str], *, embeddings: bool = False) -> dict[str, dict]:
        """Chunk id -> {"text", "meta", "embedding"?} for the ids that exist."""
        if not ids:
            return {}
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        with self.writing():   # as in query(): a read may apply chromadb's log and persist the index
            try:
                got = self.collection.get(ids=list(ids), include=include)
            except Exception:  # noqa: BLE001  chromadb InternalError "Error finding id": rows another
                self.refresh(force=True)  # process added that this process's vector index lacks
                got = self.collection.get(ids=list(ids), include=include)
        out = {}
        for i, cid in enumerate(got["ids"]):
            row = {"text": got["documents"][i], "meta": got["metadatas"][i]}
            if embeddings:
                row["embedding"] = np.asarray(got["embeddings"][i], dtype=np.float32)
            out[cid] = row
        return out

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest chunks of current versions: (chunk id, cosine similarity), best first."""
        total = self.chunk_count()  # the manifest, not collection.count(): 9 of 27 ms at 100k chunks
        if total == 0:
            return []
        # Under the write lock, like a write: chromadb applies its log to this process's in-memory
        # index on a read and may persist it, so a stale reader could drop another process's chunks
        # from the index on disk (measured: 5 of 123 lost with a 1 s reader refresh). The lock's
        # _sync_locked reopens a stale view first; it is held for the query only (milliseconds).
        with self.writing():
            res = self.collection.query(query_embeddings=[np.asarray(vector, dtype=np.float32)],
                                        n_results=min(n, total), include=["metadatas", "distances"])
        current = self.current_versions()
        return [(cid, 1.0 - float(d)) for cid, d, m in zip(res["ids"][0], res["distances"][0], res["metadatas"][0], strict=True)
                if m.get("version") in current]

    def chunk_count(self) -> int:
        return sum(d.get("chunks", 0) for d in self.manifest()["docs"].values())


def replaced_collections(cols) -> set[str]:
    """Names of collections that a visible re-embedded collection replaces (kb/reembed.py):
    hidden, whether or not their deletion has happened yet."""
    return {(c.metadata or {}).get("replaces") for c in cols if (c.metadata or {}).get("tqts")} - {None}


class Store:
    """All knowledge bases under one store dir.

    Args:
        store_dir: settings.store_dir.
        embedder: the :class:`kb.embeddings.Embedder` whose name is recorded on new collections.
    """

    #: the knowledge base class of this store (kb/server_store.py has its own)
    kb_class = KnowledgeBase

    def __init__(self, store_dir: Path, embedder=None):
        self.dir = Path(store_dir)
        self.embedder = embedder
        client_for(self.dir)

    @property
    def client(self):
        """This process's current chromadb client for the store (reopened by refreshes)."""
        return client_for(self.dir)

    def collections(self) -> dict[str, object]:
        """Display name -> chromadb collection."""
        out = {}
        cols = self.client.list_collections()
        replaced = replaced_collections(cols)
        for col in cols:
            meta = col.metadata or {}
            if meta.get("tqts") and col.name not in replaced:
                out[meta.get("display_name", col.name)] = col
        return out

    def find(self, name: str) -> KnowledgeBase | None:
        col = self.collections().get(name)
        return self.kb_class(self.dir, col) if col is not None else None

    def open(self, name: str, create: bool = True, recover: bool = True) -> KnowledgeBase:
        """Open (or create) a knowledge base by display name; leftovers of a crashed writer are
        cleaned when ``recover`` and no other process is writing (readers pass False).

        Raises:
            KeyError: absent and ``create`` is False.
        """
        kb = self.find(name)
        if kb is None:
            if not create:
                raise KeyError(f"no knowledge base named {name!r}; see `python main.py kb list`")
            with self._names_lock():      # two processes creating "default" at once make one KB
                kb = self.find(name) or self.create(name)
        if recover:
            kb.recover()
        return kb

    def _names_lock(self):
        """The inter-process lock over knowledge base names (create, rename)."""
        from filelock import FileLock

        (self.dir / "kbs").mkdir(parents=True, exist_ok=True)
        path = str(self.dir / "kbs" / "names.lock")
        with _CLIENTS_LOCK:
            if path not in _LOCKS:
                _LOCKS[path] = FileLock(path, timeout=LOCK_TIMEOUT)
            return _LOCKS[path]

    def create(self, name: str) -> KnowledgeBase:
        """Create an empty knowledge base. Raises ValueError for an empty or taken name."""
        name = (name or "").strip()
        if not name:
            raise ValueError("a knowledge base needs a non-empty name")
        with self._names_lock():
            return self._create_locked(name)

    def _create_locked(self, name: str) -> KnowledgeBase:
        if name in self.collections():
            raise ValueError(f"a knowledge base named {name!r} already exists; pick another name")
        meta = {"tqts": 1, "display_name": name,
                "embedding_model": self.embedder.model_name if self.embedder else ""}
        ef = TqtsEmbeddingFunction(embedder=self.embedder) if self.embedder else None
        col = self.client.create_collection(collection_name_for(name), metadata=meta,
                                            configuration={"hnsw": dict(HNSW_CONFIG)},
                                            embedding_function=ef)
        return self.kb_class(self.dir, col)

    def rename(self, old: str, new: str) -> KnowledgeBase:
        """Change a display name (the collection name stays). Raises KeyError / ValueError."""
        kb = self.open(old, create=False, recover=False)
        new = (new or "").strip()
        with self._names_lock():
            if not new or new in self.collections():
                raise ValueError(f"cannot rename to {new!r}: empty or already used")
            meta = dict(kb.collection.metadata or {}, display_name=new)
            kb.collection.modify(metadata=meta)
        return self.kb_class(self.dir, self.client.get_collection(kb.collection.name))

    def delete(self, name: str) -> None:
        """Delete a knowledge base, its chunks and side folder. Raises KeyError when absent."""
        kb = self.open(name, create=False, recover=False)
        with kb.writing():
            self.client.delete_collection(kb.collection.name)
            shutil.rmtree(kb.dir, ignore_errors=True)
