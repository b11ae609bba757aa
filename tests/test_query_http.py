"""query over real HTTP on 127.0.0.1: mirror fallback, server errors, the Range read of the science goal.

A small canned server (one TAP answer, DataLink answers, tarballs with Range) stands in for the archive
here; tests/test_query_archive.py runs the same paths against almadeliver's LocalArchive.
"""
from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from astropy.io.votable import from_table
from astropy.table import Table

from almadeliver.archive.client import ArchiveClient
from almadeliver.archive.projectview import query
from almadeliver.archive.tap import Selection
from almadeliver.cli import main
from almadeliver.errors import ArchiveUnreachable, NotFoundError, QueryError
from almadeliver.ids import Uid, products_name, raw_name
from almadeliver.packaging.tarballs import write_tar
from test_query import obscore_rows

PROJECT, GOUS = "2019.1.00458.S", "uid://A001/X1465/X2f64"
MOUS = ["uid://A001/X1465/X2f66", "uid://A001/X1465/X2f68"]
EBS = {MOUS[0]: ["uid://A002/Xe1d2cb/X9a1", "uid://A002/Xe1d2cb/X1f"], MOUS[1]: ["uid://A002/Xe1f219/X6d0"]}
SG = "uid://A001/X1465/X2f62"


def _votable(table: Table, status: str = "OK", message: str = "") -> bytes:
    vot = from_table(table)
    from astropy.io.votable.tree import Info
    vot.resources[0].type = "results"
    info = Info(name="QUERY_STATUS", value=status)
    info.content = message or None
    vot.resources[0].infos.append(info)
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


class Archive:
    """Canned answers over real HTTP: TAP rows, DataLink per MOUS, files with Range."""

    def __init__(self, tmp_path, tap_status=200, rows: Table | None = None):
        self.rows = obscore_rows(PROJECT, EBS, GOUS) if rows is None else rows
        self.files: dict[str, bytes] = {}
        tree = tmp_path / PROJECT
        for mous in MOUS:
            member = tree / f"science_goal.{Uid.parse(SG).disk}" / f"group.{Uid.parse(GOUS).disk}" / f"member.{Uid.parse(mous).disk}"
            (member / "product").mkdir(parents=True)
            (member / "product" / "cube.fits").write_bytes(b"F" * 30_000)
            tar = write_tar(tmp_path / products_name(PROJECT, Uid.parse(mous), 1, 1),
                            [(str(p.relative_to(tmp_path)), p) for p in [tree, *member.rglob("*")]])
            self.files[tar.name] = tar.read_bytes()
            for eb in EBS[mous]:
                self.files[raw_name(PROJECT, Uid.parse(eb))] = b"R" * 2048
        self.tap_status = tap_status
        self.requests: list[str] = []
        self.ranges: list[str] = []
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, ctype="application/x-votable+xml", headers=()):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                archive.requests.append(self.path)
                self.rfile.read(int(self.headers["Content-Length"]))
                if archive.tap_status == 503:
                    return self._send(503, b"<html>maintenance</html>", "text/html")
                if archive.tap_status == 400:
                    return self._send(400, _votable(Table(names=["x"], dtype=[int]), "ERROR",
                                                    "Column 'foo' does not exist in table ivoa.obscore"))
                self._send(200, _votable(archive.rows))

            def do_GET(self):
                url = urlsplit(self.path)
                archive.requests.append(url.path)
                if url.path == "/datalink/sync":
                    mous = parse_qs(url.query)["ID"][0]
                    names = [products_name(PROJECT, Uid.parse(mous), 1, 1)] + [raw_name(PROJECT, Uid.parse(e)) for e in EBS[mous]]
                    base = f"http://{self.headers['Host']}/dataPortal/"
                    t = Table(rows=[(mous, base + n, "", "", "#progenitor" if n.endswith("sdm.tar") else "#this",
                                     "", "application/x-tar", len(archive.files[n]), True) for n in names],
                              names=("ID", "access_url", "service_def", "error_message", "semantics", "description",
                                     "content_type", "content_length", "readable"))
                    return self._send(200, _votable(t))
                data = archive.files[url.path.rsplit("/", 1)[1]]
                rng = self.headers.get("Range")
                archive.ranges.append(rng)
                a, b = (int(x) for x in rng.removeprefix("bytes=").split("-"))
                self._send(206, data[a:b + 1], "application/x-tar",
                           [("Content-Range", f"bytes {a}-{min(b, len(data) - 1)}/{len(data)}")])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path)
    yield a
    a.close()


