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

# restore: the delivery's own scriptForPI.py in modular CASA (disk plan first, then the run)
MEMBER=$(ls -d "$OUT"/delivered/2017.1.00123.S/science_goal.*/group.*/member.* | head -n 1)
step almadeliver restore "$MEMBER" --dry-run
step almadeliver restore "$MEMBER" --spacesaving 1

echo
echo "==> summary"
for s in "${steps[@]}"; do echo "  ok  $s"; done
echo "demo output in $OUT/"
