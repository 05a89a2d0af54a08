"""Memory of the app's services with the answering model loaded: RSS per chat backend.

    python bench/rss.py --model NAME_OR_FOLDER [--home DIR] [--embedder PATH]
                        [--backends transformers,auto] [--as-no-bf16] [--json]

Each backend runs in its own process (clean peak RSS): the services the app builds
(:func:`app.services.build_services`), the embedder loaded by one query, the answering model
loaded by one short greedy answer (8 tokens). Reported: RSS after that (psutil) and the
process's peak RSS (getrusage). ``auto`` is the product default (llama.cpp for a model folder
holding ``model.gguf`` on the CPU); ``transformers`` loads the safetensors. The Tk window itself
is not opened (the bench runs headless): add ~30–40 MiB for Tk and the widgets.
Target (issue 14): ≤ 1.6 GB with the 0.5B model.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_json_flag, emit, log, peak_rss_mb, rss_mb, table  # noqa: E402


def worker(args) -> int:
    """Build the services, load both models, answer once; print one JSON line."""
    import settings as settings_mod
    from app.services import build_services
    from models.backend import GenerationSettings

    s = settings_mod.load(args.home)
    for k, v in (("backend", args.worker), ("model", args.model), ("embedding_model", args.embedder)):
        if v:
            s.set(k, v, persist=False)
    before = rss_mb()
    svc = build_services(s)
    svc.kb.embedder.encode_query("warm-up")
    backend = svc.answers.backend()
    text = backend.complete([{"role": "user", "content": "1+1=?"}],
                            gen=GenerationSettings(max_new_tokens=8, temperature=0.0))
    out = {"backend": args.worker, "chat_backend": type(backend).__name__,
           "embedder_backend": getattr(svc.kb.embedder, "backend", "?"), "rss_start_mb": before,
           "rss_loaded_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(), "answer_head": text[:20]}
    print(json.dumps(out, ensure_ascii=False), flush=True)
    if hasattr(backend, "close"):
        backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--model", required=True)
    p.add_argument("--home")
    p.add_argument("--embedder", help="embedding model folder (default: settings embedding_model)")
    p.add_argument("--backends", default="transformers,auto")
    p.add_argument("--as-no-bf16", action="store_true", help="choices as on a CPU without bf16 (see bench/ingest.py)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.as_no_bf16:
        from bench.ingest import no_bf16_flags

        os.environ["TQTS_CPU_FLAGS"] = no_bf16_flags()
    runs = []
    for kind in [b for b in args.backends.split(",") if b]:
        log(f"{kind}: loading ...")
        cmd = [sys.executable, __file__, "--worker", kind, "--model", args.model] + \
            (["--home", args.home] if args.home else []) + (["--embedder", args.embedder] if args.embedder else [])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0 or not r.stdout.strip():
            runs.append({"backend": kind, "error": (r.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    res = {"model": args.model, "runs": runs, "target_mb": 1600 / 1.048576}
    rows = [(x["backend"], x.get("chat_backend"), x.get("embedder_backend"), x.get("rss_loaded_mb"),
             x.get("peak_rss_mb"), x.get("error", "")) for x in runs]
    text = table(["backend", "chat backend", "embedder", "RSS loaded MiB", "peak RSS MiB", "error"], rows)
    text += f"\n\nmodel {args.model}; target <= 1.6 GB (= {res['target_mb']:.0f} MiB)"
    emit(res, text, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
