"""The local archive's dataPortal: files and tarball members by name, with Range, faults and counting."""
from __future__ import annotations

import time
from typing import Callable

from .content import ServedFile

_CHUNK = 256 * 1024

LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>ALMA Science Portal - Log in</title></head>
<body><h1>Central Authentication Service</h1>
<form method="post" action="/cas/login"><input name="username"/><input name="password" type="password"/>
<input type="submit" value="LOGIN"/></form></body></html>
"""



class _DropConnection(Exception):
    """Raised to cut a response short (the drop_after fault)."""


class DataPortal:
    """The ``/dataPortal/<name>`` endpoint of the HTTP handler; mixed into its class."""

    def _file(self, name: str, method: str) -> None:
        archive, faults = self.archive, self.archive.faults
        served = archive.content.file(name)
        if served is None:
            self._send(404, f"no such file: {name}\n", "text/plain", method)
            return
        self._serve(served, method)

    def _serve(self, served: ServedFile, method: str) -> None:
        """Answer with ``served`` (a file, a tar member or a SODA cutout): the faults, the login, Range."""
        archive, faults, name = self.archive, self.archive.faults, served.name
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
        archive.stats._stream(+1, name)
        open_ = [True]

        def ended() -> None:
            if open_[0]:
                open_[0] = False
                archive.stats._stream(-1, name)
        try:
            self._body(served, served.offset + start, end - start + 1, ended)
        finally:
            ended()

    def _body(self, served: ServedFile, offset: int, count: int, ended: Callable[[], None]) -> None:
        """Send the bytes; ``ended`` is called before the last chunk goes out, so a client holding
        the whole body (and starting its next request) never finds its stream still counted in
        ``peak_streams``."""
        faults, stats, name = self.archive.faults, self.archive.stats, served.name
        limit = faults.drop_after
        rate = faults.throttle
        with open(served.path, "rb") as fh:
            if rate is None and limit is None:   # the fast path: the kernel copies file to socket
                tail = min(count, _CHUNK)
                try:
                    if count > tail:
                        self.connection.sendfile(fh, offset, count - tail)
                    ended()
                    self.connection.sendfile(fh, offset + count - tail, tail)
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
