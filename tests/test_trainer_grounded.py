"""Grounded GRPO: rewards, the shared prompt, task data (stages, mix), eval scoring, CPU smoke run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer import grounded as G

PASSAGES = [{"source": "/d/plan.pdf", "page": 3, "text": "密切接触者应当集中隔离医学观察14天。"},
            {"source": "/d/plan.pdf", "page": 9, "text": "发热门诊实行24小时值班制度。"},
            {"source": "/d/trustee.docx", "page": None, "text": "The filing fee is $313 for each debtor."}]


def task(question="密切接触者应当集中隔离医学观察多少天？", answers=("14天",), gold=1, support=(1,), split="train",
         kind="number", passages=PASSAGES, tid="t") -> dict:
    return {"id": tid, "kind": kind, "lang": "zh", "question": question, "answers": list(answers),
            "passages": passages, "gold": gold, "support": list(support), "n_passages": len(passages),
            "doc": "plan.pdf", "split": split, "evidence": ""}


def cols(*tasks) -> dict:
    return {"answers": [t["answers"] for t in tasks], "gold": [t["gold"] for t in tasks],
            "support": [t["support"] for t in tasks], "n_passages": [t["n_passages"] for t in tasks]}


# -- rewards ------------------------------------------------------------------------------------

@pytest.mark.parametrize("completion, answers, gold, expected", [
    ("<think>资料[1]说14天</think><answer>14天 [1]</answer>", ["14天"], 1, 1.0),
    ("<answer>十四天 [1]</answer>", ["14天"], 1, 0.0),             # Chinese numeral: not the stated form
    ("<answer>需要观察 14 天[1]。</answer>", ["14天"], 1, 1.0),        # spaces and citation ignored
    ("<answer>The fee is $313 [3].</answer>", ["$313"], 3, 1.0),
    ("<answer>$1,313</answer>", ["$313"], 3, 0.0),
    ("<answer>资料中没有。</answer>", ["14天"], 1, 0.0),
    ("<answer>14天</answer>", ["14天"], 0, None),                  # refusal task: judged by `refusal`
])
def test_grounded_answer(completion, answers, gold, expected):
    t = task(answers=answers, gold=gold, support=[gold] if gold else [])
    assert G.grounded_answer(None, [completion], **cols(t)) == [expected]


@pytest.mark.parametrize("answer, support, expected", [
    ("14天 [1]", [1], 1.0), ("14天 [1][2]", [1], 0.667), ("14天 [2]", [1], 0.0), ("14天", [1], 0.0),
    ("14天 [1][3]", [1, 3], 1.0), ("14天 [9]", [1], 0.0),              # [9] is not a shown passage
])
def test_citation(answer, support, expected):
    t = task(support=support)
    assert G.citation(None, [f"<answer>{answer}</answer>"], **cols(t)) == [expected]


def test_refusal_and_format_and_non_grounded_rows():
    answerable, unanswerable = task(), task(gold=0, support=[])
    gsm8k = {"answers": [], "gold": 0, "support": [], "n_passages": 0}
    completions = ["<answer>资料中没有相关内容。</answer>", "<answer>Not in the sources.</answer>", "<answer>14天[1]</answer>",
                   "<answer>8</answer>"]
    c = {k: cols(answerable, unanswerable, unanswerable)[k] + [gsm8k[k]] for k in gsm8k}
    assert G.refusal(None, completions, **c) == [0.0, 1.0, 0.0, None]
    assert G.answer_format(None, completions, **c) == [1.0, 1.0, 1.0, None]
    assert G.grounded_answer(None, completions, **c) == [0.0, None, None, None]
    assert G.citation(None, completions, **c) == [0.0, None, None, None]


def test_registered_by_name_and_gsm8k_rewards_skip_grounded_rows():
    from trainer.rewards import REWARDS, correctness, get_reward_funcs

    assert get_reward_funcs(["grounded_answer", "citation", "refusal", "answer_format"]) == \
        [G.grounded_answer, G.citation, G.refusal, G.answer_format]
    assert {"correctness", "language"} <= set(REWARDS)
    assert correctness(None, ["<answer>14</answer>"], answer=[""]) == [None]  # grounded rows carry answer ""


# -- the shared prompt --------------------------------------------------------------------------

def test_trainer_and_answer_service_build_the_same_prompt(settings):
    from models.answer import AnswerService, Source
    from tests.test_answer_service import ScriptedBackend
    from trainer.grounded_data import task_example

    t = task()
    sources = [Source(i, p["source"], p["page"], p["text"], 1.0) for i, p in enumerate(t["passages"], 1)]
    service = AnswerService(settings, kb_service=None, backend=ScriptedBackend([], context_tokens=100_000))
    messages, _ = service.build_messages(t["question"], sources, service.backend(), think=True)
    assert task_example(t, think=True)["prompt"] == messages
    assert "[2] plan.pdf, p. 9" in messages[-1]["content"] and messages[-1]["content"].endswith(t["question"])


# -- task data: stages, mix, fitting ------------------------------------------------------------

def write_tasks(path: Path, tasks: list[dict]) -> Path:
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks), encoding="utf-8")
    return path


def recipe_with(**kw):
    from trainer import recipes

    r = recipes.load("grounded-cpu-smoke")
    for k, v in kw.items():
        setattr(r, k, v)
    return recipes.validate(r)


def test_stages_come_in_order_and_mix_is_interleaved(tmp_path):
    from trainer.grounded_data import is_tasks_file, train_examples

    tasks = [task(tid=f"a{i}", question=f"问题{i}？") for i in range(6)] + \
            [task(tid=f"r{i}", question=f"拒答{i}？", gold=0, support=[]) for i in range(3)] + \
            [task(tid="h", split="heldout")]
    path = write_tasks(tmp_path / "tasks.jsonl", tasks)
    assert is_tasks_file(path) and not is_tasks_file(tmp_path / "nope.jsonl")
    recipe = recipe_with()
    assert recipe.grpo["shuffle_dataset"] is False and recipe.grpo["max_steps"] == 4
    rows = train_examples(recipe, str(path))
    assert len(rows) == 4                                              # 4 steps x (4 / 4) prompts
    assert all(r["gold"] > 0 for r in rows[:2])                        # stage 1: answerable only
    assert all(r["id"] != "h" for r in rows)                           # held-out tasks never trained on
    recipe = recipe_with(stages=[{"name": "all", "steps": 40, "refusal": True}], mix_ratio=0.5,
                         mix_dataset="gsm8k", grpo={**recipe.grpo, "max_steps": -1})
    mix = [{"prompt": [{"role": "user", "content": "1+1?"}], "question": "1+1?", "answer": "2", "solution": ""}]
    rows = train_examples(recipe, str(path), mix=mix)
    kinds = [r["kind"] for r in rows]
    assert len(rows) == 40 and 8 <= kinds.count("gsm8k") <= 32 and any(r["gold"] == 0 for r in rows)
    assert {r["n_passages"] for r in rows if r["kind"] == "gsm8k"} == {0}


def test_recipe_refuses_bad_stages_and_non_task_data(tmp_path):
    from trainer.grounded_data import check_dataset

    with pytest.raises(ValueError, match="add up to 5 steps"):
        recipe_with(stages=[{"name": "a", "steps": 5, "refusal": False}], grpo={"max_steps": 7,
                                                                              "per_device_train_batch_size": 4,
                                                                              "num_generations": 4})
    with pytest.raises(ValueError, match="mix_dataset"):
        recipe_with(mix_ratio=0.3)
    with pytest.raises(ValueError, match="python -m trainer tasks"):
        check_dataset(recipe_with(), "../shared/data/gsm8k_zh")


def test_fit_task_drops_passages_without_the_answer(tiny_qwen_dir):
    from transformers import AutoTokenizer

    from trainer.grounded_data import fit_task

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    long = {"source": "/d/x.pdf", "page": 1, "text": "无关内容。" * 200}
    t = task(passages=[long, PASSAGES[1], PASSAGES[0]], gold=3, support=[3])
    fitted = fit_task(t, tok, max_tokens=400, think=True)
    assert fitted["passages"][fitted["gold"] - 1]["text"] == PASSAGES[0]["text"]
    assert long not in fitted["passages"] and fitted["support"] == [fitted["gold"]]



def test_fit_task_trims_a_gold_passage_too_long_for_the_limit_around_its_answer(tiny_qwen_dir):
    """A single chunk can be ~1,200 tokens: the prompt limit is still hard, and the trimmed gold
    passage keeps its answer."""
    from transformers import AutoTokenizer

    from models.prompts import grounded_messages
    from trainer.grounded_data import _count, fit_task

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    gold = {"source": "/d/plan.pdf", "page": 3,
            "text": "前言内容很长。" * 150 + PASSAGES[0]["text"] + "附录内容也很长。" * 150}
    t = task(passages=[PASSAGES[1], gold], gold=2, support=[2])
    limit = _count(tok, grounded_messages(t["question"], [PASSAGES[0]], False)) + 80
    assert _count(tok, grounded_messages(t["question"], t["passages"], False)) > limit + 1000
    fitted = fit_task(t, tok, max_tokens=limit, think=False)
    assert _count(tok, grounded_messages(fitted["question"], fitted["passages"], False)) <= limit
    kept = fitted["passages"][fitted["gold"] - 1]["text"]
    assert "14天" in kept and kept.startswith("…") and kept.endswith("…")
    assert t["passages"][1]["text"] == gold["text"]          # the caller's task is not changed

# -- evaluation ---------------------------------------------------------------------------------

def test_score_tasks():
    from trainer.grounded_data import task_example
    from trainer.grounded_eval import score_tasks

    examples = [task_example(t) for t in (task(), task(), task(gold=0, support=[]), task(gold=0, support=[]))]
    texts = ["<think>x</think><answer>14天 [1]</answer>", "<answer>资料中没有。</answer>",
             "<answer>资料中没有。</answer>", "<answer>14天 [2]</answer>"]
    r = score_tasks(texts, examples)
    assert (r["answerable"], r["unanswerable"], r["correct"], r["cited_right"]) == (2, 2, 0.5, 0.5)
    assert (r["refused_right"], r["over_refusal"], r["format"]) == (0.5, 0.5, 1.0)


# -- CPU smoke: tasks file -> two-stage GRPO on the tiny model -> held-out eval -------------------

def test_grounded_cpu_smoke_end_to_end(tmp_path, tiny_qwen_dir):
    from safetensors.torch import load_file

    import settings as settings_mod
    from trainer.cli import build_parser
    from trainer.grounded_eval import evaluate_tasks
    from trainer.train import main

    tasks = [task(tid=f"a{i}", question=f"问题{i}：密切接触者应当集中隔离医学观察多少天？") for i in range(4)] + \
            [task(tid=f"r{i}", question=f"拒答{i}？", gold=0, support=[]) for i in range(2)] + \
            [task(tid="h1", split="heldout"), task(tid="h2", gold=0, support=[], split="heldout")]
    data = write_tasks(tmp_path / "tasks.jsonl", tasks)
    run = tmp_path / "run"
    args = build_parser().parse_args(["train", "--recipe", "grounded-cpu-smoke", "--model", str(tiny_qwen_dir),
                                      "--dataset", str(data), "--output", str(run), "--allow-cpu"])
    assert main(args, settings_mod.load(tmp_path / "home")) == 0
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "finished" and info["global_step"] == 4
    progress = [json.loads(line) for line in (run / "progress.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [p["step"] for p in progress] == [1, 2, 3, 4]
    assert {"grounded_answer", "citation", "refusal", "answer_format"} <= set(progress[0]["rewards"])
    weights = load_file(run / "final" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)   # the adapter moved

    report = evaluate_tasks(str(tiny_qwen_dir), str(data), adapter=str(run / "final"), max_new_tokens=8,
                            think=False, progress=False)
    assert (report["n"], report["answerable"], report["unanswerable"]) == (2, 1, 1)
    assert report["format"] is not None and 0.0 <= report["refused_right"] <= 1.0


@pytest.mark.parametrize("text, refused", [
    ("资料中没有提到这一点。", True), ("在知识库「手册」中没有找到相关内容。", True), ("The sources do not say.", True),
    ("Nothing relevant was found in the knowledge base.", True),
    ("HashMap 不包含重复的键 [1]。", False), ("The list does not contain duplicates [2].", False), ("14天 [1]", False),
])
def test_refusal_phrases(text, refused):
    assert G.is_refusal(text) is refused


def test_max_steps_scales_the_stages():
    from trainer import recipes
    from trainer.cli import build_parser
    from trainer.train import apply_overrides

    args = build_parser().parse_args(["train", "--recipe", "grounded-kb", "--max-steps", "10"])
    recipe = apply_overrides(recipes.load("grounded-kb"), args, on_cpu=True)
    assert [s["steps"] for s in recipe.stages] == [6, 4] and recipe.grpo["max_steps"] == 10
    assert [s["refusal"] for s in recipe.stages] == [False, True]


def test_copying_the_prompt_earns_less_than_half_a_grounded_answer():
    """The reward hack of issue 15, for the grounded recipes: copying the prompt's own text (its
    format instructions, a passage, the question) or refusing an answerable task earns less than
    half of a correct, cited answer; a refusal earns the most on a task without the answer."""
    from models.prompts import grounded_messages
    from trainer import recipes as RC
    from trainer.rewards import REWARDS

    passages = [{"source": "宪法.pdf", "page": 12, "text": "全国人民代表大会每届任期五年。", "section": "第三章"},
                {"source": "宪法.pdf", "page": 4, "text": "中华人民共和国的国家机构实行民主集中制的原则。"}]
    prompt = grounded_messages("全国人民代表大会每届任期几年？", passages, think=True)
    system, user = prompt[0]["content"], prompt[-1]["content"]
    cols = {"answers": [["五年"]], "gold": [1], "support": [[1]], "n_passages": [2]}
    correct = "<think>资料[1]说每届任期五年。</think><answer>全国人民代表大会每届任期五年。[1]</answer>"
    copies = [f"<think>{system}</think><answer>{system[-60:]}</answer>",
              f"<think></think><answer>{user}</answer>",
              "<think>全国人民代表大会每届任期几年？</think><answer>全国人民代表大会每届任期几年？[1]</answer>",
              "<think>资料中没有。</think><answer>资料中没有相关内容。</answer>",
              "<think></think><answer></answer>"]
    bench = RC.RECIPES_DIR.parents[1] / "bench" / "recipes"        # + the real-model CPU run's recipe
    files = sorted(RC.RECIPES_DIR.glob("grounded-*.yaml")) + sorted(bench.glob("grounded-*.yaml"))
    recipes = [RC.load(p, trl_check=False) for p in files]
    assert len(recipes) >= 3, files

    def weighted(recipe, completion, **columns):
        return sum(w * (REWARDS[n]([prompt], [completion], **columns)[0] or 0.0) for n, w in recipe.rewards.items())

    for recipe in recipes:
        good = weighted(recipe, correct, **cols)
        assert good > 0
        for copy in copies:
            assert weighted(recipe, copy, **cols) < good / 2, (recipe.name, copy[:40])
        no_gold = {"answers": [["五年"]], "gold": [0], "support": [[]], "n_passages": [2]}
        assert weighted(recipe, copies[3], **no_gold) > weighted(recipe, correct, **no_gold), recipe.name


def test_max_passages_keeps_the_gold_and_answer_passages_renumbered():
    from trainer.grounded_data import fit_task

    other = {"source": "/d/x.pdf", "page": 2, "text": "无关内容。"}
    t = task(passages=[other, PASSAGES[1], PASSAGES[0], other, PASSAGES[0]], gold=3, support=[3, 5])
    fitted = fit_task(t, max_passages=3)
    assert fitted["n_passages"] == len(fitted["passages"]) == 3
    assert [p["text"] for p in fitted["passages"]] == [other["text"], PASSAGES[0]["text"], PASSAGES[0]["text"]]
    assert (fitted["gold"], fitted["support"]) == (2, [2, 3])
    assert fit_task(t, max_passages=1)["passages"] == fitted["passages"][1:] or \
        len(fit_task(t, max_passages=1)["passages"]) == 2          # never below the answer's passages
    refusal = task(passages=[other, PASSAGES[1], other, PASSAGES[1]], gold=0, support=[])
    assert fit_task(refusal, max_passages=3)["n_passages"] == 3
    assert t["n_passages"] == 5                                    # the task itself is untouched


def test_data_mix_from_the_command_line_adds_the_math_reward():
    from types import SimpleNamespace

    from trainer import recipes
    from trainer.train import apply_overrides

    args = SimpleNamespace(max_steps=None, epochs=None, lora=None, mix_dataset="../shared/data/gsm8k_zh",
                           mix_ratio=None)
    r = apply_overrides(recipes.load("grounded-cpu-smoke"), args, on_cpu=True)
    assert (r.mix_dataset, r.mix_ratio) == ("../shared/data/gsm8k_zh", 0.25)
    assert r.rewards["correctness"] == 1.0 and r.rewards["grounded_answer"] == 2.0
    plain = apply_overrides(recipes.load("grounded-cpu-smoke"), SimpleNamespace(
        max_steps=None, epochs=None, lora=None, mix_dataset=None, mix_ratio=None), on_cpu=True)
    assert plain.mix_ratio == 0.0 and "correctness" not in plain.rewards
