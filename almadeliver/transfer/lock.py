"""One process at a time per folder: a download destination, or a member being restored.

The lock is an ``fcntl.flock`` on ``<folder>/.almadeliver/lock``: the kernel releases it when the
process ends however it ends (kill -9 included), so a stale lock cannot block a rerun. The file
holds the pid of the holder, which a waiting run names.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from ..errors import BusyError

log = logging.getLogger("almadeliver.transfer")

LOCK_DIR = ".almadeliver"
LOCK_NAME = "lock"


class FolderLock:
    """An exclusive lock on ``folder`` (a context manager).

    Parameters
    ----------
    folder : Path
        The folder to lock (created if missing).
    wait : bool
        When another process holds it: wait until it is released (saying once which pid holds it,
        as a warning) or raise at once.
    what : str
        Words for the messages ("download into", "restore of").
    path : Path, optional
        The lock file; default ``<folder>/.almadeliver/lock``.

    Raises
    ------
    BusyError
        The folder is held by another process and ``wait`` is False (the message names its pid).
    """

    def __init__(self, folder: Path, wait: bool = True, what: str = "download into", path: Path | None = None):
        self.folder, self.wait, self.what = Path(folder), wait, what
        self.path = Path(path) if path is not None else self.folder / LOCK_DIR / LOCK_NAME
        self.fd: int | None = None

    def holder(self) -> str:
        """What the lock file says of the process holding it (``host:pid``), or "unknown".

        Returns
        -------
        str
            ``host:pid`` of the holder, or ``unknown``.
        """
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = self.holder()
                if not self.wait:
                    os.close(fd)
                    raise BusyError(f"another almadeliver (pid {pid}) is running a {self.what} {self.folder}",
                                     "wait for it to finish, or stop it, then run the same command again") from None
                if not said:
                    log.warning("waiting for almadeliver pid %s, which is running a %s %s", pid, self.what, self.folder)
                    said = True
                time.sleep(0.2)          # short sleeps: Ctrl-C stays immediate
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                self.fd = None


def DestLock(dest: Path, wait: bool = True) -> FolderLock:  # noqa: N802 (reads as a class at the call site)
    """The lock of a download destination.

    Parameters
    ----------
    dest : Path
        The download destination.
    wait : bool, default True
        Wait for another download to release it (else raise BusyError at once).

    Returns
    -------
    FolderLock
        The lock, to be used as a context manager.
    """
    return FolderLock(dest, wait=wait, what="download into")
