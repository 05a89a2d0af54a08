#!/usr/bin/env bash
# Grounded GRPO on one GPU (<= ~10 minutes on a large one): knowledge base -> tasks -> held-out eval
# before -> 100 steps of trainer/recipes/grounded-kb.yaml -> held-out eval after -> step time, peak
# memory, reward curves (OUT/curves.png). Run from the repository root:
#
#   bash bench/train_grounded_gpu.sh                       # ingest ../shared/data/documents first
#   TASKS=tasks.jsonl bash bench/train_grounded_gpu.sh     # reuse a tasks file
#
# Knobs (environment): MODEL (hub id or folder, default Qwen/Qwen2.5-0.5B-Instruct), TASKS, KB,
# DOCS, OUT, EVAL_N (held-out tasks per evaluation, 60), MAX_TASKS (500), RECIPE (grounded-kb),
# TRAIN_ARGS (extra `trainer train` options; the CPU check uses RECIPE=grounded-cpu-smoke TRAIN_ARGS=--allow-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}
KB=${KB:-shared}
DOCS=${DOCS:-../shared/data/documents}
RECIPE=${RECIPE:-grounded-kb}
EVAL_N=${EVAL_N:-60}
MAX_TASKS=${MAX_TASKS:-500}
OUT=${OUT:-${TQTS_HOME:-$HOME/.tqts}/runs/grounded-gpu-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export TOKENIZERS_PARALLELISM=false

python -m trainer gpu | tee "$OUT/gpu.txt"
if [ -z "${TASKS:-}" ]; then
  python main.py ingest "$DOCS" --kb "$KB"
  python -m trainer tasks --kb "$KB" --out "$OUT/tasks.jsonl" --max "$MAX_TASKS" --json | tee "$OUT/tasks.txt"
  TASKS="$OUT/tasks.jsonl"
fi
evaluate() {  # $1: label, $2...: extra args (e.g. --adapter DIR)
  local label=$1; shift
  python -m trainer eval --model "$MODEL" --tasks "$TASKS" --limit "$EVAL_N" --max-new-tokens 192 \
    --batch-size 16 --output "$OUT/eval-$label.json" "$@" | tee "$OUT/eval-$label.txt"
}
evaluate before
python -m trainer train --recipe "$RECIPE" --model "$MODEL" --dataset "$TASKS" --output "$OUT/run" ${TRAIN_ARGS:-} \
  2>&1 | tee "$OUT/train.log"
evaluate after --adapter "$OUT/run/final"
python bench/grounded_report.py "$OUT" | tee "$OUT/report.txt"
