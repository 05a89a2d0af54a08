"""Command line of ``python -m trainer``: train, eval, tasks, recipes, gpu (see README "Trainer").

Heavy imports (torch, TRL) happen inside the handlers, so ``--help`` and ``recipes`` are quick.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands train / eval / recipes / gpu)."""
    p = argparse.ArgumentParser(prog="python -m trainer", description="GRPO training and evaluation for TQT-s")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="GRPO training run from a recipe")
    t.add_argument("--recipe", required=True, help="recipe YAML file or bundled name (see `recipes`)")
    t.add_argument("--model", help="registry name, folder or hub id (default: the recipe's)")
    t.add_argument("--dataset", help="data file, folder or hub id (default: the recipe's)")
    t.add_argument("--fields", help="column mapping question=COL,answer=COL[,solution=COL]")
    t.add_argument("--output", help="run dir (default <TQTS_HOME>/runs/<run-name or UTC time>)")
    t.add_argument("--run-name")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--epochs", type=float)
    t.add_argument("--max-minutes", type=float,
                   help="wall-clock budget for training (model loading excluded): stop after the step that passes it")
    lora = t.add_mutually_exclusive_group()
    lora.add_argument("--lora", dest="lora", action="store_true", default=None, help="train a LoRA adapter")
    lora.add_argument("--no-lora", dest="lora", action="store_false", help="full fine-tuning")
    t.add_argument("--mix-dataset", help="grounded recipes: gsm8k data spec mixed into the tasks (data mix)")
    t.add_argument("--mix-ratio", type=float, help="grounded recipes: share of prompts from --mix-dataset (0-1)")
    t.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    t.add_argument("--allow-cpu", action="store_true", help="train without a GPU (slow)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="greedy accuracy on GSM8K-style questions, or on grounded tasks (--tasks)")
    e.add_argument("--model", required=True, help="registry name, folder or hub id")
    e.add_argument("--adapter", default="", help="LoRA adapter folder")
    data = e.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="data file, folder or hub id")
    data.add_argument("--tasks", help="grounded tasks file (python -m trainer tasks): correct, cited, refused, format")
    e.add_argument("--no-think", dest="think", action="store_false", help="grounded prompt without <think>")
    e.add_argument("--max-passages", type=int, default=0, help="grounded: show at most N passages (0 = all)")
    e.add_argument("--max-prompt-tokens", type=int, default=1024, help="grounded: drop passages to fit")
    e.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"),
                   help="weights dtype (auto: bfloat16 on CUDA, float32 on the CPU)")
    e.add_argument("--split", default="test")
    e.add_argument("--fields", help="column mapping question=COL,answer=COL")
    e.add_argument("--limit", type=int, default=50)
    e.add_argument("--max-new-tokens", type=int, default=256)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--system-prompt", default="auto",
                   help="auto (by the question's language), zh, en, r1 (the old R1-Zero template) or none")
    e.add_argument("--json", action="store_true", help="print the JSON report")
    e.add_argument("--output", help="report file (default: eval.json next to the adapter, else runs/eval-<time>.json)")
    e.add_argument("--compare", help="second model to evaluate side by side (e.g. the base model)")
    e.add_argument("--compare-adapter", default="")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("recipes", help="list bundled recipes")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recipes)

    k = sub.add_parser("tasks", help="grounded-QA training tasks from a knowledge base (see trainer/tasks.py)")
    k.add_argument("--kb", required=True, help="knowledge base name (see `python main.py kb list`)")
    k.add_argument("--out", required=True, help="tasks file to write (.jsonl)")
    k.add_argument("--max", type=int, default=500, help="most tasks (balanced over documents)")
    k.add_argument("--from-file", help="CSV/JSONL of question,answer pairs (default: rule-made questions)")
    k.add_argument("--propose-with", help="model folder that also proposes questions (kept when the answer is a "
                   "verbatim span of the chunk and not in the question)")
    k.add_argument("--propose", type=int, default=50, help="chunks the model is asked about (with --propose-with)")
    k.add_argument("--refusal-share", type=float, default=0.2, help="share of tasks without the gold passage")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--home", help="data dir (default: TQTS_HOME)")
    k.add_argument("--json", action="store_true", help="also print the summary as JSON")
    k.add_argument("--progress-json", action="store_true",
                   help='progress as JSON lines {"progress": [done, total], "message": ...} on stdout (for the app)')
    k.set_defaults(func=cmd_tasks)

    g = sub.add_parser("gpu", help="CUDA device and free memory")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_gpu)
    return p


