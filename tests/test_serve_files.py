"""The local archive's DataLink and dataPortal: answers shaped like ALMA's, files, login and faults."""
from __future__ import annotations

import time

import io
import os
import signal
import subprocess
import sys
import tarfile
import threading

import pytest
import requests
from astropy.io.votable import parse as parse_votable

from almadeliver.ids import Uid, auxiliary_name, cycle0_name, products_name
from almadeliver.sim.archive import Faults, LocalArchive
from tiny_archive import (C0_MOUS, CYCLE0, MOUS_12M, PROP_MOUS, PROPRIETARY, PUBLIC, archive, fresh,  # noqa: F401
                          tiny_root)

PRODUCTS = products_name(PUBLIC, Uid.parse(MOUS_12M), 1, 1)
PROP_PRODUCTS = products_name(PROPRIETARY, Uid.parse(PROP_MOUS), 1, 1)


def datalink(archive, id_: str, **kw):
    r = requests.get(f"{archive.url}/datalink/sync", params={"ID": id_}, timeout=30, **kw)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-votable+xml")
    return parse_votable(io.BytesIO(r.content))


def rows_of(vot) -> list[dict]:
    table = vot.get_first_table().to_table()
    def value(v):
        return None if getattr(v, "mask", False) is True or (isinstance(v, str) and v == "") else v
    return [{c: value(row[c]) for c in table.colnames} for row in table]


def on_disk(root, project, name) -> bytes:
    return (root / project / "files" / name).read_bytes()


# -- DataLink -----------------------------------------------------------------------------------
def _structure(vot):
    results = [r for r in vot.resources if r.type == "results"]
    services = [r for r in vot.resources if r.type == "meta"]
    fields = [(f.name, f.datatype, f.arraysize, f.ucd, f.unit) for f in results[0].tables[0].fields]
    return results, services, fields


def test_datalink_matches_the_real_answers_structure(archive, real):
    real_vot = parse_votable(str(real / "archive" / "alma-datalink.xml"))
    ours = datalink(archive, MOUS_12M)
    real_results, real_services, real_fields = _structure(real_vot)
    results, services, fields = _structure(ours)
    assert fields == real_fields
    assert len(results) == len(real_results) == 1
    assert [i.name for i in results[0].infos] == [i.name for i in real_results[0].infos]
    assert {s.utype for s in services} == {s.utype for s in real_services} == {"adhoc:service"}
    assert [[p.name for p in s.params] for s in services] == [[p.name for p in s.params] for s in real_services]
    assert [s.ID for s in services] == [f"DataLink.{PRODUCTS}", f"DataLink.{auxiliary_name(PUBLIC, Uid.parse(MOUS_12M))}"]
    rows = rows_of(ours)
    real_rows = rows_of(real_vot)
    # same kinds of rows in the same order: README, products + service, auxiliary + service, raw ASDMs
    kinds = [(r["semantics"], r["service_def"] is not None) for r in rows]
    real_kinds = [(r["semantics"], r["service_def"] is not None) for r in real_rows]
    assert kinds[:5] == real_kinds[:5]
    assert {k for k in kinds} == {k for k in real_kinds}
    for r in rows:
        if r["service_def"]:
            assert r["access_url"] is None and r["content_type"] == "application/x-votable+xml;content=datalink"
        else:
            assert r["access_url"] == f"{archive.url}/dataPortal/{r['access_url'].rsplit('/', 1)[1]}"
            assert r["readable"] is True or r["readable"] == True  # noqa: E712 (numpy bool)
    access = {s.ID: [p.value for p in s.params if p.name == "accessURL"][0] for s in services}
    assert access[f"DataLink.{PRODUCTS}"] == f"{archive.url}/datalink/sync?ID={PRODUCTS}"


def test_nested_datalink_lists_tarball_members_served_one_by_one(archive, tiny_root):
    rows = rows_of(datalink(archive, PRODUCTS))
    # each FITS product row is followed by its #cutout row (a SODA service, no file: alma-datalink-recurse-this.xml)
    cutouts = [i for i, r in enumerate(rows) if r["semantics"] == "#cutout"]
    assert cutouts and all(rows[i - 1]["access_url"].endswith(".fits") and rows[i]["service_def"] == "SODA.sync"
                           and not rows[i]["access_url"] for i in cutouts)
    rows = [r for r in rows if r["access_url"]]
    with tarfile.open(tiny_root / PUBLIC / "files" / PRODUCTS) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
    # served under the file name, or (a name two tarballs share, like README) under the dotted tar path
    by_served_name = {**{p.rsplit("/", 1)[1]: d for p, d in members.items()}, **{p.replace("/", "."): d for p, d in members.items()}}
    served = [r["access_url"].rsplit("/", 1)[1] for r in rows]
    assert len(served) == len(members) and set(served) <= set(by_served_name)
    readme = next(n for n in served if n.endswith("README"))
    assert readme == next(p for p in members if p.endswith("/README")).replace("/", ".")
    assert all(r["ID"] == PRODUCTS for r in rows)
    fits = next(r for r in rows if r["access_url"].endswith(".pbcor.fits"))
    assert fits["description"] == "Download dataset of type: product, and class: SCIENCE."
    aux = auxiliary_name(PUBLIC, Uid.parse(MOUS_12M))
    log_row = next(r for r in rows_of(datalink(archive, aux)) if r["access_url"].endswith(".casa_commands.log"))
    assert log_row["description"] == f"Download documentation for log/{aux}|LOG."   # ALMA's wording
    for r, name in zip(rows, served):
        body = requests.get(r["access_url"], timeout=30)
        assert body.status_code == 200
        assert body.content == by_served_name[name] and len(body.content) == r["content_length"]


