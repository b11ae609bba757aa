"""almadeliver run: many MOUS on Dask (and on a process pool without it), against the local archive.

The done-criteria: simulated MOUS in 2 projects, a LocalCluster of 2 workers, every step for real
(download, validate, restore with CASA, image with CASA); a worker killed while it restores (its
task is retried on another worker); the connection limit held across workers; a second run redoes
nothing. Both projects are simulated by other test files too (test_restore_casa's 1-EB project, the
demo's 2-EB project of test_sim and test_slurm): this file simulates nothing of its own.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from almadeliver.archive.client import ArchiveClient
from almadeliver.archive.projectview import query
from almadeliver.archive.tap import Selection
from almadeliver.cli import main
from almadeliver.errors import IdentifierError, UsageError
from almadeliver.ids import Uid
from almadeliver.scale.journal import StepJournal
from almadeliver.scale.run import RunConfig, parse_projects, run
from almadeliver.scale.steps import IMAGE_OUT, find_mous
from almadeliver.sim.archive import Faults, LocalArchive
from almadeliver.transfer.download import TransferConfig, download
from almadeliver.transfer.plan import make_plan, parse_what
from processes import act_when_running
from tiny_archive import PROP_MOUS, PROPRIETARY, tiny_root  # noqa: F401  (a proprietary project to fetch)

CODES = ("2019.1.00011.S", "2017.1.00123.S")   # 1 MOUS of 1 EB, 1 MOUS of 2 EBs (cached, shared)
MOUS = {CODES[0]: 1, CODES[1]: 1}
EBS = {CODES[0]: 1, CODES[1]: 2}
SLOW = Faults(throttle=3e6)          # bytes/s per connection: downloads of different MOUS overlap


@pytest.fixture(scope="module")
def archive_root(simulated, tmp_path_factory) -> Path:
    """Two simulated manual projects of one MOUS (1 and 2 EBs), served from one folder."""
    root = tmp_path_factory.mktemp("scale-archive")
    for code in CODES:
        (root / code).symlink_to(simulated(code, mous=MOUS[code], ebs=EBS[code]))
    return root


@pytest.fixture
def archive(archive_root):
    with LocalArchive(archive_root, faults=Faults(**vars(SLOW))) as a:
        yield a


def _mtimes(dest: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for p in dest.rglob("*")}


def _kill_when_running(dest: Path, step: str, wait_for_child: bool):
    """Watch the run journal; SIGKILL the first process that runs ``step`` (and its children, as a
    lost node would lose them). Yields a dict that receives ``mous`` and ``pid`` of the victim."""
    import psutil

    def kill(proc) -> dict:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return {}
    return act_when_running(dest, step, kill, wait_for_child=wait_for_child)


# -- units -------------------------------------------------------------------------------------------
def test_projects_from_codes_or_a_file(tmp_path):
    assert parse_projects(f"{CODES[0]}, {CODES[1]},{CODES[0]}") == list(CODES)
    listing = tmp_path / "projects.txt"
    listing.write_text(f"# my survey\n{CODES[0]}\n\n{CODES[1]}  # second\n")
    assert parse_projects(str(listing)) == list(CODES)
    with pytest.raises(IdentifierError, match="not an ALMA project code"):
        parse_projects("2019.1.00101.S,W51")
    with pytest.raises(UsageError, match="empty"):
        parse_projects(" , ")


def test_run_config_checks_steps_and_cluster(tmp_path):
    assert RunConfig(tmp_path, steps=("image", "download")).steps == ("download", "image")
    with pytest.raises(UsageError, match="unknown step 'calibrate'"):
        RunConfig(tmp_path, steps=("calibrate",))
    with pytest.raises(UsageError, match="unknown cluster 'sge'"):
        RunConfig(tmp_path, cluster="sge")
    with pytest.raises(UsageError, match="no step"):
        RunConfig(tmp_path, steps=())


def test_connection_gate_holds_connections_across_downloads(archive, tmp_path):
    """TransferConfig.connection_gate: every file request is made inside the gate's context, so two
    downloads of 2 connections each sharing one 2-lease semaphore never hold more than 2."""
    view = query(Selection(projects=list(CODES)), ArchiveClient(archive.url), with_sg=False)
    plan = make_plan(view, parse_what("products,auxiliary,raw"))
    leases, lock = threading.BoundedSemaphore(2), threading.Lock()
    held, hosts = {"now": 0, "peak": 0, "entered": 0}, []

    @contextmanager
    def lease():
        with leases:
            with lock:
                held["now"] += 1
                held["peak"], held["entered"] = max(held["peak"], held["now"]), held["entered"] + 1
            try:
                yield
            finally:
                with lock:
                    held["now"] -= 1

    def gate(host: str):
        hosts.append(host)
        return lease()

    def both(gate, tag: str) -> int:
        archive.stats.reset()
        dests = [tmp_path / f"{tag}-{i}" for i in range(2)]
        threads = [threading.Thread(target=download, args=(plan, d, TransferConfig(
            parallel=2, progress=False, connection_gate=gate))) for d in dests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(len(list(d.rglob("member.uid___*"))) == sum(MOUS.values()) for d in dests)
        return archive.stats.peak_streams

    assert both(None, "open") > 2, "without a gate the two downloads overlap"
    both(gate, "gated")
    gets = sum(archive.stats[f.name].gets for f in plan.files)
    assert held["peak"] == 2 and held["entered"] == gets == 2 * len(plan.files)
    assert set(hosts) == {f"127.0.0.1:{archive.port}"}


# -- the done-criteria: Dask, 2 workers, 3 MOUS, every step ---------------------------------------------
@pytest.mark.slow
def test_run_on_dask_survives_a_lost_worker_and_reruns_nothing(archive, tmp_path, capsys):
    import distributed  # noqa: F401  (the [dask] extra `make test` installs: a missing one must fail, not skip)
    dest = tmp_path / "dest"
    mous = find_mous(list(CODES), archive.url)
    assert len(mous) == sum(MOUS.values()) == 2 and {str(p) for p, _ in mous} == set(CODES)
    config = RunConfig(dest, cluster="local", workers=2, archive=archive.url, connections_per_host=2,
                       casa_version_mismatch="allow")

    started = time.monotonic()
    with _kill_when_running(dest, "restore", wait_for_child=True) as killed:
        result = run(config, mous)
    seconds = time.monotonic() - started
    print(f"\nfull run of {len(mous)} MOUS on 2 workers: {seconds:.1f} s")

    assert result.backend.startswith("dask (local, 2 workers)")
    assert not result.failed, [(o.mous, o.step, o.error, o.log) for o in result.failed]
    assert len(result.outcomes) == 4 * len(mous) and not any(o.skipped for o in result.outcomes)
    assert archive.stats.peak_streams <= 2, "the connection limit holds across both workers"

    # the killed restore ran again, in another worker process, and says so in its log
    assert killed, "no restore was caught running"
    again = next(o for o in result.outcomes if o.mous == killed["mous"] and o.step == "restore")
    assert again.ok and again.output["pid"] != killed["pid"]
    assert Path(again.log).read_text().count("== restore of") == 2

    for project, uid in mous:
        [member] = dest.glob(f"{project}/science_goal.*/group.*/member.{uid.disk}")
        ebs = [p.name[: -len(".asdm.sdm")] for p in (member / "raw").glob("*.asdm.sdm")]
        assert len(ebs) == EBS[str(project)]
        for eb in ebs:
            assert (member / "calibrated" / f"{eb}.ms.split.cal" / "table.dat").is_file()
        assert list((member / IMAGE_OUT).glob("*.pbcor.fits")), f"no image of {uid}"
        for step in config.steps:
            assert StepJournal(dest).is_done(uid, step)
    assert not list(dest.glob(".almadeliver/run/*/download")), "staging areas are removed"

    # a second run (through the CLI) redoes nothing and rewrites nothing
    before = _mtimes(dest)
    capsys.readouterr()
    code = main(["run", "--projects", ",".join(CODES), "--dest", str(dest), "--archive", archive.url,
                 "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"0 ran, {4 * len(mous)} done before, 0 failed" in out
    assert out.count("done") >= 4 * len(mous)
    assert _mtimes(dest) == before


# -- without dask: the process pool, same journal ---------------------------------------------------------
def test_pool_backend_keeps_the_limit_and_recovers_from_a_dead_process(archive, tmp_path):
    dest = tmp_path / "dest"
    first, second = find_mous([CODES[0]], archive.url), find_mous([CODES[1]], archive.url)
    config = RunConfig(dest, steps=("download", "validate"), workers=2, archive=archive.url,
                       connections_per_host=2, dask=False)
    result = run(config, first)
    assert result.backend.startswith("process pool") and not result.failed
    assert archive.stats.peak_streams <= 2, "the limit holds across the pool's processes"

    # a process killed while it downloads (its streams die with it, so the limit is not measured here)
    archive.faults.throttle = 1e6
    with _kill_when_running(dest, "download", wait_for_child=False) as killed:
        result = run(config, second)
    assert killed and not result.failed, [(o.mous, o.step, o.error) for o in result.failed]
    assert len([o for o in result.outcomes if o.ok and not o.skipped]) == 2 * len(second)
    for _, uid in first + second:
        assert StepJournal(dest).is_done(uid, "validate")
    again = run(config, first + second)
    assert all(o.skipped and o.ok for o in again.outcomes) and len(again.outcomes) == 2 * len(first + second)


def test_run_without_distributed_falls_back_to_the_pool(archive, tmp_path):
    dest = tmp_path / "dest"
    code = ("import sys; sys.modules['distributed'] = None; from almadeliver.cli import main; "
            f"sys.exit(main(['run', '--projects', '{CODES[0]}', '--steps', 'download,validate', "
            f"'--dest', {str(dest)!r}, '--archive', {archive.url!r}, '--workers', '2']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "process pool (2 processes, no dask)" in proc.stdout
    assert f"{MOUS[CODES[0]]} MOUS, {2 * MOUS[CODES[0]]} tasks" in proc.stdout and f"{2 * MOUS[CODES[0]]} ran" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", code.replace("--workers', '2'", "--cluster', 'slurm'")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--cluster slurm needs dask" in proc.stderr


def test_a_failed_step_is_reported_with_its_log_and_retried_alone(archive, tmp_path, capsys):
    dest = tmp_path / "dest"
    args = ["run", "--projects", CODES[0], "--dest", str(dest), "--archive", archive.url]
    assert main([*args, "--steps", "validate"]) == 1           # nothing downloaded yet
    captured = capsys.readouterr()
    assert "0 ran" in captured.out and "FAILED" in captured.out
    log = dest / ".almadeliver" / "run" / find_mous([CODES[0]], archive.url)[0][1].disk / "validate.log"
    assert f"log: {log}" in captured.err and "run its download step first" in log.read_text()
    assert main([*args, "--steps", "download,validate"]) == 0  # the failed step, retried alone, now passes
    assert f"{2 * MOUS[CODES[0]]} ran" in capsys.readouterr().out


def test_a_batch_cluster_without_jobqueue_config_is_a_usage_error(tmp_path, monkeypatch, capsys):
    import dask_jobqueue  # noqa: F401  (the [dask] extra `make test` installs)
    import dask

    monkeypatch.setitem(dask.config.config, "jobqueue", {**dask.config.get("jobqueue"),
                                                         "slurm": {**dask.config.get("jobqueue.slurm"),
                                                                   "cores": None, "memory": None}})
    with pytest.raises(UsageError, match="--cluster slurm: You must specify how much cores") as err:
        run(RunConfig(tmp_path, cluster="slurm"), [("2019.1.00101.S", "uid://A001/X1/X2")])
    assert "jobqueue.yaml" in err.value.hint


# -- the options of the commands are options of run ---------------------------------------------------------
def test_run_user_fetches_a_proprietary_project(tiny_root, tmp_path, capsys, monkeypatch):
    """``run --user`` logs in as the command ``download --user`` does; the password stays out of the journal."""
    dest = tmp_path / "dest"
    monkeypatch.setitem(sys.modules, "distributed", None)      # the process pool: no cluster to start thrice
    with LocalArchive(tiny_root, users={"pi": "secret"}) as a:
        args = ["run", "--projects", PROPRIETARY, "--steps", "download", "--what", "products", "--dest", str(dest),
                "--archive", a.url, "--workers", "1"]
        assert main(args) == 1                                     # anonymously: the archive refuses the files
        assert "--user" in (dest / ".almadeliver" / "run" / Uid.parse(PROP_MOUS).disk / "download.log").read_text()
        monkeypatch.setenv("ALMA_PASSWORD", "wrong")
        capsys.readouterr()
        assert main([*args, "--user", "pi"]) == 1
        assert "refused the login of pi" in capsys.readouterr().err
        monkeypatch.setenv("ALMA_PASSWORD", "secret")
        assert main([*args, "--user", "pi"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "1 MOUS, 1 tasks" in out and f"{PROPRIETARY}  {PROP_MOUS}  ok" in out
    [member] = dest.glob(f"{PROPRIETARY}/science_goal.*/group.*/member.{Uid.parse(PROP_MOUS).disk}")
    # --what products: the products tarball (product/, and calibration/ as a pipeline member's holds it),
    # not the auxiliary one (its auxproducts tarball) nor the raw data
    assert list((member / "product").glob("*.pbcor.fits")) and not (member / "raw").exists()
    assert not list((member / "calibration").glob("*.auxproducts.tgz"))
    assert not any("secret" in p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file()
                   and p.suffix in (".json", ".log"))


def test_run_takes_the_download_restore_and_image_options(tmp_path, capsys, monkeypatch):
    """--what, --spacesaving, --engine, --casa-version-mismatch and the image overrides reach the run's
    configuration (its StepTasks carry them); a bad value is one usage line before anything runs."""
    from almadeliver.cli import scale_cmds
    from almadeliver.scale.run import RunResult

    seen: list[RunConfig] = []

    def record(config, mous, on_outcome=None):         # the driver's loop is tested above; here: what it gets
        seen.append(config)
        return RunResult(backend="none")

    monkeypatch.setattr(scale_cmds, "run", record)
    monkeypatch.setattr(scale_cmds, "find_mous", lambda codes, client=None, archive=None: [])
    assert main(["run", "--projects", "2019.1.00101.S", "--dest", str(tmp_path), "--spacesaving", "2",
                 "--engine", "casa", "--casa-version-mismatch", "allow", "--robust", "0.5", "--niter", "10",
                 "--what", "products,raw"]) == 0
    assert main(["run", "--projects", "2019.1.00101.S", "--dest", str(tmp_path), "--nbin", "2", "--width", "3"]) == 2
    assert main(["run", "--projects", "2019.1.00101.S", "--dest", str(tmp_path), "--what", "calibration"]) == 2
    assert main(["run", "--projects", "2019.1.00101.S", "--dest", str(tmp_path), "--engine", "pipeline"]) == 2
    [config] = seen
    assert (config.restore.spacesaving, config.restore.engine, config.restore.casa_version_mismatch) == (2, "casa", "allow")
    assert (config.image.overrides.robust, config.image.overrides.niter) == (0.5, 10)
    assert config.fetch.what == "products,raw" and config.fetch.credentials is None
    err = capsys.readouterr().err
    assert "--nbin and --width both set" in err and "--what: unknown kind 'calibration'" in err
    assert "Invalid value for '--engine'" in err and "'pipeline' is not one of 'auto', 'native', 'casa'" in err
