"""The standard delivery tree and the staff reduction area: one walk, then members, flavours and EB lists.

``scan(path)`` walks a tree once (os.scandir) into a ``TreeIndex``; ``find_members(path)`` and
``find_staff_areas(path)`` read that index. Restore and package import these.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import TreeError, UsageError
from ..ids import UID_DISK_PATTERN as UID_RE
from ..ids import UID_HEX_PART, ProjectCode, Uid, eb_uids_in, is_project_code, raw_name, uid_at_start, uid_of_name
from .readme import Readme, parse_readme

_MEMBER_PREFIX_RE = re.compile(rf"^member\.{UID_RE}\.")
_OUS_DIR_RE = re.compile(rf"^(?P<level>science_goal|group|member)\.(?P<uid>{UID_RE})$")
_CYCLE0_DIR_RE = re.compile(r"^(?P<level>sg_ouss|group_ouss|member_ouss)(?:_(?P<date>\d{4}-\d{2}-\d{2}))?_id$")
_STAFF_CAL_RE = re.compile(rf"^Calibration_(?P<tail>(?:{UID_HEX_PART}_)?{UID_HEX_PART})$")
_MEMBER_FOLDERS = ("script", "calibration", "qa", "product", "log")


class Flavour(str, Enum):
    """How a member folder was delivered (ALMA-FACTS: Cycle 0, manual scripts, pipeline, staff area)."""
    CYCLE0 = "cycle0"          # Cycle 0: calibrated/ and raw/*.ms.split delivered
    MANUAL = "manual"          # Cycle 1-3 manual calibration: <EB>.ms.scriptForCalibration.py
    PIPELINE = "pipeline"      # Cycle 4 on (some earlier): casa_piperestorescript, calapply.txt, caltables.tgz
    STAFF = "staff-area"       # observatory reduction area: <MOUS>/Calibration_X*/, Combination/, Imaging/
    UNKNOWN = "unknown"


@dataclass
class Listing:
    """One folder of the index: file sizes, sub-folders, symlinks (name -> target exists)."""

    files: dict[str, int] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    links: dict[str, bool] = field(default_factory=dict)
    in_table: bool = False     # inside a CASA table (MS, caltable): sizes are not read

    def names(self) -> list[str]:
        """Every entry of the folder: files, sub-folders and links.

        Returns
        -------
        list[str]
            The entry names, unsorted.
        """
        return [*self.files, *self.dirs, *self.links]


@dataclass
class TreeIndex:
    """Every folder under ``root`` keyed by its path relative to root ('' is root itself)."""

    root: Path
    dirs: dict[str, Listing] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    @property
    def n_files(self) -> int:
        """How many files (and links) the index holds."""
        return sum(len(d.files) + len(d.links) for d in self.dirs.values())

    def get(self, rel: str) -> Listing:
        """The listing of folder ``rel`` (an empty one when it is not indexed).

        Parameters
        ----------
        rel : str
            A folder relative to the indexed root (``.`` for the root).

        Returns
        -------
        Listing
            Its files, folders and links.
        """
        return self.dirs.get(rel) or Listing()

    def path(self, rel: str) -> Path:
        """The path on disk of ``rel`` (relative to the indexed root).

        Parameters
        ----------
        rel : str
            A path relative to the indexed root.

        Returns
        -------
        Path
            The absolute path.
        """
        return self.root / rel if rel else self.root

    def under(self, rel: str):
        """(rel, Listing) for rel and every folder below it.

        Parameters
        ----------
        rel : str
            A folder relative to the indexed root.
        """
        prefix = rel + "/" if rel else ""
        for key, listing in self.dirs.items():
            if key == rel or key.startswith(prefix):
                yield key, listing


def join(rel: str, name: str) -> str:
    """``rel/name`` (just ``name`` at the root).

    Parameters
    ----------
    rel : str
        A folder relative to the scanned root (``.`` for the root).
    name : str
        An entry of it.

    Returns
    -------
    str
        The entry's path relative to the root.
    """
    return f"{rel}/{name}" if rel else name


def scan(path: str | Path) -> TreeIndex:
    """Walk ``path`` once with os.scandir; symlinks are recorded, never followed.

    Parameters
    ----------
    path : str | Path
        The folder to walk.

    Returns
    -------
    TreeIndex
        Every folder's listing, keyed by its path relative to ``path``.

    Raises
    ------
    UsageError
        ``path`` does not exist or is not a folder.
    """
    root = Path(path)
    if not root.exists():
        raise UsageError(f"{root} does not exist", "give a delivery folder: its project, a member or a staff area")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder", "give a delivery folder: its project, a member or a staff area")
    index = TreeIndex(root)
    stack: list[tuple[str, str, bool]] = [("", str(root), False)]
    while stack:
        rel, full, in_table = stack.pop()
        listing = Listing(in_table=in_table)
        try:
            entries = list(os.scandir(full))
        except OSError:
            index.unreadable.append(rel)
            index.dirs[rel] = listing
            continue
        table = in_table or any(e.name == "table.dat" for e in entries)
        listing.in_table = table
        for e in entries:
            if e.is_symlink():
                listing.links[e.name] = os.path.exists(e.path)
            elif e.is_dir(follow_symlinks=False):
                listing.dirs.append(e.name)
                stack.append((join(rel, e.name), e.path, table))
            elif table:
                listing.files[e.name] = -1
            else:
                try:
                    listing.files[e.name] = e.stat(follow_symlinks=False).st_size
                except OSError:
                    listing.files[e.name] = -1
        index.dirs[rel] = listing
    return index


def plain_name(name: str) -> str:
    """A file name without the pipeline's ``member.<MOUS>.`` prefix.

    Parameters
    ----------
    name : str
        A file name, perhaps with the pipeline's prefix.

    Returns
    -------
    str
        The name without the prefix.
    """
    return _MEMBER_PREFIX_RE.sub("", name)


def eb_of(name: str) -> Uid | None:
    """The EB uid a file or folder name starts with (``uid___A002_...``), if any.

    Parameters
    ----------
    name : str
        A file or folder name.

    Returns
    -------
    Uid | None
        The EB uid, or None.
    """
    uid = uid_at_start(plain_name(name))
    return None if uid is None or uid.is_ous else uid


@dataclass
class Member:
    """One member OUS folder of a delivery tree, as found on disk."""

    path: Path
    rel: str                                  # relative to the scanned root
    project: ProjectCode | None
    sg: Uid | None
    gous: Uid | None
    mous: Uid | None
    flavour: Flavour
    has_raw: bool
    restored: bool
    ebs_in_raw: list[Uid] = field(default_factory=list)
    ebs_in_scripts: list[Uid] = field(default_factory=list)
    asdms: dict[Uid, str] = field(default_factory=dict)               # EB -> rel path of raw ASDM / ms.split
    calibration_scripts: dict[Uid, str] = field(default_factory=dict)  # EB -> rel path (manual, Cycle 0)
    script_for_pi: str | None = None
    restore_script: str | None = None         # pipeline casa_piperestorescript.py
    readme: str | None = None
    naming: list[str] = field(default_factory=list)   # what is wrong with the folder names

    def file(self, rel: str) -> Path:
        """The absolute path of ``rel``, a path this member's scan gave (relative to the scanned root:
        the member's own ``rel`` prefix is dropped when the scan started above the member).

        Parameters
        ----------
        rel : str
            A path from this member's scan.

        Returns
        -------
        Path
            The absolute path.
        """
        own = self.rel
        return self.path / (rel[len(own) + 1:] if own and rel.startswith(own + "/") else rel)

    @property
    def ebs(self) -> list[Uid]:
        """Every EB the member has, in raw/ or named by its scripts."""
        return sorted(set(self.ebs_in_raw) | set(self.ebs_in_scripts))

    @property
    def total_power_ebs(self) -> list[Uid]:
        """EBs calibrated by a Total Power script (``<EB>.ms.scriptForSDCalibration.py``)."""
        return sorted(eb for eb, rel in self.calibration_scripts.items()
                      if plain_name(rel.rsplit("/", 1)[-1]).endswith(SD_CALIBRATION_SCRIPT_SUFFIX))

    @property
    def missing_raw(self) -> list[Uid]:
        """EBs a script needs whose ASDM is not in raw/."""
        return [eb for eb in self.ebs_in_scripts if eb not in self.ebs_in_raw]

    @property
    def semipass(self) -> list[Uid]:
        """ASDMs in raw/ without a calibration script (QA semipass data, skipped by scriptForPI)."""
        return [eb for eb in self.ebs_in_raw if eb not in self.ebs_in_scripts]

    def raw_tarball(self, eb: Uid) -> str:
        """The archive file to fetch for an EB's ASDM.

        Parameters
        ----------
        eb : Uid
            The EB.

        Returns
        -------
        str
            The raw tarball's file name (``<project>_<MOUS>.<EB>.asdm.sdm.tar``).
        """
        return raw_name(self.project or "<project>", eb)


# script/'s combining script of a manual member with several EBs (ALMA-FACTS.md section 3)
FLUX_SCRIPT = "scriptForFluxCalibration.py"
STAFF_CALIBRATION_PREFIX = "Calibration_"
STAFF_COMBINATION = "Combination/calibrated"
STAFF_IMAGING = "Imaging"
# The calibration script of one manual EB: interferometric, or Total Power (scriptForPI v2.x globs
# ``*uid*.ms.scriptForSDCalibration.py``; ALMA-FACTS.md section 3).
CALIBRATION_SCRIPT_SUFFIXES = (".ms.scriptForCalibration.py", ".ms.scriptForSDCalibration.py")
SD_CALIBRATION_SCRIPT_SUFFIX = CALIBRATION_SCRIPT_SUFFIXES[1]
# What a manual Total Power EB leaves after scriptForPI v2.x: the SD script (ALMA's generator, step
# SDscience, CASA 6.4.3 and later) ends by copying the baseline-subtracted, Jy-calibrated data to
# <EB>.ms.cal; scriptForPI then moves only <EB>.ms.split.cal up to calibrated/ (printing "ERROR:
# <EB>.ms.split.cal was not created."), so <EB>.ms.cal stays in calibrated/<EB>.calibration/.
TP_CALIBRATED_SUFFIX = ".ms.cal"
# Scripts generated with CASA before 6.4.3 then scale <EB>.ms.cal (K) to Jy in a copy, <EB>.ms.cal.jy.
TP_JY_SUFFIX = ".ms.cal.jy"


def total_power_calibrated(calibrated: Path, eb: str, final: bool = False) -> Path:
    """Where scriptForPI v2.x leaves the calibrated data of Total Power EB ``eb`` (``uid___...``):
    ``calibrated/<EB>.calibration/<EB>.ms.cal``, which every SD script writes (see
    TP_CALIBRATED_SUFFIX). ``final``: the script's last product, ``<EB>.ms.cal.jy`` when an older
    script made it (TP_JY_SUFFIX), else ``<EB>.ms.cal``.

    Parameters
    ----------
    calibrated : Path
        The member's ``calibrated/`` folder.
    eb : str
        The Total Power EB (``uid___...``).
    final : bool, default False
        Give the script's last product (``.ms.cal.jy`` when there is one).

    Returns
    -------
    Path
        The calibrated MS's path (it may not exist yet).
    """
    folder = Path(calibrated) / f"{eb}.calibration"
    if final and (folder / f"{eb}{TP_JY_SUFFIX}").exists():
        return folder / f"{eb}{TP_JY_SUFFIX}"
    return folder / f"{eb}{TP_CALIBRATED_SUFFIX}"


@dataclass
class StaffEb:
    """One ``Calibration_X<tail>`` folder of a staff area and the EB it holds."""

    folder: Path
    uid: Uid | None                      # the EB whose uid ends in the tail (its ASDM, script or MS names it)
    asdms: dict[Uid, Path] = field(default_factory=dict)   # ASDM folders found there, whatever their tail

    @property
    def tail(self) -> str:
        """What the folder name carries of the EB uid: ``X26f0``, or ``X768808_X1`` (see calibration_folder)."""
        return self.folder.name[len(STAFF_CALIBRATION_PREFIX):]

    def fits(self, uid: Uid) -> bool:
        """True when ``uid`` is an EB this folder is named for.

        Parameters
        ----------
        uid : Uid
            An EB uid.

        Returns
        -------
        bool
            True when the folder's name covers ``uid``.
        """
        return uid.disk.endswith("_" + self.tail)

    @property
    def script(self) -> Path | None:
        """The calibration script of the EB this folder is named for (``<EB>.ms.scriptForCalibration.py``)."""
        return self.folder / f"{self.uid.disk}.ms.scriptForCalibration.py" if self.uid else None


def calibration_folder(eb: Uid, ebs: list[Uid]) -> str:
    """``Calibration_X<tail>`` (ALMA staff manual); ``Calibration_X<range>_X<tail>`` when another EB of
    the area ends in the same tail (exportasdm names every simulated EB ``.../X1``).

    Parameters
    ----------
    eb : Uid
        The EB the folder is for.
    ebs : list[Uid]
        Every EB of the area.

    Returns
    -------
    str
        The folder name.
    """
    clash = sum(other.tail == eb.tail for other in ebs) > 1
    return STAFF_CALIBRATION_PREFIX + ("_".join(eb.archive.rsplit("/", 2)[1:]) if clash else eb.tail)


@dataclass
class StaffArea:
    """An observatory reduction area: ``<OUS>/Calibration_X<EB tail>/``, ``Combination/``, ``Imaging/``, README.

    ``rel`` is its path relative to the folder validate scanned ('' when read on its own); ``ous`` is
    the MOUS (or GOUS, for a group area) it is named after, None when its name is not a uid."""

    root: Path
    ous: Uid | None
    ebs: list[StaffEb] = field(default_factory=list)
    rel: str = ""

    @property
    def combination(self) -> Path:
        """The area's ``Combination/`` folder."""
        return self.root / STAFF_COMBINATION

    @property
    def imaging(self) -> Path:
        """The area's ``Imaging/`` folder."""
        return self.root / STAFF_IMAGING

    @property
    def readme(self) -> Path:
        """The area's ``README``."""
        return self.root / "README"

    def read_readme(self) -> Readme:
        """The area's README read by the one README reader (readme.py; a staff README may leave the
        project code to the packager). Raises ParseError when it does not parse, OSError when unreadable.

        Returns
        -------
        Readme
            The README's fields.
        """
        return parse_readme(self.readme, require_project=False)

    def rel_path(self, path: Path) -> str:
        """``path`` (inside the area) relative to the scanned folder.

        Parameters
        ----------
        path : Path
            A path inside the area.

        Returns
        -------
        str
            The path relative to the scanned folder.
        """
        return join(self.rel, str(path.relative_to(self.root)))


