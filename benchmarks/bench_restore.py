"""Orchestration overhead of ``almadeliver restore`` and ``almadeliver image`` against the bare CASA run.

On the tests' cached one-EB ``--size medium`` manual simulation (2019.1.00011.S, raw/ about 19 MB):
  - restore: ``python -m almadeliver restore MEMBER`` (the whole command: start-up, plan, checks, CASA
    child, progress, disk sampling, result check) vs scriptForPI.py executed in ``script/`` by a bare
    ``python`` holding casatasks' tasks and tools as globals (the namespace scriptForPI expects, with
    the calibration scripts' CASA-version gate passed, as ``--casa-version-mismatch allow`` does);
  - image: ``python -m almadeliver image MEMBER`` vs the delivered scriptForImaging.py executed the
    same bare way next to the restored MSs (its tclean and exportfits calls, nothing else).
Each side runs --repeat times (median compared, range printed), in a fresh copy of the member; the
FITS images of both image runs are counted (ours carry the delivered products' names).
Targets (exit 1 when one is missed): median ours / median bare <= 1.05, for restore and for image.
Usage: python benchmarks/bench_restore.py [--repeat 3] [--work DIR] [--restore-only]
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Report, Timing, parser

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.05

BARE = r'''
import os, sys
from almadeliver.casa.legacy import legacy_globals
script, cwd = os.path.abspath(sys.argv[1]), sys.argv[2]
os.chdir(cwd)
g = legacy_globals({"SPACESAVING": 1} if sys.argv[3] == "restore" else {}, pass_version_gates=True)
try:
    g["execfile"](script)
except SystemExit as exc:
    if exc.code not in (None, 0):
        raise
'''


def _project() -> Path:
    """The tests' cached one-EB medium simulation (test_restore_casa.py's ``delivered(1, size="medium")``)."""
    sys.path.insert(0, str(REPO / "tests"))
    import conftest

    return conftest.simulated.__wrapped__()("2019.1.00011.S", ebs=1, size="medium")


def _run(args: list[str], cwd: Path, log: Path) -> float:
    """Seconds of one run of ``args`` (its output kept in ``log``)."""
    t0 = time.perf_counter()
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"bench_restore: {' '.join(args[:4])} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return seconds


def main() -> int:
    """Run the benchmark; 1 when a target is missed."""
    args = parser(__doc__)
    args.add_argument("--work", type=Path, default=None, help="a folder for the runs (default: a temporary one)")
    args.add_argument("--restore-only", action="store_true", help="measure restore only (no imaging)")
    args = args.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import unpack_delivery

    from almadeliver.delivery.layout import find_members

    report = Report("bench_restore")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-restore-"))
    pristine = work / "pristine"
    if not pristine.exists():
        unpack_delivery(_project(), pristine)
    [member0] = find_members(pristine)
    rel = member0.path.relative_to(pristine)
    py = sys.executable
    bare_py = work / "bare.py"
    bare_py.write_text(BARE)
    sides = {k: Timing() for k in ("restore ours", "restore bare", "image ours", "image bare")}
    for i in range(args.repeat):
        for who in ("ours", "bare"):
            copy = work / f"{who}{i}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(pristine, copy, symlinks=True)
            member = copy / rel
            if who == "ours":
                sides["restore ours"].runs.append(_run(
                    [py, "-m", "almadeliver", "restore", str(member), "--spacesaving", "1",
                     "--casa-version-mismatch", "allow"], member, copy / "restore.out"))
                if args.restore_only:
                    continue
                sides["image ours"].runs.append(_run(
                    [py, "-m", "almadeliver", "image", str(member), "--out", str(member / "reimage")], member,
                    copy / "image.out"))
            else:
                script = next((member / "script").glob("*scriptForPI.py"))
                sides["restore bare"].runs.append(_run([py, str(bare_py), str(script), str(script.parent), "restore"],
                                                       member, copy / "restore.out"))
                if args.restore_only:
                    continue
                out = member / "reimage"
                out.mkdir()
                for ms in sorted((member / "calibrated").glob("*.ms*")):
                    (out / ms.name).symlink_to(ms)
                imaging = next((member / "script").glob("*scriptForImaging*.py"))
                sides["image bare"].runs.append(_run([py, str(bare_py), str(imaging), str(out), "image"], member,
                                                     copy / "image.out"))
        if i + 1 < args.repeat:
            for who in ("ours", "bare"):
                shutil.rmtree(work / f"{who}{i}", ignore_errors=True)
    for name, t in sides.items():
        if t.runs:
            print(f"  {name:14s} {t}", flush=True)
    report.target("restore: almadeliver / bare scriptForPI", sides["restore ours"].median / sides["restore bare"].median,
                  TARGET, higher_is_better=False)
    if args.restore_only:
        return report.finish()
    last = args.repeat - 1
    ours_fits = sorted((work / f"ours{last}" / rel / "reimage").glob("*.fits"))
    bare_fits = sorted((work / f"bare{last}" / rel / "reimage").glob("*.fits"))
    same = len(ours_fits) == len(bare_fits) > 0
    print(f"  image FITS: {len(ours_fits)} ours, {len(bare_fits)} bare", flush=True)
    report.target("image: almadeliver / bare scriptForImaging", sides["image ours"].median / sides["image bare"].median,
                  TARGET, higher_is_better=False, detail="" if same else "not as many FITS images")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
