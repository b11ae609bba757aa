"""DataLink answers: which files a MOUS (or a tarball, nested) consists of, and their sizes."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
from astropy.io.votable import parse as parse_votable
from astropy.utils.exceptions import AstropyWarning
from pyvo.dal import DALFormatError, DALQueryError
from pyvo.dal.adhoc import DatalinkResults

from ..errors import ArchiveError, AuthError, IdentifierError, NotFoundError
from ..ids import DeliveryFileName, TarballKind
from .client import ArchiveClient, MirrorDown, down_reason

SEMANTICS_KIND = {
    "#this": TarballKind.PRODUCTS,
    "#auxiliary": TarballKind.AUXILIARY,
    "#progenitor": TarballKind.RAW,
    "#documentation": TarballKind.README,
}


@dataclass
class Link:
    """One downloadable file of a DataLink answer."""

    id: str              # the ID asked for (MOUS uid, or a tarball name for nested answers)
    name: str            # file name (last part of access_url)
    url: str
    semantics: str
    content_type: str
    size: int | None     # content_length in bytes
    readable: bool
    description: str = ""

    @property
    def kind(self) -> TarballKind | None:
        """The delivery file kind: from the name, else from the semantics (None for other files)."""
        try:
            return DeliveryFileName.parse(self.name).kind
        except IdentifierError:
            return SEMANTICS_KIND.get(self.semantics)


@dataclass
class DataLinkAnswer:
    """A DataLink answer: the files of ``id`` and, per tarball, the URL of its nested DataLink answer."""

    id: str
    links: list[Link] = field(default_factory=list)
    nested: dict[str, str] = field(default_factory=dict)   # tarball name -> its nested DataLink URL
    cutouts: dict[str, str] = field(default_factory=dict)  # FITS file name -> its SODA sync URL (#cutout)


SODA_SYNC = "ivo://ivoa.net/std/SODA#sync-1.0"


def _soda_services(results: DatalinkResults) -> dict[str, str]:
    """FITS file name -> SODA accessURL, from the ``adhoc:service`` resources whose standardID is SODA sync.

    ALMA gives all of them the one ID ``SODA.sync`` (alma-datalink-recurse-this.xml), so a service is
    matched to its file by the ``ID`` its accessURL carries, not by the row's ``service_def``.
    """
    found = {}
    for service in results.iter_adhocservices():
        params = {p.name: _text(p.value) for p in service.params}
        if params.get("standardID", "").lower() != SODA_SYNC.lower() or not params.get("accessURL"):
            continue
        target = dict(parse_qsl(urlsplit(params["accessURL"]).query)).get("ID", "")
        if target:
            found[unquote(target).rsplit("/", 1)[-1]] = params["accessURL"]
    return found


def _text(value) -> str:
    if value is None:
        return ""
    return (value.decode() if isinstance(value, (bytes, bytearray)) else str(value)).strip()


def _bool(value) -> bool:
    """DataLink's ``readable`` (an ALMA column): true unless it says false; a missing value is readable."""
    if isinstance(value, (str, bytes)):
        return _text(value).lower() in ("true", "t", "1")
    return True if value is None else bool(value)


def _column(results: DatalinkResults, name: str) -> list:
    """A column of the answer, None where the archive left a cell empty (or lacks the column)."""
    if name not in results.fieldnames:
        return [None] * len(results)
    return results.getcolumn(name).tolist()      # a masked array: masked cells become None


def parse_datalink(content: bytes, id: str, url: str | None = None) -> DataLinkAnswer:
    """Read a DataLink answer (a VOTable) with pyvo's ``DatalinkResults``.

    pyvo finds the results table, checks ``QUERY_STATUS`` and lists the ``adhoc:service`` resources;
    no vocabulary is fetched (``bysemantics`` is not used: ALMA's ``semantics`` are read as they are).

    Parameters
    ----------
    content : bytes
        The answer's body.
    id : str
        The ID asked for (a MOUS uid, or a tarball name for a nested answer); rows without one get it.
    url : str, optional
        Where the answer came from (named in pyvo's errors).

    Returns
    -------
    DataLinkAnswer
        Its downloadable files (``links``), the nested DataLink URL of each tarball (``nested``) and
        the SODA service of each FITS file that has a ``#cutout`` row (``cutouts``); service rows are
        not files.

    Raises
    ------
    NotFoundError
        A row answers ``NotFoundFault`` (the archive does not know the ID).
    ArchiveError
        Not a VOTable (e.g. an HTML page), an ERROR status, no results table, or another fault row.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            votable = parse_votable(io.BytesIO(content), verify="ignore")
    except Exception as exc:  # not XML / not a VOTable (e.g. an HTML error page)
        raise ArchiveError(f"the archive's DataLink answer for {id} is not a VOTable ({exc})",
                           "try again later or another --archive") from exc
    try:
        results = DatalinkResults(votable, url=url)
    except DALQueryError as exc:
        raise ArchiveError(f"the archive's DataLink answer for {id} failed: {exc.reason}", "try again later") from None
    except DALFormatError:
        raise ArchiveError(f"the archive's DataLink answer for {id} has no table", "try again later") from None
    services = {s.ID: s for s in results.iter_adhocservices()}
    answer = DataLinkAnswer(id, cutouts=_soda_services(results))
    for row_id, access, service, error, semantics, description, ctype, size, readable in zip(
            *(_column(results, n) for n in _COLUMNS)):
        row_id, error, service, access = _text(row_id) or id, _text(error), _text(service), _text(access)
        if error:
            if error.startswith("NotFoundFault"):
                raise NotFoundError(f"the archive does not know {row_id} ({error})",
                                    "DataLink takes member_ous_uid values (uid://A001/...), not obs_id")
            raise ArchiveError(f"DataLink for {row_id} answered: {error}", "try again later")
        if service:
            if service.startswith("DataLink.") and service in services:
                params = {p.name: p.value for p in services[service].params}
                if "accessURL" in params:
                    answer.nested[service.removeprefix("DataLink.")] = _text(params["accessURL"])
            continue  # services (nested DataLink, #cutout SODA) are not files
        if not access:
            continue
        answer.links.append(Link(
            id=row_id, name=unquote(urlsplit(access).path.rsplit("/", 1)[-1]), url=access,
            semantics=_text(semantics), content_type=_text(ctype), size=None if size is None else int(size),
            readable=_bool(readable), description=_text(description)))
    return answer


_COLUMNS = ("ID", "access_url", "service_def", "error_message", "semantics", "description", "content_type",
            "content_length", "readable")


def fetch_datalink(client: ArchiveClient, id: str, url: str | None = None) -> DataLinkAnswer:
    """The DataLink answer for a MOUS uid (or a tarball name; or a nested DataLink ``url``)."""

    def on(mirror: str) -> DataLinkAnswer:
        target = url or f"{mirror}/datalink/sync"
        try:
            response = client.session.get(target, params=None if url else {"ID": id})
        except requests.RequestException as exc:
            raise MirrorDown(down_reason(exc) or str(exc)) from exc
        if response.status_code in (401, 403):
            raise AuthError(f"the archive refused DataLink for {id} (HTTP {response.status_code})",
                            "log in with an account that may see this proprietary data")
        if response.status_code == 404 and b"VOTABLE" not in response.content[:2000].upper():
            raise NotFoundError(f"the archive does not know {id} (HTTP 404)", "check the uid")
        if response.status_code >= 500 and b"VOTABLE" not in response.content[:2000].upper():
            raise MirrorDown(f"HTTP {response.status_code}")
        return parse_datalink(response.content, id, response.url)

    return client.call(f"DataLink for {id}", on)
