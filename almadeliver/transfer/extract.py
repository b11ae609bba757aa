"""Safe, verified, fast untar of delivery tarballs into the delivery tree.

ALMA delivery tarballs hold folders and regular files only: the real delivery listings
(``fixtures/real/listings``) show symlinks only in ``calibrated/``, which scriptForPI makes after
the download, never in a tarball. So the rule here does not depend on Python's ``tarfile`` filters
(3.11.7's ``data`` filter misses symlink chains that expand past PATH_MAX, CVE-2025-4517):

1. the whole tarball is read to its end-of-archive marker before anything is written: every header
   valid, every member's data inside the file, and after the last member only the zero blocks of the
   end marker and at most one record of padding (so a corrupt header in the middle, or a file cut
   short and padded with zeros, is refused);
2. every member is checked: a folder or a regular file (no symlink, hard link, device, FIFO or
   sparse file), a relative path without ``..``, at most ``MAX_DEPTH`` components of at most 255
   bytes and ``MAX_NAME`` bytes in all;
3. members are written by this module, not by ``tarfile.extractall``: folders one component at a
   time, each one's real path checked to be inside the destination, files opened with
   ``O_NOFOLLOW | O_EXCL`` after removing what was there, bytes copied in the kernel
   (``os.copy_file_range``) and counted.
"""
from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import TransferError, UnsafeTarballError

_CHUNK = 1 << 26          # bytes per copy_file_range call
MAX_DEPTH = 64            # path components per member (deepest real ALMA path: about 10)
MAX_NAME = 1024           # bytes per member path (PATH_MAX is 4096 for the destination and the name)
MAX_COMPONENT = 255       # bytes per path component (NAME_MAX)
PATH_MAX = 4096
_BLOCK = tarfile.BLOCKSIZE
_END_MARKER = 2 * _BLOCK
_MAX_TAIL = _END_MARKER + tarfile.RECORDSIZE   # end marker plus at most one record of padding
_HINT_UNSAFE = "the tarball is not a genuine ALMA delivery; it is kept: report it to the ALMA helpdesk"
_HINT_CORRUPT = "it is kept; it will be fetched again by the next run"


@dataclass
class ExtractResult:
    """What one tarball unpacked to."""

    tarball: Path
    dest: Path
    members: int
    bytes: int          # bytes of regular files written
    removed: bool       # the tarball was deleted after a verified extraction


def _unsafe(tarball: Path, member: tarfile.TarInfo, why: str) -> UnsafeTarballError:
    name = member.name if len(member.name) <= 120 else member.name[:60] + "..." + member.name[-40:]
    return UnsafeTarballError(f"{tarball.name}: member '{name}' {why}; nothing was extracted", _HINT_UNSAFE)


def _parts(name: str) -> list[str]:
    """The path components of a member name ('.' and empty ones dropped)."""
    return [p for p in name.split("/") if p not in ("", ".")]


def check_member(tarball: Path, m: tarfile.TarInfo) -> None:
    """Raise UnsafeTarballError unless ``m`` is a folder or regular file with a safe relative path.

    Parameters
    ----------
    tarball : Path
        The tarball (named in the error).
    m : tarfile.TarInfo
        One member header.

    Raises
    ------
    UnsafeTarballError
        Absolute path, '..', a path deeper than MAX_DEPTH or longer than MAX_NAME bytes, a
        component longer than 255 bytes, or a member that is not a folder or regular file
        (symlink, hard link, device, FIFO, sparse file): ALMA delivery tarballs carry none.
    """
    name = m.name
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_NAME:
        raise _unsafe(tarball, m, f"has a path of {len(raw)} bytes (at most {MAX_NAME} allowed)")
    if name.startswith("/") or os.path.isabs(name):
        raise _unsafe(tarball, m, "has an absolute path")
    if "\\" in name or "\0" in name:
        raise _unsafe(tarball, m, "has a backslash or NUL in its path")
    parts = _parts(name)
    if ".." in parts:
        raise _unsafe(tarball, m, "contains '..'")
    if len(parts) > MAX_DEPTH:
        raise _unsafe(tarball, m, f"is {len(parts)} folders deep (at most {MAX_DEPTH} allowed)")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for p in parts):
        raise _unsafe(tarball, m, f"has a path component longer than {MAX_COMPONENT} bytes")
    if m.issym():
        raise _unsafe(tarball, m, f"is a symlink (to '{m.linkname[:80]}'); ALMA delivery tarballs hold none")
    if m.islnk():
        raise _unsafe(tarball, m, f"is a hard link (to '{m.linkname[:80]}'); ALMA delivery tarballs hold none")
    if m.issparse():
        raise _unsafe(tarball, m, "is a sparse file; ALMA delivery tarballs hold none")
    if not (m.isreg() or m.isdir()):
        raise _unsafe(tarball, m, "is a device, FIFO or other special file")


