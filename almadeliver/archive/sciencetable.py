"""Science tables: the query answer as astropy Tables with ObsCore column names, units and UCDs.

``rows_table`` has one row per ObsCore row (MOUS x source x spw) of the MOUS kept; ``mous_table``
one row per MOUS. Column names are ObsCore's (../shared/fixtures/real/archive/obscore_columns.md)
wherever ObsCore has the quantity; the others are named below and documented in the README.
Units come from the TAP answer's FIELDs, else from ``archive.obscore``; the ALMA flags
``qa2_passed``, ``science_observation``, ``is_mosaic`` (``T``/``F`` text) become booleans, empty
values masked. Two unit slips of ALMA's answer are repaired (obscore_columns.md "Unit caveats"):
``bandwidth`` labelled GHz but holding Hz, ``s_resolution`` labelled deg but holding arcsec.
Written as CSV, ECSV or VOTable by astropy, so astropy, pyvo and TOPCAT read them as they are.
"""
from __future__ import annotations

import io

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table

from ..ids import TarballKind
from .model import ProjectView
from .obscore import OBSCORE_COLUMNS
from .projectview import PRODUCT_KINDS, _rows
from .science import ScienceResult

_COLUMNS = {c.name: c for c in OBSCORE_COLUMNS}
_FLAGS = {"qa2_passed", "science_observation", "is_mosaic"}
# UCDs of the IVOA ObsCore 1.1 data model (Table 4) and of ALMA's answer (alma-shapes.xml) for the
# columns ALMA serves without one.
UCDS: dict[str, str] = {
    "obs_publisher_did": "meta.ref.ivoid", "obs_collection": "meta.id", "facility_name": "meta.id;instr.tel",
    "instrument_name": "meta.id;instr", "obs_id": "meta.id", "dataproduct_type": "meta.code.class",
    "calib_level": "meta.code;obs.calib", "target_name": "meta.id;src", "s_ra": "pos.eq.ra",
    "s_dec": "pos.eq.dec", "s_fov": "phys.angSize;instr.fov", "s_region": "pos.outline;obs.field",
    "s_resolution": "pos.angResolution", "t_min": "time.start;obs.exposure", "t_max": "time.end;obs.exposure",
    "t_exptime": "time.duration;obs.exposure", "t_resolution": "time.resolution", "em_min": "em.wl;stat.min",
    "em_max": "em.wl;stat.max", "em_res_power": "spect.resolution", "pol_states": "meta.code;phys.polarization",
    "o_ucd": "meta.ucd", "access_url": "meta.ref.url", "access_format": "meta.code.mime",
    "proposal_id": "meta.id;obs.proposal", "data_rights": "meta.code", "frequency": "em.freq;obs;meta.main",
    "spatial_resolution": "pos.angResolution", "spatial_scale_max": "phys.angSize;stat.max",
    "sensitivity_10kms": "instr.sensitivity;phot.flux.density", "bandwidth": "instr.bandwidth",
    "velocity_resolution": "spect.resolution;phys.veloc", "group_ous_uid": "meta.id",
    "member_ous_uid": "meta.id;meta.main", "asdm_uid": "meta.id", "band_list": "instr.bandpass",
    "frequency_support": "em.freq;instr.bandpass", "qa2_passed": "meta.code.qual",
    "t_xel": "meta.number", "gal_longitude": "pos.galactic.lon", "gal_latitude": "pos.galactic.lat",
    "cont_sensitivity_bandwidth": "instr.sensitivity;phot.flux.density", "pwv": "obs.atmos.water",
}
# Columns that are not ObsCore's: name -> (unit, ucd, description)
EXTRA: dict[str, tuple[str, str, str]] = {
    "science_goal_uid": ("", "meta.id", "Science goal OUS uid, read from the product tarball's first header"),
    "array": ("", "instr.setup", "12m, 7m or TP, from the antenna names"),
    "n_rows": ("", "meta.number", "ObsCore rows merged into this MOUS"),
    "n_ebs": ("", "meta.number", "Execution blocks of the MOUS"),
    "products_size": ("byte", "phys.size;meta.file", "Product tarballs and README, DataLink content_length"),
    "auxiliary_size": ("byte", "phys.size;meta.file", "Auxiliary tarball"),
    "raw_size": ("byte", "phys.size;meta.file", "Raw ASDM tarballs"),
    "line": ("", "meta.id;spect.line", "The requested line(s) or frequency range(s) the MOUS covers"),
    "line_frequency": ("GHz", "em.freq;spect.line", "Sky (LSRK) frequency of the first line covered"),
    "line_spws": ("", "meta.id;instr.bandpass", "The spws covering it (spw NN from obs_id, else #k in frequency_support)"),
    "line_channel_width": ("km/s", "spect.resolution;phys.veloc", "Finest channel width of those spws at the line"),
    "line_sensitivity_10kms": ("mJy/beam", "instr.sensitivity;phot.flux.density",
                               "Best per-spw sensitivity in 10 km/s of those spws (frequency_support)"),
    "spw_covers_line": ("", "meta.code", "This row's own spw (em_min..em_max) covers a requested line"),
    "targets_covered": ("", "meta.id;src", "Entries of --targets the s_region reaches (' | ' separated)"),
}


