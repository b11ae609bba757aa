"""Issue 15: transfers and untar that survive every fault of the local archive, and say so when they don't.

Every fault flag of `serve`, and pairs of them, against a small project: each file arrives
byte-identical to a plain `tar xf` of the same tarball, or fails with one line, and no file costs
more than a bounded number of bytes. Crafted tarballs served by the archive are refused, kept and
fetched once more; two runs into one destination, Ctrl-C, a dropped query, credentials and the
local archive's answers to malformed requests.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests

import fault_archive as fa
from tiny_archive import tiny_root  # noqa: F401  (the query stage needs ObsCore rows)
from almadeliver.cli import main
from almadeliver.errors import AuthError, BusyError
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile
from almadeliver.sim.archive import Faults, LocalArchive
from almadeliver.transfer.auth import Credentials, login
from almadeliver.transfer.download import TransferConfig, download
from almadeliver.transfer.lock import FolderLock


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return fa.build(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def ref(root, tmp_path_factory) -> dict[str, str]:
    return fa.reference(root, tmp_path_factory.mktemp("ref"))


@pytest.fixture(scope="module")
def archive(root):
    with LocalArchive(root, users={"pi": "s3cret"}) as a:
        yield a


# -- the fault matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*fa.SINGLE, *fa.PAIRS])
def test_fault_matrix(archive, ref, tmp_path, name):
    faults = {**fa.SINGLE, **fa.PAIRS}[name]
    case = fa.run_case(archive, name, faults, tmp_path / "d", ref)
    assert not case.problems, case.problems
    assert len(case.identical) + len(case.refused) == len(case.result.files)
    if not case.refused:        # then the whole tree is tar xf's, file for file
        assert fa.tree(tmp_path / "d") == ref
    # a rerun without faults finishes the job from what was kept
    again = fa.run_case(archive, "rerun", {}, tmp_path / "d", ref)
    assert not again.problems and not again.refused and fa.tree(tmp_path / "d") == ref


@pytest.mark.parametrize("name", ["drop 64 kB", "ignore-range", "ignore-range + drop 64 kB", "503 burst"])
def test_fault_matrix_with_split_ranges(archive, ref, tmp_path, name):
    """The same judgement when large files are fetched as 4 ranges at once (--split 4)."""
    faults = {**fa.SINGLE, **fa.PAIRS}[name]
    config = TransferConfig(**fa.FAST, split=4, split_min_size=100 * fa.KiB, steal_min=16 * fa.KiB)
    case = fa.run_case(archive, name, faults, tmp_path / "d", ref, config)
    assert not case.problems, case.problems
    again = fa.run_case(archive, "rerun", {}, tmp_path / "d", ref)
    assert not again.problems and fa.tree(tmp_path / "d") == ref


def test_ignore_range_and_drop_1_1_mb_ends_with_a_bounded_byte_count(archive, tmp_path, ref):
    """The issue's `serve --ignore-range --drop-after 1100000`, on a file larger than the drop."""
    big = fa.products_name(fa.PROJECT, fa.MOUS, 1, 2)
    archive.faults = Faults(ignore_range=True, drop_after=400_000)
    archive.stats.reset()
    p = fa.plan(archive)
    p.files = [f for f in p.files if f.name == big]
    result = download(p, tmp_path / "d", TransferConfig(**fa.FAST))
    archive.faults = Faults()
    [failed] = result.failed
    size = p.files[0].size
    assert "gave up" in str(failed.error) and "\n" not in str(failed.error)
    assert archive.stats[big].bytes_sent <= 4 * size
    assert archive.stats[big].gets <= 1 + 2 * TransferConfig().retries
    assert (tmp_path / "d" / (big + ".part")).stat().st_size > 0, "the .part is kept"


