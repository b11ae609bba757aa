"""Shared test fixtures. The real ALMA files live in ../shared/fixtures/real/ (read, never copied)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Keep the tests' CASA site config and caches out of the user's home: set before almadeliver loads.
os.environ.setdefault("ALMADELIVER_HOME", tempfile.mkdtemp(prefix="almadeliver-test-home-"))

import pytest  # noqa: E402

from almadeliver.casa.runtime import offline_environment  # noqa: E402

offline_environment()   # tests that import casatools here get the offline site config (almadeliver sets none)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"   # small synthetic files of our own
REAL = Path(os.environ.get("ALMADELIVER_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))


@pytest.fixture(scope="session")
def real() -> Path:
    """The folder of real ALMA files (archive answers, READMEs, pipeline files)."""
    if not REAL.is_dir():
        pytest.fail(f"real ALMA fixtures not found at {REAL} (set ALMADELIVER_REAL_FIXTURES)")
    return REAL


# -- simulated ALMA projects (almadeliver simulate), cached across test sessions -------------------
import fcntl  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402

SIM_CACHE = REPO / ".almadeliver-cache" / "sim"
# What a simulated project is made from: the simulation itself (not the local archive that serves it)
# and the modules it writes through. A change elsewhere must not rebuild the cached projects.
_ARCHIVE_DOUBLE = {"archive", "adql.py", "votable.py", "regions.py"}   # sim/archive/ is the server
_SIM_SOURCES = [REPO / "almadeliver" / p for p in (
    "casa/legacy.py", "casa/commands.py", "casa/child.py", "packaging/tarballs.py", "ids.py")]


def _sim_code_version() -> str:
    """A hash of the code that makes simulated projects (almadeliver/sim/ but the archive double)."""
    sim = REPO / "almadeliver" / "sim"
    files = [f for f in sorted(sim.rglob("*")) if f.is_file() and "__pycache__" not in f.parts
             and not _ARCHIVE_DOUBLE & set(f.relative_to(sim).parts)] + _SIM_SOURCES
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def simulated():
    """Factory: ``simulated(code, flavour="manual", mous=1, ebs=1, group_12m_7m=False, proprietary=False,
    size="small", casa_version=None, residual_phase_deg=0.0, total_power=False)`` (``casa_version``: the
    CASA the simulated reducer ran, default the simulator's)
    returns the project folder (catalogue.json + files/) of a simulated project, built once and cached
    in .almadeliver-cache/sim/<key> (key = parameters + simulator code version)."""
    from almadeliver.sim.deliveries import simulate_project

    version = _sim_code_version()

    def make(code: str, flavour: str = "manual", mous: int = 1, ebs: int = 1,
             group_12m_7m: bool = False, proprietary: bool = False, size: str = "small",
             casa_version: str | None = None, residual_phase_deg: float = 0.0,
             total_power: bool = False) -> Path:
        params = (f"{code}|{flavour}|{mous}|{ebs}|{group_12m_7m}|{proprietary}" + ("" if size == "small" else f"|{size}")
                  + (f"|casa{casa_version}" if casa_version else "")
                  + (f"|phase{residual_phase_deg:g}" if residual_phase_deg else "") + ("|tp" if total_power else ""))
        stem = f"{code}-{flavour}-{hashlib.sha256(params.encode()).hexdigest()[:8]}"
        key = f"{stem}-{version}"
        final = SIM_CACHE / key
        SIM_CACHE.mkdir(parents=True, exist_ok=True)
        # one builder per project: a parallel worker (pytest -n) or session waits for it, then reuses it
        with open(SIM_CACHE / f".{stem}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / code / "catalogue.json").is_file():
                for stale in SIM_CACHE.glob(f"{stem}-*"):  # the same project made by older simulator code
                    shutil.rmtree(stale, ignore_errors=True)
                tmp = SIM_CACHE / f".{key}.tmp-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                simulate_project(code, tmp, flavour=flavour, mous=mous, ebs=ebs, group_12m_7m=group_12m_7m,
                                 proprietary=proprietary, size=size, residual_phase_deg=residual_phase_deg,
                                 total_power=total_power, **({"casa_version": casa_version} if casa_version else {}))
                tmp.rename(final)
        return final / code

    return make


def unpack_delivery(project_dir: Path, dest: Path) -> Path:
    """Extract every tarball of a simulated project into ``dest``; returns the tree root dest/<project>
    (Cycle 0 deliveries unpack to the same root)."""
    from almadeliver.sim.catalogue import Catalogue

    catalogue = Catalogue.load(project_dir)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in catalogue.files:
        if f.name.endswith(".tar"):
            with tarfile.open(Path(project_dir) / "files" / f.name) as tar:
                tar.extractall(dest, filter="data")
    return dest / catalogue.project


@pytest.fixture(scope="session")
def unpack():
    """The ``unpack_delivery(project_dir, dest) -> Path`` helper, as a fixture."""
    return unpack_delivery


PIPELINE_GROUP = "2019.1.00456.S"   # pipeline flavour, a 12m + 7m group (one EB each), proprietary


@pytest.fixture(scope="session")
def pipeline_group(simulated) -> Path:
    """The simulated pipeline project shared by the sim, native restore and image tests."""
    return simulated(PIPELINE_GROUP, flavour="pipeline", group_12m_7m=True, proprietary=True)


PIPELINE_MODERN = "2023.1.00077.S"  # pipeline flavour, Cycle 10: tclean on <EB>_targets(_line).ms, datacolumn='data'


@pytest.fixture(scope="session")
def pipeline_modern(simulated) -> Path:
    """A one-EB Cycle 10 pipeline project (the PL2022+ imaging layout), shared by sim, restore and image tests."""
    return simulated(PIPELINE_MODERN, flavour="pipeline")


STAFF_PROJECT = "2017.1.00123.S"    # the demo's project: one MOUS, 2 EBs (flux calibration + combination)


def installed_casa_version() -> str:
    """The CASA the tests run (casatools 6.7.0.31 -> "6.7.0-31"), read without importing CASA."""
    from importlib.metadata import version

    numbers = version("casatools").split(".")
    return ".".join(numbers[:3]) + (f"-{numbers[3]}" if len(numbers) > 3 else "")


@pytest.fixture(scope="session")
def staff_reduction(simulated, unpack, tmp_path_factory):
    """A staff reduction area filled by ``prepare --from-delivery`` from the simulated 2-EB manual
    project, restored and re-imaged once per session: ``.area`` (read it, or copy it before
    changing anything), ``.member``, ``.restored``, ``.imaged``, ``.fill``.

    The simulated reducer calibrated in the CASA the tests run: staff calibrate and image in one
    CASA version (the checklist compares the versions the logs name), and the area's imaging is
    this session's ``almadeliver image``."""
    from types import SimpleNamespace

    from almadeliver.casa import imaging
    from almadeliver.casa.restore import plan_restore, restore
    from almadeliver.delivery.layout import find_members
    from almadeliver.delivery.staff import prepare_area
    from almadeliver.packaging.fromdelivery import staff_from_delivery

    project = simulated(STAFF_PROJECT, ebs=2, casa_version=installed_casa_version())
    root = tmp_path_factory.mktemp("staff-reduction")
    [member] = find_members(unpack(project, root / "delivered"))
    restored = restore(plan_restore(member.path, spacesaving=1))      # the scripts' gates ask for this CASA
    imaged = imaging.run(imaging.plan(member.path), root / "images")
    area = prepare_area(member.mous, member.ebs_in_scripts, root / "staff")
    fill = staff_from_delivery(member.path, imaged.out, area)
    return SimpleNamespace(project=project, member=member, restored=restored, imaged=imaged, area=area, fill=fill)


# -- parallel runs: groups and their order ------------------------------------------------------------
# Files whose tests share nothing costly but the session's cached simulations: each test is its own
# xdist group (both workers can take them), except the tests that use one of the file's costly module
# or session fixtures named here: those go to the group the fixture names, so it is made once.
SPLIT_FILES = {
    "test_scale.py": {},
    "test_restore_casa.py": {"one_eb_level0": "one_eb_level0"},
    "test_sim.py": {},
    "test_native_restore.py": {},
    "test_image_casa.py": {"pipeline_member": "pipeline", "manual_member": "pipeline", "modern_member": "modern"},
    "test_sim_pipeline.py": {},
}
# Rough cold-cache cost of the CASA-heavy groups (CPU minutes on 2 shared cores: the simulations a
# group is the first to ask for, its restores and imaging runs). ``pytest -n 2 --dist loadgroup
# --no-loadscope-reorder`` (make test) hands the groups out in this order, costliest first, so that
# no long group starts last and runs alone at the end; a group not named here costs 0 and keeps its
# collection order (the fast tests fill the tail).
GROUP_COST = {
    "staff-reduction": 12,
    "test_scale.py::test_run_on_dask_survives_a_lost_worker_and_reruns_nothing": 7,
    "test_image_casa.py::pipeline": 9,
    "test_restore_casa.py::test_peak_stays_under_scriptforpi_estimate_two_ebs_level3": 7,
    "test_restore_casa.py::one_eb_level0": 6,
    "test_native_restore.py::test_two_ebs_at_spacesaving_2_keep_only_the_split_cal": 6,
    "test_slurm.py": 6,
    "test_sim.py::test_scriptforpi_calibrates_to_flat_phases": 5,
    "test_restore_casa.py::test_two_ebs_level1_then_resume_level3": 4,
    "test_selfcal.py": 5,
    "test_image_casa.py::modern": 4,
    "test_restore_tp.py": 4,
    "test_recalibrate.py": 4,
    "test_image_legacy_casa.py": 4,
    "test_restore_casa.py::test_cycle0_is_already_calibrated_and_concat_runs_the_flux_calibration_script": 3,
    "test_image_casa.py::test_simulated_manual_delivery_restored_then_reimaged": 3,
    "test_image_casa.py::test_spacesaving_2_split_cal_reimages_the_same_products": 3,
    "test_scale.py::test_pool_backend_keeps_the_limit_and_recovers_from_a_dead_process": 2,
    "test_restore_casa.py::test_level2_through_monolithic_casa_command": 2,
    "test_native_restore.py::test_one_eb_restores_the_pipeline_corrected_data_and_flags": 2,
    "test_native_restore.py::test_restore_cli_engine_auto_uses_native_without_pipeline_casa": 2,
    "test_sim.py::test_asdm_roundtrips_through_importasdm": 1,
    "test_sim_pipeline.py::test_cycle_10_layout_images_targets_ms_with_datacolumn_data": 1,
}


def _xdist_group(item) -> str:
    """The xdist group of a test: "staff-reduction" for every test of ``staff_reduction`` (the session
    builds it once), else its file, or in SPLIT_FILES one group per test or per shared fixture."""
    name = item.path.name
    if "staff_reduction" in getattr(item, "fixturenames", ()):
        return "staff-reduction"
    if name not in SPLIT_FILES:
        return name
    shared = sorted({group for fixture, group in SPLIT_FILES[name].items()
                     if fixture in getattr(item, "fixturenames", ())})
    return f"{name}::{'+'.join(shared) or getattr(item, 'originalname', item.name)}"


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which reads xdist_group marks to group the tests
def pytest_collection_modifyitems(items):
    """A test that asks for a simulated project (``simulated``, directly or through a fixture such as
    ``staff_reduction``) may be the one that builds it, or waits while the other worker does (CASA
    simulation, restore and imaging, many minutes on 2 busy cores; a 2-MOUS project took more than
    15 minutes on a machine at load 11): those tests get 30 minutes instead of 15.

    For parallel runs (``make test``: ``pytest -n 2 --dist loadgroup --no-loadscope-reorder``) every
    test gets an xdist group (``_xdist_group``), so a module fixture is made once per group and the
    tests of ``staff_reduction`` are one group (the session builds it once); the items are ordered by
    GROUP_COST, costliest group first.

    It runs first (``tryfirst``): xdist's worker reads the ``xdist_group`` marks in its own
    ``pytest_collection_modifyitems``; marks added after it are ignored and every test becomes a
    group of its own (both workers then build ``staff_reduction`` and every module fixture)."""
    groups: dict[str, int] = {}
    for item in items:
        if "simulated" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(1800))
        group = _xdist_group(item)
        item.add_marker(pytest.mark.xdist_group(group))
        groups.setdefault(group, len(groups))
        item.stash[_GROUP] = group
    cost = {g: GROUP_COST.get(g, GROUP_COST.get(g.split("::")[0], 0)) for g in groups}
    items.sort(key=lambda item: (-cost[item.stash[_GROUP]], groups[item.stash[_GROUP]]))