def _is_member_dir(name: str, listing: Listing) -> bool:
    if name.startswith("member.") or name.startswith("member_ouss"):
        return True
    present = set(listing.dirs) | set(listing.links)
    return "script" in present and len(present & set(_MEMBER_FOLDERS)) >= 2


def _is_staff_dir(listing: Listing) -> bool:
    if any(_STAFF_CAL_RE.match(d) for d in listing.dirs):
        return True
    return "Combination" in listing.dirs and "Imaging" in listing.dirs


def _name_chain(index: TreeIndex, rel: str) -> list[str]:
    """Names of the folder at rel and its three parents (beyond the scanned root too)."""
    path = index.path(rel).resolve()
    return [p.name for p in [path, *path.parents][:4]]


def _ous(name: str, level: str, problems: list[str]) -> Uid | None:
    m = _OUS_DIR_RE.match(name)
    if m and m["level"] == level:
        return Uid.parse(m["uid"])
    c0 = _CYCLE0_DIR_RE.match(name)
    if c0 and c0["level"].startswith({"science_goal": "sg", "group": "group", "member": "member"}[level]):
        return None
    problems.append(f"'{name}' is not a {level}.uid___A001_X..._X... folder")
    return None


def _member(index: TreeIndex, rel: str) -> Member:
    listing = index.get(rel)
    names = _name_chain(index, rel)
    problems: list[str] = []
    mous = _ous(names[0], "member", problems)
    gous = _ous(names[1], "group", problems) if len(names) > 1 else None
    sg = _ous(names[2], "science_goal", problems) if len(names) > 2 else None
    project = ProjectCode.parse(names[3]) if len(names) > 3 and is_project_code(names[3]) else None
    if project is None:
        problems.append(f"'{names[3] if len(names) > 3 else ''}' is not a project code folder (YYYY.C.NNNNN.T)")

    script_rel, raw_rel, cal_rel = join(rel, "script"), join(rel, "raw"), join(rel, "calibration")
    script = index.get(script_rel)
    raw = index.get(raw_rel)
    cal = index.get(cal_rel)
    member = Member(
        path=index.path(rel), rel=rel, project=project, sg=sg, gous=gous, mous=mous,
        flavour=Flavour.UNKNOWN, has_raw="raw" in listing.dirs or "raw" in listing.links,
        restored="calibrated" in listing.dirs, naming=problems,
    )
    for name in listing.files:
        if name == "README" or name.endswith("README.txt") or name.startswith("README"):
            member.readme = join(rel, name)
            break
    for name in [*raw.dirs, *raw.links]:
        eb = eb_of(name)
        if eb and (name.endswith(".asdm.sdm") or name.endswith(".ms.split") or name == eb.disk):
            member.asdms[eb] = join(raw_rel, name)
    member.ebs_in_raw = sorted(member.asdms)

    restore_names = []
    for name in script.files:
        p = plain_name(name)
        if p == "scriptForPI.py":
            member.script_for_pi = join(script_rel, name)
        elif p.endswith(CALIBRATION_SCRIPT_SUFFIXES) and eb_of(p):   # interferometric or Total Power EB
            member.calibration_scripts[eb_of(p)] = join(script_rel, name)
        elif p.endswith("casa_piperestorescript.py"):
            member.restore_script = join(script_rel, name)
            restore_names.append(name)
    pipeline_marks = (member.restore_script is not None
                      or any(plain_name(n).endswith("pprequest.xml") or n.startswith("PPR") for n in script.files)
                      or any(n.endswith(".ms.calapply.txt") or n.endswith(".caltables.tgz") for n in cal.files))
    cycle0 = ((project is not None and project.cycle == 0)
              or bool(_CYCLE0_DIR_RE.match(names[0]) and _CYCLE0_DIR_RE.match(names[0])["date"])
              or any(n.endswith(".ms.split") for n in raw.dirs))
    if cycle0:
        member.flavour = Flavour.CYCLE0
    elif pipeline_marks:
        member.flavour = Flavour.PIPELINE
    elif member.calibration_scripts or member.script_for_pi:
        member.flavour = Flavour.MANUAL
    if member.flavour is Flavour.PIPELINE:
        expected: set[Uid] = set()
        for name in cal.files:
            if name.endswith(".ms.calapply.txt") and eb_of(name):
                expected.add(eb_of(name))
        if member.restore_script:
            text = _read_text(index.path(member.restore_script))
            expected |= set(eb_uids_in(text))
        member.ebs_in_scripts = sorted(expected)
    else:
        member.ebs_in_scripts = sorted(member.calibration_scripts)
    return member


