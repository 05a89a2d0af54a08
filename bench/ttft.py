"""Time to first token of the llama.cpp backend: cold (whole prompt) vs warmed while typing.

    python bench/ttft.py --model NAME|FOLDER|FILE.gguf [--home DIR] [--prompt-tokens 1400]
                         [--threads 1,2] [--repeat 2] [--typing-s 5] [--as-no-bf16] [--json]

The prompt is the product's (models/prompts.py: system prompt + numbered CMRC passages + the
question of bench/generate.py, filled to ``--prompt-tokens`` tokens); each run uses other
passages, so no run reuses another's prefix. For each thread count, one process (TQT-s's LlamaCppBackend, default
settings, greedy, ``--max-new-tokens``) runs, ``--repeat`` times in turn:

- ``cold``: the whole prompt evaluated (``cache_prompt`` off), as without warming;
- ``warm``: what the app does while the user types (app/warm.py): ``backend.warm`` on the
  prompt with the question half typed, to the end; then the whole question is sent;
- ``sent N s after the pause``: the same, but the question is sent ``--typing-s`` seconds after the
  warm began (the warm is cancelled, the request reuses what it prefilled);
- ``other sources``: warmed, then a question whose retrieval returned other passages (the
  warm is useless: only the system prompt is reused).

TTFT = wall time from the request to the first text delta (retrieval is not included: the app
retrieves for the draft and again on send, ~0.1 s each). "evaluated" / "reused" are llama.cpp's
own ``prompt_n`` / ``cache_n`` of the request; prefill and decode tok/s its ``timings``.
"load" is the 1-minute load average when the row was measured (a shared machine: compare rows
of one run, not runs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_json_flag, emit, log, table  # noqa: E402
from bench.generate import QUESTION, _passages, resolve, tokenizer_counter  # noqa: E402

MODES = ("cold", "warm", "sent", "other")
SPAN = 12  # passages a prompt is filled from (a 1.4k-token prompt holds about 4 CMRC passages)


def draft_of(question: str) -> str:
    """The question as typed so far when the user paused: its first half."""
    return question[: max(1, len(question) // 2)]


def rag(count, target: int, start: int, question: str = QUESTION) -> list[dict]:
    """The product's prompt (models/prompts.py) filled up to ``target`` tokens with passages
    ``start .. start + SPAN - 1`` (one that does not fit is skipped, a later one may)."""
    from models import prompts

    system, blocks = prompts.system_prompt(question, think=False), []
    for i, text in enumerate(_passages()[start:start + SPAN], start):
        trial = blocks + [prompts.format_source(len(blocks) + 1, f"cmrc-{i + 1}.pdf", 1, text)]
        if count(system + prompts.user_message(question, trial)) <= target:
            blocks = trial
    if not blocks:
        raise SystemExit(f"no passage fits in {target} tokens: raise --prompt-tokens")
    return [{"role": "system", "content": system}, {"role": "user", "content": prompts.user_message(question, blocks)}]


def prompts_for(count, target: int, run: int, mode: str) -> dict[str, list[dict]]:
    """The prompts of one run of ``mode``: ``final`` (the whole question), ``draft`` (the same
    prompt with half the question), ``other`` (other passages, the whole question). Every run
    and mode draws from its own 2 x SPAN passages, so no prompt shares another's sources."""
    start = (run * len(MODES) + MODES.index(mode)) * 2 * SPAN
    final = rag(count, target, start)
    user = final[1]["content"]
    assert user.endswith(QUESTION)   # models/prompts.py puts the question last
    draft = [final[0], {"role": "user", "content": user[: -len(QUESTION)] + draft_of(QUESTION)}]
    return {"final": final, "draft": draft, "other": rag(count, target, start + SPAN)}


def ask(backend, messages: list[dict], max_new: int, cache: bool = True) -> dict:
    """One greedy request; TTFT (wall) and llama.cpp's timings of it."""
    from models.backend import GenerationSettings

    gen = GenerationSettings(max_new_tokens=max_new, temperature=0.0, top_p=1.0, repetition_penalty=1.0)
    backend.cache_prompt = cache
    t0 = time.perf_counter()
    first = None
    for _ in backend.stream(messages, gen=gen):
        first = first or time.perf_counter()
    backend.cache_prompt = True
    tm = backend.last_timings or {}
    return {"ttft_s": (first or time.perf_counter()) - t0, "evaluated": tm.get("prompt_n"), "reused": tm.get("cache_n"),
            "prompt_tok_s": tm.get("prompt_per_second"), "decode_tok_s": tm.get("predicted_per_second"),
            "load": os.getloadavg()[0]}


def warmed(backend, draft: list[dict], then: list[dict], max_new: int, typing_s: float | None) -> dict:
    """Warm ``draft`` (to the end, or cancelled after ``typing_s``), then ask ``then``."""
    cancel = threading.Event()
    out: dict = {}
    t0 = time.perf_counter()
    worker = threading.Thread(target=lambda: out.update(backend.warm(draft, cancel=cancel) or {}))
    worker.start()
    if typing_s is None:
        worker.join()
    else:
        worker.join(typing_s)
        cancel.set()
    warm_s = time.perf_counter() - t0
    r = ask(backend, then, max_new)
    worker.join()
    r.update(warm_s=warm_s, warm_evaluated=out.get("evaluated"), warm_cancelled=out.get("cancelled"))
    return r


