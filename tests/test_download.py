"""The download stage against the local archive (a real HTTP server on 127.0.0.1), faults included."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from almadeliver.archive.model import ArchiveFile, Mous, Project, ProjectView
from almadeliver.delivery.validate import validate
from almadeliver.errors import AuthError, DiskSpaceError, NotATarballError, NotFoundError, SizeMismatchError
from almadeliver.ids import DeliveryFileName, Uid, auxiliary_name, products_name, raw_name, readme_name
from almadeliver.packaging.tarballs import tree_entries, write_tar
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile
from almadeliver.sim.archive import Faults, LocalArchive
from almadeliver.transfer.auth import Credentials, login
from almadeliver.transfer.download import TransferConfig, download
from almadeliver.transfer.journal import DOWNLOADED, EXTRACTED
from almadeliver.transfer.plan import make_plan, parse_what
from tiny_archive import tiny_root  # noqa: F401  (the query stage needs ObsCore rows)

PROJECT = "2017.1.01185.S"
PRIVATE = "2019.1.00099.S"
SG, GOUS, MOUS = Uid.parse("uid://A001/X12a3/Xe7"), Uid.parse("uid://A001/X12a3/Xe8"), Uid.parse("uid://A001/X12a3/Xe9")
EB = Uid.parse("uid://A002/Xd28a9e/X71b8")
MEMBER = f"{PROJECT}/science_goal.{SG.disk}/group.{GOUS.disk}/member.{MOUS.disk}"
MB = 1 << 20
FAST = TransferConfig(progress=False, backoff=0.05, backoff_max=0.2)


def _tar_of(out: Path, files: dict[str, bytes], staging: Path) -> Path:
    for arc, data in files.items():
        (staging / arc).parent.mkdir(parents=True, exist_ok=True)
        (staging / arc).write_bytes(data)
    return write_tar(out, tree_entries(staging / arc.split("/")[0], arc.split("/")[0]))


def _publish(folder: Path, project: str, proprietary: bool, files: dict[str, Path], mous: Uid) -> None:
    (folder / FILES_DIR).mkdir(parents=True, exist_ok=True)
    listed = []
    for name, path in files.items():
        path.replace(folder / FILES_DIR / name)
        kind = DeliveryFileName.parse(name).kind.value
        semantics = {"products": "#this", "auxiliary": "#auxiliary", "raw": "#progenitor"}.get(kind, "#documentation")
        ctype = "text/plain" if name.endswith(".txt") else "application/x-tar"
        listed.append(CatalogueFile(name, semantics, ctype, (folder / FILES_DIR / name).stat().st_size, [mous.archive]))
    Catalogue(project, proprietary, [], listed).save(folder)


@pytest.fixture(scope="module")
def root(tmp_path_factory, real) -> Path:
    return build_archive(tmp_path_factory.mktemp("archive"), real)


def build_archive(root: Path, real: Path) -> Path:
    """Two projects as `simulate` lays them out: a public one (products in two parts, auxiliary, raw, README)
    and a proprietary one."""
    st = root / "staging"
    readme = (real / "delivery" / "W51_2013.1.00308.S_12m_README.txt").read_bytes().replace(
        b"Project code: 2013.1.00308.S", f"Project code: {PROJECT}".encode())     # a README of this project
    big = os.urandom(12 * MB)
    files = {
        products_name(PROJECT, MOUS, 1, 2): _tar_of(st / "p1.tar", {
            f"{MEMBER}/README": readme,
            f"{MEMBER}/product/W51.spw25.cube.I.pbcor.fits": big,
            f"{MEMBER}/script/{MOUS.disk}.scriptForPI.py": b"print('restore')\n"}, st / "p1"),
        products_name(PROJECT, MOUS, 2, 2): _tar_of(st / "p2.tar", {
            f"{MEMBER}/product/W51.spw27.cube.I.pbcor.fits": os.urandom(5 * MB)}, st / "p2"),
        auxiliary_name(PROJECT, MOUS): _tar_of(st / "aux.tar", {
            f"{MEMBER}/calibration/{MOUS.disk}.cont.dat": (real / "pipeline" / "G008.67.B3.12m.cont.dat").read_bytes()},
            st / "aux"),
        raw_name(PROJECT, EB): _tar_of(st / "raw.tar", {
            f"{MEMBER}/raw/{EB.disk}.asdm.sdm/ASDM.xml": b"<ASDM/>\n",
            f"{MEMBER}/raw/{EB.disk}.asdm.sdm/ASDMBinary/uid___A002_Xd28a9e_X71b9": os.urandom(3 * MB)}, st / "raw"),
        readme_name(MOUS): st / "README.txt",
    }
    (st / "README.txt").write_bytes(readme)
    _publish(root / PROJECT, PROJECT, False, files, MOUS)
    private_mous = Uid.parse("uid://A001/X1465/X2f66")
    _publish(root / PRIVATE, PRIVATE, True, {products_name(PRIVATE, private_mous, 1, 1): _tar_of(
        st / "priv.tar", {f"{PRIVATE}/member.{private_mous.disk}/product/x.fits": os.urandom(MB)}, st / "priv")},
        private_mous)
    return root


@pytest.fixture
def archive(root):
    with LocalArchive(root, users={"pi_user": "s3cret"}) as a:
        yield a


def view_of(archive: LocalArchive, project: str = PROJECT, sizes: dict[str, int] | None = None) -> ProjectView:
    """The project view the query stage would hand over (built from the catalogue the server serves)."""
    cat = Catalogue.load(archive.root / project)
    files = [ArchiveFile(f.name, f"{archive.url}/dataPortal/{f.name}", (sizes or {}).get(f.name, f.size),
                         DeliveryFileName.parse(f.name).kind, f.ids[0], readable=not cat.proprietary)
             for f in cat.files]
    m = Mous(cat.files[0].ids[0], GOUS.archive, SG.archive, "12m", True, [EB.archive], ["W51"], ["3"], 4, files)
    return ProjectView(archive.url, [Project(project, "W51", "PI", 5, "Public", "2019-01-01", ["3"], ["W51"], [m])],
                       4, 0)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def served(archive: LocalArchive, name: str, project: str = PROJECT) -> Path:
    return archive.root / project / FILES_DIR / name


def plan_of(archive, what="products,auxiliary,raw,readme", **kw):
    return make_plan(view_of(archive, **kw), parse_what(what))


# -- the happy path ---------------------------------------------------------------------------------
def test_download_unpacks_the_standard_tree_and_a_second_run_is_a_no_op(archive, tmp_path):
    dest = tmp_path / "dest"
    result = download(plan_of(archive), dest, FAST)
    assert result.ok, [str(f.error) for f in result.failed]
    member = dest / MEMBER
    assert sorted(p.name for p in member.iterdir()) == ["README", "calibration", "product", "raw", "script"]
    assert (member / "raw" / f"{EB.disk}.asdm.sdm" / "ASDM.xml").read_text() == "<ASDM/>\n"
    assert (dest / readme_name(MOUS)).read_bytes() == served(archive, readme_name(MOUS)).read_bytes()
    assert not list(dest.glob("*.tar")) and not list(dest.glob("*.part")), "verified tarballs are removed"
    assert sum(f.extracted for f in result.files) == 4
    report = validate(dest)        # the README is this project's; the rest is a sketch (no scripts per EB)
    assert [f.message for f in report.findings if f.check.startswith("readme.")] == [
        f"project {PROJECT}, PI Adam Ginsburg, CASA 4.4.0, QA2 notes 104 lines"]
    assert archive.stats.peak_streams <= 5
    archive.stats.reset()
    again = download(plan_of(archive), dest, FAST)
    assert all(f.status == "already" for f in again.files) and again.fetched_bytes == 0
    assert archive.stats.bytes_sent == 0 and sum(f.gets for f in archive.stats.files.values()) == 0


def test_keep_tars_and_no_untar(archive, tmp_path):
    name = products_name(PROJECT, MOUS, 2, 2)
    kept = download(plan_of(archive, "products"), tmp_path / "keep", TransferConfig(progress=False, keep_tars=True))
    assert kept.ok and sha(tmp_path / "keep" / name) == sha(served(archive, name))
    assert (tmp_path / "keep" / MEMBER / "product" / "W51.spw27.cube.I.pbcor.fits").is_file()
    raw = download(plan_of(archive, "raw"), tmp_path / "raw", TransferConfig(progress=False, untar=False))
    assert raw.ok and not (tmp_path / "raw" / PROJECT).exists()
    assert sha(tmp_path / "raw" / raw_name(PROJECT, EB)) == sha(served(archive, raw_name(PROJECT, EB)))


def test_connections_per_host_are_capped(archive, tmp_path):
    archive.faults.throttle = 20e6
    result = download(plan_of(archive), tmp_path / "d", TransferConfig(progress=False, parallel=2))
    assert result.ok and archive.stats.peak_streams == 2


def test_split_fetches_one_file_as_ranges(archive, tmp_path):
    name = products_name(PROJECT, MOUS, 1, 2)
    archive.faults.throttle = 40e6
    cfg = TransferConfig(progress=False, split=4, split_min_size=MB, untar=False)
    result = download(plan_of(archive, "products"), tmp_path / "d", cfg)
    assert result.ok and sha(tmp_path / "d" / name) == sha(served(archive, name))
    assert archive.stats[name].gets >= 4 and archive.stats.peak_streams >= 4
    assert archive.stats[name].bytes_sent == served(archive, name).stat().st_size


PARALLEL_3 = dict(progress=False, parallel=3, split=3, split_min_size=8 * MB, untar=False, ask_min=256 * 1024,
                  steal_min=128 * 1024, backoff=0.05, backoff_max=0.2)


def test_parallel_3_and_split_stay_within_3_streams_and_send_every_byte_once(archive, tmp_path):
    """The archive's own counts (issue 23): with --parallel 3 and the large file split in 3, never more
    than 3 bodies in flight nor 3 connections open (kept alive, never thrown away), idle connections
    take over part of a running unsplit file, and the archive sends each file's bytes exactly once."""
    archive.faults.throttle = 4e6          # slow enough that connections run out of files to start
    plan = plan_of(archive)
    result = download(plan, tmp_path / "d", TransferConfig(**PARALLEL_3))
    assert result.ok, [str(f.error) for f in result.failed]
    stats = archive.stats
    assert {f.name: stats[f.name].bytes_sent for f in plan.files} == {f.name: f.size for f in plan.files}
    assert stats.peak_streams == 3 and stats.peak_connections <= 3
    assert stats.connections_opened <= 3 < stats.requests, "kept-alive connections serve request after request"
    assert stats[products_name(PROJECT, MOUS, 1, 2)].peak_streams == 3, "the 3 ranges of --split ran at once"
    assert stats[products_name(PROJECT, MOUS, 2, 2)].peak_streams >= 2, "an idle connection took over a range"
    assert all(sha(tmp_path / "d" / f.name) == sha(served(archive, f.name)) for f in plan.files)


