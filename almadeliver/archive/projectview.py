"""ObsCore rows + DataLink answers -> the project view: Project > SG > GOUS > MOUS, each file once."""
from __future__ import annotations

import io
import logging
import re
import tarfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import requests
from astropy.table import Table

from ..errors import IdentifierError, NotFoundError
from ..ids import UID_DISK_PATTERN, DeliveryFileName, ProjectCode, TarballKind, Uid
from .client import TRANSPORT_ERRORS, ArchiveClient
from .datalink import Link, fetch_datalink
from .model import ArchiveFile, Mous, Project, ProjectView
from .tap import Selection, build_adql, run_query

log = logging.getLogger("almadeliver.archive")

HEADER_BYTES = 10240          # one Range request: enough for the first tar headers (GNU long names too)
_SG_RE = re.compile(rf"science_goal\.({UID_DISK_PATTERN})")
PRODUCT_KINDS = (TarballKind.PRODUCTS, TarballKind.CYCLE0, TarballKind.README)
_ANTENNA_ARRAY = {"DA": "12m", "DV": "12m", "DE": "12m", "CM": "7m", "PM": "TP"}


@dataclass
class MousFiles:
    """What the archive lists for one MOUS: its DataLink files and its science goal (if readable)."""

    links: list[Link]
    sg: str | None


