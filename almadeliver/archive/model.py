"""The project view: what the query stage hands to the download stage.

Project > MOUS (with its GOUS and SG) > files and EBs, every distinct file once. ``query --format
json`` writes ``ProjectView.to_json()``; ``download PLAN.json`` reads it back with ``from_json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..ids import TarballKind

SCHEMA = "almadeliver.projectview/1"


@dataclass
class ArchiveFile:
    """One file to download, as DataLink describes it."""

    name: str
    url: str
    size: int                  # bytes (DataLink content_length)
    kind: TarballKind
    mous: str                  # the MOUS (uid://...) it belongs to; Cycle 0 files: the first one listed
    readable: bool = True      # DataLink 'readable' for the identity that asked
    member_of: str | None = None   # a single file inside this tarball (``name`` is then its path in the tree)


@dataclass
class Mous:
    """A member OUS: the unit of QA2, calibration and delivery."""

    uid: str
    gous: str
    sg: str | None             # science goal uid; not in ObsCore, read from the tarball's first header
    array: str                 # 12m | 7m | TP
    qa2_passed: bool | None
    ebs: list[str]
    targets: list[str]
    bands: list[str]
    rows: int                  # ObsCore rows merged into this line
    files: list[ArchiveFile] = field(default_factory=list)
    shared_files: list[str] = field(default_factory=list)  # names of its files listed (and fetched) under another MOUS

    def size(self, *kinds: TarballKind) -> int:
        """Bytes of the MOUS's files of ``kinds`` (all its files when none is given)."""
        return sum(f.size for f in self.files if not kinds or f.kind in kinds)


@dataclass
class Project:
    """One project of a project view: its identity from ObsCore and its member OUSs with their files."""
    code: str
    title: str
    pi: str
    cycle: int
    data_rights: str           # Public | Proprietary
    release_date: str
    bands: list[str]
    targets: list[str]
    mous: list[Mous] = field(default_factory=list)


@dataclass
class ProjectView:
    """What the query stage found: projects, their MOUS and files (each file once), from one mirror.

    Written by ``almadeliver query --format json`` and read back by ``download PLAN.json``.
    """
    archive: str               # the mirror that answered
    projects: list[Project]
    rows: int                  # ObsCore rows read
    duplicates_dropped: int    # file listings dropped because the same file (name, size) was already listed

    def files(self, kinds: set[TarballKind] | None = None) -> list[ArchiveFile]:
        """Every file of the view (already distinct), optionally only some kinds."""
        return [f for p in self.projects for m in p.mous for f in m.files if not kinds or f.kind in kinds]

    def to_table(self):
        """The science table: one row per MOUS, ObsCore column names, with units.

        Returns
        -------
        astropy.table.Table
            ``archive.sciencetable.mous_table`` of the science answer (positions in deg, resolution
            in arcsec, frequencies, sizes in bytes) when the view came from ``almadeliver.query``;
            for a view read from JSON (no ObsCore rows kept), ``archive.projectview.mous_table``
            with its ``*_bytes`` columns in bytes.
        """
        science = getattr(self, "science", None)
        if science is not None:
            from .sciencetable import mous_table as science_table

            return science_table(science)
        from astropy import units as u

        from .projectview import mous_table

        table = mous_table(self)
        for name in table.colnames:
            if name.endswith("_bytes"):
                table[name].unit = u.byte
        return table

    def to_json(self) -> str:
        """The view as JSON (with its schema name), for ``query --format json``."""
        return json.dumps({"schema": SCHEMA, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ProjectView":
        """Read a view written by ``to_json``; ValueError when the text is not one (another schema)."""
        data = json.loads(text)
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not an almadeliver project view (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        projects = []
        for p in data["projects"]:
            mous = [Mous(**{**m, "files": [ArchiveFile(**{**f, "kind": TarballKind(f["kind"])}) for f in m["files"]]})
                    for m in p["mous"]]
            projects.append(Project(**{**p, "mous": mous}))
        return cls(data["archive"], projects, data["rows"], data["duplicates_dropped"])
