"""ALMA identifiers: project codes, uids in both forms, and delivery file names.

The one grammar of ALMA identifiers (ALMA-FACTS.md section 1); every command and parser asks it.

- Project code ``YYYY.C.NNNNN.T``: C is the call digit, or ``A`` for Director's Discretionary Time
  (``2018.A.00062.S``); T is one to three capital letters: S (standard), L (large programme),
  T (target of opportunity), V (VLBI), P, E, SV / CSV for (commissioning) science verification
  (``2011.0.00016.SV``).
- Uid: ``uid://A001/X13e/X1fe`` on the archive side, ``uid___A001_X13e_X1fe`` on disk. OUS uids start
  ``A001`` except in Cycle 1, where some start ``A002`` like EB (ASDM) uids.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .errors import IdentifierError

#: A project code inside a longer text (no anchors), e.g. in a file name.
PROJECT_CODE_PATTERN = r"\d{4}\.(?:\d|A)\.\d{5}\.[A-Z]{1,3}"
# The one uid grammar: ``uid`` + separator + archive id (``A001``) + two hexadecimal parts (``X13e``), the
# separators ``://``, ``/``, ``/`` on the archive side and ``___``, ``_``, ``_`` on disk.
#: One hexadecimal part of a uid (``X13e``); staff folders are named by the last one (``Calibration_X1fe``).
UID_HEX_PART = r"X[0-9a-fA-F]+"
_UID_PARTS = (r"A\d{3}", UID_HEX_PART, UID_HEX_PART)


def _uid_pattern(start: str, separator: str, named: bool = False) -> str:
    a, b, c = (f"(?P<{n}>{p})" if named else p for n, p in zip("abc", _UID_PARTS))
    return f"uid{start}{a}{separator}{b}{separator}{c}"


#: A uid in its disk form inside a longer text (``uid___A001_X13e_X1fe``).
UID_DISK_PATTERN = _uid_pattern("___", "_")
#: A uid in either form inside a longer text.
UID_PATTERN = _uid_pattern("(?:://|___)", "[/_]")

_PROJECT_RE = re.compile(
    r"^(?P<year>\d{4})\.(?P<cycle>\d|A)\.(?P<number>\d{5})\.(?P<type>[A-Z]{1,3})$")
_UID_ARCHIVE_RE = re.compile(f"^{_uid_pattern('://', '/', named=True)}$")
_UID_DISK_RE = re.compile(f"^{_uid_pattern('___', '_', named=True)}$")
_UID_ANY = re.compile(UID_PATTERN)
_UID_DISK_AT_START = re.compile(UID_DISK_PATTERN)
_OUS_NAMED = re.compile(rf"(?:science_goal|group|member)\.({UID_PATTERN})")
_UID_IN_TEXT = UID_DISK_PATTERN
_PROJECT_IN_TEXT = PROJECT_CODE_PATTERN
# Calls for proposals by year: no call in 2014 (Cycle 2 ran on) nor in 2020 (Cycle 7 extended).
_CYCLE_OF_YEAR = {2011: 0, 2012: 1, 2013: 2, 2014: 2, 2015: 3, 2016: 4, 2017: 5, 2018: 6, 2019: 7}
_PROJECT_HINT = ("project codes look like 2013.1.00308.S: year.cycle.number.type, the cycle digit or A "
                 "(DDT), the type one to three capital letters (S, L, T, V, P, E, SV, CSV)")


@dataclass(frozen=True, order=True)
class ProjectCode:
    """An ALMA project code, ``YYYY.C.NNNNN.T`` (e.g. ``2013.1.00308.S``)."""

    code: str

    @classmethod
    def parse(cls, text: str) -> "ProjectCode":
        """Read a project code in any form ALMA has used; IdentifierError (exit 2) otherwise."""
        text = text.strip()
        if not _PROJECT_RE.match(text):
            raise IdentifierError(f"'{text}' is not an ALMA project code", _PROJECT_HINT)
        return cls(text)

    @property
    def is_ddt(self) -> bool:
        """True for Director's Discretionary Time (``YYYY.A.NNNNN.T``)."""
        return self.code.split(".")[1] == "A"

    @property
    def type(self) -> str:
        """The project type letters: ``S``, ``L``, ``T``, ``V``, ``P``, ``E``, ``SV``, ``CSV``..."""
        return self.code.rsplit(".", 1)[1]

    @property
    def cycle(self) -> int:
        """The ALMA cycle, from the proposal year (2011 -> 0, 2013 -> 2, 2017 -> 5, 2021 -> 8);
        the digit after the year is the call's semester (or ``A`` for DDT), not the cycle."""
        year = int(self.code[:4])
        return _CYCLE_OF_YEAR.get(year, year - 2013)

    def __str__(self) -> str:
        return self.code


