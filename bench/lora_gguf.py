"""A LoRA adapter on llama.cpp (converted to a GGUF LoRA, models/lora_gguf.py) vs transformers+peft.

    python bench/lora_gguf.py --model DIR (--adapter DIR | --random-adapter) [--max-new-tokens 48]
                              [--json]

``--model``: an imported model folder with HF safetensors and ``model.gguf`` (e.g. the real
Qwen). ``--adapter``: a PEFT LoRA folder (a trainer checkpoint); it is copied to a temporary folder
first, so a read-only run folder is not written to. ``--random-adapter``: a seeded LoRA (r 8,
alpha 16, q/k/v/o) with lora_B ~ N(0, ``--b-std``), non-zero so the answers move.

Per prompt (3, Chinese and English), all greedy, repetition penalty 1.0, one thread each
(``OMP_NUM_THREADS``): the completions of transformers+peft (TQT-s's TransformersBackend), of
llama.cpp + the adapter GGUF and of llama.cpp without it (LlamaCppBackend); decode tokens/s =
(tokens - 1) / (last delta - first delta), tokens counted with the model's tokenizer; how many
leading tokens llama.cpp+adapter shares with transformers+peft; and the next-token
log-probabilities after the prompt (top 5 of transformers+peft, looked up in llama.cpp's top 20):
the largest difference with the adapter, and without it (how far the adapter moves them).
llama.cpp runs the q4_k_m GGUF, transformers the dequantized bf16/f32 copy: some difference
is quantization, the same with and without the adapter.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_json_flag, emit, log, ratio, table  # noqa: E402

PROMPTS = ["What is 17 + 25? Answer with the number only.",
           "用一句话解释什么是向量数据库。",
           "Write a Python function that returns the square of a number."]


def random_adapter(model_dir: Path, out: Path, *, b_std: float = 0.05, seed: int = 0) -> Path:
    """Save a seeded PEFT LoRA (r 8, alpha 16, q/k/v/o projections) with lora_B ~ N(0, b_std)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj",
                                                                                      "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, b_std)
    peft_model.save_pretrained(out)
    return out


def timed_stream(backend, messages, gen) -> dict:
    """Greedy completion with its decode speed (see the module docstring)."""
    times, parts = [], []
    for delta in backend.stream(messages, gen=gen):
        times.append(time.perf_counter())
        parts.append(delta)
    return {"text": "".join(parts), "times": times}


def decode_tps(run: dict, count_tokens) -> float | None:
    n = count_tokens(run["text"])
    t = run["times"]
    return (n - 1) / (t[-1] - t[0]) if n > 1 and len(t) > 1 and t[-1] > t[0] else None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def hf_next_logprobs(backend, messages) -> dict[int, float]:
    """{token id: log-probability} of the next token after the chat prompt, top 5 (transformers)."""
    import torch

    ids = backend._encode(messages).to(backend.device)
    with torch.no_grad():
        logp = backend.model(ids).logits[0, -1].float().log_softmax(-1)
    top = logp.topk(5)
    return dict(zip(top.indices.tolist(), top.values.tolist(), strict=True))


def llama_next_logprobs(backend, ids: list[int], k: int = 20) -> dict[int, float]:
    """{token id: log-probability} of llama.cpp's top ``k`` next tokens after the token ids ``ids``."""
    res = backend._server.handle_completions({"prompt": ids, "max_tokens": 1, "n_probs": k, "temperature": 0.0,
                                              "post_sampling_probs": False, "cache_prompt": False})
    content = (res["choices"][0].get("logprobs") or {}).get("content") or []
    return {t["id"]: t["logprob"] for t in content[0]["top_logprobs"]} if content else {}


def top1(logprobs: dict[int, float]) -> int | None:
    return max(logprobs, key=logprobs.get) if logprobs else None


def max_diff(want: dict[int, float], got: dict[int, float]) -> float:
    """Largest |difference| over ``want``'s tokens (a token missing from ``got``'s top counts as
    the gap to ``got``'s smallest listed log-probability, a lower bound)."""
    floor = min(got.values()) if got else float("-inf")
    return max(abs(v - got.get(i, floor)) for i, v in want.items())


