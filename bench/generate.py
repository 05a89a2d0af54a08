"""Generation speed: tokens/s, time to first token on a ~1,500-token RAG prompt, peak RSS.

    python bench/generate.py --model NAME [--home DIR] [--gguf FILE] [--prompt-tokens 1500]
                             [--max-new-tokens 128] [--backends transformers,llamacpp,llama.cpp]
                             [--json]

``--model`` is a registry name (in ``--home`` / ``$TQTS_HOME``; e.g. a GGUF imported with
``main.py models import``), or an HF folder. The GGUF is the imported folder's ``model.gguf``
unless ``--gguf`` names one. Backends, each in its own subprocess (clean peak RSS):

- ``transformers``: TQT-s's TransformersBackend on the converted safetensors folder;
- ``llamacpp``: TQT-s's LlamaCppBackend (models/llamacpp_backend.py) on the GGUF;
- ``llama.cpp``: the reference, llama.cpp's server (xllamacpp) called directly on the same
  GGUF (``Server.handle_chat_completions``), same threads and context, no prompt cache. No
  package on PyPI ships llama.cpp's own ``llama-bench`` for Linux, so this is the closest
  reference without a compiler.

The prompt is the product's own (models/prompts.py: system prompt + numbered CMRC passages +
a question), sized to ``--prompt-tokens`` with the model's tokenizer. Decoding is greedy,
repetition penalty 1.0, after a short warm-up generation. Time to first token = first text
delta; decode tokens/s = (tokens - 1) / (last delta - first delta), tokens counted with the
model's tokenizer on the completion text. With ``--repeat N`` each backend generates N times
(llama.cpp's prompt cache reset in between) and the medians are reported. "CPU s" is the process CPU time of the timed
generation (all threads): on a shared machine, CPU s well below threads x wall s means the
run waited for cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA, add_json_flag, emit, log, peak_rss_mb, ratio, table  # noqa: E402

BACKENDS = ("transformers", "llamacpp", "llama.cpp")
QUESTION = "根据资料，这些段落分别讲了什么？请逐条总结并标出出处。"


def _passages() -> list[str]:
    path = DATA / "retrieval" / "cmrc2018_trial.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        return [p["context"] for art in data for p in art["paragraphs"]]
    return [f"第{i}段：知识库问答系统把文档切成分块，计算嵌入，检索后由模型引用页码作答。" * 6 for i in range(40)]


def build_messages(count_tokens, target: int, *, start: int = 0, question: str = QUESTION) -> list[dict]:
    """The product's RAG prompt with as many passages as fit in ``target`` tokens, from the
    ``start``-th passage on (another ``start``: another prompt, no prefix shared past the system prompt)."""
    from models import prompts

    blocks: list[str] = []
    system = prompts.system_prompt(question, think=False)
    for i, text in enumerate(_passages()[start:], start):
        trial = blocks + [prompts.format_source(len(blocks) + 1, f"cmrc-{i + 1}.pdf", 1, text)]
        if count_tokens(system + prompts.user_message(question, trial)) > target:
            break
        blocks = trial
    return [{"role": "system", "content": system},
            {"role": "user", "content": prompts.user_message(question, blocks)}]


def tokenizer_counter(folder: str | None, gguf: str | None):
    """A ``count_tokens(text)`` for the model: tokenizer.json, else the GGUF vocabulary."""
    if folder and (Path(folder) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        return lambda t: len(tok.encode(t, add_special_tokens=False).ids)
    from models.backend import ChatBackend

    return ChatBackend.count_tokens.__get__(object())  # the interface's estimate


# -- worker (one backend, its own process) ----------------------------------------------
class _RawLlama:
    """llama.cpp's server (xllamacpp) called directly, no TQT-s layer: the reference the
    backends are compared with (same load parameters as the backend: models.llamacpp_backend.load_server)."""

    name = "llama.cpp"

    def __init__(self, gguf: str, ctx: int, threads: int):
        from models.llamacpp_backend import load_server

        self.server = load_server(gguf, n_ctx=ctx, threads=threads)
        self.path, self._count = Path(gguf), None

    def stream(self, messages, *, gen=None, cancel=None):
        import queue
        import threading

        q: queue.Queue = queue.Queue()
        req = {"messages": messages, "stream": True, "max_tokens": gen.max_new_tokens, "temperature": 0.0,
               "repeat_penalty": 1.0, "cache_prompt": False}
        t = threading.Thread(target=lambda: (self.server.handle_chat_completions(req, q.put), q.put(None)))
        t.start()
        while (c := q.get()) is not None:
            for ch in c.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    yield ch["delta"]["content"]
        t.join()

    def count_tokens(self, text: str) -> int:
        from models.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend.count_tokens(self, text)

    def close(self) -> None:
        self.server = None


def load_backend(kind: str, model: str, gguf: str | None, home: str | None, threads: int):
    """Load one backend for the worker (see module docstring), using ``threads`` CPU threads."""
    import settings as settings_mod

    s = settings_mod.load(home)
    if kind == "llama.cpp":
        return _RawLlama(gguf, s.context_tokens, threads)
    if kind == "llamacpp":
        from models.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(gguf, s, adapter="", threads=threads)
    import torch

    torch.set_num_threads(threads)
    from models.registry import ModelRegistry

    s.set("backend", "transformers", persist=False)
    s.set("adapter", "", persist=False)
    return ModelRegistry(s).load_backend(model)


def timed_stream(backend, messages, max_new: int) -> dict:
    """Run one greedy generation; return ttft_s, tokens, decode/overall tok/s."""
    from models.backend import GenerationSettings

    gen = GenerationSettings(max_new_tokens=max_new, temperature=0.0, top_p=1.0, repetition_penalty=1.0)
    t0, c0 = time.perf_counter(), time.process_time()
    first = last = None
    parts = []
    for delta in backend.stream(messages, gen=gen):
        last = time.perf_counter()
        first = first or last
        parts.append(delta)
    cpu = time.process_time() - c0
    text = "".join(parts)
    n = backend.count_tokens(text)
    return {"ttft_s": (first or t0) - t0, "tokens": n, "total_s": (last or t0) - t0, "cpu_s": cpu,
            "decode_tok_s": ratio(n - 1, (last - first) if first and last else None),
            "overall_tok_s": ratio(n, (last or t0) - t0), "text_head": text[:80]}


def worker(args) -> int:
    """Load one backend, warm up, time one generation; print one JSON line."""
    messages = json.loads(Path(args.prompt_file).read_text(encoding="utf-8"))
    t = time.perf_counter()
    backend = load_backend(args.worker, args.model, args.gguf, args.home, args.threads)
    load_s = time.perf_counter() - t
    timed_stream(backend, [{"role": "user", "content": "你好"}], 8)  # warm-up, unrelated prefix
    runs = []
    for _ in range(args.repeat):
        if hasattr(backend, "cache_prompt"):
            backend.cache_prompt = False  # llama.cpp evaluates the whole prompt on every run
        runs.append(timed_stream(backend, messages, args.max_new_tokens))
    out = {k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], (int, float)) else runs[0][k]
           for k in runs[0] if all(r[k] is not None for r in runs)}
    out["repeats"] = {k: [r[k] for r in runs] for k in ("ttft_s", "decode_tok_s")}
    out.update(backend=args.worker, load_s=load_s, peak_rss_mb=peak_rss_mb(),
               prompt_tokens=sum(backend.count_tokens(m["content"]) for m in messages),
               device=getattr(backend, "device", "cpu"), dtype=str(getattr(backend, "dtype", "q4 (gguf)")))
    print(json.dumps(out, ensure_ascii=False), flush=True)
    if hasattr(backend, "close"):
        backend.close()  # stop llama.cpp's server before the interpreter exits
    return 0


# -- parent -------------------------------------------------------------------------------
def resolve(model: str, gguf: str | None, home: str | None) -> tuple[str | None, str | None]:
    """(HF folder or None, GGUF path or None) for ``model``."""
    folder = None
    if Path(model).is_dir():
        folder = model
    else:
        import settings as settings_mod
        from models.registry import ModelRegistry

        folder = ModelRegistry(settings_mod.load(home)).resolve(model)[0]
    if not gguf and folder and (Path(folder) / "model.gguf").is_file():
        gguf = str(Path(folder) / "model.gguf")
    if not gguf and model.endswith(".gguf"):
        gguf = model
    return folder, gguf


def run_worker(kind: str, args, prompt_file: str, gguf: str | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--model", args.model, "--prompt-file", prompt_file,
           "--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads), "--repeat", str(args.repeat)] + \
        (["--gguf", gguf] if gguf else []) + \
          (["--home", args.home] if args.home else [])
    log(f"{kind}: running ...")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"{kind}: failed: {err}")
        return {"backend": kind, "error": err}
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(args) -> dict:
    folder, gguf = resolve(args.model, args.gguf, args.home)
    count = tokenizer_counter(folder, gguf)
    messages = build_messages(count, args.prompt_tokens)
    from models.llamacpp_backend import available

    have_llama = available()
    kinds = [k for k in args.backends.split(",") if k]
    skipped = {k: "xllamacpp not installed" if not have_llama else "no GGUF for this model"
               for k in kinds if k != "transformers" and not (have_llama and gguf)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(messages, f, ensure_ascii=False)
    try:
        runs = [run_worker(k, args, f.name, gguf) for k in kinds if k not in skipped]
    finally:
        os.unlink(f.name)
    ref = next((r for r in runs if r["backend"] == "llama.cpp" and "error" not in r), None)
    for r in runs:
        r["ratio_vs_llama_cpp"] = ratio(r.get("decode_tok_s"), ref and ref["decode_tok_s"])
    return {"model": args.model, "folder": folder, "gguf": gguf, "prompt_tokens_target": args.prompt_tokens,
            "prompt_tokens": count(messages[0]["content"] + messages[1]["content"]),
            "max_new_tokens": args.max_new_tokens, "threads": args.threads, "runs": runs, "skipped": skipped}


def render(r: dict) -> str:
    rows = [(x["backend"], x.get("dtype"), x.get("load_s"), x.get("ttft_s"), x.get("tokens"), x.get("decode_tok_s"),
             x.get("overall_tok_s"), x.get("cpu_s"), x.get("total_s"), x.get("peak_rss_mb"),
             x.get("ratio_vs_llama_cpp"), x.get("error", "")) for x in r["runs"]]
    out = table(["backend", "weights", "load s", "TTFT s", "tokens", "decode tok/s", "overall tok/s", "CPU s",
                 "wall s", "peak RSS MiB", "x llama.cpp", "error"], rows)
    out += (f"\n\nprompt {r['prompt_tokens']} tokens (target {r['prompt_tokens_target']}), greedy, "
            f"{r['max_new_tokens']} new tokens max, {r['threads']} threads; model {r['model']}"
            f"\ntargets: default GGUF backend tok/s >= 0.8x llama.cpp on the same GGUF; TTFT <= 3 s (1.4k tokens, 2 cores)")
    for k, why in r["skipped"].items():
        out += f"\nskipped {k}: {why}"
    return out


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--model", required=True, help="registry name or HF folder")
    p.add_argument("--home", help="TQT-s data dir holding the registry (default: $TQTS_HOME)")
    p.add_argument("--gguf", help="GGUF file for the llama.cpp runs (default: the model folder's model.gguf)")
    p.add_argument("--prompt-tokens", type=int, default=1500)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--repeat", type=int, default=1, help="timed generations per backend; medians reported")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads per backend (default: all cores)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS))
    p.add_argument("--as-no-bf16", action="store_true",
                   help="make TQT-s's choices as on a CPU without bf16 (TQTS_CPU_FLAGS = this CPU's flags minus "
                        "avx512_bf16/amx*): transformers then loads float32, as on most laptops")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--prompt-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.as_no_bf16:
        from bench.ingest import no_bf16_flags

        os.environ["TQTS_CPU_FLAGS"] = no_bf16_flags()  # inherited by the worker processes
    r = measure(args)
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
