#!/usr/bin/env bash
# Grounded GRPO of a real model on the CPU (issue 16 "Measure"): held-out eval before -> STEPS
# LoRA GRPO steps of bench/recipes/grounded-real-cpu.yaml -> held-out eval after -> step time,
# peak RSS, reward curves per function (OUT/curves.png) and the learning profile (reward std per
# group, share of groups without reward variance, completion lengths). One torch thread.
#
#   MODEL=<HF folder> TASKS=tasks.jsonl OUT=<dir> STEPS=30 EVAL_N=60 bash bench/train_grounded_cpu.sh
#
# TASKS: `python -m trainer tasks --kb NAME --out tasks.jsonl`. The eval is greedy, batched, with
# the training prompt (no <think>, MAX_PASSAGES passages in MAX_PROMPT_TOKENS) and EVAL_TOKENS new
# tokens, bfloat16 weights (DTYPE) like the recipe.
# Wrap it in `flock /tmp/tqts-real-<branch>.lock` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MODEL:?MODEL=<HF model folder>}" "${TASKS:?TASKS=<tasks.jsonl>}"
OUT=${OUT:-${TQTS_HOME:-$HOME/.tqts}/runs/grounded-cpu-$(date -u +%Y%m%d-%H%M%S)}
RECIPE=${RECIPE:-bench/recipes/grounded-real-cpu.yaml}
STEPS=${STEPS:-30}
EVAL_N=${EVAL_N:-60}
EVAL_TOKENS=${EVAL_TOKENS:-48}
EVAL_BATCH=${EVAL_BATCH:-20}
MAX_PASSAGES=${MAX_PASSAGES:-3}
MAX_PROMPT_TOKENS=${MAX_PROMPT_TOKENS:-512}
DTYPE=${DTYPE:-bfloat16}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
evaluate() {  # $1: label, $2...: extra args (e.g. --adapter DIR)
  local label=$1; shift
  python -m trainer eval --model "$MODEL" --tasks "$TASKS" --limit "$EVAL_N" --max-new-tokens "$EVAL_TOKENS" \
    --batch-size "$EVAL_BATCH" --no-think --max-passages "$MAX_PASSAGES" \
    --max-prompt-tokens "$MAX_PROMPT_TOKENS" --dtype "$DTYPE" --output "$OUT/eval-$label.json" "$@" \
    2> "$OUT/eval-$label.err" | tee "$OUT/eval-$label.txt"
}
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${SKIP_BEFORE:-}" ]; then evaluate before; fi
echo "train $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
python -m trainer train --recipe "$RECIPE" --allow-cpu --model "$MODEL" --dataset "$TASKS" --output "$OUT/run" \
  --max-steps "$STEPS" ${TRAIN_ARGS:-} > "$OUT/train.log" 2>&1 || true
grep -a "^step " "$OUT/train.log" || true
echo "after $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -d "$OUT/run/final" ]; then evaluate after --adapter "$OUT/run/final"; fi
python bench/grounded_report.py "$OUT" | tee "$OUT/report.txt"
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