def test_drops_under_1_mib_make_progress_and_the_part_is_kept(archive, tmp_path):
    big = fa.products_name(fa.PROJECT, fa.MOUS, 1, 2)
    p = fa.plan(archive)
    p.files = [f for f in p.files if f.name == big]
    archive.faults = Faults(drop_after=65536)
    archive.stats.reset()
    result = download(p, tmp_path / "d", TransferConfig(**fa.FAST, untar=False))
    archive.faults = Faults()
    assert result.ok
    assert archive.stats[big].bytes_sent == p.files[0].size, "every byte fetched once"
    assert archive.stats[big].gets == -(-p.files[0].size // 65536)


# -- crafted tarballs from the archive ------------------------------------------------------------------
def _serve_tarball(folder: Path, data: bytes) -> str:
    name = fa.products_name(fa.PROJECT, fa.MOUS, 1, 1)
    files = folder / fa.PROJECT / FILES_DIR
    files.mkdir(parents=True)
    (files / name).write_bytes(data)
    Catalogue(fa.PROJECT, False, [], [CatalogueFile(name, "#this", "application/x-tar", len(data),
                                                    [fa.MOUS.archive])]).save(folder / fa.PROJECT)
    return name


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, data: bytes | None = None, kind=tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if data is not None else 0
    return info, data


def _chain(outside: Path) -> bytes:
    import test_extract
    path = outside.parent / "chain.tar"
    return test_extract._symlink_chain(path, outside).read_bytes()


def _files(n=5, size=30_000) -> bytes:
    return _tar([_member(f"{fa.MEMBER}/product/f{i}.fits", bytes([i + 1]) * size) for i in range(n)])


def _corrupt_middle() -> bytes:
    data = bytearray(_files())
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        offset = tar.getmembers()[2].offset
    data[offset + 5: offset + 15] = b"#" * 10
    return bytes(data)


def _zero_padded() -> bytes:
    data = _files()
    cut = len(data) // 3
    return data[:cut] + bytes(len(data) - cut)


CRAFTED = {
    "symlink chain": (_chain, "symlink"),
    "5000 components": (lambda out: _tar([_member("/".join(["a"] * 5000), b"x")]), "bytes|deep"),
    "corrupt middle header": (lambda out: _corrupt_middle(), "damaged|corrupt"),
    "zero-padded truncation": (lambda out: _zero_padded(), "cut short|damaged|corrupt"),
}


@pytest.mark.parametrize("label", CRAFTED)
def test_crafted_tarball_is_refused_kept_fetched_once_more_and_the_exit_is_non_zero(tmp_path, capsys, label):
    make, why = CRAFTED[label]
    outside = tmp_path / "outside"
    outside.mkdir()
    name = _serve_tarball(tmp_path / "arch", make(outside))
    dest = tmp_path / "dest"
    with LocalArchive(tmp_path / "arch") as a:
        plan_json = tmp_path / "plan.json"
        plan_json.write_text(fa.view(a).to_json())
        code = main(["-q", "download", str(plan_json), "--dest", str(dest), "--what", "products"])
        assert a.stats[name].gets == 2, "fetched once more after the first copy failed"
    err = capsys.readouterr().err
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and name in failed[0]
    import re
    assert re.search(why, failed[0]), failed[0]
    assert "Traceback" not in err
    assert not any(outside.iterdir()), "nothing outside the tree"
    rejected = sorted(p.name for p in (dest / ".almadeliver" / "rejected").iterdir())
    assert rejected == [name, f"{name}.2"], "both copies are kept"
    assert not (dest / fa.PROJECT).exists() or not any(p.is_file() for p in (dest / fa.PROJECT).rglob("*"))


def test_a_tarball_corrupted_in_transit_once_is_fetched_again_and_unpacks(archive, tmp_path, ref):
    """The archive serves a damaged copy once (a right-size tarball with a bad header), then the good one."""
    big = fa.products_name(fa.PROJECT, fa.MOUS, 2, 2)
    path = archive.root / fa.PROJECT / FILES_DIR / big
    good = path.read_bytes()
    bad = bytearray(good)
    with tarfile.open(fileobj=io.BytesIO(good)) as tar:
        second = tar.getmembers()[1].offset
    bad[second + 5: second + 15] = b"#" * 10
    p = fa.plan(archive)
    p.files = [f for f in p.files if f.name == big]
    served = threading.Event()
    original = archive.content.file

    def once(name):                                        # the first answer is the damaged copy
        if name == big and not served.is_set():
            served.set()
            tmp = tmp_path / "bad.tar"
            tmp.write_bytes(bytes(bad))
            from dataclasses import replace
            return replace(original(name), path=tmp)
        return original(name)
    archive.content.file = once
    try:
        result = download(p, tmp_path / "d", TransferConfig(**fa.FAST))
    finally:
        archive.content.file = original
    assert result.ok, [str(f.error) for f in result.failed]
    [r] = result.files
    assert len(r.rejected) == 1 and "corrupt" in r.rejected[0]
    assert (tmp_path / "d" / ".almadeliver" / "rejected" / big).read_bytes() == bytes(bad)
    got = fa.tree(tmp_path / "d")
    arc = next(iter(fa.CONTENT[big]))
    assert got[arc] == ref[arc]


# -- worker threads ---------------------------------------------------------------------------------------
def test_an_exception_in_the_extractor_is_that_files_failure(archive, tmp_path, monkeypatch):
    from almadeliver.transfer import unpack

    def boom(*a, **k):
        raise RecursionError("maximum recursion depth exceeded")
    monkeypatch.setattr(unpack, "extract_tarball", boom)
    hooks = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooks.append(args))
    result = download(fa.plan(archive), tmp_path / "d", TransferConfig(**fa.FAST))
    tarballs = [f for f in result.files if f.name.endswith(".tar")]
    assert tarballs and all(f.status == "failed" and "RecursionError" in str(f.error) for f in tarballs)
    assert not hooks, "no thread died"
    assert all((tmp_path / "d" / f.name).exists() for f in tarballs), "the tarballs are kept"


