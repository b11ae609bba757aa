"""Tar writing of `package` against GNU `tar cf` on the same ~1.5 GB of files; prints the ratios.

Writes a staff-like product set (a few large FITS-sized files and many small ones) in /tmp, then
times, best of 3 each: GNU `tar cf`; almadeliver's writer (sorted, fixed metadata, sha256 on a
second thread); and `tar cf` followed by `sha256sum` (what the manifest needs from a shell).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from almadeliver.packaging.tarballs import tree_entries, write_parts

SIZE_GB = float(os.environ.get("BENCH_PACKAGE_GB", "1.5"))


def make_files(root: Path) -> int:
    rng_block = os.urandom(1 << 20)
    total, big = 0, int(SIZE_GB * 1e9 * 0.9) // 6
    for k in range(6):                                      # six cube-sized images
        with open(root / f"cube{k}.image.pbcor.fits", "wb") as fh:
            for _ in range(big >> 20):
                fh.write(rng_block)
        total += (big >> 20) << 20
    small = root / "qa"
    small.mkdir()
    for k in range(2000):                                   # plots, scripts, logs
        data = rng_block[: 20_000 + 37 * k]
        (small / f"plot{k:04d}.png").write_bytes(data)
        total += len(data)
    return total


def best(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-package-", dir="/tmp"))
    try:
        src = work / "member"
        src.mkdir()
        total = make_files(src)
        out = work / "out"
        out.mkdir()
        entries = tree_entries(src, "2013.1.00308.S/science_goal.x/group.y/member")
        subprocess.run(["sync"], check=True)

        def gnu() -> None:
            subprocess.run(["tar", "cf", str(out / "gnu.tar"), "-C", str(work), "member"], check=True)
            (out / "gnu.tar").unlink()

        def gnu_sha() -> None:
            subprocess.run(["tar", "cf", str(out / "gnu.tar"), "-C", str(work), "member"], check=True)
            subprocess.run(["sha256sum", str(out / "gnu.tar")], check=True, stdout=subprocess.DEVNULL)
            (out / "gnu.tar").unlink()

        def ours() -> None:
            for rec in write_parts(lambda m, n: out / f"p_{m:03d}_of_{n:03d}.tar", entries, 10**12):
                rec.path.unlink()

        ours()                                                # warm the page cache once
        t_gnu, t_ours, t_gnu_sha = best(gnu), best(ours), best(gnu_sha)
        print(f"{total / 1e9:.2f} GB in {len(entries)} entries")
        print(f"GNU tar cf               {t_gnu:6.2f} s  {total / t_gnu / 1e6:7.0f} MB/s")
        print(f"package (tar + sha256)   {t_ours:6.2f} s  {total / t_ours / 1e6:7.0f} MB/s")
        print(f"tar cf + sha256sum       {t_gnu_sha:6.2f} s  {total / t_gnu_sha / 1e6:7.0f} MB/s")
        print(f"ratio package / tar cf             {t_ours / t_gnu:.2f}")
        print(f"ratio package / (tar cf + sha256sum) {t_ours / t_gnu_sha:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
