"""The batch jobs of ``almadeliver run --cluster slurm|pbs|htcondor``: the dask-jobqueue section that
describes them (written from what a user knows: partition, account, memory, walltime), and the one
line that says why the batch system refused them.

One job is one Dask worker that runs one task (one step of one MOUS) at a time: CASA's restore and
image run in a child process of that worker, on the job's cores. dask-jobqueue reads the section
from ``jobqueue.<cluster>`` in the Dask configuration (``~/.config/dask/jobqueue.yaml``, or the
folder named by ``DASK_CONFIG``).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BatchSubmitError, UsageError
from ..files import write_atomic

#: The batch systems ``--cluster`` takes, and the dask-jobqueue cluster class of each.
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "htcondor": "HTCondorCluster"}

SUBMIT_COMMAND = {"slurm": "sbatch", "pbs": "qsub", "htcondor": "condor_submit"}
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?$")     # [D-]HH:MM[:SS]
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.IGNORECASE)


@dataclass(frozen=True)
class JobSpec:
    """What one worker job asks of the batch system.

    Parameters
    ----------
    queue : str or None
        The partition (SLURM ``-p``) or queue (PBS ``-q``); None: the site's default.
    account : str or None
        The account (project) charged (``-A``); None: the user's default.
    memory : str
        Memory per task, e.g. ``8GB`` (a restore of a large MOUS needs more).
    walltime : str
        Time limit of each job, ``HH:MM:SS`` or ``D-HH:MM:SS``. The worker leaves before it (at 90%)
        and ``run`` submits a new job, so a long run outlives its jobs.
    cores : int
        Cores per task: CASA in the task may use them (``OMP_NUM_THREADS``); a worker still runs
        one task at a time.
    local_directory : str or None
        The worker's scratch folder on the node (e.g. ``$TMPDIR``, expanded in the job).
    log_directory : str or None
        Where each job's stdout/stderr goes; None: the batch system's default.
    prologue : list of str
        Shell lines run before the worker starts (``module load ...``); ``SLURM_CONF`` is exported
        there too when it is set (a cluster with a non-default configuration file).
    """

    queue: str | None = None
    account: str | None = None
    memory: str = "4GB"
    walltime: str = "04:00:00"
    cores: int = 1
    local_directory: str | None = None
    log_directory: str | None = None
    prologue: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _MEMORY.match(self.memory.strip()):
            raise UsageError(f"--memory {self.memory!r} is not a memory size", "give it as 8GB or 500MB")
        if walltime_seconds(self.walltime) <= 0:
            raise UsageError(f"--walltime {self.walltime!r} is not a time limit", "give it as HH:MM:SS, e.g. 04:00:00")
        if self.cores < 1:
            raise UsageError(f"--cores {self.cores} must be 1 or more", "give the cores per task, e.g. 1")


def walltime_seconds(text: str) -> int:
    """``[D-]HH:MM[:SS]`` in seconds; 0 when it is not such a time."""
    m = _WALLTIME.match(text.strip())
    if not m:
        return 0
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def jobqueue_section(cluster: str, spec: JobSpec) -> dict:
    """The ``jobqueue.<cluster>`` section of the Dask configuration for ``spec``.

    Parameters
    ----------
    cluster : str
        ``slurm``, ``pbs`` or ``htcondor``.
    spec : JobSpec
        What a job asks for.

    Returns
    -------
    dict
        dask-jobqueue's keys (``queue``, ``account``, ``cores``, ``processes``, ``memory``, ...).

    Raises
    ------
    UsageError
        When ``cluster`` is not a batch system.
    """
    if cluster not in SUBMIT_COMMAND:
        raise UsageError(f"--write-config needs a batch system, not --cluster {cluster}",
                         "use --cluster slurm, pbs or htcondor")
    lifetime = walltime_seconds(spec.walltime) * 9 // 10      # leave before the job is killed
    stagger = max(lifetime // 50, 1)
    prologue = list(spec.prologue)
    if spec.cores > 1:
        prologue.append(f"export OMP_NUM_THREADS={spec.cores}")
    if cluster == "slurm" and os.environ.get("SLURM_CONF"):
        prologue.append(f"export SLURM_CONF={os.environ['SLURM_CONF']}")
    section: dict = {"name": "almadeliver"}
    if cluster != "htcondor":                      # HTCondor has no queue, account or walltime
        section.update(queue=spec.queue, account=spec.account, walltime=spec.walltime)
    section.update(cores=spec.cores, processes=1, memory=spec.memory.replace(" ", ""))
    if cluster == "htcondor":
        section["disk"] = "10GB"                   # HTCondor needs a scratch request per job
    section.update({
        "python": sys.executable,                  # the same environment (almadeliver, CASA) on the nodes
        "local-directory": spec.local_directory,
        "log-directory": spec.log_directory,
        "job-script-prologue": prologue,
        # leave (and be replaced) before the walltime; one task at a time whatever the cores
        "worker-extra-args": ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s",
                              *(["--nthreads", "1"] if spec.cores > 1 else [])],
    })
    return {k: v for k, v in section.items() if v is not None}


def config_path() -> Path:
    """The ``jobqueue.yaml`` dask reads: in ``DASK_CONFIG`` when set, else ``~/.config/dask``."""
    import dask.config

    return Path(dask.config.PATH) / "jobqueue.yaml"


def write_jobqueue_config(cluster: str, spec: JobSpec, path: Path | None = None) -> tuple[Path, dict]:
    """Write (or replace) the ``jobqueue.<cluster>`` section of ``jobqueue.yaml``; other sections stay.

    Parameters
    ----------
    cluster : str
        ``slurm``, ``pbs`` or ``htcondor``.
    spec : JobSpec
        What each worker job asks for.
    path : Path, optional
        The file; default: :func:`config_path`.

    Returns
    -------
    (Path, dict)
        The file written and the section in it.

    Raises
    ------
    UsageError
        When the existing file is not a YAML mapping (it is left as it is).
    """
    import yaml

    path = Path(path) if path else config_path()
    section = jobqueue_section(cluster, spec)
    data: dict = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})",
                             "fix or move it, then write the configuration again") from None
        if not isinstance(data, dict) or not isinstance(data.get("jobqueue", {}), dict):
            raise UsageError(f"{path} is not a dask configuration (a YAML mapping)",
                             "fix or move it, then write the configuration again")
    data.setdefault("jobqueue", {})[cluster] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    return path, section


def job_script(cluster: str) -> str:
    """The job script dask-jobqueue submits for ``cluster``, from the current Dask configuration
    (the scheduler address is a placeholder)."""
    import dask_jobqueue

    job_cls = getattr(dask_jobqueue, JOBQUEUE[cluster]).job_cls
    return job_cls(scheduler="tcp://SCHEDULER:8786", name="almadeliver-worker").job_script()


def submit_refused(cluster: str, exc: BaseException) -> BatchSubmitError:
    """The one-line error for a worker job the batch system did not take.

    Parameters
    ----------
    cluster : str
        ``slurm``, ``pbs`` or ``htcondor``.
    exc : BaseException
        What dask-jobqueue raised: ``RuntimeError`` carrying the submit command's stderr (a partition
        that does not exist, a memory or time limit above the partition's), or ``FileNotFoundError``
        when the submit command is not installed here.

    Returns
    -------
    BatchSubmitError
        The error to raise.
    """
    command = SUBMIT_COMMAND[cluster]
    if isinstance(exc, FileNotFoundError):
        return BatchSubmitError(f"--cluster {cluster}: {command} is not installed here",
                                "run almadeliver on a login node of the cluster")
    text = str(exc)
    stderr = text.split("stderr:", 1)[1] if "stderr:" in text else text
    lines = [re.sub(rf"^{re.escape(command)}:\s*(error:\s*)?", "", line.strip()) for line in stderr.splitlines()]
    reason = "; ".join(dict.fromkeys(line for line in lines if line)) or text.strip().splitlines()[0]
    return BatchSubmitError(f"--cluster {cluster}: {command} refused the worker job: {reason}",
                            f"check queue, account, memory and walltime in {config_path()} "
                            f"(almadeliver run --cluster {cluster} --write-config --help)")