@pytest.mark.parametrize("fault, failing", [({"drop_after": 700_000}, True), ({"fail_503": 6}, True),
                                            ({"ignore_range": True}, False)])
def test_faults_with_parallel_3_send_again_only_what_failed(archive, tmp_path, fault, failing):
    """A dropped answer resumes where its bytes stopped and a 503 is asked again: nothing is sent twice.
    A server ignoring Range sends whole files (each once: the first answer of a file is all of it)."""
    for key, value in fault.items():
        setattr(archive.faults, key, value)
    plan = plan_of(archive)
    config = TransferConfig(**{**PARALLEL_3, "split": 1})
    result = download(plan, tmp_path / "d", config)
    assert result.ok, [str(f.error) for f in result.failed]
    stats = archive.stats
    assert {f.name: stats[f.name].bytes_sent for f in plan.files} == {f.name: f.size for f in plan.files}
    assert stats.peak_streams <= 3
    assert (sum(stats[f.name].gets for f in plan.files) > len(plan.files)) is failing, "requests failed and were asked again"
    assert all(sha(tmp_path / "d" / f.name) == sha(served(archive, f.name)) for f in plan.files)


# -- faults -------------------------------------------------------------------------------------------
def test_dropped_connections_resume_byte_identical(archive, tmp_path):
    """'Dropped every 30 MB' scaled down: every 2 MB on a 12 MB tarball, and resumed each time."""
    name = products_name(PROJECT, MOUS, 1, 2)
    archive.faults.drop_after = 2 * MB
    result = download(plan_of(archive, "products"), tmp_path / "d", TransferConfig(progress=False, untar=False))
    assert result.ok
    assert sha(tmp_path / "d" / name) == sha(served(archive, name))
    assert archive.stats[name].gets >= 6
    assert archive.stats[name].bytes_sent == served(archive, name).stat().st_size, "no byte fetched twice"


