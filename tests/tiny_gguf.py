"""A tiny random Qwen2 GGUF written with the ``gguf`` package: llama.cpp loads and runs it in
well under a second, so the llamacpp backend's stream / cancel / overflow tests run in CI.

Byte-level BPE vocabulary (GPT-2 style: the 256 byte symbols, a few merges, ChatML control
tokens) and the ChatML chat template Qwen2.5 uses; float32 weights from a seeded generator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_symbols() -> list[str]:
    """GPT-2's byte -> printable unicode table (``bytes_to_unicode``), in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def build_tiny_qwen_gguf(path: str | Path, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                         kv_heads: int = 2, ctx: int = 2048, seed: int = 0, bf16_exact: bool = False,
                         utf8_safe: bool = False) -> Path:
    """Write a random ``qwen2`` GGUF to ``path`` and return it.

    ``bf16_exact``: round every weight to a bfloat16 value (still stored as float32), so
    :func:`models.gguf.convert_gguf` (bf16 safetensors) gives transformers the same weights
    llama.cpp reads. ``utf8_safe``: the byte tokens that start a multi-byte UTF-8 character
    (0xC0-0xFF) get half the output row of an ASCII letter, so their logit is half that letter's
    and never the largest while any logit is positive: greedy text is whole characters (llama.cpp's
    server withholds an unfinished character and its log-probabilities)."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    byte_syms = _byte_symbols()
    merges = ["Ġ t", "Ġ a", "h e", "i n", "Ġt he"]
    tokens = byte_syms + ["Ġt", "Ġa", "he", "in", "Ġthe"] + ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.NORMAL] * (len(tokens) - 3) + [gguf.TokenType.CONTROL] * 3
    vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def w(*shape):
        x = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if bf16_exact:  # keep the top 16 bits, rounded to nearest
            x = ((x.view(np.uint32) + np.uint32(0x8000)) & np.uint32(0xFFFF0000)).view(np.float32)
        return x

    wr = gguf.GGUFWriter(str(path), "qwen2")
    wr.add_name("tiny-qwen2-test")
    wr.add_context_length(ctx)
    wr.add_embedding_length(hidden)
    wr.add_block_count(layers)
    wr.add_feed_forward_length(hidden * 2)
    wr.add_head_count(heads)
    wr.add_head_count_kv(kv_heads)
    wr.add_rope_freq_base(10000.0)
    wr.add_layer_norm_rms_eps(1e-6)
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("qwen2")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(vocab - 3)
    wr.add_eos_token_id(vocab - 1)
    wr.add_pad_token_id(vocab - 3)
    wr.add_add_bos_token(False)
    wr.add_chat_template(CHATML)
    kv = hidden // heads * kv_heads
    wr.add_tensor("token_embd.weight", w(vocab, hidden))
    wr.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    output = w(vocab, hidden)
    if utf8_safe:
        for b in range(0xC0, 0x100):
            output[b] = output[ord("a") + b % 26] * 0.5
    wr.add_tensor("output.weight", output)
    for i in range(layers):
        b = f"blk.{i}."
        wr.add_tensor(b + "attn_norm.weight", np.ones(hidden, dtype=np.float32))
        for name, rows in (("attn_q", hidden), ("attn_k", kv), ("attn_v", kv)):
            wr.add_tensor(b + name + ".weight", w(rows, hidden))
            wr.add_tensor(b + name + ".bias", w(rows))
        wr.add_tensor(b + "attn_output.weight", w(hidden, hidden))
        wr.add_tensor(b + "ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        wr.add_tensor(b + "ffn_gate.weight", w(hidden * 2, hidden))
        wr.add_tensor(b + "ffn_up.weight", w(hidden * 2, hidden))
        wr.add_tensor(b + "ffn_down.weight", w(hidden, hidden * 2))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path