def test_cycle0_tarballs_are_listed_under_every_mous(archive):
    names = {cycle0_name(CYCLE0, "2012-12-05", p, 2) for p in (1, 2)}
    for mous in C0_MOUS:
        listed = {r["access_url"].rsplit("/", 1)[1] for r in rows_of(datalink(archive, mous)) if r["access_url"]}
        assert listed == names


def test_unknown_id_answers_a_not_found_fault_row(archive):
    rows = rows_of(datalink(archive, f"{MOUS_12M}.source.Orion_KL.spw.25"))
    assert len(rows) == 1
    assert rows[0]["error_message"] == f"NotFoundFault: {MOUS_12M}.source.Orion_KL.spw.25"
    assert rows[0]["access_url"] is None


def test_proprietary_rows_are_readable_only_when_logged_in(archive):
    anonymous = [r for r in rows_of(datalink(archive, PROP_MOUS)) if r["access_url"]]
    assert anonymous and not any(r["readable"] for r in anonymous)
    logged_in = [r for r in rows_of(datalink(archive, PROP_MOUS, auth=("pi", "secret"))) if r["access_url"]]
    assert all(r["readable"] for r in logged_in)


# -- dataPortal -----------------------------------------------------------------------------------
def test_head_and_get_answer_the_file(archive, tiny_root):
    data = on_disk(tiny_root, PUBLIC, PRODUCTS)
    url = f"{archive.url}/dataPortal/{PRODUCTS}"
    head = requests.head(url, timeout=30)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["Content-Disposition"] == f"attachment; filename={PRODUCTS}"
    assert head.headers["Content-Type"] == "application/x-tar"
    assert requests.get(url, timeout=30).content == data
    assert requests.get(f"{archive.url}/dataPortal/nothere.tar", timeout=30).status_code == 404


@pytest.mark.parametrize("header, start, end", [("bytes=100-", 100, None), ("bytes=100-199", 100, 200),
                                                ("bytes=-50", -50, None), ("bytes=0-999999999", 0, None)])
def test_one_range_gives_206(archive, tiny_root, header, start, end):
    data = on_disk(tiny_root, PUBLIC, PRODUCTS)
    r = requests.get(f"{archive.url}/dataPortal/{PRODUCTS}", headers={"Range": header}, timeout=30)
    part = data[start:end]
    assert r.status_code == 206 and r.content == part
    first = len(data) + start if start < 0 else start
    assert r.headers["Content-Range"] == f"bytes {first}-{first + len(part) - 1}/{len(data)}"
    assert r.headers["Content-Length"] == str(len(part))


def test_several_ranges_or_a_bad_range(archive, tiny_root):
    data = on_disk(tiny_root, PUBLIC, PRODUCTS)
    url = f"{archive.url}/dataPortal/{PRODUCTS}"
    several = requests.get(url, headers={"Range": "bytes=0-9,20-29"}, timeout=30)
    assert several.status_code == 200 and several.content == data
    past = requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=30)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"


def test_proprietary_files_need_credentials_or_a_session(archive, tiny_root):
    url = f"{archive.url}/dataPortal/{PROP_PRODUCTS}"
    assert requests.head(url, timeout=30).status_code == 401
    anonymous = requests.get(url, timeout=30)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    assert requests.get(url, auth=("pi", "wrong"), timeout=30).status_code == 401
    assert requests.get(url, auth=("pi", "secret"), timeout=30).content == on_disk(tiny_root, PROPRIETARY, PROP_PRODUCTS)
    session = requests.Session()
    assert session.get(f"{archive.url}/dataPortal/login", timeout=30).status_code == 401
    login = session.get(f"{archive.url}/dataPortal/login", auth=("pi", "secret"), timeout=30)
    assert login.status_code == 200 and "ALMA_SESSION" in session.cookies
    assert session.get(url, timeout=30).status_code == 200
    assert requests.get(url, cookies={"ALMA_SESSION": "forged"}, timeout=30).status_code == 401


def test_stats_count_requests_and_bytes(fresh, tiny_root):
    size = len(on_disk(tiny_root, PUBLIC, PRODUCTS))
    url = f"{fresh.url}/dataPortal/{PRODUCTS}"
    requests.head(url, timeout=30)
    requests.get(url, timeout=30)
    requests.get(url, headers={"Range": "bytes=1000-"}, timeout=30)
    stats = fresh.stats[PRODUCTS]
    expected = (1, 2, size + size - 1000)
    deadline = time.monotonic() + 5     # the server books a body once sendfile returns, just after the client has it
    while (stats.heads, stats.gets, stats.bytes_sent) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (stats.heads, stats.gets, stats.bytes_sent) == expected
    fresh.stats.reset()
    assert fresh.stats[PRODUCTS].gets == 0 and fresh.stats.bytes_sent == 0


