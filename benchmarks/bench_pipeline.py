"""Time to the calibrated MSs: ``almadeliver run --steps download,restore`` (each EB calibrated while the
later EBs download) against the download alone and the restore alone, over a throttled link.

The project is the tests' cached 2-EB manual simulation (2017.1.00123.S, flux calibration and
concatenation into calibrated.ms), served by the local archive with one connection (--parallel 1) of
--rate bytes/s; by default the rate is set so that the download takes as long as a restore measured
first (download and restore of comparable length: the hardest case for the overlap). Each repetition
runs, in fresh folders: ``run --steps download`` (D), ``run --steps restore`` on what it fetched (R),
and ``run --steps download,restore`` (P). Target: median P / max(median D, median R) <= 1.1.

The first EB cannot start before its files are here (the auxiliary tarball with the scripts and
calibration, then its raw tarball), and everything after must still be restored: P >= t(first EB's
files) + R. The benchmark prints that floor; for this project with D = R it is about 1.4 (the first
EB's files are 42% of the bytes), so the 1.1 target needs many EBs, or a download much shorter (or
longer) than the restore. That the overlapped result equals the serial one
(column by column) is what tests/test_pipeline_restore.py checks.

Usage: python benchmarks/bench_pipeline.py [--repeat 3] [--rate BYTES_PER_S] [--work DIR]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import Report, Timing, parser

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.1


def _project() -> Path:
    """The tests' cached simulation (built once, in .almadeliver-cache/, when missing)."""
    sys.path.insert(0, str(REPO / "tests"))
    import conftest

    return conftest.simulated.__wrapped__()(conftest.STAFF_PROJECT, ebs=2,
                                            casa_version=conftest.installed_casa_version())


def main() -> int:
    """Run the benchmark; 1 when a target is missed."""
    ap = parser(__doc__)
    ap.add_argument("--rate", type=float, default=None,
                    help="bytes/s of the one connection (default: the project's bytes over one restore's seconds)")
    ap.add_argument("--work", type=Path, default=None, help="a folder for the runs (default: a temporary one)")
    args = ap.parse_args()
    sys.modules["distributed"] = None          # the process pool backend: no Dask cluster start-up in the times
    from almadeliver.scale.run import RunConfig, run
    from almadeliver.scale.steps import find_mous
    from almadeliver.sim.archive import Faults, LocalArchive
    from almadeliver.sim.catalogue import Catalogue
    from almadeliver.workflow import RestoreOptions

    report = Report("bench_pipeline")
    project = _project()
    catalogue = Catalogue.load(project)
    total = sum(f.size for f in catalogue.files)
    raw = [f for f in catalogue.files if ".asdm.sdm" in f.name]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    (work / "archive").mkdir(parents=True, exist_ok=True)
    if not (work / "archive" / catalogue.project).exists():
        (work / "archive" / catalogue.project).symlink_to(project)
    faults = Faults()

    def timed_run(dest: Path, steps: tuple[str, ...]) -> float:
        config = RunConfig(dest=dest, steps=steps, archive=archive.url, workers=1, connections_per_host=1,
                           restore=RestoreOptions(spacesaving=1))
        t0 = time.perf_counter()
        result = run(config, ids)
        seconds = time.perf_counter() - t0
        if result.failed:
            raise SystemExit(f"bench_pipeline: {steps} failed: {result.failed[0].error}")
        return seconds

    with LocalArchive(work / "archive", faults=faults) as archive:
        ids = find_mous([catalogue.project], archive=archive.url)
        rate = args.rate
        if rate is None:                        # calibrate: one restore (after a fast download), untimed
            dest = work / "calibrate"
            shutil.rmtree(dest, ignore_errors=True)
            timed_run(dest, ("download",))
            rate = total / timed_run(dest, ("restore",))
            shutil.rmtree(dest, ignore_errors=True)
        faults.throttle = rate
        print(f"  {total} bytes ({len(raw)} raw tarballs) over one connection of {rate / 1e3:.0f} kB/s", flush=True)
        d, r, p = Timing(), Timing(), Timing()
        for i in range(args.repeat):
            serial, both = work / f"serial{i}", work / f"overlap{i}"
            for folder in (serial, both):
                shutil.rmtree(folder, ignore_errors=True)
            d.runs.append(timed_run(serial, ("download",)))
            r.runs.append(timed_run(serial, ("restore",)))
            p.runs.append(timed_run(both, ("download", "restore")))
            shutil.rmtree(serial, ignore_errors=True)
            shutil.rmtree(both, ignore_errors=True)
    print(f"  download alone            {d}", flush=True)
    print(f"  restore alone             {r}", flush=True)
    print(f"  download,restore at once  {p}", flush=True)
    longest = max(d.median, r.median)
    # the first EB can start once the auxiliary tarball, the README and its raw tarball are here
    first_eb = sum(f.size for f in catalogue.files if f.name.endswith(("_auxiliary.tar", "README.txt"))) + raw[0].size
    floor = (d.median * first_eb / total + r.median) / longest
    report.target("overlap: P / max(D, R)", p.median / longest, TARGET, higher_is_better=False,
                  detail=f"floor for this project {floor:.2f}; serial D+R would be {(d.median + r.median) / longest:.2f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
