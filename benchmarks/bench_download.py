"""Download speed against the local archive throttled like the real one (50 MB/s per connection).

Prints ratios (higher is better for speedups):
  - 8 files: almadeliver vs astroquery's Alma.download_files and vs `xargs -P5 curl -C -` (the archive's script)
  - one large file: almadeliver --split 5 vs a single curl
  - download + extraction vs the download alone
Usage: python benchmarks/bench_download.py [--files 8] [--mb 200] [--big-mb 2000] [--rate 50e6] [--skip-astroquery]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from almadeliver.archive.model import ArchiveFile, Mous, Project, ProjectView
from almadeliver.ids import TarballKind, Uid, products_name
from almadeliver.packaging.tarballs import write_tar
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile
from almadeliver.transfer.download import TransferConfig, download
from almadeliver.transfer.plan import make_plan, parse_what

PROJECT = "2017.1.01185.S"


def make_archive(root: Path, n: int, mb: int, big_mb: int) -> dict[str, list[str]]:
    """``n`` products tarballs of ``mb`` MB (one per MOUS) and one of ``big_mb`` MB, as `simulate` lays them out."""
    files_dir = root / PROJECT / FILES_DIR
    files_dir.mkdir(parents=True)
    block = os.urandom(1 << 20)
    listed, groups = [], {"many": [], "big": []}
    for i, (group, size) in enumerate([("many", mb)] * n + [("big", big_mb)]):
        mous = Uid.parse(f"uid://A001/X12a3/X{0x100 + i:x}")
        src = root / "src" / PROJECT / f"member.{mous.disk}" / "product" / "cube.fits"
        src.parent.mkdir(parents=True)
        with open(src, "wb") as fh:
            for _ in range(size):
                fh.write(block)
        name = products_name(PROJECT, mous, 1, 1)
        write_tar(files_dir / name, [(f"{PROJECT}/member.{mous.disk}/product/cube.fits", src)])
        src.unlink()
        listed.append(CatalogueFile(name, "#this", "application/x-tar", (files_dir / name).stat().st_size,
                                    [mous.archive]))
        groups[group].append(name)
    shutil.rmtree(root / "src")
    Catalogue(PROJECT, False, [], listed).save(root / PROJECT)
    return groups


class ServedArchive:
    """The local archive in its own process (as the real one is), so it does not share our GIL."""

    SCRIPT = ("import sys; from almadeliver.sim.archive import LocalArchive, Faults; "
              "a = LocalArchive(sys.argv[1], faults=Faults(throttle=float(sys.argv[2]))).start(); "
              "print(a.url, flush=True); a.serve_forever()")

    def __init__(self, root: Path, rate: float):
        self.root, self.rate = root, rate

    def __enter__(self) -> "ServedArchive":
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(self.root), str(self.rate)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()


def view(archive: ServedArchive, names: list[str]) -> ProjectView:
    cat = {f.name: f for f in Catalogue.load(archive.root / PROJECT).files}
    files = [ArchiveFile(n, f"{archive.url}/dataPortal/{n}", cat[n].size, TarballKind.PRODUCTS, cat[n].ids[0])
             for n in names]
    m = Mous(files[0].mous, "uid://A001/X12a3/Xe8", None, "12m", True, [], [], ["3"], 1, files)
    return ProjectView(archive.url, [Project(PROJECT, "bench", "PI", 5, "Public", "", [], [], [m])], 1, 0)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ours(archive, names, dest, **cfg) -> float:
    plan = make_plan(view(archive, names), parse_what("products"))
    fresh(dest)

    def run():
        result = download(plan, dest, TransferConfig(progress=False, **cfg))
        assert result.ok, [str(f.error) for f in result.failed]
    return timed(run)


def curl(urls: list[str], dest: Path, parallel: int) -> float:
    fresh(dest)
    cmd = f"xargs -P{parallel} -n1 curl -sSf -C - -O"
    return timed(lambda: subprocess.run(cmd, shell=True, input="\n".join(urls), text=True, cwd=dest, check=True))


def astroquery(urls: list[str], dest: Path) -> float:
    import logging
    from astroquery.alma import Alma
    logging.getLogger("astroquery").setLevel(logging.WARNING)
    fresh(dest)
    return timed(lambda: Alma().download_files(urls, savedir=str(dest), cache=False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--big-mb", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=50e6, help="bytes/s per connection")
    ap.add_argument("--skip-astroquery", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-download-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        groups = make_archive(tmp / "archive", args.files, args.mb, args.big_mb)
        with ServedArchive(tmp / "archive", args.rate) as archive:
            urls = [f"{archive.url}/dataPortal/{n}" for n in groups["many"]]
            big_url = [f"{archive.url}/dataPortal/{groups['big'][0]}"]
            t_ours = min(ours(archive, groups["many"], tmp / "ours", untar=False) for _ in range(2))
            t_untar = min(ours(archive, groups["many"], tmp / "untar") for _ in range(2))
            t_curl5 = min(curl(urls, tmp / "curl5", 5) for _ in range(2))
            t_astro = None if args.skip_astroquery else astroquery(urls, tmp / "astroquery")
            t_split = ours(archive, groups["big"], tmp / "split", untar=False, split=5)
            t_curl1 = curl(big_url, tmp / "curl1", 1)
        total = args.files * args.mb
        print(f"local archive throttled to {args.rate / 1e6:.0f} MB/s per connection; "
              f"{args.files} x {args.mb} MB and 1 x {args.big_mb} MB tarballs")
        print(f"almadeliver (5 connections)      {t_ours:6.2f} s  {total / t_ours:6.0f} MB/s")
        print(f"almadeliver + extraction         {t_untar:6.2f} s")
        print(f"xargs -P5 curl -C -              {t_curl5:6.2f} s")
        if t_astro is not None:
            print(f"astroquery download_files        {t_astro:6.2f} s")
        print(f"almadeliver --split 5 (1 file)   {t_split:6.2f} s  {args.big_mb / t_split:6.0f} MB/s")
        print(f"single curl (1 file)             {t_curl1:6.2f} s")
        if t_astro is not None:
            print(f"ratio vs astroquery download_files = {t_astro / t_ours:.2f}x (target >= 4.5)")
        print(f"ratio vs xargs -P5 curl -C -       = {t_curl5 / t_ours:.2f}x (target >= 0.95)")
        print(f"ratio --split 5 vs single curl     = {t_curl1 / t_split:.2f}x (target >= 4)")
        print(f"download+extraction / download     = {t_untar / t_ours:.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()
