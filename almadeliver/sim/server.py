"""A local ALMA archive on 127.0.0.1: TAP, DataLink and dataPortal over simulated projects.

``LocalArchive(root)`` serves every project ``almadeliver simulate`` wrote under ``root``
(``<project>/catalogue.json`` + ``<project>/files/<name>``) the way the ALMA archive does
(ALMA-FACTS section 2), so that astroquery, pyvo and almadeliver itself run unmodified against it.
Faults (throttling, latency, dropped connections, ignored Range, HTML login pages, 503 bursts, a
slow first byte) are set per instance and may be changed between requests.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import secrets
import socket
import sys
import sqlite3
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from ..archive.obscore import OBSCORE_COLUMNS, Column
from ..errors import UsageError
from . import votable
from .adql import AdqlError, TableDef, install_functions, translate
from .catalogue import FILES_DIR, Catalogue, CatalogueFile, TarMember, find_projects

log = logging.getLogger("almadeliver.serve")

DATALINK_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.0"
DATALINK_CONTENT_TYPE = "application/x-votable+xml;content=datalink"
SESSION_COOKIE = "ALMA_SESSION"
_SEMANTICS_ORDER = {"#documentation": 0, "#this": 1, "#auxiliary": 2, "#progenitor": 3}
_CHUNK = 256 * 1024

# FIELD metadata ALMA's TAP writes for some columns (alma-shapes.xml); the rest come from obscore.py
_UTYPES = {
    "obs_publisher_did": ("obscore:Curation.PublisherDID", ""),
    "s_ra": ("obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1", "adql:DOUBLE"),
    "s_dec": ("obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2", "adql:DOUBLE"),
    "frequency": ("obscore:Char.SpectralAxis.Coverage.Location.refval", "adql:DOUBLE"),
    "s_region": ("obscore:Char.SpatialAxis.Coverage.Support.Area", "adql:REGION"),
}
_SQL_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "INTEGER", "double": "REAL", "boolean": "INTEGER"}

KEYCLOAK_REALM = "/auth/realms/ALMA"
KEYCLOAK_TOKEN = f"{KEYCLOAK_REALM}/protocol/openid-connect/token"
MAX_POST_BYTES = 1 << 20       # TAP and DataLink forms are small; a larger body is refused, never awaited
MAX_QUERY_CHARS = 100_000


def _content_length(value: str | None) -> int | None:
    """A request's Content-Length as a byte count; None when malformed, negative or too large."""
    if value is None or value.strip() == "":
        return 0
    text = value.strip()
    if not text.isdigit():
        return None
    n = int(text)
    return n if n <= MAX_POST_BYTES else None


LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>ALMA Science Portal - Log in</title></head>
<body><h1>Central Authentication Service</h1>
<form method="post" action="/cas/login"><input name="username"/><input name="password" type="password"/>
<input type="submit" value="LOGIN"/></form></body></html>
"""


@dataclass
class Faults:
    """What the archive gets wrong, per server instance; may be changed between requests."""

    throttle: float | None = None      # bytes/s per connection
    latency: float = 0.0               # seconds added before each answer
    drop_after: int | None = None      # close the connection after this many body bytes (per response)
    ignore_range: bool = False         # answer 200 + whole file even when Range is asked
    html_instead: bool = False         # answer 200 text/html login page instead of files
    fail_503: int = 0                  # answer 503 to the next N file requests (a burst), then recover
    slow_first_byte: float = 0.0       # seconds before the first body byte
    early_range: int = 0               # answer a Range with a 206 starting this many bytes earlier (honest Content-Range)
    datalink_status: int | None = None  # answer every DataLink request with this HTTP status (401, 403, 404, 5xx), plain text
    tap_limit: int | None = None       # the TAP service's own row limit: longer answers end with QUERY_STATUS OVERFLOW


@dataclass
class FileStats:
    """What the local archive served of one file: body bytes, GETs, HEADs, ranges, open streams."""
    bytes_sent: int = 0                # body bytes written
    gets: int = 0
    heads: int = 0


class ArchiveStats:
    """What the server sent, per file name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files: dict[str, FileStats] = {}
        self.requests = 0              # every HTTP request, any path
        self.active_streams = 0        # file bodies being sent now
        self.peak_streams = 0          # most file bodies sent at the same time

    def __getitem__(self, name: str) -> FileStats:
        return self.files.get(name, FileStats())

    @property
    def bytes_sent(self) -> int:
        """Body bytes served, all files together."""
        return sum(f.bytes_sent for f in self.files.values())

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self.files.clear()
            self.requests = self.peak_streams = 0

    def _request(self) -> None:
        with self._lock:
            self.requests += 1

    def _count(self, name: str, method: str) -> None:
        with self._lock:
            entry = self.files.setdefault(name, FileStats())
            if method == "HEAD":
                entry.heads += 1
            else:
                entry.gets += 1

    def _sent(self, name: str, nbytes: int) -> None:
        with self._lock:
            self.files.setdefault(name, FileStats()).bytes_sent += nbytes

    def _stream(self, delta: int) -> None:
        with self._lock:
            self.active_streams += delta
            self.peak_streams = max(self.peak_streams, self.active_streams)