def test_drop_every_30_mb_on_a_70_mb_file(tmp_path):
    folder = tmp_path / "arch" / PROJECT
    name = products_name(PROJECT, MOUS, 1, 1)
    _publish(folder, PROJECT, False, {name: _tar_of(tmp_path / "big.tar", {
        f"{MEMBER}/product/big.fits": os.urandom(70 * MB)}, tmp_path / "st")}, MOUS)
    with LocalArchive(tmp_path / "arch", faults=Faults(drop_after=30 * MB)) as a:
        result = download(make_plan(view_of(a), parse_what("products")), tmp_path / "d",
                          TransferConfig(progress=False, keep_tars=True, parallel=1, ask_min=64 * MB))
        assert result.ok and a.stats[name].gets == 3           # asks of 64 MB and more, each cut at 30 MB
        assert a.stats[name].bytes_sent == (folder / FILES_DIR / name).stat().st_size
        assert sha(tmp_path / "d" / name) == sha(folder / FILES_DIR / name)
        assert (tmp_path / "d" / MEMBER / "product" / "big.fits").stat().st_size == 70 * MB


def test_range_ignored_restarts_from_zero_not_corrupted(archive, tmp_path):
    name = products_name(PROJECT, MOUS, 1, 2)
    source = served(archive, name)
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / (name + ".part")).write_bytes(source.read_bytes()[: 3 * MB])   # a previous run's partial file
    archive.faults.ignore_range = True
    result = download(plan_of(archive, "products"), dest, TransferConfig(progress=False, untar=False))
    assert result.ok and sha(dest / name) == sha(source)
    assert archive.stats[name].bytes_sent == source.stat().st_size      # the whole file again, from byte 0


