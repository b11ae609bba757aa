#!/usr/bin/env bash
# make demo: the whole mission end to end on the embedded local archive (no internet):
# simulate -> serve -> query -> download -> validate -> restore -> image -> prepare/check/package,
# for a manual project (EBs of realistic proportions, so the disk figures mean something), then a
# pipeline project restored natively with modular CASA; a summary at the end.
set -euo pipefail
OUT=$(mkdir -p "${DEMO_OUT:-demo-output}" && cd "${DEMO_OUT:-demo-output}" && pwd)
rm -rf "${OUT:?}"/*
export ALMADELIVER_HOME="$OUT/home"
PROJECT=2017.1.00123.S
PIPELINE=2019.1.00789.S
STAFF=2017.1.00124.S
# the CASA at hand (casatools 6.7.0.31 -> 6.7.0-31): the staff project is reduced and imaged in it
HERE_CASA=$(python -c 'from importlib.metadata import version; n = version("casatools").split("."); print(".".join(n[:3]) + (f"-{n[3]}" if len(n) > 3 else ""))')
steps=()
step() { local name=$1; shift; echo; echo "==> $*"; local t0=$SECONDS; "$@"; echo "<== $name: $((SECONDS - t0)) s"
         steps+=("$(printf '%-10s %4ss  %s' "$name" $((SECONDS - t0)) "$*")"); }

step casa-info almadeliver casa-info --check

# 1. a small ALMA project (2 EBs, manual calibration) made with real CASA, as the archive ships it
step simulate almadeliver simulate "$PROJECT" --out "$OUT/archive" --ebs 2 --size medium
step simulate almadeliver simulate "$PIPELINE" --out "$OUT/archive" --flavour pipeline
step simulate almadeliver simulate "$STAFF" --out "$OUT/archive" --casa-version "$HERE_CASA"

# 2. the local ALMA archive serves it on 127.0.0.1 (TAP, DataLink, dataPortal)
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
almadeliver serve "$OUT/archive" --port "$PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
export ALMADELIVER_ARCHIVE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf "$ALMADELIVER_ARCHIVE/tap/availability" > /dev/null && break; sleep 0.1; done
echo; echo "==> local archive at $ALMADELIVER_ARCHIVE (log: $OUT/serve.log)"

# 3. the project view, then the same as a JSON plan for download
step query almadeliver query "$PROJECT"
step query almadeliver query "$PROJECT" --format json --output "$OUT/plan.json"

# 4. download everything (products, auxiliary, raw, README), untarred into one tree; a rerun is a no-op
step download almadeliver download "$OUT/plan.json" --dest "$OUT/download"
step download almadeliver download "$OUT/plan.json" --dest "$OUT/download"

# 5. the tree is the standard delivery tree
step validate almadeliver validate "$OUT/download/$PROJECT"

# 6. scriptForPI in modular CASA: the disk plan and the calibration scripts' version gate (they ask for
#    the CASA that made the delivery, 6.5.4: the dry run says so and refuses), then the restore in the
#    installed modular CASA, the mismatch allowed and recorded
MEMBER=$(ls -d "$OUT/download/$PROJECT"/science_goal.*/group.*/member.* | head -n 1)
step restore almadeliver restore "$MEMBER" --dry-run || true
step restore almadeliver restore "$MEMBER" --spacesaving 1 --casa-version-mismatch allow

# 7. re-image: the delivered imaging calls, then remade with robust 2 and 2-channel binning
step image almadeliver image "$MEMBER" --list
step image almadeliver image "$MEMBER" --robust 2 --nbin 2 --out "$OUT/reimage"

# 8. staff side, on a project whose reducer calibrated in the CASA at hand (the checklist wants one CASA
#    for calibration and imaging: the 6.5.4 delivery above, re-imaged here, would fail staff.casa-version):
#    restore, re-image, a reduction area filled from both, its final checklist (text and HTML), then the
#    archive's delivery files (products, auxiliary, raw, README, manifest)
step download almadeliver download "$STAFF" --dest "$OUT/download"
STAFF_MEMBER=$(ls -d "$OUT/download/$STAFF"/science_goal.*/group.*/member.* | head -n 1)
step restore almadeliver restore "$STAFF_MEMBER" --spacesaving 1
step image almadeliver image "$STAFF_MEMBER" --out "$OUT/reimage-staff"
MOUS=$(basename "$STAFF_MEMBER"); MOUS=${MOUS#member.}
GOUS=$(basename "$(dirname "$STAFF_MEMBER")"); GOUS=${GOUS#group.}
SG=$(basename "$(dirname "$(dirname "$STAFF_MEMBER")")"); SG=${SG#science_goal.}
EBS=(); for asdm in "$STAFF_MEMBER"/raw/*.asdm.sdm; do EBS+=(--eb "$(basename "$asdm" .asdm.sdm)"); done
step prepare almadeliver prepare "$MOUS" "${EBS[@]}" --root "$OUT/staff" --from-delivery "$STAFF_MEMBER" \
    --images "$OUT/reimage-staff"
step check almadeliver check "$OUT/staff/$MOUS"
step check almadeliver check "$OUT/staff/$MOUS" --format html -o "$OUT/staff/report.html"
step package almadeliver package "$OUT/staff/$MOUS" --project "$STAFF" --sg "$SG" --group "$GOUS" \
    --raw "$STAFF_MEMBER/raw" --out "$OUT/packaged"

# 9. the pipeline project: query, download (raw data included), restore (auto: no monolithic CASA with
#    the pipeline here, so the native engine runs hifa_restoredata's steps), the delivered images
step query almadeliver query "$PIPELINE"
step download almadeliver download "$PIPELINE" --dest "$OUT/download" --what products,auxiliary,raw,readme
PIPE_MEMBER=$(ls -d "$OUT/download/$PIPELINE"/science_goal.*/group.*/member.* | head -n 1)
step restore almadeliver restore "$PIPE_MEMBER" --engine auto
step image almadeliver image "$PIPE_MEMBER" --list

echo
echo "==> summary"
for s in "${steps[@]}"; do echo "  ok  ${s//$OUT\//}"; done
echo "total $((SECONDS / 60)) min $((SECONDS % 60)) s; load: $(uptime | sed 's/.*load average: //') (1, 5, 15 min; $(nproc) cores)"
echo "demo output in $OUT/"
