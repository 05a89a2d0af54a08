"""Reward functions and answer extraction: crafted completions and real GSM8K rows."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest

from trainer import data as D
from trainer import recipes as RC
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


Q = [[{"role": "system", "content": D.SYSTEM_PROMPT_ZH},
      {"role": "user", "content": "小明有 16 个鸡蛋，吃了 3 个，送人 4 个，剩下的每个卖 2 元，能卖多少元？"}]]


def test_format_rewards_pay_only_shown_work():
    texts = [GOOD, "<think>想一想：16-3-4=9，9×2=18</think> <answer>18</answer>", "18",
             "<think>16-3-4=9, 9*2=18</think><answer>1</answer><answer>18</answer>", "",
             "pre <think>16-3-4=9, 9*2=18</think><answer>18</answer>",
             "<think>Let me think step by step.</think><answer>18</answer>",       # a heading, no numbers
             "<think>小明有 16 个鸡蛋</think><answer>18</answer>",                     # copies the question
             "<think>16-3-4=9, 9*2=18</think><answer></answer>"]                   # empty answer
    prompts = Q * len(texts)
    assert R.strict_format(prompts, texts) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert R.soft_format(prompts, texts) == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    xml = R.xml_count(prompts, [conv(t) for t in texts])
    assert xml[0] == 1.0 and xml[2] == 0.0 and xml[4] == 0.0 and xml[6:] == [0.0, 0.0, 0.0]
    assert xml[3] < xml[0]                                           # repeated tags earn less
    assert R.xml_count(Q, [GOOD + " trailing junk"])[0] < 1.0         # text after </answer>


def test_integer_and_boxed():
    texts = ["<think>16-3-4=9, 9*2=18</think><answer>18</answer>", "<think>16-3-4=9, 9*2=18</think><answer>18 元</answer>",
             "<think>16-3-4=9, 9/4=2.5</think><answer>2.5</answer>", "<think>16/4=4</think><answer>3 or 4</answer>",
             "18", "<think>a</think><answer>18</answer>"]
    assert R.integer(Q * 6, texts) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert R.boxed(None, [r"\boxed{1,000}", r"\boxed{9}", "1000"], answer=["1000"] * 3) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("text, gold, expected", [
    ("5万", "50000", True), ("5", "50000", False), ("1.2亿", "120000000", True), ("五", "5", True),
    ("七十二", "72", True), ("一百零五", "105", True), ("两千", "2000", True), ("1.5 million", "1500000", True),
    ("2 billion", "2000000000", True), ("2000001", "2000000", False), ("2000000", "2000000", True),
    ("3:30", "3.5", True), ("3:30", "30", False), ("0.33", "1/3", True), ("0.3", "1/3", True),
    ("0.34", "1/3", False), ("18.0001", "18", False), ("", "18", False),
])
def test_numbers_match_issue_cases(text, gold, expected):
    assert R.numbers_match(text, gold) is expected


def test_empty_answer_never_falls_back_to_the_text():
    from trainer.evaluate import lenient_answer, score

    text = "<think>16-3-4=9, 9*2=18</think><answer></answer> 18"
    assert R.correctness(None, [text], answer=["18"]) == [0.0]
    assert lenient_answer(text) == "" and score([text], ["18"])["lenient_accuracy"] == 0.0
    assert score(["... so 18"], ["18"])["lenient_accuracy"] == 1.0      # no tag at all: the last number


def test_cold_start_shaping_gives_variance_without_tags():
    """A group where no completion writes tags has zero variance under every other format reward;
    one sample that closes an answer tag gets more under answer_tag: a gradient."""
    group = ["我们来算一下鸡蛋", "一共是18元", "<answer>18", "答案 <answer>18</answer>"]
    shaped = R.answer_tag(Q * 4, group)
    assert shaped[0] == shaped[1] == 0.0 < shaped[2] < shaped[3]
    for f in (R.strict_format, R.soft_format, R.integer):
        assert len(set(f(Q * 2, group[:2]))) == 1


def test_doctest_tables():
    import doctest

    from trainer import data, evaluate, numerals

    for module in (R, numerals, data, evaluate):
        failed, attempted = doctest.testmod(module)
        assert attempted and not failed, module.__name__


def weighted(recipe, prompts, completions, gold) -> float:
    total = 0.0
    for name, weight in recipe.rewards.items():
        value = R.REWARDS[name](prompts, completions, answer=[gold], question=[prompts[0][-1]["content"]])[0]
        total += weight * (value or 0.0)
    return total


def test_template_copies_earn_less_than_half_a_correct_answer_under_every_recipe(shared_data):
    """The reward hack of issue 15: copying the prompt's format text (old template, the new worked
    example, with a guessed integer) against a correct answer, on real questions and prompts."""
    rows = D.load_examples(str(shared_data / "gsm8k_zh"), split="train", limit=20)
    bench = RC.RECIPES_DIR.parents[1] / "bench" / "recipes"
    recipes = [RC.load(p, trl_check=False) for p in sorted([*RC.RECIPES_DIR.glob("*.yaml"), *bench.glob("*.yaml")])]
    # grounded recipes train on knowledge-base tasks, not these math rows (their copy test: test_trainer_grounded)
    recipes = [r for r in recipes if not set(r.rewards) & {"grounded_answer", "citation", "refusal", "answer_format"}]
    assert len(recipes) >= 3
    example = "<think>每盒 6 个，有 4 盒，6 × 4 = 24，一共 24 个。</think><answer>24</answer>"
    for ex in rows:
        gold, prompts = ex["answer"], [ex["prompt"]]
        guess = str(R.parse_number(gold) + 1)
        correct = f"<think>\n{ex['solution'].split('####')[0].strip()}\n</think>\n<answer>\n{gold}\n</answer>"
        copies = ["<think> reasoning process here </think><answer> answer here </answer>",
                  f"<think> reasoning process here </think><answer> {guess} </answer>",
                  example, example.replace("<answer>24", f"<answer>{guess}"),
                  f"先写推理过程：以 <think> 开始，写出每一步的算式和得数，以 </think> 结束；<answer>{guess}</answer>",
                  f"<think>{ex['question']}</think><answer>{guess}</answer>"]
        lucky = example.replace("<answer>24", f"<answer>{gold}")
        for recipe in recipes:
            good = weighted(recipe, prompts, [correct], gold)
            for copy in copies:
                assert weighted(recipe, prompts, [copy], gold) < good / 2, (recipe.name, copy)
            assert weighted(recipe, prompts, [lucky], gold) < good, recipe.name


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
    right = [f"<think>step {i}</think><answer>{g} 元</answer>" for i, g in enumerate(golds)]  # correctness only
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
