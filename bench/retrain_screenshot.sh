#!/usr/bin/env bash
# Screenshots of the Retrain dialog after training on a knowledge base: docs/screenshots/retrain-kb.png
# (Chinese UI) and retrain-kb-en.png (English). They are taken by tests/test_retrain_kb_e2e.py
# (documents made there -> real `trainer tasks` -> real `trainer train` grounded-cpu-smoke on the
# tiny Qwen -> held-out comparison) under Xvfb (started by tests/conftest.py when DISPLAY is unset).
#   bash bench/retrain_screenshot.sh            # both languages (a few minutes each on a busy CPU)
#   LANGS=en bash bench/retrain_screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for lang in ${LANGS:-zh en}; do
  RETRAIN_SHOTS=docs/screenshots RETRAIN_SHOT_LANG=$lang OMP_NUM_THREADS=1 \
    python -m pytest -q -x -p no:cacheprovider tests/test_retrain_kb_e2e.py
done
ls -l docs/screenshots/retrain-kb*.png
