"""Data loading (local gsm8k layouts, explicit field maps, prompt truncation) and recipe validation."""
from __future__ import annotations

import json

import pytest

from trainer import data as D
from trainer import recipes as RC


def test_gsm8k_zh_layout_detected(shared_data):
    path = shared_data / "gsm8k_zh"
    if not path.exists():
        pytest.skip("../shared/data/gsm8k_zh missing")
    test = D.load_examples(str(path), split="test", limit=5)
    assert len(test) == 5 and test[0]["answer"] == "18"
    assert "鸭子" in test[0]["question"]
    sys_msg, user = test[0]["prompt"]
    assert sys_msg["role"] == "system" and "<answer>" in sys_msg["content"] and user["role"] == "user"
    train = D.load_examples(str(path / "train_zh.jsonl"), limit=3)
    assert train[0]["answer"] == "72" and "#### 72" in train[0]["solution"]


def test_gsm8k_en_layout_strips_hashes_and_commas(shared_data):
    path = shared_data / "gsm8k_en" / "train.jsonl"
    if not path.exists():
        pytest.skip("../shared/data/gsm8k_en missing")
    rows = D.load_examples(str(path))
    assert rows[0]["answer"] == "72" and rows[0]["question"].startswith("Natalia")
    assert all("," not in r["answer"] and "#" not in r["answer"] for r in rows)
    assert any(len(r["answer"]) >= 4 for r in rows)  # there are answers >= 1000 (commas stripped)


def test_explicit_field_map_and_formats(tmp_path):
    rows = [{"q": "小明有 3 个苹果，又买了 5 个，一共几个？", "a": "8 个"}, {"q": "", "a": "1"}]
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    js = tmp_path / "d.json"
    js.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pq_path)
    for path in (jl, js, pq_path):
        ex = D.load_examples(str(path), fields="question=q,answer=a")
        assert len(ex) == 1 and ex[0]["answer"] == "8 个"  # the empty question was skipped
    with pytest.raises(ValueError, match="--fields question=COL"):
        D.load_examples(str(jl))
    with pytest.raises(ValueError, match="question=COL"):
        D.FieldMap.parse("question")
    with pytest.raises(FileNotFoundError, match="not found"):
        D.load_examples(str(tmp_path / "missing.jsonl"))


def test_bad_json_line_names_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "a", "answer": "1"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        D.read_rows(p)


def test_truncate_prompt_keeps_the_question_end(tiny_qwen_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    question = "这是一个很长的问题。" * 40 + "一共有多少个？"
    msgs = [{"role": "user", "content": question}]
    full = len(tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"])
    cut = D.truncate_prompt(msgs, tok, full - 50)
    assert cut[-1]["content"].endswith("一共有多少个？") and len(cut[-1]["content"]) < len(question)
    assert len(tok.apply_chat_template(cut, add_generation_prompt=True)["input_ids"]) <= full - 50 + 2
    assert D.truncate_prompt(msgs, tok, full + 5) is msgs


def test_bundled_recipes_validate_and_map_to_grpo_config(tmp_path):
    from trl import GRPOConfig

    names = {r["name"] for r in RC.list_recipes()}
    assert {"tqts-default", "smoke-cpu"} <= names
    default = RC.load("tqts-default")
    g = default.grpo
    assert (g["learning_rate"], g["adam_beta1"], g["adam_beta2"], g["weight_decay"]) == (5e-5, 0.9, 0.99, 0.1)
    assert g["num_generations"] == 16 and default.use_vllm is False
    assert g["max_completion_length"] == 200 and g["save_steps"] == 50 and g["max_grad_norm"] == 0.1
    smoke = RC.load("smoke-cpu")
    cfg = GRPOConfig(output_dir=str(tmp_path), **smoke.grpo)
    assert cfg.generation_batch_size % cfg.num_generations == 0 and cfg.use_cpu


@pytest.mark.parametrize("grpo, message", [
    ({"max_prompt_length": 128}, "max_prompt_tokens"),
    ({"no_cuda": True}, "use_cpu"),
    ({"learning_rat": 1e-5}, "did you mean 'learning_rate'"),
    ({"num_generations": 3, "per_device_train_batch_size": 4}, "TRL refused.*divisible by num_generations"),
    ({"num_generations": 4, "per_device_train_batch_size": 2, "steps_per_generation": 1},
     "TRL refused.*divisible by num_generations"),
    ({"loss_type": "ppo"}, "loss_type"),
])
def test_recipe_errors_say_what_to_change(grpo, message):
    with pytest.raises(ValueError, match=message):
        RC.from_dict({"grpo": grpo})


def test_recipe_use_vllm_only_when_asked():
    assert RC.from_dict({}, trl_check=False).use_vllm is False
    with pytest.raises(ValueError, match="use_vllm must be true or false"):
        RC.from_dict({"use_vllm": "auto"}, trl_check=False)


def test_recipes_listing_does_not_import_trl():
    import subprocess
    import sys

    code = ("import sys; from trainer.cli import main; main(['recipes']); "
            "print('TRL' if 'trl' in sys.modules or 'torch' in sys.modules else 'light')")
    out = subprocess.run([sys.executable, "-c", code], cwd=D.Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "tqts-default" in out and out.strip().endswith("light")


def test_system_prompt_in_the_question_language_without_a_copyable_template(shared_data):
    zh = D.load_examples(str(shared_data / "gsm8k_zh"), split="train", limit=2)
    en = D.load_examples(str(shared_data / "gsm8k_en"), split="train", limit=2)
    assert zh[0]["prompt"][0]["content"] == D.SYSTEM_PROMPT_ZH and en[0]["prompt"][0]["content"] == D.SYSTEM_PROMPT_EN
    for prompt in (D.SYSTEM_PROMPT_ZH, D.SYSTEM_PROMPT_EN):
        assert "reasoning process here" not in prompt and "answer here" not in prompt
    r1 = D.load_examples(str(shared_data / "gsm8k_zh"), split="train", limit=1, system_prompt="r1")
    assert r1[0]["prompt"][0]["content"] == D.R1_ZERO_PROMPT


def test_recipe_unknown_reward_and_field():
    with pytest.raises(ValueError, match="pick names from"):
        RC.from_dict({"rewards": {"magic": 1.0}})
    with pytest.raises(ValueError, match="did you mean 'eval_every'"):
        RC.from_dict({"eval_evry": 3})
    with pytest.raises(FileNotFoundError, match="smoke-cpu"):
        RC.load("no-such-recipe")


def test_hub_id_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="give a local file or folder"):
        D.load_raw("tqts-test/no-such-dataset", "train")
