"""The four steps of ``almadeliver run``, one MOUS each, done by the workflow layer (``workflow.py``).

Each step function takes a ``StepTask`` and returns its output (a JSON-able dict) or raises;
``execute_step`` turns either into a ``StepOutcome``. A step's log is
``DEST/.almadeliver/run/<mous>/<step>.log`` (every attempt appended). Where things go:

- download: the MOUS's files (``--what``, default products, auxiliary, raw; as ``--user`` when
  given) are fetched and unpacked into ``DEST/.almadeliver/run/<mous>/download/`` (its own transfer
  journal, so MOUS downloading at once never share one), then its member folder is moved into the
  standard tree ``DEST/<project>/...`` (``workflow.fetch_mous``);
- validate: ``validate(member)``; errors fail the step;
- restore: the delivery's scriptForPI (or the native engine) in a fresh CASA with the run's
  ``--spacesaving``, ``--engine``, ... and ``resume=True``, so a retry after a lost worker keeps the
  EBs already calibrated;
- recalibrate (asked for with ``--steps``): the delivery's calibration scripts redone with the run's
  ``--recalibrate-steps`` ... in the member's working copies (``recalibration/<EB>/``, whose saved flag
  versions make a retry restore the flags before each step it runs again);
- image: the delivered imaging, with the run's image overrides, into ``<member>/run-image/`` (made
  anew by a retry);
- selfcal (asked for with ``--steps``): continuum self-calibration with the run's ``--selfcal-rounds``
  into ``<member>/run-selfcal/`` (made anew by a retry).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

from ..archive.client import ArchiveClient
from ..archive.projectview import query
from ..archive.tap import Selection
from ..casa import imaging
from ..casa.restore import restore
from ..delivery.report import Severity
from ..delivery.validate import validate
from ..errors import CasaError, DiskSpaceError, TreeError, UsageError
from ..ids import ProjectCode, Uid
from ..workflow import (RUN_WHAT, FetchOptions, ImageOptions, RecalibrateOptions, RestoreOptions, SelfcalOptions,
                        fetch_and_restore, fetch_mous, member_in_tree, plan_member_images, plan_member_restore,
                        recalibrate_member, selfcal_member)
from .journal import StepJournal, StepOutcome

log = logging.getLogger("almadeliver.scale")

IMAGE_OUT = "run-image"
SELFCAL_OUT = "run-selfcal"


class Step(str, Enum):
    """The steps of ``almadeliver run``, in data-flow order."""

    DOWNLOAD = "download"
    VALIDATE = "validate"
    RESTORE = "restore"
    RECALIBRATE = "recalibrate"
    IMAGE = "image"
    SELFCAL = "selfcal"

    def __str__(self) -> str:
        return self.value


STEPS = tuple(s.value for s in Step)
#: what ``run`` does unless ``--steps`` says otherwise (recalibrate and selfcal are asked for)
DEFAULT_STEPS = (Step.DOWNLOAD.value, Step.VALIDATE.value, Step.RESTORE.value, Step.IMAGE.value)


@dataclass(frozen=True)
class StepTask:
    """One step of one MOUS, as submitted to a worker (picklable; the password, when given, travels
    inside ``fetch.credentials`` and never shows in a repr).

    Attributes
    ----------
    project : ProjectCode
        The MOUS's project.
    mous : Uid
        The member OUS.
    step : Step
        Which step.
    dest : str
        The root of the delivery trees and of the run journal.
    fetch, restore, image : FetchOptions, RestoreOptions, ImageOptions
        The options of ``download``, ``restore`` and ``image`` that the run was given.
    recalibrate, selfcal : RecalibrateOptions, SelfcalOptions
        The options of ``recalibrate`` and ``image --selfcal`` that the run was given.
    gate : callable or None
        The backend's connection gate (``gates.py``), set when submitted.
    overlap : bool
        The run has the download and the restore step and no validate step (which must see the
        whole delivery before anything is restored): the download step restores each EB as its
        files land (``workflow.fetch_and_restore``) and the restore step reports what it did.
    """

    project: ProjectCode
    mous: Uid
    step: Step
    dest: str
    fetch: FetchOptions = field(default_factory=lambda: FetchOptions(what=RUN_WHAT))
    restore: RestoreOptions = field(default_factory=RestoreOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    gate: Callable | None = None
    recalibrate: RecalibrateOptions = field(default_factory=RecalibrateOptions)
    selfcal: SelfcalOptions = field(default_factory=SelfcalOptions)
    overlap: bool = False

    def outcome(self, ok: bool, **details) -> StepOutcome:
        """The journal record of this task (``details``: the other fields of ``StepOutcome``)."""
        return StepOutcome(str(self.project), str(self.mous), self.step.value, ok, **details)


def step_log(task: StepTask) -> Path:
    """The step's own log, ``DEST/.almadeliver/run/<mous>/<step>.log`` (every attempt appended)."""
    return StepJournal(Path(task.dest)).log(task.mous, task.step)


