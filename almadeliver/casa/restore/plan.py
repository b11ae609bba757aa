"""The restore plan: look at a member folder and decide how (and whether) to restore it; nothing is written.

``plan_restore`` validates the member, measures the disk need the way scriptForPI does
(``diskspace.estimate``), reads scriptForPI.py (``inspect_script``), picks the CASA that can run the
script (modular CASA through the legacy shim, an external monolithic ``casa``, or the native pipeline
engine) and records the first reason to refuse in ``RestorePlan.refusal``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...delivery.layout import Flavour, Member, one_member, plain_name, total_power_calibrated
from ...delivery.readme import parse_readme
from ...delivery.report import Severity
from ...delivery.validate import validate
from ...errors import (AlmadeliverError, CasaError, CasaNotFoundError, CasaVersionMismatchError, DiskSpaceError,
                       TreeError, UsageError)
from ..diskspace import EXTRA_SCRIPTS, DiskEstimate, estimate
from ..native_restore import restore_script
from ..runtime import MonolithicCasa, find_monolithic_casa
from ..scriptcheck import (ScriptCheckError, VersionGate, first_three, lacking, modular_casa_version,
                           python_executable, read_gates)

LEVELS = (0, 1, 2, 3, -1)
ENGINES = ("auto", "native", "casa")
MISMATCH_CHOICES = ("refuse", "allow")   # --casa-version-mismatch
_SCRIPT_ID_RE = re.compile(r"\$Id: scriptForPI\.py,v (\d+\.\d+)|^scriptversion\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_PY2_MARKS = re.compile(r"^\s*print\s+[^\s(=]|\.has_key\(|^\s*except\s+[\w.]+\s*,\s*\w+\s*:|^\s*exec\s+['\"]", re.M)


# -- the scriptForPI itself --------------------------------------------------------------------------
@dataclass(frozen=True)
class ScriptInfo:
    """What the delivery's scriptForPI.py is: its path, CVS version and Python dialect."""

    path: Path
    version: str | None          # "1.34" from its $Id line
    python2: bool


