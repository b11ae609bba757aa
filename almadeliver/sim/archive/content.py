"""What the local archive serves: the simulated projects' files, tarball members and ObsCore database."""
from __future__ import annotations

import tarfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError
from ..catalogue import FILES_DIR, Catalogue, CatalogueFile, TarMember, find_projects
from .tap import obscore_database


@dataclass
class ServedFile:
    """A byte range of a file on disk served at /dataPortal/<name> (a whole file or a tar member)."""

    name: str
    path: Path
    content_type: str
    proprietary: bool
    offset: int = 0
    size: int | None = None            # None: the whole file (read from disk when served)

    def length(self) -> int:
        """The size the archive declares (the file's own size unless set)."""
        return self.path.stat().st_size if self.size is None else self.size


# -- what is served ----------------------------------------------------------------------------
class ArchiveContent:
    """The projects under a folder: files, DataLink entries and the ObsCore database."""

    def __init__(self, root: Path):
        self.root = Path(root)
        folders = find_projects(self.root)
        if not folders:
            raise UsageError(f"no simulated project (catalogue.json) under {self.root}",
                             "run `almadeliver simulate` first, or name the folder it wrote")
        self.catalogues: list[Catalogue] = []
        self.files: dict[str, ServedFile] = {}
        self.by_id: dict[str, list[tuple[CatalogueFile, bool]]] = {}
        self.tarballs: dict[str, tuple[CatalogueFile, bool, Path]] = {}
        self._members: dict[str, tuple[str, TarMember]] = {}  # served name -> (tarball, member)
        self.member_names: dict[tuple[str, str], str] = {}     # (tarball, member path) -> served name
        self._lock = threading.Lock()
        for folder in folders:
            cat = Catalogue.load(folder)
            self.catalogues.append(cat)
            for f in cat.files:
                path = folder / FILES_DIR / f.name
                self.files[f.name] = ServedFile(f.name, path, f.content_type, cat.proprietary)
                for id_ in f.ids:
                    self.by_id.setdefault(id_, []).append((f, cat.proprietary))
                if f.members:
                    self.tarballs[f.name] = (f, cat.proprietary, path)
        self._name_members()
        self.db = obscore_database(self.catalogues)
        self.db_lock = threading.Lock()

    def _name_members(self) -> None:
        """Members are served under their file name, like ALMA's; a name used twice gets its tar path."""
        counts = Counter(m.path.rsplit("/", 1)[-1] for f, _, _ in self.tarballs.values() for m in f.members)
        for tar_name, (f, _, _) in self.tarballs.items():
            for m in f.members:
                base = m.path.rsplit("/", 1)[-1]
                name = base if counts[base] == 1 and base not in self.files else m.path.replace("/", ".")
                self.member_names[(tar_name, m.path)] = name
                self._members[name] = (tar_name, m)

    @property
    def projects(self) -> list[str]:
        """The project codes served."""
        return [c.project for c in self.catalogues]

    def file(self, name: str) -> ServedFile | None:
        """A delivery file, or a member of a served tarball (located in the tar on first use)."""
        served = self.files.get(name)
        if served is not None or name not in self._members:
            return served
        tar_name, member = self._members[name]
        _, proprietary, path = self.tarballs[tar_name]
        with self._lock:
            if name not in self.files:
                self._locate_members(tar_name, path, proprietary)
        return self.files.get(name)

    def _locate_members(self, tar_name: str, path: Path, proprietary: bool) -> None:
        wanted = {m.path: m for m in self.tarballs[tar_name][0].members}
        with tarfile.open(path) as tar:
            for info in tar:
                member = wanted.get(info.name)
                if member is not None and info.isreg():
                    name = self.member_names[(tar_name, info.name)]
                    self.files[name] = ServedFile(name, path, member.content_type, proprietary,
                                                  info.offset_data, info.size)
