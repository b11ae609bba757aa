"""recalibrate: redo a manual delivery's calibration step by step, as ALMA's calibration guides teach.

The Cycle 0 calibration guide (seed 004) has users copy the MS and ``<EB>.ms.scriptForCalibration.py``
into a new folder (never in raw/), run chosen steps with ``mysteps`` (``applyonly`` false: the
reducer's own run, making the tables), edit a step and run it again after restoring, with
``flagmanager``, the flags saved before it, then concatenate the EBs. Here:

* ``plan_recalibration`` reads the script's steps (``step_title`` and its ``mystep = N`` blocks), the
  steps asked for, what each needs that modular CASA lacks (analysisUtils, wvrgcal of almatasks), the
  version gate (the ``--casa-version-mismatch`` decision of restore) and where each EB starts from:
  Cycle 0 ``raw/<EB>.ms.split`` (its deliveries have no ASDM), later cycles the ASDM in raw/, or the
  ``<EB>.ms.split`` a SPACESAVING 0 restore left in ``calibrated/<EB>.calibration/``.
* The working copy of each EB is ``<member>/recalibration/<EB>/``: the MS, the delivered tables and
  flag versions, and the script (the delivered one, or the user's edit given with ``--script``).
* ``recalibrate`` runs the steps in a CASA child, one ``execfile`` per step. Before step N it saves
  the flags of the MS the step works on as flag version ``almadeliver_before_step_N``; when step N
  is run again, that version is restored first and the versions of the later steps (now stale) are
  deleted. Each step's title and time are reported as it runs.
* The result is compared with the delivered one: flags and visibilities of ``<EB>.ms.split.cal``,
  phase rms on the phase calibrator, and the calibrators' fluxes from the fluxscale listfile.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..delivery.layout import Flavour, Member, one_member
from ..errors import CasaError, CasaNotFoundError, CasaVersionMismatchError, TreeError, UsageError
from ..transfer.lock import FolderLock
from .restore import MISMATCH_CHOICES, concat_in_casa
from .runtime import run_in_casa
from .scriptcheck import first_three, lacking, modular_casa_version, read_gate

WORK = "recalibration"                  # <member>/recalibration/<EB>/: the working copies
FLAG_PREFIX = "almadeliver_before_step_"
_SPLIT_TITLE = re.compile(r"^Split out science SPWs", re.I)
_AU_NAMES = ("aU", "es")                # analysisUtils and its stuffForScienceDataReduction object
_START_RE = re.compile(r"^almadeliver: step (\d+) start\t(.*)$")
_DONE_RE = re.compile(r"^almadeliver: step (\d+) done in ([\d.]+) s$")
_RESTORED_RE = re.compile(r"^almadeliver: step (\d+): flags restored to (\S+)$")


# -- the script's steps -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationStep:
    """One step of a calibration script: its number, title, lines and what modular CASA lacks for it."""

    number: int
    title: str
    first_line: int
    last_line: int
    lacks: tuple[str, ...] = ()          # "analysisUtils (es.getFieldsForSetjy)", "task wvrgcal"


def _step_titles(tree: ast.Module) -> dict[int, str]:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "step_title" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            try:
                return {int(ast.literal_eval(k)): str(ast.literal_eval(v)) for k, v in zip(node.value.keys, node.value.values)}
            except (ValueError, TypeError):
                break
    return {}


def _au_uses(node: ast.AST) -> list[str]:
    """``aU.x`` / ``es.x`` attribute uses under ``node`` (analysisUtils, not installable in modular CASA)."""
    uses = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in _AU_NAMES:
            uses.append(f"{sub.value.id}.{sub.attr}")
    return list(dict.fromkeys(uses))


def analysis_utils_available() -> bool:
    """True when ``import analysisUtils`` works (it is not on PyPI; some sites put it on PYTHONPATH)."""
    import importlib.util

    return importlib.util.find_spec("analysisUtils") is not None


def read_steps(script: Path) -> list[CalibrationStep]:
    """The steps of an ALMA calibration script, in order, with what each lacks in modular CASA.

    A step is the ``if (mystep in thesteps):`` block after ``mystep = N`` (the script generator's form,
    seed 004); its title is ``step_title[N]``. Lacks: modules and tasks ``scriptcheck.lacking`` finds
    on the step's lines, and analysisUtils calls (``aU.x``, ``es.x``) when analysisUtils is not importable.

    Raises
    ------
    CasaError
        The script does not parse as Python 3 (a CASA 3/4/5 script: run it in monolithic CASA).
    UsageError
        The script has no ``step_title`` or no ``mystep`` blocks (not a generator's calibration script).
    """
    text = Path(script).read_text(errors="replace")
    try:
        tree = ast.parse(text, str(script))
    except SyntaxError as exc:
        raise CasaNotFoundError(f"{Path(script).name} is not Python 3 (line {exc.lineno}: {exc.msg}): a CASA 3-5 "
                                "script, which modular CASA cannot run",
                                "recalibrate runs in modular CASA 6; port the script to Python 3 and give it with "
                                "--script EDITED.py") from None
    titles = _step_titles(tree)
    blocks: list[tuple[int, ast.If]] = []
    body = tree.body
    for i, node in enumerate(body[:-1]):
        nxt = body[i + 1]
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "mystep" and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, int) and isinstance(nxt, ast.If)):
            blocks.append((node.value.value, nxt))
    if not titles or not blocks:
        raise UsageError(f"{Path(script).name} has no step_title and mystep blocks",
                         "give the <EB>.ms.scriptForCalibration.py of a manually calibrated delivery")
    lacks_by_line = lacking([Path(script)])
    with_au = not analysis_utils_available()
    steps = []
    for number, block in blocks:
        first, last = block.lineno, block.end_lineno or block.lineno
        lacks = [lk.what for lk in lacks_by_line if first <= lk.line <= last]
        if with_au:
            lacks += [f"analysisUtils ({use})" for use in _au_uses(block)]
        steps.append(CalibrationStep(number, titles.get(number, f"step {number}"), first, last, tuple(lacks)))
    return steps


def parse_steps(spec: str, known: list[int]) -> list[int]:
    """``"9-18"``, ``"9,11,13-15"`` -> step numbers, in the script's order.

    Raises UsageError for a malformed spec or a step the script does not have."""
    chosen: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UsageError(f"--steps {spec}: {part!r} is not a step or a range", "use e.g. --steps 9-18 or 10,12-14")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UsageError(f"--steps {spec}: {part} runs backwards", f"write it {hi}-{lo}")
        missing = [n for n in range(lo, hi + 1) if n not in known]
        if missing:
            raise UsageError(f"--steps {spec}: the script has no step {missing[0]}",
                             f"its steps are {known[0]}-{known[-1]}")
        chosen |= set(range(lo, hi + 1))
    return [n for n in known if n in chosen]


# -- the plan -------------------------------------------------------------------------------------------
@dataclass
class EbRecalibration:
    """One EB's recalibration: its script, working copy, where it starts from and the steps to run."""

    eb: str
    delivered_script: Path
    script: Path                          # what runs: the working copy's script (delivered or user-edited)
    edited_from: Path | None              # --script EDITED.py
    workdir: Path
    start: str                            # "raw/<EB>.ms.split (Cycle 0)", "ASDM raw/<EB>.asdm.sdm", "working copy", ...
    source: Path | None                   # the MS or ASDM copied/linked into the working copy (None: already there)
    steps: list[CalibrationStep]
    run: list[int]                        # steps that will run
    skipped: dict[int, str] = field(default_factory=dict)   # step -> why (lacks, with --skip-lacking)
    split_step: int | None = None         # the "Split out science SPWs" step: later steps work on <EB>.ms.split
    delivered_tables: Path | None = None  # calibration/<EB>.calibration (folder) or .calibration.tgz
    delivered_calibrated: Path | None = None   # calibrated/<EB>.ms.split.cal to compare with

    def title(self, number: int) -> str:
        """The title of step ``number`` as the script's ``thesteps`` names it (``step N`` when it has none)."""
        return next((s.title for s in self.steps if s.number == number), f"step {number}")


@dataclass
class RecalibrationPlan:
    """Everything decided before CASA starts; ``refusal`` is the first reason not to run (or None)."""

    member: Member
    ebs: list[EbRecalibration]
    casa_version: str | None              # the modular CASA that runs the steps
    casa_asked: list[str]                 # versions the scripts' gates demand
    casa_version_mismatch: str
    mismatched: list[str] = field(default_factory=list)   # scripts whose gate asks for another CASA
    refusal: UsageError | CasaError | TreeError | None = None

    @property
    def passes_gates(self) -> bool:
        """True when the scripts' version gates fail but the user allowed the mismatch."""
        return bool(self.mismatched) and self.casa_version_mismatch == "allow"

    @property
    def root(self) -> Path:
        """The member's recalibration folder (working copies per EB, outside raw/ and calibrated/)."""
        return self.member.path / WORK

    def check(self) -> None:
        """Raise the refusal, if any."""
        if self.refusal is not None:
            raise self.refusal


def _split_step(steps: list[CalibrationStep]) -> int | None:
    return next((s.number for s in steps if _SPLIT_TITLE.match(s.title)), None)


def _default_steps(member: Member, steps: list[CalibrationStep], split: int | None) -> list[int]:
    """Cycle 0: from the first step after the split (the a priori calibrations are already applied to
    raw/<EB>.ms.split, seed 004); later cycles: every step, from the ASDM."""
    numbers = [s.number for s in steps]
    if member.flavour is Flavour.CYCLE0 and split is not None:
        return [n for n in numbers if n > split]
    return numbers


def _delivered_tables(member: Member, eb: str) -> Path | None:
    for candidate in (member.path / "calibration" / f"{eb}.calibration",
                      member.path / "calibration" / f"{eb}.calibration.tgz"):
        if candidate.exists():
            return candidate
    return None


def _start(member: Member, eb: str, first: int, split: int | None, workdir: Path) -> tuple[str, Path | None] | TreeError:
    """Where the EB's working copy starts: the MS its first step works on, or the ASDM."""
    needs_split = split is not None and first > split
    wanted = workdir / (f"{eb}.ms.split" if needs_split else f"{eb}.ms")
    if (wanted / "table.dat").is_file():
        return "working copy", None
    if needs_split:
        for source, what in ((member.path / "raw" / f"{eb}.ms.split", f"raw/{eb}.ms.split (Cycle 0)"),
                             (member.path / "calibrated" / f"{eb}.calibration" / f"{eb}.ms.split",
                              f"calibrated/{eb}.calibration/{eb}.ms.split (a SPACESAVING 0 restore)")):
            if (source / "table.dat").is_file():
                return what, source
        return TreeError(f"step {first} works on {eb}.ms.split, which is neither in {workdir} nor in raw/ "
                         f"nor in calibrated/{eb}.calibration/",
                         f"start at step 0 (from the ASDM), or restore with --spacesaving 0 first")
    asdm = member.path / "raw" / f"{eb}.asdm.sdm"
    if first == 0 and asdm.is_dir():
        return f"ASDM raw/{eb}.asdm.sdm", asdm
    if member.flavour is Flavour.CYCLE0:
        return TreeError(f"Cycle 0 deliveries have no ASDM: step {first} needs {eb}.ms",
                         f"start after step {split} (the split), e.g. --from-step {(split or 0) + 1}")
    if first == 0:
        return TreeError(f"raw/{eb}.asdm.sdm is not in {member.path}", "untar the raw data tarballs first")
    return TreeError(f"step {first} works on {eb}.ms, which is not in {workdir}",
                     "start at step 0 (the import of the ASDM)")


def plan_recalibration(member_dir: str | Path, ebs: list[str] | None = None, steps: str | None = None,
                       from_step: int | None = None, script: str | Path | None = None,
                       casa_version_mismatch: str = "refuse", skip_lacking: bool = False) -> RecalibrationPlan:
    """Decide how to recalibrate the EBs of a manual (or Cycle 0) delivery; nothing is written.

    Parameters
    ----------
    member_dir : folder of one member (``member.uid___...``) with script/ and raw/.
    ebs : EB uids (any spelling: ``uid://A002/X1/X2`` or ``uid___A002_X1_X2``); default every EB
        that has a calibration script.
    steps : steps to run, e.g. ``"9-18"``; default Cycle 0: after the split, later cycles: all.
    from_step : run from this step to the last (instead of ``steps``).
    script : a user-edited calibration script to run instead of the delivered one (one EB only).
    casa_version_mismatch : ``refuse`` or ``allow`` (as for restore) when the script's exact-version
        gate asks for another CASA than the installed modular one.
    skip_lacking : skip the steps that need what modular CASA lacks instead of refusing.

    Returns
    -------
    RecalibrationPlan
        ``plan.refusal`` holds the first reason not to run (a step that lacks something, a version
        mismatch, an input that is not there).

    Raises
    ------
    UsageError
        Bad options: unknown choice, EB or step, ``--steps`` with ``--from-step``, ``--script`` with several EBs.
    TreeError
        The folder is not one member, or the member is pipeline-calibrated (no calibration scripts).
    """
    if casa_version_mismatch not in MISMATCH_CHOICES:
        raise UsageError(f"--casa-version-mismatch {casa_version_mismatch} is not a choice",
                         f"use one of {', '.join(MISMATCH_CHOICES)}")
    if steps is not None and from_step is not None:
        raise UsageError("--steps and --from-step both given", "give one of them")
    member = one_member(Path(member_dir).resolve(), "recalibrate")
    if member.flavour is Flavour.PIPELINE or not member.calibration_scripts:
        raise TreeError(f"{member.path} has no <EB>.ms.scriptForCalibration.py (a pipeline-calibrated delivery?)",
                        "recalibrate redoes manual calibrations; re-run a pipeline calibration with its "
                        "casa_pipescript.py in monolithic CASA with the pipeline")
    scripts = {eb.disk: member.file(rel) for eb, rel in member.calibration_scripts.items()}
    chosen = list(scripts)
    if ebs:
        from ..ids import Uid

        chosen = []
        for text in ebs:
            try:
                disk = Uid(text).disk
            except Exception:
                raise UsageError(f"--eb {text} is not an EB uid", "give it as uid://A002/X.../X... or uid___A002_...") from None
            if disk not in scripts:
                raise UsageError(f"--eb {text}: no calibration script for it in {member.path}",
                                 f"EBs with one: {', '.join(scripts)}")
            chosen.append(disk)
    edited = Path(script).resolve() if script else None
    if edited is not None:
        if len(chosen) != 1:
            raise UsageError(f"--script {script} replaces one EB's script, but {len(chosen)} EBs are chosen",
                             "add --eb UID")
        if not edited.is_file():
            raise UsageError(f"--script {script}: no such file", "give the path of the edited calibration script")
    plan = RecalibrationPlan(member, [], modular_casa_version(), [], casa_version_mismatch)
    root = member.path / WORK
    for eb in chosen:
        workdir = root / eb
        working_script = workdir / scripts[eb].name
        to_read = edited or (working_script if working_script.is_file() else scripts[eb])
        try:
            eb_steps = read_steps(to_read)
        except (UsageError, CasaError) as exc:
            plan.refusal = plan.refusal or exc
            continue
        numbers = [s.number for s in eb_steps]
        split = _split_step(eb_steps)
        if from_step is not None:
            if from_step not in numbers:
                raise UsageError(f"--from-step {from_step}: the script has no such step", f"its steps are {numbers[0]}-{numbers[-1]}")
            run = [n for n in numbers if n >= from_step]
        elif steps is not None:
            run = parse_steps(steps, numbers)
        else:
            run = _default_steps(member, eb_steps, split)
        item = EbRecalibration(eb, scripts[eb], working_script, edited, workdir, "", None, eb_steps, run,
                               split_step=split, delivered_tables=_delivered_tables(member, eb))
        cal = member.path / "calibrated" / f"{eb}.ms.split.cal"
        item.delivered_calibrated = cal if (cal / "table.dat").is_file() else None
        lacking_steps = {s.number: "; ".join(s.lacks) for s in eb_steps if s.number in run and s.lacks}
        if lacking_steps and skip_lacking:
            item.skipped = {n: f"needs {why}" for n, why in lacking_steps.items()}
            item.run = [n for n in run if n not in lacking_steps]
        elif lacking_steps and plan.refusal is None:
            n, why = next(iter(lacking_steps.items()))
            more = f" (and {len(lacking_steps) - 1} more step(s))" if len(lacking_steps) > 1 else ""
            plan.refusal = CasaNotFoundError(
                f"{to_read.name} step {n} ({item.title(n)}) needs {why}, which modular CASA does not have{more}",
                "add --skip-lacking to run the other steps (the skipped ones are listed), or edit the step and "
                "give the script with --script EDITED.py")
        if item.run:
            started = _start(member, eb, item.run[0], split, workdir)
            if isinstance(started, TreeError):
                plan.refusal = plan.refusal or started
            else:
                item.start, item.source = started
        plan.ebs.append(item)
        gate = read_gate(to_read)
        if gate is not None:
            plan.casa_asked = list(dict.fromkeys([*plan.casa_asked, gate.demands]))
            running = first_three(plan.casa_version)
            if running and gate.demands != running:
                plan.mismatched.append(to_read.name)
    if plan.mismatched and casa_version_mismatch == "refuse" and plan.refusal is None:
        plan.refusal = CasaVersionMismatchError(
            f"the calibration scripts ask for CASA {', '.join(plan.casa_asked)} exactly ({plan.mismatched[0]}: "
            f"version gate); recalibrate runs modular CASA {plan.casa_version}",
            "add --casa-version-mismatch allow to run them in this CASA anyway (recorded in the report)")
    return plan


# -- running ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepEvent:
    """What the CASA child says as the steps run: a step starts, ends (seconds), or its flags were restored."""

    eb: str
    step: int
    kind: str                   # "start" | "done" | "restored"
    title: str = ""
    seconds: float | None = None
    flag_version: str | None = None


@dataclass
class StepTime:
    """One step that ran: number, title, wall time (s), and whether its saved flags were restored first."""

    step: int
    title: str
    seconds: float
    flags_restored: bool


@dataclass
class EbComparison:
    """A recalibrated EB against the delivered one (None: nothing to compare with)."""

    flags_equal: bool | None = None
    flags_differing: int | None = None          # flag values that differ
    max_relative_difference: float | None = None    # max |new - delivered| / rms |delivered| (unflagged)
    phase_rms_deg: float | None = None          # on the phase calibrator, recalibrated
    delivered_phase_rms_deg: float | None = None
    fluxes: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # "J0554-3451 spw 1" -> (new, delivered) Jy


@dataclass
class EbResult:
    """What one EB's recalibration did."""

    eb: str
    workdir: Path
    steps: list[StepTime]
    skipped: dict[int, str]
    flagged_fraction: float | None          # of the MS the last step worked on, after the run
    calibrated: Path | None                 # the working copy's <EB>.ms.split.cal (made by this run or an earlier one)
    comparison: EbComparison
    casa_log: Path


@dataclass
class RecalibrationResult:
    """Every EB's result, the optional concatenation and the CASA that ran."""

    ebs: list[EbResult]
    casa_ran: str
    casa_asked: list[str]
    mismatch_allowed: bool
    concatenated: Path | None = None


def _prepare(item: EbRecalibration) -> None:
    """Make the working copy: the starting MS (copied) or ASDM (linked), the delivered tables and
    flag versions (not over the working copy's own), and the script to run."""
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
    lines, as CASA writes them: ``# Flux density for J0554-3451 in SpW=1 (freq=...) is: 0.8996 +/- ...``)."""
    out: dict[str, float] = {}
    if not Path(listfile).is_file():
        return out
    for m in re.finditer(r"Flux density for (\S+) in SpW=(\d+) .*? is: ([-\d.eE+]+)", Path(listfile).read_text()):
        out[f"{m.group(1)} spw {m.group(2)}"] = float(m.group(3))
    return out


def _delivered_file(item: EbRecalibration, name: str, workdir_tmp: Path) -> Path | None:
    """A delivered table file (the fluxscale listfile) from the calibration folder or tgz."""
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


def recalibrate(plan: RecalibrationPlan, on_event: Callable[[StepEvent], None] | None = None,
                on_line: Callable[[str], None] | None = None, concat: bool = False) -> RecalibrationResult:
    """Run the planned steps of each EB in its working copy and compare with the delivered results.

    Parameters
    ----------
    plan : from ``plan_recalibration`` (its refusal is raised first).
    on_event : called as each step starts and ends and when saved flags are restored.
    on_line : every line the CASA child prints (the script's own output).
    concat : afterwards, concatenate the working copies' ``<EB>.ms.split.cal`` into
        ``<member>/recalibration/calibrated.ms`` (the guide's last step), replacing an older one.

    Raises
    ------
    BusyError
        Another recalibration holds the EB's working copy.
    CasaError
        A step failed (the message names the step and the CASA log).
    """
    plan.check()
    results = []
    for item in plan.ebs:
        item.workdir.mkdir(parents=True, exist_ok=True)
        with FolderLock(item.workdir, wait=False, what="recalibration of", path=item.workdir / ".lock"):
            results.append(_recalibrate_eb(plan, item, on_event, on_line))
    concatenated = None
    if concat:
        vis = [str(r.calibrated) for r in results if r.calibrated is not None]
        if len(vis) != len(results):
            raise UsageError("--concat needs every EB's <EB>.ms.split.cal", "run the steps up to the last split")
        concatenated = plan.root / "calibrated.ms"
        if concatenated.exists():
            shutil.rmtree(concatenated)
        run_in_casa(concat_in_casa, {"vis": vis, "concatvis": str(concatenated)},
                    workdir=plan.root, logfile=plan.root / "concat.casa.log", on_line=on_line)
    return RecalibrationResult(results, f"modular CASA {plan.casa_version or '?'}", plan.casa_asked,
                               plan.passes_gates, concatenated)


def _recalibrate_eb(plan: RecalibrationPlan, item: EbRecalibration, on_event: Callable[[StepEvent], None] | None,
                    on_line: Callable[[str], None] | None) -> EbResult:
    _prepare(item)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    casa_log = item.workdir / f"casa-{stamp}.log"
    restored: set[int] = set()

    def seen(line: str) -> None:
        if on_line:
            on_line(line)
        event = None
        if m := _START_RE.match(line):
            event = StepEvent(item.eb, int(m.group(1)), "start", m.group(2))
        elif m := _DONE_RE.match(line):
            event = StepEvent(item.eb, int(m.group(1)), "done", item.title(int(m.group(1))), float(m.group(2)))
        elif m := _RESTORED_RE.match(line):
            restored.add(int(m.group(1)))
            event = StepEvent(item.eb, int(m.group(1)), "restored", flag_version=m.group(2))
        if event and on_event:
            on_event(event)

    delivered_flux = _delivered_file(item, f"{item.eb}.ms.split.fluxscale", item.workdir)
    outcome = run_in_casa(
        recalibrate_in_casa,
        {"script": str(item.script), "eb": item.eb, "steps": item.run, "split_step": item.split_step,
         "titles": {str(s.number): s.title for s in item.steps}, "pass_version_gates": plan.passes_gates,
         "delivered_calibrated": str(item.delivered_calibrated) if item.delivered_calibrated else None},
        workdir=item.workdir, logfile=casa_log, on_line=seen)
    times = [StepTime(int(n), item.title(int(n)), float(s), int(n) in restored) for n, s in outcome["times"]]
    comp = EbComparison(**{k: v for k, v in (outcome.get("comparison") or {}).items()})
    listfile = item.workdir / f"{item.eb}.ms.split.fluxscale"
    new_flux = read_fluxscale(listfile) if _written_since(listfile, outcome["started"]) else {}
    old_flux = read_fluxscale(delivered_flux) if delivered_flux else {}
    comp.fluxes = {k: (new_flux.get(k), old_flux.get(k)) for k in sorted(new_flux)}
    cal = item.workdir / f"{item.eb}.ms.split.cal"
    result = EbResult(item.eb, item.workdir, times, dict(item.skipped), outcome.get("flagged_fraction"),
                      cal if (cal / "table.dat").is_file() else None, comp, casa_log)
    record = {"eb": item.eb, "script": str(item.script),
              "script_sha256": hashlib.sha256(item.script.read_bytes()).hexdigest(),
              "edited_from": str(item.edited_from) if item.edited_from else None,
              "casa_ran": f"modular CASA {plan.casa_version}", "casa_asked": plan.casa_asked,
              "version_gates_passed": plan.passes_gates, "steps": [asdict(t) for t in times],
              "skipped": {str(k): v for k, v in item.skipped.items()}, "comparison": asdict(comp),
              "flagged_fraction": result.flagged_fraction, "casa_log": str(casa_log), "finished": stamp}
    with open(item.workdir / "recalibration.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    return result


# -- CASA side -------------------------------------------------------------------------------------------
def _flag_versions(ms: str) -> list[str]:
    """The flag versions of ``ms`` (its ``.flagversions/FLAG_VERSION_LIST``, as flagmanager keeps it)."""
    path = os.path.join(ms + ".flagversions", "FLAG_VERSION_LIST")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return [line.split(" : ")[0].strip() for line in fh if line.strip()]


def _analysis_utils():
    """analysisUtils when importable, else a stand-in whose use says so (steps that need it were refused
    or skipped by the plan; the generator's header makes ``es`` with it when applyonly is false)."""
    try:
        import analysisUtils  # type: ignore[import-not-found]

        return analysisUtils
    except ImportError:
        pass

    class Missing:
        def __init__(self, name: str):
            self._name = name

        def __getattr__(self, attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)
            if self._name == "aU" and attr == "stuffForScienceDataReduction":
                return lambda *a, **k: Missing("es")
            raise RuntimeError(f"analysisUtils is not installed: {self._name}.{attr} cannot run in modular CASA")

    return Missing("aU")


def _written_since(path: str | Path, epoch: float) -> bool:
    """True when ``path`` exists and was modified at or after ``epoch`` (s since 1970)."""
    return os.path.isfile(path) and os.path.getmtime(path) >= epoch - 1.0


def _columns_by_spw(tb: Any, columns: list[str]) -> Iterator[list[Any]]:
    """The ``columns`` of an open table, one data description (spw) at a time, rows in table order: the
    spws of one MS may have different channel counts, which one getcol over the whole table refuses."""
    import numpy as np

    for ddid in np.unique(tb.getcol("DATA_DESC_ID")):
        sub = tb.query(f"DATA_DESC_ID=={int(ddid)}")
        try:
            yield [sub.getcol(c) for c in columns]
        finally:
            sub.close()


def _flagged_fraction(ms: str) -> float | None:
    import casatools
    import numpy as np

    if not os.path.isfile(os.path.join(ms, "table.dat")):
        return None
    tb = casatools.table()
    tb.open(ms)
    flagged = total = 0
    for (f,) in _columns_by_spw(tb, ["FLAG"]):
        flagged += int(np.count_nonzero(f))
        total += f.size
    tb.close()
    return flagged / total if total else None


def compare_calibrated(new: str, delivered: str) -> dict[str, Any]:
    """(CASA child) Flags and DATA of two calibrated MSs (same shape), and their phase rms.

    ``max_relative_difference`` is max |new - delivered| over the visibilities unflagged in both,
    divided by the rms of |delivered| over them."""
    import casatools
    import numpy as np

    from .restore import phase_scatter_in_casa

    cols = {}
    for name, ms in (("new", new), ("old", delivered)):
        tb = casatools.table()
        tb.open(ms)
        parts = list(_columns_by_spw(tb, ["DATA", "FLAG"]))
        tb.close()
        cols[name] = ([d.shape for d, _ in parts], np.concatenate([d.ravel() for d, _ in parts]),
                      np.concatenate([f.ravel() for _, f in parts]))
    (shape_n, dn, fn), (shape_o, do, fo) = cols["new"], cols["old"]
    out: dict[str, Any] = {}
    if shape_n != shape_o:
        out.update(flags_equal=False, flags_differing=None, max_relative_difference=None)
    else:
        ok = ~(fn | fo)
        scale = float(np.sqrt(np.mean(np.abs(do[ok]) ** 2))) if ok.any() else 0.0
        out.update(flags_equal=bool((fn == fo).all()), flags_differing=int(np.count_nonzero(fn != fo)),
                   max_relative_difference=float(np.max(np.abs(dn[ok] - do[ok])) / scale) if scale else None)
    scatter = phase_scatter_in_casa([new, delivered])
    out.update(phase_rms_deg=scatter[new]["rms_deg"], delivered_phase_rms_deg=scatter[delivered]["rms_deg"])
    return out


def recalibrate_in_casa(script: str, eb: str, steps: list[int], split_step: int | None, titles: dict[str, str],
                        pass_version_gates: bool = False, delivered_calibrated: str | None = None) -> dict[str, Any]:
    """(CASA child, run in the working copy) Run ``steps`` of ``script`` one by one, with applyonly
    false, saving (first run) or restoring (a rerun) the flags before each step; then compare."""
    from casatasks import flagmanager

    from .legacy import legacy_globals

    vis = f"{eb}.ms"
    namespace = legacy_globals({"applyonly": False, "aU": _analysis_utils(), "mysteps": []},
                               pass_version_gates=pass_version_gates)
    times: list[tuple[int, float]] = []
    last_target = vis
    started = time.time()
    for n in steps:
        target = vis + ".split" if split_step is not None and n > split_step else vis
        last_target = target
        version = f"{FLAG_PREFIX}{n}"
        if os.path.isfile(os.path.join(target, "table.dat")):
            if version in _flag_versions(target):
                flagmanager(vis=target, mode="restore", versionname=version)
                print(f"almadeliver: step {n}: flags restored to {version}", flush=True)
            else:
                flagmanager(vis=target, mode="save", versionname=version,
                            comment=f"flags before step {n} (almadeliver recalibrate)")
        title = titles.get(str(n), "")
        print(f"almadeliver: step {n} start\t{title}", flush=True)
        start = time.monotonic()
        namespace["mysteps"] = [n]
        try:
            namespace["execfile"](script)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise RuntimeError(f"step {n} ({title}) exited: {exc.code}") from None
        except Exception as exc:
            raise RuntimeError(f"step {n} ({title}) failed: {type(exc).__name__}: {exc}") from None
        seconds = time.monotonic() - start
        times.append((n, round(seconds, 3)))
        print(f"almadeliver: step {n} done in {seconds:.1f} s", flush=True)
        for ms in {vis, vis + ".split"}:          # what later steps saved is stale now
            for stale in _flag_versions(ms):
                if stale.startswith(FLAG_PREFIX) and int(stale[len(FLAG_PREFIX):]) > n:
                    flagmanager(vis=ms, mode="delete", versionname=stale)
    out: dict[str, Any] = {"times": times, "flagged_fraction": _flagged_fraction(last_target), "started": started}
    cal = vis + ".split.cal"
    # compared only when this run (re)made it: an older one would not show the steps just run
    if delivered_calibrated and _written_since(os.path.join(cal, "table.dat"), started):
        out["comparison"] = compare_calibrated(os.path.abspath(cal), delivered_calibrated)
    return out