def test_several_clients_at_once(fresh, tiny_root):
    fresh.faults.throttle = 100_000        # slow streams, so that they overlap
    names = [PRODUCTS, auxiliary_name(PUBLIC, Uid.parse(MOUS_12M)), cycle0_name(CYCLE0, "2012-12-05", 1, 2),
             cycle0_name(CYCLE0, "2012-12-05", 2, 2)]
    got: dict[str, bytes] = {}

    def fetch(name):
        got[name] = requests.get(f"{fresh.url}/dataPortal/{name}", timeout=60).content

    threads = [threading.Thread(target=fetch, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        project = CYCLE0 if name.startswith(CYCLE0) else PUBLIC
        assert got[name] == on_disk(tiny_root, project, name)
    assert fresh.stats.peak_streams >= 2


def test_stop_ends_open_downloads_and_frees_the_port(tiny_root):
    server = LocalArchive(tiny_root, faults=Faults(throttle=2_000)).start()
    url = f"{server.url}/dataPortal/{PRODUCTS}"
    response = requests.get(url, stream=True, timeout=30)
    next(response.iter_content(512))
    server.stop()
    with pytest.raises(requests.exceptions.RequestException):
        for _ in response.iter_content(4096):
            pass
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


# -- faults ----------------------------------------------------------------------------------------
def test_throttle_latency_and_slow_first_byte_keep_the_answers_whole(fresh, tiny_root):
    """The slowing faults change when bytes arrive, never which: how slow they are is measured as ratios
    in benchmarks/bench_server.py, not asserted here."""
    body = on_disk(tiny_root, PUBLIC, PRODUCTS)
    fresh.faults.throttle = 1_000_000
    assert requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", timeout=30).content == body
    ranged = requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", headers={"Range": "bytes=100-1099"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == body[100:1100]
    fresh.faults.throttle = None
    fresh.faults.latency = 0.05
    assert "<vosi:available>true</vosi:available>" in requests.get(f"{fresh.url}/tap/availability", timeout=30).text
    fresh.faults.latency = 0.0
    fresh.faults.slow_first_byte = 0.05
    with requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", stream=True, timeout=30) as response:
        assert response.status_code == 200 and b"".join(response.iter_content(4096)) == body


def test_drop_after_cuts_the_body(fresh):
    fresh.faults.drop_after = 5000
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", timeout=30)
    assert fresh.stats[PRODUCTS].bytes_sent == 5000
    fresh.faults.drop_after = None
    assert requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", timeout=30).status_code == 200


def test_ignore_range_answers_the_whole_file(fresh, tiny_root):
    fresh.faults.ignore_range = True
    r = requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", headers={"Range": "bytes=100-"}, timeout=30)
    assert r.status_code == 200 and "Content-Range" not in r.headers
    assert r.content == on_disk(tiny_root, PUBLIC, PRODUCTS)


def test_html_instead_answers_a_login_page_with_200(fresh):
    fresh.faults.html_instead = True
    r = requests.get(f"{fresh.url}/dataPortal/{PRODUCTS}", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.text.lstrip().lower().startswith("<!doctype html") and "Content-Disposition" not in r.headers


def test_fail_503_is_a_burst_then_recovery(fresh):
    fresh.faults.fail_503 = 2
    url = f"{fresh.url}/dataPortal/{PRODUCTS}"
    assert [requests.head(url, timeout=30).status_code for _ in range(3)] == [503, 503, 200]
    assert fresh.faults.fail_503 == 0
    assert requests.get(f"{fresh.url}/tap/availability", timeout=30).status_code == 200


# -- CLI --------------------------------------------------------------------------------------------
def test_cli_serves_until_interrupted(tiny_root):
    proc = subprocess.Popen([sys.executable, "-m", "almadeliver", "serve", str(tiny_root), "--port", "0",
                             "--throttle", "5", "--latency", "10", "--fail-503", "1", "--user", "pi:secret"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("local ALMA archive at http://127.0.0.1:")
        url = first.split()[4]
        lines = [proc.stdout.readline() for _ in range(4)]
        assert any(PUBLIC in line and "2 MOUS, 12 ObsCore rows" in line for line in lines)
        assert any(PROPRIETARY in line and "proprietary" in line for line in lines)
        prop = f"{url}/dataPortal/{PROP_PRODUCTS}"
        assert requests.head(prop, timeout=30).status_code == 503
        assert requests.head(prop, timeout=30).status_code == 401
        assert requests.head(prop, auth=("pi", "secret"), timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "secret" not in out + err


def test_cli_rejects_a_folder_without_projects(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "almadeliver", "serve", str(tmp_path), "--port", "0"],
                          capture_output=True, text=True, timeout=60, env={**os.environ})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no simulated project (catalogue.json) under")
    assert len(proc.stderr.strip().splitlines()) == 1