@dataclass
class ServedFile:
    """A byte range of a file on disk served at /dataPortal/<name> (a whole file or a tar member)."""

    name: str
    path: Path
    content_type: str
    proprietary: bool
    offset: int = 0
    size: int | None = None            # None: the whole file (read from disk when served)

    def length(self) -> int:
        """The size the archive declares (the file's own size unless set)."""
        return self.path.stat().st_size if self.size is None else self.size


# -- what is served ----------------------------------------------------------------------------
class ArchiveContent:
    """The projects under a folder: files, DataLink entries and the ObsCore database."""

    def __init__(self, root: Path):
        self.root = Path(root)
        folders = find_projects(self.root)
        if not folders:
            raise UsageError(f"no simulated project (catalogue.json) under {self.root}",
                             "run `almadeliver simulate` first, or name the folder it wrote")
        self.catalogues: list[Catalogue] = []
        self.files: dict[str, ServedFile] = {}
        self.by_id: dict[str, list[tuple[CatalogueFile, bool]]] = {}
        self.tarballs: dict[str, tuple[CatalogueFile, bool, Path]] = {}
        self._members: dict[str, tuple[str, TarMember]] = {}  # served name -> (tarball, member)
        self.member_names: dict[tuple[str, str], str] = {}     # (tarball, member path) -> served name
        self._lock = threading.Lock()
        for folder in folders:
            cat = Catalogue.load(folder)
            self.catalogues.append(cat)
            for f in cat.files:
                path = folder / FILES_DIR / f.name
                self.files[f.name] = ServedFile(f.name, path, f.content_type, cat.proprietary)
                for id_ in f.ids:
                    self.by_id.setdefault(id_, []).append((f, cat.proprietary))
                if f.members:
                    self.tarballs[f.name] = (f, cat.proprietary, path)
        self._name_members()
        self.db = self._database()
        self.db_lock = threading.Lock()

    def _name_members(self) -> None:
        """Members are served under their file name, like ALMA's; a name used twice gets its tar path."""
        counts = Counter(m.path.rsplit("/", 1)[-1] for f, _, _ in self.tarballs.values() for m in f.members)
        for tar_name, (f, _, _) in self.tarballs.items():
            for m in f.members:
                base = m.path.rsplit("/", 1)[-1]
                name = base if counts[base] == 1 and base not in self.files else m.path.replace("/", ".")
                self.member_names[(tar_name, m.path)] = name
                self._members[name] = (tar_name, m)

    @property
    def projects(self) -> list[str]:
        """The project codes served."""
        return [c.project for c in self.catalogues]

    def file(self, name: str) -> ServedFile | None:
        """A delivery file, or a member of a served tarball (located in the tar on first use)."""
        served = self.files.get(name)
        if served is not None or name not in self._members:
            return served
        tar_name, member = self._members[name]
        _, proprietary, path = self.tarballs[tar_name]
        with self._lock:
            if name not in self.files:
                self._locate_members(tar_name, path, proprietary)
        return self.files.get(name)

    def _locate_members(self, tar_name: str, path: Path, proprietary: bool) -> None:
        wanted = {m.path: m for m in self.tarballs[tar_name][0].members}
        with tarfile.open(path) as tar:
            for info in tar:
                member = wanted.get(info.name)
                if member is not None and info.isreg():
                    name = self.member_names[(tar_name, info.name)]
                    self.files[name] = ServedFile(name, path, member.content_type, proprietary,
                                                  info.offset_data, info.size)

    # ObsCore and TAP_SCHEMA in SQLite
    def _database(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        install_functions(db)
        cols = ", ".join(f'"{c.name}" {_SQL_TYPES[c.datatype]}' for c in OBSCORE_COLUMNS)
        db.execute(f"CREATE TABLE obscore ({cols})")
        marks = ", ".join("?" for _ in OBSCORE_COLUMNS)
        for cat in self.catalogues:
            db.executemany(f"INSERT INTO obscore VALUES ({marks})",
                           [tuple(row.get(c.name) for c in OBSCORE_COLUMNS) for row in cat.obscore])
        for table, (columns, rows) in _tap_schema().items():
            names = ", ".join(f'"{c}"' for c in columns)
            db.execute(f"CREATE TABLE {table} ({names})")
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in columns)})", rows)
        db.commit()
        return db


