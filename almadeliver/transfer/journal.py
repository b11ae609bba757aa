"""The download journal: what is fetched, what is unpacked, so a killed run resumes where it stopped.

It lives in ``DEST/.almadeliver/journal.json`` and is rewritten atomically (temporary file, then
``os.replace``), so a run killed at any moment leaves either the old or the new journal.
"""
from __future__ import annotations

import errno
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from ..files import write_atomic

JOURNAL_DIR = ".almadeliver"
JOURNAL_NAME = "journal.json"
RESERVE_NAME = "journal.reserve"
RESERVE_BYTES = 1 << 20
SCHEMA = "almadeliver.journal/1"



class FileState(str, Enum):
    """Where a file of the plan stands in the journal (written as its value)."""

    PARTIAL = "partial"          # some byte ranges on disk in <name>.part
    DOWNLOADED = "downloaded"    # verified and renamed to <name>
    EXTRACTED = "extracted"      # a tarball unpacked into the tree (and removed unless --keep-tars)

    def __str__(self) -> str:
        return self.value


PARTIAL, DOWNLOADED, EXTRACTED = FileState.PARTIAL, FileState.DOWNLOADED, FileState.EXTRACTED


@dataclass
class FileEntry:
    """One file of the plan: its state and, while partial, the byte ranges already on disk."""

    size: int
    state: FileState = PARTIAL
    segments: list[list[int]] = field(default_factory=list)  # [start, end, done] per range, while partial
    preallocated: bool = False              # the .part was preallocated (its size says nothing of progress)

    def fetched(self) -> int:
        """Bytes already on disk in the ``.part`` (the sum of the ranges' progress).

        Returns
        -------
        int
            Bytes (B) already in the ``.part`` file.
        """
        return sum(done - start for start, _end, done in self.segments)


class Journal:
    """A thread-safe view of DEST/.almadeliver/journal.json.

    Parameters
    ----------
    dest : Path
        The download destination (the journal is DEST/.almadeliver/journal.json).
    """

    def __init__(self, dest: Path):
        self.folder = Path(dest) / JOURNAL_DIR
        self.path = self.folder / JOURNAL_NAME
        self.lock = threading.RLock()   # the engine also holds it while it moves segment marks
        self.files: dict[str, FileEntry] = {}
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if data.get("schema") == SCHEMA:
                self.files = {name: FileEntry(**{**entry, "state": FileState(entry["state"])})
                              for name, entry in data["files"].items()}

    def entry(self, name: str, size: int) -> FileEntry:
        """The entry of ``name``; a new one if unknown or if the archive's size changed.

        Parameters
        ----------
        name : str
            The file's name in the plan.
        size : int
            The file's size in bytes (B) as the archive gives it.

        Returns
        -------
        FileEntry
            The journal's entry of the file (new when unknown or the size changed).
        """
        with self.lock:
            e = self.files.get(name)
            if e is None or e.size != size:
                e = self.files[name] = FileEntry(size=size)
            return e

    def state(self, name: str, size: int) -> FileState | None:
        """The recorded state of ``name`` at ``size`` (None when unknown or the size changed).

        Parameters
        ----------
        name : str
            The file's name in the plan.
        size : int
            The file's size in bytes (B) as the archive gives it.

        Returns
        -------
        FileState | None
            The recorded state, or None.
        """
        with self.lock:
            e = self.files.get(name)
            return e.state if e is not None and e.size == size else None

    def set_state(self, name: str, size: int, state: FileState) -> None:
        """Record the state of ``name`` and save the journal; a finished file forgets its ranges.

        Parameters
        ----------
        name : str
            The file's name in the plan.
        size : int
            The file's size in bytes (B) as the archive gives it.
        state : FileState
            Its new state.
        """
        with self.lock:
            e = self.files.setdefault(name, FileEntry(size=size))
            e.size, e.state = size, state
            if state != PARTIAL:
                e.segments, e.preallocated = [], False
        self.save()

    def reserve(self) -> None:
        """Set aside room for the journal, given back when the disk fills so progress is still recorded."""
        reserve = self.folder / RESERVE_NAME
        if not reserve.exists():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with open(reserve, "wb") as fh:
                    os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
            except OSError:
                reserve.unlink(missing_ok=True)

    def save(self) -> bool:
        """Write the journal atomically (safe to call from any thread); False if the disk is full.

        Returns
        -------
        bool
            True when written; False when the disk is full (the old journal is kept).
        """
        with self.lock:
            text = json.dumps({"schema": SCHEMA, "files": {n: asdict(e) for n, e in self.files.items()}})
            for _attempt in range(2):
                try:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    write_atomic(self.path, text)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    reserve = self.folder / RESERVE_NAME      # the disk is full: use the room set aside
                    if not reserve.exists():
                        return False
                    reserve.unlink()
            return False