def test_a_206_for_another_range_restarts_from_zero_not_spliced(archive, tmp_path):
    """A server (or proxy) that answers a resumed Range with a 206 starting 4 KiB earlier, and says so in
    Content-Range: the bytes must not be written where the asked range starts."""
    name = products_name(PROJECT, MOUS, 1, 2)
    source = served(archive, name)
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / (name + ".part")).write_bytes(source.read_bytes()[: 3 * MB])   # a previous run's partial file
    archive.faults.early_range = 4096
    result = download(plan_of(archive, "products"), dest, TransferConfig(progress=False, untar=False))
    assert result.ok and sha(dest / name) == sha(source)
    assert archive.stats[name].bytes_sent > source.stat().st_size - 3 * MB + 4096, "fetched again from byte 0"


def test_a_206_for_another_range_while_splitting_is_not_spliced(archive, tmp_path):
    name = products_name(PROJECT, MOUS, 1, 2)
    archive.faults.early_range = 4096
    cfg = TransferConfig(progress=False, split=4, split_min_size=MB, untar=False)
    result = download(plan_of(archive, "products"), tmp_path / "d", cfg)
    assert result.ok and sha(tmp_path / "d" / name) == sha(served(archive, name))


def test_range_ignored_while_splitting_is_not_corrupted(archive, tmp_path):
    name = products_name(PROJECT, MOUS, 1, 2)
    archive.faults.ignore_range = True
    cfg = TransferConfig(progress=False, split=4, split_min_size=MB, untar=False)
    result = download(plan_of(archive, "products"), tmp_path / "d", cfg)
    assert result.ok and sha(tmp_path / "d" / name) == sha(served(archive, name))


def test_503_bursts_are_retried(archive, tmp_path):
    archive.faults.fail_503 = 4
    result = download(plan_of(archive, "products,readme"), tmp_path / "d", FAST)
    assert result.ok, [str(f.error) for f in result.failed]


def test_503_forever_gives_up_with_one_line(archive, tmp_path):
    archive.faults.fail_503 = 10_000
    result = download(plan_of(archive, "readme"), tmp_path / "d", TransferConfig(progress=False, retries=2,
                                                                                backoff=0.01, backoff_max=0.02))
    [failed] = result.failed
    assert "gave up after 3 attempts" in str(failed.error) and "\n" not in str(failed.error)


def test_html_page_is_refused_and_nothing_saved(archive, tmp_path):
    archive.faults.html_instead = True
    result = download(plan_of(archive, "products,readme"), tmp_path / "d", FAST)
    assert len(result.failed) == 3
    assert all(isinstance(f.error, NotATarballError) for f in result.failed)
    assert [p.name for p in (tmp_path / "d").iterdir()] == [".almadeliver"], "no tarball, no .part"


