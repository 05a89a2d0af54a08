"""CLI handlers for ``ingest``, ``search`` and ``kb list|docs|remove|reembed|check|repair`` (wired in main.py).

Each handler is ``cmd_<name>(args, settings) -> exit code``.
"""
from __future__ import annotations

import json
import sys

_MARK = {"added": "+", "updated": "~", "skipped": "=", "failed": "!"}


def _service(settings):
    from kb.service import KnowledgeBaseService

    return KnowledgeBaseService(settings)


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_ingest(args, settings) -> int:
    """Ingest files/folders with a tqdm bar; one line per file, then a summary.

    Returns:
        0, or 1 when every file failed (2 for a usage error such as a model mismatch).
    """
    from tqdm import tqdm

    svc = _service(settings)
    bar = tqdm(total=1.0, unit="file", dynamic_ncols=True, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} files [{elapsed}<{remaining}]")

    def progress(done, total, message):
        bar.total = max(total, 1)
        bar.n = min(done, bar.total)
        bar.set_description_str(message[:40], refresh=False)
        bar.refresh()

    def result(r):
        line = f"{_MARK.get(r.status, '?')} {r.status:8s} {r.path}"
        bar.write(line + (f": {r.message}" if r.message else ""))

    svc.on_wait = bar.write
    try:
        results = svc.ingest(args.paths, args.kb, on_progress=progress, on_result=result)
    except (ValueError, KeyError, TimeoutError) as e:
        bar.close()
        return _err(str(e).strip("'\""))
    bar.close()
    counts = {s: sum(r.status == s for r in results) for s in _MARK}
    chunks = sum(r.chunks for r in results if r.status in ("added", "updated"))
    print(f"{len(results)} file(s): {counts['added']} added, {counts['updated']} updated, "
          f"{counts['skipped']} unchanged, {counts['failed']} failed; {chunks} chunks written "
          f"to knowledge base {args.kb or settings.default_kb!r}")
    return 1 if results and counts["failed"] == len(results) else 0


def cmd_search(args, settings, svc=None) -> int:
    """Print the top-k hits (or a JSON list with --json); ``svc``: a warm KnowledgeBaseService
    (``main.py serve``), else one is built."""
    svc = svc or _service(settings)
    query = " ".join(args.query)
    from kb.embeddings import EmbedderError

    try:
        hits = svc.search(query, args.kb, args.k)
        rel = svc.relevance(query, hits, args.kb) if hits else None
    except (ValueError, KeyError, RuntimeError, EmbedderError) as e:  # RuntimeError: the embedder cannot load
        return _err(str(e).strip("'\""))
    if args.json:
        print(json.dumps([h.to_json() for h in hits], ensure_ascii=False, indent=1))
        return 0
    if not hits:
        print("no hits (is the knowledge base empty? `python main.py kb list`)")
        return 0
    if not rel.relevant:
        sim = f", best cosine {rel.similarity:.2f} < {rel.vector_floor:.2f}" if rel.similarity is not None else ""
        print(f"(an answer would be refused: query-term coverage {rel.coverage:.2f}{sim}; weak hits follow)")
    for h in hits:
        where = f"p.{h.page}" if h.page else "-"
        sim = f" sim={h.similarity:.2f}" if h.similarity is not None else ""
        print(f"[{h.rank}] {h.score:.4f}{sim}  {h.source} {where}" + (f"  § {h.section}" if h.section else ""))
        print("    " + " ".join(h.text.split())[:300])
    return 0


def cmd_kb_list(args, settings) -> int:
    """Knowledge bases with document and chunk counts."""
    kbs = _service(settings).list_kbs()
    if not kbs:
        print("no knowledge bases yet; add files with `python main.py ingest PATH`")
    for k in kbs:
        print(f"{k.name}\t{k.documents} documents\t{k.chunks} chunks\t({k.collection})")
    return 0


def cmd_kb_docs(args, settings) -> int:
    """Documents of a knowledge base (name, pages, chunks, sha256 prefix, path)."""
    try:
        docs = _service(settings).documents(args.kb)
    except KeyError as e:
        return _err(str(e).strip("'\""))
    if args.json:
        print(json.dumps([d.to_json() for d in docs], ensure_ascii=False, indent=1))
        return 0
    for d in docs:
        ocr = f", {d.ocr_pages} OCR" if d.ocr_pages else ""
        print(f"{d.name}\t{d.pages} pages{ocr}\t{d.chunks} chunks\t{d.sha256[:10]}\t{d.source}")
    if not docs:
        print("no documents")
    return 0


def cmd_kb_remove(args, settings) -> int:
    """Remove one document (path, file name or sha256 prefix)."""
    svc = _service(settings)
    svc.on_wait = lambda m: print(m, file=sys.stderr, flush=True)
    try:
        d = svc.remove(args.doc, args.kb)
    except (KeyError, TimeoutError) as e:
        return _err(str(e).strip("'\""))
    print(f"removed {d.source} ({d.chunks} chunks)")
    return 0


