"""The observatory staff reduction area of one MOUS (or one group) and its final checklist.

Layout (ALMA staff manual, "manual data reduction"; the packager expects these names unchanged)::

    <MOUS uid___>/README
    <MOUS uid___>/Calibration_X<EB tail>/   per EB: the ASDM, <EB>.ms.scriptForCalibration.py,
                                            one casa*.log, qa2/, calibration tables and plots
    <MOUS uid___>/Combination/calibrated/   several EBs: *.ms.split.cal, allFluxes.txt,
                                            scriptForFluxCalibration.py, calibrated.ms, casa*.log
    <MOUS uid___>/Imaging/                  scriptForImaging.py, casa*.log, *.pbcor.fits, *.flux.fits

A group area is ``<GOUS uid___>/`` with a README and an ``Imaging/`` folder of the group's
combination products. ``check_area`` gives one finding per checklist item: info when it passes,
error when it fails, each with the path it looked at. The area model (``StaffArea``, ``StaffEb``)
is layout.py's, the one validate reads too.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ParseError, TreeError, UsageError
from ..ids import Uid
from .layout import (STAFF_COMBINATION, STAFF_IMAGING, StaffArea, StaffEb,
                     calibration_folder, read_staff_area)
from .report import Report, Severity

CASA_LOG_GLOB = "casa*.log"
IMAGING_SCRIPT = "scriptForImaging.py"
FLUX_SCRIPT = "scriptForFluxCalibration.py"
_SEVERE = re.compile(r"^\S+ \S+\s+SEVERE\s", re.MULTILINE)
# casacore's "Leap second table TAI_UTC seems out-of-date": a fact about the CASA install (its measures
# data is older than the clock), not about the reduction, so the checklist reports it as a warning.
_STALE_LEAP_TABLE = re.compile(r"^\S+ \S+\s+SEVERE\s+\S*MeasTable::dUTC\(", re.MULTILINE)
_STEP_TITLE = re.compile(r"^step_title\s*=\s*\{(?P<body>.*?)\}", re.MULTILINE | re.DOTALL)
_STEP_KEY = re.compile(r"(\d+)\s*:\s*(['\"])(.*?)\2")


def prepare_area(mous: Uid, ebs: list[Uid], root: Path) -> Path:
    """Make ``root/<MOUS>/`` with ``Calibration_X<tail>`` per EB (``Calibration_X<range>_X<tail>`` for
    EBs whose tails clash), ``Combination/calibrated`` (several EBs) and ``Imaging``. Existing content is kept, so running it again is harmless."""
    if not ebs:
        raise UsageError("no EB given", "name every EB of the MOUS with --eb UID")
    if len(set(ebs)) != len(ebs):
        raise UsageError("the same EB is given twice", "give each EB once")
    area = Path(root) / mous.disk
    folders = [area / calibration_folder(eb, ebs) for eb in ebs] + [area / STAFF_IMAGING]
    if len(ebs) > 1:
        folders.append(area / STAFF_COMBINATION)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return area


def load_area(area: Path) -> StaffArea:
    """Read the area's MOUS (or GOUS) from its folder name and its EBs from the Calibration_X folders."""
    area = Path(area).resolve()
    if not area.is_dir():
        raise TreeError(f"{area} is not a folder", "give the reduction area made by 'almadeliver prepare'")
    staff = read_staff_area(area)
    if staff.ous is None:
        raise TreeError(f"{area.name} is not a uid folder (uid___A001_X.._X..)",
                        "the area must be named after its MOUS, as 'almadeliver prepare' makes it")
    return staff


def casa_logs(folder: Path) -> list[Path]:
    """The CASA log files in ``folder`` (none when it is missing)."""
    return sorted(p for p in folder.glob(CASA_LOG_GLOB) if p.is_file()) if folder.is_dir() else []


def script_steps(text: str) -> dict[int, str] | None:
    """The ``step_title`` dict of an ALMA reduction script ({0: 'Import of the ASDM', ...})."""
    m = _STEP_TITLE.search(text)
    if not m:
        return None
    return {int(k): title for k, _, title in _STEP_KEY.findall(m.group("body"))}


