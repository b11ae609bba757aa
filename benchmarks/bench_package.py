"""Tar writing of `package` against GNU `tar cf` on the same ~1.5 GB of files; prints the ratios.

Writes a staff-like product set (a few large FITS-sized files and many small ones) in /tmp, then
times, --repeat runs each (median compared, range printed): GNU `tar cf`; almadeliver's writer
(sorted, fixed metadata, sha256 on a second thread); and `tar cf` followed by `sha256sum` (what the
manifest needs from a shell). Each side also runs with --busy busy processes. Peers' outputs are
checked: our tarball holds the same files (names, sizes, bytes) as GNU tar's, and the sha256 the
manifest records is sha256sum's. Target (exit 1 when missed): package <= 1.1x `tar cf` with its
checksum (tar cf + sha256sum), quiet and with one core busy.
Usage: python benchmarks/bench_package.py [--gb 1.5] [--repeat 3] [--busy 1]
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from almadeliver.packaging.tarballs import tree_entries, write_parts
from common import Report, Row, busy, parser, timed

SIZE_GB = float(os.environ.get("BENCH_PACKAGE_GB", "1.5"))


def make_files(root: Path, size_gb: float = SIZE_GB) -> int:
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


def _listing(path: Path) -> dict[str, tuple[int, str]]:
    """Regular files of a tarball: name -> (size, sha256 of the bytes)."""
    out = {}
    with tarfile.open(path) as tar:
        for m in tar:
            if m.isfile():
                out[m.name] = (m.size, hashlib.sha256(tar.extractfile(m).read()).hexdigest())
    return out


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--gb", type=float, default=SIZE_GB, help=f"GB of files to pack (default {SIZE_GB})")
    ap.add_argument("--busy", type=int, default=1, help="busy processes for the loaded runs (default 1)")
    args = ap.parse_args()
    report = Report("bench_package")
    work = Path(tempfile.mkdtemp(prefix="bench-package-", dir="/tmp"))
    try:
        src = work / "member"
        src.mkdir()
        total = make_files(src, args.gb)
        out = work / "out"
        out.mkdir()
        entries = tree_entries(src, "member")
        subprocess.run(["sync"], check=True)

        def gnu() -> None:
            subprocess.run(["tar", "cf", str(out / "gnu.tar"), "-C", str(work), "member"], check=True)

        def gnu_sha() -> None:
            gnu()
            subprocess.run(["sha256sum", str(out / "gnu.tar")], check=True, stdout=subprocess.DEVNULL)

        records = []

        def ours() -> None:
            records[:] = write_parts(lambda m, n: out / f"p_{m:03d}_of_{n:03d}.tar", entries, 10**12)

        def clean() -> None:
            for p in out.iterdir():
                p.unlink()

        ours()                                                # warm the page cache once
        [rec] = records
        same = _listing(rec.path) == _listing((gnu(), out / "gnu.tar")[1])
        report.rows.append(Row("bench_package", "our tarball's files = GNU tar's", None, "identical", same))
        print(f"  our tarball's files = GNU tar's: {'identical' if same else 'DIFFERENT'}")
        sha = subprocess.run(["sha256sum", str(rec.path)], check=True, capture_output=True, text=True).stdout.split()[0]
        report.rows.append(Row("bench_package", "recorded sha256 = sha256sum's", None, "identical", sha == rec.sha256))
        print(f"  recorded sha256 = sha256sum's: {'identical' if sha == rec.sha256 else 'DIFFERENT'}")
        n = args.repeat
        t_gnu, t_ours, t_gnu_sha = timed(gnu, n, clean), timed(ours, n, clean), timed(gnu_sha, n, clean)
        with busy(args.busy):
            b_gnu_sha, b_ours = timed(gnu_sha, n, clean), timed(ours, n, clean)
        clean()
        print(f"{total / 1e9:.2f} GB in {len(entries)} entries; {n} runs of each side")
        for label, t in (("GNU tar cf", t_gnu), ("package (tar + sha256)", t_ours), ("tar cf + sha256sum", t_gnu_sha),
                         (f"package, {args.busy} busy", b_ours), (f"tar cf + sha256sum, {args.busy} busy", b_gnu_sha)):
            print(f"{label:30s} {t}  {total / t.median / 1e6:7.0f} MB/s")
        print(f"ratio package / tar cf (no checksum)   {t_ours.median / t_gnu.median:.2f}")
        report.target("package / (tar cf + sha256sum), quiet", t_ours.median / t_gnu_sha.median, 1.1, False)
        report.target(f"package / (tar cf + sha256sum), {args.busy} busy", b_ours.median / b_gnu_sha.median, 1.1, False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
