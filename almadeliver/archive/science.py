"""Science selection on top of the project view: spectral lines and ranges, resolution and
sensitivity limits, and target lists; each MOUS described by what a scientist asks of it.

The TAP query narrows the rows on the server (the ALMA bands a requested frequency falls in, the
spatial resolution, the target circles); the exact spectral match is made here, spw by spw, on
``frequency_support`` (almadeliver.archive.spectral), and a MOUS is kept or dropped whole, so the
project view and the download plan hold every row, EB and file of each MOUS kept.
"""
from __future__ import annotations

import logging
import statistics
import warnings
from dataclasses import dataclass, field, replace

from astropy.table import Table, vstack

from ..errors import NotFoundError, UsageError
from .client import ArchiveClient
from .lines import BANDS_GHZ, bands_of, parse_line, sky_frequency_ghz
from .model import ProjectView
from .projectview import _rows, query
from .spectral import C_KMS, SpwSupport, parse_freq_range, parse_frequency_support, parse_limit
from .tap import VIEW_COLUMNS, Selection, build_adql, run_query
from .targets import Target, batch_conditions, covered_targets

log = logging.getLogger("almadeliver.archive")

# The ObsCore columns science answers carry, beyond what the project view reads.
SCIENCE_COLUMNS: tuple[str, ...] = VIEW_COLUMNS + tuple(c for c in (
    "obs_publisher_did", "s_fov", "s_region", "s_resolution", "t_max", "t_exptime", "em_min", "em_max",
    "em_res_power", "em_resolution", "pol_states", "bandwidth", "is_mosaic", "spatial_resolution",
    "frequency_support", "frequency", "velocity_resolution", "sensitivity_10kms", "cont_sensitivity_bandwidth",
    "pwv", "science_observation", "spatial_scale_max", "scan_intent", "gal_longitude", "gal_latitude",
) if c not in VIEW_COLUMNS)


@dataclass(frozen=True)
class SpectralRequest:
    """A frequency, range or line asked for, on the sky (LSRK)."""

    label: str                  # 'CO(2-1) z=0.0125', '84..116 GHz'
    lo_ghz: float
    hi_ghz: float
    rest_ghz: float | None = None
    source: str = ""            # where the rest frequency comes from

    @property
    def centre_ghz(self) -> float:
        """The centre of the window in GHz."""
        return 0.5 * (self.lo_ghz + self.hi_ghz)


@dataclass(frozen=True)
class Limits:
    """Limits a MOUS must meet (None: no limit)."""

    resolution: tuple[float, float] | None = None        # spatial_resolution range, arcsec
    sensitivity: float | None = None                      # max sensitivity_10kms, mJy/beam
    velocity_resolution: float | None = None              # max channel width, km/s


@dataclass
class LineCoverage:
    """How one MOUS covers one spectral request."""

    request: str
    sky_ghz: float
    spws: list[str]                     # spw names (spw NN from obs_id, else #k in frequency_support)
    channel_kms: float | None           # finest channel width of those spws at the line, km/s
    sensitivity_10kms: float | None     # best per-spw sensitivity of those spws, mJy/beam (when written)


@dataclass
class MousScience:
    """What a scientist asks of a MOUS, from its ObsCore rows."""

    uid: str
    project: str
    bands: list[str]
    spws: list[tuple[str, SpwSupport]]
    coverage: list[LineCoverage]
    spatial_resolution: float | None    # arcsec (median of rows)
    largest_angular_scale: float | None # arcsec (spatial_scale_max)
    sensitivity_10kms: float | None     # mJy/beam (best row)
    velocity_resolution: float | None   # km/s (finest row)
    s_ra: float | None                  # deg
    s_dec: float | None                 # deg
    regions: list[str]                  # distinct s_region texts
    target_names: list[str]             # ObsCore target_name values
    targets: list[str] = field(default_factory=list)   # entries of --targets it covers


@dataclass
class ScienceResult:
    """A science query's answer: the project view of the MOUS kept, their ObsCore rows, and per MOUS
    what covers the requested frequencies and targets; ``tap_calls`` counts the TAP queries made."""

    view: ProjectView
    table: Table                        # the ObsCore rows of the MOUS kept
    mous: dict[str, MousScience]
    requests: list[SpectralRequest]
    targets: list[Target]
    row_targets: list[list[str]]        # per table row, the --targets entries it covers
    tap_calls: int