def inspect_script(path: Path) -> ScriptInfo:
    """Read scriptForPI.py: Python 2 when Python 3 cannot compile it and it has Python 2 statements.

    Parameters
    ----------
    path : Path
        The scriptForPI.py file.

    Returns
    -------
    ScriptInfo
        Its path, CVS version and whether it is Python 2.

    Raises
    ------
    CasaError
        The script parses neither as Python 3 nor looks like Python 2.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    m = _SCRIPT_ID_RE.search(text)
    try:
        compile(text, str(path), "exec")
        python2 = False
    except SyntaxError as exc:
        if not _PY2_MARKS.search(text):
            raise CasaError(f"{path} does not parse (line {exc.lineno}: {exc.msg})",
                            "fetch the product tarball of this member again") from None
        python2 = True
    return ScriptInfo(Path(path), (m.group(1) or m.group(2)) if m else None, python2)


def _casa_major(version: str | None) -> int | None:
    return int(version.split(".")[0]) if version and version.split(".")[0].isdigit() else None


# -- the plan ----------------------------------------------------------------------------------------
@dataclass
class RestorePlan:
    """Everything decided before anything runs; ``refusal`` is the first reason not to run (or None)."""

    member: Member
    estimate: DiskEstimate
    spacesaving: int
    level_chosen: bool                    # True when the level was picked as the lowest that fits
    dosplit: bool
    script: ScriptInfo | None
    readme_casa: str | None               # "CASA version used for reduction" in the README
    engine: str                           # "modular" | "monolithic" | "native" (pipeline) | "none" (Cycle 0)
    casa: MonolithicCasa | None
    resume: bool
    finished: list[str] = field(default_factory=list)   # EBs whose .ms.split.cal is kept (resume)
    todo: list[str] = field(default_factory=list)       # EBs scriptForPI will calibrate
    refusal: AlmadeliverError | None = None
    warnings: list[str] = field(default_factory=list)   # restore-script statements the native engine skips
    gates: list[VersionGate] = field(default_factory=list)   # the calibration scripts' version gates
    casa_version_mismatch: str = "refuse"                    # what to do when a gate asks for another CASA

    @property
    def casa_version(self) -> str | None:
        """The version of the CASA that would run the scripts (None when unknown)."""
        if self.engine == "monolithic":
            return self.casa.version if self.casa else None
        return modular_casa_version()

    @property
    def casa_asked(self) -> list[str]:
        """The versions the calibration scripts' gates demand (distinct, in script order)."""
        return list(dict.fromkeys(g.demands for g in self.gates))

    @property
    def mismatched_gates(self) -> list[VersionGate]:
        """Gates the CASA that would run does not pass (none when its version is unknown)."""
        running = first_three(self.casa_version)
        return [g for g in self.gates if running and g.demands != running]

    @property
    def passes_gates(self) -> bool:
        """True when the scripts run with their gates passed (``--casa-version-mismatch allow``)."""
        return bool(self.mismatched_gates) and self.casa_version_mismatch == "allow"

    @property
    def path(self) -> Path:
        """The member folder."""
        return self.member.path

    @property
    def total_power(self) -> list[str]:
        """The EBs (``uid___...``) calibrated by a Total Power script (scriptForSDCalibration.py)."""
        return [eb.disk for eb in self.member.total_power_ebs]

    @property
    def calibrated(self) -> Path:
        """The member's ``calibrated/`` folder (scriptForPI writes there)."""
        return self.member.path / "calibrated"

    @property
    def already_calibrated(self) -> bool:
        """Cycle 0: the delivery ships the calibrated MSs; there is nothing to restore."""
        return self.member.flavour is Flavour.CYCLE0

    @property
    def need_mb(self) -> int:
        """MB scriptForPI will ask to be free at the planned SPACESAVING level."""
        return self.estimate.need_mb(self.spacesaving)

    def check(self) -> None:
        """Raise the refusal, if any."""
        if self.refusal is not None:
            raise self.refusal


def _readme_casa(member: Member) -> str | None:
    if not member.readme:
        return None
    try:
        return parse_readme(member.file(member.readme)).casa_version
    except AlmadeliverError:
        return None


def finished_ebs(calibrated: Path, ebs: list[str], total_power: list[str] = ()) -> list[str]:
    """EBs whose ``<EB>.ms.split.cal`` is complete in calibrated/ (scriptForPI moves it there last);
    for the Total Power EBs in ``total_power``, their ``<EB>.calibration/<EB>.ms.cal`` (what the SD
    script writes last, and scriptForPI v2.x leaves there).

    Parameters
    ----------
    calibrated : Path
        The member's ``calibrated/`` folder.
    ebs : list[str]
        The EBs (``uid___...``) to look for.
    total_power : list[str], default ()
        Those of them that are Total Power EBs.

    Returns
    -------
    list[str]
        The finished EBs, in ``ebs`` order.
    """
    return [eb for eb in ebs if (calibrated / f"{eb}.ms.split.cal" / "table.dat").is_file()
            or (eb in total_power and (total_power_calibrated(calibrated, eb) / "table.dat").is_file())]


def check_options(spacesaving: int | None, engine: str, casa_version_mismatch: str) -> None:
    """Raise UsageError (one line) unless the restore options are among the known values.

    Parameters
    ----------
    spacesaving : int | None
        The SPACESAVING level (0, 1, 2, 3, -1; None: the lowest that fits).
    engine : str
        ``auto``, ``native`` or ``casa``.
    casa_version_mismatch : str
        ``refuse`` or ``allow``.

    Raises
    ------
    UsageError
        ``engine``, ``casa_version_mismatch`` or ``spacesaving`` is not one of the known values.
    """
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine} is not an engine", f"use one of {', '.join(ENGINES)}")
    if casa_version_mismatch not in MISMATCH_CHOICES:
        raise UsageError(f"--casa-version-mismatch {casa_version_mismatch} is not a choice",
                         f"use one of {', '.join(MISMATCH_CHOICES)}")
    if spacesaving is not None and spacesaving not in LEVELS:
        raise UsageError(f"--spacesaving {spacesaving} is not a level", "use 0, 1, 2, 3 or -1 (no disk check)")