TAP_TABLES = {
    "ivoa.obscore": TableDef("ivoa.obscore", "obscore", tuple(c.name for c in OBSCORE_COLUMNS)),
    "TAP_SCHEMA.schemas": TableDef("TAP_SCHEMA.schemas", "tap_schema_schemas",
                                   ("schema_name", "description", "utype", "schema_index")),
    "TAP_SCHEMA.tables": TableDef("TAP_SCHEMA.tables", "tap_schema_tables",
                                  ("schema_name", "table_name", "table_type", "description", "utype", "table_index")),
    "TAP_SCHEMA.columns": TableDef("TAP_SCHEMA.columns", "tap_schema_columns",
                                   ("table_name", "column_name", "datatype", "arraysize", "xtype", "size",
                                    "description", "utype", "unit", "ucd", "indexed", "principal", "std",
                                    "column_index")),
}
_TABLE_DESCRIPTIONS = {
    "ivoa.obscore": "ALMA observations: one row per member OUS x source x spectral window",
    "TAP_SCHEMA.schemas": "schemas in this service", "TAP_SCHEMA.tables": "tables in this service",
    "TAP_SCHEMA.columns": "columns in this service",
}


def _tap_schema() -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    schemas = [("ivoa", "IVOA data models", None, 0), ("TAP_SCHEMA", "this service's metadata", None, 1)]
    tables = [(name.split(".")[0], name, "table", _TABLE_DESCRIPTIONS[name], None, i)
              for i, name in enumerate(TAP_TABLES)]
    columns = []
    for name, table in TAP_TABLES.items():
        for i, col in enumerate(table.columns):
            meta = _column_field(col) if name == "ivoa.obscore" else votable.Field(col, "char", "*")
            columns.append((name, col, meta.datatype, meta.arraysize, meta.xtype or None, None,
                            meta.description, meta.utype or None, meta.unit or None, meta.ucd or None, 0, 1, 0, i))
    return {
        "tap_schema_schemas": (TAP_TABLES["TAP_SCHEMA.schemas"].columns, schemas),
        "tap_schema_tables": (TAP_TABLES["TAP_SCHEMA.tables"].columns, tables),
        "tap_schema_columns": (TAP_TABLES["TAP_SCHEMA.columns"].columns, columns),
    }


_OBSCORE_BY_NAME: dict[str, Column] = {c.name: c for c in OBSCORE_COLUMNS}


