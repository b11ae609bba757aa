"""validate on a 100 000-file pipeline project: time, and the ratio against `find PATH | wc -l`.

The tree (built once in /tmp, reused) has pipeline members with raw ASDMs, restored MSs in
calibrated/working, unpacked weblogs and product FITS files, like the legus-alma trees.
Usage: python benchmarks/bench_validate.py [--files 100000] [--keep]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from almadeliver.delivery.validate import validate

PROJECT = "2016.1.01435.S"
ASDM_TABLES = ["Main", "Antenna", "ConfigDescription", "DataDescription", "ExecBlock", "Feed", "Field",
               "Polarization", "Processor", "Receiver", "SBSummary", "Scan", "Source", "SpectralWindow", "State",
               "Station", "Subscan", "SwitchCycle", "SysCal", "CalWVR", "Pointing", "Weather"]
MS_TABLES = ["", "ANTENNA", "DATA_DESCRIPTION", "FEED", "FIELD", "FLAG_CMD", "HISTORY", "OBSERVATION",
             "POINTING", "POLARIZATION", "PROCESSOR", "SOURCE", "SPECTRAL_WINDOW", "STATE", "SYSCAL", "WEATHER"]
FILES_PER_MEMBER = 5 * (len(ASDM_TABLES) + 2 + 60) + 5 * len(MS_TABLES) * 8 + 2400 + 20 + 30


def build(root: Path, n_files: int) -> Path:
    project = root / PROJECT
    data = np.zeros((1, 4, 16, 16), dtype=np.float32)
    fits_bytes = None
    members = max(1, round(n_files / FILES_PER_MEMBER))
    for k in range(members):
        mous = f"uid___A001_X87c_X{k + 0x100:x}"
        m = project / "science_goal.uid___A001_X87c_X67" / f"group.uid___A001_X87c_X68" / f"member.{mous}"
        ebs = [f"uid___A002_Xba0af7_X{(k * 8 + j) + 0x6000:x}" for j in range(5)]
        for sub in ("script", "calibration", "log", "product", "qa", "raw", "calibrated/working"):
            (m / sub).mkdir(parents=True, exist_ok=True)
        (m / "README").write_text(f"Project code: {PROJECT}\nPI name: A. PI\nCASA version used for reduction: 4.7.0\n"
                                  "Comments from Reducer:\nfine\n#####\n")
        (m / f"script/member.{mous}.scriptForPI.py").write_text("# scriptForPI\n")
        (m / f"script/{mous}.hifa_calimage.casa_piperestorescript.py").write_text(f"hifa_restoredata(vis={ebs})\n")
        (m / f"calibration/{mous}.session_1.caltables.tgz").write_bytes(b"tgz")
        (m / f"calibration/{mous}.cont.dat").write_text("Field: NGC_628\n\nSpectralWindow: 17\n104.5~104.6GHz LSRK\n")
        (m / f"log/{mous}.casa_commands.log").write_text("tclean(vis=['a.ms'])\n")
        (m / f"qa/{mous}.weblog.tgz").write_bytes(b"tgz")
        for eb in ebs:
            (m / f"calibration/{eb}.ms.calapply.txt").write_text(
                f"applycal(vis='{eb}.ms', field='', intent='', spw='', gaintable=['{eb}.ms.tsys'])\n")
            (m / f"calibration/{eb}.ms.flagversions.tgz").write_bytes(b"tgz")
            (m / f"calibration/{eb}_flagtemplate.txt").write_text("mode='manual' antenna='DV08' reason='x'\n")
            asdm = m / f"raw/{eb}.asdm.sdm"
            (asdm / "ASDMBinary").mkdir(parents=True)
            tables = "".join(f"<Table> <Name> {t} </Name> <NumberRows> 1 </NumberRows> </Table>" for t in ASDM_TABLES)
            (asdm / "ASDM.xml").write_text(f"<ASDM>{tables}</ASDM>")
            blobs = [f"uid___A002_Xba0af7_X{i:x}" for i in range(60)]
            for t in ASDM_TABLES[1:]:
                (asdm / f"{t}.xml").write_text("<t/>")
            (asdm / "Main.xml").write_text("".join(
                f'<row><dataUID> <EntityRef entityId="{b.replace("uid___", "uid://").replace("_", "/")}"/> </dataUID></row>'
                for b in blobs))
            for b in blobs:
                (asdm / "ASDMBinary" / b).write_bytes(b"v")
            ms = m / f"calibrated/working/{eb}.ms"
            for t in MS_TABLES:
                d = ms / t
                d.mkdir(parents=True, exist_ok=True)
                for name in ("table.dat", "table.f0", "table.f1", "table.f2", "table.info", "table.lock",
                             "table.f0_TSM0", "table.f1_TSM1"):
                    (d / name).write_bytes(b"")
        weblog = m / "qa/pipeline-20170118T004153/html"
        for stage in range(40):
            d = weblog / f"stage{stage}"
            d.mkdir(parents=True)
            for i in range(60):
                (d / f"plot_{i}.png").write_bytes(b"png")
        for spw in range(10):
            for kind in ("pbcor", "pb"):
                path = m / f"product/{mous}.NGC_628_sci.spw{spw}.cube.I.{kind}.fits"
                if fits_bytes is None:
                    hdu = fits.PrimaryHDU(data)
                    hdu.header.update(BMAJ=1e-4, BMIN=1e-4, BPA=0.0)
                    hdu.writeto(path)
                    fits_bytes = path.read_bytes()
                else:
                    path.write_bytes(fits_bytes)
    return project


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the tree in /tmp for the next run")
    args = ap.parse_args()
    root = Path(tempfile.gettempdir()) / f"almadeliver-bench-validate-{args.files}"
    if not (root / PROJECT).is_dir():
        shutil.rmtree(root, ignore_errors=True)
        t, _ = timed(lambda: build(root, args.files))
        print(f"built {root} in {t:.1f} s")
    project = root / PROJECT
    t_find, out = timed(lambda: subprocess.run(f"find '{project}' | wc -l", shell=True, check=True,
                                               capture_output=True, text=True).stdout)
    runs = [timed(lambda: validate(project)) for _ in range(3)]
    t_val = min(t for t, _ in runs)
    report = runs[0][1]
    counts = {s: len(report.of(s)) for s in type(report.findings[0].severity)} if report.findings else {}
    print(f"tree: {int(out)} entries, {report.details['files']} files, {len(report.details['members'])} members, "
          f"flavour {report.flavour}; findings {({k.value: v for k, v in counts.items()})}")
    print(f"find | wc -l: {t_find:.3f} s")
    print(f"validate:     {t_val:.3f} s (best of 3; budget 5 s)")
    print(f"ratio validate / find: {t_val / t_find:.1f}x")
    if not args.keep:
        shutil.rmtree(root)
    return 0 if t_val < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
