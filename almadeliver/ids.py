"""ALMA identifiers: project codes, uids in both forms, and delivery file names."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .errors import IdentifierError

_PROJECT_RE = re.compile(r"^(?P<year>\d{4})\.(?P<cycle>\d)\.(?P<number>\d{5})\.(?P<type>[A-Z])$")
_UID_ARCHIVE_RE = re.compile(r"^uid://(?P<a>A\d{3})/(?P<b>X[0-9a-fA-F]+)/(?P<c>X[0-9a-fA-F]+)$")
_UID_DISK_RE = re.compile(r"^uid___(?P<a>A\d{3})_(?P<b>X[0-9a-fA-F]+)_(?P<c>X[0-9a-fA-F]+)$")
_UID_IN_TEXT = r"uid___A\d{3}_X[0-9a-fA-F]+_X[0-9a-fA-F]+"
_PROJECT_IN_TEXT = r"\d{4}\.\d\.\d{5}\.[A-Z]"
# Calls for proposals by year: no call in 2014 (Cycle 2 ran on) nor in 2020 (Cycle 7 extended).
_CYCLE_OF_YEAR = {2011: 0, 2012: 1, 2013: 2, 2014: 2, 2015: 3, 2016: 4, 2017: 5, 2018: 6, 2019: 7}


@dataclass(frozen=True, order=True)
class ProjectCode:
    """An ALMA project code, ``YYYY.C.NNNNN.T`` (e.g. ``2013.1.00308.S``)."""

    code: str

    @classmethod
    def parse(cls, text: str) -> "ProjectCode":
        text = text.strip()
        if not _PROJECT_RE.match(text):
            raise IdentifierError(
                f"'{text}' is not an ALMA project code",
                "project codes look like 2013.1.00308.S (year.cycle.number.type)",
            )
        return cls(text)

    @property
    def cycle(self) -> int:
        """The ALMA cycle, from the proposal year (2011 -> 0, 2013 -> 2, 2017 -> 5, 2021 -> 8);
        the digit after the year is the call's semester, not the cycle."""
        year = int(self.code[:4])
        return _CYCLE_OF_YEAR.get(year, year - 2013)

    def __str__(self) -> str:
        return self.code


def is_project_code(text: str) -> bool:
    return bool(_PROJECT_RE.match(text.strip()))


@dataclass(frozen=True, order=True)
class Uid:
    """An ALMA uid; ``archive`` is ``uid://A001/X13e/X1fe``, ``disk`` is ``uid___A001_X13e_X1fe``."""

    archive: str

    @classmethod
    def parse(cls, text: str) -> "Uid":
        text = text.strip()
        m = _UID_ARCHIVE_RE.match(text) or _UID_DISK_RE.match(text)
        if not m:
            raise IdentifierError(
                f"'{text}' is not an ALMA uid",
                "uids look like uid://A001/X13e/X1fe or uid___A001_X13e_X1fe",
            )
        return cls(f"uid://{m['a']}/{m['b']}/{m['c']}")

    @property
    def disk(self) -> str:
        return self.archive.replace("uid://", "uid___").replace("/", "_")

    @property
    def tail(self) -> str:
        """The last part of the uid, e.g. ``X1fe`` (staff folder names use it)."""
        return self.archive.rsplit("/", 1)[1]

    @property
    def is_ous(self) -> bool:
        return self.archive.startswith("uid://A001/")

    def __str__(self) -> str:
        return self.archive


def is_uid(text: str) -> bool:
    return bool(_UID_ARCHIVE_RE.match(text.strip()) or _UID_DISK_RE.match(text.strip()))


class TarballKind(str, Enum):
    PRODUCTS = "products"      # <project>_<OUS>_<m>_of_<n>.tar (member or group)
    AUXILIARY = "auxiliary"    # <project>_<MOUS>_auxiliary.tar
    RAW = "raw"                # <project>_<EB>.asdm.sdm.tar
    README = "readme"          # member.<MOUS>.README.txt
    CYCLE0 = "cycle0"          # <project>_<date>_<m>_of_<n>.tar


_DELIVERY_PATTERNS = [
    (TarballKind.PRODUCTS, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})_(?P<part>\d{{3}})_of_(?P<parts>\d{{3}})\.tar$")),
    (TarballKind.AUXILIARY, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})_auxiliary\.tar$")),
    (TarballKind.RAW, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})\.asdm\.sdm\.tar$")),
    (TarballKind.README, re.compile(rf"^member\.(?P<uid>{_UID_IN_TEXT})\.README\.txt$")),
    (TarballKind.CYCLE0, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<date>\d{{4}}-\d{{2}}-\d{{2}})_(?P<part>\d{{3}})_of_(?P<parts>\d{{3}})\.tar$")),
]


@dataclass(frozen=True)
class DeliveryFileName:
    """A parsed delivery file name (what the archive's dataPortal serves)."""

    name: str
    kind: TarballKind
    project: ProjectCode | None = None
    uid: Uid | None = None
    part: int | None = None
    parts: int | None = None
    date: str | None = None

    @classmethod
    def parse(cls, name: str) -> "DeliveryFileName":
        for kind, pattern in _DELIVERY_PATTERNS:
            m = pattern.match(name)
            if m:
                g = m.groupdict()
                return cls(
                    name=name,
                    kind=kind,
                    project=ProjectCode(g["project"]) if g.get("project") else None,
                    uid=Uid.parse(g["uid"]) if g.get("uid") else None,
                    part=int(g["part"]) if g.get("part") else None,
                    parts=int(g["parts"]) if g.get("parts") else None,
                    date=g.get("date"),
                )
        raise IdentifierError(
            f"'{name}' is not an ALMA delivery file name",
            "expected <project>_<uid>_001_of_001.tar, _auxiliary.tar, <project>_<EB>.asdm.sdm.tar "
            "or member.<MOUS>.README.txt",
        )


def products_name(project: ProjectCode | str, ous: Uid, part: int, parts: int) -> str:
    return f"{project}_{ous.disk}_{part:03d}_of_{parts:03d}.tar"


def auxiliary_name(project: ProjectCode | str, mous: Uid) -> str:
    return f"{project}_{mous.disk}_auxiliary.tar"


def raw_name(project: ProjectCode | str, eb: Uid) -> str:
    return f"{project}_{eb.disk}.asdm.sdm.tar"


def readme_name(mous: Uid) -> str:
    return f"member.{mous.disk}.README.txt"


def cycle0_name(project: ProjectCode | str, date: str, part: int, parts: int) -> str:
    return f"{project}_{date}_{part:03d}_of_{parts:03d}.tar"