# -- science goal from the first tar header ---------------------------------------------------------
def sg_from_header(data: bytes) -> str | None:
    """The science goal uid named by the first members of a (possibly truncated) delivery tarball."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
            for member in tar:
                m = _SG_RE.search(member.name)
                if m:
                    return Uid.parse(m[1]).archive
    except (tarfile.TarError, EOFError, OSError, IdentifierError):
        pass  # truncated or not a tarball: whatever was found before is all there is
    return None


def read_sg(session: requests.Session, url: str, attempts: int = 3) -> str | None:
    """Read the science goal uid from the first HEADER_BYTES of a product tarball (one Range request).

    A transport error (a dropped connection while the header is read, a timeout) is retried
    ``attempts`` times with backoff; after that the science goal is unknown, and a warning says why.
    """
    for attempt in range(attempts):
        try:
            with session.get(url, headers={"Range": f"bytes=0-{HEADER_BYTES - 1}"}, stream=True) as response:
                if response.status_code not in (200, 206):
                    log.debug("science goal of %s unknown: HTTP %s", url, response.status_code)
                    return None
                data = response.raw.read(HEADER_BYTES, decode_content=True)  # a server ignoring Range: stop early
            return sg_from_header(data)
        except TRANSPORT_ERRORS as exc:
            if attempt + 1 < attempts:
                time.sleep(0.25 * 2 ** attempt)
                continue
            log.warning("the science goal of %s is unknown: the mirror did not answer (%s)",
                        url.rsplit("/", 1)[-1], type(exc).__name__)
        except requests.RequestException as exc:
            log.debug("science goal of %s unknown: %s", url, exc)
            return None
    return None


def _first_product(mous: str, links: list[Link]) -> Link | None:
    disk = Uid.parse(mous).disk
    tars = [lk for lk in links if lk.readable and lk.kind in (TarballKind.PRODUCTS, TarballKind.CYCLE0)]
    own = [lk for lk in tars if disk in lk.name]
    return min(own or tars, key=lambda lk: lk.name, default=None)


def mous_files(client: ArchiveClient, mous: str, with_sg: bool = True) -> MousFiles:
    """DataLink for one MOUS, then (when it lists a product tarball) its science goal."""
    links = fetch_datalink(client, mous).links
    first = _first_product(mous, links) if with_sg else None
    return MousFiles(links, read_sg(client.session, first.url) if first else None)


# -- merging ObsCore rows ---------------------------------------------------------------------------
def _column(col) -> list:
    return [v.decode() if isinstance(v, bytes) else v for v in col.tolist()]  # masked -> None


def _rows(table: Table) -> list[dict]:
    columns = {name: _column(table[name]) for name in table.colnames}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _text(row: dict, name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


def array_of(rows: list[dict]) -> str:
    """12m, 7m or TP, from the antenna names (DA/DV 12m, CM 7m, PM total power), else the SB name."""
    counts: Counter[str] = Counter()
    for row in rows:
        for pair in _text(row, "antenna_arrays").split():
            array = _ANTENNA_ARRAY.get(pair.rsplit(":", 1)[-1][:2].upper())
            if array:
                counts[array] += 1
    if counts:
        return counts.most_common(1)[0][0]
    sb = _text(rows[0], "schedblock_name").upper()
    return "7m" if sb.endswith("_7M") else "TP" if sb.endswith("_TP") else "12m" if sb else "unknown"


def _qa2(rows: list[dict]) -> bool | None:
    flags = {_text(r, "qa2_passed").upper()[:1] for r in rows} - {""}
    return None if not flags else "F" not in flags and "T" in flags


def _bands(rows: list[dict]) -> list[str]:
    return sorted({b for r in rows for b in _text(r, "band_list").split()}, key=lambda b: (len(b), b))


def _cycle(code: str) -> int:
    try:
        return ProjectCode.parse(code).cycle
    except IdentifierError:
        return -1


def merge(table: Table, found: Mapping[str, MousFiles], archive: str) -> ProjectView:
    """The project view of ObsCore rows and each MOUS's files; every (name, size) listed once."""
    by_project: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in _rows(table):
        by_project[_text(row, "proposal_id")][_text(row, "member_ous_uid")].append(row)

    projects = []
    for code in sorted(by_project):
        groups = by_project[code]
        rows = [r for mous_rows in groups.values() for r in mous_rows]
        mous_list = []
        for uid, mrows in groups.items():
            files = found.get(uid)
            mous_list.append(Mous(
                uid=uid, gous=_text(mrows[0], "group_ous_uid"), sg=files.sg if files else None,
                array=array_of(mrows), qa2_passed=_qa2(mrows),
                ebs=sorted({_text(r, "asdm_uid") for r in mrows} - {""}),
                targets=sorted({_text(r, "target_name") for r in mrows} - {""}),
                bands=_bands(mrows), rows=len(mrows)))
        mous_list.sort(key=lambda m: (m.sg or "~", m.gous, m.uid))
        rights = {_text(r, "data_rights") for r in rows}
        projects.append(Project(
            code=code, title=next((_text(r, "obs_title") for r in rows if _text(r, "obs_title")), ""),
            pi=next((_text(r, "obs_creator_name") for r in rows if _text(r, "obs_creator_name")), ""),
            cycle=_cycle(code), data_rights="Public" if rights == {"Public"} else "Proprietary",
            release_date=max((_text(r, "obs_release_date")[:10] for r in rows), default=""),
            bands=_bands(rows), targets=sorted({_text(r, "target_name") for r in rows} - {""}),
            mous=mous_list))

    seen: dict[tuple[str, int | None], ArchiveFile] = {}
    dropped = 0
    for project in projects:
        for mous in project.mous:
            for link in found[mous.uid].links if mous.uid in found else []:
                kind = link.kind
                if kind is None:
                    log.debug("%s: %s (%s) is not a delivery file; left out", mous.uid, link.name, link.semantics)
                    continue
                key = (link.name, link.size)
                if key in seen:
                    dropped += 1
                    if seen[key].mous != mous.uid and link.name not in mous.shared_files:
                        mous.shared_files.append(link.name)
                    continue
                seen[key] = ArchiveFile(link.name, link.url, link.size or 0, kind, mous.uid, link.readable)
                mous.files.append(seen[key])
            raw_ebs = {DeliveryFileName.parse(name).uid.archive
                       for name in [f.name for f in mous.files] + mous.shared_files
                       if name.endswith(".asdm.sdm.tar")}
            mous.ebs = sorted(set(mous.ebs) | raw_ebs)
    return ProjectView(archive=archive, projects=projects, rows=len(table), duplicates_dropped=dropped)