# -- requests from the command line -------------------------------------------------------------
def spectral_requests(freqs: list[str], lines: list[str], z: float | None = None, vlsr: float | None = None,
                      convention: str = "radio") -> list[SpectralRequest]:
    """``--freq`` values and ``--line`` names/frequencies (shifted by ``--z`` or ``--vlsr``).

    Raises
    ------
    UsageError
        A value that does not parse, an unknown line, --z/--vlsr without --line, or both.
    """
    if (z is not None or vlsr is not None) and not lines:
        raise UsageError("--z and --vlsr shift a --line", "give --line NAME|FREQ with them")
    out = [SpectralRequest(f"{lo:g}..{hi:g} GHz" if lo != hi else f"{lo:g} GHz", lo, hi) for lo, hi in map(parse_freq_range, freqs)]
    for text in lines:
        line = parse_line(text)
        sky = sky_frequency_ghz(line.rest_ghz, z, vlsr, convention)
        shift = f" z={z:g}" if z is not None else f" vlsr={vlsr:g}km/s ({convention})" if vlsr is not None else ""
        out.append(SpectralRequest(f"{line.name}{shift}", sky, sky, line.rest_ghz, line.source))
    for r in out:
        if not bands_of(r.lo_ghz, r.hi_ghz):
            raise UsageError(f"{r.label} ({r.lo_ghz:.4f} GHz) is in no ALMA band",
                             "ALMA observes " + ", ".join(f"band {b} {a:g}-{c:g} GHz" for b, (a, c) in BANDS_GHZ.items()))
    return out


def parse_resolution(text: str) -> tuple[float, float]:
    """``--resolution 0.5arcsec`` (at most) or ``0.1..0.5arcsec`` (a range); arcsec."""
    if ".." in text:
        left, right = text.split("..", 1)
        unit = right.strip().lstrip("0123456789.eE+- ")
        lo = parse_limit(left if left.strip().lstrip("0123456789.eE+- ") else left + unit, "arcsec", "--resolution")
        return min(lo, parse_limit(right, "arcsec", "--resolution")), max(lo, parse_limit(right, "arcsec", "--resolution"))
    return 0.0, parse_limit(text, "arcsec", "--resolution")