def _flag(value) -> bool | None:
    text = "" if value is None else str(value).strip().upper()[:1]
    return True if text in ("T", "Y", "1") else False if text in ("F", "N", "0") else None


def _unit(table: Table | None, name: str) -> str:
    col = table[name] if table is not None and name in table.colnames else None
    unit = str(col.unit) if col is not None and col.unit is not None else _COLUMNS[name].unit if name in _COLUMNS else ""
    return "" if unit in ("None", "") else unit


def _column(name: str, values: list, unit: str = "", kind: str | None = None, description: str = "") -> MaskedColumn:
    """A column of ``values`` (None -> masked), typed by ``kind`` (double/int/bool/char)."""
    info = _COLUMNS.get(name)
    kind = kind or (info.datatype if info else "char")
    mask = [v is None for v in values]
    if kind == "bool":
        data = np.array([bool(v) if v is not None else False for v in values], dtype=bool)
    elif kind == "int":
        data = np.array([int(v) if v is not None else 0 for v in values], dtype=np.int64)
    elif kind == "double":
        data = np.array([float(v) if v is not None else np.nan for v in values], dtype=float)
    else:
        data = np.array(["" if v is None else str(v) for v in values], dtype=str)
        if data.dtype.itemsize == 0:
            data = data.astype("U1")
    col = MaskedColumn(data, name=name, mask=mask if any(mask) else None)
    if unit:
        col.unit = u.Unit(unit)
    extra = EXTRA.get(name)
    col.meta["ucd"] = UCDS.get(name) or (extra[1] if extra else "") or (info.ucd if info else "")
    col.description = description or (info.description if info else extra[2] if extra else "")
    return col


def _repair(name: str, unit: str, value):
    """ALMA's two unit slips (obscore_columns.md): Hz values under GHz, arcsec values under deg."""
    if value is None:
        return None
    if name == "bandwidth" and unit == "GHz" and value > 1e3:
        return value / 1e9
    if name == "s_resolution" and unit == "deg" and value > 0.05:
        return value / 3600
    return value


def _value(row: dict, name: str, unit: str):
    value = row.get(name)
    if isinstance(value, bytes):
        value = value.decode()
    info = _COLUMNS.get(name)
    if name in _FLAGS:
        return _flag(value)
    if value is None or (isinstance(value, float) and value != value):
        return None
    if info and info.datatype == "double":
        try:
            return _repair(name, unit, float(value))
        except ValueError:
            return None
    if info and info.datatype == "int":
        return int(value)
    return str(value)


def rows_table(result: ScienceResult) -> Table:
    """One row per ObsCore row of the MOUS kept, ObsCore columns in ObsCore order, plus
    ``spw_covers_line`` (with --line/--freq) and ``targets_covered`` (with --targets)."""
    rows = _rows(result.table)
    names = [c.name for c in OBSCORE_COLUMNS if c.name in result.table.colnames]
    cols = []
    for name in names:
        unit = _unit(result.table, name)
        cols.append(_column(name, [_value(r, name, unit) for r in rows], unit, "bool" if name in _FLAGS else None))
    if result.requests:
        covers = []
        for r in rows:
            lo_m, hi_m = r.get("em_min"), r.get("em_max")
            if lo_m and hi_m:
                f_lo, f_hi = 299792458.0 / float(hi_m) / 1e9, 299792458.0 / float(lo_m) / 1e9
                covers.append(any(f_lo <= q.hi_ghz and f_hi >= q.lo_ghz for q in result.requests))
            else:
                covers.append(None)
        cols.append(_column("spw_covers_line", covers, kind="bool"))
    if result.targets:
        cols.append(_column("targets_covered", [" | ".join(t) for t in result.row_targets]))
    return Table(cols)