def _column_field(name: str) -> votable.Field:
    """The VOTable FIELD for an ObsCore column."""
    col = _OBSCORE_BY_NAME[name]
    utype, xtype = _UTYPES.get(name, ("", ""))
    return votable.Field(col.name, col.datatype, "*" if col.datatype == "char" else None,
                         ucd=col.ucd, unit=col.unit, utype=utype, xtype=xtype, description=col.description)


def _value_field(name: str, values: list) -> votable.Field:
    """A FIELD for a computed column, typed by its first non-null value."""
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return votable.Field(name, "boolean")
    if isinstance(sample, int):
        return votable.Field(name, "long")
    if isinstance(sample, float):
        return votable.Field(name, "double")
    return votable.Field(name, "char", "*")


# -- HTTP ----------------------------------------------------------------------------------------
class _DropConnection(Exception):
    """Raised to cut a response short (the drop_after fault)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, archive: "LocalArchive"):
        self.archive = archive
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up early (a killed or resumed download) is normal here, not a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_open_sockets(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "almadeliver-local-archive"
    disable_nagle_algorithm = True   # small answers must not wait for delayed ACKs (~40 ms each)
    timeout = 300
    server: _Server

    # plumbing
    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def archive(self) -> "LocalArchive":
        return self.server.archive

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        archive = self.archive
        archive.stats._request()
        if archive.faults.latency:
            time.sleep(archive.faults.latency)
        parts = urlsplit(self.path)
        path = unquote(parts.path).rstrip("/") or "/"
        params = parse_qsl(parts.query, keep_blank_values=True)
        if method == "POST":
            length = _content_length(self.headers.get("Content-Length"))
            if length is None:
                self.close_connection = True
                self._send(400, votable.error("Content-Length must be a whole number of bytes up to "
                                              f"{MAX_POST_BYTES}"), votable.CONTENT_TYPE)
                return
            body = self.rfile.read(length) if length else b""
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/"):
                self._send(400, votable.error("table UPLOAD is not supported by this archive"), votable.CONTENT_TYPE)
                return
            params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        try:
            if path == "/":
                self._index(method)
            elif path == "/tap/sync" and method in ("GET", "POST"):
                self._tap_sync(params, method)
            elif path == "/tap" and method == "GET":
                self._send(200, self._capabilities(), "text/xml", method)
            elif path in ("/tap/tables", "/tap/capabilities", "/tap/availability") and method in ("GET", "HEAD"):
                page = {"/tap/tables": self._tables, "/tap/capabilities": self._capabilities,
                        "/tap/availability": self._availability}[path]()
                self._send(200, page, "text/xml", method)
            elif path == "/datalink/sync" and method in ("GET", "POST"):
                self._datalink(params)
            elif path == "/dataPortal/login":
                self._login(method)
            elif path.startswith(KEYCLOAK_REALM):
                self._keycloak(path, method, params)
            elif path.startswith("/dataPortal/") and method in ("GET", "HEAD"):
                self._file(path.split("/")[-1], method)
            else:
                self._send(404, f"not found: {path}\n", "text/plain", method)
        except _DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:   # a request the archive cannot handle is a 500, never a dead thread
            log.warning("%s %s failed: %s: %s", method, path, type(exc).__name__, exc)
            self.close_connection = True
            try:
                self._send(500, f"internal error: {type(exc).__name__}\n", "text/plain", method)
            except OSError:
                pass

    def _send(self, status: int, body: str | bytes, content_type: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type if not content_type.startswith("text/") or "charset" in content_type
                         else f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    # identity
    def _identity(self) -> str | None:
        """The user named by valid HTTP Basic credentials or a session cookie; None: anonymous."""
        users = self.archive.users
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user if user in users and secrets.compare_digest(users[user], password) else None
        for part in self.headers.get("Cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == SESSION_COOKIE and value in self.archive._sessions:
                return self.archive._sessions[value]
        return None

    # pages
    def _index(self, method: str) -> None:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in self.archive.content.projects)
        page = f"<!DOCTYPE html><html><head><title>ALMA Science Archive (local)</title></head><body>" \
               f"<h1>ALMA Science Archive (local test double)</h1><ul>{items}</ul></body></html>\n"
        self._send(200, page, "text/html", method)

    def _login(self, method: str) -> None:
        user = self._identity()
        if user is None or self.headers.get("Authorization") is None:
            self._send(401, "log in with HTTP Basic credentials\n", "text/plain", method,
                       {"WWW-Authenticate": 'Basic realm="ALMA"'})
            return
        token = secrets.token_hex(16)
        self.archive._sessions[token] = user
        self._send(200, f"logged in as {user}\n", "text/plain", method,
                   {"Set-Cookie": f"{SESSION_COOKIE}={token}; Path=/; HttpOnly"})

    def _keycloak(self, path: str, method: str, params: list[tuple[str, str]]) -> None:
        """ALMA's Keycloak realm (ALMA-FACTS section 2): the realm document, and the token endpoint that
        checks a password (form ``username, password, grant_type=password, client_id=oidc``)."""
        if path == KEYCLOAK_REALM and method in ("GET", "HEAD"):
            self._send(200, json.dumps({"realm": "ALMA", "token-service": f"{self.archive.url}{KEYCLOAK_TOKEN}"}),
                       "application/json", method)
            return
        if path != KEYCLOAK_TOKEN or method != "POST":
            self._send(404 if path != KEYCLOAK_TOKEN else 405, json.dumps({"error": "RESTEASY003210: not found"}),
                       "application/json", method)
            return
        form = dict(params)
        if form.get("grant_type") != "password" or form.get("client_id") != "oidc" or not form.get("username"):
            self._send(400, json.dumps({"error": "invalid_request",
                                        "error_description": "Missing form parameter: grant_type, client_id or username"}),
                       "application/json")
            return
        user, password = form["username"], form.get("password", "")
        known = self.archive.users.get(user)
        if known is None or not secrets.compare_digest(known, password):
            self._send(401, json.dumps({"error": "invalid_grant", "error_description": "Invalid user credentials"}),
                       "application/json")
            return
        token = secrets.token_hex(16)
        self.archive._sessions[token] = user
        self._send(200, json.dumps({"access_token": token, "expires_in": 300, "refresh_expires_in": 1800,
                                    "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email"}),
                   "application/json")

    # TAP
    def _tap_sync(self, params: list[tuple[str, str]], method: str) -> None:
        p = {k.upper(): v for k, v in params}
        request = p.get("REQUEST", "doQuery")
        if request != "doQuery":
            return self._tap_error(f"REQUEST={request} is not supported (use doQuery)")
        if p.get("LANG", "ADQL").upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
            return self._tap_error(f"LANG={p['LANG']} is not supported (use ADQL)")
        fmt = p.get("RESPONSEFORMAT", p.get("FORMAT", "votable")).lower()
        if fmt not in ("votable", "application/x-votable+xml", "text/xml", "votable/td"):
            return self._tap_error(f"RESPONSEFORMAT={fmt} is not supported (use votable)")
        if "QUERY" not in p:
            return self._tap_error("QUERY is missing")
        try:
            maxrec = int(p["MAXREC"]) if p.get("MAXREC", "") != "" else None
        except ValueError:
            return self._tap_error(f"MAXREC={p['MAXREC']} is not a whole number")
        limit = self.archive.faults.tap_limit
        if limit is not None:
            maxrec = limit if maxrec is None else min(maxrec, limit)
        self._send(*self.archive.run_query(p["QUERY"], maxrec), votable.CONTENT_TYPE, method)

    def _tap_error(self, message: str) -> None:
        self._send(400, votable.error(message), votable.CONTENT_TYPE)

    def _tables(self) -> str:
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
               'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n']
        for schema in ("ivoa", "TAP_SCHEMA"):
            out.append(f"  <schema>\n    <name>{schema}</name>\n")
            for name, table in TAP_TABLES.items():
                if not name.startswith(schema + "."):
                    continue
                out.append(f'    <table type="table">\n      <name>{name}</name>\n'
                           f"      <description>{html.escape(_TABLE_DESCRIPTIONS[name])}</description>\n")
                for col in table.columns:
                    f = _column_field(col) if schema == "ivoa" else votable.Field(col, "char", "*")
                    size = f' arraysize="{f.arraysize}"' if f.arraysize else ""
                    out.append(f"      <column>\n        <name>{html.escape(col)}</name>\n"
                               f"        <description>{html.escape(f.description)}</description>\n"
                               + (f"        <unit>{html.escape(f.unit)}</unit>\n" if f.unit else "")
                               + (f"        <ucd>{html.escape(f.ucd)}</ucd>\n" if f.ucd else "")
                               + (f"        <utype>{html.escape(f.utype)}</utype>\n" if f.utype else "")
                               + f'        <dataType xsi:type="vs:VOTableType"{size}>{f.datatype}</dataType>\n'
                               "      </column>\n")
                out.append("    </table>\n")
            out.append("  </schema>\n")
        out.append("</vosi:tableset>\n")
        return "".join(out)

    def _capabilities(self) -> str:
        url = self.archive.url
        features = "".join(f"<feature><form>{f}</form></feature>" for f in
                           ("POINT", "CIRCLE", "POLYGON", "BOX", "INTERSECTS", "CONTAINS", "DISTANCE"))
        vosi = "".join(
            f'  <capability standardID="ivo://ivoa.net/std/VOSI#{name}">\n'
            f'    <interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="full">{url}/tap/{name}</accessURL></interface>\n'
            "  </capability>\n" for name in ("capabilities", "availability", "tables"))
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
                'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n'
                '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n'
                f'    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1"><accessURL use="base">{url}/tap</accessURL></interface>\n'
                '    <language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
                "<description>ADQL 2.0 (subset: one table, no JOIN/GROUP BY)</description>"
                f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{features}</languageFeatures></language>\n'
                '    <outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">'
                "<mime>application/x-votable+xml</mime><alias>votable</alias></outputFormat>\n"
                "  </capability>\n" + vosi + "</vosi:capabilities>\n")

    def _availability(self) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
                "  <vosi:available>true</vosi:available>\n"
                f"  <vosi:note>local ALMA archive serving {len(self.archive.content.projects)} project(s)</vosi:note>\n"
                "</vosi:availability>\n")

    # DataLink
    def _datalink(self, params: list[tuple[str, str]]) -> None:
        status = self.archive.faults.datalink_status
        if status is not None:
            self._send(status, f"HTTP {status} from the DataLink service\n", "text/plain")
            return
        ids = [v for k, v in params if k.upper() == "ID"]
        if not ids:
            self._send(400, votable.error("ID is missing"), votable.CONTENT_TYPE)
            return
        self._send(200, self.archive.datalink(ids, authenticated=self._identity() is not None), votable.CONTENT_TYPE)

    # dataPortal
    def _file(self, name: str, method: str) -> None:
        archive, faults = self.archive, self.archive.faults
        served = archive.content.file(name)
        if served is None:
            self._send(404, f"no such file: {name}\n", "text/plain", method)
            return
        archive.stats._count(name, method)
        if archive._take_503():
            self._send(503, "Service Temporarily Unavailable\n", "text/plain", method, {"Retry-After": "1"})
            return
        if faults.html_instead:
            self._send(200, LOGIN_PAGE, "text/html", method)
            return
        if served.proprietary and self._identity() is None:
            self._send(401, f"{name} is proprietary: log in to download it\n", "text/plain", method,
                       {"WWW-Authenticate": 'Basic realm="ALMA"'})
            return
        size = served.length()
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted and not faults.ignore_range:
            parsed = _parse_range(wanted, size)
            if parsed == "unsatisfiable":
                self._send(416, "", "text/plain", method, {"Content-Range": f"bytes */{size}"})
                return
            if parsed is not None:
                (start, end), status = parsed, 206
                start = max(0, start - faults.early_range)
        self.send_response(status)
        self.send_header("Content-Type", served.content_type)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Disposition", f"attachment; filename={name}")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if method == "HEAD" or end < start:
            return
        if faults.slow_first_byte:
            time.sleep(faults.slow_first_byte)
        archive.stats._stream(+1)
        open_ = [True]

        def ended() -> None:
            if open_[0]:
                open_[0] = False
                archive.stats._stream(-1)
        try:
            self._body(served, served.offset + start, end - start + 1, ended)
        finally:
            ended()

    def _body(self, served: ServedFile, offset: int, count: int, ended: Callable[[], None]) -> None:
        """Send the bytes; a chunked body calls ``ended`` before its last chunk, so a client holding
        the whole body never finds its stream still counted in ``peak_streams``."""
        faults, stats, name = self.archive.faults, self.archive.stats, served.name
        limit = faults.drop_after
        rate = faults.throttle
        with open(served.path, "rb") as fh:
            if rate is None and limit is None:   # the fast path: the kernel copies file to socket
                try:
                    self.connection.sendfile(fh, offset, count)
                finally:
                    stats._sent(name, fh.tell() - offset)
                return
            todo = count if limit is None else min(count, limit)
            fh.seek(offset)
            began, sent = time.monotonic(), 0
            chunk = _CHUNK if rate is None else max(1024, min(_CHUNK, int(rate / 50)))
            while sent < todo:
                data = fh.read(min(chunk, todo - sent))
                if not data:
                    break
                if sent + len(data) >= count:
                    ended()
                self.connection.sendall(data)
                sent += len(data)
                stats._sent(name, len(data))
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        if limit is not None and limit < count:
            raise _DropConnection()


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range; None (serve everything) for what is not supported."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None                    # several ranges in one request: not supported, like ALMA
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


# -- the archive ---------------------------------------------------------------------------------
class LocalArchive:
    """The local archive: a threaded HTTP server on ``host:port`` (port 0: a free one)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 users: dict[str, str] | None = None):
        self.root = Path(root)
        self.host, self.port = host, port
        self.faults = faults or Faults()
        self.users = dict(users or {})
        self.stats = ArchiveStats()
        self.content = ArchiveContent(self.root)
        self._sessions: dict[str, str] = {}
        self._fault_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def projects(self) -> list[str]:
        """The project codes served."""
        return self.content.projects

    def start(self) -> "LocalArchive":
        """Start serving on 127.0.0.1 in a background thread; returns itself."""
        if self._server is not None:
            return self
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as exc:
            raise UsageError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                             "choose another --port (or 0 for a free one)") from exc
        self.port = self._server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"local-archive-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_open_sockets()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "LocalArchive":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run until interrupted (the CLI); stops cleanly on KeyboardInterrupt."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def _take_503(self) -> bool:
        with self._fault_lock:
            if self.faults.fail_503 > 0:
                self.faults.fail_503 -= 1
                return True
            return False

    # answers (also usable without HTTP)
    def run_query(self, query: str, maxrec: int | None = None) -> tuple[int, str]:
        """(HTTP status, VOTable) for one ADQL query."""
        if len(query) > MAX_QUERY_CHARS:
            return 400, votable.error(f"the query has {len(query)} characters (at most {MAX_QUERY_CHARS})")
        try:
            tr = translate(query, TAP_TABLES)
        except AdqlError as exc:
            return 400, votable.error(str(exc))
        except RecursionError:
            return 400, votable.error("the query is nested too deeply")
        caps = [n for n in (tr.top, maxrec) if n is not None]
        limit = min(caps) if caps else None
        # one row more than the cap tells an overflow from an answer that fits exactly
        sql = tr.sql if limit is None else f"SELECT * FROM ({tr.sql}) LIMIT {limit + 1}"
        try:
            with self.content.db_lock:
                rows = self.content.db.execute(sql, tr.params).fetchall()
        except sqlite3.Error as exc:
            return 400, votable.error(f"query failed: {exc}")
        overflow = maxrec is not None and len(rows) > maxrec and (tr.top is None or tr.top > maxrec)
        if limit is not None:
            rows = rows[:limit]
        fields = []
        for i, c in enumerate(tr.columns):
            if c.source and tr.table.adql_name == "ivoa.obscore":
                fields.append(replace(_column_field(c.source), name=c.name))
            else:
                fields.append(_value_field(c.name, [r[i] for r in rows]))
        before = votable.info("QUERY_STATUS", "OK") + votable.info("QUERY", query)
        after = votable.info("QUERY_STATUS", "OVERFLOW") if overflow else ""
        return 200, votable.document(votable.results(fields, rows, before, after))

    def datalink(self, ids: list[str], authenticated: bool = False) -> str:
        """The DataLink VOTable for MOUS uids and/or tarball names."""
        rows, services = [], {}
        base = self.url
        for id_ in ids:
            if id_ in self.content.tarballs:
                tar, proprietary, _ = self.content.tarballs[id_]
                for m in tar.members:
                    member = self.content.member_names[(id_, m.path)]
                    rows.append((id_, f"{base}/dataPortal/{member}", None, None, m.semantics,
                                 _member_description(m, id_), m.content_type, m.size, authenticated or not proprietary))
                continue
            listed = self.content.by_id.get(id_)
            if not listed:
                rows.append((id_, None, None, f"NotFoundFault: {id_}", "#this", None, None, None, None))
                continue
            for f, proprietary in sorted(listed, key=lambda x: (_SEMANTICS_ORDER.get(x[0].semantics, 9), x[0].name)):
                rows.append((id_, f"{base}/dataPortal/{f.name}", None, None, f.semantics, f.description or _description(f),
                             f.content_type, f.size, authenticated or not proprietary))
                if f.members and f.semantics != "#progenitor":
                    service_id = f"DataLink.{f.name}"
                    rows.append((id_, None, service_id, None, f.semantics, None, DATALINK_CONTENT_TYPE, None, None))
                    services[service_id] = votable.service(service_id, [
                        ("standardID", DATALINK_STANDARD_ID), ("accessURL", f"{base}/datalink/sync?ID={f.name}")])
        return votable.document(votable.results(DATALINK_FIELDS, rows, after=votable.info("placeholder", "ignore")),
                                *services.values())


