"""``python -m trainer train``: GRPO (TRL) on a recipe, writing the run dir of the Trainer contract.

Run dir: run.json (args, recipe, model, pid, status, times, output kind, peak memory),
progress.jsonl, samples.jsonl, checkpoint-N/, best/, final/ (see README "Trainer").
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import traceback
from pathlib import Path

from trainer import recipes as recipes_mod
from trainer.callbacks import BudgetCallback, EvalCallback, ProgressCallback, StopCallback, now_iso
from trainer.data import load_examples
from trainer.rewards import get_reward_funcs


class TrainError(Exception):
    """A refusal or setup error with one clear message for the user (exit code 2)."""


# -- setup steps --------------------------------------------------------------------------------

def resolve_model(name_or_path: str, settings) -> tuple[str, str]:
    """(model folder or hub id, adapter folder or "") via models.registry when it is there;
    otherwise the argument itself (a folder or hub id)."""
    try:
        from models.registry import ModelRegistry

        return ModelRegistry(settings).resolve(name_or_path)
    except Exception as e:  # registry missing/broken, or an unknown name: treat as folder / hub id
        if Path(name_or_path).suffix == ".gguf":
            raise TrainError(str(e)) from None
        return name_or_path, ""


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    import torch

    return torch.cuda.is_available()


def run_dir_for(args, settings) -> Path:
    """The run folder: --output, else runs/<run-name>, else runs/<UTC timestamp>; with --resume
    and neither given, the newest run that has a checkpoint.

    Raises:
        TrainError: --resume without any resumable run; a --run-name that is not one folder name.
    """
    if args.output:
        return Path(args.output).expanduser()
    runs = Path(settings.runs_dir)
    if args.run_name:
        from trainer.jobs import check_run_name

        try:
            return runs / check_run_name(args.run_name)
        except ValueError as e:
            raise TrainError(str(e)) from None
    if args.resume:
        found = sorted((p for p in runs.iterdir() if any(p.glob("checkpoint-*"))), key=lambda p: p.stat().st_mtime)
        if not found:
            raise TrainError(f"--resume: no run with a checkpoint in {runs}; give --run-name or --output")
        return found[-1]
    from datetime import datetime, timezone

    return runs / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def apply_overrides(recipe, args, on_cpu: bool):
    """CLI options over the recipe (model, dataset, max steps, epochs, LoRA, data mix); CPU turns
    bf16 off. A data mix (gsm8k prompts among grounded tasks, default ratio 0.25) adds the
    ``correctness`` reward (weight 1.0) when the recipe lacks it: the grounded rewards return
    None on gsm8k rows and ``correctness`` returns None on grounded ones."""
    g = recipe.grpo
    if args.max_steps is not None:
        g["max_steps"] = args.max_steps
        if recipe.stages:  # grounded curriculum: the stages keep their proportions
            from trainer.grounded_data import scale_stages

            recipe.stages = scale_stages(recipe.stages, args.max_steps)
    if args.epochs is not None:
        g["num_train_epochs"] = args.epochs
        if args.max_steps is None:  # --epochs alone wins over the recipe's max_steps
            g["max_steps"] = -1
    if args.lora is not None:
        recipe.lora.enabled = args.lora
    if getattr(args, "mix_dataset", None):
        recipe.mix_dataset = args.mix_dataset
        recipe.mix_ratio = 0.25 if getattr(args, "mix_ratio", None) is None else args.mix_ratio
    elif getattr(args, "mix_ratio", None) is not None:
        recipe.mix_ratio = args.mix_ratio
    if recipe.mix_ratio and "correctness" not in recipe.rewards:  # the gsm8k rows need their own reward
        recipe.rewards = {**recipe.rewards, "correctness": 1.0}
    if on_cpu:
        if g.get("bf16") or g.get("fp16"):
            print("CPU run: bf16/fp16 turned off (float32)", flush=True)
        g.update(use_cpu=True, bf16=False, fp16=False)
    return recipes_mod.validate(recipe)


def vllm_torch_pin(requires: list[str]) -> str | None:
    """The exact torch version a vllm release pins (``torch==2.9.0`` in its requirements), or None.

    >>> vllm_torch_pin(["numpy", "torch==2.9.0", "xformers==0.0.32; platform_system == 'Linux'"])
    '2.9.0'
    """
    for req in requires or []:
        name, _, rest = req.replace(" ", "").partition("==")
        if name == "torch" and rest:
            return rest.split(";")[0]
    return None


def use_vllm(recipe, on_cpu: bool) -> bool:
    """vLLM colocate generation only when the recipe asks (``use_vllm: true``), on CUDA, with a
    vllm release built for the installed torch (vllm pins one torch version; a mismatch fails
    deep inside CUDA kernels, so it is refused here).

    Raises:
        TrainError: asked for on the CPU, vllm missing, or its torch pin differs from torch.
    """
    if recipe.use_vllm is not True:
        return False
    if on_cpu:
        raise TrainError("recipe use_vllm: true needs a CUDA GPU; set use_vllm: false for a CPU run")
    from importlib import metadata

    import torch

    try:
        requires = metadata.requires("vllm") or []
        version = metadata.version("vllm")
    except metadata.PackageNotFoundError:
        raise TrainError("recipe use_vllm: true but vllm is not installed; install the vllm release built for "
                         f"torch {torch.__version__}, or set use_vllm: false") from None
    pin = vllm_torch_pin(requires)
    if pin and pin != torch.__version__.split("+")[0]:
        raise TrainError(f"vllm {version} is built for torch {pin} but torch {torch.__version__} is installed; "
                         f"install a vllm release for this torch, or set use_vllm: false")
    return True


def grpo_config(recipe, run_dir: Path, on_cpu: bool):
    """trl.GRPOConfig from the recipe's ``grpo:`` fields plus our fixed ones.

    Precision: the weights TRL loads are float32 on the CPU and for full fine-tuning (bf16 autocast
    computes, fp32 master weights take the update: in bf16, 87 % of a 5e-6 update rounds away);
    a LoRA run loads the frozen base in bf16 on CUDA (PEFT keeps the adapter in fp32).

    Raises:
        TrainError: TRL refused the configuration (its message, with what to change).
    """
    import torch

    g = dict(recipe.grpo)
    g.update(output_dir=str(run_dir), report_to="none", disable_tqdm=True, save_strategy="steps",
             reward_weights=[float(w) for w in recipe.rewards.values()])
    g.setdefault("logging_steps", 1)
    fp32 = on_cpu or not recipe.lora.enabled
    g.setdefault("model_init_kwargs", {"dtype": torch.float32 if fp32 else torch.bfloat16})
    if use_vllm(recipe, on_cpu):
        g.update(use_vllm=True, vllm_mode="colocate")
    recipe = dataclasses.replace(recipe, grpo=g)
    try:
        return recipes_mod.check_grpo(recipe, recipe.name or "recipe", on_cpu=on_cpu)
    except ValueError as e:
        raise TrainError(str(e)) from None


def peft_config(recipe, model_path: str = ""):
    """peft.LoraConfig for the recipe, or None for full fine-tuning."""
    if not recipe.lora.enabled:
        return None
    from peft import LoraConfig

    lo = recipe.lora
    extra = {}
    if lo.last_layers:
        n = _num_layers(model_path or recipe.model)
        extra["layers_to_transform"] = list(range(max(n - lo.last_layers, 0), n))
    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout,
                      target_modules=list(lo.target_modules), task_type="CAUSAL_LM", **extra)


def _num_layers(model: str) -> int:
    """Decoder layers of a model folder or hub id (its config's ``num_hidden_layers``).

    Raises:
        ValueError: the config has no ``num_hidden_layers``."""
    from transformers import AutoConfig

    n = getattr(AutoConfig.from_pretrained(model), "num_hidden_layers", None)
    if not n:
        raise ValueError(f"{model}: config has no num_hidden_layers; remove lora.last_layers from the recipe")
    return int(n)


def peak_memory() -> dict:
    """Peak resident memory of this process (MB, from getrusage) and peak CUDA memory (MB)."""
    out = {"cpu_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    import torch

    if torch.cuda.is_available():
        out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def is_main_process() -> bool:
    """True in the rank-0 process (or without ``accelerate launch``): only it writes run files."""
    return int(os.environ.get("RANK", "0")) == 0


def write_run_json(run_dir: Path, info: dict) -> None:
    """Write run.json atomically (temp file + rename); rank 0 only."""
    if not is_main_process():
        return
    tmp = run_dir / "run.json.tmp"
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    tmp.replace(run_dir / "run.json")


def load_data(recipe, args, tokenizer):
    """(train examples, validation examples) for the recipe (CLI --dataset wins).

    The validation examples are the last ``eval_questions`` rows of the training split, held
    out of training; the test split is never read here (it is for the final comparison).

    Raises:
        TrainError: the training split is too small to hold the validation questions out.
    """
    spec = args.dataset or recipe.dataset
    from trainer import grounded_data

    if grounded_data.is_tasks_file(spec):  # grounded tasks (python -m trainer tasks), maybe staged / mixed
        return grounded_data.load_for_recipe(recipe, spec, tokenizer)
    fields = getattr(args, "fields", None) or recipe.fields or None
    n_val = recipe.eval_questions if recipe.eval_every else 0
    limit = recipe.train_size + n_val if recipe.train_size else None
    rows = load_examples(spec, split=recipe.dataset_split, fields=fields, limit=limit, tokenizer=tokenizer,
                         max_prompt_tokens=recipe.max_prompt_tokens, system_prompt=recipe.system_prompt)
    if n_val and len(rows) < 2 * n_val:
        raise TrainError(f"{spec} ({recipe.dataset_split}) has {len(rows)} questions: too few to hold out "
                         f"eval_questions = {n_val} for validation; lower eval_questions or set eval_every: 0")
    return (rows[:-n_val], rows[-n_val:]) if n_val else (rows, [])


# -- the run ------------------------------------------------------------------------------------

def build_trainer(recipe, model_path: str, run_dir: Path, on_cpu: bool, args, stop: StopCallback,
                  history: list[dict] | None = None):
    """GRPOTrainer plus our callbacks; returns (trainer, callbacks dict). ``history``: earlier
    evaluations of a resumed run."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_path, padding_side="left", truncation_side="left")
    train, held = load_data(recipe, args, tok)
    config = grpo_config(recipe, run_dir, on_cpu)
    shared: dict = {}
    progress = ProgressCallback(run_dir, dict(recipe.rewards), shared)
    guard = EvalCallback(run_dir, held, recipe.eval_every,
                         recipe.eval_max_new_tokens or config.max_completion_length,
                         recipe.early_stop_patience, shared, margin=recipe.early_stop_margin,
                         history=history)
    funcs = get_reward_funcs(list(recipe.rewards))
    budget = BudgetCallback(60 * args.max_minutes) if getattr(args, "max_minutes", None) else None
    trainer = GRPOTrainer(model=model_path, reward_funcs=funcs, args=config,
                          train_dataset=Dataset.from_list(train), processing_class=tok,
                          peft_config=peft_config(recipe, model_path),
                          callbacks=[progress, guard, stop, *([budget] if budget else [])])
    trainer.remove_callback(PrinterCallback)
    progress.trainer = guard.trainer = trainer
    return trainer, {"progress": progress, "eval": guard, "stop": stop, "budget": budget}


def save_output(trainer, folder: Path) -> None:
    """Save weights (adapter or full, safetensors) + tokenizer; drop the pickled training args."""
    trainer.save_model(str(folder))
    (folder / "training_args.bin").unlink(missing_ok=True)


def prepare(args, settings):
    """Load and adjust the recipe, resolve the model, pick the run dir. Returns (recipe, model, run_dir, on_cpu)."""
    recipe = recipes_mod.load(args.recipe)
    on_cpu = not cuda_available()
    if on_cpu and not args.allow_cpu:
        raise TrainError("no CUDA GPU found: GRPO on the CPU is very slow. Use a machine with a GPU, "
                         "or pass --allow-cpu (try --recipe trainer/recipes/smoke-cpu.yaml first)")
    on_cpu = on_cpu or bool(recipe.grpo.get("use_cpu"))
    recipe = apply_overrides(recipe, args, on_cpu)
    from trainer.grounded_data import check_dataset

    check_dataset(recipe, args.dataset or recipe.dataset)
    model, adapter = resolve_model(args.model or recipe.model, settings)
    if adapter:
        raise TrainError(f"{args.model} is a LoRA adapter on {model}: merge it first or train from the base "
                         f"model ({model})")
    run_dir = run_dir_for(args, settings)
    if run_dir.exists() and any(run_dir.glob("checkpoint-*")) and not args.resume:
        raise TrainError(f"{run_dir} already holds checkpoints: add --resume to continue it, or pick another "
                         f"--run-name")
    if args.resume and not any(run_dir.glob("checkpoint-*")):
        raise TrainError(f"--resume: no checkpoint-N folder in {run_dir}")
    return recipe, model, run_dir, on_cpu


def previous_info(run_dir: Path) -> dict:
    """run.json of an earlier attempt of this run ({} when none or unreadable)."""
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def start_info(args, recipe, model: str, run_dir: Path, on_cpu: bool) -> dict:
    """The run.json of a starting attempt. A resumed run keeps ``started``, its earlier
    evaluations and stops, and lists each attempt under ``attempts``."""
    now = now_iso()
    info = {"args": {k: v for k, v in vars(args).items() if k != "func"}, "recipe": recipe.name,
            "recipe_fields": dataclasses.asdict(recipe), "model": model, "run_dir": str(run_dir),
            "pid": os.getpid(), "status": "running", "started": now, "ended": None, "stop": None,
            "output": "lora" if recipe.lora.enabled else "full", "device": "cpu" if on_cpu else "cuda",
            "evaluations": [], "attempts": [{"started": now}]}
    old = previous_info(run_dir) if args.resume else {}
    if old:
        info.update(started=old.get("started") or now, evaluations=list(old.get("evaluations") or []),
                    attempts=[*(old.get("attempts") or [{"started": old.get("started"), "ended": old.get("ended"),
                                                         "stop": old.get("stop")}]), {"started": now}])
    return info


def main(args, settings) -> int:
    """Run one training job; returns the exit code (0 finished/stopped, 1 failed, 2 refused).

    run.json says why and when the run ended: ``status`` (finished | stopped | failed) and
    ``stop`` = ``{"reason", "step", "time", "detail"}``, reason one of "user" (Stop / SIGINT /
    SIGTERM), "guard" (the collapse guard), "end" (the planned steps were done), "budget"
    (``--max-minutes`` reached; status finished, final/ saved), "error", "killed" (written by
    trainer.jobs when the process vanished).
    """
    try:
        recipe, model, run_dir, on_cpu = prepare(args, settings)
    except (TrainError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    info = start_info(args, recipe, model, run_dir, on_cpu)
    write_run_json(run_dir, info)
    print(f"run dir: {run_dir}", flush=True)
    try:
        status = train_in(run_dir, recipe, model, on_cpu, args, info)
    except Exception as e:  # one clear line for the log tail, the traceback after it
        info.update(status="failed", error=f"{type(e).__name__}: {e}",
                    stop={"reason": "error", "step": info.get("global_step"), "time": now_iso(),
                          "detail": f"{type(e).__name__}: {e}"})
        print(f"training failed: {type(e).__name__}: {e}", file=sys.stderr)
        traceback.print_exc()
        status = "failed"
    info.update(status=status, ended=now_iso(), **peak_memory())
    info["attempts"][-1].update(ended=info["ended"], stop=info.get("stop"))
    write_run_json(run_dir, info)
    print(f"{status}: {run_dir}" + (f" ({info['stop']['detail']})" if info.get("stop") else ""), flush=True)
    return 1 if status == "failed" else 0


def stop_record(reason: str, step, detail: str) -> dict:
    """The ``stop`` entry of run.json."""
    return {"reason": reason, "step": step, "time": now_iso(), "detail": detail}


def train_in(run_dir: Path, recipe, model: str, on_cpu: bool, args, info: dict) -> str:
    """Build the trainer, train (resuming when asked), save final/; return the status."""
    from transformers.trainer_utils import get_last_checkpoint

    def stopping():  # run.json says "stopping" until the step ends and the checkpoint is saved
        info.update(status="stopping", stop_requested=now_iso())
        write_run_json(run_dir, info)

    stop = StopCallback(on_request=stopping)
    if threading_main():
        stop.install()  # before loading: a signal while loading also ends with status "stopped"
    trainer, cbs = build_trainer(recipe, model, run_dir, on_cpu, args, stop, info.get("evaluations"))
    if stop.requested:
        info["stop"] = stop_record("user", 0, "stopped while loading, before the first step: nothing to resume")
        return "stopped"
    resume = get_last_checkpoint(str(run_dir)) if args.resume else None
    if resume:
        print(f"resuming from {resume}", flush=True)
    info.update(resumed_from=resume, total_steps=None)
    trainer.train(resume_from_checkpoint=resume)
    guard = cbs["eval"]
    step = trainer.state.global_step
    info.update(global_step=step, total_steps=trainer.state.max_steps, evaluations=guard.history,
                best_eval_accuracy=max(guard.best, 0.0) if guard.history else None)
    if stop.requested:
        ckpt = get_last_checkpoint(str(run_dir))
        info["stop"] = stop_record("user", step, f"stopped by the user after step {step}; resume from "
                                   f"{Path(ckpt).name if ckpt else 'nothing (no checkpoint)'}")
        return "stopped"
    save_output(trainer, run_dir / "final")
    if guard.stop_reason:
        info["stop"] = stop_record("guard", step, guard.stop_reason)
        return "stopped"
    if cbs["budget"] is not None and cbs["budget"].step is not None:
        info["stop"] = stop_record("budget", step, f"time budget of {args.max_minutes:g} min reached after step {step}")
        return "finished"
    info["stop"] = stop_record("end", step, f"all {trainer.state.max_steps} steps done")
    return "finished"


def threading_main() -> bool:
    """True on the main thread (signal handlers can only be installed there)."""
    import threading

    return threading.current_thread() is threading.main_thread()
