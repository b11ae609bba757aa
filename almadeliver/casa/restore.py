"""restore: run a delivery's own scriptForPI.py and report what it cost.

``plan_restore`` looks before it leaps: it validates the member, measures the disk need the way
scriptForPI does (``diskspace.estimate``), picks the CASA that can run the script (modular CASA
through the legacy shim, or an external monolithic ``casa``) and lists every reason to refuse.
``restore`` runs the script in a child process, follows its progress (EB, step), streams its
output and CASA's log to files, samples the disk use of ``calibrated/`` and checks the result.

Files written besides ``calibrated/``: ``<member>/almadeliver-restore/`` (logs, the monolithic
driver, and on ``--resume`` the finished EBs held aside and a shadow ``script/``). raw/ is only read.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..delivery.layout import (CALIBRATION_SCRIPT_SUFFIXES, Flavour, Member, one_member, plain_name,
                               total_power_calibrated)
from ..delivery.readme import parse_readme
from ..delivery.report import Severity
from ..delivery.validate import validate
from ..transfer.lock import FolderLock
from ..errors import (AlmadeliverError, CasaError, CasaNotFoundError, CasaVersionMismatchError, DiskSpaceError,
                      TreeError, UsageError)
from ..ids import UID_DISK_PATTERN
from . import legacy
from .native_restore import native_restore, restore_script
from .diskspace import EXTRA_SCRIPTS, MB, DiskEstimate, DiskSampler, du_bytes, estimate, plot_disk_use
from .runtime import MonolithicCasa, find_monolithic_casa, last_words, preload, run_in_casa, stream_output
from .scriptcheck import (ScriptCheckError, VersionGate, first_three, lacking, modular_casa_version,
                          python_executable, read_gates)

LEVELS = (0, 1, 2, 3, -1)
ENGINES = ("auto", "native", "casa")
MISMATCH_CHOICES = ("refuse", "allow")   # --casa-version-mismatch
WORK = "almadeliver-restore"            # our folder in the member: logs, driver, resume holding area
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
    """Read scriptForPI.py: Python 2 when Python 3 cannot compile it and it has Python 2 statements."""
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
    script writes last, and scriptForPI v2.x leaves there)."""
    return [eb for eb in ebs if (calibrated / f"{eb}.ms.split.cal" / "table.dat").is_file()
            or (eb in total_power and (total_power_calibrated(calibrated, eb) / "table.dat").is_file())]


def check_options(spacesaving: int | None, engine: str, casa_version_mismatch: str) -> None:
    """Raise UsageError (one line) unless the restore options are among the known values."""
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
    Raises UsageError for a bad option; every other reason not to run is ``plan.refusal``."""
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
    """The scripts scriptForPI runs for the EBs to do, then the combining scripts, in that order."""
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


# -- progress -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """Where the restore is: which EB (n of total) and which step of its calibration script."""

    eb: str | None
    eb_index: int
    eb_total: int
    step: int | None
    title: str | None
    phase: str                   # "checks", "calibration", a flux/imaging-prep script name, "done"


_EB_RE = re.compile(rf"^(?:>>> )?Processing ASDM ({UID_DISK_PATTERN})")
_STEP_RE = re.compile(r"^\s*Step\s+(\d+)\s+(.*?)\s*$")
_EXTRA_RE = re.compile(r"^(?:Executing|Running) (\S*scriptFor(?:Flux|Pol)Calibration\.py|\S*scriptForImagingPrep\.py)")
_PIPE_RE = re.compile(r"^now running (\S+)|^Processing the ASDMs .* using pipeline restore")
_TP_NO_SPLIT_RE = re.compile(rf"^ERROR: ({UID_DISK_PATTERN})\.ms\.split\.cal was not created\.")
_DONE_RE = re.compile(r"^Done\. Please find results in directory|^scriptForPI\.py done")


class ProgressParser:
    """Turns scriptForPI's output lines into ``Progress`` (None when a line changes nothing)."""

    def __init__(self, ebs: list[str]):
        self.ebs = list(ebs)
        self.state = Progress(None, 0, len(self.ebs), None, None, "checks")

    def feed(self, line: str) -> Progress | None:
        """Read one output line; the new progress when it changes the phase, EB or step, else None."""
        s = self.state
        if m := _EB_RE.match(line):
            eb = m.group(1)
            if eb not in self.ebs:
                self.ebs.append(eb)
            new = Progress(eb, self.ebs.index(eb) + 1, len(self.ebs), None, None, "calibration")
        elif (m := _STEP_RE.match(line)) and s.phase != "checks":
            new = Progress(s.eb, s.eb_index, s.eb_total, int(m.group(1)), m.group(2) or None, s.phase)
        elif m := _EXTRA_RE.match(line):
            new = Progress(None, s.eb_index, s.eb_total, None, None, plain_name(m.group(1)))
        elif _PIPE_RE.match(line):
            new = Progress(None, 0, s.eb_total, None, None, "pipeline restore")
        elif _DONE_RE.match(line):
            new = Progress(None, s.eb_index, s.eb_total, None, None, "done")
        else:
            return None
        self.state = new
        return new


