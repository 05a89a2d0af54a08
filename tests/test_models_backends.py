"""Transformers backend on the tiny random Qwen2 fixture: load, stream, cancel, LoRA, tokens."""
from __future__ import annotations

import threading

import pytest

from models.backend import BackendError, GenerationSettings
from models.device import pick_device, pick_dtype
from models.transformers_backend import TransformersBackend

MESSAGES = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "国家机构实行什么原则？"}]
GREEDY = GenerationSettings(max_new_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def backend(tiny_qwen_dir, tmp_path_factory):
    import settings as settings_mod

    s = settings_mod.load(tmp_path_factory.mktemp("home"))
    s.set("device", "cpu", persist=False)
    s.set("context_tokens", 100000, persist=False)
    return TransformersBackend(tiny_qwen_dir, s)


def test_loads_on_cpu_with_context_from_config(backend):
    assert backend.device == "cpu"
    assert backend.context_tokens == 4096  # min(config max_position_embeddings, settings)
    assert backend.name == "model"
    assert pick_device("auto") == "cpu"
    assert str(pick_dtype("cpu")).startswith("torch.")


def test_stream_yields_deltas_matching_complete(backend):
    deltas = list(backend.stream(MESSAGES, gen=GREEDY))
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == backend.complete(MESSAGES, gen=GREEDY)  # greedy is deterministic


def test_count_tokens_uses_the_model_tokenizer(backend):
    text = "中华人民共和国 constitution"
    assert backend.count_tokens(text) == len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert backend.count_messages(MESSAGES) > backend.count_tokens(MESSAGES[1]["content"])


def test_cancel_stops_generation_early(backend):
    cancel = threading.Event()
    gen = GenerationSettings(max_new_tokens=400, temperature=0.0, repetition_penalty=1.0)
    got = []
    for delta in backend.stream(MESSAGES, gen=gen, cancel=cancel):
        got.append(delta)
        cancel.set()
    full = backend.count_tokens(backend.complete(MESSAGES, gen=GREEDY))
    assert 1 <= len(got) <= 3  # stopped at the next token, not after 400
    assert full >= 1


def test_closing_the_generator_stops_the_worker(backend):
    gen = GenerationSettings(max_new_tokens=400, temperature=0.0)
    it = backend.stream(MESSAGES, gen=gen)
    next(it)
    it.close()
    assert not any(t.name == "tqts-generate" and t.is_alive() for t in threading.enumerate())


def test_lora_adapter_is_applied(tiny_qwen_dir, tmp_path, backend):
    """A LoRA adapter made here with peft (non-zero B) changes the greedy completion."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"]))
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=2.0)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    tuned = TransformersBackend(tiny_qwen_dir, backend.settings, adapter=adapter)
    assert tuned.adapter == str(adapter)
    from peft import PeftModel

    assert isinstance(tuned.model, PeftModel)
    gen = GenerationSettings(max_new_tokens=20, temperature=0.0, repetition_penalty=1.0)
    assert tuned.complete(MESSAGES, gen=gen) != backend.complete(MESSAGES, gen=gen)


def test_bad_folders_give_one_clear_message(tmp_path, backend):
    with pytest.raises(BackendError, match="config.json"):
        TransformersBackend(tmp_path, backend.settings)
    with pytest.raises(BackendError, match="adapter_config.json"):
        TransformersBackend(backend.model_dir, backend.settings, adapter=tmp_path)