def script_problem(text: str, eb: Uid) -> str | None:
    """Why a scriptForCalibration.py is not complete (None when it is).

    Complete means: the ALMA step structure (a ``step_title`` dict numbered 0..N, a ``mystep = k``
    block for every step, ``thesteps = []`` so every step runs), and a last step that splits the
    corrected data out to ``<EB>.ms.split.cal`` (written out, or as ``vis + '.split.cal'`` with
    ``vis = '<EB>.ms'``).
    """
    steps = script_steps(text)
    if not steps:
        return "has no step_title dict (the ALMA step structure)"
    if sorted(steps) != list(range(len(steps))):
        return f"step numbers {sorted(steps)} are not 0..{len(steps) - 1}"
    missing = [k for k in steps if not re.search(rf"^\s*mystep\s*=\s*{k}\s*$", text, re.MULTILINE)]
    if missing:
        return f"has no 'mystep = N' block for step(s) {', '.join(map(str, missing))}"
    if not re.search(r"^thesteps\s*=\s*\[\s*\]", text, re.MULTILINE):
        return "does not set thesteps = [] (not every step would run)"
    last = steps[len(steps) - 1]
    block = text[re.search(rf"^\s*mystep\s*=\s*{len(steps) - 1}\s*$", text, re.MULTILINE).end():]
    # the generator writes the name out; hand-edited scripts build it from vis = '<EB>.ms'
    names_it = f"{eb.disk}.ms.split.cal" in block or (".split.cal" in block and f"'{eb.disk}.ms'" in text)
    if "split" not in last.lower() or "split(" not in block or not names_it:
        return f"last step '{last}' does not split the calibrated data to {eb.disk}.ms.split.cal"
    return None


def log_problem(log: Path, steps: dict[int, str] | None = None) -> str | None:
    """Why a CASA log is not clean (None when it is): a SEVERE line (other than casacore's stale leap
    second table), or a script step it never ran."""
    text = log.read_text(errors="replace")
    for severe in _SEVERE.finditer(text):
        if not _STALE_LEAP_TABLE.match(text, severe.start()):
            line = text.count("\n", 0, severe.start()) + 1
            return f"has a SEVERE message at line {line}"
    if steps:
        missing = [k for k in steps if not re.search(rf"\bStep\s+{k}\b", text)]
        if missing:
            return f"does not show step(s) {', '.join(map(str, missing))} of the script (not one full run)"
    return None


def stale_leap_table(log: Path) -> bool:
    """True when CASA wrote in this log that its leap second table is out of date."""
    return bool(_STALE_LEAP_TABLE.search(log.read_text(errors="replace")))


def check_area(area: Path | StaffArea) -> Report:
    """The final checklist of a MOUS reduction area (a folder, or the area validate found)."""
    staff = area if isinstance(area, StaffArea) else load_area(area)
    report = Report(str(staff.root), "staff-area",
                    details={"mous": staff.ous.archive if staff.ous else None,
                             "ebs": [eb.uid.archive if eb.uid else eb.folder.name for eb in staff.ebs]})
    check = _Checker(report, staff.root)
    if not staff.ebs:
        check.fail("staff.ebs", ".", "no Calibration_X<EB tail> folder",
                   "make the area with 'almadeliver prepare MOUS --eb EB ...'")
    for eb in staff.ebs:
        _check_eb(check, eb)
    several = len(staff.ebs) > 1
    if several:
        check.log("staff.combination.log", staff.combination, "combination")
        check.file("staff.combination.fluxcal-script", staff.combination / FLUX_SCRIPT)
    _check_imaging(check, staff)
    return report


def check_group_area(area: Path | StaffArea) -> Report:
    """The checklist of a group area: README, Imaging script and clean log, images."""
    staff = area if isinstance(area, StaffArea) else load_area(area)
    report = Report(str(staff.root), "staff-group-area", details={"gous": staff.ous.archive})
    _check_imaging(_Checker(report, staff.root), staff)
    return report


def _check_eb(check: "_Checker", eb: StaffEb) -> None:
    if eb.uid is None:
        check.fail("staff.eb.script", eb.folder, "no <EB>.ms.scriptForCalibration.py (nor ASDM or MS) "
                   f"naming an EB ending in {eb.tail}",
                   "put the EB's ASDM and its scriptForCalibration.py in this folder")
        return
    script, steps = eb.script, None
    if not script.is_file():
        check.fail("staff.eb.script", script, "missing", "generate it with es.generateReducScript")
    else:
        text = script.read_text(errors="replace")
        problem = script_problem(text, eb.uid)
        steps = script_steps(text)
        if problem:
            check.fail("staff.eb.script", script, f"not complete: {problem}",
                       "keep every step of the generated script and run it whole")
        else:
            check.ok("staff.eb.script", script, f"complete ({len(steps)} steps)")
    check.log("staff.eb.log", eb.folder, "calibration", steps)
    qa2 = eb.folder / "qa2"
    if not qa2.is_dir() or not any(p.is_file() for p in qa2.rglob("*")):
        check.fail("staff.eb.qa2", qa2, "missing or empty", "run es.generateQA2Report in the EB folder")
    else:
        check.ok("staff.eb.qa2", qa2, f"{sum(p.is_file() for p in qa2.rglob('*'))} files")


