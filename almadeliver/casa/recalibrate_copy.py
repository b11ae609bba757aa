"""The working copy of one EB's recalibration (``<member>/recalibration/<EB>/``) and the delivered
files it is compared with (the fluxscale listfile, from the calibration folder or its tgz)."""
from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path
from typing import Protocol


class WorkingCopy(Protocol):
    """What the working copy is made from (``recalibrate.EbRecalibration`` has these)."""

    eb: str
    workdir: Path
    source: Path | None                 # the MS or ASDM the steps start from
    delivered_tables: Path | None       # calibrated/<EB>.calibration/ or its .tgz
    delivered_script: Path
    script: Path                        # the working copy's script
    edited_from: Path | None            # the user's edited script (--script)


def prepare_working_copy(item: WorkingCopy) -> None:
    """Make the working copy: the starting MS (copied) or ASDM (linked), the delivered tables and
    flag versions (not over the working copy's own), and the script to run.

    Parameters
    ----------
    item : WorkingCopy
        The EB's recalibration (what to copy and where).
    """
    work = item.workdir
    work.mkdir(parents=True, exist_ok=True)
    if item.source is not None:
        if item.source.name.endswith(".asdm.sdm"):
            link = work / item.eb
            if not link.is_symlink():
                link.symlink_to(item.source)
        else:
            target = work / item.source.name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(item.source, target, symlinks=True)
            flags = item.source.with_name(item.source.name + ".flagversions")
            if flags.is_dir() and not (work / flags.name).exists():
                shutil.copytree(flags, work / flags.name)
    tables = item.delivered_tables
    if tables is not None and not (work / ".delivered-tables").exists():
        if tables.is_dir():
            for p in sorted(tables.iterdir()):
                if not (work / p.name).exists():
                    (shutil.copytree if p.is_dir() else shutil.copy2)(p, work / p.name)
        else:   # <EB>.calibration.tgz holds <EB>.calibration/<table>
            unpacked = work / ".delivered-tables.tmp"
            shutil.rmtree(unpacked, ignore_errors=True)
            with tarfile.open(tables) as tgz:
                tgz.extractall(unpacked, filter="data")
            for folder in unpacked.iterdir():
                for p in sorted(folder.iterdir()):
                    if not (work / p.name).exists():
                        p.rename(work / p.name)
            shutil.rmtree(unpacked)
        (work / ".delivered-tables").write_text(f"{tables}\n")
    if item.edited_from is not None:
        shutil.copy2(item.edited_from, item.script)
    elif not item.script.is_file():
        shutil.copy2(item.delivered_script, item.script)


def read_fluxscale(listfile: Path) -> dict[str, float]:
    """``"<field> spw <n>" -> flux density (Jy)`` from a fluxscale listfile (its "Flux density for"
    lines, as CASA writes them: ``# Flux density for J0554-3451 in SpW=1 (freq=...) is: 0.8996 +/- ...``).

    Parameters
    ----------
    listfile : Path
        The fluxscale listfile.

    Returns
    -------
    dict[str, float]
        ``<field> spw <n>`` -> flux density in Jy.
    """
    out: dict[str, float] = {}
    if not Path(listfile).is_file():
        return out
    for m in re.finditer(r"Flux density for (\S+) in SpW=(\d+) .*? is: ([-\d.eE+]+)", Path(listfile).read_text()):
        out[f"{m.group(1)} spw {m.group(2)}"] = float(m.group(3))
    return out


def delivered_file(item: WorkingCopy, name: str, workdir_tmp: Path) -> Path | None:
    """A delivered table file (the fluxscale listfile) from the calibration folder or tgz.

    Parameters
    ----------
    item : WorkingCopy
        The EB's recalibration.
    name : str
        The file's name.
    workdir_tmp : Path
        A folder to extract it from the tgz into.

    Returns
    -------
    Path | None
        The file, or None when it was not delivered.
    """
    tables = item.delivered_tables
    if tables is None:
        return None
    if tables.is_dir():
        return tables / name if (tables / name).exists() else None
    with tarfile.open(tables) as tgz:
        for member in tgz.getmembers():
            if member.isfile() and Path(member.name).name == name:
                fh = tgz.extractfile(member)
                if fh is None:
                    return None
                out = workdir_tmp / f"delivered.{name}"
                out.write_bytes(fh.read())
                return out
    return None
