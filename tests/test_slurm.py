"""almadeliver run --cluster slurm on a real SLURM cluster (single node, started by the session fixture).

The workers are sbatch jobs written from ``run --cluster slurm --write-config``; the archive is the
local one. Two MOUS go through download, validate, restore and image (real CASA) while one worker job
is cancelled with ``scancel`` in the middle of a restore: a new job replaces it and the restore runs
again. A rerun redoes nothing; a partition that does not exist is one clear line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from almadeliver.cli import main
from almadeliver.errors import UsageError
from almadeliver.scale.jobqueue import JobSpec, jobqueue_section, write_jobqueue_config
from almadeliver.scale.journal import StepJournal
from almadeliver.scale.steps import IMAGE_OUT, find_mous
from almadeliver.sim.archive import LocalArchive

from processes import act_when_running
from slurm_cluster import PARTITION, SlurmCluster

# Two projects of one MOUS each, simulated for other tests already (the cache is shared):
# test_restore_casa's 1-EB project and the demo's 2-EB project.
CODES = ("2019.1.00011.S", "2017.1.00123.S")
ALMADELIVER = [sys.executable, "-m", "almadeliver"]


@pytest.fixture(scope="session")
def slurm():
    """A single-node SLURM cluster (munged, slurmctld, slurmd) in a temporary folder; SLURM_CONF set."""
    cluster = SlurmCluster(cpus=2)
    if os.geteuid() != 0:
        pytest.fail("the SLURM tests start slurmctld and slurmd as root: run them as root (as `make test` in CI)")
    if missing := cluster.missing():
        pytest.fail(f"SLURM is not installed ({', '.join(missing)} missing): run `bash scripts/system-deps.sh` as root")
    cluster.start()
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        cluster.stop()


@pytest.fixture(scope="module")
def archive(simulated, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-archive")
    (root / CODES[0]).symlink_to(simulated(CODES[0]))
    (root / CODES[1]).symlink_to(simulated(CODES[1], ebs=2))
    with LocalArchive(root) as a:
        yield a


def _almadeliver(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*ALMADELIVER, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _env(slurm: SlurmCluster, dask_config: Path) -> dict:
    """The user's shell: SLURM_CONF, a dask configuration folder of its own; a lost worker is
    forgotten after 1 s (dask's default: 15 s) so that its replacement is submitted sooner."""
    return {**slurm.env, "DASK_CONFIG": str(dask_config), "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "1s"}


def _mtimes(dest: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for p in dest.rglob("*")}


def _scancel_when_running(slurm: SlurmCluster, dest: Path, step: str):
    """Watch the run journal; when ``step`` runs CASA (the worker has a child), ``scancel`` the batch
    job of that worker. Yields a dict that receives ``mous``, ``job`` and ``pid``."""
    def scancel(proc) -> dict:
        job = proc.environ()["SLURM_JOB_ID"]
        slurm.command("scancel", job)
        return {"job": job}
    return act_when_running(dest, step, scancel, wait_for_child=True)


# -- the jobqueue section from what a user knows -----------------------------------------------------
def test_write_config_keeps_other_sections_and_checks_its_options(tmp_path, monkeypatch):
    path = tmp_path / "jobqueue.yaml"
    path.write_text("jobqueue:\n  pbs:\n    queue: workq\n  slurm:\n    queue: old\n")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm-test/slurm.conf")
    spec = JobSpec(queue="normal", account="alma", memory="8GB", walltime="1-00:00:00", cores=4,
                   local_directory="$TMPDIR", prologue=["module load gcc"])
    written, section = write_jobqueue_config("slurm", spec, path)
    data = yaml.safe_load(path.read_text())
    assert written == path and data["jobqueue"]["pbs"] == {"queue": "workq"}
    assert data["jobqueue"]["slurm"] == section
    assert section["queue"] == "normal" and section["account"] == "alma" and section["walltime"] == "1-00:00:00"
    assert section["cores"] == 4 and section["processes"] == 1 and section["memory"] == "8GB"
    assert section["python"] == sys.executable and section["local-directory"] == "$TMPDIR"
    assert section["job-script-prologue"] == ["module load gcc", "export OMP_NUM_THREADS=4",
                                              "export SLURM_CONF=/etc/slurm-test/slurm.conf"]
    extra = section["worker-extra-args"]
    assert extra[extra.index("--lifetime") + 1] == f"{86400 * 9 // 10}s"     # leaves at 90% of the walltime
    assert extra[-2:] == ["--nthreads", "1"]                                   # one task at a time

    htcondor = jobqueue_section("htcondor", JobSpec())
    assert "queue" not in htcondor and "walltime" not in htcondor and htcondor["disk"]
    for bad, match in (({"memory": "8"}, "not a memory size"), ({"walltime": "4h"}, "not a time limit"),
                       ({"cores": 0}, "1 or more")):
        with pytest.raises(UsageError, match=match):
            JobSpec(**bad)
    with pytest.raises(UsageError, match="needs a batch system"):
        jobqueue_section("local", JobSpec())
    path.write_text("- a list\n")
    with pytest.raises(UsageError, match="not a dask configuration"):
        write_jobqueue_config("slurm", spec, path)


# -- the done-criteria: a real SLURM cluster ---------------------------------------------------------
@pytest.mark.slow
def test_run_on_slurm_survives_a_cancelled_job_and_reruns_nothing(slurm, archive, tmp_path):
    dest, jobs_dir = tmp_path / "dest", tmp_path / "jobs"
    env = _env(slurm, tmp_path / "dask")
    made = _almadeliver(["run", "--cluster", "slurm", "--write-config", "--partition", PARTITION, "--memory", "1GB",
                         "--walltime", "00:30:00", "--local-directory", str(tmp_path / "scratch"),
                         "--log-directory", str(jobs_dir)], env)
    assert made.returncode == 0, made.stderr
    assert f"wrote jobqueue.slurm to {tmp_path / 'dask' / 'jobqueue.yaml'}" in made.stdout
    assert f"#SBATCH -p {PARTITION}" in made.stdout and f"export SLURM_CONF={slurm.conf}" in made.stdout

    mous = find_mous(list(CODES), archive.url)
    assert len(mous) == 2
    args = ["run", "--projects", ",".join(CODES), "--dest", str(dest), "--archive", archive.url,
            "--cluster", "slurm", "--workers", "2",
            "--casa-version-mismatch", "allow"]   # the simulated manual delivery was made with CASA 6.5.4
    started = time.monotonic()
    with _scancel_when_running(slurm, dest, "restore") as cancelled:
        first = _almadeliver(args, env)
    print(f"\nrun of 2 MOUS on 2 SLURM jobs (one cancelled): {time.monotonic() - started:.1f} s")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 MOUS, 8 tasks on dask (slurm, 2 workers): 8 ran, 0 done before, 0 failed" in first.stdout

    # every task ran in a batch job of this cluster; the cancelled one was replaced
    jobs = {j["JobId"]: j for j in slurm.jobs() if j["JobName"] == "almadeliver"}
    assert cancelled, "no restore was caught running"
    assert jobs[cancelled["job"]]["JobState"] == "CANCELLED"
    assert len(jobs) >= 3, f"no job replaced the cancelled one: {sorted(jobs)}"
    journal = StepJournal(dest)
    for _, uid in mous:
        for step in ("download", "validate", "restore", "image"):
            outcome = journal.load(uid, step)
            assert outcome.ok and outcome.output["batch_job"] in jobs, (uid, step, outcome.output)
    again = journal.load(cancelled["mous"], "restore")
    assert again.output["batch_job"] != cancelled["job"] and again.output["pid"] != cancelled["pid"]
    assert Path(again.log).read_text().count("== restore of") == 2, "the cancelled restore ran again"
    assert len(list(jobs_dir.glob("almadeliver-*.err"))) == len(jobs), "one log per job in --log-directory"

    for project, uid in mous:
        [member] = dest.glob(f"{project}/science_goal.*/group.*/member.{uid.disk}")
        for eb in (member / "raw").glob("*.asdm.sdm"):
            assert (member / "calibrated" / f"{eb.name[: -len('.asdm.sdm')]}.ms.split.cal" / "table.dat").is_file()
        assert list((member / IMAGE_OUT).glob("*.pbcor.fits")), f"no image of {uid}"

    # the same command again: every step is skipped, nothing is rewritten
    before, submitted = _mtimes(dest), slurm.jobs()
    second = _almadeliver(args, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 ran, 8 done before, 0 failed" in second.stdout
    assert _mtimes(dest) == before
    assert [j["JobId"] for j in slurm.jobs()] == [j["JobId"] for j in submitted], "a rerun with nothing to do submits no job"
    assert not [j for j in submitted if j["JobState"] in ("RUNNING", "PENDING")], "the run leaves no job behind"


def test_a_partition_that_does_not_exist_is_one_clear_line(slurm, archive, tmp_path, capsys):
    import dask

    before = {j["JobId"] for j in slurm.jobs()}
    section = jobqueue_section("slurm", JobSpec(queue="nosuch", memory="1GB", walltime="00:10:00"))
    import dask_jobqueue  # noqa: F401  (its defaults fill what the section leaves out, as with a jobqueue.yaml)

    with dask.config.set({f"jobqueue.slurm.{key}": value for key, value in section.items()}):
        code = main(["run", "--projects", CODES[0], "--steps", "download", "--dest", str(tmp_path / "dest"),
                     "--archive", archive.url, "--cluster", "slurm", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    [line] = err.splitlines()
    assert line.startswith("error: --cluster slurm: sbatch refused the worker job: invalid partition specified: "
                           "nosuch; Batch job submission failed: Invalid partition name specified; check queue"), line
    assert {j["JobId"] for j in slurm.jobs()} == before, "no job was queued"
    assert not (tmp_path / "dest" / CODES[0]).exists()