def _read_text(path: Path, limit: int = 1_000_000) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _staff(index: TreeIndex, rel: str) -> StaffArea:
    listing = index.get(rel)
    root = index.path(rel)
    name = root.resolve().name
    area = StaffArea(root, uid_of_name(name) if name.startswith("uid___") else None, rel=rel)
    for d in sorted(listing.dirs):
        m = _STAFF_CAL_RE.match(d)
        if not m:
            continue
        cal = index.get(join(rel, d))
        eb = StaffEb(root / d, None)
        for sub in sorted(cal.dirs):
            uid = eb_of(sub)
            if uid and sub in (uid.disk, uid.disk + ".asdm.sdm"):
                eb.asdms[uid] = eb.folder / sub
        for child in sorted(cal.names()):
            uid = eb_of(child)
            if uid and eb.fits(uid):
                eb.uid = uid
                break
        area.ebs.append(eb)
    return area


def read_staff_area(path: str | Path) -> StaffArea:
    """The staff area at ``path`` on its own (one walk of it).

    Parameters
    ----------
    path : str | Path
        The staff reduction area (a folder named for its MOUS).

    Returns
    -------
    StaffArea
        The area, its EB folders and its Combination and Imaging folders.
    """
    return _staff(scan(path), "")


@dataclass
class DeliveryTree:
    """Everything found under a path: the index, the members and the staff areas."""

    index: TreeIndex
    members: list[Member]
    staff_areas: list[StaffArea]

    @property
    def flavour(self) -> str:
        """The flavours found, joined by ``+`` (``unknown`` when there is no member)."""
        kinds = sorted({m.flavour.value for m in self.members} | ({Flavour.STAFF.value} if self.staff_areas else set()))
        return "+".join(kinds) if kinds else Flavour.UNKNOWN.value


