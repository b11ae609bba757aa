"""DataLink answers: which files a MOUS (or a tarball, nested) consists of, and their sizes."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import numpy as np
import requests
from astropy.io.votable import parse as parse_votable
from astropy.utils.exceptions import AstropyWarning
from pyvo.dal import DALFormatError, DALQueryError, DALServiceError
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
    id: str
    links: list[Link] = field(default_factory=list)
    nested: dict[str, str] = field(default_factory=dict)   # tarball name -> its nested DataLink URL


def _value(row, name: str, default=None):
    if name not in row.colnames:
        return default
    value = row[name]
    if value is None or np.ma.is_masked(value):
        return default
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = value.strip()
        return value if value else default
    return value.item() if hasattr(value, "item") else value


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "t", "1")
    return True if value is None else bool(value)


def parse_datalink(content: bytes, id: str, url: str | None = None,
                   session: requests.Session | None = None) -> DataLinkAnswer:
    """Parse a DataLink VOTable. Raises NotFoundError for NotFoundFault, ArchiveError otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            results = DatalinkResults(parse_votable(io.BytesIO(content), verify="ignore"), url=url,
                                       session=session or requests.Session())
    except (DALQueryError, DALFormatError) as exc:
        raise ArchiveError(f"the archive's DataLink answer for {id} failed: {exc}", "try again later") from exc
    except Exception as exc:  # not XML / not a VOTable (e.g. an HTML error page)
        raise ArchiveError(f"the archive's DataLink answer for {id} is not a VOTable ({exc})",
                           "try again later or another --archive") from exc
    answer = DataLinkAnswer(id)
    for row in results.to_table():
        row_id = _value(row, "ID", id)
        error = _value(row, "error_message")
        if error:
            if error.startswith("NotFoundFault"):
                raise NotFoundError(f"the archive does not know {row_id} ({error})",
                                    "DataLink takes member_ous_uid values (uid://A001/...), not obs_id")
            raise ArchiveError(f"DataLink for {row_id} answered: {error}", "try again later")
        service = _value(row, "service_def")
        access = _value(row, "access_url")
        if service:
            if service.startswith("DataLink."):
                try:
                    params = {p.name: p.value for p in results.get_adhocservice_by_id(service).params}
                    answer.nested[service.removeprefix("DataLink.")] = str(params["accessURL"])
                except (DALServiceError, KeyError):
                    pass  # a nested answer the service does not describe: nothing to follow
            continue  # services (nested DataLink, #cutout SODA) are not files
        if not access:
            continue
        size = _value(row, "content_length")
        answer.links.append(Link(
            id=row_id, name=unquote(urlsplit(access).path.rsplit("/", 1)[-1]), url=access,
            semantics=_value(row, "semantics", ""), content_type=_value(row, "content_type", ""),
            size=int(size) if size is not None else None, readable=_bool(_value(row, "readable")),
            description=_value(row, "description", ""),
        ))
    return answer


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
        return parse_datalink(response.content, id, response.url, client.session)

    return client.call(f"DataLink for {id}", on)
