#!/usr/bin/env bash
# GPU check of the GRPO path, <= 10 minutes on one CUDA GPU:
#   GGUF import -> eval before (MGSM-zh test questions) -> tqts-default LoRA steps within a time
#   budget -> eval after on the same questions -> step time, peak memory, reward curves per
#   function (PNG), samples, before/after accuracies with Wilson 95 % intervals.
#
#   bash bench/train_gpu.sh [--gguf FILE | --model NAME_OR_FOLDER] [--data DIR] [--out DIR]
#                           [--train-minutes 6] [--questions 100] [--recipe tqts-default] [--dry-run]
#
# --dry-run checks the arguments and inputs and prints the commands without running them (no GPU
# needed). Everything is written under --out (default /tmp/tqts-gpu-<UTC time>), its own TQTS_HOME.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GGUF="${HOME}/.cache/offline-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL=""
DATA="${ROOT}/../shared/data/gsm8k_zh"
OUT="/tmp/tqts-gpu-$(date -u +%Y%m%d-%H%M%S)"
MINUTES=6
QUESTIONS=100
RECIPE="tqts-default"
DRY=0
PY="${PYTHON:-python}"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gguf) GGUF="${2:?--gguf needs a file}"; shift 2 ;;
    --model) MODEL="${2:?--model needs a name or folder}"; shift 2 ;;
    --data) DATA="${2:?--data needs a folder or file}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --train-minutes) MINUTES="${2:?}"; shift 2 ;;
    --questions) QUESTIONS="${2:?}"; shift 2 ;;
    --recipe) RECIPE="${2:?}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--train-minutes must be a number of minutes, got $MINUTES"
[[ "$QUESTIONS" =~ ^[0-9]+$ && "$QUESTIONS" -gt 0 ]] || die "--questions must be a positive integer, got $QUESTIONS"
[[ -e "$DATA" ]] || die "data $DATA not found (give --data, e.g. ../shared/data/gsm8k_zh)"
if [[ -z "$MODEL" ]]; then
  [[ -f "$GGUF" ]] || die "GGUF $GGUF not found (give --gguf FILE or --model NAME_OR_FOLDER)"
  MODEL="gpu-base"
fi

export TQTS_HOME="$OUT/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
EVAL=(-m trainer eval --model "$MODEL" --data "$DATA" --split test --limit "$QUESTIONS" --max-new-tokens 200
      --batch-size 50)
STEPS=()
[[ -f "$GGUF" && "$MODEL" == "gpu-base" ]] && STEPS+=("$PY main.py models import $GGUF --name gpu-base")
STEPS+=("$PY ${EVAL[*]} --output $OUT/eval-before.json"
        "$PY -m trainer train --recipe $RECIPE --model $MODEL --dataset $DATA --output $OUT/run --max-minutes $MINUTES"
        "$PY ${EVAL[*]} --adapter $OUT/run/final --output $OUT/eval-after.json"
        "$PY bench/train_report.py $OUT/run --before $OUT/eval-before.json --after $OUT/eval-after.json --png $OUT/rewards.png")
if [[ $DRY -eq 1 ]]; then
  echo "dry run: TQTS_HOME=$TQTS_HOME; would run, in $ROOT:"
  printf '  %s\n' "${STEPS[@]}"
  exit 0
fi

cd "$ROOT"
"$PY" -m trainer gpu --json | grep -q '"cuda": true' || die "no CUDA GPU here: this script measures the GPU path"
mkdir -p "$OUT"
t0=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
if [[ "$MODEL" == "gpu-base" ]]; then
  stage "import $GGUF"
  "$PY" main.py models import "$GGUF" --name gpu-base
fi
stage "eval before: $QUESTIONS questions"
"$PY" "${EVAL[@]}" --output "$OUT/eval-before.json"
stage "train: $RECIPE for $MINUTES min"
"$PY" -m trainer train --recipe "$RECIPE" --model "$MODEL" --dataset "$DATA" --output "$OUT/run" \
  --max-minutes "$MINUTES" 2>&1 | tee "$OUT/train.log" | grep -E '^step |early stop|error|finished|stopped' || true
stage "eval after"
ADAPTER="$OUT/run/final"
[[ -d "$ADAPTER" ]] || die "training left no final/ (see $OUT/train.log)"
if [[ -f "$ADAPTER/adapter_config.json" ]]; then
  "$PY" "${EVAL[@]}" --adapter "$ADAPTER" --output "$OUT/eval-after.json"
else
  "$PY" -m trainer eval --model "$ADAPTER" --data "$DATA" --split test --limit "$QUESTIONS" \
    --max-new-tokens 200 --batch-size 50 --output "$OUT/eval-after.json"
fi
stage "report"
"$PY" bench/train_report.py "$OUT/run" --before "$OUT/eval-before.json" --after "$OUT/eval-after.json" \
  --png "$OUT/rewards.png" | tee "$OUT/report.txt"
stage "done: $OUT"
