"""GRPO runs on the tiny random Qwen2: CLI smoke + SIGTERM + resume, a learning test, KL path."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [("小明有 3 个苹果，又买了 5 个，一共有多少个？", "8"), ("Tom has 12 pens and gives 4 away. How many are left?", "8"),
             ("一本书 20 元，买 3 本要多少元？", "60"), ("A box holds 6 eggs. How many eggs are in 4 boxes?", "24")] * 4
PROGRESS_KEYS = {"step", "total_steps", "rewards", "reward", "reward_std", "completion_length", "learning_rate",
                 "step_time", "time"}


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.jsonl"
    path.write_text("\n".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) for q, a in QUESTIONS),
                    encoding="utf-8")
    return path


def env_for(home: Path) -> dict:
    env = {**os.environ, "TQTS_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return env


def trainer_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--recipe", "smoke-cpu", "--allow-cpu", *args]


def read_progress(run: Path) -> list[dict]:
    lines = (run / "progress.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]  # every line must parse


def wait_for_steps(proc, run: Path, n: int, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run / "progress.jsonl").exists() and len(read_progress(run)) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"no {n} progress lines (rc={proc.poll()}): {proc.stdout.read() if proc.poll() else ''}")


def test_train_refuses_cpu_without_flag(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: training is not refused")
    cmd = [sys.executable, "-m", "trainer", "train", "--recipe", "smoke-cpu", "--model", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, env=env_for(tmp_path / "home"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--allow-cpu" in out.stderr
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


@pytest.mark.slow
def test_smoke_sigterm_then_resume(tmp_path, tiny_qwen_dir):
    """SIGTERM mid-run leaves a checkpoint and status stopped; --resume continues from its step."""
    from safetensors.torch import load_file

    data = write_data(tmp_path / "data")
    run, env = tmp_path / "run", env_for(tmp_path / "home")
    args = ["--model", str(tiny_qwen_dir), "--dataset", str(data), "--output", str(run)]
    proc = subprocess.Popen(trainer_cmd(*args, "--max-steps", "50"), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_steps(proc, run, 3)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, log
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    stopped_at = info["global_step"]
    assert info["status"] == "stopped" and info["output"] == "lora" and info["cpu_peak_mb"] > 0
    assert info["stop"]["reason"] == "user" and info["stop"]["step"] == info["global_step"]
    assert f"checkpoint-{info['global_step']}" in info["stop"]["detail"]
    first_started, first_evals = info["started"], info["evaluations"]
    assert first_evals and all(e["questions"] == 4 for e in first_evals)     # validation held out of train
    assert (run / f"checkpoint-{stopped_at}" / "adapter_model.safetensors").exists()
    assert 3 <= stopped_at < 50 and not (run / "final").exists()
    progress = read_progress(run)
    assert all(PROGRESS_KEYS <= set(p) for p in progress) and "correctness" in progress[0]["rewards"]
    assert any("eval_accuracy" in p for p in progress)  # smoke recipe evaluates every 2 steps
    assert (run / "best" / "adapter_config.json").exists()
    assert all(json.loads(line)["completion"] is not None
               for line in (run / "samples.jsonl").read_text(encoding="utf-8").splitlines())

    out = subprocess.run(trainer_cmd(*args, "--max-steps", str(stopped_at + 2), "--resume"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"resuming from {run / f'checkpoint-{stopped_at}'}" in out.stdout
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "finished" and info["global_step"] == stopped_at + 2
    assert info["started"] == first_started and len(info["attempts"]) == 2       # --resume keeps the history
    assert info["evaluations"][:len(first_evals)] == first_evals and info["stop"]["reason"] == "end"
    steps = [p["step"] for p in read_progress(run)]
    assert steps[-2:] == [stopped_at + 1, stopped_at + 2]
    weights = load_file(run / "final" / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero: the weights moved
    cfg = json.loads((run / "final" / "adapter_config.json").read_text(encoding="utf-8"))
    assert Path(cfg["base_model_name_or_path"]).resolve() == Path(tiny_qwen_dir).resolve()
    assert not (run / "final" / "training_args.bin").exists() and (run / "final" / "tokenizer.json").exists()
    assert_registers(run / "final", tmp_path / "home", tiny_qwen_dir)


def assert_registers(folder: Path, home: Path, base: Path) -> None:
    """The output loads through models.registry.register_trained (when that module exists)."""
    registry = pytest.importorskip("models.registry", reason="models.registry not written yet")
    import settings as settings_mod

    entry = registry.ModelRegistry(settings_mod.load(home)).register_trained(folder, name="smoke")
    assert entry.kind == "trained" and Path(entry.adapter) == folder.resolve()
    assert Path(entry.path).resolve() == Path(base).resolve()


def write_recipe(path: Path, data: Path, **grpo) -> Path:
    import yaml

    base = {"use_cpu": True, "bf16": False, "learning_rate": 1.0e-2, "lr_scheduler_type": "constant",
            "per_device_train_batch_size": 8, "num_generations": 8, "max_completion_length": 8, "max_steps": 30,
            "logging_steps": 1, "save_steps": 1000, "beta": 0.0, "seed": 0, "temperature": 1.0,
            "gradient_checkpointing": False}
    recipe = {"dataset": str(data), "max_prompt_tokens": 0, "eval_every": 0, "rewards": {"toy_cjk": 1.0},
              "lora": False, "use_vllm": False, "grpo": {**base, **grpo}}
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def toy_cjk(prompts, completions, **kwargs) -> list[float]:
    """Toy verifiable reward: share of CJK characters in the reply."""
    from trainer.rewards import completion_text

    texts = [completion_text(c) for c in completions]
    return [sum("\u4e00" <= ch <= "\u9fff" for ch in t) / max(len(t), 1) for t in texts]


def run_in_process(tmp_path, monkeypatch, tiny_qwen_dir, recipe: Path, *extra) -> Path:
    import settings as settings_mod
    from trainer import rewards
    from trainer.cli import build_parser
    from trainer.train import main

    monkeypatch.setitem(rewards.REWARDS, "toy_cjk", toy_cjk)
    run = tmp_path / "run"
    args = build_parser().parse_args(["train", "--recipe", str(recipe), "--model", str(tiny_qwen_dir),
                                      "--output", str(run), "--allow-cpu", *extra])
    assert main(args, settings_mod.load(tmp_path / "home")) == 0
    return run


@pytest.mark.slow
def test_grpo_learns_a_toy_reward(tmp_path, monkeypatch, tiny_qwen_dir):
    """Full fine-tuning, fixed seed: the mean reward of the last 5 steps is clearly above the first 5."""
    data = write_data(tmp_path / "data")
    run = run_in_process(tmp_path, monkeypatch, tiny_qwen_dir, write_recipe(tmp_path / "toy.yaml", data))
    rewards = [p["reward"] for p in read_progress(run)]
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.2, rewards
    assert (run / "final" / "model.safetensors").exists()  # full weights, not an adapter


def test_full_finetune_with_kl_logs_kl(tmp_path, monkeypatch, tiny_qwen_dir):
    """beta > 0 without LoRA: the reference model is loaded from the path and KL is logged."""
    data = write_data(tmp_path / "data")
    recipe = write_recipe(tmp_path / "kl.yaml", data, beta=0.04, max_steps=2, num_generations=4,
                          per_device_train_batch_size=4)
    run = run_in_process(tmp_path, monkeypatch, tiny_qwen_dir, recipe)
    progress = read_progress(run)
    assert [p["step"] for p in progress] == [1, 2] and all(p["kl"] is not None for p in progress)
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["output"] == "full" and info["status"] == "finished"


def test_cli_overrides_and_cpu_switch_bf16_off():
    from trainer import recipes
    from trainer.cli import build_parser
    from trainer.train import apply_overrides

    args = build_parser().parse_args(["train", "--recipe", "tqts-default", "--epochs", "2", "--no-lora"])
    recipe = apply_overrides(recipes.load("tqts-default"), args, on_cpu=True)
    g = recipe.grpo
    assert (g["bf16"], g["use_cpu"], g["num_train_epochs"], g["max_steps"]) == (False, True, 2.0, -1)
    assert recipe.lora.enabled is False
    args = build_parser().parse_args(["train", "--recipe", "smoke-cpu", "--max-steps", "7", "--lora"])
    recipe = apply_overrides(recipes.load("smoke-cpu"), args, on_cpu=False)
    assert recipe.grpo["max_steps"] == 7 and recipe.lora.enabled


def test_vllm_only_when_asked_and_trl_refusals_in_our_words(tmp_path):
    from trainer import recipes
    from trainer.train import TrainError, grpo_config, use_vllm

    recipe = recipes.load("smoke-cpu")
    assert use_vllm(recipe, on_cpu=True) is False and use_vllm(recipe, on_cpu=False) is False  # default off
    recipe.use_vllm = True
    with pytest.raises(TrainError, match="needs a CUDA GPU"):
        use_vllm(recipe, on_cpu=True)
    bad = recipes.load("smoke-cpu")
    bad.grpo.update(num_generations=3)                                   # 4 completions: not whole groups of 3
    with pytest.raises(TrainError, match="TRL refused these settings.*num_generations"):
        grpo_config(bad, tmp_path, on_cpu=True)
    cfg = grpo_config(recipes.load("smoke-cpu"), tmp_path, on_cpu=True)
    assert cfg.output_dir == str(tmp_path) and cfg.model_init_kwargs["dtype"] is __import__("torch").float32


def test_lora_last_layers_adapts_only_the_top_layers(tiny_qwen_dir):
    """``lora.last_layers: N`` puts the adapter on the top N decoder layers only (the CPU recipe's
    backward pass then stops there); 0 adapts every layer; the real CPU recipe loads with it."""
    import dataclasses

    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from trainer import recipes
    from trainer.train import peft_config

    n = AutoConfig.from_pretrained(tiny_qwen_dir).num_hidden_layers
    base = recipes.load("grounded-cpu-smoke")
    top = dataclasses.replace(base, lora=dataclasses.replace(base.lora, enabled=True, last_layers=1))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen_dir), peft_config(top, tiny_qwen_dir))
    adapted = {int(name.split(".layers.")[1].split(".")[0]) for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {n - 1}
    every = dataclasses.replace(top, lora=dataclasses.replace(top.lora, last_layers=0))
    assert peft_config(every, tiny_qwen_dir).layers_to_transform is None
    assert recipes.load(str(Path(__file__).parent.parent / "bench/recipes/grounded-real-cpu.yaml")).lora.last_layers == 8
