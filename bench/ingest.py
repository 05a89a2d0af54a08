"""Ingest throughput: TQT-s end to end vs the embedder alone vs a LangChain-style pipeline.

    python bench/ingest.py DIR_OR_FILE... [--embedder minilm|tiny|PATH] [--embedding-backend auto|torch|onnx|onnx-fp32|openvino]
                           [--as-no-bf16] [--json]

Three measurements on the same files, in one process, each after its model is loaded:

1. **tqts**: ``KnowledgeBaseService.ingest`` into a temp data dir (load, OCR if any, chunk,
   embed, store in chromadb, BM25 index) — pages/s and chunks/s.
2. **embedder only**: the KB's own embedder (``Embedder.encode_documents``: same model, batch
   size and precision) on exactly the chunks TQT-s stored: the upper bound for TQT-s's ingest.
3. **langchain-style**: PyMuPDF page loader (one document per page, as LangChain's
   ``PyMuPDFLoader``) + ``langchain_text_splitters.RecursiveCharacterTextSplitter`` (same
   chunk size/overlap) + chromadb with the same embedder (all chunks embedded, then added in
   batches, as ``Chroma.add_texts``). DOCX: python-docx paragraphs (``Docx2txtLoader`` style).
   The model is loaded as LangChain's ``HuggingFaceEmbeddings`` does: ``SentenceTransformer(name)``
   with its defaults (float32 on CPU).

Ratios: tqts chunks/s over the bound (same chunks), tqts pages/s over the baseline (same pages).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Stopwatch,
    add_json_flag,
    emit,
    load_settings,
    log,
    peak_rss_mb,
    ratio,
    resolve_embedder,
    table,
    temp_home,
)

SUFFIXES = {".pdf", ".docx", ".txt", ".md"}


def list_files(paths: list[str]) -> list[Path]:
    """Files under ``paths`` (recursive) with a supported suffix, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in SUFFIXES]
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"error: {p} does not exist; give files or folders to ingest")
    return out


def write_warmup_pdf(path: Path) -> Path:
    """A one-page PDF used to load the KB's models before timing."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Warm-up page. 预热页面。", fontname="china-s")
    doc.save(path)
    return path


def stored_chunks(settings, collection: str) -> list[str]:
    """The chunk texts TQT-s stored in ``collection`` (read straight from its chromadb client)."""
    from kb.store import client_for

    return client_for(settings.store_dir).get_collection(collection).get(include=["documents"])["documents"]


def run_tqts(settings, files: list[Path], workdir: Path) -> dict:
    """Ingest ``files`` with the KB service (after a warm-up ingest); return pages, chunks, seconds."""
    from kb.service import KnowledgeBaseService

    svc = KnowledgeBaseService(settings)
    with Stopwatch() as load:
        svc.ingest([write_warmup_pdf(workdir / "warmup.pdf")], kb="warmup")
    log(f"tqts: models loaded + warm-up in {load.seconds:.1f}s; ingesting {len(files)} files")
    with Stopwatch() as sw:
        results = svc.ingest([str(f) for f in files], kb="bench")
    failed = [r for r in results if not r.ok]
    for r in failed:
        log(f"tqts: {r.path}: {r.message}")
    info = next(k for k in svc.list_kbs() if k.name == "bench")
    return {"seconds": sw.seconds, "cpu_s": sw.cpu_seconds, "pages": sum(r.pages for r in results),
            "chunks": sum(r.chunks for r in results), "failed": len(failed),
            "collection": info.collection, "warmup_s": load.seconds}, svc.embedder


def run_bound(embedder, texts: list[str]) -> dict:
    """Embed ``texts`` with the KB's own embedder, nothing else: the bound for these chunks."""
    with Stopwatch() as sw:
        embedder.encode_documents(texts)
    return {"seconds": sw.seconds, "cpu_s": sw.cpu_seconds, "chunks": len(texts)}


def load_pages(path: Path) -> list[str]:
    """LangChain-loader-style text: one string per PDF page, one per DOCX/text file."""
    if path.suffix.lower() == ".pdf":
        import pymupdf

        with pymupdf.open(path) as doc:
            return [page.get_text() for page in doc]
    if path.suffix.lower() == ".docx":
        import docx

        return ["\n\n".join(p.text for p in docx.Document(str(path)).paragraphs)]
    return [path.read_text(encoding="utf-8", errors="replace")]


def run_baseline(model, files: list[Path], settings, workdir: Path) -> dict:
    """PyMuPDF pages -> RecursiveCharacterTextSplitter -> embed -> chromadb, timed end to end."""
    import chromadb
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=settings.chunk_size,
                                              chunk_overlap=settings.chunk_overlap)
    client = chromadb.PersistentClient(path=str(workdir / "baseline-chroma"))
    col = client.create_collection("baseline", metadata={"hnsw:space": "cosine"})
    with Stopwatch() as sw:
        texts, metas, pages = [], [], 0
        for f in files:
            for i, page in enumerate(load_pages(f)):
                pages += 1
                for chunk in splitter.split_text(page):
                    texts.append(chunk)
                    metas.append({"source": str(f), "page": i + 1})
        vecs = model.encode(texts, batch_size=settings.embedding_batch_size,
                            normalize_embeddings=True, show_progress_bar=False)
        step = client.get_max_batch_size()
        for s in range(0, len(texts), step):
            col.add(ids=[str(i) for i in range(s, min(s + step, len(texts)))], documents=texts[s:s + step],
                    embeddings=vecs[s:s + step].tolist(), metadatas=metas[s:s + step])
    return {"seconds": sw.seconds, "cpu_s": sw.cpu_seconds, "pages": pages, "chunks": len(texts)}


