"""Many MOUS, several steps each, on Dask (local, SLURM, PBS, HTCondor, a scheduler address) or,
without dask, on a local process pool with the same journal.

One task per MOUS per step. The driver submits the next step of a MOUS when the previous one
finished, so both backends share one loop. Downloads take a lease from a per-archive-host
semaphore shared by every worker (a named ``distributed.Semaphore`` on Dask, a manager semaphore
on the pool), so the host's connection limit holds across the whole run.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as pool_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..ids import ProjectCode, Uid
from ..workflow import RUN_WHAT, FetchOptions, ImageOptions, RecalibrateOptions, RestoreOptions, SelfcalOptions
from .gates import DaskGate, GateManager, PoolGate
from .jobqueue import JOBQUEUE, config_path, submit_refused
from .journal import StepJournal, StepOutcome
from .steps import DEFAULT_STEPS, STEPS, Step, StepTask, execute_step, step_log

CRASHES_ALLOWED = 3       # a task whose process pool broke this often fails (Dask's allowed-failures)
TEND_SECONDS = 5          # how often the driver looks for lost batch jobs to replace
SUBMIT_FAILURES_ALLOWED = 3   # replacement jobs refused this many times in a row end the run

log = logging.getLogger("almadeliver.scale")


@dataclass
class RunConfig:
    """What ``almadeliver run`` does and where.

    Attributes
    ----------
    dest : Path
        The root of the delivery trees and of the run journal (made absolute).
    steps : tuple of str
        Which of ``STEPS`` to run (put in data-flow order).
    cluster : str
        local, slurm, pbs, htcondor or ``tcp://HOST:8786``.
    workers : int
        Worker processes (local) or batch jobs.
    archive : str or None
        ``--archive``; ``fetch.archive`` follows it.
    connections_per_host : int
        Connections per archive host across the whole run (the archive's own download script
        runs 5 at a time); ``fetch.parallel`` follows it.
    dask : bool or None
        None: Dask when installed; False: the process pool.
    casa_version_mismatch : str
        refuse | allow (the calibration scripts' version gates); ``restore`` follows it.
    fetch, restore, image : FetchOptions, RestoreOptions, ImageOptions
        The options of ``download``, ``restore`` and ``image`` for every MOUS.
    recalibrate, selfcal : RecalibrateOptions, SelfcalOptions
        The options of ``recalibrate`` and ``image --selfcal`` (used when ``steps`` names them).
    """

    dest: Path
    steps: tuple[str, ...] = DEFAULT_STEPS
    cluster: str = "local"
    workers: int = 2
    archive: str | None = None
    connections_per_host: int = 5
    dask: bool | None = None
    casa_version_mismatch: str = "refuse"
    fetch: FetchOptions = field(default_factory=lambda: FetchOptions(what=RUN_WHAT))
    restore: RestoreOptions = field(default_factory=RestoreOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    recalibrate: RecalibrateOptions = field(default_factory=RecalibrateOptions)
    selfcal: SelfcalOptions = field(default_factory=SelfcalOptions)

    def __post_init__(self) -> None:
        self.fetch = replace(self.fetch, archive=self.archive, parallel=self.connections_per_host)
        self.restore = replace(self.restore, casa_version_mismatch=self.casa_version_mismatch)
        self.recalibrate = replace(self.recalibrate, casa_version_mismatch=self.casa_version_mismatch)
        self.dest = Path(self.dest).resolve()      # the workers may start elsewhere (batch jobs)
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise UsageError(f"unknown step {unknown[0]!r}", f"steps are {', '.join(STEPS)}")
        self.steps = tuple(s for s in STEPS if s in self.steps)   # always in data-flow order
        if not self.steps:
            raise UsageError("no step to run", f"give --steps, e.g. {','.join(STEPS)}")
        if not (self.cluster in ("local", *JOBQUEUE) or self.cluster.startswith("tcp://")):
            raise UsageError(f"unknown cluster {self.cluster!r}",
                             "use local, slurm, pbs, htcondor or tcp://HOST:8786")


@dataclass
class RunResult:
    """What a run did: one outcome per MOUS and step, and the backend it ran on."""
    outcomes: list[StepOutcome] = field(default_factory=list)
    backend: str = ""

    @property
    def failed(self) -> list[StepOutcome]:
        """The outcomes that did not succeed (failed, or not run after a failure)."""
        return [o for o in self.outcomes if not o.ok]


def have_dask() -> bool:
    """True when ``distributed`` (Dask) is installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def parse_projects(text: str) -> list[str]:
    """``--projects``: comma-separated codes, or a file with one code per line (# comments)."""
    path = Path(text)
    if path.is_file():
        words = [w for line in path.read_text().splitlines() for w in line.split("#")[0].replace(",", " ").split()]
        if not words:
            raise UsageError(f"{path} lists no project code", "write one code per line, e.g. 2013.1.00308.S")
    else:
        words = [w.strip() for w in text.split(",") if w.strip()]
        if not words:
            raise UsageError("--projects is empty", "give codes such as 2013.1.00308.S,2017.1.01185.S or a FILE")
    return list(dict.fromkeys(str(ProjectCode.parse(w)) for w in words))


class _DaskBackend:
    name = "dask"

    def __init__(self, config: RunConfig):
        from distributed import Client, LocalCluster

        self.cluster = None
        self.kind, self.submit_failures = config.cluster, 0
        if config.cluster == "local":
            self.cluster = LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
        elif config.cluster in JOBQUEUE:
            if importlib.util.find_spec("dask_jobqueue") is None:
                raise UsageError(f"--cluster {config.cluster} needs dask-jobqueue",
                                 "pip install 'almadeliver[dask]'")
            import dask.config
            import dask_jobqueue

            # the scheduler's HTTP server on a free port unless the configuration names one
            # (two runs on one login node would fight for :8787)
            options = {"dashboard_address": ":0",
                       **(dask.config.get(f"jobqueue.{config.cluster}.scheduler-options", None) or {})}
            try:   # queue, cores, memory, ... from the dask config (~/.config/dask/jobqueue.yaml)
                self.cluster = getattr(dask_jobqueue, JOBQUEUE[config.cluster])(scheduler_options=options)
            except ValueError as exc:
                raise UsageError(f"--cluster {config.cluster}: {exc}".splitlines()[0],
                                 f"describe the jobs under jobqueue.{config.cluster} in {config_path()} "
                                 f"(almadeliver run --cluster {config.cluster} --write-config)") from None
            # SpecCluster.scale would submit in the background, where a refusal is only logged and the
            # run waits for workers forever: describe the jobs here and submit them in _submit_jobs
            while len(self.cluster.worker_spec) < config.workers:
                self.cluster.worker_spec.update(self.cluster.new_worker_spec())
            try:
                self._submit_jobs()        # now, so that a refused job is one clear error, not a hang
            except BaseException:
                self.cluster.close()
                raise
        self.client = Client(self.cluster or config.cluster)
        self.gate = DaskGate(config.connections_per_host)
        self.name = f"dask ({config.cluster}, {config.workers} workers)"

    def _submit_jobs(self) -> None:
        """Submit the batch jobs the cluster is short of (all at the start; later, one for each job
        that ended: cancelled, killed by its walltime, its node lost)."""
        try:
            self.cluster.sync(self.cluster._correct_state)
        except (RuntimeError, FileNotFoundError) as exc:   # dask-jobqueue: the submit command failed
            from distributed.core import Status

            for name, job in list(self.cluster.workers.items()):
                if getattr(job, "job_id", None) is None:   # never submitted: submit it again next time
                    job.status = Status.failed             # (and the cluster closes without waiting for it)
                    del self.cluster.workers[name]
            raise submit_refused(self.kind, exc) from None

    def tend(self) -> None:
        """Replace lost batch jobs; a refusal ends the run only when it keeps happening."""
        if self.kind not in JOBQUEUE:
            return
        try:
            self._submit_jobs()
            self.submit_failures = 0
        except UsageError as exc:
            self.submit_failures += 1
            if self.submit_failures >= SUBMIT_FAILURES_ALLOWED:
                raise
            log.warning("a replacement worker job was not submitted (%s); trying again", exc.message)

    def submit(self, task: StepTask):
        """One task; a worker lost while running it is replaced and the task rescheduled by Dask."""
        return self.client.submit(execute_step, replace(task, gate=self.gate), pure=False,
                                  key=f"{task.step}-{task.mous.disk}-{time.monotonic_ns()}")

    def wait_first(self, pending: set) -> set:
        from distributed import wait

        try:
            return set(wait(list(pending), timeout=TEND_SECONDS, return_when="FIRST_COMPLETED").done)
        except TimeoutError:
            return set()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class _PoolBackend:
    """A local process pool; the connection gate's semaphores live in a manager process."""

    def __init__(self, config: RunConfig):
        self.workers, self.connections = config.workers, config.connections_per_host
        self._start()
        self.name = f"process pool ({config.workers} processes, no dask)"

    def _start(self) -> None:
        self.manager = GateManager()
        self.manager.start()
        self.gate = PoolGate(self.manager.address, self.connections)
        self.pool = ProcessPoolExecutor(max_workers=self.workers)

    def submit(self, task: StepTask):
        return self.pool.submit(execute_step, replace(task, gate=self.gate))

    def wait_first(self, pending: set) -> set:
        return set(pool_wait(pending, return_when=FIRST_COMPLETED).done)

    def tend(self) -> None:
        """Nothing to replace: the pool's processes are restarted when it breaks."""

    def restart(self) -> None:
        """A worker process died and broke the pool: a new pool, and new semaphores (a dead
        process may have held leases it will never give back)."""
        self.close()
        self._start()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.manager.shutdown()


def _backend(config: RunConfig):
    """The backend's class (not started yet): Dask when installed, else the process pool."""
    if config.dask is not False and have_dask():
        return _DaskBackend
    if config.dask:
        raise UsageError("dask is not installed", "pip install 'almadeliver[dask]'")
    if config.cluster != "local":
        raise UsageError(f"--cluster {config.cluster} needs dask", "pip install 'almadeliver[dask]'")
    return _PoolBackend


def run(config: RunConfig, mous: list[tuple[ProjectCode | str, Uid | str]],
        on_outcome: Callable[[StepOutcome], None] | None = None) -> RunResult:
    """Run ``config.steps`` for every (project, MOUS uid); steps already journalled are skipped.

    One task per MOUS and step; the next step of a MOUS is submitted when the previous one
    succeeded. A failed step stops its MOUS (its later steps are reported as not run).
    """
    journal = StepJournal(config.dest)
    result = RunResult()
    ids = [(ProjectCode.parse(str(p)), Uid.parse(str(m))) for p, m in mous]
    queues = {str(m): [StepTask(p, m, Step(s), str(config.dest), config.fetch, config.restore, config.image,
                                recalibrate=config.recalibrate, selfcal=config.selfcal,
                                overlap={"download", "restore"} <= set(config.steps) and "validate" not in config.steps)
                       for s in config.steps] for p, m in ids}
    crashes: dict[tuple[Uid, Step], int] = {}

    def finish(outcome: StepOutcome) -> None:
        result.outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    def next_task(m: str) -> StepTask | None:
        while queues[m]:
            task = queues[m].pop(0)
            if not journal.is_done(task.mous, task.step):
                return task
            finish(task.outcome(True, skipped=True, output={"reason": "done in an earlier run"}))
        return None

    def give_up(failed: StepOutcome) -> None:
        """A step failed: the later steps of its MOUS are not run."""
        for task in queues[failed.mous]:
            finish(task.outcome(False, skipped=True, error=f"not run: {failed.step} failed"))
        queues[failed.mous] = []

    def lost(task: StepTask, why: str) -> StepOutcome:
        return task.outcome(False, log=str(step_log(task)), error=f"the worker running it was lost ({why})")

    backend_class = _backend(config)         # a backend that cannot be had is an error even with nothing to do
    first = [t for t in (next_task(m) for m in queues) if t]
    if not first:                            # all done before: no cluster (and no batch job) needed
        result.backend = "no workers (all done before)"
        return result
    backend = backend_class(config)
    result.backend = backend.name
    pending: dict = {}                       # future -> task
    try:
        for task in first:
            pending[backend.submit(task)] = task
        while pending:
            broken: list[StepTask] = []
            backend.tend()
            for fut in backend.wait_first(set(pending)):
                task = pending.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    broken.append(task)
                    continue
                except Exception as exc:  # Dask: KilledWorker after too many lost workers, a lost scheduler
                    outcome = lost(task, f"{type(exc).__name__}: {exc}")
                journal.record(outcome)
                finish(outcome)
                if not outcome.ok:
                    give_up(outcome)
                elif follow := next_task(outcome.mous):
                    pending[backend.submit(follow)] = follow
            if broken:                        # the pool is gone: resubmit everything it held
                again = broken + list(pending.values())
                pending.clear()
                backend.restart()
                for task in again:
                    key = (task.mous, task.step)
                    crashes[key] = crashes.get(key, 0) + 1
                    if crashes[key] < CRASHES_ALLOWED:
                        pending[backend.submit(task)] = task
                        continue
                    outcome = lost(task, f"its process died {crashes[key]} times")
                    journal.record(outcome)
                    finish(outcome)
                    give_up(outcome)
    finally:
        backend.close()
    return result
