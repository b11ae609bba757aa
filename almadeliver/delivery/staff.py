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
from . import checklist
from .layout import (FLUX_SCRIPT, STAFF_COMBINATION, STAFF_IMAGING, StaffArea, StaffEb,
                     calibration_folder, read_staff_area)
from .report import Report, Severity

CASA_LOG_GLOB = "casa*.log"
IMAGING_SCRIPT = "scriptForImaging.py"
_SEVERE = re.compile(r"^\S+ \S+\s+SEVERE\s", re.MULTILINE)
# casacore's "Leap second table TAI_UTC seems out-of-date": a fact about the CASA install (its measures
# data is older than the clock), not about the reduction, so the checklist reports it as a warning.
_STALE_LEAP_TABLE = re.compile(r"^\S+ \S+\s+SEVERE\s+\S*MeasTable::dUTC\(", re.MULTILINE)
_STEP_TITLE = re.compile(r"^step_title\s*=\s*\{(?P<body>.*?)\}", re.MULTILINE | re.DOTALL)
_STEP_KEY = re.compile(r"(\d+)\s*:\s*(['\"])(.*?)\2")


def prepare_area(mous: Uid, ebs: list[Uid], root: Path) -> Path:
    """Make ``root/<MOUS>/`` with ``Calibration_X<tail>`` per EB (``Calibration_X<range>_X<tail>`` for
    EBs whose tails clash), ``Combination/calibrated`` (several EBs) and ``Imaging``. Existing content is kept, so running it again is harmless.

    Parameters
    ----------
    mous : Uid
        The MOUS reduced.
    ebs : list[Uid]
        Its EBs.
    root : Path
        The folder the area is made in.

    Returns
    -------
    Path
        The area folder, ``root/<MOUS>``.

    Raises
    ------
    UsageError
        No EB is given, or one is given twice.
    """
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
    """Read the area's MOUS (or GOUS) from its folder name and its EBs from the Calibration_X folders.

    Parameters
    ----------
    area : Path
        The staff reduction area (a folder named for its MOUS).

    Returns
    -------
    StaffArea
        The area and its EBs.

    Raises
    ------
    TreeError
        ``area`` is not a folder, or not named for a uid.
    """
    area = Path(area).resolve()
    if not area.is_dir():
        raise TreeError(f"{area} is not a folder", "give the reduction area made by 'almadeliver prepare'")
    staff = read_staff_area(area)
    if staff.ous is None:
        raise TreeError(f"{area.name} is not a uid folder (uid___A001_X.._X..)",
                        "the area must be named after its MOUS, as 'almadeliver prepare' makes it")
    return staff


def casa_logs(folder: Path) -> list[Path]:
    """The CASA log files in ``folder`` (none when it is missing).

    Parameters
    ----------
    folder : Path
        A folder of the area.

    Returns
    -------
    list[Path]
        The ``casa-*.log`` files, sorted by name.
    """
    return sorted(p for p in folder.glob(CASA_LOG_GLOB) if p.is_file()) if folder.is_dir() else []


