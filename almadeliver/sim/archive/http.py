"""The local archive's HTTP server: request dispatch, identity (Basic, session cookie, Keycloak) and pages."""
from __future__ import annotations

import base64
import html
import json
import logging
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .. import votable
from .datalink import DataLinkPages
from .dataportal import DataPortal, _DropConnection
from .soda import SodaPages
from .tap import TapPages

log = logging.getLogger("almadeliver.serve")

SESSION_COOKIE = "ALMA_SESSION"
KEYCLOAK_REALM = "/auth/realms/ALMA"
KEYCLOAK_TOKEN = f"{KEYCLOAK_REALM}/protocol/openid-connect/token"
MAX_POST_BYTES = 1 << 20       # TAP and DataLink forms are small; a larger body is refused, never awaited


def _content_length(value: str | None) -> int | None:
    """A request's Content-Length as a byte count; None when malformed, negative or too large."""
    if value is None or value.strip() == "":
        return 0
    text = value.strip()
    if not text.isdigit():
        return None
    n = int(text)
    return n if n <= MAX_POST_BYTES else None



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
        self.archive.stats._connection(+1)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            known = request in self.open_sockets
            self.open_sockets.discard(request)
        if known:
            self.archive.stats._connection(-1)
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


class _Handler(TapPages, DataLinkPages, DataPortal, SodaPages, BaseHTTPRequestHandler):
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
            elif path == "/soda/sync" and method in ("GET", "HEAD"):
                self._soda(params, method)
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