# -- per MOUS ---------------------------------------------------------------------------------------
def _float(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _spw_names(rows: list[dict], spws: list[SpwSupport]) -> list[str]:
    """Name each spw by the obs_id (``...spw.NN``) of the row whose em_min/em_max it matches."""
    named = []
    for k, spw in enumerate(spws):
        name = f"#{k}"
        for row in rows:
            lo_m, hi_m, obs_id = _float(row.get("em_min")), _float(row.get("em_max")), str(row.get("obs_id") or "")
            if not lo_m or not hi_m or ".spw." not in obs_id:
                continue
            f_hi, f_lo = C_KMS * 1e3 / lo_m / 1e9, C_KMS * 1e3 / hi_m / 1e9
            overlap = min(f_hi, spw.hi_ghz) - max(f_lo, spw.lo_ghz)
            if overlap > 0.5 * (spw.hi_ghz - spw.lo_ghz):
                name = "spw " + obs_id.rsplit(".spw.", 1)[1]
                break
        named.append(name)
    return named


def describe_mous(uid: str, rows: list[dict], requests: list[SpectralRequest]) -> MousScience:
    """The science description of one MOUS from its ObsCore rows (every spw of every row's
    ``frequency_support``, once)."""
    seen: dict[tuple, SpwSupport] = {}
    for row in rows:
        try:
            spws = parse_frequency_support(row.get("frequency_support"))
        except ValueError as exc:
            log.warning("%s: frequency_support not read (%s)", uid, exc)
            spws = []
        for spw in spws:
            seen.setdefault((round(spw.lo_ghz, 6), round(spw.hi_ghz, 6), spw.resolution_hz), spw)
    spws = sorted(seen.values(), key=lambda s: (s.lo_ghz, s.hi_ghz))
    names = _spw_names(rows, spws)
    coverage = []
    for req in requests:
        hit = [(n, s) for n, s in zip(names, spws) if s.covers(req.lo_ghz, req.hi_ghz)]
        if hit:
            widths = [w for _, s in hit if (w := s.channel_kms(req.centre_ghz)) is not None]
            sens = [s.sensitivity_10kms for _, s in hit if s.sensitivity_10kms is not None]
            coverage.append(LineCoverage(req.label, req.centre_ghz, [n for n, _ in hit],
                                         min(widths) if widths else None, min(sens) if sens else None))

    def values(name: str) -> list[float]:
        return [v for r in rows if (v := _float(r.get(name))) is not None and v > 0]

    res, las, sens, vres = values("spatial_resolution"), values("spatial_scale_max"), values("sensitivity_10kms"), values("velocity_resolution")
    return MousScience(
        uid=uid, project=str(rows[0].get("proposal_id") or ""),
        bands=sorted({b for r in rows for b in str(r.get("band_list") or "").split()}, key=lambda b: (len(b), b)),
        spws=list(zip(names, spws)), coverage=coverage,
        spatial_resolution=statistics.median(res) if res else None, largest_angular_scale=max(las) if las else None,
        sensitivity_10kms=min(sens) if sens else None, velocity_resolution=min(vres) / 1e3 if vres else None,
        s_ra=_float(rows[0].get("s_ra")), s_dec=_float(rows[0].get("s_dec")),
        regions=list(dict.fromkeys(str(r.get("s_region")) for r in rows if r.get("s_region"))),
        target_names=sorted({str(r.get("target_name")) for r in rows if r.get("target_name")}))


def passes(m: MousScience, requests: list[SpectralRequest], limits: Limits) -> bool:
    """The MOUS covers a request (when any) and meets every limit."""
    if requests and not m.coverage:
        return False
    if limits.resolution:
        lo, hi = limits.resolution
        if m.spatial_resolution is None or not lo <= m.spatial_resolution <= hi:
            return False
    if limits.sensitivity is not None:
        best = min([c.sensitivity_10kms for c in m.coverage if c.sensitivity_10kms is not None] or
                   ([m.sensitivity_10kms] if m.sensitivity_10kms is not None else []), default=None)
        if best is None or best > limits.sensitivity:
            return False
    if limits.velocity_resolution is not None:
        finest = min([c.channel_kms for c in m.coverage if c.channel_kms is not None] or
                     ([m.velocity_resolution] if m.velocity_resolution is not None else []), default=None)
        if finest is None or finest > limits.velocity_resolution:
            return False
    return True


# -- the query -------------------------------------------------------------------------------------
def science_query(selection: Selection, client: ArchiveClient | None = None, requests: list[SpectralRequest] = (),
                  limits: Limits = Limits(), targets: list[Target] = (), with_sg: bool = True) -> ScienceResult:
    """The project view of the MOUS that meet a science selection, with their description.

    Parameters
    ----------
    selection : Selection
        The usual conditions (codes, uids, cone, bands, ...), ANDed with the rest.
    requests : list of SpectralRequest
        A MOUS is kept when one of its spws covers one of them (any; none given: no condition).
    limits : Limits
        Spatial resolution (arcsec), sensitivity in 10 km/s (mJy/beam), channel width (km/s).
    targets : list of Target
        A MOUS is kept when its s_region reaches one of them; the TAP conditions are batched
        (almadeliver.archive.targets.BATCH targets per query).

    Returns
    -------
    ScienceResult
        With the number of TAP queries made.

    Raises
    ------
    UsageError
        The requested frequencies lie outside the bands selected with --band.
    NotFoundError
        No MOUS meets the selection (the message names the spectral request).
    """
    client = client or ArchiveClient()
    requests, targets = list(requests), list(targets)
    where = list(selection.where)
    bands = list(selection.bands)
    if requests:
        wanted = sorted({b for r in requests for b in bands_of(r.lo_ghz, r.hi_ghz)})
        bands = [b for b in bands if b in wanted] if bands else wanted
        if not bands:
            raise UsageError(f"{', '.join(r.label for r in requests)} lies outside band(s) "
                             f"{', '.join(map(str, selection.bands))}", "drop --band or change the line")
    if limits.resolution:
        lo, hi = limits.resolution
        where.append(f"spatial_resolution >= {lo!r} AND spatial_resolution <= {hi!r}")
    base = replace(selection, bands=bands, where=where)
    tables, calls = [], 0
    for cond in batch_conditions(targets) if targets else [None]:
        sel = replace(base, where=where + [cond]) if cond else base
        tables.append(run_query(client, build_adql(sel, SCIENCE_COLUMNS)))
        calls += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = tables[0] if len(tables) == 1 else vstack(tables, metadata_conflicts="silent")
    rows = _rows(table)
    if len(tables) > 1:  # a row reached by targets of two batches comes twice
        keep, seen = [], set()
        for i, r in enumerate(rows):
            key = (r.get("obs_id"), r.get("asdm_uid"), r.get("member_ous_uid"))
            if key not in seen:
                seen.add(key)
                keep.append(i)
        table, rows = table[keep], [rows[i] for i in keep]
    by_mous: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_mous.setdefault(str(r.get("member_ous_uid")), []).append(i)
    row_targets = covered_targets(rows, targets) if targets else [[] for _ in rows]
    described = {}
    for uid, idx in by_mous.items():
        m = describe_mous(uid, [rows[i] for i in idx], requests)
        m.targets = list(dict.fromkeys(t for i in idx for t in row_targets[i]))
        if passes(m, requests, limits) and (not targets or m.targets):
            described[uid] = m
    keep = [i for uid in described for i in by_mous[uid]]
    keep.sort()
    if not keep and (len(table) or requests or targets):
        what = "; ".join(r.label + (f" at {r.lo_ghz:.4f} GHz" if r.rest_ghz else "") for r in requests) or "the limits"
        raise NotFoundError(f"no MOUS in the archive at {client.url} matches {what}"
                            + (f" ({len(by_mous)} MOUS in the same band(s) do not)" if by_mous else ""),
                            "widen the selection (a --freq range, another --line, looser limits)")
    table, row_targets = table[keep], [row_targets[i] for i in keep]
    view = query(selection, client, with_sg=with_sg, table=table)
    return ScienceResult(view, table, described, requests, targets, row_targets, calls)
