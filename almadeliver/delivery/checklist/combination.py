"""Checklist items on Combination/: the .fluxscale copies, allFluxes.txt, the EBs' separation, calibrated.ms."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .. import visibilities as vis
from .eb import _readable_ms
from .thresholds import ALLFLUXES_FAIL, SEPARATION_WARN_DAYS

if TYPE_CHECKING:
    from ..layout import StaffArea
    from .thresholds import _Checker

_FLUXSCALE = re.compile(r"Flux density for (?P<field>\S+) in SpW=(?P<spw>\d+)(?: \(freq=(?P<freq>[0-9.eE+-]+) Hz\))?"
                        r" is: (?P<flux>[0-9.eE+-]+) \+/- (?P<err>[0-9.eE+-]+)")
_ALLFLUXES = re.compile(r'^\s*"(?P<field>[^"]+)"\s+(?P<spw>\d+)\s+(?P<freq>[0-9.eE+-]+)\s+(?P<flux>[0-9.eE+-]+)\s+'
                        r'(?P<mean>[0-9.eE+-]+)\s+(?P<date>\S+)\s+(?P<vis>\S+)\s*$', re.MULTILINE)


# -- Combination ---------------------------------------------------------------------------------------
def read_fluxscale(path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """``(field, spw) -> (flux, error)`` in Jy from a fluxscale listfile (``<EB>.ms.split.fluxscale``).

    Parameters
    ----------
    path : Path
        The fluxscale listfile.

    Returns
    -------
    dict[tuple[str, int], tuple[float, float]]
        ``(field, spw) -> (flux, error)``, both in Jy.
    """
    return {(m.group("field"), int(m.group("spw"))): (float(m.group("flux")), float(m.group("err")))
            for m in _FLUXSCALE.finditer(path.read_text(errors="replace"))}


def read_allfluxes(path: Path) -> list[dict]:
    """allFluxes.txt lines: ``"field" spw freq(GHz) flux(this EB) mean-flux date vis``.

    Parameters
    ----------
    path : Path
        The allFluxes.txt file.

    Returns
    -------
    list[dict]
        One dict per line: field, spw, freq_ghz (GHz), flux_jy and mean_jy (Jy), date, eb.
    """
    return [{"field": m.group("field"), "spw": int(m.group("spw")), "freq_ghz": float(m.group("freq")),
             "flux_jy": float(m.group("flux")), "mean_jy": float(m.group("mean")), "date": m.group("date"),
             "eb": Path(m.group("vis")).name.split(".ms")[0]}
            for m in _ALLFLUXES.finditer(path.read_text(errors="replace"))]


def check_fluxscale_copies(check: "_Checker", area: "StaffArea") -> dict[str, Path]:
    """Item: each EB's ``.fluxscale`` table is copied into Combination/calibrated; returns EB -> table.

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.

    Returns
    -------
    dict[str, Path]
        EB (``uid___...``) -> its ``.ms.split.fluxscale`` in Combination/calibrated.
    """
    found = {}
    for eb in area.ebs:
        if eb.uid is None:
            continue
        path = area.combination / f"{eb.uid.disk}.ms.split.fluxscale"
        if path.exists():
            found[eb.uid.disk] = path
    missing = [eb.uid.disk for eb in area.ebs if eb.uid is not None and eb.uid.disk not in found]
    numbers = {"copied": sorted(found), "missing": missing}
    if missing:
        check.fail("staff.combination.fluxscale", area.combination,
                   f"{len(missing)} of {len(area.ebs)} .ms.split.fluxscale not copied: {', '.join(missing)}",
                   "copy each uid*.ms.split.fluxscale into Combination/calibrated", numbers)
    else:
        check.ok("staff.combination.fluxscale", area.combination, f"{len(found)} .ms.split.fluxscale copied", numbers)
    return found


def check_allfluxes(check: "_Checker", area: "StaffArea", fluxscales: dict[str, Path]) -> None:
    """Item: ``allFluxes.txt`` exists and agrees with the ``.fluxscale`` tables' fluxes.

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    fluxscales : dict[str, Path]
        EB -> its ``.fluxscale`` copy (``check_fluxscale_copies``).
    """
    path = area.combination / "allFluxes.txt"
    if not path.is_file():
        check.fail("staff.combination.allfluxes", path, "missing",
                   "make it with es.generateReducScript([...split.cal], step='fluxcal')")
        return
    rows = read_allfluxes(path)
    if not rows:
        check.fail("staff.combination.allfluxes", path, "no line of the form \"field\" spw freq flux mean date vis",
                   "make it again with es.generateReducScript(..., step='fluxcal')")
        return
    sources = dict(fluxscales)
    for eb in area.ebs:          # not copied yet: the one the calibration made in the EB folder
        if eb.uid is not None and eb.uid.disk not in sources and (eb.folder / f"{eb.uid.disk}.ms.split.fluxscale").is_file():
            sources[eb.uid.disk] = eb.folder / f"{eb.uid.disk}.ms.split.fluxscale"
    scales = {eb: read_fluxscale(p) for eb, p in sources.items() if p.is_file()}
    compared, worst, unmatched = [], 0.0, []
    for r in rows:
        ref = scales.get(r["eb"], {}).get((r["field"], r["spw"]))
        if ref is None:
            unmatched.append(f"{r['eb']} {r['field']} spw {r['spw']}")
            continue
        rel = abs(r["flux_jy"] - ref[0]) / ref[0] if ref[0] else math.inf
        compared.append({**r, "fluxscale_jy": ref[0], "relative_difference": rel})
        worst = max(worst, rel)
    numbers = {"lines": len(rows), "compared": compared, "unmatched": unmatched, "max_relative_difference": worst}
    if unmatched or worst > ALLFLUXES_FAIL:
        bad = max(compared, key=lambda c: c["relative_difference"]) if compared else None
        detail = (f"{bad['eb']} {bad['field']} spw {bad['spw']}: {bad['flux_jy']:g} Jy, .fluxscale {bad['fluxscale_jy']:g} Jy "
                  f"({worst:.0%} off)") if bad and worst > ALLFLUXES_FAIL else f"not in any .fluxscale: {', '.join(unmatched)}"
        check.fail("staff.combination.allfluxes", path, detail,
                   "put the .fluxscale fluxes into allFluxes.txt and regenerate scriptForFluxCalibration.py", numbers)
    else:
        check.ok("staff.combination.allfluxes", path, f"{len(rows)} lines agree with the .fluxscale files "
                 f"(largest difference {worst:.1%})", numbers)


def check_separation(check: "_Checker", area: "StaffArea", cals: dict[str, "vis.MsSummary"]) -> None:
    """How far apart the EBs were observed (helps decide whether to scale fluxes to a mean).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    cals : dict[str, vis.MsSummary]
        EB -> the summary of its ``.ms.split.cal`` (start times).
    """
    if len(cals) < 2:
        return
    starts = sorted((c.start_s, eb) for eb, c in cals.items())
    gaps = [(b[0] - a[0]) / 86400.0 for a, b in zip(starts, starts[1:])]
    span = (starts[-1][0] - starts[0][0]) / 86400.0
    numbers = {"starts": {eb: cals[eb].start_iso for _, eb in starts}, "max_gap_days": max(gaps), "span_days": span}
    msg = f"{len(cals)} EBs over {span:.2f} days (largest gap {max(gaps):.2f} days)"
    if span > SEPARATION_WARN_DAYS:
        check.warn("staff.combination.separation", area.combination, msg,
                   "EBs days apart: the phase calibrator flux may have changed; think twice before scaling "
                   "the fluxes to allFluxes.txt's mean (delete setjy/gaincal/applycal, keep concat)", numbers)
    else:
        check.ok("staff.combination.separation", area.combination, msg + ": fluxes may be scaled to a mean", numbers)


def check_concat(check: "_Checker", area: "StaffArea", cals: dict[str, "vis.MsSummary"]) -> "vis.MsSummary | None":
    """calibrated.ms after concat: as many fields and spws as the EBs have (more: dirtol, Doppler setting).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    cals : dict[str, vis.MsSummary]
        EB -> the summary of its ``.ms.split.cal`` (fields and spws).

    Returns
    -------
    vis.MsSummary | None
        The summary of calibrated.ms, or None when it is missing or unreadable.
    """
    path = area.combination / "calibrated.ms"
    if not path.is_dir():
        check.fail("staff.combination.concat", path, "missing", "run scriptForFluxCalibration.py (concat)")
        return None
    combined = _readable_ms(check, "staff.combination.concat", path, "run the concat again")
    if combined is None:
        return None
    fields = sorted({f for c in cals.values() for f in c.fields})
    nspw = max((len(c.spws) for c in cals.values()), default=0)
    numbers = {"fields": len(combined.fields), "expected_fields": len(fields), "field_names": combined.fields,
               "spws": len(combined.spws), "expected_spws": nspw}
    problems, hints = [], []
    if len(combined.fields) > len(fields):
        problems.append(f"{len(combined.fields)} fields, the EBs have {len(fields)}")
        hints.append("add dirtol to the concat in scriptForFluxCalibration.py")
    if len(combined.spws) > nspw:
        problems.append(f"{len(combined.spws)} spws, each EB has {nspw} (different Doppler settings per EB)")
        hints.append("image with the spws of each EB together (see the imaging instructions)")
    if problems:
        check.fail("staff.combination.concat", path, "; ".join(problems), "; ".join(hints), numbers)
    else:
        check.ok("staff.combination.concat", path, f"{len(combined.fields)} fields, {len(combined.spws)} spws", numbers)
    return combined
