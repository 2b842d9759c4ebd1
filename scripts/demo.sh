#!/usr/bin/env bash
# The embedded first run: sample data → train → watch once → report. Nothing needs to be running.
set -euo pipefail
DEMO=${DEMO:-demo}
BIN=${BIN:-.venv/bin}
export INSPECTOR_DATA_DIR="$DEMO/data" INSPECTOR_MODEL_PATH="$DEMO/model.pt"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$DEMO"
step "$BIN/inspector" sample-data "$DEMO"
step "$BIN/inspector" train --data "$DEMO/train" --out "$DEMO/model.pt" --epochs 8 --seed 0
step "$BIN/inspector" db upgrade
step "$BIN/inspector" watch "$DEMO/incoming" --once
step "$BIN/inspector" report --since 1h
cat <<MSG

Done. Results are in $DEMO/data/inspector.db, maps in $DEMO/data/artifacts,
scored frames in $DEMO/data/archive and the damaged one in $DEMO/data/quarantine.
Open the review dashboard with:
  INSPECTOR_DATA_DIR=$DEMO/data INSPECTOR_SERVER__TOKEN=choose-a-token $BIN/inspector serve
then browse http://127.0.0.1:8000 and log in with that token.
MSG
