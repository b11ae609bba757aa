"""Extraction speed: almadeliver's safe, verified untar vs GNU ``tar xf`` on the same delivery tarball.

Builds one tarball in /tmp (a delivery-like member: a few large FITS cubes plus many small files),
extracts it with each tool (best of N, fresh folder each time) and prints the ratio.
Usage: python benchmarks/bench_extract.py [--mb 2000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from almadeliver.packaging.tarballs import tree_entries, write_tar
from almadeliver.transfer.extract import extract_tarball, read_members

MEMBER = "2013.1.00308.S/science_goal.uid___A001_X13e_X1fc/group.uid___A001_X13e_X1fd/member.uid___A001_X13e_X1fe"


def make_tarball(work: Path, total_mb: int) -> Path:
    member = work / "src" / MEMBER
    for sub in ("product", "qa", "log", "script", "calibration"):
        (member / sub).mkdir(parents=True)
    block = os.urandom(1 << 20)
    big = max(total_mb - 20, 1)
    for i in range(4):                                   # the cubes: most of the bytes
        with open(member / "product" / f"W51.spw{25 + 2 * i}.cube.I.pbcor.fits", "wb") as fh:
            for _ in range(big // 4):
                fh.write(block)
    for i in range(400):                                 # plots, logs, scripts: many small files
        sub = ("qa", "log", "script", "calibration")[i % 4]
        (member / sub / f"uid___A002_X1_X{i:x}.file{i}.txt").write_bytes(block[: 50_000])
    return write_tar(work / "2013.1.00308.S_uid___A001_X13e_X1fe_001_of_001.tar",
                     tree_entries(work / "src" / "2013.1.00308.S", "2013.1.00308.S"))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    os.sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tar = shutil.which("tar")
    with tempfile.TemporaryDirectory(prefix="bench-extract-", dir="/tmp") as tmp:
        work = Path(tmp)
        tarball = make_tarball(work, args.mb)
        shutil.rmtree(work / "src")
        size = tarball.stat().st_size
        gnu, ours = [], []
        for i in range(args.repeat):
            for label, runs in (("tar", gnu), ("almadeliver", ours)):
                out = work / f"{label}{i}"
                out.mkdir()
                os.sync()
                if label == "tar":
                    runs.append(timed(lambda: subprocess.run([tar, "xf", str(tarball), "-C", str(out)], check=True)))
                else:
                    runs.append(timed(lambda: extract_tarball(tarball, out, keep=True)))
                shutil.rmtree(out)
        g, o = min(gnu), min(ours)
        print(f"tarball {size / 1e6:.0f} MB, {len(read_members(tarball))} members, best of {args.repeat}")
        print(f"GNU tar xf        {g:6.2f} s  ({size / g / 1e6:.0f} MB/s)")
        print(f"almadeliver       {o:6.2f} s  ({size / o / 1e6:.0f} MB/s)  (checks every member, verifies sizes)")
        print(f"ratio almadeliver/tar = {o / g:.2f} (target <= 1.10)")


if __name__ == "__main__":
    main()
