"""Every error almadeliver raises on purpose.

Each error carries a message (what is wrong) and a hint (what to do). The CLI prints them as one
line and exits with ``exit_code``; library callers catch the class they care about.
"""
from __future__ import annotations


class AlmadeliverError(Exception):
    """Base class: a message, a hint and the CLI exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(AlmadeliverError):
    """The user asked for something that cannot be done as asked (bad option, bad path)."""

    exit_code = 2


class IdentifierError(UsageError):
    """A malformed project code, uid or tarball name (exit 2, bad usage: the README's contract).

    Readers of delivery files turn it into a ParseError naming the file and line."""


# -- archive: TAP, DataLink, project view -------------------------------------------------------
class ArchiveError(AlmadeliverError):
    """The archive answered, but not with what was asked for."""


class ArchiveUnreachable(ArchiveError):
    """No mirror answered."""


class QueryError(ArchiveError):
    """The TAP service rejected the query (ADQL error, overflow without MAXREC)."""


class NotFoundError(ArchiveError):
    """An id or project the archive does not know (DataLink NotFoundFault, empty result)."""


class AuthError(ArchiveError):
    """401/403: proprietary data without (valid) credentials."""


# -- transfer: download, verify, untar ------------------------------------------------------------
class TransferError(AlmadeliverError):
    """A file could not be fetched or verified."""


class NotATarballError(TransferError):
    """The server sent an HTML page (an expired login) where a tarball was expected."""


class SizeMismatchError(TransferError):
    """The bytes on disk do not match the size DataLink announced."""


class UnsafeTarballError(TransferError):
    """A tarball member could land outside the delivery tree or is not a folder or regular file
    (absolute path, '..', too deep or long a path, a symlink, hard link, device or FIFO)."""


class BusyError(AlmadeliverError):
    """Another almadeliver process holds the folder (a download destination, a member being restored)."""


class DiskSpaceError(AlmadeliverError):
    """Not enough free space for what is about to be written."""


# -- delivery tree ---------------------------------------------------------------------------------
class TreeError(AlmadeliverError):
    """A path is not the delivery tree (or staff area) it should be."""


class ParseError(TreeError):
    """A delivery file (README, cont.dat, flag template, calapply.txt, commands log) does not parse."""


# -- CASA ------------------------------------------------------------------------------------------
class CasaError(AlmadeliverError):
    """CASA work failed; the message names its log file."""


class CasaNotFoundError(CasaError):
    """A CASA installation that was asked for (or is needed) is not there."""


class CasaVersionMismatchError(CasaError):
    """A delivery's calibration scripts demand (by their exact-version gate) another CASA than the
    one that would run them."""


# -- packaging -------------------------------------------------------------------------------------
class PackagingError(AlmadeliverError):
    """A reduction area cannot be packaged (the final checklist fails)."""


# -- run on a batch system -------------------------------------------------------------------------
class BatchSubmitError(UsageError):
    """The batch system refused the worker jobs of ``run --cluster slurm|pbs|htcondor`` (a partition
    that does not exist, a limit above the partition's): the job description is to fix (exit 2)."""
