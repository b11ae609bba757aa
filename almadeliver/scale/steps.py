"""The four steps of ``almadeliver run``, one MOUS each, done by the library stages.

Each step function takes a ``StepTask`` and returns its output (a JSON-able dict) or raises; its
log is ``DEST/.almadeliver/run/<mous>/<step>.log`` (every attempt appended). Where things go:

- download: the MOUS's files (products, auxiliary, raw) are fetched and unpacked into
  ``DEST/.almadeliver/run/<mous>/download/`` (its own transfer journal, so MOUS downloading at once
  never share one), then its member folder is moved into the standard tree ``DEST/<project>/...``;
- validate: ``validate(member)``; errors fail the step;
- restore: the delivery's scriptForPI in a fresh CASA (``plan_restore(resume=True)``, so a retry
  after a lost worker keeps the EBs already calibrated);
- image: the delivered imaging re-run unchanged into ``<member>/run-image/`` (made anew by a retry).
"""
from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..archive.client import ArchiveClient, make_session
from ..archive.projectview import query
from ..archive.tap import Selection
from ..casa import imaging
from ..casa.restore import plan_restore, restore
from ..delivery.layout import find_members
from ..delivery.report import Severity
from ..delivery.validate import validate
from ..errors import CasaError, TransferError, TreeError
from ..ids import TarballKind, Uid
from ..transfer.download import TransferConfig, download
from ..transfer.plan import make_plan
from .journal import StepJournal
from .run import StepTask

log = logging.getLogger("almadeliver.scale")

KINDS = {TarballKind.PRODUCTS, TarballKind.CYCLE0, TarballKind.AUXILIARY, TarballKind.RAW}
IMAGE_OUT = "run-image"


def step_log(task: StepTask) -> Path:
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


def find_mous(projects: list[str], archive: str | None = None) -> list[tuple[str, str]]:
    """(project, MOUS uid) for every MOUS of the given projects, from the archive's project view."""
    view = query(Selection(projects=list(projects)), ArchiveClient(archive), with_sg=False)
    return [(p.code, m.uid) for p in view.projects for m in p.mous]


def _member_in_dest(task: StepTask) -> Path | None:
    """The MOUS's member folder in the standard tree under DEST, if it is there."""
    disk = Uid.parse(task.mous).disk
    found = sorted(Path(task.dest).glob(f"{task.project}/*/*/member.{disk}"))
    return found[0] if found else None


def member_dir(task: StepTask) -> Path:
    """The member folder the download step left (for the steps after it)."""
    member = _member_in_dest(task)
    if member is None:
        raise TreeError(f"{task.mous} is not under {task.dest}/{task.project}",
                        "run its download step first: almadeliver run --steps download ...")
    return member


# -- the steps ---------------------------------------------------------------------------------------
def download_step(task: StepTask) -> dict:
    with _logged(task) as say:
        member = _member_in_dest(task)
        if member is not None:
            say(f"{member} is already there; nothing to fetch")
            return {"member": str(member), "files": 0, "fetched_bytes": 0}
        client = ArchiveClient(task.archive, session=make_session(task.connections_per_host))
        plan = make_plan(query(Selection(uids=[task.mous]), client, with_sg=False), KINDS)
        if not plan.files:
            raise TransferError(f"the archive lists no file for {task.mous}",
                                "check the MOUS in the archive (query it); its data may be missing")
        staging = StepJournal(Path(task.dest)).folder(task.mous) / "download"
        say(f"fetching {len(plan.files)} files ({plan.total_bytes} bytes) from {plan.archive} into {staging}")
        if task.gate:
            for host in plan.hosts:      # make each host's semaphore in the task's own thread (Dask binds it
                task.gate(host)          # to this worker there; the engine's threads then share it)
        config = TransferConfig(parallel=task.connections_per_host, progress=False, connection_gate=task.gate)
        result = download(plan, staging, config, client.session)
        for f in result.files:
            say(f"{f.status:<8} {f.name}" + (f": {f.error}" if f.error else ""))
        if not result.ok:
            first = result.failed[0].error
            raise TransferError(f"{len(result.failed)} of {len(result.files)} files failed, first: {first}",
                                "run the same command again to resume")
        member = _move_member(staging, task)
        shutil.rmtree(staging)
        say(f"member folder {member}")
        return {"member": str(member), "files": len(result.files), "fetched_bytes": result.fetched_bytes}


def _move_member(staging: Path, task: StepTask) -> Path:
    """Move the MOUS's member folder from the staging area into the tree under DEST."""
    uid = Uid.parse(task.mous)
    mine = [m for m in find_members(staging) if m.mous == uid]
    if len(mine) != 1:
        raise TreeError(f"the files of {task.mous} unpack to {len(mine)} member folders of it in {staging}",
                        "validate the downloaded tree; the archive's tarballs may be incomplete")
    target = Path(task.dest) / mine[0].rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(mine[0].path, target)
    return target


def validate_step(task: StepTask) -> dict:
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
    with _logged(task) as say:
        plan = plan_restore(member_dir(task), resume=True, casa_version_mismatch=task.casa_version_mismatch)
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


def image_step(task: StepTask) -> dict:
    with _logged(task) as say:
        member = member_dir(task)
        out = member / IMAGE_OUT
        if out.exists():                        # left by an attempt that did not finish
            say(f"removing {out} left by an earlier attempt")
            shutil.rmtree(out)
        plan = imaging.plan(member, imaging.Overrides())
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


STEP_FUNCTIONS: dict[str, Callable[[StepTask], dict]] = {
    "download": download_step, "validate": validate_step, "restore": restore_step, "image": image_step,
}