def script_logs(casa_log: Path) -> dict[str, str]:
    """A restore's CASA log cut where scriptForPI starts each script: EB uid -> the log of its
    calibration script, ``scriptForFluxCalibration.py`` (and the other combining scripts) -> theirs.
    Lines before the first script and after scriptForPI's last message are left out."""
    parser = ProgressParser([])
    parts: dict[str, list[str]] = {}
    current: str | None = None
    for line in Path(casa_log).read_text(errors="replace").splitlines(keepends=True):
        progress = parser.feed(line.rstrip("\n").split("\t", 3)[-1])   # date time, priority, origin, message
        if progress is not None and progress.step is None:              # a script starts, or the run ends
            current = progress.eb if progress.phase == "calibration" else (
                progress.phase if progress.phase.startswith("scriptFor") else None)
        if current:
            parts.setdefault(current, []).append(line)
    return {key: "".join(lines) for key, lines in parts.items()}


# -- running --------------------------------------------------------------------------------------------
@dataclass
class RestoreResult:
    """What a restore did: time, disk use against the estimate, the MSs it left and its logs."""

    member: Path
    spacesaving: int
    engine: str
    seconds: float
    estimate_mb: int
    peak_bytes: int
    final_bytes: int
    measurement_sets: list[Path]
    casa_log: Path
    output_log: Path
    kept: list[str] = field(default_factory=list)          # EBs kept from an earlier run (--resume)
    calibrated_ebs: list[str] = field(default_factory=list)
    casa_ran: str | None = None                            # "modular CASA 6.7.0-31", "monolithic CASA 6.5.4-9"
    casa_asked: list[str] = field(default_factory=list)    # versions the calibration scripts' gates demand
    mismatch_allowed: bool = False                         # gates passed by --casa-version-mismatch allow
    disk_plot: Path | None = None                          # restore-disk.png: disk use over time vs the estimate
    # ``phase_scatter_in_casa`` of the calibrated MSs, measured in the restore's own CASA child (modular
    # CASA, not resumed); None when it was not (then ``phase_scatter`` starts a CASA of its own)
    phase_scatter: dict[str, dict] | None = None

    @property
    def within_estimate(self) -> bool:
        """True when the peak disk use stayed within scriptForPI's estimate (or the check was skipped)."""
        return self.spacesaving == -1 or self.peak_bytes <= self.estimate_mb * MB


def _logs(plan: RestorePlan) -> tuple[Path, Path, Path]:
    work = plan.path / WORK
    work.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return work, work / f"casa-{stamp}.log", work / f"scriptForPI-{stamp}.out"


def _variables(plan: RestorePlan) -> dict:
    variables: dict = {"SPACESAVING": plan.spacesaving}
    if plan.dosplit:
        variables["DOSPLIT"] = True
    return variables


