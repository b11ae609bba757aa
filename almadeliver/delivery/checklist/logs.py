"""Checklist items on the CASA logs: their WARN lines and the CASA version each names."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .thresholds import _Checker

_WARN_LINE = re.compile(r"^\S+ \S+\s+WARN\s+(?P<origin>\S*)\s*(?P<text>.*)$", re.MULTILINE)
# "CASA Version 4.4.0-REL (r33623)", "CASA Version CASA 6.5.4-9", "CASA Version MODULAR 6.7.0.31"
_CASA_VERSION = re.compile(r"CASA Version (?:[A-Z]+ )?(?P<v>\d+\.\d+\.\d+)")
# WARN lines CASA writes in a sound reduction, with why they are harmless; every other WARN is reported.
KNOWN_WARNINGS = {
    "PSF is blank for": "tclean: channels whose data are all flagged (e.g. the flagged edge channels)",
    "No rest frequency info, using the center": "tclean: a cube of a continuum spw, imaged without restfreq",
    "Restoring with an empty model image": "tclean: a cube made with niter=0",
    "State Expression: No match found for": "flagdata: an intent the a priori flagging names is not in this EB",
}


# -- logs ----------------------------------------------------------------------------------------------
def log_warnings(log: Path) -> list[str]:
    """The WARN lines of a CASA log (origin and text).

    Parameters
    ----------
    log : Path
        The CASA log file.

    Returns
    -------
    list[str]
        ``origin text`` of each WARN line, in log order.
    """
    return [f"{m.group('origin')} {m.group('text')}".strip() for m in _WARN_LINE.finditer(log.read_text(errors="replace"))]


def log_casa_version(log: Path) -> str | None:
    """The CASA version a log names (``CASA Version CASA 6.7.0-31`` -> ``6.7.0``).

    Parameters
    ----------
    log : Path
        The CASA log file.

    Returns
    -------
    str | None
        ``major.minor.patch``, or None when the log names no version.
    """
    m = _CASA_VERSION.search(log.read_text(errors="replace"))
    return m.group("v") if m else None


def check_log_warnings(check: "_Checker", item: str, log: Path) -> None:
    """The log's WARN lines: pass when there are none or all are of the harmless kinds in
    KNOWN_WARNINGS, warn otherwise (the manual: check for error/warning messages).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    item : str
        The checklist item's name (``staff.eb.log-warnings``, ...).
    log : Path
        The CASA log file.
    """
    warnings = log_warnings(log)
    known = {k: sum(k in w for w in warnings) for k in KNOWN_WARNINGS}
    other = [w for w in warnings if not any(k in w for k in KNOWN_WARNINGS)]
    numbers = {"warn_lines": len(warnings), "known": {k: n for k, n in known.items() if n}, "other": len(other),
               "first": other[:5]}
    if other:
        check.warn(item, log, f"{len(other)} WARN line(s) to read, first: {other[0][:160]}",
                   "read them in the log and say in the README what they mean for the data", numbers)
    elif warnings:
        check.ok(item, log, f"{len(warnings)} WARN line(s), all of known harmless kinds", numbers)
    else:
        check.ok(item, log, "no WARN line", numbers)


def check_casa_versions(check: "_Checker", logs: dict[str, Path]) -> None:
    """One CASA version in every log (calibration, combination, imaging).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    logs : dict[str, Path]
        Stage name -> its CASA log.
    """
    versions = {name: log_casa_version(log) for name, log in logs.items()}
    numbers = {"versions": versions}
    named = {v for v in versions.values() if v}
    unnamed = [name for name, v in versions.items() if not v]
    if len(named) > 1:
        check.fail("staff.casa-version", ".", "different CASA versions: " +
                   ", ".join(f"{n} {v}" for n, v in versions.items()),
                   "calibrate and image with the same CASA version (staff manual)", numbers)
    elif not named:
        check.fail("staff.casa-version", ".", "no log names its CASA version",
                   "keep the whole CASA log, with its 'CASA Version' line", numbers)
    elif unnamed:
        check.warn("staff.casa-version", ".", f"CASA {named.pop()}; no version line in {', '.join(unnamed)}",
                   "keep the whole CASA log, with its 'CASA Version' line", numbers)
    else:
        check.ok("staff.casa-version", ".", f"CASA {named.pop()} in all {len(versions)} logs", numbers)