DATALINK_FIELDS = (
    votable.Field("ID", "char", "*", "meta.id;meta.main"),
    votable.Field("access_url", "char", "*", "meta.ref.url"),
    votable.Field("service_def", "char", "*", "meta.ref"),
    votable.Field("error_message", "char", "*", "meta.code.error"),
    votable.Field("semantics", "char", "*", "meta.code"),
    votable.Field("description", "char", "*", "meta.note"),
    votable.Field("content_type", "char", "*", "meta.code.mime"),
    votable.Field("content_length", "long", None, "phys.size;meta.file", "byte"),
    votable.Field("readable", "boolean", description="the caller is allowed to use this link with the current "
                                                     "authenticated identity"),
)


def _description(f: CatalogueFile) -> str:
    """ALMA's wording for a file row of a MOUS DataLink answer (alma-datalink.xml)."""
    if f.semantics == "#documentation":
        return f"Download documentation for ./{f.ids[0] if f.ids else ''}|README."
    if f.semantics == "#progenitor":
        return "Download dataset of type: , and class: N/A."
    return "Download dataset of type: null, and class: N/A."


def _member_description(m: TarMember, tarball: str) -> str:
    """ALMA's wording for a tarball member, from the folder it sits in (alma-datalink-recurse-*.xml)."""
    folder = m.path.rsplit("/", 2)[-2] if m.path.count("/") else ""
    name = m.path.rsplit("/", 1)[-1]
    if folder == "log":
        return f"Download documentation for log/{tarball}|LOG."
    if folder == "product" or name.endswith((".fits", ".fits.gz")):
        return f"Download dataset of type: product, and class: {'MASK' if '.mask' in name else 'SCIENCE'}."
    kind, klass = {"calibration": ("calibration", "CALIBRATION"), "script": ("script", "SCRIPT"),
                   "qa": ("qa", "QA_PLOT" if name.endswith(".png") else "QA")}.get(folder, ("null", "N/A"))
    return f"Download dataset of type: {kind}, and class: {klass}."
