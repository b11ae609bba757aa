#!/usr/bin/env bash
# make demo: the whole mission end to end on the embedded local archive (no internet).
# Each stage appends its step here; the summary at the end lists what ran.
set -euo pipefail
OUT=${DEMO_OUT:-demo-output}
rm -rf "$OUT"; mkdir -p "$OUT"
export ALMADELIVER_HOME="$PWD/$OUT/home"
steps=()
step() { echo; echo "==> $*"; "$@"; steps+=("$1 ${2:-}"); }

step almadeliver casa-info --check

echo
echo "==> summary"
for s in "${steps[@]}"; do echo "  ok  $s"; done
echo "demo output in $OUT/"
