"""ADQL for ivoa.obscore, built from a Selection, and run through pyvo's TAPService."""
from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass, field

import pyvo
import requests
from astropy.io.votable import parse as parse_votable
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from ..errors import ArchiveError, ArchiveUnreachable, IdentifierError, NotFoundError, QueryError, UsageError
from ..ids import ProjectCode, Uid, is_uid
from .client import ArchiveClient, MirrorDown, down_reason
from .obscore import COLUMN_NAMES

log = logging.getLogger("almadeliver.archive")

# The ObsCore columns the project view reads (one row per MOUS x source x spw).
VIEW_COLUMNS: tuple[str, ...] = (
    "proposal_id", "obs_title", "obs_creator_name", "group_ous_uid", "member_ous_uid", "asdm_uid",
    "target_name", "s_ra", "s_dec", "band_list", "t_min", "data_rights", "obs_release_date",
    "qa2_passed", "science_keyword", "antenna_arrays", "schedblock_name", "obs_id",
)
assert set(VIEW_COLUMNS) <= set(COLUMN_NAMES)

_WILDCARD_CODE = re.compile(r"^[0-9A-Za-z.*?]+$")
BANDS = tuple(range(1, 11))


@dataclass
class Cone:
    """A cone on the sky: centre (ICRS) and radius, all in degrees (ADQL ``CIRCLE``)."""
    ra: float       # deg (ICRS)
    dec: float      # deg
    radius: float   # deg


@dataclass
class Selection:
    """What to ask ivoa.obscore for; every field narrows the answer (AND)."""

    projects: list[str] = field(default_factory=list)   # codes, '*' and '?' as wildcards
    uids: list[str] = field(default_factory=list)       # MOUS or GOUS uids, either form
    cone: Cone | None = None
    bands: list[int] = field(default_factory=list)
    public: bool | None = None                          # True: Public only, False: Proprietary only
    start: str | None = None                            # observed on or after (ISO date)
    end: str | None = None                              # observed on or before (ISO date)
    keyword: str | None = None                          # science keyword, case-insensitive substring
    where: list[str] = field(default_factory=list)      # raw ADQL conditions, ANDed as given

    def __post_init__(self) -> None:
        if self.cone is not None and not isinstance(self.cone, Cone):   # a SkyCoord: the default radius
            self.cone = cone_of(self.cone, DEFAULT_RADIUS)

    @classmethod
    def from_ids(cls, ids: list[str], **kwargs) -> "Selection":
        """Sort positional ids into project codes and uids (either uid form)."""
        projects, uids = [], []
        for text in ids:
            (uids if is_uid(text) or text.strip().startswith("uid") else projects).append(text.strip())
        return cls(projects=projects, uids=uids, **kwargs)

    def is_empty(self) -> bool:
        """True when nothing selects any row (a query would ask for the whole archive)."""
        return not (self.projects or self.uids or self.cone or self.bands or self.public is not None
                    or self.start or self.end or self.keyword or self.where)

    def exact_projects(self) -> list[str]:
        """The project codes asked for without wildcards (an empty answer means 'unknown project')."""
        return [p for p in self.projects if "*" not in p and "?" not in p]


def quote(text: str) -> str:
    """An ADQL string literal: single quotes, embedded quotes doubled."""
    return "'" + str(text).replace("'", "''") + "'"


def _project_pattern(text: str) -> str:
    """A project code or a wildcard pattern as a LIKE pattern (or an exact code)."""
    if "*" not in text and "?" not in text:
        return ProjectCode.parse(text).code
    if not _WILDCARD_CODE.match(text):
        raise IdentifierError(f"'{text}' is not an ALMA project code pattern",
                              "use digits, letters, '.' and the wildcards * and ?, e.g. 2013.1.*.S")
    # '_' and '%' cannot occur (checked above), so only the wildcards become LIKE syntax.
    return text.upper().replace("*", "%").replace("?", "_")


def _mjd(date: str, what: str) -> float:
    from astropy.time import Time

    try:
        return float(Time(date, scale="utc").mjd)
    except ValueError as exc:
        raise UsageError(f"{what} '{date}' is not a date", "give an ISO date such as 2016-10-01") from exc