def load(path: str | Path, index: TreeIndex | None = None) -> DeliveryTree:
    """Scan ``path`` and find its member folders and staff areas (raises TreeError when there are none).

    Parameters
    ----------
    path : str | Path
        The delivery tree (a DEST, project, or member folder).
    index : TreeIndex | None, default None
        An index of ``path`` already made (``scan``); None to walk it.

    Returns
    -------
    DeliveryTree
        The member folders and staff areas found.

    Raises
    ------
    TreeError
        There is no member folder and no staff area under ``path``.
    """
    index = index or scan(path)
    members: list[Member] = []
    staff: list[StaffArea] = []
    taken: list[str] = []
    for rel in sorted(index.dirs):
        if any(rel == t or rel.startswith(t + "/") for t in taken):
            continue
        listing = index.dirs[rel]
        if listing.in_table:
            continue
        name = index.path(rel).resolve().name if not rel else rel.rsplit("/", 1)[-1]
        if _is_staff_dir(listing):
            staff.append(_staff(index, rel))
            taken.append(rel)
        elif _is_member_dir(name, listing):
            members.append(_member(index, rel))
            taken.append(rel)
    if not members and not staff:
        raise TreeError(
            f"no member folder or staff reduction area under {index.root}",
            "give a project folder (<project>/science_goal.uid___.../group.uid___.../member.uid___...), "
            "a member folder, or a staff area (<MOUS>/Calibration_X.../)",
        )
    return DeliveryTree(index, members, staff)


