#!/usr/bin/env bash
# The embedded first run: sample data → train → watch once → report. Nothing needs to be running.
set -euo pipefail
DEMO=${DEMO:-demo}
BIN=${BIN:-.venv/bin}
export INSPECTOR_DATA_DIR="$DEMO/data" INSPECTOR_MODEL_PATH="$DEMO/model.pt"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$DEMO"
step "$BIN/inspector" sample-data "$DEMO"
# vaegan+ (the glimpse VAEGAN): digits appear at any size and place; see bench/results/paper_table.md.
# 20 epochs: with 8, its attention score ranked these 40 frames at ROC-AUC 0.87-0.96 (seeds 0-2),
# with 20 at 0.98-0.99, for about 8 s more of training.
step "$BIN/inspector" train --data "$DEMO/train" --out "$DEMO/model.pt" --epochs 20 --seed 0 \
  --method vaegan+ --model-config configs/models/glimpse.yaml
step "$BIN/inspector" db upgrade
# The sample files are complete: the damaged one is quarantined at once, not waited for
# (watch.quiet_seconds) in case its writer is still at work.
INSPECTOR_WATCH__QUIET_SECONDS=0 step "$BIN/inspector" watch "$DEMO/incoming" --once
step "$BIN/inspector" report --since 1h
cat <<MSG

The default threshold is the 99th percentile of scores on held-out normal frames, so it
errs towards few false alarms; the frames whose names end in -anomaly should rank highest.
Label some in the dashboard and its Calibration page suggests a threshold for your target recall.
MSG
cat <<MSG

Done. Results and their maps are in $DEMO/data/inspector.db, scored frames in
$DEMO/data/archive and the damaged one (with the reason beside it) in $DEMO/data/quarantine.
Open the review dashboard with:
  INSPECTOR_DATA_DIR=$DEMO/data INSPECTOR_SERVER__TOKEN=choose-a-token $BIN/inspector serve
then browse http://127.0.0.1:8000 and log in with that token.
MSG