def conditions(sel: Selection) -> list[str]:
    """The WHERE conditions for a selection, each a self-contained ADQL boolean expression."""
    out: list[str] = []
    if sel.projects:
        exact = [_project_pattern(p) for p in sel.projects if "*" not in p and "?" not in p]
        likes = [_project_pattern(p) for p in sel.projects if "*" in p or "?" in p]
        parts = []
        if exact:
            parts.append(f"proposal_id IN ({', '.join(quote(p) for p in exact)})")
        parts += [f"proposal_id LIKE {quote(p)}" for p in likes]
        out.append(parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")")
    if sel.uids:
        uids = ", ".join(quote(Uid.parse(u).archive) for u in sel.uids)
        out.append(f"(member_ous_uid IN ({uids}) OR group_ous_uid IN ({uids}))")
    if sel.cone:
        c = sel.cone
        if not (0 <= c.ra < 360 and -90 <= c.dec <= 90 and 0 < c.radius <= 180):
            raise UsageError(f"cone ra={c.ra} dec={c.dec} radius={c.radius} is not on the sky",
                             "ra in [0, 360), dec in [-90, 90] degrees, radius > 0")
        out.append(f"INTERSECTS(CIRCLE('ICRS', {c.ra!r}, {c.dec!r}, {c.radius!r}), s_region) = 1")
    if sel.bands:
        parts = []
        for b in sel.bands:
            if b not in BANDS:
                raise UsageError(f"band {b} is not an ALMA band", "ALMA bands are 1 to 10")
            # band_list is space separated text ('3 6'): match whole numbers, so 1 does not match 10.
            parts.append(f"(band_list = '{b}' OR band_list LIKE '{b} %' OR band_list LIKE '% {b}' "
                         f"OR band_list LIKE '% {b} %')")
        out.append(parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")")
    if sel.public is not None:
        out.append(f"data_rights = {quote('Public' if sel.public else 'Proprietary')}")
    if sel.start:
        out.append(f"t_min >= {_mjd(sel.start, 'start'):.6f}")
    if sel.end:
        out.append(f"t_min < {_mjd(sel.end, 'end') + 1:.6f}")
    if sel.keyword:
        out.append(f"LOWER(science_keyword) LIKE {quote('%' + sel.keyword.lower() + '%')}")
    out += [f"({w})" for w in sel.where if w.strip()]
    return out


def build_adql(sel: Selection, columns: tuple[str, ...] = VIEW_COLUMNS) -> str:
    """The ADQL query for a selection (raises UsageError when it selects nothing in particular)."""
    if sel.is_empty():
        raise UsageError("nothing to query", "name a project code or uid, a cone (--ra --dec --radius "
                                             "or --target), or another condition")
    where = " AND ".join(conditions(sel))
    return f"SELECT {', '.join(columns)} FROM ivoa.obscore WHERE {where}"


def _error_message(response: requests.Response | None) -> str | None:
    """The QUERY_STATUS=ERROR text of an error VOTable (pyvo does not read it on HTTP errors)."""
    if response is None or b"VOTABLE" not in response.content[:2000].upper():
        return None
    try:
        vot = parse_votable(io.BytesIO(response.content), verify="ignore")
    except Exception:  # not a VOTable after all
        return None
    infos = list(vot.infos) + [i for r in vot.resources for i in r.infos]
    for info in infos:
        if info.name.upper() == "QUERY_STATUS" and str(info.value).upper() == "ERROR":
            return (info.content or "").strip() or "unknown error"
    return None


def run_query(client: ArchiveClient, adql: str) -> Table:
    """Run ADQL on the archive's TAP service (sync); the rows as an astropy Table."""
    log.debug("ADQL: %s", adql)

    def on(mirror: str) -> Table:
        service = pyvo.dal.TAPService(f"{mirror}/tap", session=client.session)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                result = service.run_sync(adql)
        except pyvo.dal.DALQueryError as exc:
            raise QueryError(f"the archive rejected the query: {exc.reason}",
                             "check the ADQL given with --where") from exc
        except pyvo.dal.DALServiceError as exc:
            cause = exc.cause
            message = _error_message(getattr(cause, "response", None))
            if message:
                raise QueryError(f"the archive rejected the query: {message}",
                                 "check the ADQL given with --where") from exc
            reason = down_reason(exc)
            if reason:
                raise MirrorDown(reason) from exc
            raise ArchiveError(f"the archive's TAP service failed: {exc}", "try again later or another --archive") from exc
        except pyvo.dal.DALFormatError as exc:
            reason = down_reason(exc)
            if reason:
                raise MirrorDown(reason) from exc
            raise ArchiveError(f"the archive's TAP answer is not a VOTable: {exc}",
                               "try again later or another --archive") from exc
        if str(result.query_status).upper() == "OVERFLOW":
            raise QueryError(f"the archive truncated the answer at {len(result)} rows",
                             "narrow the selection (project codes, a smaller cone, a band)")
        return result.to_table()

    return client.call("the TAP query", on)


