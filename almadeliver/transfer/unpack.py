"""Verify and unpack each finished tarball while the other downloads go on (one thread per run)."""
from __future__ import annotations

import errno
import os
import queue
from pathlib import Path
from typing import TYPE_CHECKING

from ..archive.model import ArchiveFile
from ..errors import DiskSpaceError, TransferError, UnsafeTarballError
from .extract import extract_tarball, read_members
from .journal import EXTRACTED, Journal
from .results import FileResult, FileStatus, short_reason

if TYPE_CHECKING:
    from .download import TransferConfig

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class Unpacker:
    """The tarballs handed over by the download engine (``queue``; None ends the thread), checked
    and unpacked in turn; ``refetch`` lists those set aside to be fetched once more.

    The engine puts ``(ArchiveFile, FileResult)`` on ``queue`` once a tarball's ``.part`` is complete
    and renamed (or one an earlier run downloaded and did not unpack); ``run`` (one thread per download pass) records each outcome in that FileResult
    and in the journal, and raises nothing.

    Parameters
    ----------
    dest : Path
        The download destination: the tarballs are there, and the delivery tree is unpacked there.
    config : TransferConfig
        The run's options used here: ``untar`` (extract, or only read the member list),
        ``keep_tars`` (keep the tarball after extracting it) and ``refetch`` (how many times a
        tarball that fails its check is fetched again).
    journal : Journal
        The destination's journal: a tarball extracted is marked ``extracted``; one set aside is
        dropped from it, so the next pass fetches it from byte 0.
    """

    def __init__(self, dest: Path, config: "TransferConfig", journal: Journal):
        self.dest, self.config, self.journal = Path(dest), config, journal
        self.queue: queue.Queue = queue.Queue()
        self.refetch: list[tuple[ArchiveFile, FileResult]] = []   # tarballs that failed their check

    def run(self) -> None:
        """Verify (and unless --no-untar, extract) each finished tarball while downloads go on.

        Any error is the failure of that tarball. A tarball that fails its check (truncated,
        corrupt, unsafe) is set aside in ``DEST/.almadeliver/rejected/`` (kept, never deleted) and,
        ``config.refetch`` times, fetched again after this pass.

        Nothing is raised: each tarball's outcome goes to its FileResult. A failed check
        (UnsafeTarballError, TransferError) the last allowed time is that error, naming where the
        tarball is kept; a full disk (ENOSPC, EDQUOT, EFBIG) while unpacking is a DiskSpaceError,
        any other OS error or exception a TransferError; the tarball is kept in each case. Returns
        when ``None`` is taken from ``queue``.
        """
        while True:
            item = self.queue.get()
            if item is None:
                return
            f, result = item
            try:
                self._one(f, result)
            except BaseException as exc:      # noqa: BLE001 (RecursionError, MemoryError...: this file's failure)
                result.status = FileStatus.FAILED
                result.error = TransferError(f"{f.name}: extraction failed ({type(exc).__name__}: {short_reason(exc)})",
                                             "the tarball is kept; run the same command again (with --debug for details)")

    def _one(self, f: ArchiveFile, result: FileResult) -> None:
        path = self.dest / f.name
        try:
            if self.config.untar:
                extract_tarball(path, self.dest, keep=self.config.keep_tars)
                self.journal.set_state(f.name, f.size, EXTRACTED)
                result.extracted = result.unpacked_now = True
                result.path = path if self.config.keep_tars else None
            else:
                read_members(path)
        except (UnsafeTarballError, TransferError) as exc:
            kept = self._reject(f, path)
            result.rejected.append(f"{exc.message} (kept as {kept})")
            with self.journal.lock:
                self.journal.files.pop(f.name, None)
            self.journal.save()
            if len(result.rejected) <= self.config.refetch:
                self.refetch.append((f, result))
            else:
                result.status = FileStatus.FAILED
                result.error = type(exc)(f"{exc.message}; the tarball is kept as {kept}",
                                         "a second copy failed the same way: report it to the ALMA helpdesk")
        except OSError as exc:                                # e.g. the disk filled while unpacking
            error = DiskSpaceError if exc.errno in _DISK_FULL else TransferError
            result.status = FileStatus.FAILED
            result.error = error(f"{f.name}: extraction failed ({exc.strerror or exc})",
                                 "free some space and run the same command again; the tarball is kept")

    def _reject(self, f: ArchiveFile, path: Path) -> Path:
        """Set a tarball that failed its check aside (it is evidence: never deleted)."""
        folder = self.journal.folder / "rejected"
        folder.mkdir(parents=True, exist_ok=True)
        kept = folder / f.name
        if not path.exists():
            return kept
        n = 1
        while kept.exists():
            n += 1
            kept = folder / f"{f.name}.{n}"
        os.replace(path, kept)
        return kept
