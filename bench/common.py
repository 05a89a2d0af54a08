"""Shared helpers for the measurement scripts: timing, percentiles, peak RSS, tables, JSON.

Every script in bench/ prints a plain-text table, or one JSON object with ``--json``.
They measure; they never assert a speed (targets are compared and reported, not enforced).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OFFLINE = Path(os.environ.get("OFFLINE_MODELS_DIR", Path.home() / ".cache" / "offline-models"))
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first on sys.path, not the repo
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb


class Stopwatch:
    """Wall-clock and process CPU seconds of a ``with`` block:
    ``with Stopwatch() as sw: ...; sw.seconds, sw.cpu_seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.seconds = self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start  # all threads of this process


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks
    (numpy's default "linear" method).

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children), in MiB.

    Source: ``getrusage(2)``; ``ru_maxrss`` is KiB on Linux, bytes on macOS.
    """
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    raw = resource.getrusage(who).ru_maxrss
    return raw / (1024 * 1024) if sys.platform == "darwin" else raw / 1024


def rss_mb() -> float:
    """Current resident set size of this process in MiB (psutil)."""
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def machine() -> dict:
    """What the numbers came from: CPU model, cores, memory, load, Python and library versions."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "loadavg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}",
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    info["cpu_flags"] = cpu_flag_summary()
    for mod in ("torch", "chromadb", "sentence_transformers", "llama_cpp", "onnxruntime", "xllamacpp"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional, any import failure just means "absent"
            pass
    return info


#: The CPU features that decide the embedder / LLM fast paths (printed with every bench).
KEY_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flag_summary() -> str:
    """The key CPU flags present, e.g. "avx2 fma avx512f"; "(as TQTS_CPU_FLAGS)" when the product's
    choices were made on forced flags (see :func:`kb.onnx_embedder.cpu_flags`)."""
    real = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                real = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    out = "real: " + (" ".join(f for f in KEY_FLAGS if f in real) or "unknown")
    forced = os.environ.get("TQTS_CPU_FLAGS")
    if forced is not None:
        out += "; product choices made as if: " + (" ".join(f for f in KEY_FLAGS if f in forced.split()) or "none")
    return out


def fmt(value) -> str:
    """A table cell: floats to 3 significant-ish digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A fixed-width text table (GitHub-markdown compatible pipes)."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def add_json_flag(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def emit(result: dict, text: str, as_json: bool) -> None:
    """Print ``result`` as JSON (with the machine added) or ``text`` (the table) plus a machine line."""
    result = {**result, "machine": result.get("machine") or machine()}
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    m = result["machine"]
    print(text)
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB, load {m['loadavg_1m']} "
          f"(1 min), Python {m['python']}, {m['time_utc']}\nCPU flags: {m.get('cpu_flags', '?')}")


def log(msg: str) -> None:
    """Progress notes go to stderr so ``--json`` stdout stays one JSON object."""
    print(msg, file=sys.stderr, flush=True)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b in (None, 0):
        return None
    return a / b


@contextmanager
def temp_home(prefix: str = "tqts-bench-"):
    """A throwaway data dir (deleted on exit); yields its Path."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def in_home(kb_dir: Path | None, run):
    """``run(home)`` in ``kb_dir`` when given (kept between runs), else in a :func:`temp_home`."""
    if kb_dir:
        return run(Path(kb_dir))
    with temp_home() as home:
        return run(home)


def load_settings(home: Path, **overrides):
    """Settings on ``home`` with ``overrides`` applied in memory (settings.yaml untouched).

    Environment ``TQTS_*`` variables still apply underneath the overrides.
    """
    import settings as settings_mod

    s = settings_mod.load(home)
    for k, v in overrides.items():
        if v is not None:
            s.set(k, v, persist=False)
    return s


def resolve_embedder(name: str | None, workdir: Path) -> str | None:
    """Map the ``--embedder`` option to a sentence-transformers folder / hub id.

    ``None`` keeps settings' ``embedding_model``; ``tiny`` builds the random 2-layer BERT of
    tests/tiny.py in ``workdir`` (cheap: for latency runs where embedding quality is moot);
    ``minilm`` is the offline all-MiniLM-L6-v2 folder; anything else is passed through.
    """
    if name in (None, ""):
        return None
    if name == "tiny":
        from tests.tiny import build_tiny_embedder

        return str(build_tiny_embedder(workdir / "tiny-embedder"))
    if name == "minilm":
        return str(OFFLINE / "all-MiniLM-L6-v2")
    return name


class HashEmbedder:
    """A cheap stand-in embedder: feature hashing of character bigrams into ``dim`` buckets
    (CRC32, stable across runs), rows L2-normalised. No model, ~0.1 ms per 500-char chunk.

    For latency runs at 100k chunks on 2 cores, where a real model would take hours to embed
    the corpus: the vectors have the real dimension (384, as MiniLM / bge-small), so the ANN
    lookup costs the same; their quality is irrelevant to latency. Implements what
    ``KnowledgeBaseService(embedder=...)`` needs: ``model_name``, ``dimension``,
    ``encode_documents``, ``encode_query``.
    """

    def __init__(self, dim: int = 384):
        self.dim = dim
        self.model_name = f"bench-hash-bigram-{dim}"

    @property
    def dimension(self) -> int:
        return self.dim

    def encode_documents(self, texts: list[str]):
        """(len(texts), dim) float32, rows L2-normalised."""
        import zlib

        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            t = t.lower()
            idx = [zlib.crc32(t[j:j + 2].encode("utf-8")) % self.dim for j in range(max(len(t) - 1, 1))]
            np.add.at(out[i], idx, 1.0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def encode_query(self, query: str):
        """(dim,) float32."""
        return self.encode_documents([query])[0]
