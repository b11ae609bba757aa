"""The local archive: a threaded HTTP server on 127.0.0.1 over the simulated projects under a folder."""
from __future__ import annotations

import threading
from pathlib import Path

from ...errors import UsageError
from . import datalink as _datalink
from . import tap
from .content import ArchiveContent
from .faults import ArchiveStats, Faults
from .http import _Server
from .soda import Cutouts



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
        self.cutouts = Cutouts()              # SODA answers made so far
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
        self.cutouts.close()

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
        return tap.run_query(self.content.db, self.content.db_lock, query, maxrec)

    def datalink(self, ids: list[str], authenticated: bool = False) -> str:
        """The DataLink VOTable for MOUS uids and/or tarball names."""
        return _datalink.datalink(self.content, self.url, ids, authenticated)
