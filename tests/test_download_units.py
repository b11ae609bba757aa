"""The download stage's parts that need no server: plan, space check, journal, sniffing, ranges, auth."""
from __future__ import annotations

import json

import pytest
import requests

from almadeliver.archive.model import ArchiveFile, Mous, Project, ProjectView
from almadeliver.errors import AuthError, DiskSpaceError, UsageError
from almadeliver.ids import TarballKind
from almadeliver.transfer import auth
from almadeliver.transfer.ranges import (Segment, content_range_end, content_range_matches, next_ask, split_evenly,
                                         stealable)
from almadeliver.transfer.ranges import steal_point as _steal_point
from almadeliver.transfer.stream import HostGates, backoff_delay, looks_like_html
from almadeliver.transfer.journal import DOWNLOADED, EXTRACTED, Journal
from almadeliver.transfer.plan import check_space, make_plan, mirror_url, parse_what

MOUS = "uid://A001/X13e/X1fe"


def view(files: list[ArchiveFile], archive: str = "https://almascience.eso.org") -> ProjectView:
    m = Mous(MOUS, "uid://A001/X13e/X1fd", "uid://A001/X13e/X1fc", "12m", True, ["uid://A002/X1/X2"],
             ["W51"], ["3"], 12, files)
    return ProjectView(archive, [Project("2013.1.00308.S", "W51", "PI", 2, "Public", "2016-01-01",
                                         ["3"], ["W51"], [m])], rows=12, duplicates_dropped=3)


def afile(name: str, size: int, kind: TarballKind, archive: str = "https://almascience.eso.org") -> ArchiveFile:
    return ArchiveFile(name, f"{archive}/dataPortal/{name}", size, kind, MOUS)


PRODUCTS = afile("2013.1.00308.S_uid___A001_X13e_X1fe_001_of_001.tar", 3_000, TarballKind.PRODUCTS)
AUX = afile("2013.1.00308.S_uid___A001_X13e_X1fe_auxiliary.tar", 2_000, TarballKind.AUXILIARY)
RAW = afile("2013.1.00308.S_uid___A002_X1_X2.asdm.sdm.tar", 5_000, TarballKind.RAW)
README = afile("member.uid___A001_X13e_X1fe.README.txt", 100, TarballKind.README)


def test_plan_selects_kinds_drops_duplicates_and_moves_mirror():
    v = view([PRODUCTS, AUX, RAW, README, RAW])
    plan = make_plan(v, parse_what("products,raw"))
    assert [f.name for f in plan.files] == [PRODUCTS.name, RAW.name]
    assert plan.duplicates_dropped == 3 + 1 and plan.total_bytes == 8_000
    nrao = make_plan(v, parse_what("readme"), "nrao")
    assert nrao.files[0].url == "https://almascience.nrao.edu/dataPortal/member.uid___A001_X13e_X1fe.README.txt"
    local = make_plan(v, parse_what("products"), "http://127.0.0.1:8080/")
    assert local.files[0].url.startswith("http://127.0.0.1:8080/dataPortal/") and local.hosts == {"127.0.0.1:8080"}


def test_plan_reads_the_json_query_writes(tmp_path):
    v = view([PRODUCTS, README])
    again = ProjectView.from_json(v.to_json())
    assert make_plan(again, parse_what("products,readme")).files == make_plan(v, parse_what("products,readme")).files


@pytest.mark.parametrize("bad", ["products,calibrated", "", " , "])
def test_bad_what_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_what(bad)


def test_bad_archive_is_a_usage_error():
    assert mirror_url("ESO") == "https://almascience.eso.org"
    with pytest.raises(UsageError, match="unknown archive"):
        mirror_url("almascience")


def test_space_check_counts_download_plus_unpacked_and_refuses(tmp_path):
    plan = make_plan(view([PRODUCTS, RAW, README]), parse_what("products,raw,readme"))
    space = check_space(plan, tmp_path / "not-yet")
    assert space.download_bytes == 8_100 and space.unpack_bytes == 8_000
    assert check_space(plan, tmp_path, untar=False).unpack_bytes == 0
    huge = make_plan(view([afile(PRODUCTS.name, 10**18, TarballKind.PRODUCTS)]), parse_what("products"))
    with pytest.raises(DiskSpaceError, match="free"):
        check_space(huge, tmp_path)


