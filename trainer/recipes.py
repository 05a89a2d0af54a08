"""Recipes: one YAML file per training setup, validated, mapped onto TRL's ``GRPOConfig``.

A recipe has our own top-level fields (:class:`Recipe`) and a ``grpo:`` mapping whose keys are
``trl.GRPOConfig`` fields passed through unchanged (``learning_rate``, ``beta``, ``loss_type``,
``num_generations``, ...). Unknown keys and keys TRL 1.16 removed are refused with a message
saying what to change; the rest of the ``grpo:`` check is TRL's own: :func:`check_grpo` builds a
``trl.GRPOConfig`` (its ``__post_init__`` knows the batch rules, ``steps_per_generation``, the
process count) and reports its refusal in our words.

Listing recipes (:func:`list_recipes`, ``python -m trainer recipes``, the app's Retrain dialog)
skips that check, so it never imports TRL or torch.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer.rewards import DEFAULT_WEIGHTS, REWARDS

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

#: GRPOConfig keys that older tutorials use but TRL 1.16 removed, with what to use instead.
REMOVED_KEYS = {
    "max_prompt_length": "TRL 1.16 dropped it; set our top-level `max_prompt_tokens` instead",
    "no_cuda": "TRL 1.16 dropped it; set `use_cpu: true` in `grpo:`",
    "warmup_ratio": "transformers 5 dropped it; set `warmup_steps: 0.1` (a float < 1 is a ratio)",
}
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")


@dataclass
class LoraSettings:
    """LoRA adapter (peft). ``enabled: false`` trains all weights (full fine-tuning)."""

    enabled: bool = True
    r: int = 16                     # rank
    alpha: int = 32                 # scaling numerator (scale = alpha / r)
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # Only the last N decoder layers get the adapter (0 = all): the backward pass then stops at
    # the lowest adapted layer, so a CPU step costs about (1 + 3N/L)/4 of all L layers'.
    last_layers: int = 0


@dataclass
class Recipe:
    """A training recipe (see trainer/recipes/*.yaml for commented examples).

    Attributes:
        name: recipe name (defaults to the file stem).
        description: one line shown by ``python -m trainer recipes``.
        model: registry name, local folder or hub id (``--model`` overrides).
        dataset: data spec (file, folder, hub id; see trainer.data) for training.
        dataset_split: split used for training.
        fields: explicit column mapping ``{question, answer, solution}``; {} = detect.
        max_prompt_tokens: prompts longer than this are cut by us (0 = no limit).
        eval_data: held-out *test* data for the final comparison (``python -m trainer eval``, the
            Retrain dialog's Compare); "" = the ``eval_split`` of ``dataset``. Never seen by the guard.
        eval_split: split of ``eval_data``.
        system_prompt: "auto" (Chinese for Chinese questions, else English; see trainer.data),
            "zh", "en", "r1" (the old R1-Zero template, for comparison), "none", or a text.
        eval_every: evaluate greedy accuracy every N steps (0 = never).
        eval_questions: validation questions per evaluation. They are held out of the *training*
            split (its last ``eval_questions`` rows, never trained on); the test split stays
            unseen until the final comparison (``python -m trainer eval``).
        eval_max_new_tokens: generation budget during evaluation (0 = max_completion_length).
        early_stop_patience: the collapse guard: stop after this many evaluations in a row whose
            accuracy is below ``best - early_stop_margin`` (0 = off). A tie never counts.
        early_stop_margin: how far below the best accuracy counts as a drop (absolute, 0..1).
            With n validation questions one question is 1/n; the default 0.1 is 4 of 40.
        rewards: reward name -> weight (names from trainer.rewards.REWARDS).
        lora: LoRA settings.
        use_vllm: false (default: generation with transformers) or true (vLLM colocate; needs
            CUDA and a vllm release built for the installed torch, checked at start).
        train_size: keep the first N training rows (0 = all).
        grpo: GRPOConfig fields, passed through.
        think: grounded tasks only: the prompt asks for ``<think>`` reasoning (as the app's
            ``think`` setting does).
        stages: grounded tasks only: curriculum ``[{name, steps, refusal: bool}, ...]`` run in
            order in one run (see trainer.grounded_data); steps must add up to ``max_steps``
            (filled in when absent) and TRL's shuffling is turned off.
        mix_dataset: a gsm8k data spec whose examples are mixed into grounded training.
        mix_ratio: share of training prompts taken from ``mix_dataset`` (0-1).
        max_passages: grounded tasks only: show at most this many passages per prompt (the
            gold one and those holding the answer are kept; 0 = all of the task's 3-5).
    """

    name: str = ""
    description: str = ""
    model: str = "Qwen/Qwen2.5-0.5B-Instruct"
    dataset: str = "swulling/gsm8k_chinese"
    dataset_split: str = "train"
    fields: dict = field(default_factory=dict)
    max_prompt_tokens: int = 256
    eval_data: str = ""
    eval_split: str = "test"
    system_prompt: str = "auto"
    eval_every: int = 25
    eval_questions: int = 40
    eval_max_new_tokens: int = 0
    early_stop_patience: int = 0
    early_stop_margin: float = 0.1
    rewards: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    lora: LoraSettings = field(default_factory=LoraSettings)
    use_vllm: Any = False
    train_size: int = 0
    grpo: dict = field(default_factory=dict)
    think: bool = True
    stages: list = field(default_factory=list)
    mix_dataset: str = ""
    mix_ratio: float = 0.0
    max_passages: int = 0


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(data: dict, known, where: str, removed: dict = REMOVED_KEYS) -> None:
    for key in data:
        if key in removed:
            raise ValueError(f"{where}: `{key}`: {removed[key]}")
        if key not in known:
            raise ValueError(f"{where}: unknown field `{key}`{_suggest(key, known)}; known: {', '.join(sorted(known))}")


def grpo_field_names() -> set[str]:
    """Names accepted under ``grpo:`` (the fields of trl.GRPOConfig)."""
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig)}


def check_grpo(recipe: Recipe, where: str = "recipe", on_cpu: bool | None = None):
    """Let TRL judge the ``grpo:`` mapping: build the ``trl.GRPOConfig`` it describes.

    Args:
        on_cpu: build it for a CPU run (``use_cpu``, no bf16/fp16, which TrainingArguments refuses
            without a GPU); None = when the recipe says ``use_cpu`` or torch sees no CUDA device.
            Precision does not enter the batch rules, so the check holds for the GPU run too.

    Returns:
        The GRPOConfig (output_dir is a temp folder: the caller sets its own).

    Raises:
        ValueError: TRL's refusal (e.g. a generation batch that does not hold whole groups of
            ``num_generations`` completions), with what to change.
    """
    import tempfile

    import torch
    from trl import GRPOConfig

    g = dict(recipe.grpo)
    if on_cpu is None:
        on_cpu = bool(g.get("use_cpu")) or not torch.cuda.is_available()
    if on_cpu:
        g.update(use_cpu=True, bf16=False, fp16=False)
    try:
        return GRPOConfig(**{"output_dir": tempfile.gettempdir(), "report_to": "none", **g})
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{where} grpo: TRL refused these settings: {e} — change per_device_train_batch_size, "
            f"gradient_accumulation_steps, steps_per_generation or num_generations so that every "
            f"generation batch holds whole groups of num_generations completions") from None


def validate(recipe: Recipe, where: str = "recipe", trl_check: bool = True) -> Recipe:
    """Check a recipe; return it unchanged.

    Args:
        trl_check: also check the ``grpo:`` keys and values against TRL (:func:`check_grpo`;
            imports TRL and torch). Listing recipes turns it off.

    Raises:
        ValueError: with the field and what to change.
    """
    g = recipe.grpo
    bad = [r for r in recipe.rewards if r not in REWARDS]
    if bad or not recipe.rewards:
        raise ValueError(f"{where}: rewards {bad or '{}'} — pick names from {sorted(REWARDS)} with a weight each")
    if g.get("loss_type", "dapo") not in LOSS_TYPES:
        raise ValueError(f"{where} grpo: loss_type {g['loss_type']!r}; use one of {LOSS_TYPES}")
    for key in ("eval_every", "eval_questions", "early_stop_patience", "max_prompt_tokens", "train_size",
                "max_passages"):
        if int(getattr(recipe, key)) < 0:
            raise ValueError(f"{where}: {key} must be >= 0")
    if not 0 <= float(recipe.early_stop_margin) <= 1:
        raise ValueError(f"{where}: early_stop_margin is an accuracy difference between 0 and 1")
    if recipe.use_vllm not in (True, False):
        raise ValueError(f"{where}: use_vllm must be true or false (vLLM runs only when asked: "
                         f"{recipe.use_vllm!r} is not accepted)")
    _check_grounded(recipe, where)
    if trl_check:
        _check_keys(g, grpo_field_names(), f"{where} grpo")
        check_grpo(recipe, where)
    return recipe


def _check_grounded(recipe: Recipe, where: str) -> None:
    """Stages and data mix (grounded recipes): shapes, step totals; turns TRL shuffling off."""
    if not 0.0 <= float(recipe.mix_ratio) < 1.0 or (recipe.mix_ratio and not recipe.mix_dataset):
        raise ValueError(f"{where}: mix_ratio must be in [0, 1) and needs mix_dataset (a gsm8k data spec)")
    if not recipe.stages:
        return
    if any(not isinstance(st, dict) or set(st) - {"name", "steps", "refusal"} or int(st.get("steps", 0)) < 1
           for st in recipe.stages):
        raise ValueError(f"{where}: stages must be a list of {{name, steps (>= 1), refusal: true|false}}")
    total = sum(int(st["steps"]) for st in recipe.stages)
    g = recipe.grpo
    if int(g.get("max_steps", -1)) not in (-1, total):
        raise ValueError(f"{where}: the stages add up to {total} steps but grpo max_steps is {g['max_steps']}; "
                         f"make them equal (or drop max_steps)")
    g["max_steps"] = total
    g["shuffle_dataset"] = False


def from_dict(data: dict, name: str = "", where: str = "recipe", trl_check: bool = True) -> Recipe:
    """Build and validate a :class:`Recipe` from a mapping (a parsed YAML file).

    Raises:
        ValueError: not a mapping, unknown fields, invalid values.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a YAML mapping of field: value")
    known = {f.name for f in dataclasses.fields(Recipe)}
    _check_keys(data, known, where)
    data = dict(data)
    lora = data.pop("lora", None)
    lora = {"enabled": lora} if isinstance(lora, bool) else (lora or {})
    _check_keys(lora, {f.name for f in dataclasses.fields(LoraSettings)}, f"{where} lora")
    recipe = Recipe(**data, lora=LoraSettings(**lora))
    recipe.name = recipe.name or name
    recipe.grpo = dict(recipe.grpo or {})
    return validate(recipe, where, trl_check)


def load(path: str | Path, trl_check: bool = True) -> Recipe:
    """Load a recipe file, or a bare name from trainer/recipes (``smoke-cpu``).

    Raises:
        FileNotFoundError: no such file; the message lists the bundled recipes.
        ValueError: invalid content (see :func:`from_dict`).
    """
    p = Path(path)
    if not p.exists() and (RECIPES_DIR / f"{path}.yaml").exists():
        p = RECIPES_DIR / f"{path}.yaml"
    if not p.is_file():
        names = ", ".join(x.stem for x in sorted(RECIPES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"recipe {str(path)!r} not found; bundled recipes: {names}")
    return from_dict(yaml.safe_load(p.read_text(encoding="utf-8")) or {}, p.stem, str(p), trl_check)


def list_recipes() -> list[dict]:
    """Key fields of every bundled recipe (for ``python -m trainer recipes``); no TRL import."""
    out = []
    for p in sorted(RECIPES_DIR.glob("*.yaml")):
        r = load(p, trl_check=False)
        g = r.grpo
        out.append({"name": r.name, "path": str(p), "description": r.description, "model": r.model,
                    "dataset": r.dataset, "lora": r.lora.enabled, "learning_rate": g.get("learning_rate"),
                    "num_generations": g.get("num_generations"), "max_steps": g.get("max_steps", -1),
                    "max_completion_length": g.get("max_completion_length"),
                    "loss_type": g.get("loss_type", "dapo"), "beta": g.get("beta", 0.0),
                    "use_cpu": bool(g.get("use_cpu", False)), "use_vllm": r.use_vllm})
    return out