def _corrupt(tarball: Path, why: str) -> TransferError:
    return TransferError(f"{tarball.name} is incomplete or corrupt ({why})", _HINT_CORRUPT)


def read_members(tarball: Path) -> list[tarfile.TarInfo]:
    """Every member, the tarball read to its end-of-archive marker.

    Python's tarfile stops quietly at the first bad header after the first one, and takes a run
    of zeros for the end of the archive; both would pass a truncated or damaged tarball. Here the
    bytes after the last member must be the end marker (two zero blocks) plus at most one record
    of zero padding, as GNU tar and ALMA's tarballs write them.

    Parameters
    ----------
    tarball : Path
        An uncompressed tar file.

    Returns
    -------
    list of tarfile.TarInfo
        The members, in order.

    Raises
    ------
    TransferError
        Not a tar file, a header that does not parse, a member whose data runs past the end of the
        file, no end-of-archive marker, or non-zero bytes (or too many zeros) after it.
    """
    tarball = Path(tarball)
    size = tarball.stat().st_size
    try:
        with tarfile.open(tarball, "r:") as tar:
            members = tar.getmembers()
            stopped = tar.offset          # where tarfile stopped: the end marker, or a header it could not read
    except (tarfile.TarError, EOFError) as exc:
        raise _corrupt(tarball, f"not a tar file: {exc}") from None
    except RecursionError:
        raise _corrupt(tarball, "headers nested too deeply") from None
    if not members:
        raise _corrupt(tarball, "no member")
    end = max((m.offset_data + m.size for m in members if m.isreg()), default=0)
    if end > size:
        raise TransferError(f"{tarball.name} is incomplete ({size} bytes on disk, members need {end})", _HINT_CORRUPT)
    tail = size - stopped
    if tail < _END_MARKER:
        raise _corrupt(tarball, f"no end-of-archive marker after the last member at byte {stopped}")
    if tail > _MAX_TAIL:
        raise _corrupt(tarball, f"{tail} bytes after the last readable member at byte {stopped}: "
                                "a damaged header, or a file cut short and padded")
    with open(tarball, "rb") as fh:
        fh.seek(stopped)
        rest = fh.read(tail)
    if rest.count(0) != len(rest):
        first = stopped + next(i for i, b in enumerate(rest) if b)
        raise _corrupt(tarball, f"the header at byte {stopped} is damaged (data at byte {first} after it)")
    return members


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Writer:
    """Writes checked members under ``root``, never through a link that leaves it."""

    def __init__(self, tarball: Path, root: str):
        self.tarball, self.root = tarball, root
        self.known: set[str] = {root}          # folders already checked (real paths inside root)

    def folder(self, parts: list[str], m: tarfile.TarInfo) -> str:
        """Create (or check) the folder ``root/parts...`` one component at a time; its real path."""
        path = self.root
        for part in parts:
            path = os.path.join(path, part)
            if path in self.known:
                continue
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass
            real = os.path.realpath(path, strict=True)
            if not _inside(self.root, real) or not os.path.isdir(real):
                raise _unsafe(self.tarball, m, f"would be written through '{path}', which is not a folder "
                                               "inside the destination")
            self.known.add(path)
        return path

    def file(self, parts: list[str], m: tarfile.TarInfo, src: int) -> None:
        parent = self.folder(parts[:-1], m)
        target = os.path.join(parent, parts[-1])
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise _unsafe(self.tarball, m, "is a file where the destination has a folder")
            os.unlink(target)                  # a file or link left there: replaced, never written through
        mode = (m.mode & 0o755) | 0o600
        if not m.mode & 0o100:
            mode &= ~0o111
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            _copy(src, fd, m.offset_data, m.size)
            os.fchmod(fd, mode)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        if os.stat(target, follow_symlinks=False).st_size != m.size:
            raise TransferError(f"{self.tarball.name}: '{m.name}' has the wrong size after extraction",
                                "check the free space and run the download again")