def plan_restore(member_dir: str | Path, spacesaving: int | None = None, dosplit: bool = False,
                 casa: str | Path | None = None, resume: bool = False, engine: str = "auto",
                 casa_version_mismatch: str = "refuse") -> RestorePlan:
    """Look at a member folder and decide how (and whether) to restore it; nothing is written.

    ``engine``: ``casa`` runs scriptForPI; ``native`` restores a pipeline delivery with
    ``native_restore`` (modular CASA); ``auto`` is native for pipeline deliveries when no
    monolithic CASA with the pipeline is available, else ``casa``. ``casa_version_mismatch``:
    ``refuse`` (default) when a calibration script's exact-version gate asks for another CASA than
    the one that would run, ``allow`` to run anyway with the gates passed (recorded in the report).
    Raises UsageError for a bad option; every other reason not to run is ``plan.refusal``.

    Parameters
    ----------
    member_dir : str | Path
        The member folder.
    spacesaving : int | None, default None
        scriptForPI's SPACESAVING level (0, 1, 2, 3, -1 to skip its disk check); None: the lowest that fits.
    dosplit : bool, default False
        scriptForPI's DOSPLIT.
    casa : str | Path | None, default None
        A monolithic CASA to run the script (else ``$ALMADELIVER_CASA`` or ``casa`` on PATH when one is
        needed).
    resume : bool, default False
        Keep the EBs a failed run finished.
    engine : str, default "auto"
        ``auto``, ``native`` or ``casa``.
    casa_version_mismatch : str, default "refuse"
        ``refuse`` or ``allow``.

    Returns
    -------
    RestorePlan
        The plan; ``refusal`` is the first reason not to run (None when it can).
    """
    check_options(spacesaving, engine, casa_version_mismatch)
    member = one_member(Path(member_dir).resolve())
    est = estimate(member.path)
    chosen = spacesaving is None
    level = spacesaving if spacesaving is not None else (est.best_level() if est.best_level() is not None else 3)
    plan = RestorePlan(member=member, estimate=est, spacesaving=level, level_chosen=chosen, dosplit=dosplit,
                       script=None, readme_casa=_readme_casa(member), engine="modular", casa=None, resume=resume,
                       casa_version_mismatch=casa_version_mismatch)
    if member.flavour is Flavour.CYCLE0:
        plan.engine = "none"
        return plan
    plan.refusal = _refusal(plan, casa, engine)
    return plan


