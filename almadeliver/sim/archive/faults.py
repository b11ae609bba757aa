"""What the local archive gets wrong (``Faults``) and what it counted (``ArchiveStats``)."""
from __future__ import annotations

import threading
from dataclasses import dataclass


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
    streams: int = 0                   # bodies of this file being sent now
    peak_streams: int = 0              # most bodies of this file sent at the same time (ranges of one file)


class ArchiveStats:
    """What the server sent, per file name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files: dict[str, FileStats] = {}
        self.requests = 0              # every HTTP request, any path
        self.active_streams = 0        # file bodies being sent now
        self.peak_streams = 0          # most file bodies sent at the same time (the archive is one host)
        self.connections = 0           # client connections open now
        self.peak_connections = 0      # most client connections open at the same time
        self.connections_opened = 0    # client connections accepted (kept-alive ones count once)

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
            self.requests = self.connections_opened = 0
            self.peak_streams, self.peak_connections = self.active_streams, self.connections

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

    def _stream(self, delta: int, name: str) -> None:
        with self._lock:
            self.active_streams += delta
            self.peak_streams = max(self.peak_streams, self.active_streams)
            entry = self.files.setdefault(name, FileStats())
            entry.streams += delta
            entry.peak_streams = max(entry.peak_streams, entry.streams)

    def _connection(self, delta: int) -> None:
        with self._lock:
            self.connections += delta
            self.connections_opened += delta > 0
            self.peak_connections = max(self.peak_connections, self.connections)