def test_space_check_skips_what_the_journal_has_and_part_bytes(tmp_path):
    plan = make_plan(view([PRODUCTS, RAW]), parse_what("products,raw"))
    journal = Journal(tmp_path)
    journal.set_state(PRODUCTS.name, PRODUCTS.size, EXTRACTED)
    (tmp_path / (RAW.name + ".part")).write_bytes(b"x" * 1_000)
    space = check_space(plan, tmp_path, journal=Journal(tmp_path))
    assert space.download_bytes == 4_000 and space.unpack_bytes == 5_000


def test_a_part_as_long_as_its_file_or_longer_leaves_nothing_to_download(tmp_path):
    """A .part holding the whole file (fetched, not yet verified and renamed), or more (a stale longer one):
    zero bytes to fetch, not one and not minus one."""
    plan = make_plan(view([PRODUCTS, RAW]), parse_what("products,raw"))
    (tmp_path / (PRODUCTS.name + ".part")).write_bytes(b"x" * PRODUCTS.size)
    (tmp_path / (RAW.name + ".part")).write_bytes(b"x" * (RAW.size + 10))
    space = check_space(plan, tmp_path)
    assert space.download_bytes == 0 and space.unpack_bytes == PRODUCTS.size + RAW.size


def test_exactly_enough_space_fits_and_one_byte_more_does_not(tmp_path):
    """On an empty 32 MiB tmpfs: a 16 MiB file plus the 16 MiB margin fills it exactly and passes;
    one byte more is refused."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        fits = afile("member.uid___A001_X13e_X1fe.README.txt", 16 * 2**20, TarballKind.README)
        space = check_space(make_plan(view([fits]), parse_what("readme")), small)
        assert space.needed + space.margin == space.free_bytes == 32 * 2**20
        over = afile("member.uid___A001_X13e_X1fe.README.txt", 16 * 2**20 + 1, TarballKind.README)
        with pytest.raises(DiskSpaceError, match="to spare"):
            check_space(make_plan(view([over]), parse_what("readme")), small)
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_journal_is_atomic_and_survives_reload(tmp_path):
    j = Journal(tmp_path)
    e = j.entry("a.tar", 10)
    e.segments = [[0, 5, 3], [5, 10, 10]]
    j.save()
    j.set_state("b.tar", 7, DOWNLOADED)
    again = Journal(tmp_path)
    assert again.files["a.tar"].fetched() == 8 and again.state("b.tar", 7) == DOWNLOADED
    assert again.state("b.tar", 8) is None, "a size change means a different file"
    assert [p.name for p in (tmp_path / ".almadeliver").iterdir()] == ["journal.json"], "no temporary file left"
    assert json.loads((tmp_path / ".almadeliver" / "journal.json").read_text())["schema"] == "almadeliver.journal/1"


@pytest.mark.parametrize("ctype, head, html", [
    ("text/html; charset=utf-8", b"", True),
    ("application/x-tar", b"  <!DOCTYPE html>\n<html><body>Login</body></html>", True),
    (None, b"<HTML><HEAD><TITLE>ALMA Science Portal", True),
    ("application/x-tar", b"2013.1.00308.S/science_goal.uid___A001_X13e_X1fc/\x00\x00", False),
    ("text/plain", b"ALMA Cycle 2 data delivery README", False),
])
def test_html_sniffing(ctype, head, html):
    assert looks_like_html(ctype, head) is html


@pytest.mark.parametrize("header, ok", [
    ("bytes 100-199/1000", True),
    ("bytes 100-999/1000", False),      # more than asked
    ("bytes 0-199/1000", False),        # wrong start: the server restarted the file
    ("bytes 100-199/*", True),
    ("bytes 100-199/2000", False),      # another file size
    (None, False),
    ("bytes */1000", False),
])
def test_content_range_must_match(header, ok):
    assert content_range_matches(header, 100, 200, 1000) is ok


def test_backoff_grows_with_jitter_and_is_capped():
    delays = [[backoff_delay(a, 0.5, 8.0) for _ in range(200)] for a in range(6)]
    for a, ds in enumerate(delays):
        d = min(8.0, 0.5 * 2 ** a)
        assert all(d / 2 <= x <= d for x in ds) and len(set(ds)) > 100
    assert max(delays[5]) <= 8.0


def test_credentials_from_env_keyring_or_prompt(monkeypatch):
    monkeypatch.setenv("ALMA_PASSWORD", "s3cret")
    c = auth.get_credentials("pi_user", prompt=lambda _p: pytest.fail("must not prompt"))
    assert c.password == "s3cret" and "s3cret" not in repr(c)
    monkeypatch.delenv("ALMA_PASSWORD")
    assert auth.get_credentials("pi_user", prompt=lambda _p: "typed").password == "typed"
    with pytest.raises(AuthError, match="no password"):
        auth.get_credentials("pi_user", prompt=lambda _p: "")


def test_credentials_go_only_to_archive_hosts():
    creds = auth.Credentials("pi_user", "s3cret")
    a = auth.ArchiveAuth(creds, {"almascience.eso.org", "127.0.0.1:8080"})
    to_archive = requests.Request("GET", "https://almascience.eso.org/dataPortal/x.tar", auth=a).prepare()
    to_local = requests.Request("GET", "http://127.0.0.1:8080/dataPortal/x.tar", auth=a).prepare()
    elsewhere = requests.Request("GET", "https://evil.example.org/x.tar", auth=a).prepare()
    other_port = requests.Request("GET", "http://127.0.0.1:9999/x.tar", auth=a).prepare()
    assert to_archive.headers["Authorization"].startswith("Basic ")
    assert to_local.headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in elsewhere.headers and "Authorization" not in other_port.headers
    assert "s3cret" not in repr(a)


def test_password_never_on_the_command_line():
    from almadeliver.cli.app import app
    import typer.main
    cmd = typer.main.get_command(app).load("download")      # the lazy root group loads it
    names = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert "--user" in names and not any("pass" in n for n in names)


def test_cli_dry_run_prints_plan_counts_totals_and_space(tmp_path, capsys):
    from almadeliver.cli import main
    plan = tmp_path / "plan.json"
    plan.write_text(view([PRODUCTS, AUX, RAW, README, RAW]).to_json())
    assert main(["download", str(plan), "--dest", str(tmp_path / "d"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["products", "3.0", "kB", PRODUCTS.name]
    assert out[4].startswith("4 files (1 products, 1 auxiliary, 1 raw, 1 readme), 10.1 kB from "
                             "https://almascience.eso.org; 4 duplicate listings dropped")
    assert out[5].startswith("space: 20.1 kB still to write") and not (tmp_path / "d").exists()


@pytest.mark.parametrize("args, message", [
    (["missing.json"], "not found"),
    (["plan.json", "--what", "calibrated"], "unknown kind 'calibrated'"),
    (["plan.json", "--archive", "almascience"], "unknown archive 'almascience'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    from almadeliver.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.json").write_text(view([PRODUCTS]).to_json())
    assert main(["download", *args, "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_the_space_check_keeps_a_margin():
    from almadeliver.transfer.plan import SPACE_MARGIN, SpaceCheck
    assert SpaceCheck(1000, 1000, 0).margin == SPACE_MARGIN == 16 * 2**20      # 16 MiB, as the README says
    assert SpaceCheck(50 * SPACE_MARGIN, 50 * SPACE_MARGIN, 0).margin == 2 * SPACE_MARGIN
    assert SpaceCheck(0, 0, 0).margin == 0


@pytest.mark.parametrize("done,end,steal_min", [
    (200_000, 445_440, 16 * 1024),            # a small file: no MiB boundary inside the range
    (3 * 2**20 + 5000, 3 * 2**20 + 200_000, 16 * 1024),   # just past a MiB boundary
    (0, 100 * 2**20, 4 * 2**20),
    (0, 100 * 2**20 + 8192, 4 * 2**20),      # half way is off a MiB boundary; the boundary below it serves
    (2**20 - 10, 2**20 + 70_000, 16 * 1024),
])
def test_steal_point_stays_inside_the_running_range(done, end, steal_min):
    """A thief's half starts past what the victim already has (never at a MiB boundary behind it,
    which re-fetched those bytes and let thieves steal the same bytes back and forth)."""
    mid = _steal_point(done, end, steal_min)
    assert done + steal_min <= mid <= end - steal_min
    if end - done >= 4 * 2**20 + 2 * steal_min:
        assert mid % 2**20 == 0


# -- ranges: asks, splitting, what a thief may take ------------------------------------------------------
def test_asks_start_small_double_and_stop_at_the_rate_or_the_cap():
    """A connection's asks: 4 MiB first, then doubled, up to about 2 s of its rate, never above the cap."""
    kw = dict(seconds=2.0, smallest=4 * 2**20, largest=256 * 2**20)
    assert next_ask(0, 0.0, **kw) == 4 * 2**20
    assert next_ask(4 * 2**20, 1e9, **kw) == 8 * 2**20                 # doubling, the rate allows far more
    assert next_ask(8 * 2**20, 5e6, **kw) == 10_000_000                # 2 s at 5 MB/s
    assert next_ask(8 * 2**20, 1e6, **kw) == 4 * 2**20                 # a slow link: the smallest ask
    assert next_ask(200 * 2**20, 1e9, **kw) == 256 * 2**20             # the cap
    assert next_ask(4 * 2**20, 0.0, **kw) == 4 * 2**20                 # an answer that brought nothing