def test_an_exception_in_a_download_thread_is_that_files_failure(archive, tmp_path, monkeypatch):
    from almadeliver.transfer import download as engine

    def boom(self, job, seg, gen, r):
        raise KeyError("surprise")
    monkeypatch.setattr(engine._Engine, "_receive", boom)
    hooks = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooks.append(args))
    result = download(fa.plan(archive), tmp_path / "d", TransferConfig(**fa.FAST))
    assert len(result.failed) == len(result.files) and not hooks
    assert all("KeyError" in str(f.error) for f in result.failed)


# -- two runs, one destination -------------------------------------------------------------------------
def test_two_concurrent_downloads_into_one_dest_end_byte_identical(archive, tmp_path, ref):
    dest = tmp_path / "d"
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(fa.view(archive).to_json())
    archive.faults = Faults(throttle=150e3)        # the first run takes seconds: the second one starts meanwhile
    archive.stats.reset()
    cmd = [sys.executable, "-m", "almadeliver", "-q", "download", str(plan_json), "--dest", str(dest)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    archive.faults = Faults()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err and "Exception" not in err
    assert any("waiting for almadeliver pid" in err for _out, err in outs)
    assert fa.tree(dest) == ref
    sizes = {f.name: f.size for f in fa.plan(archive).files}
    assert all(archive.stats[n].bytes_sent == s for n, s in sizes.items()), "nothing fetched twice"


def test_a_held_dest_or_member_is_named_with_its_pid(tmp_path):
    with FolderLock(tmp_path / "d"):
        with pytest.raises(BusyError, match=f"pid {os.getpid()}"):
            with FolderLock(tmp_path / "d", wait=False):
                pass
    from types import SimpleNamespace
    from almadeliver.casa.restore import WORK, restore
    member = tmp_path / "member.uid___A001_X1_X2"
    member.mkdir()
    with FolderLock(member, what="restore of", path=member / WORK / "lock"):
        with pytest.raises(BusyError, match="restore of .*member.uid___A001_X1_X2"):
            restore(SimpleNamespace(path=member))


# -- Ctrl-C ------------------------------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_exits_130_and_the_rerun_resumes(archive, tmp_path, ref):
    dest = tmp_path / "d"
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(fa.view(archive).to_json())
    archive.faults = Faults(throttle=100e3)
    cmd = [sys.executable, "-m", "almadeliver", "download", str(plan_json), "--dest", str(dest)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = dest / ".almadeliver" / "journal.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(dest.glob("*.part")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    archive.faults = Faults()
    assert proc.returncode == 130
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert "interrupted; run the same command again to resume" in lines
    assert "Traceback" not in err
    assert journal.exists()
    rerun = subprocess.run([sys.executable, "-m", "almadeliver", "-q", *cmd[3:]],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert fa.tree(dest) == ref


# -- the query stage -------------------------------------------------------------------------------------
def test_a_connection_dropped_while_the_first_tar_header_is_read_is_not_fatal(tiny_root, caplog):
    from almadeliver.archive.client import ArchiveClient
    from almadeliver.archive.projectview import query
    from almadeliver.archive.tap import Selection
    with LocalArchive(tiny_root, faults=Faults(drop_after=3000)) as a:
        view = query(Selection(projects=["2017.1.01185.S"]), ArchiveClient(a.url))
    assert [m.sg for p in view.projects for m in p.mous] == [None, None]
    notes = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert notes and all("the mirror did not answer" in n for n in notes)


def test_a_mirror_that_drops_the_tap_answer_is_retried_then_one_line(tmp_path, capsys):
    """A server that accepts and closes every connection: 'did not answer', retried, then one line."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-votable+xml\r\nContent-Length: 5000\r\n\r\n<VOTA")
            conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        code = main(["query", "2017.1.01185.S", "--archive", f"http://127.0.0.1:{port}"])
    finally:
        stop.set()
        t.join()
        srv.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: no ALMA archive answered")
    assert "unexpected" not in err[0]


# -- credentials -----------------------------------------------------------------------------------------
def test_wrong_password_is_one_line_before_any_transfer(archive, tmp_path, capsys, monkeypatch):
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(fa.view(archive).to_json())
    archive.stats.reset()
    monkeypatch.setenv("ALMA_PASSWORD", "wrong")
    code = main(["-q", "download", str(plan_json), "--dest", str(tmp_path / "d"), "--archive", archive.url,
                 "--user", "pi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["error: the archive refused the login of pi (Invalid user credentials); "
                                 "check the user name and the password (ALMA_PASSWORD, keyring or prompt)"]
    assert archive.stats.bytes_sent == 0 and not archive.stats.files
    monkeypatch.setenv("ALMA_PASSWORD", "s3cret")
    assert main(["-q", "download", str(plan_json), "--dest", str(tmp_path / "d"), "--archive", archive.url,
                 "--user", "pi", "--what", "readme"]) == 0


def test_keycloak_token_endpoint_answers_like_alma(archive):
    url = f"{archive.url}/auth/realms/ALMA/protocol/openid-connect/token"
    form = {"username": "pi", "password": "s3cret", "grant_type": "password", "client_id": "oidc"}
    ok = requests.post(url, data=form, timeout=10)
    assert ok.status_code == 200 and "access_token" in ok.json()
    bad = requests.post(url, data={**form, "password": "nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json() == {"error": "invalid_grant",
                                                     "error_description": "Invalid user credentials"}
    with pytest.raises(AuthError, match="Invalid user credentials"):
        login(requests.Session(), archive.url, Credentials("pi", "nope"))


def test_credentials_never_go_to_a_host_the_plan_names(archive, tmp_path, monkeypatch):
    """A plan whose README URL points at another server: that file is fetched without credentials."""
    from almadeliver.sim.archive import http as server
    seen = []
    dispatch = server._Handler._dispatch

    def spy(self, method):
        seen.append((self.server.archive.url, self.path, self.headers.get("Authorization"), self.headers.get("Cookie")))
        return dispatch(self, method)
    monkeypatch.setattr(server._Handler, "_dispatch", spy)
    readme = fa.readme_name(fa.MOUS)
    session = requests.Session()
    login(session, archive.url, Credentials("pi", "s3cret"))      # hosts: the configured archive's only
    with LocalArchive(archive.root) as foreign:
        p = fa.plan(archive)
        for f in p.files:
            if f.name == readme:
                f.url = f"{foreign.url}/dataPortal/{readme}"
        result = download(p, tmp_path / "d", TransferConfig(**fa.FAST), session)
        foreign_url = foreign.url
    assert result.ok
    at_foreign = [s for s in seen if s[0] == foreign_url]
    at_archive = [s for s in seen if s[0] == archive.url and "/dataPortal/" in s[1]]
    assert [path for _u, path, _a, _c in at_foreign] == [f"/dataPortal/{readme}"]
    assert all(auth is None and cookie is None for _u, _p, auth, cookie in at_foreign)
    assert at_archive and all(auth and auth.startswith("Basic ") for _u, _p, auth, _c in at_archive)


# -- the local archive's answers to malformed requests ------------------------------------------------------
def _raw(archive: LocalArchive, request: bytes) -> bytes:
    with socket.create_connection((archive.host, archive.port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"99999999999"])
def test_bad_content_length_is_a_400_never_a_hang(archive, length):
    answer = _raw(archive, b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Length: " + length +
                  b"\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nREQUEST=doQuery")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_deeply_nested_adql_is_a_400_votable(archive):
    query = "SELECT * FROM ivoa.obscore WHERE " + "(" * 5000 + "1=1" + ")" * 5000
    r = requests.post(f"{archive.url}/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query},
                      timeout=30)
    assert r.status_code == 400 and b"VOTABLE" in r.content.upper() and b"QUERY_STATUS" in r.content
    still = requests.post(f"{archive.url}/tap/sync", timeout=30,
                          data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": "SELECT TOP 1 * FROM ivoa.obscore"})
    assert still.status_code == 200


# -- smaller items ---------------------------------------------------------------------------------------
def test_a_rerun_that_only_unpacks_says_so_and_validates(archive, tmp_path, capsys, ref):
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(fa.view(archive).to_json())
    dest = tmp_path / "d"
    assert main(["-q", "download", str(plan_json), "--dest", str(dest), "--no-untar"]) == 0
    capsys.readouterr()
    assert main(["-q", "download", str(plan_json), "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" not in out and "4 tarballs unpacked" in out
    assert f"{dest / fa.PROJECT}: flavour" in out, "the closing validate ran"
    assert fa.tree(dest) == ref


def test_no_level_is_marked_chosen_when_none_fits(capsys):
    from types import SimpleNamespace
    from almadeliver.casa.diskspace import DiskEstimate
    from almadeliver.cli.restore_cmds import _show_plan
    est = DiskEstimate(raw_mb=100, free_mb=5, extra_scripts=(), target="/data")   # 5 MB free: no level fits
    member = SimpleNamespace(flavour=SimpleNamespace(value="manual"), ebs_in_scripts=[], ebs_in_raw=[])
    plan = SimpleNamespace(path=Path("member.uid___A001_X1_X2"), member=member, estimate=est, spacesaving=3,
                           level_chosen=True, already_calibrated=False, script=None, engine="modular", finished=[],
                           warnings=[], gates=[], mismatched_gates=[], passes_gates=False, total_power=[])
    _show_plan(plan)
    out = capsys.readouterr().out
    assert "<- none fits" in out and "<- chosen" not in out