# -- an empty answer says which condition emptied it -------------------------------------------------
def _narrowing(selection: Selection) -> list[tuple[str, str | None]]:
    """The conditions beyond the ids, as the user gave them (CLI words), each with the ObsCore column
    that tells what the archive has instead (None: nothing to show)."""
    out: list[tuple[str, str | None]] = []
    if selection.bands:
        out.append((" ".join(f"--band {b}" for b in selection.bands), "band_list"))
    if selection.public is not None:
        out.append(("--public" if selection.public else "--proprietary", "data_rights"))
    if selection.start:
        out.append((f"--start {selection.start}", "t_min"))
    if selection.end:
        out.append((f"--end {selection.end}", "t_min"))
    if selection.keyword:
        out.append((f"--keyword {selection.keyword!r}", "science_keyword"))
    if selection.cone:
        c = selection.cone
        out.append((f"the cone of {c.radius * 3600:g} arcsec around ({c.ra:g}, {c.dec:g}) deg", "target_name"))
    out += [(f"--where {w!r}", None) for w in selection.where if w.strip()]
    return out


def _has(rows: list[dict], column: str) -> str:
    """What the rows hold in ``column``, in words ("bands 6", "data rights Proprietary", ...)."""
    if column == "band_list":
        return "bands " + ", ".join(_bands(rows))
    if column == "t_min":
        from astropy.time import Time

        days = sorted(float(r["t_min"]) for r in rows if _text(r, "t_min"))
        dates = sorted({Time(d, format="mjd").iso[:10] for d in days})
        return f"observations from {dates[0]} to {dates[-1]}" if dates else "no observation dates"
    values = sorted({_text(r, column) for r in rows} - {""})
    label = {"data_rights": "data rights", "science_keyword": "science keywords", "target_name": "targets"}[column]
    return f"{label} {'; '.join(values) if values else 'none'}"


def _emptied_by_conditions(client: ArchiveClient, selection: Selection, missing: list[str],
                           empty: bool) -> list[str]:
    """For ids the answer lacks although the archive holds them: one line per id naming the conditions
    that emptied it and what the id has instead, e.g. "2017.1.00123.S has no data matching --band 1
    (it has bands 6)". One more query, by the ids alone, and only when conditions narrowed them."""
    narrowing = _narrowing(selection)
    ids = missing + (list(selection.uids) if empty else [])
    if not narrowing or not ids:
        return []
    plain = Selection(projects=[p for p in missing], uids=list(selection.uids) if empty else [])
    rows = _rows(run_query(client, build_adql(plain)))
    lines = []
    for given in ids:
        if given in missing:
            mine = [r for r in rows if _text(r, "proposal_id") == given]
        else:
            uid = Uid.parse(given).archive
            mine = [r for r in rows if uid in (_text(r, "member_ous_uid"), _text(r, "group_ous_uid"))]
        if mine:
            facts = "; ".join(_has(mine, column) for _, column in narrowing if column)
            lines.append(f"{given} has no data matching {' '.join(w for w, _ in narrowing)}"
                         + (f" (it has {facts})" if facts else ""))
    return lines


