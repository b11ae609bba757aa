"""The download plan: which files of a project view to fetch, from which mirror, and the room they need."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..archive.client import mirror_list
from ..archive.model import ArchiveFile, ProjectView
from ..units import human_size
from ..errors import DiskSpaceError, UsageError
from ..ids import TarballKind
from .journal import DOWNLOADED, EXTRACTED, Journal

WHAT = {
    "products": {TarballKind.PRODUCTS, TarballKind.CYCLE0},
    "auxiliary": {TarballKind.AUXILIARY},
    "raw": {TarballKind.RAW},
    "readme": {TarballKind.README},
    "external": {TarballKind.EXTERNAL},   # ARI-L and other external products (not fetched unless asked)
}
DEFAULT_WHAT = "products,auxiliary,raw,readme"
SPACE_MARGIN = 16 << 20      # bytes kept free beyond the files themselves


def parse_what(text: str) -> set[TarballKind]:
    """``--what products,raw`` -> the tarball kinds to fetch.

    Parameters
    ----------
    text : str
        Comma-separated kinds, as ``--what`` takes them.

    Returns
    -------
    set[TarballKind]
        The tarball kinds.

    Raises
    ------
    UsageError
        A kind is not one of ``WHAT``, or the text names none.
    """
    kinds: set[TarballKind] = set()
    for word in filter(None, (w.strip().lower() for w in text.split(","))):
        if word not in WHAT:
            raise UsageError(f"--what: unknown kind '{word}'", f"choose among {', '.join(WHAT)}")
        kinds |= WHAT[word]
    if not kinds:
        raise UsageError("--what is empty", f"choose among {', '.join(WHAT)}")
    return kinds


def mirror_url(archive: str) -> str:
    """``eso|nrao|naoj`` or a URL -> the mirror root URL.

    Parameters
    ----------
    archive : str
        A mirror name (``eso``, ``nrao``, ``naoj``) or a URL.

    Returns
    -------
    str
        The mirror's root URL.
    """
    return mirror_list(archive)[0]


def is_tarball(f: ArchiveFile) -> bool:
    """True for the tarballs (every file but the README and the single files taken from inside a tarball).

    Parameters
    ----------
    f : ArchiveFile
        A file of the archive's DataLink answer.

    Returns
    -------
    bool
        True when ``f`` is a tarball.
    """
    return f.kind is not TarballKind.README and f.member_of is None


@dataclass
class DownloadPlan:
    """Every distinct file to fetch (by name and size), in the order given."""

    archive: str
    files: list[ArchiveFile]
    duplicates_dropped: int          # by the query stage and here
    skipped_unreadable: list[str]    # files DataLink says this identity cannot read

    @property
    def total_bytes(self) -> int:
        """Bytes of every file of the plan."""
        return sum(f.size for f in self.files)

    @property
    def tarball_bytes(self) -> int:
        """Bytes of the plan's tarballs."""
        return sum(f.size for f in self.files if is_tarball(f))

    @property
    def hosts(self) -> set[str]:
        """The hosts the plan's files come from, and the archive's."""
        return {urlsplit(f.url).netloc for f in self.files} | {urlsplit(self.archive).netloc}


def make_plan(view: ProjectView, kinds: set[TarballKind], archive: str | None = None) -> DownloadPlan:
    """The files of ``view`` of the given kinds, once each; ``archive`` moves every URL to that mirror.

    Parameters
    ----------
    view : ProjectView
        The project as the archive lists it (DataLink).
    kinds : set[TarballKind]
        The tarball kinds to fetch.
    archive : str | None, default None
        A mirror name or URL to fetch from (None: the URLs as the archive gives them).

    Returns
    -------
    DownloadPlan
        The files to fetch and their total size.
    """
    root = mirror_url(archive) if archive else view.archive.rstrip("/")
    seen: set[tuple[str, int]] = set()
    files, dropped, unreadable = [], 0, []
    for f in view.files(kinds):
        if (f.name, f.size) in seen:
            dropped += 1
            continue
        seen.add((f.name, f.size))
        url = f"{root}/dataPortal/{f.name}" if archive else f.url
        files.append(ArchiveFile(f.name, url, f.size, f.kind, f.mous, f.readable))
        if not f.readable:
            unreadable.append(f.name)
    return DownloadPlan(root, files, view.duplicates_dropped + dropped, unreadable)


@dataclass
class SpaceCheck:
    """What is still to be written under DEST, and the room there is."""

    download_bytes: int   # bytes still to fetch
    unpack_bytes: int     # bytes the tarballs still to extract will unpack to
    free_bytes: int

    @property
    def needed(self) -> int:
        """Bytes still to write: download plus unpacked."""
        return self.download_bytes + self.unpack_bytes

    @property
    def margin(self) -> int:
        """Room kept free on top: 2 % of what is written, at least SPACE_MARGIN (journal, folders, blocks)."""
        return max(self.needed // 50, SPACE_MARGIN) if self.needed else 0


def check_space(plan: DownloadPlan, dest: Path, untar: bool = True, journal: Journal | None = None) -> SpaceCheck:
    """Raise DiskSpaceError unless DEST has room for what is left to fetch plus the unpacked tree.

    A tarball unpacks to about its own size (uncompressed tar); files already fetched or extracted,
    and bytes already in ``.part`` files, are not counted again.

    Parameters
    ----------
    plan : DownloadPlan
        The files to fetch.
    dest : Path
        The download destination.
    untar : bool, default True
        Count the unpacked tree too (about each tarball's size).
    journal : Journal | None, default None
        The destination's journal (its ``.part`` bytes are not counted again).

    Returns
    -------
    SpaceCheck
        The bytes (B) needed and free on DEST's file system.

    Raises
    ------
    DiskSpaceError
        DEST's file system has less free space than the download plus its unpacked tree.
    """
    dest = Path(dest)
    journal = journal or Journal(dest)
    download = unpack = 0
    for f in plan.files:
        state = journal.state(f.name, f.size)
        if state == EXTRACTED:
            continue
        if state != DOWNLOADED:
            entry = journal.files.get(f.name)
            part = dest / (f.name + ".part")
            done = entry.fetched() if entry and entry.segments else (part.stat().st_size if part.exists() else 0)
            download += max(f.size - done, 0)
        if untar and is_tarball(f):
            unpack += f.size
    probe = dest
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    check = SpaceCheck(download, unpack, free)
    if check.needed + check.margin > free:
        raise DiskSpaceError(
            f"{dest} has {human_size(free)} free but the download needs {human_size(download)} plus {human_size(unpack)} "
            f"unpacked plus {human_size(check.margin)} to spare",
            "free some space, choose another --dest, or fetch less with --what",
        )
    return check
