"""Tiny models built from a config inside the tests: never downloaded, seconds to build.

- :func:`build_tiny_qwen` — a random Qwen2 causal LM (2 layers, hidden 64) with a byte-level
  BPE tokenizer trained here on a few Chinese/English lines and Qwen's ChatML template.
- :func:`build_tiny_embedder` — a random BERT (2 layers, hidden 32) with a WordPiece tokenizer
  trained here, saved as a sentence-transformers folder (mean pooling + normalize).

Both save safetensors only.
"""
from __future__ import annotations

from pathlib import Path

CORPUS = [
    "中华人民共和国是工人阶级领导的、以工农联盟为基础的人民民主专政的社会主义国家。",
    "社会主义制度是中华人民共和国的根本制度。国家机构实行民主集中制的原则。",
    "The quick brown fox jumps over the lazy dog. Retrieval augmented generation cites pages.",
    "小明有 3 个苹果，又买了 5 个，一共有多少个？答案是 8。<think> 3+5=8 </think><answer>8</answer>",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "知识库 问答 检索 向量 嵌入 分块 引用 页码 模型 训练 奖励 优势",
    "0123456789 + - * / = ( ) [ ] { } < > , . ! ? ; : ' \" 。，！？；：",
]

#: Qwen2.5's ChatML chat template (system prompt default omitted).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_qwen(out: str | Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a random Qwen2ForCausalLM + fast tokenizer to ``out``; return the folder.

    The tokenizer is byte-level BPE (any UTF-8 text encodes), ~700 tokens, with the special
    tokens ``<|endoftext|>`` (pad) ``<|im_start|>`` ``<|im_end|>`` (eos).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                     pad_token="<|endoftext|>", bos_token=None)
    hf_tok.chat_template = QWEN_CHAT_TEMPLATE
    hf_tok.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(hf_tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True,
                      eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
                      bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_embedder(out: str | Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """Write a random BERT sentence-transformers model (mean pooling, normalized) to ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out)
    raw = out.parent / (out.name + "-hf")
    raw.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(handle_chinese_chars=True, lowercase=True)
    wp.train_from_iterator(CORPUS * 4, vocab_size=800, min_frequency=1)
    vocab = raw / "vocab.txt"
    vocab.write_text("\n".join(sorted(wp.get_vocab(), key=wp.get_vocab().get)) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(raw)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=wp.get_vocab_size(), hidden_size=hidden, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(raw, safe_serialization=True)
    word = models.Transformer(str(raw), max_seq_length=256)
    pool = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu").save(str(out))
    return out