def worker(args) -> int:
    """One thread count: load, then per repeat cold / warm / sent / other; print one JSON line."""
    from models.llamacpp_backend import LlamaCppBackend

    if args.model.endswith(".gguf") and Path(args.model).is_file():
        folder, gguf = None, args.gguf or args.model
    else:
        folder, gguf = resolve(args.model, args.gguf, args.home)
    count = tokenizer_counter(folder, gguf)
    t = time.perf_counter()
    backend = LlamaCppBackend(gguf, context_tokens=4096, threads=args.threads, adapter="")
    load_s = time.perf_counter() - t
    ask(backend, [{"role": "user", "content": "你好"}], 4)  # first-call costs, unrelated prefix
    rows: dict[str, list[dict]] = {m: [] for m in MODES}
    for run in range(args.repeat):
        p = {m: prompts_for(count, args.prompt_tokens, run, m) for m in MODES}
        rows["cold"].append(ask(backend, p["cold"]["final"], args.max_new_tokens, cache=False))
        rows["warm"].append(warmed(backend, p["warm"]["draft"], p["warm"]["final"], args.max_new_tokens, None))
        rows["sent"].append(warmed(backend, p["sent"]["draft"], p["sent"]["final"], args.max_new_tokens, args.typing_s))
        rows["other"].append(warmed(backend, p["other"]["draft"], p["other"]["other"], args.max_new_tokens, None))
        log(f"threads {args.threads} run {run + 1}: " + ", ".join(f"{m} {rows[m][-1]['ttft_s']:.2f} s" for m in MODES))
    backend.close()
    print(json.dumps({"threads": args.threads, "load_s": load_s, "rows": rows,
                      "prompt_tokens": [(c["evaluated"] or 0) + (c["reused"] or 0) for c in rows["cold"]]}), flush=True)
    return 0


def run_worker(threads: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--model", args.model,
           "--prompt-tokens", str(args.prompt_tokens), "--repeat", str(args.repeat), "--typing-s", str(args.typing_s),
           "--max-new-tokens", str(args.max_new_tokens)] + \
        (["--gguf", args.gguf] if args.gguf else []) + (["--home", args.home] if args.home else [])
    log(f"{threads} thread(s): running ...")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    sys.stderr.write(p.stderr[-2000:] if p.returncode else "")
    if p.returncode != 0:
        return {"threads": threads, "error": (p.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def summary(rows: list[dict]) -> dict:
    """Medians of a mode's runs (None when a value is missing)."""
    keys = ("ttft_s", "evaluated", "reused", "prompt_tok_s", "decode_tok_s", "warm_s", "load")
    return {k: statistics.median(v) if (v := [r[k] for r in rows if r.get(k) is not None]) else None for k in keys} | \
        {"ttft_runs": [round(r["ttft_s"], 2) for r in rows]}


def render(r: dict) -> str:
    labels = {"cold": "cold (whole prompt)", "warm": "warm (prefix warmed, question typed after)",
              "sent": f"sent {r['typing_s']:g} s after the pause", "other": "warmed, other sources retrieved"}
    rows = []
    for w in r["workers"]:
        if "error" in w:
            rows.append((w["threads"], "error: " + w["error"]) + (None,) * 8)
            continue
        for m in MODES:
            s = w["summary"][m]
            rows.append((w["threads"], labels[m], s["ttft_s"], " ".join(map(str, s["ttft_runs"])), s["evaluated"],
                         s["reused"], s["prompt_tok_s"], s["decode_tok_s"], s["warm_s"], s["load"]))
    out = table(["threads", "mode", "TTFT s", "runs", "evaluated", "reused", "prefill tok/s", "decode tok/s",
                 "warm s", "load"], rows)
    sizes = r["prompt_tokens"] or [0]
    out += (f"\n\nprompts {min(sizes)}-{max(sizes)} tokens (llama.cpp's count of the cold runs; target "
            f"{r['prompt_tokens_target']}), medians of {r['repeat']} runs, greedy, {r['max_new_tokens']} new tokens; model {r['model']}"
            "\ntarget: TTFT <= 3 s for a 1.4k-token prompt on 2 cores without bf16 (warm row)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--model", required=True, help="registry name, imported model folder, or .gguf file")
    p.add_argument("--home", help="TQT-s data dir holding the registry (default: $TQTS_HOME)")
    p.add_argument("--gguf", help="GGUF file (default: the model folder's model.gguf)")
    p.add_argument("--prompt-tokens", type=int, default=1400)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--typing-s", type=float, default=5.0, help="seconds from the pause to Send in the 'sent' row")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, one process each")
    p.add_argument("--as-no-bf16", action="store_true", help="choices as on a CPU without bf16 (bench/ingest.py)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.threads = int(args.threads)
        return worker(args)
    if args.as_no_bf16:
        from bench.ingest import no_bf16_flags

        os.environ["TQTS_CPU_FLAGS"] = no_bf16_flags()
    workers = [run_worker(int(t), args) for t in args.threads.split(",") if t]
    for w in workers:
        if "rows" in w:
            w["summary"] = {m: summary(w["rows"][m]) for m in MODES}
    prompt_tokens = next((w["prompt_tokens"] for w in workers if "prompt_tokens" in w), None)
    r = {"model": args.model, "prompt_tokens_target": args.prompt_tokens, "prompt_tokens": prompt_tokens,
         "repeat": args.repeat, "typing_s": args.typing_s, "max_new_tokens": args.max_new_tokens, "workers": workers}
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