def _refusal(plan: RestorePlan, casa: str | Path | None, engine: str = "auto") -> AlmadeliverError | None:
    """The first reason not to run, in the order a user should fix them."""
    m = plan.member
    recipe = _recipe_refusal(plan, casa, engine)
    if recipe is not None:   # before asking for raw data that could not be restored here anyway
        return recipe
    if not m.has_raw:
        names = ", ".join(m.raw_tarball(eb) for eb in m.ebs_in_scripts) or "the raw data tarballs"
        return TreeError(f"raw/ is not in {m.path}: scriptForPI needs the ASDMs",
                         f"fetch {names} and untar them at the top of the tree")
    report = validate(m.path, products=False)          # product/ is never read by a restore
    errors = [f for f in report.of(Severity.ERROR) if not f.check.startswith("calibrated.")]
    if errors:
        shown = "; ".join(f"{f.path}: {f.message}" for f in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return TreeError(f"the delivery is not complete: {shown}{more}",
                         f"run `almadeliver validate {m.path}` and fix what it reports")
    plan.script = inspect_script(m.file(m.script_for_pi))
    ebs = [eb.disk for eb in m.ebs_in_scripts if eb in m.ebs_in_raw]
    if plan.calibrated.exists():
        if not plan.resume:
            return TreeError(f"{plan.calibrated} already exists (scriptForPI stops when it does)",
                             "move it away to restore again, or add --resume to keep the EBs already finished")
        if m.flavour is Flavour.PIPELINE:
            return UsageError("--resume keeps finished EBs of manual deliveries only; a pipeline restore "
                              "calibrates every EB in one hifa_restoredata call",
                              f"move {plan.calibrated} away and restore again")
        plan.finished = finished_ebs(plan.calibrated, ebs, plan.total_power)
    plan.todo = [eb for eb in ebs if eb not in plan.finished]
    engine_problem = _choose_engine(plan, casa, engine)
    if engine_problem:
        return engine_problem
    if plan.engine in ("modular", "monolithic"):
        script_problem = _check_scripts(plan)
        if script_problem:
            return script_problem
    if not plan.estimate.fits(plan.spacesaving):
        return _disk_refusal(plan)
    return None


def _recipe_refusal(plan: RestorePlan, casa: str | Path | None, engine: str) -> AlmadeliverError | None:
    """A pipeline restore script the native engine cannot run (e.g. Total Power's hsd_restoredata),
    when no monolithic CASA with the pipeline is there to run it instead."""
    if plan.member.flavour is not Flavour.PIPELINE or engine == "casa":
        return None
    script = restore_script(plan.member)
    refusal = script.native_refusal() if script is not None else None
    if refusal is None:
        return None
    mono = find_monolithic_casa(casa) if engine == "auto" else None
    return None if (mono is not None and mono.has_pipeline) else refusal


def _choose_engine(plan: RestorePlan, casa: str | Path | None, engine: str = "auto") -> AlmadeliverError | None:
    """Modular CASA through the shim, unless a monolithic casa is named or needed (Python 2, pipeline)."""
    named = find_monolithic_casa(casa) if (casa or os.environ.get("ALMADELIVER_CASA")) else None
    python2 = plan.script is not None and plan.script.python2
    pipeline = plan.member.flavour is Flavour.PIPELINE
    mono = named or (find_monolithic_casa(None) if (python2 or pipeline) else None)
    asked = f"CASA {plan.readme_casa}" if plan.readme_casa else "the CASA version its README names"
    if python2:
        if mono is None or (_casa_major(mono.version) or 0) >= 6:
            found = f"; {mono.executable} is CASA {mono.version}" if mono else ""
            readme_major = _casa_major(plan.readme_casa)
            if readme_major is not None and readme_major >= 6:   # README and script disagree: say so, once
                want = (f"a CASA 5 or earlier (monolithic, from casa.nrao.edu; the README names CASA "
                        f"{plan.readme_casa}, which cannot run a Python 2 script)")
            else:
                want = f"{asked} (monolithic, from casa.nrao.edu)"
            return CasaNotFoundError(
                f"scriptForPI.py v{plan.script.version or '?'} is Python 2 (CASA 4/5 era); it cannot run in "
                f"CASA 6{found}",
                f"install {want} and give it with --casa PATH")
    if engine == "native" and not pipeline:
        return UsageError(f"--engine native restores pipeline deliveries; {plan.path} is "
                          f"{plan.member.flavour.value}", "use --engine casa (or auto)")
    if pipeline and (engine == "native" or (engine == "auto" and (mono is None or not mono.has_pipeline))):
        plan.engine = "native"
        script = restore_script(plan.member)
        plan.warnings = list(script.not_run) if script is not None else []
        return None
    if pipeline and (mono is None or not mono.has_pipeline):
        found = f"{mono.executable} has no pipeline" if mono else "no monolithic CASA found"
        return CasaNotFoundError(
            f"this is a pipeline delivery: its restore needs hifa_restoredata, which ships only with "
            f"monolithic CASA started with --pipeline ({found})",
            f"install {asked} with the pipeline and give it with --casa PATH, or use --engine native")
    if mono is not None:
        plan.engine, plan.casa = "monolithic", mono
    return None


def calibration_scripts(plan: RestorePlan) -> list[Path]:
    """The scripts scriptForPI runs for the EBs to do, then the combining scripts, in that order.

    Parameters
    ----------
    plan : RestorePlan
        The restore plan (``plan_restore``).

    Returns
    -------
    list[Path]
        The script paths, in run order.
    """
    m = plan.member
    ebs = {eb.disk: eb for eb in m.calibration_scripts}
    scripts = [m.file(m.calibration_scripts[ebs[eb]]) for eb in plan.todo if eb in ebs]
    folder = plan.script.path.parent if plan.script else m.path / "script"
    return scripts + sorted(p for p in folder.glob("*.py") if plain_name(p.name) in EXTRA_SCRIPTS)


def _check_scripts(plan: RestorePlan) -> AlmadeliverError | None:
    """Read the calibration scripts' version gates and, for modular CASA, what they import or call
    that it lacks; the first reason not to run, in one line naming the script."""
    scripts = calibration_scripts(plan)
    try:
        plan.gates = read_gates(scripts)
    except ScriptCheckError as exc:
        return exc
    if plan.engine == "modular":
        lacks = lacking(scripts, context=[plan.script.path] if plan.script else None)
        if lacks:
            first = lacks[0]
            more = f" (and {len(lacks) - 1} more: {', '.join(l.what for l in lacks[1:4])})" if len(lacks) > 1 else ""
            where = f" in {python_executable()}" if first.what.startswith("module") else ""
            return ScriptCheckError(f"{first.script.name} line {first.line} needs {first.what}, which modular "
                                    f"CASA{where} does not have{more}", first.hint)
    bad = plan.mismatched_gates
    if bad and plan.casa_version_mismatch == "allow" and plan.engine == "monolithic":
        return UsageError(f"--casa-version-mismatch allow runs the scripts in modular CASA, but {plan.casa.executable} "
                          f"(CASA {plan.casa_version}) was named and its gates ask for CASA {bad[0].demands}",
                          f"give a monolithic CASA {bad[0].demands} with --casa PATH, or leave --casa and "
                          "ALMADELIVER_CASA out")
    if bad and plan.casa_version_mismatch == "refuse":
        asked = bad[0].demands
        names = ", ".join(sorted({g.script.name for g in bad})[:2]) + (" ..." if len({g.script for g in bad}) > 2 else "")
        running = ("monolithic " if plan.engine == "monolithic" else "modular ") + f"CASA {plan.casa_version}"
        return CasaVersionMismatchError(
            f"the calibration scripts ask for CASA {asked} exactly ({names}: version gate); this restore "
            f"would run {running}",
            f"give a monolithic CASA {asked} with --casa PATH, or add --casa-version-mismatch allow to run them "
            f"in {running} anyway (recorded in the restore report)")
    return None


def _disk_refusal(plan: RestorePlan) -> DiskSpaceError:
    est = plan.estimate
    fits = [lvl for lvl in est.needs if est.fits(lvl)]
    hint = (f"use --spacesaving {fits[-1]} (needs {est.need_mb(fits[-1])} MB)" if fits else
            f"free {est.shortfall_mb(3)} MB (SPACESAVING 3 needs {est.need_mb(3)} MB)") + \
        ", or --spacesaving -1 to skip scriptForPI's check"
    return DiskSpaceError(
        f"not enough free disk space on {est.target}: SPACESAVING {plan.spacesaving} needs "
        f"{plan.need_mb} MB, {est.free_mb} MB free ({est.shortfall_mb(plan.spacesaving)} MB missing)", hint)
