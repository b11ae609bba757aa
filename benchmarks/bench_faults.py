"""Fault soak: every fault kind of the local archive (and pairs), several runs each, judged file by file.

For each fault kind it prints: runs, files byte-identical to a plain `tar xf`, files refused (with a
one-line error, as they must be when the faults make them impossible), contract breaks (a file
that differs, a feasible file that failed, an impossible one reported fine, an unbounded byte
count, a multi-line error), bytes fetched per byte delivered for the files that arrived (1.00 = no
byte fetched twice) and, for the refused ones, bytes fetched per byte of their size (the bound is 3).
Usage: python benchmarks/bench_faults.py [--runs 3] [--only 'drop 64 kB']
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the fault archive the tests use

import fault_archive as fa  # noqa: E402
from almadeliver.sim.archive import LocalArchive  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per fault kind")
    ap.add_argument("--only", action="append", help="run only these fault kinds (repeatable)")
    args = ap.parse_args()
    kinds = {**fa.SINGLE, **fa.PAIRS}
    if args.only:
        kinds = {k: v for k, v in kinds.items() if k in args.only}
    work = Path(tempfile.mkdtemp(prefix="almadeliver-bench-faults-"))
    broken = 0
    try:
        root = fa.build(work / "archive")
        ref = fa.reference(root, work / "ref")
        print(f"{'fault kind':34s} {'runs':>4s} {'identical':>9s} {'refused':>7s} {'broken':>6s} "
              f"{'fetched/delivered':>17s} {'refused: fetched/size':>21s} {'s/run':>6s}")
        with LocalArchive(root) as archive:
            for name, faults in kinds.items():
                identical = refused = problems = sent = delivered = rsent = rsize = 0
                t0 = time.monotonic()
                for i in range(args.runs):
                    dest = work / "runs" / f"{len(name)}-{i}"
                    case = fa.run_case(archive, name, faults, dest, ref)
                    identical += len(case.identical)
                    refused += len(case.refused)
                    problems += len(case.problems)
                    for p in case.problems:
                        print(f"  BROKEN {name}: {p}")
                    sent += case.bytes_sent - case.refused_sent
                    delivered += case.bytes_delivered
                    rsent += case.refused_sent
                    rsize += case.refused_size
                    shutil.rmtree(dest)
                per = f"{sent / delivered:.2f}" if delivered else "-"
                rper = f"{rsent / rsize:.2f}" if rsize else "-"
                broken += problems
                print(f"{name:34s} {args.runs:4d} {identical:9d} {refused:7d} {problems:6d} {per:>17s} "
                      f"{rper:>21s} {(time.monotonic() - t0) / args.runs:6.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = len(fa.CONTENT) + 1
    print(f"{files} files per run ({sum(sum(m.values()) for m in fa.CONTENT.values()) // 1024} KiB in tarballs)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