def is_project_code(text: str) -> bool:
    """True when ``text`` (stripped) is a project code in any form ALMA has used."""
    return bool(_PROJECT_RE.match(text.strip()))


@dataclass(frozen=True, order=True)
class Uid:
    """An ALMA uid; ``archive`` is ``uid://A001/X13e/X1fe``, ``disk`` is ``uid___A001_X13e_X1fe``."""

    archive: str

    @classmethod
    def parse(cls, text: str) -> "Uid":
        """Read a uid in either form (archive or disk); IdentifierError (exit 2) otherwise."""
        text = text.strip()
        m = _UID_ARCHIVE_RE.match(text) or _UID_DISK_RE.match(text)
        if not m:
            raise IdentifierError(
                f"'{text}' is not an ALMA uid",
                "uids look like uid://A001/X13e/X1fe or uid___A001_X13e_X1fe (A002 for EBs and Cycle 1 OUSs)",
            )
        return cls(f"uid://{m['a']}/{m['b']}/{m['c']}")

    @classmethod
    def of(cls, value: "Uid | str") -> "Uid":
        """``value`` itself when it is a Uid, else ``Uid.parse(value)`` (IdentifierError if it is none)."""
        return value if isinstance(value, Uid) else cls.parse(value)

    @property
    def disk(self) -> str:
        """The uid in its disk form, ``uid___A001_X13e_X1fe`` (folder and file names)."""
        return self.archive.replace("uid://", "uid___").replace("/", "_")

    @property
    def tail(self) -> str:
        """The last part of the uid, e.g. ``X1fe`` (staff folder names use it)."""
        return self.archive.rsplit("/", 1)[1]

    @property
    def is_ous(self) -> bool:
        """True for ``A001`` uids, which are always OUS uids. An ``A002`` uid is an EB, or a Cycle 1
        OUS: only where it is written tells (see ``ous_uids_in``)."""
        return self.archive.startswith("uid://A001/")

    def __str__(self) -> str:
        return self.archive


def is_uid(text: str) -> bool:
    """True when ``text`` (stripped) is a uid in either form."""
    return bool(_UID_ARCHIVE_RE.match(text.strip()) or _UID_DISK_RE.match(text.strip()))


def uids_in(text: str) -> list[Uid]:
    """Every uid written in ``text`` (either form), in order of appearance, each once."""
    return list(dict.fromkeys(Uid.parse(m) for m in _UID_ANY.findall(text)))


def ous_uids_in(text: str) -> set[Uid]:
    """The uids ``text`` names as OUS folders (``science_goal.<uid>``, ``group.<uid>``,
    ``member.<uid>``), whatever their archive prefix (Cycle 1 OUS uids start ``A002``)."""
    return {Uid.parse(m) for m in _OUS_NAMED.findall(text)}


def eb_uids_in(text: str) -> list[Uid]:
    """The EB (ASDM) uids written in ``text``: its uids that are neither ``A001`` nor named as OUS."""
    ous = ous_uids_in(text)
    return sorted(u for u in uids_in(text) if not u.is_ous and u not in ous)


def uid_at_start(name: str) -> Uid | None:
    """The uid (disk form) a file or folder name starts with, e.g. ``uid___A002_Xd28a9e_X71b8.ms``."""
    m = _UID_DISK_AT_START.match(name)
    return Uid.parse(m.group(0)) if m else None