def _settings():
    import settings as settings_mod

    return settings_mod.load()


def cmd_train(args) -> int:
    from trainer.train import main

    return main(args, _settings())


def _resolve(name: str, adapter: str, settings) -> tuple[str, str]:
    from trainer.train import resolve_model

    model, found = resolve_model(name, settings)
    return model, adapter or found


def default_report_path(adapter: str, settings) -> Path:
    """eval.json in the run dir of an adapter under runs/, else runs/eval-<UTC time>.json."""
    from datetime import datetime, timezone

    if adapter and (Path(adapter).parent / "run.json").exists():
        return Path(adapter).parent / "eval.json"
    return Path(settings.runs_dir) / f"eval-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"


def cmd_eval(args) -> int:
    from trainer import evaluate as E

    settings = _settings()
    targets = [(args.model, args.adapter)] + ([(args.compare, args.compare_adapter)] if args.compare else [])
    reports = []
    try:
        for name, adapter in targets:
            model, adapter = _resolve(name, adapter, settings)
            if args.tasks:
                from trainer.grounded_eval import evaluate_tasks

                split = "heldout" if args.split == "test" else args.split
                reports.append(evaluate_tasks(model, args.tasks, adapter=adapter, split=split, limit=args.limit,
                                              max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                              think=args.think, max_passages=args.max_passages,
                                              max_prompt_tokens=args.max_prompt_tokens, dtype=args.dtype))
                continue
            reports.append(E.evaluate(model, args.data, adapter=adapter, limit=args.limit, split=args.split,
                                      fields=args.fields, max_new_tokens=args.max_new_tokens,
                                      batch_size=args.batch_size, system_prompt=args.system_prompt))
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = reports[0] if len(reports) == 1 else reports
    path = E.write_report(out, args.output or default_report_path(reports[0]["adapter"], settings))
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
    else:
        if args.tasks:
            from trainer.grounded_eval import format_reports

            print(format_reports(reports))
        else:
            print(E.format_report(reports))
        print(f"report: {path}")
    return 0


def cmd_tasks(args) -> int:
    from trainer.tasks import cmd_tasks as run

    return run(args)


def cmd_recipes(args) -> int:
    from trainer.recipes import list_recipes

    rows = list_recipes()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']:<16} {r['description']}")
        print(f"{'':<16} lr {r['learning_rate']}  generations {r['num_generations']}  completion "
              f"{r['max_completion_length']} tokens  loss {r['loss_type']}  beta {r['beta']}  "
              f"{'LoRA' if r['lora'] else 'full'}{'  CPU' if r['use_cpu'] else ''}  ({r['path']})")
    return 0


def gpu_info() -> dict:
    """``{"cuda": bool, "name": str, "free_mb": int, "total_mb": int}`` for CUDA device 0."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False, "name": "", "free_mb": 0, "total_mb": 0}
    free, total = torch.cuda.mem_get_info(0)
    return {"cuda": True, "name": torch.cuda.get_device_name(0), "free_mb": free // 2**20,
            "total_mb": total // 2**20}


def cmd_gpu(args) -> int:
    info = gpu_info()
    if args.json:
        print(json.dumps(info))
    elif info["cuda"]:
        print(f"{info['name']}: {info['free_mb']} MB free of {info['total_mb']} MB")
    else:
        print("no CUDA GPU: training needs --allow-cpu (slow)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return args.func(args)
