"""The local archive's DataLink service: a MOUS's files, and the nested DataLink listing a tarball's members."""
from __future__ import annotations

from .. import votable
from ..catalogue import CatalogueFile, TarMember
from .content import ArchiveContent

DATALINK_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.0"
DATALINK_CONTENT_TYPE = "application/x-votable+xml;content=datalink"
SODA_STANDARD_ID = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_SERVICE_ID = "SODA.sync"          # ALMA gives every #cutout row this one service ID (alma-datalink-recurse-this.xml)
_SEMANTICS_ORDER = {"#documentation": 0, "#this": 1, "#auxiliary": 2, "#progenitor": 3}


def datalink(content: ArchiveContent, base: str, ids: list[str], authenticated: bool = False) -> str:
    """The DataLink VOTable for MOUS uids and/or tarball names (links under the archive's URL ``base``)."""
    rows, services, cutouts = [], {}, []
    for id_ in ids:
        if id_ in content.tarballs:
            tar, proprietary, _ = content.tarballs[id_]
            for m in tar.members:
                member = content.member_names[(id_, m.path)]
                rows.append((id_, f"{base}/dataPortal/{member}", None, None, m.semantics,
                             _member_description(m, id_), m.content_type, m.size, authenticated or not proprietary))
                if has_cutout(m):
                    # each FITS product row is followed by a #cutout row naming the SODA service,
                    # described by a RESOURCE of its own (all with the same ID, as ALMA writes them)
                    rows.append((id_, None, SODA_SERVICE_ID, None, "#cutout",
                                 f"Synchronous SODA sub-image of {id_}.", "image/fits", None, None))
                    cutouts.append(votable.service(SODA_SERVICE_ID, [
                        ("resourceIdentifier", "ivo://alma.eu/soda"), ("standardID", SODA_STANDARD_ID),
                        ("accessURL", f"{base}/soda/sync?ID={member}")]))
            continue
        listed = content.by_id.get(id_)
        if not listed:
            rows.append((id_, None, None, f"NotFoundFault: {id_}", "#this", None, None, None, None))
            continue
        for f, proprietary in sorted(listed, key=lambda x: (_SEMANTICS_ORDER.get(x[0].semantics, 9), x[0].name)):
            rows.append((id_, f"{base}/dataPortal/{f.name}", None, None, f.semantics, f.description or _description(f),
                         f.content_type, f.size, authenticated or not proprietary))
            if f.members and f.semantics != "#progenitor":
                service_id = f"DataLink.{f.name}"
                rows.append((id_, None, service_id, None, f.semantics, None, DATALINK_CONTENT_TYPE, None, None))
                services[service_id] = votable.service(service_id, [
                    ("standardID", DATALINK_STANDARD_ID), ("accessURL", f"{base}/datalink/sync?ID={f.name}")])
    return votable.document(votable.results(DATALINK_FIELDS, rows, after=votable.info("placeholder", "ignore")),
                            *services.values(), *cutouts)


def has_cutout(m: TarMember) -> bool:
    """True for the members ALMA's SODA service cuts: the uncompressed FITS images in product/
    (alma-datalink-recurse-this.xml: ``*.pbcor.fits`` rows have a ``#cutout`` row, ``*.pb.fits.gz`` none)."""
    return m.path.endswith(".fits") and "/product/" in f"/{m.path}"



DATALINK_FIELDS = (
    votable.Field("ID", "char", "*", "meta.id;meta.main"),
    votable.Field("access_url", "char", "*", "meta.ref.url"),
    votable.Field("service_def", "char", "*", "meta.ref"),
    votable.Field("error_message", "char", "*", "meta.code.error"),
    votable.Field("semantics", "char", "*", "meta.code"),
    votable.Field("description", "char", "*", "meta.note"),
    votable.Field("content_type", "char", "*", "meta.code.mime"),
    votable.Field("content_length", "long", None, "phys.size;meta.file", "byte"),
    votable.Field("readable", "boolean", description="the caller is allowed to use this link with the current "
                                                     "authenticated identity"),
)


def _description(f: CatalogueFile) -> str:
    """ALMA's wording for a file row of a MOUS DataLink answer (alma-datalink.xml)."""
    if f.semantics == "#documentation":
        return f"Download documentation for ./{f.ids[0] if f.ids else ''}|README."
    if f.semantics == "#progenitor":
        return "Download dataset of type: , and class: N/A."
    return "Download dataset of type: null, and class: N/A."


def _member_description(m: TarMember, tarball: str) -> str:
    """ALMA's wording for a tarball member, from the folder it sits in (alma-datalink-recurse-*.xml)."""
    folder = m.path.rsplit("/", 2)[-2] if m.path.count("/") else ""
    name = m.path.rsplit("/", 1)[-1]
    if folder == "log":
        return f"Download documentation for log/{tarball}|LOG."
    if folder == "product" or name.endswith((".fits", ".fits.gz")):
        return f"Download dataset of type: product, and class: {'MASK' if '.mask' in name else 'SCIENCE'}."
    kind, klass = {"calibration": ("calibration", "CALIBRATION"), "script": ("script", "SCRIPT"),
                   "qa": ("qa", "QA_PLOT" if name.endswith(".png") else "QA")}.get(folder, ("null", "N/A"))
    return f"Download dataset of type: {kind}, and class: {klass}."


class DataLinkPages:
    """The ``/datalink/sync`` endpoint of the HTTP handler; mixed into its class."""

    def _datalink(self, params: list[tuple[str, str]]) -> None:
        status = self.archive.faults.datalink_status
        if status is not None:
            self._send(status, f"HTTP {status} from the DataLink service\n", "text/plain")
            return
        ids = [v for k, v in params if k.upper() == "ID"]
        if not ids:
            self._send(400, votable.error("ID is missing"), votable.CONTENT_TYPE)
            return
        self._send(200, self.archive.datalink(ids, authenticated=self._identity() is not None), votable.CONTENT_TYPE)
