"""A partial delivery tree: single files fetched from inside the tarballs (``download --files``/``--cutout``).

The download records what was asked in ``DEST/.almadeliver/selection.json`` (the patterns, each
cutout's SODA parameters, the tree paths fetched). ``validate`` on a tree under such a DEST says
which asked files are absent (errors: fetch again) and reports what was not asked (scripts,
calibration, README...) as information, not as errors.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .report import Report, Severity

SELECTION_FILE = Path(".almadeliver") / "selection.json"
SCHEMA = "almadeliver.selection/1"
#: validate's checks that only say a file or folder is absent: not errors in a partial tree.
ABSENCE_CHECKS = {"layout.missing-folder", "layout.flavour", "readme.missing", "script.no-scriptforpi",
                  "script.no-restorescript", "script.no-calibration-script", "log.empty"}


@dataclass
class SelectionRecord:
    """What single-file downloads into a DEST asked for and fetched (tree paths relative to DEST)."""

    patterns: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    cutouts: dict[str, dict[str, str]] = field(default_factory=dict)   # tree path -> SODA parameters

    def to_json(self) -> str:
        """The record as JSON (with its schema name).

        Returns
        -------
        str
            The JSON text.
        """
        return json.dumps({"schema": SCHEMA, "patterns": self.patterns, "files": self.files,
                           "cutouts": self.cutouts}, indent=1)


def read_selection(dest: Path) -> SelectionRecord | None:
    """The record in ``dest`` (None when there is none, or it is not one).

    Parameters
    ----------
    dest : Path
        The download destination.

    Returns
    -------
    SelectionRecord | None
        The selection record, or None.
    """
    path = Path(dest) / SELECTION_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return None
    return SelectionRecord(list(data.get("patterns", [])), list(data.get("files", [])), dict(data.get("cutouts", {})))


def record_selection(dest: Path, patterns: list[str], files: list[str], cutouts: dict[str, dict[str, str]]) -> Path:
    """Add a download's selection to ``dest``'s record (runs with other patterns add up); returns its path.

    Parameters
    ----------
    dest : Path
        The download destination.
    patterns : list[str]
        The ``--files`` patterns of this download.
    files : list[str]
        The files (paths relative to DEST) they selected.
    cutouts : dict[str, dict[str, str]]
        Cutout path -> its SODA parameters (CIRCLE in degrees, BAND in metres).

    Returns
    -------
    Path
        The record file's path.
    """
    record = read_selection(dest) or SelectionRecord()
    record.patterns += [p for p in patterns if p not in record.patterns]
    record.files += [f for f in files if f not in record.files]
    record.cutouts.update(cutouts)
    path = Path(dest) / SELECTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, path)
    return path


def find_selection(root: Path, levels: int = 6) -> tuple[Path, SelectionRecord] | None:
    """The DEST holding ``root`` (a project, member or any folder of a tree) and its record, if partial.

    Parameters
    ----------
    root : Path
        A folder of a downloaded tree.
    levels : int, default 6
        How many parent folders to look in.

    Returns
    -------
    tuple[Path, SelectionRecord] | None
        (DEST, its record), or None when ``root`` is not in a partial download.
    """
    here = Path(root).resolve()
    for folder in [here, *here.parents][:levels]:
        record = read_selection(folder)
        if record is not None:
            return folder, record
    return None


def review_partial(report: Report, root: Path) -> None:
    """Turn ``report`` into the report of a partial tree, when ``root`` lies in one.

    Absence findings (``ABSENCE_CHECKS``) become information ("not asked"); every asked file under
    ``root`` that is not on disk is an error; one summary line says what was asked and found.

    Parameters
    ----------
    report : Report
        The validation report of ``root`` (changed in place).
    root : Path
        The folder validated.
    """
    found = find_selection(root)
    if found is None:
        return
    dest, record = found
    here = Path(root).resolve()
    asked = [f for f in record.files if (dest / f).resolve().is_relative_to(here)]
    missing = [f for f in asked if not (dest / f).is_file()]
    for finding in report.findings:
        if finding.check in ABSENCE_CHECKS and finding.severity is not Severity.INFO:
            finding.severity = Severity.INFO
            finding.check = "partial.not-asked"
            finding.message = f"{finding.message} (not asked: a partial download)"
            finding.hint = "download without --files to fetch the whole tarballs"
    for rel in missing:
        report.add(Severity.ERROR, "partial.missing", os.path.relpath(dest / rel, here),
                   "asked for (download --files/--cutout) but not on disk", "run the same download again")
    patterns = " ".join(record.patterns) or "(cutouts)"
    report.add(Severity.INFO, "partial.summary", ".",
               f"partial tree: {len(asked) - len(missing)} of {len(asked)} asked files present "
               f"({len(record.cutouts)} cutouts in all), patterns {patterns}")
    report.details["partial"] = {"dest": str(dest), "patterns": record.patterns, "asked": asked, "missing": missing}