def _angle(text: str, what: str, bare_unit, string_unit=None):
    from astropy import units as u
    from astropy.coordinates import Angle

    try:
        return Angle(float(text), unit=bare_unit)
    except ValueError:
        pass
    try:
        return Angle(text) if string_unit is None else Angle(text, unit=string_unit)
    except (ValueError, u.UnitsError):
        try:
            return Angle(text)
        except (ValueError, u.UnitsError) as exc:
            raise UsageError(f"{what} '{text}' is not an angle",
                             "give degrees (83.82) or an angle with units (05h35m17s, -5d23m28s, 30arcsec)") from exc


def cone(ra: str, dec: str, radius: str) -> Cone:
    """A cone from text: bare numbers are degrees; '05:35:17' is hours for ra, degrees for dec.

    Raises
    ------
    UsageError
        A value that is not an angle, an RA outside 0-360 deg (24 h), a Dec outside -90..90 deg,
        or a radius that is not positive (``--ra 400`` is refused, not wrapped to 40 deg).
    """
    from astropy import units as u

    ra_deg = float(_angle(ra, "ra", u.deg, u.hourangle).deg)
    dec_deg = float(_angle(dec, "dec", u.deg, u.deg).deg)
    radius_deg = float(_angle(radius, "radius", u.deg).deg)
    if not 0 <= ra_deg <= 360:
        raise UsageError(f"--ra {ra} is {ra_deg:g} deg, outside 0..360 deg", "give an RA in 0..360 deg or 0..24h")
    if not -90 <= dec_deg <= 90:
        raise UsageError(f"--dec {dec} is {dec_deg:g} deg, outside -90..90 deg", "give a Dec in -90..90 deg")
    if not 0 < radius_deg <= 180:
        raise UsageError(f"--radius {radius} is {radius_deg:g} deg", "give a radius above 0 and at most 180 deg")
    return Cone(ra=ra_deg % 360, dec=dec_deg, radius=radius_deg)


#: The cone radius when none is given (``query --radius``'s default).
DEFAULT_RADIUS = "1arcmin"


def cone_of(centre, radius) -> Cone:
    """A cone from what astronomers hold: a ``SkyCoord`` (any frame, taken in ICRS) and a radius.

    Parameters
    ----------
    centre : astropy.coordinates.SkyCoord
        The centre, one position (not an array).
    radius : astropy.units.Quantity or str
        An angle (``30 * u.arcsec``) or its text (``'30arcsec'``; a bare number is degrees).

    Returns
    -------
    Cone
        In degrees (ICRS).

    Raises
    ------
    UsageError
        ``centre`` is not one sky position, or ``radius`` not an angle.
    """
    from astropy import units as u

    try:
        icrs = centre.icrs
        ra, dec = float(icrs.ra.deg), float(icrs.dec.deg)
    except (AttributeError, TypeError, ValueError) as exc:
        raise UsageError(f"cone centre {centre!r} is not one sky position ({exc})",
                         "give one astropy SkyCoord, e.g. SkyCoord(83.82, -5.39, unit='deg')") from None
    if hasattr(radius, "unit"):
        try:
            radius = f"{float(radius.to_value(u.deg))!r}deg"
        except u.UnitsError:
            raise UsageError(f"cone radius {radius} is not an angle", "give e.g. 30 * u.arcsec") from None
    return cone(repr(ra), repr(dec), str(radius))


def resolve_target(name: str, radius: str) -> Cone:
    """A cone around a target name, resolved by astropy (Sesame); needs a reachable resolver."""
    from astropy.coordinates import SkyCoord
    from astropy.coordinates.name_resolve import NameResolveError
    from astropy.utils.data import conf

    try:
        with conf.set_temp("remote_timeout", 5):
            coord = SkyCoord.from_name(name).icrs
    except NameResolveError as exc:
        if "Unable to find coordinates" in str(exc):
            raise NotFoundError(f"no name resolver knows the target '{name}'",
                                "check the name, or give --ra and --dec") from exc
        raise ArchiveUnreachable(f"could not resolve the target '{name}': no name resolver answered",
                                 "give --ra and --dec instead of --target") from exc
    return cone(str(coord.ra.deg), str(coord.dec.deg), radius)
