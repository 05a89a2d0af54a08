"""Re-embed a knowledge base with another embedding model, crash-safe.

A chromadb collection has one vector dimension, so the new vectors go into a NEW, hidden
collection (metadata ``tqts: 0, reembed_of: <old collection>``) with a copy of the KB's side
folder (manifest, BM25 tokens and index: chunk ids and versions are kept). Only when every
chunk is stored is the new collection made visible, in one metadata write
(``tqts: 1, replaces: <old collection>``); :meth:`kb.store.Store.collections` hides a collection
that a visible one replaces, so from that write on the new vectors are the KB. Then the old
collection and folder are deleted. A crash before the switch leaves the old KB untouched (the
hidden copy is deleted by the next run); a crash after it leaves an old collection nobody sees,
deleted by :func:`finish` on the next open of the store.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable

from kb.chunking import indexed_text
from kb.embeddings import TqtsEmbeddingFunction
from kb.store import KnowledgeBase, Store, collection_name_for

#: chunks read, embedded and stored per step.
GROUP = 256


def _chunks(kb: KnowledgeBase) -> list[str]:
    """Ids of the current chunks, document by document (from the stored BM25 token files)."""
    ids: list[str] = []
    for entry in kb.manifest()["docs"].values():
        ids += kb.tokens_of(entry["version"])["ids"]
    return ids


def discard_partial(store: Store, collection: str) -> int:
    """Delete hidden copies left by an interrupted re-embed of ``collection``; return how many."""
    n = 0
    for col in store.client.list_collections():
        if (col.metadata or {}).get("reembed_of") == collection and not (col.metadata or {}).get("tqts"):
            store.client.delete_collection(col.name)
            shutil.rmtree(store.dir / "kbs" / col.name, ignore_errors=True)
            n += 1
    return n


def finish(store: Store) -> int:
    """Delete old collections that a visible re-embedded one replaces (after a crash between
    the switch and the delete); return how many."""
    cols = {c.name: c for c in store.client.list_collections()}
    n = 0
    for col in list(cols.values()):
        old = (col.metadata or {}).get("replaces")
        if (col.metadata or {}).get("tqts") and old in cols:
            store.client.delete_collection(old)
            shutil.rmtree(store.dir / "kbs" / old, ignore_errors=True)
            n += 1
    return n


def reembed(store: Store, name: str, embedder, *, headers: bool = True,
            on_progress: Callable[[int, int, str], None] | None = None, cancel=None) -> KnowledgeBase:
    """Embed every current chunk of knowledge base ``name`` with ``embedder`` and make the
    result the knowledge base (see module docstring).

    Args:
        store: the :class:`kb.store.Store`; name: display name.
        embedder: the new :class:`kb.embeddings.Embedder`.
        headers: embed chunks with their contextual header (settings ``chunk_headers``).
        on_progress: ``(chunks done, total, message)`` after each group.
        cancel: threading.Event; when set, the hidden copy is deleted and ``InterruptedError``
            raised (the old vectors stay the knowledge base).

    Returns:
        The re-embedded :class:`kb.store.KnowledgeBase`.

    Raises:
        KeyError: no such knowledge base. InterruptedError: cancelled.
    """
    old = store.open(name, create=False)
    with old.writing():   # the inter-process write lock: no ingest changes the KB while it is copied
        return _reembed_locked(store, old, name, embedder, headers=headers, on_progress=on_progress, cancel=cancel)


def _reembed_locked(store: Store, old: KnowledgeBase, name: str, embedder, *, headers: bool,
                    on_progress, cancel) -> KnowledgeBase:
    """:func:`reembed`'s work, with ``old``'s write lock held."""
    discard_partial(store, old.collection.name)
    ids = _chunks(old)
    meta = dict(old.collection.metadata or {}, embedding_model=embedder.model_name)
    hidden = dict(meta, tqts=0, reembed_of=old.collection.name)
    hidden.pop("replaces", None)
    col = store.client.create_collection(collection_name_for(name), metadata=hidden,
                                         configuration={"hnsw": {"space": "cosine"}},
                                         embedding_function=TqtsEmbeddingFunction(embedder=embedder))
    new_dir = store.dir / "kbs" / col.name
    try:
        shutil.copytree(old.dir, new_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("pending", "*.tmp"))
        new = store.kb_class(store.dir, col)
        for i in range(0, len(ids), GROUP):
            if cancel is not None and cancel.is_set():
                raise InterruptedError("cancelled; the knowledge base keeps its old vectors")
            rows = old.get(ids[i:i + GROUP])
            got = [c for c in ids[i:i + GROUP] if c in rows]
            texts = [rows[c]["text"] for c in got]
            inputs = [indexed_text(rows[c]["meta"].get("source", ""), rows[c]["meta"].get("section", ""), t)
                      if headers else t for c, t in zip(got, texts, strict=True)]
            vecs = embedder.encode_documents(inputs)
            for j in range(0, len(got), new.max_batch):
                col.add(ids=got[j:j + new.max_batch], embeddings=vecs[j:j + new.max_batch],
                        metadatas=[rows[c]["meta"] for c in got[j:j + new.max_batch]],
                        documents=texts[j:j + new.max_batch])
            if on_progress:
                on_progress(min(i + GROUP, len(ids)), len(ids), f"embedding {len(ids)} chunks")
    except BaseException:
        store.client.delete_collection(col.name)
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    col.modify(metadata=dict(meta, tqts=1, replaces=old.collection.name))   # the switch
    finish(store)
    return store.open(name, create=False)
