"""Checklist items on each EB folder: qa2 report, the .ms.split.cal, flagging, calibrators, setjy fluxes."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import TreeError
from .. import visibilities as vis
from .scripts import setjy_fluxes
from .thresholds import AMP_FAIL, AMP_WARN, FLAG_FAIL, FLAG_WARN, PHASE_FAIL_DEG, PHASE_WARN_DEG, SETJY_FAIL, SETJY_WARN

if TYPE_CHECKING:
    from ..layout import StaffArea, StaffEb
    from .thresholds import _Checker

_QA2_PART = re.compile(r"qa2_part(\d)\.png$")


# -- EB folder -----------------------------------------------------------------------------------------
def check_qa2(check: "_Checker", eb: "StaffEb") -> None:
    """Three ``qa2_part`` PNGs and a textfile (es.generateQA2Report; seed 002 section 4.5).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    eb : StaffEb
        One EB folder of the area.
    """
    qa2 = eb.folder / "qa2"
    files = [p.name for p in qa2.rglob("*") if p.is_file()] if qa2.is_dir() else []
    parts = sorted({int(m.group(1)) for n in files if (m := _QA2_PART.search(n))})
    text = [n for n in files if n.endswith("textfile.txt")]
    numbers = {"files": len(files), "qa2_parts": parts, "textfiles": len(text)}
    missing = [f"qa2_part{k}.png" for k in (1, 2, 3) if k not in parts] + ([] if text else ["textfile.txt"])
    if missing:
        check.fail("staff.eb.qa2", qa2, f"missing {', '.join(missing)} ({len(files)} files there)",
                   "run es.generateQA2Report in the EB folder", numbers)
    else:
        check.ok("staff.eb.qa2", qa2, f"qa2_part1-3 PNGs and {text[0]}", numbers)


def split_cal(area: "StaffArea", eb: "StaffEb") -> Path | None:
    """``<EB>.ms.split.cal`` in the EB folder or in Combination/calibrated.

    Parameters
    ----------
    area : StaffArea
        The staff reduction area of the MOUS.
    eb : StaffEb
        One EB folder of the area.

    Returns
    -------
    Path | None
        The ``.ms.split.cal`` folder, or None when there is none.
    """
    for folder in (eb.folder, area.combination):
        path = folder / f"{eb.uid.disk}.ms.split.cal"
        if path.is_dir():
            return path
    return None


def _readable_ms(check: "_Checker", item: str, path: Path, fix: str) -> "vis.MsSummary | None":
    """The summary of the MS at ``path``, or None after failing ``item`` when it does not open."""
    try:
        return vis.ms_summary(path)
    except (TreeError, RuntimeError) as exc:
        check.fail(item, path, f"not a readable MS ({exc})", fix)
        return None


def check_split_cal(check: "_Checker", area: "StaffArea", eb: "StaffEb") -> "vis.MsSummary | None":
    """Item: the EB's ``.ms.split.cal`` exists and opens; returns its summary (None when absent).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    eb : StaffEb
        One EB folder of the area.

    Returns
    -------
    vis.MsSummary | None
        The MS's summary, or None when it is absent or does not open.
    """
    path = split_cal(area, eb)
    if path is None:
        check.fail("staff.eb.split-cal", eb.folder, f"no {eb.uid.disk}.ms.split.cal here nor in Combination/calibrated",
                   "run the calibration script's last step (split of the corrected data)",
                   {"searched": [eb.folder.name, "Combination/calibrated"]})
        return None
    summary = _readable_ms(check, "staff.eb.split-cal", path, "run the split step again")
    if summary is None:
        return None
    check.ok("staff.eb.split-cal", path, f"{summary.nrows} rows, {len(summary.fields)} fields, {len(summary.spws)} spws",
             {"rows": summary.nrows, "fields": summary.fields, "spws": [s.spw for s in summary.spws]})
    return summary


def check_flagging(check: "_Checker", eb: "StaffEb", cal: "vis.MsSummary | None") -> dict:
    """Flagged fraction per stage and spw: the flag versions of the split MS (per spw, cross-correlations,
    read with the rows of ``.ms.split.cal``) and of the imported MS (overall), then the final flags of
    ``.ms.split.cal``. Judged on what is per spw; overall fractions are reported only.

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    eb : StaffEb
        One EB folder of the area.
    cal : vis.MsSummary | None
        The summary of the EB's ``.ms.split.cal`` (None when absent).

    Returns
    -------
    dict
        Stage -> spw (or ``all``) -> flagged fraction (0-1).
    """
    stages: dict[str, dict[str, float]] = {}
    for fv in sorted(eb.folder.glob("*.flagversions")):
        matched = cal if cal is not None and fv.name == f"{eb.uid.disk}.ms.split.flagversions" else None
        for version, fractions in vis.flag_fractions(fv, matched).items():
            stages[f"{fv.name[:-len('.flagversions')]}:{version}"] = fractions
    if cal is not None:
        stages["split.cal"] = vis.ms_flag_fractions(cal)
    if not stages:
        check.fail("staff.eb.flagging", eb.folder, "no flag versions (<vis>.flagversions) and no .ms.split.cal",
                   "keep the flag versions flagmanager saved during the calibration")
        return stages
    # judged: the stages read per spw over the cross-correlations (the overall fractions of a flag
    # version without an MS of the same rows include the autocorrelations, flagged a priori)
    judged = {s: f for s, f in stages.items() if "all" not in f}
    worst_stage, worst_spw, worst = max(((s, spw, x) for s, f in judged.items() for spw, x in f.items()),
                                        key=lambda t: t[2], default=("", "", 0.0))
    numbers = {"stages": stages, "max_fraction": worst, "max_at": f"{worst_stage} spw {worst_spw}"}
    msg = (f"largest flagged fraction {worst:.1%} ({worst_stage}, spw {worst_spw}); {len(stages)} stages"
           if judged else f"{len(stages)} stages, overall fractions only (no MS with their rows to tell the spws apart)")
    if worst > FLAG_FAIL:
        check.fail("staff.eb.flagging", eb.folder, msg, "find why so much is flagged (getFlagStatistics)", numbers)
    elif worst > FLAG_WARN:
        check.warn("staff.eb.flagging", eb.folder, msg, "say in the README why so much is flagged", numbers)
    else:
        check.ok("staff.eb.flagging", eb.folder, msg, numbers)
    return stages


def check_calibrators(check: "_Checker", cal: "vis.MsSummary") -> list["vis.CalibratorSeries"]:
    """Amplitude and phase scatter of each calibrator and spw on ``.ms.split.cal`` (flat = good).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    cal : vis.MsSummary
        The summary of the EB's ``.ms.split.cal``.

    Returns
    -------
    list[vis.CalibratorSeries]
        The amplitude and phase series of each calibrator and spw.
    """
    series = vis.calibrator_series(cal)
    numbers = {f"{s.field} spw {s.spw}": s.numbers() for s in series}
    if not series:
        check.fail("staff.eb.calibrators", cal.path, "no calibrator data (no field with a CALIBRATE_* intent)",
                   "keep the calibrators in the split of the corrected data", numbers)
        return series

    def badness(n: dict) -> float:
        return max(max(n["phase_rms_time_deg"], n["phase_rms_freq_deg"]) / PHASE_FAIL_DEG,
                   max(n["amp_scatter_time"], n["amp_scatter_freq"]) / AMP_FAIL)

    key, worst = max(numbers.items(), key=lambda kv: badness(kv[1]))
    msg = (f"worst {key}: phase rms {max(worst['phase_rms_time_deg'], worst['phase_rms_freq_deg']):.2f} deg, "
           f"amplitude scatter {max(worst['amp_scatter_time'], worst['amp_scatter_freq']):.1%} "
           f"({len(series)} calibrator/spw pairs)")
    b = badness(worst)
    if b > 1:
        check.fail("staff.eb.calibrators", cal.path, msg, "the corrected calibrator data are not flat: "
                   "look at them with plotms and fix the calibration", numbers)
    elif b > min(PHASE_WARN_DEG / PHASE_FAIL_DEG, AMP_WARN / AMP_FAIL):
        check.warn("staff.eb.calibrators", cal.path, msg, "look at the calibrators with plotms", numbers)
    else:
        check.ok("staff.eb.calibrators", cal.path, msg, numbers)
    return series


def read_flux_csv(path: Path) -> list[dict]:
    """The pipeline's flux.csv (ms, field, spw, I, Q, U, V, spix, ...): rows with field and I (Jy).

    Parameters
    ----------
    path : Path
        The flux.csv file.

    Returns
    -------
    list[dict]
        One dict per row: field, spw and flux_jy (Stokes I, Jy).
    """
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            low = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                rows.append({"field": low.get("field", ""), "spw": low.get("spw", ""), "flux_jy": float(low["i"])})
            except (KeyError, ValueError):
                continue
    return rows


def check_setjy(check: "_Checker", area: "StaffArea") -> None:
    """setjy fluxes of each EB's script against the other EBs of the MOUS and any delivered flux.csv.

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    """
    per_eb: dict[str, list[dict]] = {}
    for eb in area.ebs:
        if eb.uid is not None and eb.script is not None and eb.script.is_file():
            per_eb[eb.uid.disk] = setjy_fluxes(eb.script.read_text(errors="replace"))
    csv_rows = []
    for path in [p for eb in area.ebs for p in eb.folder.glob("*flux.csv")] + list(area.combination.glob("*flux.csv")):
        csv_rows += read_flux_csv(path)
    for eb in area.ebs:
        if eb.uid is None or eb.uid.disk not in per_eb:
            continue
        mine = per_eb[eb.uid.disk]
        if not mine:
            check.ok("staff.eb.setjy", eb.script, "no setjy with a flux density (model from a standard)",
                     {"setjy": []})
            continue
        worst, against = 0.0, {}
        for call in mine:
            others = [c["flux_jy"] for e, calls in per_eb.items() if e != eb.uid.disk
                      for c in calls if c["field"] == call["field"]]
            catalogue = [r["flux_jy"] for r in csv_rows if r["field"] == call["field"]]
            for label, values in (("other EBs", others), ("flux.csv", catalogue)):
                if values:
                    ref = float(np.median(values))
                    rel = abs(call["flux_jy"] - ref) / ref if ref else math.inf
                    against[f"{call['field']} vs {label}"] = {"setjy_jy": call["flux_jy"], "reference_jy": ref,
                                                              "relative_difference": rel}
                    worst = max(worst, rel)
        numbers = {"setjy": mine, "comparisons": against, "max_relative_difference": worst}
        msg = ", ".join(f"{c['field']} {c['flux_jy']:g} Jy (line {c['line']})" for c in mine)
        if not against:
            check.ok("staff.eb.setjy", eb.script, f"{msg}; no other EB nor flux.csv to compare with", numbers)
        elif worst > SETJY_FAIL:
            check.fail("staff.eb.setjy", eb.script, f"{msg}: differs by {worst:.0%} from "
                       + ", ".join(f"{k} {v['reference_jy']:g} Jy" for k, v in against.items()),
                       "check the flux with au.getALMAFluxForMS and fix setjy", numbers)
        elif worst > SETJY_WARN:
            check.warn("staff.eb.setjy", eb.script, f"{msg}: differs by {worst:.0%} from the other EBs/flux.csv",
                       "check the flux with au.getALMAFluxForMS", numbers)
        else:
            check.ok("staff.eb.setjy", eb.script, f"{msg}; within {worst:.1%} of the other EBs/flux.csv", numbers)