def cmd_kb_reembed(args, settings) -> int:
    """Re-embed a knowledge base with the current embedding_model (tqdm progress)."""
    from tqdm import tqdm

    svc = _service(settings)
    bar = tqdm(total=1, unit="chunk", dynamic_ncols=True, file=sys.stderr, desc="re-embed")

    def progress(done, total, message):
        bar.total, bar.n = max(total, 1), done
        bar.refresh()
    try:
        info = svc.reembed(args.kb, on_progress=progress)
    except (KeyError, ValueError, RuntimeError, InterruptedError) as e:
        bar.close()
        return _err(str(e).strip("'\""))
    except KeyboardInterrupt:
        bar.close()
        print("stopped; the knowledge base keeps its old vectors", file=sys.stderr)
        return 130
    bar.close()
    print(f"re-embedded {info.chunks} chunks of {info.documents} documents in {info.name!r} "
          f"with {svc.embedder_name}")
    return 0


def cmd_kb_check(args, settings) -> int:
    """Compare manifest, chromadb rows and BM25 tokens; exit 1 when something is inconsistent."""
    try:
        reports = _service(settings).check(args.kb)
    except KeyError as e:
        return _err(str(e).strip("'\""))
    if args.json:
        print(json.dumps([{**r.__dict__, "ok": r.ok} for r in reports], ensure_ascii=False, indent=1))
    else:
        for r in reports:
            print("\n".join(r.lines()))
        if not reports:
            print("no knowledge bases yet")
        if not all(r.ok for r in reports):
            print("run `python main.py kb repair" + (f" --kb {args.kb}" if args.kb else "") + "` to fix it")
    return 0 if all(r.ok for r in reports) else 1


def cmd_kb_repair(args, settings) -> int:
    """Repair inconsistent knowledge bases (with progress); exit 1 when a file could not be restored."""
    svc = _service(settings)
    svc.on_wait = lambda m: print(m, file=sys.stderr, flush=True)
    last = [""]

    def progress(done, total, message):
        if message != last[0] and not message.startswith("embedding"):
            last[0] = message
            print(f"  {message}", file=sys.stderr, flush=True)

    def result(r):
        print(f"{_MARK.get(r.status, '?')} {r.status:8s} {r.path}" + (f": {r.message}" if r.message else ""))

    try:
        done = svc.repair(args.kb, on_progress=progress, on_result=result)
    except (KeyError, TimeoutError) as e:
        return _err(str(e).strip("'\""))
    failed = 0
    for rep, results in done:
        if rep.ok:
            print(f"«{rep.kb}»: consistent, nothing to repair")
            continue
        print("found: " + " | ".join(rep.lines()))
        failed += sum(r.status == "failed" for r in results)
        after = svc.check(rep.kb)[0]
        print("now: " + " | ".join(after.lines()))
    return 1 if failed else 0


def cmd_watch(args, settings) -> int:
    """Keep a folder in sync with a knowledge base until Ctrl-C (kb/folder_sync.py): one line
    per file added, updated, removed or failed; progress of long ingests on stderr.

    Returns:
        0 after Ctrl-C (or SIGTERM), 2 when the folder does not exist.
    """
    import signal
    import threading

    from kb.folder_sync import FolderSync

    svc = _service(settings)
    svc.on_wait = lambda m: print(m, file=sys.stderr, flush=True)
    done = threading.Event()

    def show(ev) -> None:
        if ev.kind == "result" and ev.result.status != "skipped":
            r = ev.result
            print(f"{_MARK.get(r.status, '?')} {r.status:8s} {r.path}" + (f": {r.message}" if r.message else ""), flush=True)
        elif ev.kind == "removed":
            print(f"- removed  {ev.path}", flush=True)
        elif ev.kind == "error":
            print(f"error: {ev.message}", file=sys.stderr, flush=True)
        elif ev.kind == "progress" and ev.total > 1:
            print(f"  {ev.done:.1f}/{ev.total:.0f} files: {ev.message}", file=sys.stderr, flush=True)
        elif ev.kind == "started":
            print(f"watching {ev.path} for knowledge base {args.kb or settings.default_kb!r} "
                  f"({ev.count} file(s) ingested at start); Ctrl-C stops", flush=True)
        elif ev.kind == "stopped":
            done.set()

    quiet = args.quiet_s if args.quiet_s is not None else float(getattr(settings, "watch_quiet_s", 2.0))
    try:
        sync = FolderSync(svc, args.folder, args.kb, on_event=show, quiet_s=quiet).start()
    except FileNotFoundError as e:
        return _err(str(e))
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    sync.stop(timeout=60)
    print(f"stopped watching {sync.folder}", flush=True)
    return 0
