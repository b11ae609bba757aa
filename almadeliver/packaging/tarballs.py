"""Deterministic tarballs: sorted members, fixed mtime, owner and mode; same input, same bytes.

Both the packager and the simulator write every delivery tarball through this module. Members are
streamed in one pass (large reads, no per-member Python copy loop); the sha256 of a tarball is
computed while it is written, on a second thread, so a manifest needs no second read. A size-split
(``write_parts``) plans ``m_of_n`` parts from the exact header and data sizes before writing.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import queue
import stat
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import PackagingError

FIXED_MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z
_CHUNK = 4 << 20
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_END = 2 * _BLOCK

Entry = tuple[str, Path | None]   # (arcname, source path); None: a folder with no source


@dataclass
class MemberRecord:
    """One regular file inside a tarball."""

    path: str
    size: int


@dataclass
class TarRecord:
    """A tarball written to disk: its size, its sha256 and the files it holds."""

    path: Path
    size: int
    sha256: str
    members: list[MemberRecord] = field(default_factory=list)
    oversized: bool = False      # a single file larger than the requested part size


def tree_entries(root: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """(arcname, path) for ``root`` and everything below it, arcnames under ``prefix``."""
    root = Path(root)
    base = prefix.rstrip("/") or root.name
    entries = [(base, root)]
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            arc = f"{base}/{name}" if rel == "." else f"{base}/{rel}/{name}"
            entries.append((arc, Path(dirpath) / name))
    return entries


def _tarinfo(arcname: str, path: Path | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "alma"
    if path is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    else:
        raise PackagingError(f"{path}: only files, folders and symlinks go into a delivery tarball",
                             "remove it (a socket, FIFO or device) from the area")
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted entries plus every parent folder, so that any tarball unpacks on its own."""
    chosen = dict(entries)
    for arc in list(chosen):
        parts = arc.split("/")
        for i in range(1, len(parts)):
            chosen.setdefault("/".join(parts[:i]), None)
    return sorted(chosen.items())


def _stream(write: Callable[[bytes], object], entries: list[Entry]) -> tuple[int, list[MemberRecord]]:
    """Write ``entries`` (already sorted, parents included) as one tar stream; returns its size."""
    offset, members = 0, []
    for arc, src in entries:
        info = _tarinfo(arc, src)
        head = _header(info)
        write(head)
        offset += len(head)
        if not info.isreg():
            continue
        left = info.size
        with open(src, "rb", buffering=0) as data:
            while left:
                chunk = data.read(min(_CHUNK, left))
                if not chunk:
                    raise PackagingError(f"{src} shrank while being packaged",
                                         "package again when nothing writes to the area")
                write(chunk)
                left -= len(chunk)
        pad = _padded(info.size) - info.size
        if pad:
            write(b"\0" * pad)
        offset += info.size + pad
        members.append(MemberRecord(arc, info.size))
    tail = _END + (-(offset + _END)) % _RECORD
    write(b"\0" * tail)
    return offset + tail, members


class _HashingWriter:
    """Writes to a file and feeds the same bytes to sha256 on a second thread (hashlib frees the GIL)."""

    def __init__(self, fh):
        self._fh = fh
        self._sha = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._sha.update(chunk)

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._queue.put(data)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._sha.hexdigest()


def _write_hashed(out: Path, entries: list[Entry]) -> TarRecord:
    out = Path(out)
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "wb", buffering=0) as fh:
            writer = _HashingWriter(fh)
            try:
                size, members = _stream(writer.write, entries)
            finally:
                digest = writer.hexdigest()
        part.replace(out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return TarRecord(out, size, digest, members)


def write_tar(out: Path, entries: Iterable[Entry]) -> Path:
    """Write ``entries`` (arcname, source path) to ``out`` deterministically, via ``out.part``.

    Parent folders of every member are added once, so that any split part unpacks on its own.
    """
    return write_tar_record(out, entries).path


def write_tar_record(out: Path, entries: Iterable[Entry]) -> TarRecord:
    """``write_tar``, returning the tarball's size, sha256 and member list."""
    return _write_hashed(out, _with_parents(entries))


def write_tgz(out: Path, entries: Iterable[Entry]) -> Path:
    """A deterministic gzipped tarball (no name, mtime 0 in the gzip header), via ``out.part``."""
    out = Path(out)
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0,
                                                compresslevel=6) as gz:
        _stream(gz.write, _with_parents(entries))
    part.replace(out)
    return out


def tar_size(entries: Iterable[Entry]) -> int:
    """The exact size ``write_tar`` gives these entries."""
    body = sum(_cost(arc, src) for arc, src in _with_parents(entries))
    return body + _END + (-(body + _END)) % _RECORD


def _cost(arc: str, src: Path | None) -> int:
    info = _tarinfo(arc, src)
    return len(_header(info)) + (_padded(info.size) if info.isreg() else 0)


def plan_parts(entries: Iterable[Entry], max_size: int) -> list[list[Entry]]:
    """Split sorted entries into consecutive parts whose tarballs are at most ``max_size`` bytes.

    A part holds its own parent folders. A file too large for any part goes into a part alone.
    """
    if max_size < 4 * _RECORD:
        raise PackagingError(f"part size {max_size} bytes is too small", f"use at least {4 * _RECORD} bytes")
    parts: list[list[Entry]] = []
    current: list[Entry] = []
    dirs: set[str] = set()
    body = 0
    for arc, src in sorted(dict(entries).items()):
        pieces = arc.split("/")
        new_parents = ["/".join(pieces[:i]) for i in range(1, len(pieces))]
        cost = _cost(arc, src) + sum(_cost(p, None) for p in new_parents if p not in dirs)
        total = body + cost + _END
        if current and total + (-total) % _RECORD > max_size:
            parts.append(current)
            current, dirs = [], set()
            cost = _cost(arc, src) + sum(_cost(p, None) for p in new_parents)
            body = 0
        current.append((arc, src))
        dirs.update(new_parents)
        dirs.add(arc)
        body += cost
    if current:
        parts.append(current)
    return parts


def write_parts(name: Callable[[int, int], Path], entries: Iterable[Entry], max_size: int) -> list[TarRecord]:
    """Write entries as ``m_of_n`` tarballs of at most ``max_size`` bytes; ``name(m, n)`` gives each path."""
    parts = plan_parts(entries, max_size)
    records = []
    for m, part in enumerate(parts, 1):
        record = write_tar_record(name(m, len(parts)), part)
        record.oversized = record.size > max_size
        records.append(record)
    return records
