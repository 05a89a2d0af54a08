"""Chroma server mode: knowledge bases in a shared ``chroma run`` server (setting ``chroma_url``).

Several desktops (data dirs) use one server; each talks to it with chromadb's ``HttpClient``
and writes nothing to a local chroma folder. What the embedded mode keeps in files beside the
store lives in the server, where every client sees it:

- the chunks' BM25 tokens: in each chunk row (metadata ``bm25``, space-separated), written by
  the same ``add`` as the chunk; every client rebuilds its own BM25 index from them (kept in a
  local cache, ``<store>/server/<host-port>/kbs/<collection>/bm25``, per manifest generation);
- the manifest, pending markers and write leases: records of the small collection
  :data:`META` (``manifest:<collection>``, ``pending:<collection>:<name>``,
  ``lease:<collection>:<epoch>``), each a JSON document plus ``kind`` / ``kb`` metadata.

Crash safety is the embedded mode's (kb/store.py): chunks go in under a fresh version named
by a pending marker, then the manifest record is replaced by one ``upsert`` (atomic in the
server), then the old version is deleted; reads keep only versions the manifest names.

Write lock across clients (a file lock cannot span machines): a **lease** per knowledge base.
Taking it adds ``lease:<collection>:<epoch + 1>`` with ``add``; chromadb ignores an ``add`` of
an id that exists (checked with chromadb 1.5.9), so of several clients racing for the same epoch
the first ``add`` wins and each reads back whose it is: an add-if-absent, the compare-and-set
this needs. The holder renews it (a ``beat`` counter) every :data:`LEASE_TTL_S` / 4 seconds and
marks it released at the end. A waiter takes over (epoch + 1 again) when the lease is released,
or when it has seen no renewal for :data:`LEASE_TTL_S` on its own clock (the holder crashed or
lost the server; no clock is compared across machines), or when the holder is an earlier lease
of this very process. Before replacing the manifest a writer checks that its epoch is still the
latest (fencing); a holder stalled for longer than the TTL therefore fails its write (StoreBusy)
instead of overwriting a newer writer's manifest. One window remains: a stall between that check
and the upsert itself (one request) longer than the TTL.

The server keeps one vector index per collection, so the embedded mode's stale-index handling
(``index.writer``, reopening the client) is not needed: reads take no lock here.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from kb.store import LOCK_TIMEOUT, KnowledgeBase, Store, StoreBusy, _copy_docs

log = logging.getLogger(__name__)

#: the collection of manifests, pending markers and leases (no "tqts" metadata: not a knowledge base)
META = "tqts-meta"
#: seconds without a renewal after which a waiter takes a lease over (the holder renews every TTL/4)
LEASE_TTL_S = 30.0
#: seconds between a waiter's looks at a held lease
POLL_S = 0.2
#: this process, as lease holder
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_CLIENTS: dict[str, object] = {}
_LEASES: dict[tuple[str, str], ServerLease] = {}
_TOKENS: dict[tuple[str, str], dict] = {}     # (collection, version) -> tokens_of(); versions never change
_GUARD = threading.Lock()


class ServerUnavailable(ConnectionError):
    """The Chroma server did not answer (not started, stopped, or restarted mid-request)."""


def _unreachable(url: str, e: Exception) -> ServerUnavailable:
    return ServerUnavailable(f"the Chroma server at {url} did not answer ({type(e).__name__}: {e}); start it "
                             "(chroma run --path DIR --host 127.0.0.1 --port 8000) or clear chroma_url to use the "
                             "local store, then try again")


def is_connection_error(e: BaseException) -> bool:
    """True for the errors of a server that is down or went away mid-request."""
    import httpx

    return isinstance(e, (httpx.TransportError, ServerUnavailable, ConnectionError))


def server_client(url: str):
    """The chromadb ``HttpClient`` for ``url`` (``http://host:port``; one per process), telemetry off.

    Raises:
        ServerUnavailable: no server answers at ``url``.
        ValueError: ``url`` is not ``http(s)://host[:port]``.
    """
    import chromadb
    from chromadb.config import Settings

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"chroma_url {url!r} is not http://HOST:PORT (e.g. http://127.0.0.1:8000); fix the setting")
    with _GUARD:
        if url not in _CLIENTS:
            try:
                _CLIENTS[url] = chromadb.HttpClient(host=parts.hostname, port=parts.port or 8000,
                                                    ssl=parts.scheme == "https",
                                                    settings=Settings(anonymized_telemetry=False))
            except Exception as e:  # noqa: BLE001  (chromadb wraps httpx errors in ValueError here)
                raise _unreachable(url, e) from None
        return _CLIENTS[url]


def _reachable(method):
    """Turn a lost connection in a :class:`Meta` call into :class:`ServerUnavailable`."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except ServerUnavailable:
            raise
        except Exception as e:
            if is_connection_error(e):
                raise _unreachable(self.url, e) from None
            raise
    return call


class Meta:
    """The records of :data:`META`: id -> (JSON document, metadata with ``kind`` and ``kb``).
    Every method raises :class:`ServerUnavailable` when the server does not answer."""

    def __init__(self, client, url: str = ""):
        self.url = url
        try:
            self.col = client.get_or_create_collection(META, metadata={"tqts_meta": 1}, embedding_function=None)
        except Exception as e:
            if is_connection_error(e):
                raise _unreachable(url, e) from None
            raise

    @_reachable
    def put(self, rid: str, kind: str, kb: str, doc, add: bool = False, **meta) -> None:
        """Upsert a record (atomic in the server); ``add``: only when ``rid`` is absent."""
        write = self.col.add if add else self.col.upsert
        write(ids=[rid], embeddings=[[1.0]], documents=[json.dumps(doc, ensure_ascii=False)],
              metadatas=[{"kind": kind, "kb": kb, **meta}])

    @_reachable
    def get(self, rid: str) -> tuple[object, dict] | None:
        got = self.col.get(ids=[rid], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        return json.loads(got["documents"][0] or "null"), got["metadatas"][0] or {}

    @_reachable
    def find(self, kind: str, kb: str) -> list[tuple[str, object, dict]]:
        """``(id, document, metadata)`` of every record of a kind for a collection, by id."""
        got = self.col.get(where={"$and": [{"kind": kind}, {"kb": kb}]}, include=["documents", "metadatas"])
        rows = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        return sorted((i, json.loads(d or "null"), m or {}) for i, d, m in rows)

    @_reachable
    def update(self, rid: str, **meta) -> None:
        self.col.update(ids=[rid], metadatas=[meta])

    @_reachable
    def delete(self, ids: list[str] | None = None, kb: str | None = None) -> None:
        if ids:
            self.col.delete(ids=ids)
        if kb:
            self.col.delete(where={"kb": kb})


class ServerLease:
    """A write lock shared by every client of the server (see module docstring), with the
    interface kb.store uses of ``filelock.FileLock``: ``acquire(timeout)`` (raises
    ``filelock.Timeout``), ``release()``, ``lock_counter``; reentrant in one thread, exclusive
    across threads. A daemon thread renews it while held."""

    def __init__(self, meta: Meta, key: str):
        self.meta, self.key = meta, key
        self._local = threading.RLock()
        self.lock_counter = 0
        self.epoch: int | None = None
        self._stop: threading.Event | None = None
        self._seen: dict[int, tuple[int, float]] = {}   # epoch -> (beat, when first seen at that beat)

    def acquire(self, timeout: float = LOCK_TIMEOUT) -> None:
        from filelock import Timeout

        if not (self._local.acquire(True, timeout) if timeout > 0 else self._local.acquire(False)):
            raise Timeout(self.key)
        if self.lock_counter:
            self.lock_counter += 1
            return
        end = time.monotonic() + max(timeout, 0.0)
        try:
            while not self._take():
                if time.monotonic() >= end:
                    raise Timeout(self.key)
                time.sleep(min(POLL_S, max(end - time.monotonic(), 0.0)))
        except BaseException:
            self._local.release()
            raise
        self.lock_counter = 1

    def _take(self) -> bool:
        """One attempt: True when this process now holds the lease."""
        leases = self.meta.find("lease", self.key)
        latest = max(leases, key=lambda r: r[2].get("epoch", 0)) if leases else None
        if latest is not None and not self._free(latest[2]):
            return False
        epoch = (latest[2].get("epoch", 0) if latest else 0) + 1
        rid = f"lease:{self.key}:{epoch}"
        self.meta.put(rid, "lease", self.key, None, add=True, epoch=epoch, holder=HOLDER, beat=0, released=False)
        got = self.meta.get(rid)
        if got is None or got[1].get("holder") != HOLDER:
            return False                # another client's add of this epoch came first
        old = [r[0] for r in leases if r[0] != rid]
        if old:
            self.meta.delete(ids=old)
        self.epoch = epoch
        self._stop = threading.Event()
        threading.Thread(target=self._renew, args=(rid, self._stop), daemon=True, name=f"lease-{self.key}").start()
        return True

    def _free(self, m: dict) -> bool:
        """Is the latest lease record ``m`` free to take over?"""
        if m.get("released") or m.get("holder") == HOLDER:   # ours: left by an earlier failed release
            return True
        epoch, beat = m.get("epoch", 0), m.get("beat", 0)
        seen = self._seen.get(epoch)
        if seen is None or seen[0] != beat:
            self._seen = {epoch: (beat, time.monotonic())}
            return False
        return time.monotonic() - seen[1] > LEASE_TTL_S

    def _renew(self, rid: str, stop: threading.Event) -> None:
        beat = 0
        while not stop.wait(LEASE_TTL_S / 4):
            beat += 1
            try:
                self.meta.update(rid, beat=beat)
            except Exception as e:  # noqa: BLE001  (server down: the lease lapses, fencing stops our writes)
                log.warning("could not renew the write lease %s: %s", rid, e)

    def still_held(self) -> bool:
        """True when this process's epoch is still the latest lease (checked before a manifest write)."""
        leases = self.meta.find("lease", self.key)
        return bool(leases) and max(r[2].get("epoch", 0) for r in leases) == self.epoch and \
            any(r[2].get("epoch") == self.epoch and r[2].get("holder") == HOLDER for r in leases)

    def release(self) -> None:
        self.lock_counter -= 1
        if self.lock_counter == 0:
            if self._stop is not None:
                self._stop.set()
            try:
                self.meta.update(f"lease:{self.key}:{self.epoch}", released=True)
            except Exception as e:  # noqa: BLE001  (server gone: the next take of this process ignores it)
                log.warning("could not release the write lease of %s: %s", self.key, e)
            self.epoch = self._stop = None
        self._local.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lease_for(meta: Meta, key: str) -> ServerLease:
    """One :class:`ServerLease` per process and key."""
    with _GUARD:
        k = (id(meta.col), key)
        if k not in _LEASES:
            _LEASES[k] = ServerLease(meta, key)
        return _LEASES[k]


class ServerKnowledgeBase(KnowledgeBase):
    """A knowledge base in a Chroma server (see module docstring); ``store_dir`` is the local
    cache folder of this client (BM25 indexes, relevance calibration)."""

    TOKENS_IN_ROWS = True

    def __init__(self, store_dir: Path, collection, meta: Meta, url: str = ""):
        self.meta, self.url = meta, url
        super().__init__(store_dir, collection)

    @property
    def _key(self) -> str:
        return self.collection.name

    def _file_lock(self):
        return lease_for(self.meta, self._key)

    def _sync_locked(self) -> None:
        """Nothing to do: the server holds the one vector index of the collection."""

    def refresh(self, every: float = 0.0, force: bool = False) -> bool:
        return False

    def manifest(self) -> dict:
        got = self.meta.get(f"manifest:{self._key}")
        return _copy_docs(got[0]) if got and got[0] else {"generation": 0, "docs": {}}

    def _write_manifest(self, m: dict) -> None:
        lease = self._file_lock()
        if not lease.still_held():
            raise StoreBusy(f"the write lease of «{self.name}» lapsed (no renewal for {LEASE_TTL_S:g} s) and another "
                            "client took it; nothing of this write became visible; try again")
        self.meta.put(f"manifest:{self._key}", "manifest", self._key, m, generation=m.get("generation", 0))

    def _write_marker(self, name: str, info: dict) -> None:
        self.meta.put(f"pending:{self._key}:{name}", "pending", self._key, info)

    def _markers(self) -> list[tuple[str, dict]]:
        prefix = f"pending:{self._key}:"
        return [(rid.removeprefix(prefix), info or {}) for rid, info, _ in self.meta.find("pending", self._key)]

    def _drop_marker(self, name: str) -> None:
        self.meta.delete(ids=[f"pending:{self._key}:{name}"])

    def _has_markers(self) -> bool:
        return bool(self._markers())

    def _save_tokens(self, version: str, ids: list[str], tokens: list[list[str]]) -> None:
        for i in range(0, len(ids), self.max_batch):
            self.collection.update(ids=ids[i:i + self.max_batch],
                                   metadatas=[{"bm25": " ".join(t)} for t in tokens[i:i + self.max_batch]])
        _TOKENS.pop((self._key, version), None)

    def _drop_tokens(self, version: str) -> None:
        _TOKENS.pop((self._key, version), None)       # the tokens went with the rows

    def token_versions(self) -> list[str]:
        return []                                   # no tokens without their rows here

    def tokens_of(self, version: str) -> dict:
        """``{"ids", "tokens"}`` of a version, read from its rows; the first miss fetches every
        current version not cached yet in one paged read (a new client's first BM25 build).

        Raises:
            ValueError: the version has no rows, or rows without tokens.
        """
        key = (self._key, version)
        if key not in _TOKENS:
            want = {version} | {v for v in self.current_versions() if (self._key, v) not in _TOKENS}
            self._fetch_tokens(sorted(want))
        if key not in _TOKENS:
            raise ValueError(f"no BM25 tokens stored for version {version}")
        return _TOKENS[key]

    def _fetch_tokens(self, versions: list[str]) -> None:
        rows: dict[str, list] = {}
        for i in range(0, len(versions), 100):
            offset, page = 0, 5000
            while True:
                got = self.collection.get(where={"version": {"$in": versions[i:i + 100]}}, include=["metadatas"],
                                          limit=page, offset=offset)
                for cid, m in zip(got["ids"], got["metadatas"], strict=True):
                    rows.setdefault(m.get("version", ""), []).append((m.get("chunk_index", 0), cid, m.get("bm25")))
                offset += len(got["ids"])
                if len(got["ids"]) < page:
                    break
        for v, rs in rows.items():
            if all(t is not None for _, _, t in rs):
                rs.sort()
                _TOKENS[(self._key, v)] = {"ids": [c for _, c, _ in rs], "tokens": [t.split() for _, _, t in rs]}

    def get(self, ids: list[str], *, embeddings: bool = False) -> dict[str, dict]:
        if not ids:
            return {}
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        got = self.collection.get(ids=list(ids), include=include)
        out = {}
        for i, cid in enumerate(got["ids"]):
            out[cid] = {"text": got["documents"][i], "meta": got["metadatas"][i]}
            if embeddings:
                import numpy as np

                out[cid]["embedding"] = np.asarray(got["embeddings"][i], dtype=np.float32)
        return out

    def query(self, vector, n: int) -> list[tuple[str, float]]:
        import numpy as np

        m = self.manifest()
        total = sum(d.get("chunks", 0) for d in m["docs"].values())
        if total == 0:
            return []
        res = self.collection.query(query_embeddings=[np.asarray(vector, dtype=np.float32)],
                                    n_results=min(n, total), include=["metadatas", "distances"])
        current = {d["version"] for d in m["docs"].values()}
        return [(cid, 1.0 - float(d)) for cid, d, meta in zip(res["ids"][0], res["distances"][0], res["metadatas"][0],
                                                               strict=True) if meta.get("version") in current]

    def put_documents(self, items: list[tuple], cancel=None) -> list[dict]:
        """:meth:`KnowledgeBase.put_documents`; a lost server raises :class:`ServerUnavailable`."""
        try:
            return super().put_documents(items, cancel)
        except Exception as e:
            if is_connection_error(e) and not isinstance(e, ServerUnavailable):
                raise _unreachable(self.url, e) from None
            raise


def _slug(url: str) -> str:
    p = urlsplit(url)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{p.hostname}-{p.port or 8000}")


class ServerStore(Store):
    """All knowledge bases in the Chroma server at ``url``; ``store_dir`` only holds this
    client's cache (``server/<host-port>/``: BM25 indexes), never a chroma folder.

    Raises:
        ServerUnavailable: no server answers; ValueError: a malformed url.
    """

    def __init__(self, store_dir: Path, embedder=None, url: str = ""):
        self.url = url
        self.dir = Path(store_dir) / "server" / _slug(url)
        self.embedder = embedder
        self.meta = Meta(server_client(url), url)
        self.kb_class = functools.partial(ServerKnowledgeBase, meta=self.meta, url=url)

    @property
    def client(self):
        return server_client(self.url)

    def _names_lock(self):
        return lease_for(self.meta, "names")

    def delete(self, name: str) -> None:
        kb = self.open(name, create=False, recover=False)
        with kb.writing():
            self.client.delete_collection(kb.collection.name)
            shutil.rmtree(kb.dir, ignore_errors=True)
            self.meta.delete(ids=[r[0] for k in ("manifest", "pending") for r in self.meta.find(k, kb.collection.name)])


def open_store(settings, embedder=None) -> Store:
    """The store the settings name: a :class:`ServerStore` when ``chroma_url`` is set, else the
    embedded :class:`kb.store.Store` under ``settings.store_dir``."""
    url = str(getattr(settings, "chroma_url", "") or "").strip()
    if url:
        return ServerStore(settings.store_dir, embedder, url)
    return Store(settings.store_dir, embedder)