# -- the query ---------------------------------------------------------------------------------------
def query(selection: Selection, client: ArchiveClient | None = None, with_sg: bool = True,
          table: Table | None = None) -> ProjectView:
    """Ask ivoa.obscore, then DataLink (and one tar header) for every MOUS concurrently; ``table``:
    ObsCore rows already read for this selection (archive.science), so TAP is not asked again."""
    client = client or ArchiveClient()
    table = run_query(client, build_adql(selection)) if table is None else table
    found_projects = {str(p) for p in table["proposal_id"]} if len(table) else set()
    missing = [p for p in selection.exact_projects() if p not in found_projects]
    emptied = _emptied_by_conditions(client, selection, missing, len(table) == 0)
    if not len(table):
        if emptied:
            absent = [c for c in missing if not any(line.startswith(f"{c} ") for line in emptied)]
            lines = emptied + [f"project {', '.join(absent)} is not in the archive at {client.url}"] * bool(absent)
            raise NotFoundError("; ".join(lines), "drop or widen that condition to see what the archive holds")
        if missing and len(missing) == len(selection.projects) and not selection.uids:
            raise NotFoundError(f"project {', '.join(missing)} is not in the archive at {client.url}",
                                "check the code, or search with a wildcard such as 2013.1.*.S")
        if selection.uids and not selection.projects:
            raise NotFoundError(f"{', '.join(selection.uids)}: no MOUS or GOUS with this uid in the archive at "
                                f"{client.url}", "check the uid (an EB uid starts uid://A002/; query its project)")
        raise NotFoundError(f"nothing in the archive at {client.url} matches the selection",
                            "widen it (fewer conditions, a larger cone) or check the uids and codes")
    for line in emptied:
        log.warning("%s", line)
    for code in missing:
        if not any(line.startswith(f"{code} ") for line in emptied):
            log.warning("project %s is not in the archive at %s", code, client.url)
    uids = sorted({str(u) for u in table["member_ous_uid"]})
    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        found = dict(zip(uids, pool.map(lambda uid: mous_files(client, uid, with_sg), uids)))
    return merge(table, found, client.url or "")


# -- tables (csv, ecsv, votable) ---------------------------------------------------------------------
def mous_table(view: ProjectView) -> Table:
    """One row per MOUS."""
    names = ("project", "mous", "gous", "sg", "array", "qa2_passed", "ebs", "bands", "targets", "rows",
             "files", "shared_files", "products_bytes", "auxiliary_bytes", "raw_bytes", "external_bytes")
    rows = [(p.code, m.uid, m.gous, m.sg or "", m.array, "" if m.qa2_passed is None else "T" if m.qa2_passed else "F",
             " ".join(m.ebs), " ".join(m.bands), " ".join(m.targets), m.rows, len(m.files), len(m.shared_files),
             m.size(*PRODUCT_KINDS), m.size(TarballKind.AUXILIARY), m.size(TarballKind.RAW),
             m.size(TarballKind.EXTERNAL))
            for p in view.projects for m in p.mous]
    return _table(names, [str] * 9 + [int] * 7, rows)


def eb_table(view: ProjectView) -> Table:
    """One row per EB, like the archive's raw view; ``shares_with`` names the rows fetching the same
    delivery files (a MOUS's EBs share its products; Cycle 0 EBs share the project's tarballs)."""
    sizes = {f.name: f.size for f in view.files()}
    out, delivery = [], []
    for p in view.projects:
        for m in p.mous:
            names = {f.name for f in m.files} | set(m.shared_files)
            products = frozenset(n for n in names if not n.endswith(".asdm.sdm.tar"))
            for eb in m.ebs:
                raw = next((n for n in names if n.endswith(".asdm.sdm.tar") and Uid.parse(eb).disk in n), "")
                out.append([len(out) + 1, p.code, m.uid, eb, raw, sizes.get(raw, 0),
                            sum(sizes.get(n, 0) for n in products), ""])
                delivery.append(products)
    for i, row in enumerate(out):
        row[7] = " ".join(str(j + 1) for j, other in enumerate(delivery) if j != i and other and other == delivery[i])
    names = ("row", "project", "mous", "eb", "raw_file", "raw_bytes", "delivery_bytes", "shares_with")
    return _table(names, [int, str, str, str, str, int, int, str], out)


def _table(names: tuple[str, ...], dtypes: list[type], rows: list) -> Table:
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    return Table([np.array(c, dtype=d) for c, d in zip(columns, dtypes)], names=names)


def summary(view: ProjectView) -> str:
    """'R rows -> M MOUS, E EBs; F files, D duplicates dropped'."""
    mous = [m for p in view.projects for m in p.mous]
    ebs = {eb for m in mous for eb in m.ebs}
    return (f"{view.rows} rows -> {len(mous)} MOUS, {len(ebs)} EBs; "
            f"{len(view.files())} files, {view.duplicates_dropped} duplicates dropped")
