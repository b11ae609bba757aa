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

# validate (issue 7): check the delivery tree the download step unpacked. The sim/download steps set
# DEMO_TREE (e.g. "$OUT/download/<project>"); until they have landed this step says it is skipped.
if [ -n "${DEMO_TREE:-}" ] && [ -d "$DEMO_TREE" ]; then
  step almadeliver validate "$DEMO_TREE"
else
  echo; echo "==> validate skipped: no delivery tree yet (the simulate/download steps set DEMO_TREE)"
fi

echo
echo "==> summary"
for s in "${steps[@]}"; do echo "  ok  $s"; done
echo "demo output in $OUT/"
