"""Download speed against the local archive throttled like the real one (50 MB/s per connection).

Every side runs --repeat times (median compared, range printed); every peer's files are checked
byte-identical to ours. Targets (exit 1 when one is missed):
  - 8 files: almadeliver vs astroquery's Alma.download_files and vs `xargs -P5 curl -C -` (the archive's script)
  - one large file: almadeliver --split 5 vs a single curl
  - download + extraction vs the download alone
  - CPU per byte (user + system seconds per GB) against curl's on the same files
  - the fraction of the link limit (5 connections x --rate) reached, quiet and with --busy busy processes
Usage: python benchmarks/bench_download.py [--files 8] [--mb 200] [--big-mb 2000] [--rate 50e6] [--repeat 3]
       [--busy 2] [--skip-astroquery]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from almadeliver.archive.model import ArchiveFile, Mous, Project, ProjectView
from almadeliver.ids import TarballKind, Uid, products_name
from almadeliver.packaging.tarballs import write_tar
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile
from almadeliver.transfer.download import TransferConfig, download
from almadeliver.transfer.plan import make_plan, parse_what
from common import Report, Timing, busy, parser, timed

MiB = 1 << 20

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


def ours(archive, names, dest, repeat: int, **cfg) -> Timing:
    plan = make_plan(view(archive, names), parse_what("products"))

    def run():
        result = download(plan, dest, TransferConfig(progress=False, **cfg))
        assert result.ok, [str(f.error) for f in result.failed]
    return timed(run, repeat, before=lambda: fresh(dest))


def curl(urls: list[str], dest: Path, parallel: int, repeat: int) -> Timing:
    cmd = f"xargs -P{parallel} -n1 curl -sSf -C - -O"
    return timed(lambda: subprocess.run(cmd, shell=True, input="\n".join(urls), text=True, cwd=dest, check=True),
                 repeat, before=lambda: fresh(dest))


def astroquery(urls: list[str], dest: Path, repeat: int) -> Timing:
    import logging
    from astroquery.alma import Alma
    logging.getLogger("astroquery").setLevel(logging.WARNING)
    return timed(lambda: Alma().download_files(urls, savedir=str(dest), cache=False), repeat,
                 before=lambda: fresh(dest))


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--files", type=int, default=8, help="tarballs of the many-files case (default 8)")
    ap.add_argument("--mb", type=int, default=200, help="MB of each of them (default 200)")
    ap.add_argument("--big-mb", type=int, default=2000, help="MB of the one-large-file case (default 2000)")
    ap.add_argument("--rate", type=float, default=50e6, help="bytes/s per connection (default 50e6)")
    ap.add_argument("--busy", type=int, default=2, help="busy processes for the loaded run (default 2)")
    ap.add_argument("--skip-astroquery", action="store_true")
    args = ap.parse_args()
    n = args.repeat
    report = Report("bench_download")
    with tempfile.TemporaryDirectory(prefix="bench-download-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        groups = make_archive(tmp / "archive", args.files, args.mb, args.big_mb)
        served = [tmp / "archive" / PROJECT / FILES_DIR / name for name in groups["many"]]
        with ServedArchive(tmp / "archive", args.rate) as archive:
            urls = [f"{archive.url}/dataPortal/{n}" for n in groups["many"]]
            big_url = [f"{archive.url}/dataPortal/{groups['big'][0]}"]
            t_ours = ours(archive, groups["many"], tmp / "ours", n, untar=False)
            ours_files = [tmp / "ours" / name for name in groups["many"]]
            t_untar = ours(archive, groups["many"], tmp / "untar", n)
            t_curl5 = curl(urls, tmp / "curl5", 5, n)
            report.identical("xargs -P5 curl files = ours", ours_files, [tmp / "curl5" / x for x in groups["many"]])
            t_astro = None
            if not args.skip_astroquery:
                t_astro = astroquery(urls, tmp / "astroquery", n)
                report.identical("astroquery files = ours", ours_files,
                                 [tmp / "astroquery" / x for x in groups["many"]])
            report.identical("ours = the archive's files", ours_files, served)
            t_split = ours(archive, groups["big"], tmp / "split", n, untar=False, split=5)
            t_curl1 = curl(big_url, tmp / "curl1", 1, n)
            report.identical("--split 5 file = single curl's", [tmp / "split" / groups["big"][0]],
                             [tmp / "curl1" / groups["big"][0]])
            with busy(args.busy):
                t_loaded = ours(archive, groups["many"], tmp / "loaded", n, untar=False)
        total = args.files * args.mb
        gb = total * MiB / 1e9
        print(f"local archive throttled to {args.rate / 1e6:.0f} MB/s per connection; "
              f"{args.files} x {args.mb} MB and 1 x {args.big_mb} MB tarballs; {n} runs of each side")
        print(f"almadeliver (5 connections)      {t_ours}  {total / t_ours.median:6.0f} MB/s  "
              f"CPU {t_ours.cpu_median / gb:5.2f} s/GB")
        print(f"almadeliver + extraction         {t_untar}")
        print(f"xargs -P5 curl -C -              {t_curl5}  CPU {t_curl5.cpu_median / gb:5.2f} s/GB")
        if t_astro is not None:
            print(f"astroquery download_files        {t_astro}")
        print(f"almadeliver --split 5 (1 file)   {t_split}  {args.big_mb / t_split.median:6.0f} MB/s")
        print(f"single curl (1 file)             {t_curl1}")
        print(f"almadeliver, {args.busy} busy processes   {t_loaded}  {total / t_loaded.median:6.0f} MB/s")
        link = 5 * args.rate
        if t_astro is not None:
            report.target("speed vs astroquery download_files (x)", t_astro.median / t_ours.median, 4.5, True)
        report.target("speed vs xargs -P5 curl -C - (x)", t_curl5.median / t_ours.median, 0.95, True)
        report.target("--split 5 vs single curl (x)", t_curl1.median / t_split.median, 4, True)
        report.target("download+extraction / download", t_untar.median / t_ours.median, 1.15, False)
        report.target("CPU per byte vs curl (x)", t_ours.cpu_median / t_curl5.cpu_median, 1.5, False,
                      f"{t_ours.cpu_median / gb:.2f} vs {t_curl5.cpu_median / gb:.2f} CPU s/GB")
        report.target("quiet: fraction of the link limit", total * MiB / t_ours.median / link, 0.9, True)
        report.target(f"{args.busy} busy processes: fraction of the link limit",
                      total * MiB / t_loaded.median / link, 0.9, True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