def test_proprietary_401_is_not_retried_and_login_fixes_it(archive, tmp_path):
    plan = plan_of(archive, "products", project=PRIVATE)
    result = download(plan, tmp_path / "d", FAST)
    [failed] = result.failed
    assert isinstance(failed.error, AuthError) and "--user" in str(failed.error)
    assert archive.stats[plan.files[0].name].gets == 1, "401 is never retried"
    session = requests.Session()
    with pytest.raises(AuthError, match="refused the login"):
        login(session, archive.url, Credentials("pi_user", "wrong"), plan.hosts)
    login(session, archive.url, Credentials("pi_user", "s3cret"), plan.hosts)
    again = download(plan, tmp_path / "d", FAST, session)
    assert again.ok and (tmp_path / "d" / PRIVATE).is_dir()


def test_404_is_not_retried(archive, tmp_path):
    plan = plan_of(archive, "readme")
    plan.files[0].url += ".gone"
    result = download(plan, tmp_path / "d", FAST)
    [failed] = result.failed
    assert isinstance(failed.error, NotFoundError) and archive.stats.requests == 1


def test_size_different_from_datalink_is_refused(archive, tmp_path):
    name = readme_name(MOUS)
    result = download(plan_of(archive, "readme", sizes={name: 123}), tmp_path / "d", FAST)
    [failed] = result.failed
    assert isinstance(failed.error, SizeMismatchError) and not (tmp_path / "d" / name).exists()


def test_hostile_tarball_from_the_archive_is_refused(tmp_path):
    folder = tmp_path / "arch" / PROJECT
    name = products_name(PROJECT, MOUS, 1, 1)
    (tmp_path / "evil.tar").unlink(missing_ok=True)
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo(f"{PROJECT}/../../escape.txt")
        info.size = 0
        tar.addfile(info)
    _publish(folder, PROJECT, False, {name: tmp_path / "evil.tar"}, MOUS)
    with LocalArchive(tmp_path / "arch") as a:
        result = download(make_plan(view_of(a), parse_what("products")), tmp_path / "d", FAST)
    [failed] = result.failed
    assert "'..'" in str(failed.error) and not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "d" / PROJECT).exists()