_GROUP = pytest.StashKey[str]()


@pytest.fixture(scope="module")
def local_archive(simulated, tmp_path_factory):
    """The local archive serving the demo's project (2017.1.00123.S, one MOUS of 2 EBs, cached), as the
    API and tutorial tests ask it."""
    from almadeliver.sim.archive import LocalArchive

    root = tmp_path_factory.mktemp("demo-archive")
    (root / STAFF_PROJECT).symlink_to(simulated(STAFF_PROJECT, ebs=2))
    with LocalArchive(root) as archive:
        yield archive


# -- where the suite's time goes: ALMADELIVER_TEST_CPU=FILE appends one JSON line per test phase ---------
# (wall seconds, and CPU seconds of the worker and its reaped children: CASA calls run in forks of the
# worker's warm CASA process, whose CPU is reaped only when that process ends, so with warm CASA on the
# CPU column leaves them out; ALMADELIVER_CASA_WARM=0 counts each call in its test)
_CPU_LOG = os.environ.get("ALMADELIVER_TEST_CPU")


def _cpu_seconds() -> float:
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _log_phase(item, phase: str):
    if not _CPU_LOG:
        yield
        return
    import json
    import time

    cpu, wall = _cpu_seconds(), time.monotonic()
    yield
    line = json.dumps({"test": item.nodeid, "phase": phase, "group": item.stash.get(_GROUP, ""),
                       "cpu_s": round(_cpu_seconds() - cpu, 2), "wall_s": round(time.monotonic() - wall, 2)})
    with open(_CPU_LOG, "a") as out:
        out.write(line + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """CPU seconds (this process and its finished children) of each test's setup (ALMADELIVER_TEST_CPU)."""
    yield from _log_phase(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """CPU seconds of each test's call (ALMADELIVER_TEST_CPU)."""
    yield from _log_phase(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    """CPU seconds of each test's teardown (ALMADELIVER_TEST_CPU)."""
    yield from _log_phase(item, "teardown")
