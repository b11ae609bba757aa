"""A list of targets (names or positions) as a few batched TAP conditions, and which rows cover which.

``query --targets FILE`` reads CSV, ECSV or VOTable (astropy ``Table.read``) with an RA/Dec pair of
columns (ra/dec, s_ra/s_dec, RAJ2000/DEJ2000; degrees unless the column has a unit, sexagesimal
text accepted), a name column (name, target, target_name, source) and an optional radius column;
any other file is one target per line: ``NAME``, ``RA DEC`` or ``NAME RA DEC`` ('#' comments).
Positions become ``INTERSECTS(CIRCLE(...), s_region) = 1`` ORed in batches of ``BATCH``, so 1000
positions cost ceil(1000 / BATCH) TAP queries. A name without a position is resolved by astropy
(Sesame); when no resolver answers it is matched to ObsCore ``target_name`` (any case) instead.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArchiveUnreachable, NotFoundError, UsageError
from .tap import _angle, quote

log = logging.getLogger("almadeliver.archive")

BATCH = 250
_RA = ("ra", "s_ra", "raj2000", "ra_deg", "ra_icrs", "_raj2000")
_DEC = ("dec", "s_dec", "dej2000", "dec_deg", "de_icrs", "decj2000", "_dej2000", "de")
_NAME = ("name", "target", "target_name", "source", "object", "id", "main_id")
_RADIUS = ("radius", "r", "radius_deg")


@dataclass(frozen=True)
class Target:
    """One entry of a targets list."""

    name: str
    ra: float | None        # deg ICRS; None: match by name
    dec: float | None       # deg
    radius: float           # deg


def _column(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def _deg(value, unit, what: str, hours_if_text: bool) -> float:
    from astropy import units as u

    if unit is not None and str(unit) not in ("", "None"):
        try:
            return float((float(value) * u.Unit(unit)).to(u.deg).value)
        except (ValueError, TypeError):
            pass
    return float(_angle(str(value).strip(), what, u.deg, u.hourangle if hours_if_text else u.deg).deg)


def read_targets(path: Path, radius_deg: float) -> list[Target]:
    """The targets in ``path`` (see the module doc for the forms read).

    Parameters
    ----------
    path : Path
        CSV, ECSV or VOTable (by suffix), else one target per line.
    radius_deg : float
        Search radius for entries without a radius column, degrees.

    Raises
    ------
    UsageError
        The file is missing, empty, or an entry is neither a name nor a position.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"targets file {path} does not exist", "give a CSV, ECSV, VOTable or text file")
    suffix = path.suffix.lower()
    fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".xml": "votable", ".vot": "votable",
           ".votable": "votable", ".fits": "fits"}.get(suffix)
    targets = _from_table(path, fmt, radius_deg) if fmt else _from_lines(path, radius_deg)
    if not targets:
        raise UsageError(f"targets file {path} lists no target", "one name or 'RA DEC' per line, or a table")
    return targets


def _from_table(path: Path, fmt: str, radius_deg: float) -> list[Target]:
    from astropy.table import Table

    try:
        table = Table.read(path, format=fmt)
    except Exception as exc:  # astropy raises many kinds for a malformed file
        raise UsageError(f"cannot read {path} as {fmt}: {exc}", "check the file, or give one target per line") from exc
    ra, dec = _column(table.colnames, _RA), _column(table.colnames, _DEC)
    name, rad = _column(table.colnames, _NAME), _column(table.colnames, _RADIUS)
    if not (ra and dec) and not name:
        raise UsageError(f"{path} has neither RA/Dec columns nor a name column (columns: {', '.join(table.colnames)})",
                         "name them ra and dec (degrees) or name")
    out = []
    for i, row in enumerate(table):
        label = str(row[name]).strip() if name else f"target{i + 1}"
        if ra and dec and not (np.ma.is_masked(row[ra]) or np.ma.is_masked(row[dec])):
            r = radius_deg if not rad or np.ma.is_masked(row[rad]) else _deg(row[rad], table[rad].unit, "radius", False)
            out.append(Target(label, _deg(row[ra], table[ra].unit, "ra", True) % 360.0,
                              _deg(row[dec], table[dec].unit, "dec", False), r))
        else:
            out.append(Target(label, None, None, radius_deg))
    return out