def _copy(src: int, dst: int, offset: int, size: int) -> None:
    """Copy ``size`` bytes from ``src`` at ``offset`` to ``dst`` (in the kernel when it can)."""
    left = size
    if hasattr(os, "copy_file_range"):
        try:
            while left:
                n = os.copy_file_range(src, dst, min(left, _CHUNK), offset)
                if n == 0:
                    raise TransferError("unexpected end of data in the tarball", _HINT_CORRUPT)
                offset, left = offset + n, left - n
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    while left:
        data = os.pread(src, min(left, 1 << 22), offset)
        if not data:
            raise TransferError("unexpected end of data in the tarball", _HINT_CORRUPT)
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]
        offset, left = offset + len(data), left - len(data)


def extract_tarball(tarball: Path, dest: Path, keep: bool = False) -> ExtractResult:
    """Check, extract and verify ``tarball`` into ``dest``; delete it afterwards unless ``keep``.

    Parameters
    ----------
    tarball : Path
        A delivery tarball (uncompressed tar).
    dest : Path
        The folder that receives the tree (created if missing).
    keep : bool
        Keep the tarball after a verified extraction.

    Returns
    -------
    ExtractResult

    Raises
    ------
    UnsafeTarballError
        A member that could write outside ``dest`` or is not a folder or regular file (nothing is
        written; the tarball is kept).
    TransferError
        The tarball is truncated or corrupt (see ``read_members``; nothing is written, the tarball
        is kept), or a file has the wrong size after extraction.
    OSError
        The disk filled while writing (the tarball is kept).
    """
    tarball, dest = Path(tarball), Path(dest)
    members = read_members(tarball)
    for m in members:
        check_member(tarball, m)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest, strict=True)
    longest = max(len(m.name.encode("utf-8", "surrogateescape")) for m in members)
    if len(root.encode()) + 1 + longest >= PATH_MAX:
        raise _too_long(tarball, root, longest)
    writer = _Writer(tarball, root)
    folders: list[tuple[str, tarfile.TarInfo]] = []
    written = 0
    with open(tarball, "rb", buffering=0) as raw:
        for m in members:
            parts = _parts(m.name)
            if not parts:
                continue
            if m.isdir():
                folders.append((writer.folder(parts, m), m))
            else:
                writer.file(parts, m, raw.fileno())
                written += m.size
    for path, m in reversed(folders):       # deepest first, so writing children does not change them again
        try:
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        except OSError:
            pass
    if not keep:
        tarball.unlink()
    return ExtractResult(tarball, dest, len(members), written, removed=not keep)


def _too_long(tarball: Path, root: str, longest: int) -> TransferError:
    """The destination plus the longest member path would pass PATH_MAX."""
    return TransferError(f"{tarball.name}: {root} plus a member path of {longest} bytes passes the system's "
                         f"path limit ({PATH_MAX} bytes); nothing was extracted",
                         "choose a --dest with a shorter path; the tarball is kept")