@pytest.mark.parametrize("size, n, starts", [
    (10, 1, [0]), (10, 3, [0, 4, 8]), (12, 4, [0, 3, 6, 9]), (3, 5, [0, 1, 2]), (0, 3, [])])
def test_a_file_splits_into_contiguous_ranges(size, n, starts):
    segs = split_evenly(size, n)
    assert [s.start for s in segs] == [s.done for s in segs] == starts
    assert [s.end for s in segs] == starts[1:] + [size] * bool(starts)
    assert not any(s.busy or s.asked for s in segs)


def test_a_thief_takes_only_bytes_nobody_asked_for():
    seg = Segment(0, 100, 10, busy=True, asked=60)
    assert stealable(seg) == 40
    seg.asked = 5                         # an answer shorter than asked: from done on
    assert stealable(seg) == 90
    assert stealable(Segment(0, 100, 100, asked=100)) == 0


def test_the_end_of_a_checked_content_range():
    assert content_range_end("bytes 100-199/1000") == 200
    assert content_range_end("bytes 0-0/*") == 1


# -- stream: the per-host semaphore ------------------------------------------------------------------
def test_host_gates_hold_at_most_parallel_leases_per_host_and_take_the_shared_gate():
    import threading
    from contextlib import contextmanager
    taken = []

    @contextmanager
    def shared(host):
        taken.append(host)
        yield
    gates = HostGates(2, shared)
    a, b = gates("h1"), gates("h1")
    assert taken == ["h1", "h1"]
    blocked = threading.Event()

    def third():
        with gates("h1"):
            blocked.set()
    t = threading.Thread(target=third)
    t.start()
    assert not blocked.wait(0.3), "a third stream of h1 waits"
    with gates("h2"):                      # another host has its own leases
        pass
    a.close()
    assert blocked.wait(5), "it starts when a lease is given back"
    t.join()
    b.close()


@pytest.mark.parametrize("done, end, steal_min, point", [
    (0, 100 * 2**20, 4 * 2**20, 50 * 2**20),
    (0, 103 * 2**20, 4 * 2**20, 51 * 2**20),                  # half way (51.5 MiB) down to a MiB boundary
    (2**20 - 10, 2**20 + 70_000, 16 * 1024, 2**20 + 32768),   # the MiB boundary is too near: 4 KiB
    (0, 2**20 + 20_000, 16 * 1024, 532_480),                   # the MiB boundary below is the start: 4 KiB
    (0, 20_000, 16 * 1024, 10_000),                            # too small for either: half way
])
def test_steal_point_exactly(done, end, steal_min, point):
    assert _steal_point(done, end, steal_min) == point


@pytest.mark.parametrize("header, ok", [
    ("bytes 101-199/1000", False),            # starts after the asked byte: a gap
    ("bytes 100-100/1000", True),             # one byte is an answer
    ("bytes 100-99/1000", False),             # ends before it starts
])
def test_content_range_edges(header, ok):
    assert content_range_matches(header, 100, 200, 1000) is ok
