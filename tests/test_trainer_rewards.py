"""Reward functions and answer extraction: crafted completions and real GSM8K rows."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest

from trainer import rewards as R

GOOD = "<think>\n16 - 3 - 4 = 9, 9 * 2 = 18\n</think>\n<answer>\n18\n</answer>"


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("text, expected", [
    ("18", Fraction(18)), ("18.0", Fraction(18)), ("1,234", Fraction(1234)), ("$1,234.50", Fraction(246900, 200)),
    ("１８ 元", Fraction(18)), ("共 12 个", Fraction(12)), ("5 km", Fraction(5)), ("-7", Fraction(-7)),
    ("−7", Fraction(-7)), ("3/4", Fraction(3, 4)), ("３/４", Fraction(3, 4)), ("答案是 3 + 5 = 8", Fraction(8)),
    ("no number", None), ("", None), (None, None),
])
def test_parse_number_lenient(text, expected):
    assert R.parse_number(text) == expected


def test_extract_answer_takes_last_block():
    assert R.extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert R.extract_answer("no tags 18") is None
    assert R.extract_boxed(r"so \boxed{42} and \boxed{43}") == "43"


@pytest.mark.parametrize("completion, gold, expected", [
    (GOOD, "18", 1.0),
    ("<think>x</think><answer>$18</answer>", "18", 1.0),           # currency sign
    ("<think>x</think><answer>18 元</answer>", "18", 1.0),          # Chinese unit
    ("<think>x</think><answer>18.0 km</answer>", "18", 1.0),        # 18.0 vs 18, unit
    ("<think>x</think><answer>1,200</answer>", "1200", 1.0),        # thousands comma
    ("<think>x</think><answer>１２００</answer>", "1,200", 1.0),     # fullwidth digits
    ("<think>x</think><answer>-5</answer>", "-5", 1.0),
    ("<think>x</think><answer>0.75</answer>", "3/4", 1.0),          # fraction gold
    ("<think>x</think><answer>17</answer>", "18", 0.0),
    ("The answer is 18.", "18", 0.0),                              # right number, no answer tag
    ("", "18", 0.0),
    ("<think>x</think><answer>18</answer>", "unknown", None),      # gold cannot be parsed
])
def test_correctness(completion, gold, expected):
    assert R.correctness([None], [completion], answer=[gold]) == [expected]
    assert R.correctness([None], [conv(completion)], answer=[gold]) == [expected]  # conversational


def test_format_rewards_on_crafted_completions():
    texts = [GOOD, "<think>想一想：3+5=8</think> <answer>8</answer>", "18",
             "<think>a</think><answer>1</answer><answer>2</answer>", "", "pre <think>a</think><answer>1</answer>"]
    assert R.strict_format(None, texts) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert R.soft_format(None, texts) == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    xml = R.xml_count(None, [conv(t) for t in texts])
    assert xml[0] == 1.0 and xml[2] == 0.0 and xml[4] == 0.0
    assert xml[3] < xml[0]                                           # repeated tags earn less
    assert R.xml_count(None, [GOOD + " trailing junk"])[0] < 1.0     # text after </answer>


def test_integer_and_boxed():
    texts = ["<think>a</think><answer>18</answer>", "<think>a</think><answer>18 元</answer>",
             "<think>a</think><answer>2.5</answer>", "<think>a</think><answer>3 or 4</answer>", "18"]
    assert R.integer(None, texts) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert R.boxed(None, [r"\boxed{1,000}", r"\boxed{9}", "1000"], answer=["1000"] * 3) == [1.0, 0.0, 0.0]


def test_registry_and_errors():
    funcs = R.get_reward_funcs(["correctness", "xml_count"])
    assert [f.__name__ for f in funcs] == ["correctness", "xml_count"]
    with pytest.raises(ValueError, match="choose from"):
        R.get_reward_funcs(["nope"])
    assert max(R.DEFAULT_WEIGHTS, key=R.DEFAULT_WEIGHTS.get) == "correctness"


def _rows(path, n=40):
    with path.open(encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def test_correctness_on_real_gsm8k_rows(shared_data):
    """Gold answers of real rows: a tagged reply with the gold number scores 1, off by one scores 0."""
    from trainer.data import gold_answer

    zh = shared_data / "gsm8k_zh" / "test_zh_mgsm250.jsonl"
    en = shared_data / "gsm8k_en" / "train.jsonl"
    if not zh.exists() or not en.exists():
        pytest.skip("gsm8k files missing under ../shared/data")
    golds = [r["answer_only"] for r in _rows(zh)] + [gold_answer(r["answer"]) for r in _rows(en)]
    assert all(R.parse_number(g) is not None for g in golds)
    right = [f"<think>step {i}</think><answer>{g} 元</answer>" for i, g in enumerate(golds)]
    wrong = [f"<think>x</think><answer>{R.parse_number(g) + 1}</answer>" for g in golds]
    assert R.correctness(None, right, answer=golds) == [1.0] * len(golds)
    assert R.correctness(None, wrong, answer=golds) == [0.0] * len(golds)


def test_language_consistency():
    qs = ["小明有几个苹果？", "How many apples?"]
    texts = ["<think>三加五</think><answer>8</answer>", "<think>three plus five</think><answer>8</answer>"]
    zh = R.language(None, texts, question=[qs[0], qs[0]])
    en = R.language(None, [conv(t) for t in texts], question=[qs[1], qs[1]])
    assert zh[0] > 0.5 > zh[1] and en[1] > 0.5 > en[0]
    prompts = [[{"role": "user", "content": qs[0]}]]
    assert R.language(prompts, ["只用中文"]) == [1.0] and R.language(prompts, ["123"]) == [0.0]