def mous_table(result: ScienceResult) -> Table:
    """One row per MOUS: identity, setup and sizes, with the spectral coverage of the request."""
    view: ProjectView = result.view
    mous = [(p, m, result.mous.get(m.uid)) for p in view.projects for m in p.mous]
    rows_by = {}
    for r in _rows(result.table):
        rows_by.setdefault(str(r.get("member_ous_uid")), []).append(r)

    def first(uid: str, name: str):
        unit = _unit(result.table, name)
        values = [v for r in rows_by.get(uid, []) if (v := _value(r, name, unit)) is not None]
        return values[0] if values else None

    def envelope(uid: str, name: str, fn):
        values = [v for r in rows_by.get(uid, []) if (v := _value(r, name, "")) is not None]
        return fn(values) if values else None

    spec = {
        "proposal_id": [p.code for p, m, s in mous],
        "member_ous_uid": [m.uid for p, m, s in mous],
        "group_ous_uid": [m.gous for p, m, s in mous],
        "science_goal_uid": [m.sg for p, m, s in mous],
        "obs_title": [p.title for p, m, s in mous],
        "pi_name": [p.pi or None for p, m, s in mous],
        "array": [m.array for p, m, s in mous],
        "qa2_passed": [m.qa2_passed for p, m, s in mous],
        "band_list": [" ".join(m.bands) for p, m, s in mous],
        "target_name": [" ".join(m.targets) for p, m, s in mous],
        "s_ra": [s.s_ra if s else None for p, m, s in mous],
        "s_dec": [s.s_dec if s else None for p, m, s in mous],
        "s_fov": [first(m.uid, "s_fov") for p, m, s in mous],
        "s_region": [first(m.uid, "s_region") for p, m, s in mous],
        "spatial_resolution": [s.spatial_resolution if s else None for p, m, s in mous],
        "spatial_scale_max": [s.largest_angular_scale if s else None for p, m, s in mous],
        "sensitivity_10kms": [s.sensitivity_10kms if s else None for p, m, s in mous],
        "cont_sensitivity_bandwidth": [envelope(m.uid, "cont_sensitivity_bandwidth", min) for p, m, s in mous],
        "velocity_resolution": [s.velocity_resolution * 1e3 if s and s.velocity_resolution else None for p, m, s in mous],
        "em_min": [envelope(m.uid, "em_min", min) for p, m, s in mous],
        "em_max": [envelope(m.uid, "em_max", max) for p, m, s in mous],
        "frequency_support": [" U ".join(f"[{w.lo_ghz:.3f}..{w.hi_ghz:.3f}GHz]" for _, w in s.spws) if s else None
                              for p, m, s in mous],
        "t_min": [envelope(m.uid, "t_min", min) for p, m, s in mous],
        "data_rights": [p.data_rights for p, m, s in mous],
        "obs_release_date": [p.release_date or None for p, m, s in mous],
        "asdm_uid": [" ".join(m.ebs) for p, m, s in mous],
        "n_ebs": [len(m.ebs) for p, m, s in mous],
        "n_rows": [m.rows for p, m, s in mous],
        "products_size": [m.size(*PRODUCT_KINDS) for p, m, s in mous],
        "auxiliary_size": [m.size(TarballKind.AUXILIARY) for p, m, s in mous],
        "raw_size": [m.size(TarballKind.RAW) for p, m, s in mous],
    }
    cols = []
    for name, values in spec.items():
        extra = EXTRA.get(name)
        unit = extra[0] if extra else ("arcsec" if name in ("spatial_resolution", "spatial_scale_max") else _unit(result.table, name))
        kind = ("bool" if name in _FLAGS else "int" if name in ("n_ebs", "n_rows") or name.endswith("_size") else None)
        if name == "frequency_support":
            unit = "GHz"
        cols.append(_column(name, values, unit, kind))
    if result.requests:
        cov = [s.coverage if s else [] for p, m, s in mous]
        cols += [_column("line", [" | ".join(c.request for c in cs) or None for cs in cov]),
                 _column("line_frequency", [cs[0].sky_ghz if cs else None for cs in cov], "GHz", "double"),
                 _column("line_spws", [" ".join(cs[0].spws) if cs else None for cs in cov]),
                 _column("line_channel_width", [cs[0].channel_kms if cs else None for cs in cov], "km/s", "double"),
                 _column("line_sensitivity_10kms", [cs[0].sensitivity_10kms if cs else None for cs in cov],
                         "mJy/beam", "double")]
    if result.targets:
        cols.append(_column("targets_covered", [" | ".join(s.targets) if s else "" for p, m, s in mous]))
    return Table(cols)


def raw_table(view: ProjectView) -> Table:
    """``--view raw`` (projectview.eb_table: one row per EB) with units and UCDs on its columns."""
    from .projectview import eb_table

    table = eb_table(view)
    meta = {"row": ("", "meta.number"), "project": ("", "meta.id;obs.proposal"), "mous": ("", "meta.id"),
            "eb": ("", "meta.id;meta.main"), "raw_file": ("", "meta.id;meta.file"),
            "raw_bytes": ("byte", "phys.size;meta.file"), "delivery_bytes": ("byte", "phys.size;meta.file"),
            "shares_with": ("", "meta.number")}
    for name, (unit, ucd) in meta.items():
        if unit:
            table[name].unit = u.Unit(unit)
        table[name].meta["ucd"] = ucd
    return table


def write(table: Table, fmt: str) -> str:
    """The table as csv, ecsv or votable text (astropy's writers; VOTable keeps units, UCDs and
    descriptions as FIELD attributes, ECSV in its header, CSV only the names)."""
    if fmt == "votable":
        from astropy.io.votable import from_table

        vot = from_table(table)
        for fld, col in zip(vot.get_first_table().fields, table.itercols()):
            if col.meta.get("ucd"):
                fld.ucd = col.meta["ucd"]
            if col.description:
                fld.description = col.description
        buf = io.BytesIO()
        vot.to_xml(buf)
        return buf.getvalue().decode()
    buf = io.StringIO()
    table.write(buf, format="ascii.csv" if fmt == "csv" else "ascii.ecsv")
    return buf.getvalue()
