"""Deterministic tarballs: sorted members, fixed mtime, owner and mode; same input, same bytes.

Both the packager and the simulator write every delivery tarball through ``write_tar``.
"""
from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import Iterable

FIXED_MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z
_COPY_BUFSIZE = 1 << 20


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


def _tarinfo(arcname: str, path: Path) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "alma"
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    else:
        raise ValueError(f"{path}: only files, folders and symlinks go into a delivery tarball")
    return info


def write_tar(out: Path, entries: Iterable[tuple[str, Path]]) -> Path:
    """Write ``entries`` (arcname, source path) to ``out`` deterministically, via ``out.part``.

    Parent folders of every member are added once, so that any split part unpacks on its own.
    """
    out = Path(out)
    chosen = dict(entries)
    for arc in list(chosen):
        parts = arc.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in chosen:
                chosen[parent] = None  # a folder with no source: written as a plain directory
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.copybufsize = _COPY_BUFSIZE
        for arc in sorted(chosen):
            src = chosen[arc]
            if src is None:
                info = tarfile.TarInfo(arc)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
                info.uname = info.gname = "alma"
                tar.addfile(info)
                continue
            info = _tarinfo(arc, src)
            if info.isreg():
                with open(src, "rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
    part.replace(out)
    return out
