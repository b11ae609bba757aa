"""The MOUS README in ALMA's format (header, reducer's QA2 notes, the delivered tree)."""
from __future__ import annotations

from pathlib import Path

from .plan import MousPlan, ProjectPlan

_ABOUT = """This file describes the content of the tar file you have received. The
full data structure is inserted below.

- 'calibration' contains the files needed for calibration starting from
the initial ms to the fully calibrated data.
- 'script' contains the reduction scripts used to process the initial ms
to calibrated data, but also to obtain concatenated data (if more than
one execution) and imaging products. The most important script for you
is the "scriptForPI.py".
- 'product' contains the fits files of the selected image products.
- 'qa' contains the qa2 reports that show plots and text information
needed to assess the quality of the processing.
- 'log' contains the CASA log files.

#####

How to obtain a calibrated MeasurementSet (MS) for your data?

Download and untar the raw data tarballs so that a directory "raw" with
the "uid*.asdm.sdm" directories sits next to this README. Then cd into
directory "script" and run

   casa -c "SPACESAVING=1; execfile('scriptForPI.py')"

The scriptForPI offers a "SPACESAVING" option to limit the disk space
usage during and after its execution:
SPACESAVING = 0 same as not set (all intermediate MSs are kept)
            = 1 do not keep intermediate MSs named *.ms.split
            = 2 do not keep intermediate MSs named *.ms and *.ms.split
            = 3 do not keep intermediate MSs named *.ms, *.ms.split,
                and *.ms.split.cal (if possible)

#####
"""


def tree_text(root: Path, top: str) -> str:
    """The delivered tree as the ``tree`` command prints it (folders first listed alphabetically)."""
    lines = [top]
    counts = {"dirs": 0, "files": 0}

    def walk(folder: Path, prefix: str) -> None:
        children = sorted(folder.iterdir(), key=lambda p: p.name)
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'`-- ' if last else '|-- '}{child.name}")
            if child.is_dir() and not child.is_symlink():
                counts["dirs"] += 1
                walk(child, prefix + ("    " if last else "|   "))
            else:
                counts["files"] += 1

    walk(root, "")
    lines.append("")
    lines.append(f"{counts['dirs']} directories, {counts['files']} files")
    return "\n".join(lines)


_CYCLE_OF_YEAR = {2011: 0, 2012: 1, 2013: 2, 2015: 3, 2016: 4, 2017: 5, 2018: 6, 2019: 7, 2021: 8, 2022: 9,
                  2023: 10, 2024: 11, 2025: 12}


def alma_cycle(code: str) -> int:
    """ALMA's cycle number of a project code (2013.1.x is Cycle 2, 2017.1.x Cycle 5)."""
    year = int(code[:4])
    return _CYCLE_OF_YEAR.get(year, max(0, year - 2013))


# What the simulated PIs asked for (the simulated arrays and integrations reach it: 12m compact
# beams of 6-10 arcsec at 98-112 GHz)
REQUESTED_RESOLUTION_ARCSEC = {"12m": 8.0, "7m": 16.0, "TP": 60.0}


def readme_text(plan: ProjectPlan, mous: MousPlan, notes: list[str], tree: str, pipeline: bool) -> str:
    """The README of a member folder, as the archive writes it (array, EBs, QA2 notes, the tree)."""
    array = {"7m": "7m array (ACA)", "TP": "Total Power array (ACA)"}.get(mous.array, "12m array")
    ebs = ", ".join(eb.uid for eb in mous.ebs)
    cycle = alma_cycle(plan.code)
    return (
        "Atacama Large Millimeter/submillimeter Array (ALMA)\n\n#####\n\n"
        f"Cycle: {cycle}\n"
        f"Project code: {plan.code}\n"
        f"SB name:  {mous.sb_name}\n"
        f"PI name: {plan.pi}\n"
        f"Project title: {plan.title}\n"
        f"Configuration: {array}, {ebs}\n"
        f"Proposed rms: 25.0 mJy/beam in 5.9 MHz at Rep. Freq. 97.981 GHz\n"
        f"CASA version used for reduction: {plan.casa_version}\n"
        f"{'Calibration and imaging by the ALMA pipeline' if pipeline else 'Comments from Reducer:'}\n\n"
        # the request, in the words of the real W51 README's reducer comments
        f"* Requested angular resolution {REQUESTED_RESOLUTION_ARCSEC.get(mous.array, 8.0)} arcsec\n\n"
        + "\n".join(notes) + "\n\n#####\n\n" + _ABOUT + "\n\n" + tree + "\n"
    )


def qa2_notes(plan: ProjectPlan, qa: list[dict], images: list[dict]) -> list[str]:
    """The reducer's notes: calibration quality per EB and rms/beam of each product."""
    notes = ["Data reduction & calibration:", ""]
    for q in qa:
        notes.append(f"{q['eb']}: phase calibrator phase scatter {q['raw_phase_rms_deg']:.1f} deg before, "
                     f"{q['phase_rms_deg']:.2f} deg after calibration.")
    notes += ["", "Major flagging:", "", "edge channels of every spw; no antenna flagged.", "", "Imaging:", ""]
    target = plan.field("target")["name"]
    notes.append(f"Target: {target}")
    for im in images:
        notes.append(f"{im['name']}: rms {im['rms_mjy']:.2f} mJy/beam, beamsize {im['bmaj']:.2f}x{im['bmin']:.2f} arcsec")
    return notes