def test_project_view_over_http_with_sg_from_one_range_request(archive):
    view = query(Selection(projects=[PROJECT]), ArchiveClient(archive.url))
    (p,) = view.projects
    assert [m.uid for m in p.mous] == MOUS and all(m.sg == SG for m in p.mous)
    assert [m.ebs for m in p.mous] == [sorted(EBS[MOUS[0]]), EBS[MOUS[1]]]
    assert archive.ranges == ["bytes=0-10239"] * 2            # one small Range request per MOUS
    assert len(view.files()) == 5 and view.archive == archive.url


def test_falls_back_to_the_next_mirror_and_says_so(archive, tmp_path, caplog):
    down = Archive(tmp_path / "down", tap_status=503)
    try:
        client = ArchiveClient(mirrors=["http://127.0.0.1:9", down.url, archive.url])
        view = query(Selection(projects=[PROJECT]), client)
    finally:
        down.close()
    assert view.archive == archive.url and client.url == archive.url
    notes = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert notes[0].startswith("http://127.0.0.1:9 did not answer the TAP query (no connection); trying")
    assert notes[1].startswith(f"{down.url} did not answer the TAP query (HTTP 503); trying {archive.url}")


def test_unreachable_names_every_mirror_tried(tmp_path):
    with pytest.raises(ArchiveUnreachable, match=r"tried http://127.0.0.1:9, http://127.0.0.1:7"):
        query(Selection(projects=[PROJECT]), ArchiveClient(mirrors=["http://127.0.0.1:9", "http://127.0.0.1:7"]))


def test_adql_error_from_the_server_is_one_clear_line(tmp_path, capsys):
    bad = Archive(tmp_path, tap_status=400)
    try:
        with pytest.raises(QueryError, match="Column 'foo' does not exist"):
            query(Selection(where=["foo = 1"]), ArchiveClient(bad.url))
        assert main(["query", "--where", "foo = 1", "--archive", bad.url]) == 1
    finally:
        bad.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the archive rejected the query: Column 'foo' does not exist in table ivoa.obscore; "
                   "check the ADQL given with --where"]


def test_cli_json_plan_and_errors(archive, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert main(["query", PROJECT, "--archive", archive.url, "--format", "json", "--output", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "6 rows" not in out and "8 rows -> 2 MOUS, 3 EBs; 5 files, 0 duplicates dropped" in out
    from almadeliver.archive.model import ProjectView
    assert len(ProjectView.from_json(plan.read_text()).files()) == 5
    assert main(["query", "2019.1.458.S", "--archive", archive.url]) == 2   # bad usage: exit 2, as the README says
    assert main(["query", "uid://A001/X1465", "--archive", archive.url]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: '2019.1.458.S' is not an ALMA project code; project codes look like 2013.1.00308.S: "
                   "year.cycle.number.type, the cycle digit or A (DDT), the type one to three capital letters "
                   "(S, L, T, V, P, E, SV, CSV)",
                   "error: 'uid://A001/X1465' is not an ALMA uid; uids look like uid://A001/X13e/X1fe or "
                   "uid___A001_X13e_X1fe (A002 for EBs and Cycle 1 OUSs)"]


def test_unknown_project(tmp_path):
    empty = Archive(tmp_path, rows=obscore_rows(PROJECT, EBS, GOUS)[:0])
    try:
        with pytest.raises(NotFoundError, match="project 2099.1.00001.S is not in the archive at http://127.0.0.1"):
            query(Selection(projects=["2099.1.00001.S"]), ArchiveClient(empty.url))
        with pytest.raises(NotFoundError, match="uid___A001_X1_X2: no MOUS or GOUS with this uid"):
            query(Selection(uids=["uid___A001_X1_X2"]), ArchiveClient(empty.url))
        with pytest.raises(NotFoundError, match="nothing in the archive at .* matches the selection"):
            query(Selection(bands=[9]), ArchiveClient(empty.url))
    finally:
        empty.close()