def run_script(plan: RestorePlan, script: Path, cwd: Path, variables: dict, casa_log: Path,
               on_line: Callable[[str], None], phase_check: Path | None = None) -> dict | None:
    """Run one ALMA script in ``cwd`` with ``variables`` as globals, in the plan's CASA.

    ``phase_check`` (modular CASA only): a calibrated/ folder whose MSs the same CASA then measures
    (``script_then_phases_in_casa``), sparing the start of another CASA; returns that child's answer
    (``phase_scatter`` in it when measured), None for a monolithic CASA."""
    if plan.engine == "monolithic":
        assert plan.casa is not None
        _run_monolithic(plan.casa, script, cwd, variables, casa_log, on_line,
                        pipeline=plan.member.flavour is Flavour.PIPELINE)
        return None
    return run_in_casa(script_then_phases_in_casa,
                       {"script": str(script), "cwd": str(cwd), "variables": variables,
                        "pass_version_gates": plan.passes_gates,
                        "phase_check": str(phase_check) if phase_check else None},
                       workdir=cwd, logfile=casa_log, on_line=on_line)


def script_then_phases_in_casa(script: str, cwd: str, variables: dict, pass_version_gates: bool = False,
                               phase_check: str | None = None) -> dict:
    """(CASA child) ``legacy.run_script_in_casa``; then, with ``phase_check`` (a calibrated/ folder), the
    phase rms (``phase_scatter_in_casa``) of the ``*.ms.split.cal`` and ``calibrated.ms`` the script left
    there, as ``phase_scatter``. A phase check that cannot be made is left out (the caller then asks
    ``phase_scatter``, which reports why); the script's own failure is raised."""
    out = legacy.run_script_in_casa(script, cwd, variables, pass_version_gates=pass_version_gates)
    if phase_check:
        mss = sorted(str(p) for p in Path(phase_check).glob("*.ms*")
                     if p.name.endswith((".ms.split.cal", "calibrated.ms")) and (p / "table.dat").is_file())
        try:
            out["phase_scatter"] = phase_scatter_in_casa(mss) if mss else {}
        except Exception as exc:  # noqa: BLE001 (the check is redone, and its error reported, by the caller)
            print(f"almadeliver: phase check left to a CASA of its own ({type(exc).__name__}: {exc})")
    return out