def measure(paths: list[str], embedder: str | None, dtype: str | None = None, backend: str | None = None) -> dict:
    """Run the three measurements; return the result dict (see module docstring)."""
    from importlib.metadata import version

    from sentence_transformers import SentenceTransformer

    files = list_files(paths)
    if not files:
        raise SystemExit(f"error: no {', '.join(sorted(SUFFIXES))} files under {' '.join(paths)}")
    with temp_home() as home:
        settings = load_settings(home, embedding_model=resolve_embedder(embedder, home), embedding_dtype=dtype,
                                 embedding_backend=backend)
        tq, embedder = run_tqts(settings, files, home)
        texts = stored_chunks(settings, tq["collection"])
        log(f"embedder only: {len(texts)} chunks")
        bound = run_bound(embedder, texts)
        log("langchain-style baseline")
        model = SentenceTransformer(settings.embedding_model, device="cpu")
        model.encode(["warm-up"])
        base = run_baseline(model, files, settings, home)
    for r in (tq, bound, base):
        r["pages_per_s"] = ratio(r.get("pages"), r["seconds"])
        r["chunks_per_s"] = ratio(r["chunks"], r["seconds"])
    return {"files": [str(f) for f in files], "embedder": settings.embedding_model,
            "chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap,
            "langchain_text_splitters": version("langchain-text-splitters"), "tqts_embedding_dtype": tqts_precision(embedder),
            "tqts": tq, "embedder_only": bound, "langchain_style": base,
            "ratio_vs_bound": ratio(tq["chunks_per_s"], bound["chunks_per_s"]),
            "ratio_vs_baseline": ratio(tq["pages_per_s"], base["pages_per_s"]),
            "peak_rss_mb": peak_rss_mb()}


def tqts_precision(embedder) -> str:
    """What TQT-s's embedder ran: "onnx int8", "onnx-fp32 float32", "openvino int8" or "torch <dtype>"."""
    if getattr(embedder, "backend", "torch") in ("onnx", "openvino"):
        return f"{embedder.backend} int8"
    if getattr(embedder, "backend", "torch") == "onnx-fp32":
        return "onnx-fp32 float32"
    return "torch " + str(embedder.torch_dtype("cpu")).replace("torch.", "")


def no_bf16_flags() -> str:
    """This CPU's flags without the native-bf16 ones: for ``--as-no-bf16``."""
    from kb.onnx_embedder import BF16_FLAGS, cpu_flags

    return " ".join(sorted(f for f in cpu_flags() if f not in BF16_FLAGS and not f.startswith("amx")))


def render(r: dict) -> str:
    names = {"tqts": "tqts ingest (end to end)", "embedder_only": "embedder only (same chunks)",
             "langchain_style": "langchain-style baseline"}
    rows = [(label, r[k].get("pages"), r[k]["chunks"], r[k]["seconds"], r[k].get("cpu_s"), r[k].get("pages_per_s"),
             r[k]["chunks_per_s"]) for k, label in names.items()]
    out = table(["pipeline", "pages", "chunks", "seconds", "CPU s", "pages/s", "chunks/s"], rows)
    out += (f"\n\ntqts / embedder-only (chunks/s): {r['ratio_vs_bound']:.2f}x  (target >= 0.9x)"
            f"\ntqts / langchain-style (pages/s): {r['ratio_vs_baseline']:.2f}x  (target >= 1.5x)"
            f"\nembedder: {r['embedder']}; chunk {r['chunk_size']} chars, overlap {r['chunk_overlap']}; "
            f"langchain-text-splitters {r['langchain_text_splitters']}; {len(r['files'])} files; "
            f"tqts embedder {r['tqts_embedding_dtype']} (baseline: torch float32, LangChain's default); "
            f"peak RSS {r['peak_rss_mb']:.0f} MiB")
    return out


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    p.add_argument("--embedder", help="minilm | tiny | folder or hub id (default: settings embedding_model)")
    p.add_argument("--embedding-dtype", choices=["auto", "float32", "bfloat16"],
                   help="TQT-s's embedder (and so the bound) in this dtype (default: settings embedding_dtype, "
                        "auto = bfloat16 where the CPU computes it natively); the baseline stays float32")
    p.add_argument("--embedding-backend", choices=["auto", "torch", "onnx", "onnx-fp32", "openvino"],
                   help="TQT-s's embedder backend (default: settings embedding_backend, auto = float32 ONNX "
                        "on CPUs without native bf16)")
    p.add_argument("--as-no-bf16", action="store_true",
                   help="make TQT-s's choices as on a CPU without bf16 (TQTS_CPU_FLAGS = this CPU's flags "
                        "minus avx512_bf16/amx*; torch dtype float32): a laptop's path on this machine")
    args = p.parse_args(argv)
    dtype = args.embedding_dtype
    if args.as_no_bf16:
        import os

        os.environ["TQTS_CPU_FLAGS"] = no_bf16_flags()
        dtype = dtype or "float32"
    r = measure(args.paths, args.embedder, dtype, args.embedding_backend)
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
