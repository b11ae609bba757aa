"""Many MOUS, several steps each, on Dask (local, SLURM, PBS, HTCondor, a scheduler address) or,
without dask, on a local process pool with the same journal.

One task per MOUS per step. The driver submits the next step of a MOUS when the previous one
finished, so both backends share one loop. Downloads take a lease from a per-archive-host
semaphore shared by every worker (a named ``distributed.Semaphore`` on Dask, a manager semaphore
on the pool), so the host's connection limit holds across the whole run.
"""
from __future__ import annotations

import importlib.util
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as pool_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .journal import StepJournal, StepOutcome

STEPS = ("download", "validate", "restore", "image")
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "htcondor": "HTCondorCluster"}


@dataclass(frozen=True)
class StepTask:
    project: str
    mous: str
    step: str
    dest: str
    archive: str | None
    connections_per_host: int


@dataclass
class RunConfig:
    dest: Path
    steps: tuple[str, ...] = STEPS
    cluster: str = "local"            # local | slurm | pbs | htcondor | tcp://HOST:8786
    workers: int = 2
    archive: str | None = None
    connections_per_host: int = 5
    retries: int = 1                  # extra tries of a step that raised (a lost worker is rescheduled by Dask)

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise UsageError(f"unknown step {unknown[0]!r}", f"steps are {', '.join(STEPS)}")
        self.steps = tuple(s for s in STEPS if s in self.steps)   # always in data-flow order
        if not (self.cluster in ("local", *JOBQUEUE) or self.cluster.startswith("tcp://")):
            raise UsageError(f"unknown cluster {self.cluster!r}",
                             "use local, slurm, pbs, htcondor or tcp://HOST:8786")


@dataclass
class RunResult:
    outcomes: list[StepOutcome] = field(default_factory=list)
    backend: str = ""

    @property
    def failed(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if not o.ok]


def have_dask() -> bool:
    return importlib.util.find_spec("distributed") is not None


def execute_step(task: StepTask) -> StepOutcome:
    """Run one step for one MOUS (on a worker); every failure becomes an outcome, not an exception."""
    from . import steps

    start = time.monotonic()
    try:
        output, log = steps.STEP_FUNCTIONS[task.step](task)
        return StepOutcome(task.project, task.mous, task.step, True, seconds=time.monotonic() - start,
                           log=log, output=output)
    except Exception as exc:  # the failure report names the step's log
        return StepOutcome(task.project, task.mous, task.step, False, seconds=time.monotonic() - start,
                           log=getattr(exc, "log", None) or steps.step_log(task), error=str(exc))


class _DaskBackend:
    name = "dask"

    def __init__(self, config: RunConfig):
        from distributed import Client, LocalCluster

        self.cluster = None
        if config.cluster == "local":
            self.cluster = LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
        elif config.cluster in JOBQUEUE:
            if importlib.util.find_spec("dask_jobqueue") is None:
                raise UsageError(f"--cluster {config.cluster} needs dask-jobqueue",
                                 "pip install 'almadeliver[dask]'")
            import dask_jobqueue

            self.cluster = getattr(dask_jobqueue, JOBQUEUE[config.cluster])()  # queue, cores, memory from dask config
            self.cluster.scale(jobs=config.workers)
        self.client = Client(self.cluster or config.cluster)
        self.retries = config.retries
        self.name = f"dask ({config.cluster}, {config.workers} workers)"

    def submit(self, task: StepTask):
        return self.client.submit(execute_step, task, pure=False, retries=self.retries,
                                  key=f"{task.step}-{task.mous}-{time.monotonic_ns()}")

    def wait_first(self, pending: set) -> set:
        from distributed import wait

        return set(wait(list(pending), return_when="FIRST_COMPLETED").done)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class _PoolBackend:
    def __init__(self, config: RunConfig):
        self.workers = config.workers
        self.pool = ProcessPoolExecutor(max_workers=config.workers)
        self.name = f"process pool ({config.workers} processes, no dask)"

    def submit(self, task: StepTask):
        fut = self.pool.submit(execute_step, task)
        fut.task = task
        return fut

    def wait_first(self, pending: set) -> set:
        return set(pool_wait(pending, return_when=FIRST_COMPLETED).done)

    def resubmit_after_crash(self, pending: set) -> set:
        """A worker process died: start a new pool and resubmit what did not finish."""
        self.pool.shutdown(cancel_futures=True)
        self.pool = ProcessPoolExecutor(max_workers=self.workers)
        return {self.submit(f.task) for f in pending}

    def close(self) -> None:
        self.pool.shutdown()


def _backend(config: RunConfig):
    if have_dask():
        return _DaskBackend(config)
    if config.cluster != "local":
        raise UsageError(f"--cluster {config.cluster} needs dask", "pip install 'almadeliver[dask]'")
    return _PoolBackend(config)


def run(config: RunConfig, mous: list[tuple[str, str]],
        on_outcome: Callable[[StepOutcome], None] | None = None) -> RunResult:
    """Run ``config.steps`` for every (project, MOUS uid); steps already journalled are skipped."""
    journal = StepJournal(config.dest)
    result = RunResult()
    queues = {m: [StepTask(p, m, s, str(config.dest), config.archive, config.connections_per_host)
                  for s in config.steps] for p, m in mous}

    def finish(outcome: StepOutcome) -> None:
        result.outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    def next_task(m: str) -> StepTask | None:
        while queues[m]:
            task = queues[m].pop(0)
            if not journal.is_done(task.mous, task.step):
                return task
            finish(StepOutcome(task.project, task.mous, task.step, True, skipped=True,
                               output={"reason": "done in an earlier run"}))
        return None

    backend = _backend(config)
    result.backend = backend.name
    try:
        pending = {backend.submit(t) for t in (next_task(m) for m in queues) if t}
        while pending:
            try:
                done = backend.wait_first(pending)
                outcomes = [f.result() for f in done]
            except BrokenProcessPool:
                pending = backend.resubmit_after_crash(pending)
                continue
            pending -= done
            for outcome in outcomes:
                journal.record(outcome)
                finish(outcome)
                if outcome.ok:
                    follow = next_task(outcome.mous)
                    if follow:
                        pending.add(backend.submit(follow))
                else:
                    for task in queues.pop(outcome.mous, []):
                        finish(StepOutcome(task.project, task.mous, task.step, False, skipped=True,
                                           error=f"not run: {outcome.step} failed"))
                    queues[outcome.mous] = []
    finally:
        backend.close()
    return result