def _run_monolithic(casa: MonolithicCasa, script: Path, cwd: Path, variables: dict, casa_log: Path,
                    on_line: Callable[[str], None], pipeline: bool) -> None:
    """``casa --nologger --nogui [--pipeline] -c driver.py`` with a driver valid in Python 2 and 3."""
    driver = casa_log.with_name(casa_log.stem.replace("casa-", "driver-") + f"-{script.stem}.py")
    lines = [f"casalog.setlogfile({str(casa_log)!r})"]
    lines += [f"{name} = {value!r}" for name, value in variables.items()]
    lines.append(f"execfile({str(script)!r})")
    driver.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(casa.command(driver, pipeline), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail = stream_output(proc, on_line)
    if proc.wait() != 0:
        reason = last_words(tail, proc.returncode)
        raise CasaError(f"{casa.executable} failed running {script.name}: {reason}", f"see the CASA log {casa_log}")


def restore(plan: RestorePlan, on_progress: Callable[[Progress], None] | None = None,
            on_line: Callable[[str], None] | None = None, interval: float = 0.25) -> RestoreResult:
    """Run the delivery's scriptForPI.py as planned (raises the plan's refusal first).

    One restore per member at a time: a second one raises BusyError naming the pid that holds it.
    """
    with FolderLock(plan.path, wait=False, what="restore of", path=plan.path / WORK / "lock"):
        return _restore(plan, on_progress, on_line, interval)


def _restore(plan: RestorePlan, on_progress: Callable[[Progress], None] | None,
             on_line: Callable[[str], None] | None, interval: float) -> RestoreResult:
    if plan.already_calibrated:
        raise UsageError(f"{plan.path} is a Cycle 0 delivery: calibrated/ already holds the calibrated MSs",
                         "use them as they are, or concatenate them with `almadeliver restore --concat`")
    plan.check()
    assert plan.script is not None
    work, casa_log, out_log = _logs(plan)
    parser = ProgressParser(plan.todo)
    failures: list[str] = []
    casa_ran = casa_description(plan)
    left_behind = f"; {plan.calibrated} is left as it is (add --resume to keep the EBs it finished, or move it away)"

    with open(out_log, "w") as out:
        out.write(f"almadeliver: {casa_ran}"
                  + (f"; the calibration scripts ask for CASA {', '.join(plan.casa_asked)}" if plan.casa_asked else "")
                  + (" (version gates passed: --casa-version-mismatch allow)" if plan.passes_gates else "") + "\n")

        def line_seen(line: str) -> None:
            out.write(line + "\n")
            out.flush()
            tp = _TP_NO_SPLIT_RE.match(line)
            if tp and tp.group(1) in plan.total_power:
                # scriptForPI v2.x says so of every TP EB: its calibrated data are <EB>.ms.cal, left in place
                note = (f"almadeliver: {tp.group(1)} is a Total Power EB: its calibrated data are "
                        f"{total_power_calibrated(plan.calibrated, tp.group(1)).relative_to(plan.path)} "
                        f"(scriptForPI v2.x leaves them there; the ERROR above is expected)")
                out.write(note + "\n")
            elif line.startswith("ERROR:") or " ERROR: " in line:
                failures.append(line.strip())
            if on_line:
                on_line(line)
            p = parser.feed(line)
            if p and on_progress:
                on_progress(p)

        start = time.monotonic()
        phases = None
        preload("matplotlib.figure", "matplotlib.backends.backend_agg")   # for plot_disk_use, while CASA runs
        if plan.resume and plan.calibrated.exists():
            sampler, kept = _resume(plan, work, casa_log, line_seen, interval)
        else:
            kept = []
            with DiskSampler(plan.calibrated, interval=interval) as sampler:
                try:
                    if plan.engine == "native":
                        native = native_restore(plan.member, plan.spacesaving, dosplit=plan.dosplit,
                                                on_line=line_seen)
                        casa_log = native.casa_log
                    else:
                        child = run_script(plan, plan.script.path, plan.script.path.parent, _variables(plan),
                                           casa_log, line_seen, phase_check=plan.calibrated)
                        phases = (child or {}).get("phase_scatter")
                except CasaError as exc:
                    partial = left_behind if plan.calibrated.exists() else ""
                    raise CasaError(exc.message + partial,
                                    f"see the script output {out_log} and the CASA log {casa_log}") from None
        seconds = time.monotonic() - start

    missing = [eb for eb in plan.todo if not _restored(plan, eb)]
    if missing:
        why = f" ({failures[-1]})" if failures else ""
        raise CasaError(f"scriptForPI ended without a calibrated MS for {', '.join(missing)}{why}{left_behind}",
                        f"see the script output {out_log} and the CASA log {casa_log}")
    mss = sorted(p for p in plan.calibrated.glob("*.ms*") if p.name.endswith((".ms.split.cal", "calibrated.ms")))
    mss += [total_power_calibrated(plan.calibrated, eb, final=True) for eb in plan.todo + kept
            if eb in plan.total_power and (total_power_calibrated(plan.calibrated, eb) / "table.dat").is_file()]
    if plan.member.flavour is Flavour.PIPELINE:   # hifa_restoredata's MSs stay in working/
        mss += sorted((plan.calibrated / "working").glob("*.ms"))
    disk_plot = plot_disk_use(sampler.samples, plan.estimate, plan.spacesaving, work / "restore-disk.png",
                              f"{plan.path.name}: restore at SPACESAVING={plan.spacesaving} ({plan.engine})")
    return RestoreResult(plan.path, plan.spacesaving, plan.engine, seconds, plan.need_mb, sampler.peak,
                         du_bytes(plan.calibrated), mss, casa_log, out_log, kept, list(plan.todo),
                         casa_ran, plan.casa_asked, plan.passes_gates, disk_plot,
                         phase_scatter=phases if phases is not None and all(str(p) in phases for p in mss
                                                                           if p.name.endswith((".ms.split.cal", "calibrated.ms"))) else None)



def casa_description(plan: RestorePlan) -> str:
    """Which CASA runs the restore, in words: ``modular CASA 6.7.0-31`` or ``monolithic CASA ... (path)``."""
    if plan.engine == "monolithic" and plan.casa:
        return f"monolithic CASA {plan.casa.version or '(version unknown)'} ({plan.casa.executable})"
    if plan.engine == "native":
        return f"modular CASA {plan.casa_version or '?'} (native pipeline restore)"
    return f"modular CASA {plan.casa_version or '?'}"


def _restored(plan: RestorePlan, eb: str) -> bool:
    """An EB is restored when its .ms.split.cal is in calibrated/ (or, at level 3, in calibrated.ms); a
    Total Power EB when its calibrated/<EB>.calibration/<EB>.ms.cal is complete."""
    cal = plan.calibrated
    if (cal / f"{eb}.ms.split.cal" / "table.dat").is_file():
        return True
    if eb in plan.total_power:     # scriptForPI v2.x leaves it in calibrated/<EB>.calibration/
        return (total_power_calibrated(cal, eb) / "table.dat").is_file()
    if (cal / "calibrated.ms" / "table.dat").is_file() and plan.estimate.effective_level(plan.spacesaving) >= 3:
        return True
    return plan.member.flavour is Flavour.PIPELINE and (cal / "working" / f"{eb}.ms" / "table.dat").is_file()


# -- --resume -------------------------------------------------------------------------------------------
def _resume(plan: RestorePlan, work: Path, casa_log: Path, line_seen: Callable[[str], None],
            interval: float) -> tuple[DiskSampler, list[str]]:
    """Keep the finished EBs, calibrate the others with scriptForPI, then run the combining scripts.

    scriptForPI stops when calibrated/ exists and calibrates every EB it has a script for. So the
    finished ``<EB>.ms.split.cal`` (and their ``<EB>.calibration/``) are held aside, what the failed
    run left is removed, and scriptForPI runs from a shadow ``script/`` (links to the delivery's
    files without the finished EBs' scripts and without the combining scripts). Its calibrated/
    then joins the held EBs, and the combining scripts (scriptForPolCalibration,
    scriptForFluxCalibration, scriptForImagingPrep) run in calibrated/ as scriptForPI would run them.
    """
    cal, hold, shadow = plan.calibrated, work / "resume-hold", work / "resume-shadow"
    for folder in (hold, shadow):
        if folder.exists():
            shutil.rmtree(folder)
    hold.mkdir()
    kept = list(plan.finished)
    for eb in kept:
        for name in (f"{eb}.ms.split.cal", f"{eb}.calibration"):
            if (cal / name).exists():
                (cal / name).rename(hold / name)
    shutil.rmtree(cal)               # what the interrupted run left: partial EBs, partial calibrated.ms
    script_dir = plan.script.path.parent
    extras = [p for p in sorted(script_dir.iterdir()) if plain_name(p.name) in EXTRA_SCRIPTS]
    hidden = {p.name for p in extras} | {p.name for p in script_dir.iterdir()
                                         if any(p.name.endswith(f"{eb}{suffix}") for eb in kept
                                                for suffix in CALIBRATION_SCRIPT_SUFFIXES)}
    with DiskSampler(shadow if plan.todo else cal, interval=interval) as sampler:
        if plan.todo:
            _shadow_tree(plan, shadow, hidden)
            run_script(plan, shadow / "script" / plan.script.path.name, shadow / "script", _variables(plan),
                       casa_log, line_seen)
            (shadow / "calibrated").rename(cal)
        else:
            cal.mkdir()
        sampler.path = cal
        for p in sorted(hold.iterdir()):
            p.rename(cal / p.name)
        order = {name: i for i, name in enumerate(("scriptForPolCalibration.py", "scriptForFluxCalibration.py",
                                                  "scriptForImagingPrep.py"))}
        for extra in sorted(extras, key=lambda p: order[plain_name(p.name)]):
            line_seen(f"Executing {extra.name} ...")
            run_script(plan, extra, cal, _variables(plan) | {"applyonly": True}, casa_log, line_seen)
        if plan.estimate.effective_level(plan.spacesaving) >= 3 and (cal / "calibrated.ms").exists():
            for eb in kept + plan.todo:
                shutil.rmtree(cal / f"{eb}.ms.split.cal", ignore_errors=True)
        line_seen('Done. Please find results in directory "calibrated".')
    shutil.rmtree(shadow, ignore_errors=True)
    hold.rmdir()
    return sampler, kept


def _shadow_tree(plan: RestorePlan, shadow: Path, hidden: set[str], raw_ebs: list[str] | None = None) -> None:
    """A tree scriptForPI runs in as in the member: ``shadow/script`` links to the member's script files
    but ``hidden``; ``calibration`` and ``product`` link to the member's; ``raw`` links to the member's
    raw/, or (``raw_ebs``) is a folder linking only those EBs' ASDMs (EBs still downloading stay out)."""
    script_dir = plan.script.path.parent
    (shadow / "script").mkdir(parents=True)
    for p in script_dir.iterdir():
        if p.name not in hidden:
            (shadow / "script" / p.name).symlink_to(p)
    for name in ("calibration", "raw", "product"):
        if name == "raw" and raw_ebs is not None:
            (shadow / "raw").mkdir()
            for eb in raw_ebs:
                (shadow / "raw" / f"{eb}.asdm.sdm").symlink_to(plan.path / "raw" / f"{eb}.asdm.sdm")
        elif (plan.path / name).exists():
            (shadow / name).symlink_to(plan.path / name)


# -- one EB at a time (almadeliver run --steps download,restore) ------------------------------------------
def eb_ready(member: Member, eb: str) -> bool:
    """True when scriptForPI's per-EB stage can run for ``eb`` of a manual delivery: scriptForPI.py and
    the EB's calibration script are in script/, calibration/ is there and the EB's ASDM is in raw/."""
    return (member.flavour is Flavour.MANUAL and member.script_for_pi is not None
            and any(u.disk == eb for u in member.calibration_scripts)
            and any(u.disk == eb for u in member.ebs_in_raw) and (member.path / "calibration").is_dir())


def plan_eb_restore(member_dir: str | Path, eb: str, spacesaving: int, dosplit: bool = False,
                    casa: str | Path | None = None, engine: str = "auto",
                    casa_version_mismatch: str = "refuse") -> RestorePlan:
    """Plan scriptForPI's per-EB stage for one EB of a manual delivery whose other EBs may still be
    downloading (nothing is written; the whole delivery is validated later, by the combining restore).

    Parameters
    ----------
    member_dir : str or Path
        The member folder (its script/, calibration/ and the EB's ASDM in raw/ must be there).
    eb : str
        The EB, as on disk (``uid___A002_Xabc_X1``).
    spacesaving : int
        The SPACESAVING level of the whole restore (fixed: the combining restore uses the same).
    dosplit, casa, engine, casa_version_mismatch
        As for ``plan_restore``.

    Returns
    -------
    RestorePlan
        ``todo`` is ``[eb]``; ``refusal`` the first reason not to run (engine, version gates, modules).

    Raises
    ------
    UsageError
        A bad option, or a delivery that is not manual.
    TreeError
        The EB is not ready (``eb_ready``).
    """
    check_options(spacesaving, engine, casa_version_mismatch)
    member = one_member(Path(member_dir).resolve())
    if member.flavour is not Flavour.MANUAL:
        raise UsageError(f"{member.path} is a {member.flavour.value} delivery: scriptForPI's per-EB stage is "
                         "for manual deliveries", "restore it whole, after the download")
    if not eb_ready(member, eb):
        raise TreeError(f"{eb} of {member.path} is not ready (scriptForPI.py, its calibration script, "
                        "calibration/ and its ASDM are needed)", "wait for its files, or restore after the download")
    plan = RestorePlan(member=member, estimate=estimate(member.path), spacesaving=spacesaving, level_chosen=False,
                       dosplit=dosplit, script=inspect_script(member.file(member.script_for_pi)),
                       readme_casa=_readme_casa(member), engine="modular", casa=None, resume=False, todo=[eb],
                       casa_version_mismatch=casa_version_mismatch)
    plan.refusal = _choose_engine(plan, casa, engine) or _check_scripts(plan)
    return plan


def restore_eb(plan: RestorePlan, on_line: Callable[[str], None] | None = None) -> list[Path]:
    """Run scriptForPI's per-EB stage for the plan's one EB, while the other EBs may still download.

    The delivery's own scriptForPI.py runs in a shadow tree (``<member>/almadeliver-restore/eb-<EB>/``)
    whose script/ holds this EB's calibration script and none of the combining scripts, and whose raw/
    holds this EB's ASDM only; what it leaves in the shadow's calibrated/ (``<EB>.calibration/``,
    ``<EB>.ms.split.cal``, the extracted tables) then moves into the member's calibrated/. The combining
    scripts run later, once, in ``restore`` with ``resume`` (which keeps the EBs finished here).

    Parameters
    ----------
    plan : RestorePlan
        From ``plan_eb_restore``.
    on_line : callable, optional
        Receives every output line of scriptForPI.

    Returns
    -------
    list of Path
        What moved into calibrated/.

    Raises
    ------
    CasaError, CasaNotFoundError, CasaVersionMismatchError, ScriptCheckError
        The plan's refusal, or scriptForPI failed or left no ``<EB>.ms.split.cal`` (the shadow is kept).
    """
    plan.check()
    eb = plan.todo[0]
    work, _, _ = _logs(plan)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    casa_log, out_log = work / f"casa-{stamp}-{eb}.log", work / f"scriptForPI-{stamp}-{eb}.out"
    shadow = work / f"eb-{eb}"
    if shadow.exists():
        shutil.rmtree(shadow)
    script_dir = plan.script.path.parent
    hidden = {p.name for p in script_dir.iterdir()
              if plain_name(p.name) in EXTRA_SCRIPTS
              or (p.name.endswith(CALIBRATION_SCRIPT_SUFFIXES) and not plain_name(p.name).startswith(eb + "."))}
    _shadow_tree(plan, shadow, hidden, raw_ebs=[eb])
    with open(out_log, "w") as out:
        def line_seen(line: str) -> None:
            out.write(line + "\n")
            if on_line:
                on_line(line)
        try:
            run_script(plan, shadow / "script" / plan.script.path.name, shadow / "script", _variables(plan),
                       casa_log, line_seen)
        except CasaError as exc:
            raise CasaError(f"{eb}: {exc.message}", f"see {out_log} and the CASA log {casa_log}") from None
    made = shadow / "calibrated"
    if not _eb_left(made, eb, plan):
        raise CasaError(f"scriptForPI ended without a calibrated MS for {eb}", f"see {out_log} and {casa_log}")
    plan.calibrated.mkdir(exist_ok=True)
    moved = []
    for p in sorted(made.iterdir()):
        target = plan.calibrated / p.name
        if target.exists() or target.is_symlink():
            raise TreeError(f"{target} is already there (another restore of {eb}?)", f"move {plan.calibrated} away")
        p.rename(target)
        moved.append(target)
    shutil.rmtree(shadow)
    return moved


def _eb_left(calibrated: Path, eb: str, plan: RestorePlan) -> bool:
    """scriptForPI's per-EB stage left the EB's result in ``calibrated``."""
    if eb in plan.total_power:
        return (total_power_calibrated(calibrated, eb) / "table.dat").is_file()
    return (calibrated / f"{eb}.ms.split.cal" / "table.dat").is_file()


# -- Cycle 0 -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConcatResult:
    """Cycle 0: the delivered ``*.ms.split.cal`` concatenated into ``calibrated/calibrated.ms``."""

    inputs: list[Path]
    output: Path
    seconds: float
    casa_log: Path


def concat_cycle0(plan: RestorePlan, on_line: Callable[[str], None] | None = None) -> ConcatResult:
    """Concatenate a Cycle 0 delivery's calibrated MSs with casatasks.concat in a CASA child."""
    if not plan.already_calibrated:
        raise UsageError(f"{plan.path} is not a Cycle 0 delivery", "run `almadeliver restore` without --concat")
    inputs = sorted(plan.calibrated.glob("*.ms.split.cal"))
    output = plan.calibrated / "calibrated.ms"
    if not inputs:
        raise TreeError(f"no *.ms.split.cal in {plan.calibrated}", "fetch the Cycle 0 delivery tarballs again")
    if output.exists():
        raise TreeError(f"{output} already exists", "move it away to concatenate again")
    needed = -(-sum(du_bytes(p) for p in inputs) // MB)
    free = shutil.disk_usage(plan.calibrated).free // MB
    if needed > free:
        raise DiskSpaceError(f"concat needs {needed} MB in {plan.calibrated}, {free} MB free "
                             f"({needed - free} MB missing)", "free some space first")
    work, casa_log, _ = _logs(plan)
    start = time.monotonic()
    run_in_casa(concat_in_casa,
                {"vis": [str(p) for p in inputs], "concatvis": str(output)},
                workdir=work, logfile=casa_log, on_line=on_line)
    return ConcatResult(inputs, output, time.monotonic() - start, casa_log)


def concat_in_casa(vis: list[str], concatvis: str) -> str:
    """(CASA child) ``concat`` as the Cycle 0 flux-calibration scripts call it."""
    from casatasks import concat

    concat(vis=vis, concatvis=concatvis)
    if not os.path.isfile(os.path.join(concatvis, "table.dat")):
        raise CasaError(f"concat did not write {concatvis}")
    return concatvis


# -- checking the result ---------------------------------------------------------------------------------
def phase_scatter(measurement_sets: list[Path], workdir: Path) -> dict[str, dict]:
    """Phase rms (deg) on the phase calibrator of each MS, computed in a CASA child."""
    return run_in_casa(phase_scatter_in_casa,
                       {"measurement_sets": [str(p) for p in measurement_sets]},
                       workdir=workdir, logfile=Path(workdir) / "phase-check.casa.log")


def phase_scatter_in_casa(measurement_sets: list[str]) -> dict[str, dict]:
    """(CASA child) For each MS: the rms about the mean of the phase of every unflagged cross-correlation
    (channel-averaged, first correlation, science spws) on the fields observed with intent CALIBRATE_PHASE, in DATA
    (split MSs), or CORRECTED_DATA for a pipeline restore's calibrated/working/<EB>.ms."""
    import casatools
    import numpy as np

    out: dict[str, dict] = {}
    for ms in measurement_sets:
        msmd = casatools.msmetadata()
        msmd.open(ms)
        fields = sorted(int(f) for f in msmd.fieldsforintent("CALIBRATE_PHASE*"))
        names = [msmd.namesforfields(f)[0] for f in fields]
        # science spws only (more than 4 channels): WVR and channel-average spws are never calibrated
        science_dd = {dd for dd, spw in enumerate(msmd.spwfordatadesc(-1)) if msmd.nchan(int(spw)) > 4}
        msmd.close()
        if not fields:
            raise CasaError(f"{ms} has no field with intent CALIBRATE_PHASE")
        tb = casatools.table()
        tb.open(ms)
        column = "CORRECTED_DATA" if os.path.basename(os.path.dirname(os.path.abspath(ms))) == "working" \
            and "CORRECTED_DATA" in tb.colnames() else "DATA"
        phases = []
        for ddid in sorted(set(tb.getcol("DATA_DESC_ID").tolist()) & science_dd):
            sub = tb.query(f"FIELD_ID IN {fields} && DATA_DESC_ID=={ddid} && ANTENNA1!=ANTENNA2")
            if sub.nrows():
                data = np.where(sub.getcol("FLAG"), np.nan, sub.getcol(column))[0]   # [chan, row]
                vis = np.nanmean(data, axis=0) if np.isfinite(data).any() else np.array([])
                vis = vis[np.isfinite(vis)]
                if vis.size:
                    phases.append(np.angle(vis / np.mean(vis)))   # about the mean phasor: no wrapping
            sub.close()
        tb.close()
        ph = np.degrees(np.concatenate(phases)) if phases else np.array([])
        out[ms] = {"fields": names, "rms_deg": float(np.sqrt(np.mean(ph ** 2))) if ph.size else float("nan"),
                   "visibilities": int(ph.size)}
    return out