def _check_imaging(check: "_Checker", staff: StaffArea) -> None:
    check.log("staff.imaging.log", staff.imaging, "imaging")
    _check_readme(check, staff)
    check.file("staff.imaging.script", staff.imaging / IMAGING_SCRIPT)
    pbcor = sorted(staff.imaging.glob("*.pbcor.fits")) if staff.imaging.is_dir() else []
    flux = sorted(staff.imaging.glob("*.flux.fits")) if staff.imaging.is_dir() else []
    if not pbcor:
        check.fail("staff.imaging.pbcor", staff.imaging, "no *.pbcor.fits", "export the PB-corrected images")
    if not flux:
        check.fail("staff.imaging.flux", staff.imaging, "no *.flux.fits", "export the primary beam images")
    for image in pbcor:
        check.fits("staff.imaging.pbcor", image)
        partner = staff.imaging / (_image_stem(image.name) + ".flux.fits")
        if not partner.is_file():
            check.fail("staff.imaging.flux", partner, f"missing: the primary beam of {image.name}",
                       "export the .flux.fits that goes with each .pbcor.fits")
    for image in flux:
        check.fits("staff.imaging.flux", image)


def _check_readme(check: "_Checker", staff: StaffArea) -> None:
    """The README as the one README reader reads it (readme.py): validate and package see the same."""
    if not staff.readme.is_file() or not staff.readme.read_text(errors="replace").strip():
        check.fail("staff.readme", staff.readme, "missing or empty", "write the README with your QA2 notes")
        return
    try:
        readme = staff.read_readme()
    except ParseError as exc:
        check.fail("staff.readme", staff.readme, exc.message.replace(f"{staff.readme}: ", ""),
                   exc.hint or "fix the README")
        return
    if readme.casa_version_text is None:
        check.fail("staff.readme", staff.readme, "does not name the CASA version",
                   "add a line 'CASA version used for reduction: X.Y.Z'")
    elif readme.casa_version_problem:
        check.fail("staff.readme", staff.readme,
                   f"line {readme.casa_version_line}: {readme.casa_version_problem}",
                   "write the CASA version you reduced with, e.g. 'CASA version used for reduction: 4.4.0'")
    else:
        check.ok("staff.readme", staff.readme, f"CASA {readme.casa_version}")


def _image_stem(name: str) -> str:
    """``w51_CO.image.pbcor.fits`` and ``w51_CO.pbcor.fits`` -> ``w51_CO`` (the .flux.fits stem)."""
    stem = name[: -len(".pbcor.fits")]
    return stem[: -len(".image")] if stem.endswith(".image") else stem


class _Checker:
    """Adds one finding per checklist item to the report, paths relative to the area."""

    def __init__(self, report: Report, root: Path):
        self.report, self.root = report, root

    def _rel(self, path: Path | str) -> str:
        path = Path(path)
        return str(path.relative_to(self.root)) if path.is_absolute() and path.is_relative_to(self.root) else str(path)

    def ok(self, check: str, path: Path | str, message: str) -> None:
        self.report.add(Severity.INFO, check, self._rel(path), message)

    def fail(self, check: str, path: Path | str, message: str, hint: str) -> None:
        self.report.add(Severity.ERROR, check, self._rel(path), message, hint)

    def file(self, check: str, path: Path) -> None:
        if path.is_file() and path.stat().st_size:
            self.ok(check, path, "present")
        else:
            self.fail(check, path, "missing or empty", f"put {path.name} in {path.parent.name}/")

    def log(self, check: str, folder: Path, what: str, steps: dict[int, str] | None = None) -> None:
        logs = casa_logs(folder)
        if not logs:
            self.fail(check, folder, f"no CASA log (casa*.log) of the {what}",
                      f"run the {what} script once, whole, in this folder")
        elif len(logs) > 1:
            self.fail(check, folder, f"{len(logs)} CASA logs ({', '.join(p.name for p in logs)}); "
                      "the checklist wants one clean log", "delete the logs of partial runs")
        else:
            problem = log_problem(logs[0], steps)
            if problem:
                self.fail(check, logs[0], f"not clean: {problem}", f"rerun the {what} whole, with no errors")
            else:
                self.ok(check, logs[0], "clean")
            if stale_leap_table(logs[0]):
                self.report.add(Severity.WARNING, check, self._rel(logs[0]),
                                "CASA's leap second table was out of date (SEVERE from MeasTable::dUTC): "
                                "times derived from UTC may be off by a second",
                                "update the CASA measures data (casadata) before the next reduction")

    def fits(self, check: str, path: Path) -> None:
        from astropy.io import fits  # only when there are images to look at

        try:
            with fits.open(path, memmap=True) as hdul:
                shape = hdul[0].shape
        except (OSError, ValueError) as exc:
            self.fail(check, path, f"not a readable FITS file ({exc})", "export the image again")
            return
        self.ok(check, path, f"FITS image {'x'.join(map(str, shape[::-1]))}")