def run(model_dir: Path, adapter: Path, max_new_tokens: int) -> dict:
    """Measure (see the module docstring); returns per-prompt rows and totals."""
    import settings as settings_mod
    from models.backend import GenerationSettings
    from models.llamacpp_backend import LlamaCppBackend
    from models.lora_gguf import convert_lora
    from models.transformers_backend import TransformersBackend

    gen = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0, repetition_penalty=1.0)
    threads = int(os.environ.get("OMP_NUM_THREADS") or 1)
    t0 = time.perf_counter()
    lora_file = convert_lora(adapter, model_dir / "model.gguf")
    convert_s = time.perf_counter() - t0
    settings = settings_mod.load(adapter.parent / "home")           # a throwaway data dir
    msgs = [[{"role": "user", "content": p}] for p in PROMPTS]

    log("transformers + peft ...")
    hf = TransformersBackend(model_dir, settings, adapter=str(adapter), name="hf+peft")
    hf_runs = [timed_stream(hf, m, gen) for m in msgs]
    hf_top = [hf_next_logprobs(hf, m) for m in msgs]
    prompt_ids = [hf._encode(m)[0].tolist() for m in msgs]
    tok = hf.tokenizer
    hf_dtype = str(hf.dtype)
    del hf

    out = {}
    for name, lora in (("llama+lora", str(lora_file)), ("llama base", "")):
        log(f"{name} ...")
        b = LlamaCppBackend(model_dir / "model.gguf", context_tokens=1024, threads=threads, adapter=lora)
        try:
            timed_stream(b, msgs[0], GenerationSettings(max_new_tokens=4, temperature=0.0))      # warm-up
            out[name] = ([timed_stream(b, m, gen) for m in msgs], [llama_next_logprobs(b, ids) for ids in prompt_ids])
        finally:
            b.close()

    def count(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rows = []
    for i, prompt in enumerate(PROMPTS):
        h, lo, ba = hf_runs[i], out["llama+lora"][0][i], out["llama base"][0][i]
        h_ids, l_ids = tok(h["text"], add_special_tokens=False)["input_ids"], tok(lo["text"], add_special_tokens=False)["input_ids"]
        rows.append({"prompt": prompt, "hf_peft": h["text"], "llama_lora": lo["text"], "llama_base": ba["text"],
                     "same_text": h["text"] == lo["text"], "shared_prefix_tokens": common_prefix(h_ids, l_ids),
                     "hf_tokens": len(h_ids), "adapter_changed_llama": lo["text"] != ba["text"],
                     "hf_tps": decode_tps(h, count), "llama_lora_tps": decode_tps(lo, count),
                     "llama_base_tps": decode_tps(ba, count),
                     "top1_same": top1(hf_top[i]) == top1(out["llama+lora"][1][i]),
                     "logprob_diff_lora": max_diff(hf_top[i], out["llama+lora"][1][i]),
                     "logprob_diff_base": max_diff(hf_top[i], out["llama base"][1][i])})
    return {"model": str(model_dir), "adapter": str(adapter), "lora_gguf_bytes": lora_file.stat().st_size,
            "convert_s": round(convert_s, 2), "threads": threads, "hf_dtype": hf_dtype,
            "max_new_tokens": max_new_tokens, "rows": rows}


def report(res: dict) -> str:
    heads = ["prompt", "same text", "shared tokens", "adapter moved llama", "top-1 same", "max |dlogp| lora",
             "max |dlogp| no lora", "hf+peft tok/s", "llama+lora tok/s", "llama tok/s", "speed-up"]
    rows = [[r["prompt"][:24], r["same_text"], f"{r['shared_prefix_tokens']}/{r['hf_tokens']}",
             r["adapter_changed_llama"], r["top1_same"], r["logprob_diff_lora"], r["logprob_diff_base"],
             r["hf_tps"], r["llama_lora_tps"], r["llama_base_tps"], ratio(r["llama_lora_tps"], r["hf_tps"])]
            for r in res["rows"]]
    texts = "\n".join(f"\n[{r['prompt']}]\n  hf+peft   : {r['hf_peft']!r}\n  llama+lora: {r['llama_lora']!r}"
                      f"\n  llama     : {r['llama_base']!r}" for r in res["rows"])
    return (f"adapter {res['adapter']} -> GGUF LoRA {res['lora_gguf_bytes'] / 2**20:.1f} MiB in {res['convert_s']} s; "
            f"transformers dtype {res['hf_dtype']}, {res['threads']} thread(s)\n" + table(heads, rows) + "\n" + texts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, type=Path, help="model folder: HF safetensors + model.gguf")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--adapter", type=Path, help="a PEFT LoRA folder (copied before converting)")
    g.add_argument("--random-adapter", action="store_true", help="a seeded random LoRA with non-zero B")
    p.add_argument("--b-std", type=float, default=0.05, help="lora_B standard deviation of --random-adapter")
    p.add_argument("--max-new-tokens", type=int, default=48)
    args = add_json_flag(p).parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tqts-lora-gguf-"))
    try:
        if args.adapter:
            adapter = work / "adapter"
            adapter.mkdir()
            for f in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copy2(args.adapter / f, adapter / f)
        else:
            adapter = random_adapter(args.model, work / "adapter", b_std=args.b_std)
        res = run(args.model, adapter, args.max_new_tokens)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(res, report(res), args.json)


if __name__ == "__main__":
    main()
