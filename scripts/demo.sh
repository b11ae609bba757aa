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

# simulate: a small ALMA project made with real CASA, written into the local archive folder
step almadeliver simulate 2017.1.00123.S --out "$OUT/archive" --ebs 2
echo "--- delivered tree (all tarballs of 2017.1.00123.S untarred into $OUT/delivered)"
mkdir -p "$OUT/delivered"
for t in "$OUT"/archive/2017.1.00123.S/files/*.tar; do tar xf "$t" -C "$OUT/delivered"; done
(cd "$OUT/delivered" && find 2017.1.00123.S -maxdepth 5 | sort | sed -e 's|[^/]*/|  |g')
export DEMO_PROJECT=2017.1.00123.S
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

# download (issue 6): fetch the demo project from the local archive the demo serves (ALMADELIVER_ARCHIVE)
# into $OUT/download, from the plan the query step wrote (DEMO_PLAN), then run it again (a no-op).
if [ -n "${DEMO_PLAN:-}" ] && [ -f "$DEMO_PLAN" ]; then
  step almadeliver download "$DEMO_PLAN" --dest "$OUT/download"
  step almadeliver download "$DEMO_PLAN" --dest "$OUT/download"
  DEMO_TREE=${DEMO_TREE:-$(find "$OUT/download" -mindepth 1 -maxdepth 1 -type d ! -name .almadeliver | head -1)}
else
  echo; echo "==> download skipped: no project view yet (the serve/query steps set DEMO_PLAN)"
fi

# validate (issue 7): check the delivery tree the download step unpacked. The sim/download steps set
# DEMO_TREE (e.g. "$OUT/download/<project>"); until they have landed this step says it is skipped.
if [ -n "${DEMO_TREE:-}" ] && [ -d "$DEMO_TREE" ]; then
  step almadeliver validate "$DEMO_TREE"
else
  echo; echo "==> validate skipped: no delivery tree yet (the simulate/download steps set DEMO_TREE)"
fi

# restore: the delivery's own scriptForPI.py in modular CASA (disk plan first, then the run)
MEMBER=$(ls -d "$OUT"/delivered/2017.1.00123.S/science_goal.*/group.*/member.* | head -n 1)
step almadeliver restore "$MEMBER" --dry-run
step almadeliver restore "$MEMBER" --spacesaving 1

echo
echo "==> summary"
for s in "${steps[@]}"; do echo "  ok  $s"; done
echo "demo output in $OUT/"
