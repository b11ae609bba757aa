"""What a download did: each file's status, bytes fetched and error, and the whole run's."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import AlmadeliverError


class FileStatus(str, Enum):
    """What became of one file of the plan in a run."""

    FETCHED = "fetched"      # transferred (at least in part) by this run
    ALREADY = "already"      # on disk (or unpacked) from an earlier run
    FAILED = "failed"        # not complete: ``FileResult.error`` says why

    def __str__(self) -> str:
        return self.value


@dataclass
class FileResult:
    """One file of the plan after the run. ``error`` is set when ``status`` is ``failed``."""

    name: str
    path: Path | None                 # the tarball (or README) on disk, None once extracted and removed
    size: int
    status: FileStatus
    fetched: int = 0                  # bytes fetched by this run
    extracted: bool = False
    error: AlmadeliverError | None = None
    unpacked_now: bool = False        # extracted by this run (also for files fetched by an earlier run)
    rejected: list[str] = field(default_factory=list)   # why earlier copies of this tarball were set aside


@dataclass
class TransferResult:
    """What a download did: every file of the plan with its status, and how long it took (seconds)."""
    dest: Path
    files: list[FileResult]
    seconds: float

    @property
    def fetched_bytes(self) -> int:
        """Bytes fetched by this run."""
        return sum(f.fetched for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        """The files that did not complete."""
        return [f for f in self.files if f.status is FileStatus.FAILED]

    @property
    def ok(self) -> bool:
        """True when every file completed."""
        return not self.failed


def short_reason(exc: BaseException) -> str:
    """An exception's text cut to one short line (for an error message).

    Parameters
    ----------
    exc : BaseException
        The exception to describe (any kind: an HTTP, OS or almadeliver error).

    Returns
    -------
    str
        ``str(exc)``, or the exception's class name when that is empty; cut to 117 characters plus
        ``...`` when 120 characters or longer.
    """
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."