def _from_lines(path: Path, radius_deg: float) -> list[Target]:
    from astropy import units as u

    out = []
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        words = line.split()
        if len(words) >= 2:
            try:
                ra = float(_angle(words[-2], "ra", u.deg, u.hourangle).deg) % 360.0
                dec = float(_angle(words[-1], "dec", u.deg, u.deg).deg)
            except UsageError:
                ra = dec = None
            if ra is not None:
                if not -90 <= dec <= 90:
                    raise UsageError(f"{path}:{n}: dec {dec} is not on the sky", "dec in [-90, 90] degrees")
                out.append(Target(" ".join(words[:-2]) or f"{words[-2]} {words[-1]}", ra, dec, radius_deg))
                continue
        out.append(Target(line, None, None, radius_deg))
    return out


def resolve_names(targets: list[Target]) -> list[Target]:
    """Give names without positions a position from astropy's resolver; keep them as names
    (matched to ``target_name``) when no resolver answers."""
    from .tap import resolve_target

    out = []
    for t in targets:
        if t.ra is not None:
            out.append(t)
            continue
        try:
            c = resolve_target(t.name, f"{t.radius}deg")
            out.append(Target(t.name, c.ra, c.dec, t.radius))
        except (ArchiveUnreachable, NotFoundError) as exc:
            log.warning("%s: %s; matching it to ObsCore target_name instead", t.name, exc.message)
            out.append(t)
    return out


def batch_conditions(targets: list[Target], batch: int = BATCH) -> list[str]:
    """ADQL conditions, each ORing up to ``batch`` targets (positions as circles on s_region,
    names as ``LOWER(target_name) IN (...)``)."""
    out = []
    for start in range(0, len(targets), batch):
        part = targets[start:start + batch]
        ors = [f"INTERSECTS(CIRCLE('ICRS', {t.ra!r}, {t.dec!r}, {t.radius!r}), s_region) = 1"
               for t in part if t.ra is not None]
        names = sorted({t.name.lower() for t in part if t.ra is None})
        if names:
            ors.append(f"LOWER(target_name) IN ({', '.join(quote(n) for n in names)})")
        out.append("(" + " OR ".join(ors) + ")")
    return out


def covered_targets(rows: list[dict], targets: list[Target]) -> list[list[str]]:
    """Per row, the names of the targets its ``s_region`` reaches (a circle of the target's radius
    meeting the region; by name for targets without a position)."""
    from ..sim.regions import Circle, RegionError, parse_stcs

    positioned = [t for t in targets if t.ra is not None]
    ra = np.radians([t.ra for t in positioned]) if positioned else np.zeros(0)
    dec = np.radians([t.dec for t in positioned]) if positioned else np.zeros(0)
    radius = np.array([t.radius for t in positioned])
    by_name: dict[str, list[str]] = {}
    for t in targets:
        if t.ra is None:
            by_name.setdefault(t.name.lower(), []).append(t.name)
    cache: dict[tuple, list[str]] = {}
    out = []
    for row in rows:
        region = str(row.get("s_region") or "")
        key = (region, row.get("s_ra"), row.get("s_dec"), row.get("s_fov"))
        if key not in cache:
            hits: list[str] = []
            if positioned and row.get("s_ra") is not None and row.get("s_dec") is not None:
                r0, d0 = math.radians(float(row["s_ra"])), math.radians(float(row["s_dec"]))
                h = np.sin((dec - d0) / 2) ** 2 + np.cos(d0) * np.cos(dec) * np.sin((ra - r0) / 2) ** 2
                sep = np.degrees(2 * np.arcsin(np.minimum(1.0, np.sqrt(h))))
                fov = float(row.get("s_fov") or 0.0)
                try:
                    shape = parse_stcs(region) if region else None
                except RegionError:
                    shape = None
                # prefilter: the region lies within s_fov (its bounding diameter) of s_ra/s_dec
                reach = fov if fov > 0 else 2.0
                for k in np.nonzero(sep <= radius + max(reach, 1e-6) + 1e-9)[0]:
                    t = positioned[int(k)]
                    if shape is None or shape.intersects(Circle(t.ra, t.dec, t.radius)):
                        hits.append(t.name)
            cache[key] = hits
        names = cache[key] + by_name.get(str(row.get("target_name") or "").lower(), [])
        out.append(list(dict.fromkeys(names)))
    return out