def script_steps(text: str) -> dict[int, str] | None:
    """The ``step_title`` dict of an ALMA reduction script ({0: 'Import of the ASDM', ...}).

    Parameters
    ----------
    text : str
        The script's text.

    Returns
    -------
    dict[int, str] | None
        Step number -> title, or None when the script has no ``step_title`` dict.
    """
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

    Parameters
    ----------
    text : str
        The script's text.
    eb : Uid
        The EB it calibrates.

    Returns
    -------
    str | None
        What is missing, or None.
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
    second table), or a script step it never ran.

    Parameters
    ----------
    log : Path
        The CASA log file.
    steps : dict[int, str] | None, default None
        The script's steps (``script_steps``); None to skip the step check.

    Returns
    -------
    str | None
        What is wrong, or None.
    """
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
    """True when CASA wrote in this log that its leap second table is out of date.

    Parameters
    ----------
    log : Path
        The CASA log file.

    Returns
    -------
    bool
        True when the leap second table is stale.
    """
    return bool(_STALE_LEAP_TABLE.search(log.read_text(errors="replace")))


def check_area(area: Path | StaffArea, requested_rms_jy: float | None = None,
               requested_beam_arcsec: float | None = None) -> Report:
    """The final checklist of a MOUS reduction area (a folder, or the area validate found).

    Parameters
    ----------
    area : Path or StaffArea
        The ``<MOUS uid___>`` reduction area.
    requested_rms_jy : float, optional
        Requested rms (Jy/beam, in the requested bandwidth); default: the README's "Proposed rms" line.
    requested_beam_arcsec : float, optional
        Requested angular resolution (arcsec); default: the README's "Requested angular resolution".

    Returns
    -------
    Report
        One finding per item: info (pass), warning (warn) or error (FAIL), with its path and, in
        ``numbers``, the figures behind the verdict (seed 001's final checklist; see the checklist package).

    Raises
    ------
    TreeError
        When ``area`` is not a folder named after a uid.
    """
    staff = area if isinstance(area, StaffArea) else load_area(area)
    report = Report(str(staff.root), "staff-area",
                    details={"mous": staff.ous.archive if staff.ous else None,
                             "ebs": [eb.uid.archive if eb.uid else eb.folder.name for eb in staff.ebs]})
    check = _Checker(report, staff.root)
    if not staff.ebs:
        check.fail("staff.ebs", ".", "no Calibration_X<EB tail> folder",
                   "make the area with 'almadeliver prepare MOUS --eb EB ...'")
    cals = {}
    for eb in staff.ebs:
        cal = _check_eb(check, staff, eb)
        if cal is not None:
            cals[eb.uid.disk] = cal
    checklist.check_setjy(check, staff)
    several = len(staff.ebs) > 1
    if several:
        check.log("staff.combination.log", staff.combination, "combination")
        if len(casa_logs(staff.combination)) == 1:
            checklist.check_log_warnings(check, "staff.combination.log-warnings", casa_logs(staff.combination)[0])
        check.file("staff.combination.fluxcal-script", staff.combination / FLUX_SCRIPT)
        fluxscales = checklist.check_fluxscale_copies(check, staff)
        checklist.check_allfluxes(check, staff, fluxscales)
        checklist.check_separation(check, staff, cals)
        checklist.check_concat(check, staff, cals)
    _check_imaging(check, staff, requested_rms_jy, requested_beam_arcsec)
    logs = {eb.folder.name: casa_logs(eb.folder)[0] for eb in staff.ebs if len(casa_logs(eb.folder)) == 1}
    if several and len(casa_logs(staff.combination)) == 1:
        logs["Combination/calibrated"] = casa_logs(staff.combination)[0]
    if len(casa_logs(staff.imaging)) == 1:
        logs["Imaging"] = casa_logs(staff.imaging)[0]
    checklist.check_casa_versions(check, logs)
    return report


def check_group_area(area: Path | StaffArea) -> Report:
    """The checklist of a group area: README, Imaging script and clean log, images.

    Parameters
    ----------
    area : Path | StaffArea
        The group area (a folder named for its GOUS), or it already read.

    Returns
    -------
    Report
        One finding per checklist item.
    """
    staff = area if isinstance(area, StaffArea) else load_area(area)
    report = Report(str(staff.root), "staff-group-area", details={"gous": staff.ous.archive})
    _check_imaging(_Checker(report, staff.root), staff, products=False)
    return report


def _check_eb(check: "_Checker", staff: StaffArea, eb: StaffEb):
    """The EB folder's items; returns the summary of its .ms.split.cal (None when there is none)."""
    if eb.uid is None:
        check.fail("staff.eb.script", eb.folder, "no <EB>.ms.scriptForCalibration.py (nor ASDM or MS) "
                   f"naming an EB ending in {eb.tail}",
                   "put the EB's ASDM and its scriptForCalibration.py in this folder")
        return None
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
            check.ok("staff.eb.script", script, f"complete ({len(steps)} steps)", {"steps": len(steps)})
        removes, rm_line, import_line = checklist.flagversions_removal(text, eb.uid)
        numbers = {"removal_line": rm_line, "importasdm_line": import_line}
        if removes:
            check.ok("staff.eb.flagversions", script, f"step 0 removes {eb.uid.disk}.ms.flagversions (line {rm_line}) "
                     f"before importasdm (line {import_line})", numbers)
        else:
            check.fail("staff.eb.flagversions", script,
                       f"step 0 does not remove {eb.uid.disk}.ms.flagversions before importasdm"
                       + (f" (line {import_line})" if import_line else " (no importasdm in step 0)"),
                       f"add os.system('rm -rf {eb.uid.disk}.ms.flagversions') just before importasdm", numbers)
    logs = casa_logs(eb.folder)
    check.log("staff.eb.log", eb.folder, "calibration", steps)
    if len(logs) == 1:
        checklist.check_log_warnings(check, "staff.eb.log-warnings", logs[0])
    checklist.check_qa2(check, eb)
    cal = checklist.check_split_cal(check, staff, eb)
    checklist.check_flagging(check, eb, cal)
    if cal is not None:
        checklist.check_calibrators(check, cal)
    return cal


def _check_imaging(check: "_Checker", staff: StaffArea, requested_rms_jy: float | None = None,
                   requested_beam_arcsec: float | None = None, products: bool = True) -> None:
    check.log("staff.imaging.log", staff.imaging, "imaging")
    logs = casa_logs(staff.imaging)
    if len(logs) == 1:
        checklist.check_log_warnings(check, "staff.imaging.log-warnings", logs[0])
    _check_readme(check, staff)
    check.file("staff.imaging.script", staff.imaging / IMAGING_SCRIPT)
    pbcor = sorted(staff.imaging.glob("*.pbcor.fits")) if staff.imaging.is_dir() else []
    flux = sorted(staff.imaging.glob("*.flux.fits")) if staff.imaging.is_dir() else []
    if not pbcor:
        check.fail("staff.imaging.pbcor", staff.imaging, "no *.pbcor.fits", "export the PB-corrected images")
    if not flux:
        check.fail("staff.imaging.flux", staff.imaging, "no *.flux.fits", "export the primary beam images")
    readable = []
    for image in pbcor:
        if check.fits("staff.imaging.pbcor", image):
            readable.append(image)
        partner = staff.imaging / (_image_stem(image.name) + ".flux.fits")
        if not partner.is_file():
            check.fail("staff.imaging.flux", partner, f"missing: the primary beam of {image.name}",
                       "export the .flux.fits that goes with each .pbcor.fits")
    for image in flux:
        check.fits("staff.imaging.flux", image)
    checklist.check_fits_verify(check, sorted(staff.imaging.glob("*.fits")) if staff.imaging.is_dir() else [])
    checklist.check_masks(check, staff)
    figures = [checklist.image_figures(p, staff.imaging / (_image_stem(p.name) + ".flux.fits")) for p in readable]
    if products:   # a member's products (a group's combination products are judged by staff, not by spw)
        checklist.check_products(check, staff, figures)
        checklist.check_request(check, staff, figures, requested_rms_jy, requested_beam_arcsec)


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

    def ok(self, check: str, path: Path | str, message: str, numbers: dict | None = None) -> None:
        self.report.add(Severity.INFO, check, self._rel(path), message, None, numbers)

    def warn(self, check: str, path: Path | str, message: str, hint: str, numbers: dict | None = None) -> None:
        self.report.add(Severity.WARNING, check, self._rel(path), message, hint, numbers)

    def fail(self, check: str, path: Path | str, message: str, hint: str, numbers: dict | None = None) -> None:
        self.report.add(Severity.ERROR, check, self._rel(path), message, hint, numbers)

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

    def fits(self, check: str, path: Path) -> bool:
        from astropy.io import fits  # only when there are images to look at

        try:
            with fits.open(path, memmap=True) as hdul:
                shape = hdul[0].shape
        except (OSError, ValueError) as exc:
            self.fail(check, path, f"not a readable FITS file ({exc})", "export the image again")
            return False
        self.ok(check, path, f"FITS image {'x'.join(map(str, shape[::-1]))}", {"shape": list(shape[::-1])})
        return True