def find_members(path: str | Path) -> list[Member]:
    """The member folders under ``path`` (or ``path`` itself), with flavour and EB lists.

    Parameters
    ----------
    path : str | Path
        A tree, or one member folder.

    Returns
    -------
    list[Member]
        The member folders, in path order.
    """
    return load(path).members


def one_member(path: str | Path, action: str = "restore") -> Member:
    """The one member folder at (or under) ``path``.

    Parameters
    ----------
    path : str or Path
        A member folder (``member.uid___...``), or a folder holding exactly one.
    action : str
        What the caller will do with it, for the error's hint (``restore``, ``recalibrate``, ...).

    Returns
    -------
    Member
        Its scan.

    Raises
    ------
    UsageError
        ``path`` holds no member folder, or several.
    """
    path = Path(path)
    members = find_members(path)
    if len(members) != 1:
        listed = ", ".join(m.rel or "." for m in members)
        raise UsageError(f"{path} holds {len(members)} member folders ({listed})",
                         f"give one member folder (member.uid___...) to {action}")
    return members[0]


def find_staff_areas(path: str | Path) -> list[StaffArea]:
    """The staff reduction areas under ``path`` (or ``path`` itself).

    Parameters
    ----------
    path : str | Path
        A tree, or one staff area.

    Returns
    -------
    list[StaffArea]
        The staff areas, in path order.
    """
    return load(path).staff_areas
