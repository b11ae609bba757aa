"""The staff checklist items that read numbers: scripts, logs, flag versions, calibrated MSs, fluxes, images.

Each function adds one finding per item to the checker (staff.py's ``_Checker``): pass, warn or FAIL,
the path it looked at, and in ``numbers`` the figures behind the verdict. Where each rule comes from:

- seed 001 (ALMA staff manual, manual data reduction): step 0 removes ``<EB>.ms.flagversions``
  before importasdm; check the CASA log for errors and warnings; setjy fluxes sensible; flagging
  rate per stage (getFlagStatistics); corrected amplitude and phase flat on the calibrators in
  ``<EB>.ms.split.cal``; ``.ms.split.cal`` and ``.ms.split.fluxscale`` copied into
  ``Combination/calibrated``; allFluxes.txt right against the ``.fluxscale`` files; EBs days apart
  (do not scale fluxes); fields and spws of ``calibrated.ms`` after concat (dirtol, Doppler
  setting); the same CASA version for calibration and imaging; sensitivity and resolution against
  the request; a qa2 directory per EB.
- seed 002 (ALMA QA2 Data Products): per EB three ``qa2_part`` PNGs and a textfile; per spw one
  cube, per sideband one continuum image; images conform to FITS; masks shipped as CASA images
  when the script cannot give them analytically.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import TreeError
from ..ids import Uid
from . import visibilities as vis

if TYPE_CHECKING:
    from .layout import StaffArea, StaffEb


class _Checker(Protocol):
    """What an item adds its verdict to (staff.py's checker): pass, warn or FAIL, with its numbers."""

    def ok(self, check: str, path: Path | str, message: str, numbers: dict | None = None) -> None: ...

    def warn(self, check: str, path: Path | str, message: str, hint: str, numbers: dict | None = None) -> None: ...

    def fail(self, check: str, path: Path | str, message: str, hint: str, numbers: dict | None = None) -> None: ...

# thresholds of the verdicts (warn, FAIL)
FLAG_WARN, FLAG_FAIL = 0.3, 0.5                 # flagged fraction of a spw at a stage
PHASE_WARN_DEG, PHASE_FAIL_DEG = 10.0, 20.0     # phase rms of a calibrator (time or frequency)
AMP_WARN, AMP_FAIL = 0.1, 0.2                   # amplitude scatter / mean of a calibrator
SETJY_WARN, SETJY_FAIL = 0.1, 0.2               # setjy flux against other EBs / flux.csv
ALLFLUXES_FAIL = 0.05                           # allFluxes.txt against the .fluxscale value
# EBs further apart may see another phase calibrator flux: seed 002 does the combined flux calibration for
# EBs "within one day from each other", seed 001 warns of EBs "more than a few days" apart; EBs on
# consecutive days (up to 2 days between their starts) pass
SEPARATION_WARN_DAYS = 2.0
# achieved / requested rms and resolution: a warning, never a failure (the manual: note on the ticket
# whether the requests are reached; a multi-array SG's MOUS cannot reach them alone; QA2 semipass data
# are delivered too)
RMS_WARN = 1.1
BEAM_WARN = 1.2

_WARN_LINE = re.compile(r"^\S+ \S+\s+WARN\s+(?P<origin>\S*)\s*(?P<text>.*)$", re.MULTILINE)
# "CASA Version 4.4.0-REL (r33623)", "CASA Version CASA 6.5.4-9", "CASA Version MODULAR 6.7.0.31"
_CASA_VERSION = re.compile(r"CASA Version (?:[A-Z]+ )?(?P<v>\d+\.\d+\.\d+)")
# WARN lines CASA writes in a sound reduction, with why they are harmless; every other WARN is reported.
KNOWN_WARNINGS = {
    "PSF is blank for": "tclean: channels whose data are all flagged (e.g. the flagged edge channels)",
    "No rest frequency info, using the center": "tclean: a cube of a continuum spw, imaged without restfreq",
    "Restoring with an empty model image": "tclean: a cube made with niter=0",
    "State Expression: No match found for": "flagdata: an intent the a priori flagging names is not in this EB",
}
_FLUXSCALE = re.compile(r"Flux density for (?P<field>\S+) in SpW=(?P<spw>\d+)(?: \(freq=(?P<freq>[0-9.eE+-]+) Hz\))?"
                        r" is: (?P<flux>[0-9.eE+-]+) \+/- (?P<err>[0-9.eE+-]+)")
_ALLFLUXES = re.compile(r'^\s*"(?P<field>[^"]+)"\s+(?P<spw>\d+)\s+(?P<freq>[0-9.eE+-]+)\s+(?P<flux>[0-9.eE+-]+)\s+'
                        r'(?P<mean>[0-9.eE+-]+)\s+(?P<date>\S+)\s+(?P<vis>\S+)\s*$', re.MULTILINE)
_QA2_PART = re.compile(r"qa2_part(\d)\.png$")


# -- scripts -------------------------------------------------------------------------------------------
def _step_block(text: str, k: int) -> str | None:
    """The text of ``mystep = k``'s block (up to the next ``mystep =``)."""
    m = re.search(rf"^\s*mystep\s*=\s*{k}\s*$", text, re.MULTILINE)
    if not m:
        return None
    nxt = re.search(r"^\s*mystep\s*=\s*\d+\s*$", text[m.end():], re.MULTILINE)
    return text[m.end(): m.end() + nxt.start()] if nxt else text[m.end():]


def _string_vars(text: str) -> dict[str, str]:
    """Simple ``name = 'literal'`` assignments of a script (vis, bpcal, phasecal, ...)."""
    return {m.group(1): m.group(3) for m in re.finditer(r"^\s*(\w+)\s*=\s*(['\"])([^'\"]*)\2\s*$", text, re.MULTILINE)}


def _resolve(expr: str, names: dict[str, str]) -> str:
    """A string expression of literals, names and ``+`` (``vis + '.flagversions'``) as text."""
    out = []
    for part in expr.split("+"):
        part = part.strip()
        m = re.fullmatch(r"(['\"])(.*)\1", part)
        out.append(m.group(2) if m else names.get(part, "{" + part + "}"))
    return "".join(out)


def flagversions_removal(text: str, eb: Uid) -> tuple[bool, int | None, int | None]:
    """(whether step 0 removes ``<EB>.ms.flagversions`` before its importasdm call, the line of the
    removal, the line of importasdm). Removal forms: ``os.system('rm -rf <EB>.ms.flagversions')``
    (the manual's), with the name built from variables (``'rm -rf ' + vis + '.flagversions'``), or
    ``shutil.rmtree(...)``; a glob ``<EB>.ms*`` counts too."""
    block_start = re.search(r"^\s*mystep\s*=\s*0\s*$", text, re.MULTILINE)
    block = _step_block(text, 0)
    if block is None or block_start is None:
        return False, None, None
    offset = text.count("\n", 0, block_start.end()) + 1
    names = _string_vars(text)
    target = f"{eb.disk}.ms.flagversions"
    removal = importing = None
    for i, line in enumerate(block.splitlines()):
        code = line.split("#", 1)[0]
        if importing is None and re.search(r"\bimportasdm\s*\(", code):
            importing = offset + i
        m = re.search(r"os\.system\((?P<e>.*)\)|shutil\.rmtree\((?P<r>[^,)]*)", code)
        if m and removal is None and importing is None:
            named = _resolve(m.group("e") or m.group("r"), names)
            if "rm " in named or m.group("r"):
                words = named.replace("rm -rf", " ").replace("rm -r", " ").split()
                if any(w == target or w in (f"{eb.disk}.ms*", f"{eb.disk}*") for w in words):
                    removal = offset + i
    return removal is not None and importing is not None, removal, importing


def setjy_fluxes(text: str) -> list[dict]:
    """The setjy calls of a script that set a flux density: ``[{field, flux_jy, line}]``."""
    names = _string_vars(text)
    out = []
    for m in re.finditer(r"\bsetjy\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        call = text[m.end(): i - 1]
        flux = re.search(r"fluxdensity\s*=\s*\[\s*([-0-9.eE+]+)", call)
        fld = re.search(r"\bfield\s*=\s*([^,\n]+)", call)
        if flux and not text[:m.start()].rsplit("\n", 1)[-1].lstrip().startswith("#"):
            out.append({"field": _resolve(fld.group(1), names) if fld else "", "flux_jy": float(flux.group(1)),
                        "line": text.count("\n", 0, m.start()) + 1})
    return out


# -- logs ----------------------------------------------------------------------------------------------
def log_warnings(log: Path) -> list[str]:
    """The WARN lines of a CASA log (origin and text)."""
    return [f"{m.group('origin')} {m.group('text')}".strip() for m in _WARN_LINE.finditer(log.read_text(errors="replace"))]


def log_casa_version(log: Path) -> str | None:
    """The CASA version a log names (``CASA Version CASA 6.7.0-31`` -> ``6.7.0``)."""
    m = _CASA_VERSION.search(log.read_text(errors="replace"))
    return m.group("v") if m else None


def check_log_warnings(check: "_Checker", item: str, log: Path) -> None:
    """The log's WARN lines: pass when there are none or all are of the harmless kinds in
    KNOWN_WARNINGS, warn otherwise (the manual: check for error/warning messages)."""
    warnings = log_warnings(log)
    known = {k: sum(k in w for w in warnings) for k in KNOWN_WARNINGS}
    other = [w for w in warnings if not any(k in w for k in KNOWN_WARNINGS)]
    numbers = {"warn_lines": len(warnings), "known": {k: n for k, n in known.items() if n}, "other": len(other),
               "first": other[:5]}
    if other:
        check.warn(item, log, f"{len(other)} WARN line(s) to read, first: {other[0][:160]}",
                   "read them in the log and say in the README what they mean for the data", numbers)
    elif warnings:
        check.ok(item, log, f"{len(warnings)} WARN line(s), all of known harmless kinds", numbers)
    else:
        check.ok(item, log, "no WARN line", numbers)


def check_casa_versions(check: "_Checker", logs: dict[str, Path]) -> None:
    """One CASA version in every log (calibration, combination, imaging)."""
    versions = {name: log_casa_version(log) for name, log in logs.items()}
    numbers = {"versions": versions}
    named = {v for v in versions.values() if v}
    unnamed = [name for name, v in versions.items() if not v]
    if len(named) > 1:
        check.fail("staff.casa-version", ".", "different CASA versions: " +
                   ", ".join(f"{n} {v}" for n, v in versions.items()),
                   "calibrate and image with the same CASA version (staff manual)", numbers)
    elif not named:
        check.fail("staff.casa-version", ".", "no log names its CASA version",
                   "keep the whole CASA log, with its 'CASA Version' line", numbers)
    elif unnamed:
        check.warn("staff.casa-version", ".", f"CASA {named.pop()}; no version line in {', '.join(unnamed)}",
                   "keep the whole CASA log, with its 'CASA Version' line", numbers)
    else:
        check.ok("staff.casa-version", ".", f"CASA {named.pop()} in all {len(versions)} logs", numbers)


# -- EB folder -----------------------------------------------------------------------------------------
def check_qa2(check: "_Checker", eb: "StaffEb") -> None:
    """Three ``qa2_part`` PNGs and a textfile (es.generateQA2Report; seed 002 section 4.5)."""
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
    """``<EB>.ms.split.cal`` in the EB folder or in Combination/calibrated."""
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
    """Item: the EB's ``.ms.split.cal`` exists and opens; returns its summary (None when absent)."""
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
    ``.ms.split.cal``. Judged on what is per spw; overall fractions are reported only."""
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
    """Amplitude and phase scatter of each calibrator and spw on ``.ms.split.cal`` (flat = good)."""
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
    """The pipeline's flux.csv (ms, field, spw, I, Q, U, V, spix, ...): rows with field and I (Jy)."""
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
    """setjy fluxes of each EB's script against the other EBs of the MOUS and any delivered flux.csv."""
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


# -- Combination ---------------------------------------------------------------------------------------
def read_fluxscale(path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """``(field, spw) -> (flux, error)`` in Jy from a fluxscale listfile (``<EB>.ms.split.fluxscale``)."""
    return {(m.group("field"), int(m.group("spw"))): (float(m.group("flux")), float(m.group("err")))
            for m in _FLUXSCALE.finditer(path.read_text(errors="replace"))}


def read_allfluxes(path: Path) -> list[dict]:
    """allFluxes.txt lines: ``"field" spw freq(GHz) flux(this EB) mean-flux date vis``."""
    return [{"field": m.group("field"), "spw": int(m.group("spw")), "freq_ghz": float(m.group("freq")),
             "flux_jy": float(m.group("flux")), "mean_jy": float(m.group("mean")), "date": m.group("date"),
             "eb": Path(m.group("vis")).name.split(".ms")[0]}
            for m in _ALLFLUXES.finditer(path.read_text(errors="replace"))]


def check_fluxscale_copies(check: "_Checker", area: "StaffArea") -> dict[str, Path]:
    """Item: each EB's ``.fluxscale`` table is copied into Combination/calibrated; returns EB -> table."""
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
    """Item: ``allFluxes.txt`` exists and agrees with the ``.fluxscale`` tables' fluxes."""
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
    """How far apart the EBs were observed (helps decide whether to scale fluxes to a mean)."""
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
    """calibrated.ms after concat: as many fields and spws as the EBs have (more: dirtol, Doppler setting)."""
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


# -- Imaging -------------------------------------------------------------------------------------------
@dataclass
class ImageFigures:
    """What the checklist measures on one product image."""

    path: Path
    kind: str                 # "cube" or "continuum"
    low_hz: float
    high_hz: float
    nchan: int
    chan_width_hz: float
    bmaj_arcsec: float | None
    bmin_arcsec: float | None
    rms_jy: float | None      # median over channels of the robust rms where the primary beam > 0.5


def image_figures(pbcor: Path, flux: Path | None) -> ImageFigures:
    """Frequency coverage, beam and noise of a ``.pbcor.fits`` (the noise on pbcor x pb, i.e. the
    flat-noise image, where the primary beam is above 0.5)."""
    from astropy.io import fits

    with fits.open(pbcor) as hdul:
        header, data = hdul[0].header, hdul[0].data
        beams = hdul["BEAMS"].data if "BEAMS" in hdul else None
    naxis = header.get("NAXIS", 0)
    freq_axis = next((i for i in range(1, naxis + 1) if str(header.get(f"CTYPE{i}", "")).upper().startswith("FREQ")), None)
    if freq_axis:
        n = int(header[f"NAXIS{freq_axis}"])
        crval, cdelt, crpix = float(header[f"CRVAL{freq_axis}"]), float(header[f"CDELT{freq_axis}"]), float(header[f"CRPIX{freq_axis}"])
        centres = crval + (np.arange(1, n + 1) - crpix) * cdelt
        low, high = float(centres.min() - abs(cdelt) / 2), float(centres.max() + abs(cdelt) / 2)
    else:
        n, cdelt, low, high = 1, 0.0, math.nan, math.nan
    if "BMAJ" in header:
        bmaj, bmin = float(header["BMAJ"]) * 3600, float(header["BMIN"]) * 3600
    elif beams is not None and len(beams):
        bmaj, bmin = float(np.median(beams["BMAJ"])), float(np.median(beams["BMIN"]))
    else:
        bmaj = bmin = None
    rms = None
    if data is not None:
        cube = np.asarray(data, dtype=float).reshape((-1,) + data.shape[-2:])
        pb = None
        if flux is not None and flux.is_file():
            with fits.open(flux) as f:
                pb = np.asarray(f[0].data, dtype=float).reshape((-1,) + f[0].data.shape[-2:])
        per_chan = []
        for c in range(cube.shape[0]):
            plane = cube[c]
            if pb is not None:
                beam = pb[min(c, pb.shape[0] - 1)]
                plane = np.where(beam > 0.5, plane * beam, np.nan)
            values = plane[np.isfinite(plane)]
            if values.size:
                per_chan.append(1.4826 * float(np.median(np.abs(values - np.median(values)))))
        rms = float(np.median(per_chan)) if per_chan else None
    return ImageFigures(pbcor, "cube" if n > 1 else "continuum", low, high, n, abs(cdelt), bmaj, bmin, rms)


def imaged_ms(area: "StaffArea") -> Path | None:
    """The MS the images were made from: calibrated.ms (several EBs) or the one .ms.split.cal."""
    for path in [area.combination / "calibrated.ms", area.imaging / "calibrated.ms"]:
        if path.is_dir():
            return path
    singles = sorted(area.combination.glob("*.ms.split.cal")) + [p for eb in area.ebs for p in eb.folder.glob("*.ms.split.cal")]
    return singles[0] if singles else None


def check_products(check: "_Checker", area: "StaffArea", images: list[ImageFigures]) -> None:
    """Per spw one cube, per sideband one continuum image (seed 002, section 3)."""
    ms = imaged_ms(area)
    if ms is None:
        check.fail("staff.imaging.products", area.imaging, "no calibrated.ms or .ms.split.cal to read the spws from",
                   "keep the imaged MS in Combination/calibrated")
        return
    try:
        spws = vis.ms_summary(ms).spws
    except (TreeError, RuntimeError) as exc:
        check.fail("staff.imaging.products", ms, f"cannot read the spws of the imaged MS ({exc})",
                   "keep the imaged MS (calibrated.ms or the .ms.split.cal) readable")
        return
    cubes = [i for i in images if i.kind == "cube"]
    conts = [i for i in images if i.kind == "continuum"]

    def overlap(im: ImageFigures, lo: float, hi: float) -> float:
        return max(0.0, min(im.high_hz, hi) - max(im.low_hz, lo))

    cube_of = {}
    for s in spws:
        best = max(cubes, key=lambda im: overlap(im, s.low_hz, s.high_hz), default=None)
        if best is not None and overlap(best, s.low_hz, s.high_hz) > 0.5 * min(best.high_hz - best.low_hz, s.high_hz - s.low_hz):
            cube_of[s.spw] = best.path.name
    groups = vis.sidebands(spws)
    cont_of = {}
    for k, group in enumerate(groups):
        lo, hi = min(s.low_hz for s in group), max(s.high_hz for s in group)
        label = f"{'LSB' if k == 0 and len(groups) > 1 else 'USB' if len(groups) > 1 else 'SB'} ({lo / 1e9:.2f}-{hi / 1e9:.2f} GHz)"
        hit = [im.path.name for im in conts if lo - 1e6 <= (im.low_hz + im.high_hz) / 2 <= hi + 1e6]
        cont_of[label] = hit[0] if hit else None
    numbers = {"spws": {str(s.spw): {"low_ghz": s.low_hz / 1e9, "high_ghz": s.high_hz / 1e9, "cube": cube_of.get(s.spw)}
                        for s in spws},
               "sidebands": cont_of, "cubes": len(cubes), "continuum_images": len(conts)}
    missing = [f"cube of spw {s.spw}" for s in spws if s.spw not in cube_of] + \
              [f"continuum of {label}" for label, name in cont_of.items() if name is None]
    if missing:
        check.fail("staff.imaging.products", area.imaging, f"missing {', '.join(missing)} "
                   f"({len(spws)} spws, {len(groups)} sidebands; {len(cubes)} cubes, {len(conts)} continuum images)",
                   "make one cube per spw and one continuum image per sideband (QA2 data products)", numbers)
    else:
        check.ok("staff.imaging.products", area.imaging, f"a cube for each of {len(spws)} spws, a continuum image "
                 f"for each of {len(groups)} sidebands", numbers)


def check_fits_verify(check: "_Checker", paths: list[Path]) -> None:
    """Every FITS file conforms to the standard (astropy's verify)."""
    from astropy.io import fits

    problems = {}
    for path in paths:
        try:
            with fits.open(path) as hdul:
                errs = _verify(hdul)
        except (OSError, ValueError) as exc:
            errs = [str(exc)]
        if errs:
            problems[path.name] = errs
    numbers = {"files": len(paths), "not_conforming": {k: v[:5] for k, v in problems.items()}}
    if problems:
        name, errs = next(iter(problems.items()))
        check.fail("staff.imaging.fits-verify", next(p for p in paths if p.name == name),
                   f"{len(problems)} of {len(paths)} FITS files do not conform: {errs[0]}",
                   "export the image again with exportfits (FITS 3.0)", numbers)
    elif paths:
        check.ok("staff.imaging.fits-verify", paths[0].parent, f"{len(paths)} FITS files conform (astropy verify)", numbers)


def _verify(hdul) -> list[str]:
    """astropy's verification messages of an HDU list (empty when it conforms)."""
    from astropy.io.fits.verify import VerifyError

    try:
        hdul.verify("exception")
    except VerifyError as exc:
        # "Verification reported errors:\nHDU 0:\n    Card 15:\n        Card keyword 'bunit' is not upper case."
        problems, where = [], []
        for line in str(exc).splitlines():
            text = line.strip()
            if not text or text.startswith(("Verification reported", "Note: astropy")):
                continue
            if re.fullmatch(r"(HDU|Card) \d+:", text):
                where = [w for w in where if not w.startswith(text.split()[0])] + [text[:-1]]
                continue
            problems.append(f"{', '.join(where)}: {text}" if where else text)
        return problems or [str(exc).strip()]
    return []


def readme_request(text: str) -> dict[str, float]:
    """The requested rms and resolution a README states: ``Proposed rms: 5.85 mJy/beam in 0.728 MHz``
    and ``Requested angular resolution 1.0 arcsec`` (the real W51 README's lines; the last stated
    value when it was changed)."""
    out: dict[str, float] = {}
    m = re.search(r"Proposed rms:\s*([0-9.]+)\s*(mJy|uJy|Jy)(?:/beam)?(?:\s+in\s+([0-9.]+)\s*(kHz|MHz|GHz))?", text)
    if m:
        out["rms_jy"] = float(m.group(1)) * {"uJy": 1e-6, "mJy": 1e-3, "Jy": 1.0}[m.group(2)]
        if m.group(3):
            out["bandwidth_hz"] = float(m.group(3)) * {"kHz": 1e3, "MHz": 1e6, "GHz": 1e9}[m.group(4)]
    m = re.search(r"Requested angular resolution\s*:?\s*([0-9.]+)\s*arcsec((?:[^\n]*?changed to\s*([0-9.]+)\s*arcsec)?)", text)
    if m:
        out["beam_arcsec"] = float(m.group(3) or m.group(1))
    return out


def check_request(check: "_Checker", area: "StaffArea", images: list[ImageFigures],
                  rms_jy: float | None, beam_arcsec: float | None) -> None:
    """Achieved rms of the cubes (scaled to the requested bandwidth) and beam against the request."""
    stated = readme_request(area.readme.read_text(errors="replace")) if area.readme.is_file() else {}
    source = "--requested-rms/--requested-beam" if rms_jy or beam_arcsec else "README"
    rms_req = rms_jy or stated.get("rms_jy")
    beam_req = beam_arcsec or stated.get("beam_arcsec")
    bandwidth = stated.get("bandwidth_hz") if not rms_jy else None
    cubes = [i for i in images if i.kind == "cube" and i.rms_jy is not None]
    if rms_req is None:
        check.warn("staff.imaging.sensitivity", area.readme, "no requested rms (README 'Proposed rms:' line)",
                   "give --requested-rms or state the request in the README", {"requested_rms_jy": None})
    elif not cubes:
        check.warn("staff.imaging.sensitivity", area.imaging, "no cube with a measurable rms",
                   "export the cubes with their .flux.fits", {"requested_rms_jy": rms_req})
    else:
        achieved = {}
        for im in cubes:
            scale = math.sqrt(im.chan_width_hz / bandwidth) if bandwidth and im.chan_width_hz else 1.0
            achieved[im.path.name] = {"rms_jy": im.rms_jy, "rms_at_requested_bandwidth_jy": im.rms_jy * scale}
        best = min(achieved.items(), key=lambda kv: kv[1]["rms_at_requested_bandwidth_jy"])
        ratio = best[1]["rms_at_requested_bandwidth_jy"] / rms_req
        numbers = {"requested_rms_jy": rms_req, "requested_bandwidth_hz": bandwidth, "source": source,
                   "achieved": achieved, "ratio": ratio}
        msg = (f"rms {best[1]['rms_at_requested_bandwidth_jy'] * 1e3:.2f} mJy/beam ({best[0]}"
               f"{', scaled to the requested bandwidth' if bandwidth else ''}) against {rms_req * 1e3:.2f} requested "
               f"({source}): x{ratio:.2f}")
        _verdict(check, "staff.imaging.sensitivity", area.imaging, msg, ratio, RMS_WARN,
                 "note on the ticket that the requested sensitivity is not reached", numbers)
    beams = [i for i in images if i.bmaj_arcsec]
    if beam_req is None:
        check.warn("staff.imaging.resolution", area.readme, "no requested resolution (README 'Requested angular "
                   "resolution' line)", "give --requested-beam or state the request in the README",
                   {"requested_beam_arcsec": None})
    elif not beams:
        check.warn("staff.imaging.resolution", area.imaging, "no image has a beam", "restore the images with a beam",
                   {"requested_beam_arcsec": beam_req})
    else:
        achieved = {i.path.name: math.sqrt(i.bmaj_arcsec * i.bmin_arcsec) for i in beams}
        name, best = min(achieved.items(), key=lambda kv: kv[1])
        ratio = best / beam_req
        numbers = {"requested_beam_arcsec": beam_req, "source": source, "achieved_arcsec": achieved, "ratio": ratio}
        msg = f"beam {best:.2f} arcsec ({name}, geometric mean) against {beam_req:.2f} requested ({source}): x{ratio:.2f}"
        _verdict(check, "staff.imaging.resolution", area.imaging, msg, ratio, BEAM_WARN,
                 "note on the ticket that the requested resolution is not reached", numbers)


def _verdict(check: "_Checker", item: str, path: Path, msg: str, ratio: float, warn: float,
             hint: str, numbers: dict) -> None:
    if ratio > warn:
        check.warn(item, path, msg, hint, numbers)
    else:
        check.ok(item, path, msg, numbers)


def imaging_masks(script_text: str) -> list[str]:
    """Mask images scriptForImaging.py names (``mask='x.mask'`` or a list of them); region strings
    ('circle[...]', 'box[...]') and CRTF files are analytic and need no mask image."""
    names = []
    for m in re.finditer(r"\bmask\s*=\s*(\[[^\]]*\]|(['\"])[^'\"]*\2)", script_text):
        for s in re.findall(r"['\"]([^'\"]+)['\"]", m.group(1)):
            if s and not re.match(r"^\s*(circle|box|ellipse|poly|rotbox|annulus|centerbox)\s*\[", s) \
                    and not s.endswith((".crtf", ".txt", ".rgn")):
                names.append(s)
    return names


def check_masks(check: "_Checker", area: "StaffArea") -> list[Path]:
    """The mask images the imaging script names are in Imaging/ (they are delivered as CASA images)."""
    script = area.imaging / "scriptForImaging.py"
    names = imaging_masks(script.read_text(errors="replace")) if script.is_file() else []
    found = [area.imaging / n for n in names if (area.imaging / n).is_dir()]
    missing = [n for n in names if not (area.imaging / n).is_dir()]
    numbers = {"named": names, "missing": missing}
    if missing:
        check.fail("staff.imaging.masks", script, f"mask image(s) {', '.join(missing)} named by the script are not "
                   "in Imaging/", "put the mask CASA images in Imaging/ (they are delivered with the products)", numbers)
    else:
        check.ok("staff.imaging.masks", area.imaging, f"{len(found)} mask image(s) named by the script, all present"
                 if names else "the script names no mask image (masks analytic or none)", numbers)
    return found