def uid_of_name(name: str) -> Uid | None:
    """The uid when ``name`` is exactly a uid (either form), else None (never raises)."""
    return Uid.parse(name) if is_uid(name) else None


class TarballKind(str, Enum):
    """The kinds of file a delivery is fetched as, named by their archive file names."""
    PRODUCTS = "products"      # <project>_<OUS>_<m>_of_<n>.tar (member or group)
    AUXILIARY = "auxiliary"    # <project>_<MOUS>_auxiliary.tar
    RAW = "raw"                # <project>_<EB>.asdm.sdm.tar
    README = "readme"          # member.<MOUS>.README.txt
    CYCLE0 = "cycle0"          # <project>_<date>_<m>_of_<n>.tar
    EXTERNAL = "external"      # <project>_<MOUS>_external_<label>_<m>_of_<n>.tar (ARI-L and other external products)


_DELIVERY_PATTERNS = [
    (TarballKind.PRODUCTS, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})_(?P<part>\d{{3}})_of_(?P<parts>\d{{3}})\.tar$")),
    (TarballKind.AUXILIARY, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})_auxiliary\.tar$")),
    (TarballKind.RAW, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})\.asdm\.sdm\.tar$")),
    (TarballKind.README, re.compile(rf"^member\.(?P<uid>{_UID_IN_TEXT})\.README\.txt$")),
    (TarballKind.EXTERNAL, re.compile(
        rf"^(?P<project>{_PROJECT_IN_TEXT})_(?P<uid>{_UID_IN_TEXT})_external_(?P<label>[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*?)"
        rf"_(?P<part>\d{{3}})_of_(?P<parts>\d{{3}})\.tar$")),
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
    label: str | None = None     # an external product's label, e.g. ``ari_l`` (ALMA Reprocessed Images, Legacy)

    @classmethod
    def parse(cls, name: str) -> "DeliveryFileName":
        """Read a delivery file name; IdentifierError (exit 2) when it is none of the archive's forms."""
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
                    label=g.get("label"),
                )
        raise IdentifierError(
            f"'{name}' is not an ALMA delivery file name",
            "expected <project>_<uid>_001_of_001.tar, _auxiliary.tar, _external_<label>_001_of_001.tar, "
            "<project>_<EB>.asdm.sdm.tar or member.<MOUS>.README.txt",
        )


def products_name(project: ProjectCode | str, ous: Uid, part: int, parts: int) -> str:
    """``<project>_<OUS>_<m>_of_<n>.tar``: part ``part`` of ``parts`` of an OUS's products."""
    return f"{project}_{ous.disk}_{part:03d}_of_{parts:03d}.tar"


def auxiliary_name(project: ProjectCode | str, mous: Uid) -> str:
    """``<project>_<MOUS>_auxiliary.tar``: the calibration tables, logs and weblog of a MOUS."""
    return f"{project}_{mous.disk}_auxiliary.tar"


def raw_name(project: ProjectCode | str, eb: Uid) -> str:
    """``<project>_<EB>.asdm.sdm.tar``: the raw data (ASDM) of one execution block."""
    return f"{project}_{eb.disk}.asdm.sdm.tar"


def readme_name(mous: Uid) -> str:
    """``member.<MOUS>.README.txt``: the README the archive serves beside a MOUS's tarballs."""
    return f"member.{mous.disk}.README.txt"


def external_name(project: ProjectCode | str, mous: Uid, label: str, part: int = 1, parts: int = 1) -> str:
    """``<project>_<MOUS>_external_<label>_<m>_of_<n>.tar``, e.g. an ARI-L product (label ``ari_l``)."""
    return f"{project}_{mous.disk}_external_{label}_{part:03d}_of_{parts:03d}.tar"


def cycle0_name(project: ProjectCode | str, date: str, part: int, parts: int) -> str:
    """``<project>_<date>_<m>_of_<n>.tar``: a Cycle 0 delivery tarball (named by its delivery date)."""
    return f"{project}_{date}_{part:03d}_of_{parts:03d}.tar"
