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

import hashlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..delivery.layout import Flavour, Member, one_member
from ..errors import CasaError, CasaNotFoundError, CasaVersionMismatchError, TreeError, UsageError
from ..transfer.lock import FolderLock
from .calsteps import CalibrationStep, parse_steps, read_steps
from .concat import concat_in_casa
from .recalibrate_child import DONE_LINE, RESTORED_LINE, START_LINE, recalibrate_in_casa, file_stamp
from .recalibrate_copy import delivered_file, prepare_working_copy, read_fluxscale
from .restore import MISMATCH_CHOICES
from .runtime import run_in_casa
from .scriptcheck import first_three, modular_casa_version, read_gate

WORK = "recalibration"                  # <member>/recalibration/<EB>/: the working copies
_SPLIT_TITLE = re.compile(r"^Split out science SPWs", re.I)


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
        """The title of step ``number`` as the script's ``thesteps`` names it (``step N`` when it has none).

        Parameters
        ----------
        number : int
            The step number.

        Returns
        -------
        str
            The title.
        """
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
                         "start at step 0 (from the ASDM), or restore with --spacesaving 0 first")
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

    Returns
    -------
    RecalibrationResult
        Per EB: the steps run, their times (s), the flagged fraction and the comparison with the delivered
        data.

    Raises
    ------
    BusyError
        Another recalibration holds the EB's working copy.
    CasaError
        A step failed (the message names the step and the CASA log).
    UsageError
        ``concat`` is asked and an EB has no ``<EB>.ms.split.cal``.
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
    prepare_working_copy(item)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    casa_log = item.workdir / f"casa-{stamp}.log"
    restored: set[int] = set()

    def seen(line: str) -> None:
        if on_line:
            on_line(line)
        event = None
        if m := START_LINE.match(line):
            event = StepEvent(item.eb, int(m.group(1)), "start", m.group(2))
        elif m := DONE_LINE.match(line):
            event = StepEvent(item.eb, int(m.group(1)), "done", item.title(int(m.group(1))), float(m.group(2)))
        elif m := RESTORED_LINE.match(line):
            restored.add(int(m.group(1)))
            event = StepEvent(item.eb, int(m.group(1)), "restored", flag_version=m.group(2))
        if event and on_event:
            on_event(event)

    delivered_flux = delivered_file(item, f"{item.eb}.ms.split.fluxscale", item.workdir)
    listfile = item.workdir / f"{item.eb}.ms.split.fluxscale"
    listed_before = file_stamp(listfile)
    outcome = run_in_casa(
        recalibrate_in_casa,
        {"script": str(item.script), "eb": item.eb, "steps": item.run, "split_step": item.split_step,
         "titles": {str(s.number): s.title for s in item.steps}, "pass_version_gates": plan.passes_gates,
         "delivered_calibrated": str(item.delivered_calibrated) if item.delivered_calibrated else None},
        workdir=item.workdir, logfile=casa_log, on_line=seen)
    times = [StepTime(int(n), item.title(int(n)), float(s), int(n) in restored) for n, s in outcome["times"]]
    comp = EbComparison(**{k: v for k, v in (outcome.get("comparison") or {}).items()})
    new_flux = read_fluxscale(listfile) if file_stamp(listfile) not in (None, listed_before) else {}
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
