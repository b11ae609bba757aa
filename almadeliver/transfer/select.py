"""Fetch only what you need: single files from inside the tarballs, and SODA cutouts of FITS products.

ALMA's DataLink answer for a MOUS points, for each product and auxiliary tarball, at a nested DataLink
answer listing the files inside it (each with its own ``/dataPortal/<name>`` URL, size and a
description naming its kind: ``type: product``, ``calibration``, ``script``, ``qa``; logs as
``documentation for log/...``), and every FITS image of it at a SODA service
(``/soda/sync?ID=<name>``: alma-datalink-recurse-this.xml, -aux.xml). ``select_files`` turns a
download plan of whole tarballs into a plan of those files, each named by the path it has in the
untarred tree (``<project>/science_goal.<SG>/group.<GOUS>/member.<MOUS>/<folder>/<name>``), so the
download engine puts it where untarring the tarball would; with a ``Cutout`` it plans SODA cutouts
``<name>.cutout.fits`` instead, beside where the product would be.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import requests

from ..archive.client import ArchiveClient
from ..archive.model import ArchiveFile, ProjectView
from ..errors import ArchiveError, AuthError, IdentifierError, UsageError
from ..ids import DeliveryFileName, TarballKind, Uid
from .plan import DownloadPlan, is_tarball

if TYPE_CHECKING:
    from ..archive.datalink import Link

#: The file patterns a ``--cutout`` without ``--files`` cuts: the primary-beam corrected images.
CUTOUT_DEFAULT_FILES = ("*.pbcor.fits",)
#: The folder of the delivery tree a nested DataLink row's description names (alma-datalink-recurse-*.xml).
_TYPE_FOLDER = {"product": "product", "calibration": "calibration", "script": "script", "qa": "qa"}
_TYPE_RE = re.compile(r"type:\s*(\w+)\s*,")
#: Tarballs that have a nested DataLink answer (the raw ASDM tarballs have none).
NESTED_KINDS = {TarballKind.PRODUCTS, TarballKind.AUXILIARY, TarballKind.EXTERNAL}


@dataclass(frozen=True)
class Cutout:
    """A SODA cutout [IVOA SODA 1.0]: a circle on the sky and/or a band of the spectrum.

    Attributes
    ----------
    ra_deg, dec_deg, radius_deg : float or None
        The circle (ICRS, degrees); all three or none.
    band_m : tuple of float or None
        The band as SODA's BAND: (low, high) vacuum wavelength in metres.
    """

    ra_deg: float | None = None
    dec_deg: float | None = None
    radius_deg: float | None = None
    band_m: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        circle = (self.ra_deg, self.dec_deg, self.radius_deg)
        if any(v is None for v in circle) and any(v is not None for v in circle):
            raise UsageError("a cutout circle needs --ra, --dec and --radius together (or --target with --radius)",
                             "give all three, e.g. --ra 83.81 --dec -5.37 --radius 15arcsec")
        if self.radius_deg is not None and self.radius_deg <= 0:
            raise UsageError(f"--radius must be positive, not {self.radius_deg * 3600:g} arcsec", "e.g. --radius 15arcsec")
        if self.band_m is not None and not 0 < self.band_m[0] <= self.band_m[1]:
            raise UsageError("the cutout band is empty", "give --freq LO~HI in GHz, or --line with --width")
        if self.radius_deg is None and self.band_m is None:
            raise UsageError("--cutout needs a circle (--ra/--dec/--radius or --target) and/or a band "
                             "(--freq, or --line with --width)", "e.g. --cutout --target 'Orion KL' --radius 15arcsec")

    def params(self) -> dict[str, str]:
        """The SODA query parameters (CIRCLE in degrees, BAND in metres).

        Returns
        -------
        dict[str, str]
            The SODA parameters (``CIRCLE`` in degrees, ``BAND`` in metres), as strings.
        """
        out = {}
        if self.radius_deg is not None:
            out["CIRCLE"] = f"{self.ra_deg!r} {self.dec_deg!r} {self.radius_deg!r}"
        if self.band_m is not None:
            out["BAND"] = f"{self.band_m[0]!r} {self.band_m[1]!r}"
        return out


@dataclass(frozen=True)
class FileSelection:
    """What to fetch of the tarballs: files by name (``--files``, shell patterns) and/or cutouts.

    An empty selection (no patterns, no cutout) means whole tarballs.
    """

    patterns: tuple[str, ...] = ()
    cutout: Cutout | None = None

    def __bool__(self) -> bool:
        return bool(self.patterns) or self.cutout is not None

    def matches(self, name: str) -> bool:
        """True when ``name`` matches a pattern (the cutout default when only a cutout is asked).

        Parameters
        ----------
        name : str
            A file name of the plan.

        Returns
        -------
        bool
            True when the file is selected.
        """
        patterns = self.patterns or (CUTOUT_DEFAULT_FILES if self.cutout else ())
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class SelectedPlan:
    """A plan of single files (and cutouts), and what it saves against the whole tarballs.

    ``plan.files`` are named by their path in the delivery tree; ``tarball_bytes`` is the size of the
    tarballs they come from (what a whole download would fetch).
    """

    plan: DownloadPlan
    selection: FileSelection
    tarball_bytes: int
    tarballs_searched: list[str] = field(default_factory=list)
    tarballs_left: list[str] = field(default_factory=list)     # in the plan but without a nested listing
    cutouts: dict[str, dict[str, str]] = field(default_factory=dict)   # cutout path -> SODA params + source
    missed: list[str] = field(default_factory=list)    # FITS products the cutout's circle or band misses

    @property
    def selected_bytes(self) -> int:
        """Bytes the selected files (and cutouts) take."""
        return self.plan.total_bytes


def tree_folder(code: str, sg: str | None, gous: str, mous: str | None) -> str:
    """The OUS folder of the delivery tree: ``<project>/science_goal.<SG>/group.<GOUS>[/member.<MOUS>]``.

    Parameters
    ----------
    code : str
        The project code.
    sg : str | None
        The science goal's uid (None when unknown).
    gous : str
        The group ObsUnitSet's uid.
    mous : str | None
        The member ObsUnitSet's uid (None for the group folder).

    Returns
    -------
    str
        The folder, relative to DEST.

    Raises
    ------
    UsageError
        The science goal is unknown (a plan made with ``with_sg=False``): the path cannot be known.
    """
    if not sg:
        raise UsageError(f"the science goal of {mous or gous} is unknown, so the files' place in the tree is too",
                         "query again without --no-sg (the science goal is read from the product tarball)")
    folder = f"{code}/science_goal.{Uid.of(sg).disk}/group.{Uid.of(gous).disk}"
    return f"{folder}/member.{Uid.of(mous).disk}" if mous else folder


def member_path(link: Link, ous_folder: str) -> str:
    """Where a file of a nested DataLink answer lies in the untarred tree (from its description's kind).

    Parameters
    ----------
    link : Link
        The file's DataLink row.
    ous_folder : str
        The OUS folder of the tree (``tree_folder``).

    Returns
    -------
    str
        The file's path relative to DEST.
    """
    description = link.description
    kind = _TYPE_RE.search(description)
    folder = "log" if "documentation for log/" in description else _TYPE_FOLDER.get(kind.group(1)) if kind else None
    name = link.name
    dotted = _DOTTED_PATH.match(name)
    if dotted:
        # a name two tarballs share, served under its tar path with dots (the local archive's rule):
        # the path it names is where untarring puts it
        ous_folder, name = "/".join([dotted.group("code"), *_ous_parts(dotted)]), dotted.group("rest")
        if folder and name.startswith(folder + "."):
            name = name[len(folder) + 1:]
    return f"{ous_folder}/{folder}/{name}" if folder else f"{ous_folder}/{name}"


_UID_WORD = r"uid___[A-Za-z0-9]+_[A-Za-z0-9]+_[A-Za-z0-9]+"
_DOTTED_PATH = re.compile(rf"^(?P<code>\d{{4}}\.\d+\.\d{{5}}\.[A-Z]+)\.science_goal\.(?P<sg>{_UID_WORD})"
                          rf"\.group\.(?P<gous>{_UID_WORD})(?:\.member\.(?P<mous>{_UID_WORD}))?\.(?P<rest>.+)$")


def _ous_parts(match: re.Match) -> list[str]:
    """The OUS folders a dotted tar path names (science goal, group, member)."""
    parts = [f"science_goal.{match.group('sg')}", f"group.{match.group('gous')}"]
    return parts + ([f"member.{match.group('mous')}"] if match.group("mous") else [])


def cutout_name(path: str) -> str:
    """``.../product/x.pbcor.fits`` -> ``.../product/x.pbcor.cutout.fits``.

    Parameters
    ----------
    path : str
        The path of a product FITS file.

    Returns
    -------
    str
        The path of its cutout.
    """
    return path.removesuffix(".fits") + ".cutout.fits"


def _ous_folders(view: ProjectView) -> dict[str, tuple[str, str | None, str, str | None]]:
    """Tarball name -> the ``tree_folder`` arguments of the OUS folder its files unpack into
    (the member's, or the group's for a group tarball)."""
    folders = {}
    for p in view.projects:
        for m in p.mous:
            for f in m.files:
                if f.kind not in NESTED_KINDS or f.name in folders:
                    continue
                try:
                    uid = DeliveryFileName.parse(f.name).uid
                except IdentifierError:
                    uid = None
                group_level = uid is not None and str(uid) == str(Uid.of(m.gous))
                folders[f.name] = (p.code, m.sg, m.gous, None if group_level else m.uid)
    return folders


def _cutout_size(session: requests.Session, url: str) -> int | None:
    """The size of a SODA answer (a HEAD request: the service makes the cutout and tells its length);
    None when the service refuses the request for this image (400: the circle or band misses it)."""
    try:
        r = session.head(url, allow_redirects=True, timeout=(15, 300))
    except requests.RequestException as exc:
        raise ArchiveError(f"the SODA service did not answer ({exc})", "try again later") from exc
    if r.status_code == 400:
        return None
    if r.status_code >= 400 or not r.headers.get("Content-Length", "").isdigit():
        raise ArchiveError(f"the SODA service answered HTTP {r.status_code} without a size for {url}",
                           "try again later, or fetch the whole file with --files")
    return int(r.headers["Content-Length"])


def select_files(plan: DownloadPlan, view: ProjectView, client: ArchiveClient,
                 selection: FileSelection) -> SelectedPlan:
    """The files of ``plan``'s tarballs that ``selection`` asks for, as a plan of single files.

    Parameters
    ----------
    plan : DownloadPlan
        The whole-tarball plan (``make_plan``); its tarballs with a nested DataLink answer (products,
        auxiliary, external) are searched, the others (raw ASDMs) are left out.
    view : ProjectView
        The project view the plan was made from (project code, science goal, group and MOUS of each
        tarball: the tree path).
    client : ArchiveClient
        Asks the nested DataLink answers (and, for cutouts, the SODA services' sizes).
    selection : FileSelection
        ``patterns`` match the file names inside the tarballs (shell patterns, case-sensitive);
        ``cutout`` plans SODA cutouts of the matching FITS files instead of the files.

    Returns
    -------
    SelectedPlan
        The plan (files named by tree path, ``member_of`` their tarball) and the tarballs' bytes.

    Raises
    ------
    UsageError
        Nothing matches, a cutout is asked of files without a SODA service, or the science goal is unknown.
    AuthError
        A tarball is proprietary and the client is not logged in (DataLink says it is not readable).
    ArchiveError, NotFoundError
        From the nested DataLink answers or the SODA service.
    """
    from ..archive.datalink import fetch_datalink   # pyvo and astropy: only once the archive is asked

    folders = _ous_folders(view)
    files: list[ArchiveFile] = []
    searched, left, cutouts, missed = [], [], {}, []
    tar_bytes = 0
    for tar in plan.files:
        if not is_tarball(tar) or tar.kind not in NESTED_KINDS:
            if not is_tarball(tar) and selection.matches(tar.name) and selection.cutout is None:
                files.append(tar)                          # a README asked for by name
            elif is_tarball(tar):
                left.append(tar.name)
            continue
        if not tar.readable:
            raise AuthError(f"{tar.name} is proprietary: the files inside it are listed and served only after a login",
                            "rerun with --user NAME (an account allowed to see this project)")
        base = tree_folder(*folders[tar.name])
        answer = fetch_datalink(client, tar.name)
        searched.append(tar.name)
        tar_bytes += tar.size
        for link in answer.links:
            if not selection.matches(link.name):
                continue
            path = member_path(link, base)
            if selection.cutout is None:
                files.append(ArchiveFile(path, link.url, link.size or 0, tar.kind, tar.mous, link.readable,
                                         member_of=tar.name))
                continue
            service = answer.cutouts.get(link.name)
            if service is None:
                continue                                   # not an image ALMA's SODA cuts (e.g. *.fits.gz)
            params = selection.cutout.params()
            url = f"{service}&{urlencode(params)}" if "?" in service else f"{service}?{urlencode(params)}"
            name, size = cutout_name(path), _cutout_size(client.session, url)
            if size is None:                           # e.g. another target's image of the same MOUS
                missed.append(link.name)
                continue
            files.append(ArchiveFile(name, url, size, tar.kind, tar.mous, link.readable, member_of=tar.name))
            cutouts[name] = {**params, "ID": link.name, "source": path}
    if not files and missed:
        raise UsageError(f"the cutout misses all {len(missed)} matching FITS products (the SODA service refused "
                         f"{' '.join(selection.cutout.params().values())})",
                         "check the position and band against the products' coverage (query shows it)")
    if not files:
        what = "FITS products with a SODA service" if selection.cutout else "files"
        patterns = " ".join(selection.patterns or CUTOUT_DEFAULT_FILES)
        raise UsageError(f"no {what} inside the {len(searched)} tarball(s) match {patterns}",
                         "patterns match whole file names, e.g. '*.pbcor.fits' or '*.cont.dat' (quote them)")
    unreadable = [f.name for f in files if not f.readable]
    new_plan = replace(plan, files=files, skipped_unreadable=unreadable)
    return SelectedPlan(new_plan, selection, tar_bytes, searched, left, cutouts, missed)


def target_centre(client: ArchiveClient, name: str, projects: list[str]) -> tuple[float, float]:
    """The ICRS position (degrees) of target ``name``: its ObsCore ``s_ra, s_dec`` in ``projects``
    (the field centre the data were taken at), else a name resolver's (astropy Sesame).

    Parameters
    ----------
    client : ArchiveClient
        The archive client (TAP).
    name : str
        The target name (ObsCore ``target_name``).
    projects : list[str]
        The project codes to look in.

    Returns
    -------
    tuple[float, float]
        (RA, Dec) in ICRS degrees.

    Raises
    ------
    NotFoundError, ArchiveUnreachable
        ObsCore has no such target in the projects and no resolver knows it (or none answered).
    """
    from ..archive.tap import quote, resolve_target, run_query

    where = f"LOWER(target_name) = {quote(name.lower())}"
    if projects:
        where += f" AND proposal_id IN ({', '.join(quote(p) for p in projects)})"
    rows = run_query(client, f"SELECT TOP 1 s_ra, s_dec FROM ivoa.obscore WHERE {where}")
    if len(rows):
        return float(rows["s_ra"][0]), float(rows["s_dec"][0])
    found = resolve_target(name, "1arcsec")
    return found.ra, found.dec


def make_cutout(ra: str | None = None, dec: str | None = None, radius: str | None = None,
                centre: tuple[float, float] | None = None, freq: str | None = None, line: str | None = None,
                z: float | None = None, width_kms: float | None = None) -> Cutout:
    """A Cutout from the command line's words.

    Parameters
    ----------
    ra, dec : str, optional
        The circle's centre: degrees, or sexagesimal (``05:35:17`` is hours for ra).
    radius : str, optional
        The circle's radius: degrees or with units (``15arcsec``).
    centre : tuple of float, optional
        The centre (ICRS degrees) when a target name was resolved (``target_centre``); instead of ra/dec.
    freq : str, optional
        The band as sky frequencies: ``230.1..230.6GHz`` (or wavelengths).
    line : str, optional
        A line (``CO(2-1)`` or a rest frequency); with ``z`` and ``width_kms``: the band around it.
    z : float, optional
        The redshift of ``line``.
    width_kms : float, optional
        The full velocity width of the band around ``line``, km/s (radio convention).

    Returns
    -------
    Cutout
        The cutout (SODA circle and band).

    Raises
    ------
    UsageError
        A value that cannot be read, or a combination that names no circle and no band.
    """
    from ..archive.lines import parse_line, sky_frequency_ghz
    from ..archive.spectral import parse_freq_range
    from ..archive.tap import cone

    c_kms = 299_792.458
    circle: tuple[float | None, float | None, float | None] = (None, None, None)
    if radius is not None or ra is not None or dec is not None or centre is not None:
        if radius is None:
            raise UsageError("a cutout circle needs --radius", "e.g. --radius 15arcsec")
        if centre is not None:
            ra, dec = repr(centre[0]), repr(centre[1])
        if ra is None or dec is None:
            raise UsageError("a cutout circle needs --ra and --dec (or --target)", "e.g. --ra 83.81 --dec -5.37")
        found = cone(ra, dec, radius)
        circle = (found.ra, found.dec, found.radius)
    band = None
    if freq is not None and line is not None:
        raise UsageError("--freq and --line both given for the cutout", "give the band as --freq, or as --line with --line-width")
    if freq is not None:
        lo, hi = parse_freq_range(freq)
        if lo == hi:
            raise UsageError(f"--freq {freq} is one frequency, not a band", "give a range such as 230.1..230.6GHz")
        band = (c_kms * 1e3 / (hi * 1e9), c_kms * 1e3 / (lo * 1e9))
    elif line is not None:
        if width_kms is None or width_kms <= 0:
            raise UsageError("--line for a cutout needs --line-width (km/s, the full width)", "e.g. --line-width 200")
        centre_ghz = sky_frequency_ghz(parse_line(line).rest_ghz, z)
        half = centre_ghz * width_kms / (2 * c_kms)
        band = (c_kms * 1e3 / ((centre_ghz + half) * 1e9), c_kms * 1e3 / ((centre_ghz - half) * 1e9))
    elif z is not None or width_kms is not None:
        raise UsageError("--z and --line-width describe a --line", "add --line, e.g. --line 'CO(2-1)'")
    return Cutout(*circle, band_m=band)
