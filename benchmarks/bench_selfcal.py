"""Self-calibration: ``almadeliver image --selfcal`` (plan, per-round figures, keep/reject, deeper clean,
cubes) vs the bare casatasks loop a user would type (split, tclean, gaincal, applycal, tclean, ...)
with the same rounds and imaging parameters, on the same simulated delivery.

Builds (once, in --work) a Cycle 0 project with residual phase errors on a bright target, runs each
(best of --repeat, a fresh output folder each time) and prints the ratio ours / bare.
Usage: python benchmarks/bench_selfcal.py [--work /tmp/bench-selfcal] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import almadeliver  # noqa: F401  (offline CASA site config, inherited by the children)
from almadeliver.casa.selfcal import plan_selfcal, selfcal
from almadeliver.delivery.layout import find_members
from almadeliver.sim.deliveries import simulate_project

CODE = "2011.0.00341.S"
ROUNDS = "p:int,p:inf"

BARE = '''
import sys, shutil, casatasks as ct
vis, field, spw, cell, imsize, out = sys.argv[1:7]
ct.split(vis=vis, outputvis=out + "/t.ms", field=field, datacolumn="data")
common = dict(vis=out + "/t.ms", spw=spw, specmode="mfs", deconvolver="hogbom", imsize=int(imsize), cell=cell,
              weighting="briggs", robust=0.5, niter=1000, savemodel="modelcolumn")
ct.tclean(imagename=out + "/r0", datacolumn="data", threshold="0.2Jy", **common)
for k, solint in enumerate(["int", "inf"], start=1):
    ct.gaincal(vis=out + "/t.ms", caltable=out + f"/r{k}.g", solint=solint, calmode="p", gaintype="G", minsnr=3)
    ct.applycal(vis=out + "/t.ms", gaintable=[out + f"/r{k}.g"], calwt=False, applymode="calonly")
    ct.tclean(imagename=out + f"/r{k}", datacolumn="corrected", threshold="0.1Jy", **common)
ct.applycal(vis=out + "/t.ms", gaintable=[out + "/r1.g"], calwt=False, applymode="calonly")
ct.tclean(imagename=out + "/final", datacolumn="corrected", threshold="0Jy", nsigma=3, usemask="pb", pbmask=0.2,
          pbcor=True, **{**common, "savemodel": "none"})
'''


def member_dir(work: Path) -> Path:
    tree = work / "tree"
    if not tree.exists():
        project = simulate_project(CODE, work / "archive", flavour="cycle0", residual_phase_deg=40.0)
        for f in project.catalogue.files:
            if f.name.endswith(".tar"):
                with tarfile.open(project.folder / "files" / f.name) as tar:
                    tar.extractall(tree, filter="data")
    [member] = find_members(tree / CODE)
    return member.path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-selfcal"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--member", type=Path, help="an unpacked member of the same simulation (skips building it)")
    args = ap.parse_args()
    member = args.member.resolve() if args.member else member_dir(args.work)
    ours, bare = [], []
    for i in range(args.repeat):
        out = args.work / f"ours{i}"
        shutil.rmtree(out, ignore_errors=True)
        plan = plan_selfcal(member, ROUNDS, out=out)
        t0 = time.perf_counter()
        r = selfcal(plan)
        ours.append(time.perf_counter() - t0)
        bare_out = args.work / f"bare{i}"
        shutil.rmtree(bare_out, ignore_errors=True)
        bare_out.mkdir(parents=True)
        script = bare_out / "loop.py"
        script.write_text(BARE)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script), str(plan.vis[0]), r.field, str(plan.continuum_spw),
                        f"{plan.cell_arcsec}arcsec", str(plan.imsize), str(bare_out)], check=True, cwd=bare_out,
                       capture_output=True)
        bare.append(time.perf_counter() - t0)
    print(json.dumps({"ours_s": min(ours), "bare_s": min(bare), "ratio_ours_over_bare": min(ours) / min(bare),
                      "note": "ours also remakes the delivered cube and measures every round"}))


if __name__ == "__main__":
    main()
