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

# query (issue 5): the project view of the project the local archive serves, then the JSON plan that
# download takes. The simulate/serve steps set DEMO_PROJECT and export ALMADELIVER_ARCHIVE (the URL of
# `almadeliver serve`); until they have landed this step says it is skipped.
if [ -n "${DEMO_PROJECT:-}" ] && [ -n "${ALMADELIVER_ARCHIVE:-}" ]; then
  step almadeliver query "$DEMO_PROJECT"
  step almadeliver query "$DEMO_PROJECT" --format json --output "$OUT/plan.json"
  export DEMO_PLAN="$OUT/plan.json"
else
  echo; echo "==> query skipped: no local archive served yet (the simulate/serve steps set DEMO_PROJECT, ALMADELIVER_ARCHIVE)"
fi

# validate (issue 7): check the delivery tree the download step unpacked. The sim/download steps set
# DEMO_TREE (e.g. "$OUT/download/<project>"); until they have landed this step says it is skipped.
if [ -n "${DEMO_TREE:-}" ] && [ -d "$DEMO_TREE" ]; then
  step almadeliver validate "$DEMO_TREE"
else
  echo; echo "==> validate skipped: no delivery tree yet (the simulate/download steps set DEMO_TREE)"
fi

# image (issue 10): re-image the restored member the restore step leaves (it sets DEMO_MEMBER):
# list the delivered tclean calls, then remake them with robust 2 and 2-channel binning.
if [ -n "${DEMO_MEMBER:-}" ] && [ -d "$DEMO_MEMBER/calibrated" ]; then
  step almadeliver image "$DEMO_MEMBER" --list
  step almadeliver image "$DEMO_MEMBER" --robust 2 --nbin 2 --out "$OUT/reimage"
else
  echo; echo "==> image skipped: no restored member yet (the restore step sets DEMO_MEMBER)"
fi

echo
echo "==> summary"
for s in "${steps[@]}"; do echo "  ok  $s"; done
echo "demo output in $OUT/"