def log_failure(task: StepTask, exc: BaseException) -> None:
    """Append the error that ended a step to its log."""
    path = step_log(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(f"FAILED: {type(exc).__name__}: {exc}\n")


@contextmanager
def _logged(task: StepTask) -> Iterator[Callable[[str], None]]:
    """The step's log: almadeliver's log records while the step runs, plus what the step says."""
    path = step_log(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("almadeliver")
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]          # one step per worker process at a time: the records are this step's
    root.setLevel(logging.INFO)
    try:
        log.info("== %s of %s (%s), pid %d", task.step, task.mous, task.project, os.getpid())
        yield log.info
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        handler.close()


def find_mous(projects: list[ProjectCode | str], archive: str | None = None,
              client: ArchiveClient | None = None) -> list[tuple[ProjectCode, Uid]]:
    """(project, MOUS uid) for every MOUS of the given projects, from the archive's project view.

    ``client`` (from ``workflow.open_archive``) asks as a logged-in user; default: anonymously.
    """
    view = query(Selection(projects=[str(p) for p in projects]), client or ArchiveClient(archive), with_sg=False)
    return [(ProjectCode.parse(p.code), Uid.parse(m.uid)) for p in view.projects for m in p.mous]


def member_dir(task: StepTask) -> Path:
    """The member folder the download step left (for the steps after it)."""
    member = member_in_tree(Path(task.dest), task.project, task.mous, cycle0=True)
    if member is None:
        raise TreeError(f"{task.mous} is not under {task.dest}/{task.project}",
                        "run its download step first: almadeliver run --steps download ...")
    return member


# -- the steps ---------------------------------------------------------------------------------------
def download_step(task: StepTask) -> dict:
    """Fetch the MOUS's files (``--what``, as ``--user`` when given) into the tree under DEST; with
    ``task.overlap``, restore it too, each EB as its files land (``workflow.fetch_and_restore``). A
    failed restore does not fail the download: the restore step then runs it again (resuming)."""
    with _logged(task) as say:
        staging = StepJournal(Path(task.dest)).folder(task.mous) / "download"
        if not task.overlap or task.fetch.selection:
            got = fetch_mous(task.project, task.mous, Path(task.dest), staging, task.fetch, task.gate, say)
            return {"member": str(got.member), "files": got.files, "fetched_bytes": got.fetched_bytes}
        try:
            both = fetch_and_restore(task.project, task.mous, Path(task.dest), staging, task.fetch, task.restore,
                                     task.gate, say)
        except (CasaError, TreeError, UsageError, DiskSpaceError) as exc:
            if isinstance(exc, TreeError) and member_in_tree(Path(task.dest), task.project, task.mous, True) is None:
                raise                         # the fetch itself failed
            say(f"the restore during the download failed ({exc}); the restore step runs it again")
            member = member_dir(task)
            return {"member": str(member), "restore_error": str(exc)}
        got, r = both.fetched, both.restore
        restored = None if r is None else {
            "measurement_sets": [str(p) for p in r.measurement_sets], "spacesaving": r.spacesaving,
            "casa_log": str(r.casa_log), "output_log": str(r.output_log), "kept": r.kept}
        return {"member": str(got.member), "files": got.files, "fetched_bytes": got.fetched_bytes,
                "restore": restored, "early_ebs": both.early_ebs, "serial_reason": both.serial_reason,
                "overlapped": both.overlapped, "events": [asdict(e) for e in both.events]}


def validate_step(task: StepTask) -> dict:
    """Validate the member folder; errors fail the step (warnings are logged)."""
    with _logged(task) as say:
        report = validate(member_dir(task))
        for severity in (Severity.ERROR, Severity.WARNING):
            for f in report.of(severity):
                say(f"{severity.value} {f.path}: {f.message}" + (f" ({f.hint})" if f.hint else ""))
        errors, warnings = report.of(Severity.ERROR), report.of(Severity.WARNING)
        if errors:
            raise TreeError(f"{len(errors)} errors in the delivery, first: {errors[0].path}: {errors[0].message}",
                            f"see {step_log(task)}")
        say(f"flavour {report.flavour}: {len(warnings)} warnings")
        return {"flavour": report.flavour, "warnings": len(warnings)}


def restore_step(task: StepTask) -> dict:
    """Restore the member folder with the run's restore options (resuming: a retry after a lost
    worker keeps the EBs already calibrated)."""
    with _logged(task) as say:
        done = StepJournal(Path(task.dest)).load(task.mous, Step.DOWNLOAD.value) if task.overlap else None
        if done is not None and done.ok and (done.output or {}).get("restore"):
            say("restored during the download step (each EB as its files landed)")
            return {**done.output["restore"], "during_download": True}
        plan = plan_member_restore(member_dir(task), replace(task.restore, resume=True))
        if plan.already_calibrated:
            say("Cycle 0 delivery: calibrated/ already holds the calibrated MSs")
            return {"measurement_sets": sorted(str(p) for p in plan.calibrated.glob("*.ms.split.cal"))}
        plan.check()                 # a refusal is said before anything claims to run
        say(f"running {plan.script.path.name if plan.script else 'scriptForPI.py'} with SPACESAVING={plan.spacesaving}"
            + (f", keeping {len(plan.finished)} EBs of an earlier attempt" if plan.finished else ""))
        r = restore(plan, on_line=say)
        say(f"restored in {r.seconds:.1f} s; CASA log {r.casa_log}, script output {r.output_log}")
        return {"measurement_sets": [str(p) for p in r.measurement_sets], "spacesaving": r.spacesaving,
                "casa_log": str(r.casa_log), "output_log": str(r.output_log), "kept": r.kept}


def _fresh(out: Path, say: Callable[[str], None]) -> Path:
    """``out`` made anew: a folder left by an attempt that did not finish is removed (said)."""
    if out.exists():
        say(f"removing {out} left by an earlier attempt")
        shutil.rmtree(out)
    return out


def image_step(task: StepTask) -> dict:
    """Remake the images with the run's image options into ``<member>/run-image/`` (anew on a retry)."""
    with _logged(task) as say:
        member = member_dir(task)
        out = _fresh(member / IMAGE_OUT, say)
        plan = plan_member_images(member, task.image)
        result = imaging.run(plan, out=out, workers=1,
                             on_done=lambda name, error: say(f"{'FAILED' if error else 'made'} {name}"
                                                             + (f": {error}" if error else "")))
        logs = sorted(str(p) for p in (out / "logs").glob("*.log"))
        if result.failures:
            name, error = next(iter(result.failures.items()))
            raise CasaError(f"{len(result.failures)} images failed, first {name}: {error}",
                            f"see the CASA logs in {out / 'logs'}")
        fits = sorted(p.name for p in out.glob("*.fits"))
        say(f"{len(fits)} FITS images in {out}; CASA logs {', '.join(logs)}")
        return {"out": str(out), "fits": fits, "casa_logs": logs}


def recalibrate_step(task: StepTask) -> dict:
    """Redo the delivery's calibration with the run's recalibrate options (in the working copies)."""
    with _logged(task) as say:
        def event(e) -> None:
            if e.kind == "restored":
                say(f"{e.eb} step {e.step}: flags restored to {e.flag_version}")
            elif e.kind == "start":
                say(f"{e.eb} step {e.step} {e.title} ...")
            else:
                say(f"{e.eb} step {e.step} done in {e.seconds:.1f} s")

        r = recalibrate_member(member_dir(task), task.recalibrate, on_event=event)
        ebs = [{"eb": e.eb, "workdir": str(e.workdir), "steps": [t.step for t in e.steps],
                "calibrated": str(e.calibrated) if e.calibrated else None,
                "flags_equal": e.comparison.flags_equal,
                "max_relative_difference": e.comparison.max_relative_difference} for e in r.ebs]
        say(f"recalibrated {len(ebs)} EB(s) in {r.casa_ran}")
        return {"ebs": ebs, "concatenated": str(r.concatenated) if r.concatenated else None}


def selfcal_step(task: StepTask) -> dict:
    """Self-calibrate with the run's selfcal options into ``<member>/run-selfcal/`` (anew on a retry)."""
    with _logged(task) as say:
        member = member_dir(task)
        out = _fresh(member / SELFCAL_OUT, say)
        r = selfcal_member(member, task.selfcal, out=out, on_round=lambda x: say(
            f"round {x.index} {x.mode + ':' + x.solint if x.mode else '(before)'}: DR {x.dynamic_range:.1f}, "
            f"rms {x.rms:.3g} Jy/beam -> {'kept' if x.kept else 'rejected'}"))
        say(f"continuum {r.continuum.name}: DR {r.final.peak / r.final.rms:.1f}"
            + (f", {r.gain_over_delivered:.2f}x the delivered image's" if r.gain_over_delivered else ""))
        return {"out": str(r.out), "continuum": str(r.continuum), "record": str(r.out / "selfcal_record.json"),
                "gain_over_delivered": r.gain_over_delivered, "kept": [x.kept for x in r.rounds],
                "cubes": [str(c[0]) for c in r.cubes]}


STEP_FUNCTIONS: dict[Step, Callable[[StepTask], dict]] = {
    Step.DOWNLOAD: download_step, Step.VALIDATE: validate_step, Step.RESTORE: restore_step,
    Step.RECALIBRATE: recalibrate_step, Step.IMAGE: image_step, Step.SELFCAL: selfcal_step,
}


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def execute_step(task: StepTask) -> StepOutcome:
    """Run one step for one MOUS (on a worker); every failure becomes an outcome, not an exception."""
    worker = _worker_name()
    StepJournal(Path(task.dest)).start(task.mous, task.step, worker)
    where = {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker}
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")
    if job:                                # the batch job the worker runs in
        where["batch_job"] = job
    start = time.monotonic()
    try:
        output = STEP_FUNCTIONS[task.step](task)
        return task.outcome(True, seconds=time.monotonic() - start, log=str(step_log(task)),
                           output={**output, **where})
    except Exception as exc:  # the failure report names the step's log
        log_failure(task, exc)
        return task.outcome(False, seconds=time.monotonic() - start, log=str(step_log(task)),
                           error=str(exc), output=where)