def test_disk_full_is_a_clear_error_and_the_part_is_kept(archive, tmp_path, monkeypatch):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        name = products_name(PROJECT, MOUS, 1, 2)
        size = served(archive, name).stat().st_size
        plan = plan_of(archive, "products")
        plan.files = [f for f in plan.files if f.name == name]
        with pytest.raises(DiskSpaceError, match="free"):       # the check before starting
            download(plan, mnt / "d", FAST)
        from almadeliver.transfer import download as engine
        monkeypatch.setattr(engine, "check_space", lambda *a, **k: None)   # now let the disk fill up mid-run
        with pytest.raises(DiskSpaceError, match="full") as err:
            download(plan, mnt / "d", TransferConfig(progress=False, untar=False))
        assert "\n" not in str(err.value) and "kept" in str(err.value)
        part = mnt / "d" / (name + ".part")
        assert part.exists() and part.stat().st_size > 4 * MB
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)   # free some space
        archive.stats.reset()
        resumed = download(plan, mnt / "d", TransferConfig(progress=False, untar=False))
        assert resumed.ok and sha(mnt / "d" / name) == sha(served(archive, name))
        assert archive.stats[name].bytes_sent <= size - 4 * MB, "the .part was resumed, not fetched again"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_disk_that_fills_while_unpacking_keeps_the_tarball_and_the_rerun_only_unpacks(archive, tmp_path, monkeypatch):
    """The tarball (12 MB) fits on the disk, its unpacked copy does not: a one-line DiskSpaceError, the
    verified tarball kept, and after space is freed the rerun unpacks it without fetching a byte."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        name = products_name(PROJECT, MOUS, 1, 2)
        plan = plan_of(archive, "products")
        plan.files = [f for f in plan.files if f.name == name]
        from almadeliver.transfer import download as engine
        monkeypatch.setattr(engine, "check_space", lambda *a, **k: None)   # let the disk fill up
        result = download(plan, mnt / "d", FAST)
        [failed] = result.failed
        assert isinstance(failed.error, DiskSpaceError) and "\n" not in str(failed.error)
        assert "tarball is kept" in str(failed.error)
        assert sha(mnt / "d" / name) == sha(served(archive, name)), "the verified tarball is kept whole"
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)   # free some space
        archive.stats.reset()
        again = download(plan, mnt / "d", FAST)
        assert again.ok and again.fetched_bytes == 0 and archive.stats[name].bytes_sent == 0
        fits = mnt / "d" / MEMBER / "product" / "W51.spw25.cube.I.pbcor.fits"
        assert fits.stat().st_size == 12 * MB and not (mnt / "d" / name).exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- a killed run --------------------------------------------------------------------------------------
def test_sigkill_mid_run_then_rerun_fetches_no_finished_file_again(archive, tmp_path):
    dest = tmp_path / "d"
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(view_of(archive).to_json())
    archive.faults.throttle = 4e6                      # 4 MB/s per connection: the 12 MB tarball takes 3 s
    cmd = [sys.executable, "-m", "almadeliver", "-q", "download", str(plan_json), "--dest", str(dest)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = dest / ".almadeliver" / "journal.json"
    deadline = time.monotonic() + 30
    finished: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists():
            try:
                files = json.loads(journal.read_text())["files"]
            except (ValueError, KeyError):
                files = {}
            finished = {n for n, e in files.items() if e["state"] in (DOWNLOADED, EXTRACTED)}
            if len(finished) >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(finished) >= 3, "the run should have finished some files before the kill"
    first = {n: archive.stats[n].bytes_sent for n in archive.stats.files}
    archive.stats.reset()
    archive.faults.throttle = None
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    sizes = {f.name: f.size for f in plan_of(archive).files}
    for name in finished:
        assert archive.stats[name].bytes_sent == 0, f"{name} was finished and fetched again"
    for name, size in sizes.items():
        assert first.get(name, 0) + archive.stats[name].bytes_sent <= size + 4 * MB  # bar the journal's last beat
    assert (dest / MEMBER / "product" / "W51.spw25.cube.I.pbcor.fits").stat().st_size == 12 * MB
    assert not list(dest.glob("*.part"))


# -- by project code or MOUS: the query stage, then the download ---------------------------------------------
def test_download_by_project_code_and_by_mous_through_the_query_stage(tiny_root, tmp_path, capsys):
    from almadeliver.cli import main
    with LocalArchive(tiny_root, users={"pi_user": "s3cret"}) as a:
        assert main(["-q", "download", "2017.1.01185.S", "--archive", a.url, "--dest", str(tmp_path / "d")]) == 0
        out = capsys.readouterr().out
        assert "fetched 8 files" in out
        # validate runs at the end: the archive's tarballs make a valid tree
        assert f"{tmp_path / 'd' / '2017.1.01185.S'}: flavour pipeline (2 members, raw 2/2, restored 0/2); 0 errors, " \
               "0 warnings" in out
        report = validate(tmp_path / "d" / "2017.1.01185.S")
        assert [(f.check, f.message) for f in report.findings if f.severity.value != "info"] == []
        tree = tmp_path / "d" / "2017.1.01185.S" / "science_goal.uid___A001_X12a3_Xe7" / "group.uid___A001_X12a3_Xe8"
        assert sorted(p.name for p in tree.iterdir()) == ["member.uid___A001_X12a3_Xe9", "member.uid___A001_X12a3_Xeb"]
        assert sorted(p.name for p in (tree / "member.uid___A001_X12a3_Xe9").iterdir()) == [
            "README", "calibration", "log", "product", "qa", "raw", "script"]
        for mous, ebs in (("uid___A001_X12a3_Xe9", ["uid___A002_Xd28a9e_X71b8", "uid___A002_Xd28a9e_X7b4d"]),
                          ("uid___A001_X12a3_Xeb", ["uid___A002_Xd29c1f_X5cf"])):    # raw tarballs unpack into member/raw
            assert sorted(p.name for p in (tree / f"member.{mous}" / "raw").iterdir()) == [f"{e}.asdm.sdm" for e in ebs]
        assert sorted(p.name for p in (tmp_path / "d" / "2017.1.01185.S").iterdir()) == ["science_goal.uid___A001_X12a3_Xe7"]
        assert not list((tmp_path / "d").glob("*.tar"))
        # a proprietary MOUS: refused anonymously, fetched with --user (password from ALMA_PASSWORD)
        args = ["-q", "download", "uid://A001/X1465/X2f66", "--archive", a.url, "--dest", str(tmp_path / "p")]
        assert main(args) == 1
        assert "--user" in capsys.readouterr().err
        os.environ["ALMA_PASSWORD"] = "s3cret"
        try:
            assert main([*args, "--user", "pi_user"]) == 0
        finally:
            del os.environ["ALMA_PASSWORD"]
        assert (tmp_path / "p" / "2019.1.00099.S").is_dir()
