"""The CASA side of ``selfcal``: the self-calibration loop in one CASA child (see ``casa.selfcal``).

Runs in the child ``run_in_casa(selfcal_in_casa, ...)`` starts, in the output folder; prints one
``ROUND_LINE`` per round (the parent reads them as they come) and returns what it made.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

RMS_TOLERANCE = 1.02            # a kept round may not raise the rms by more than 2 %
THRESHOLD_SIGMA = 3.0           # rounds: clean to this many times the rms of the best image so far
DEEP_CLEAN = {"usemask": "pb", "pbmask": 0.2, "mask": "", "nsigma": THRESHOLD_SIGMA, "niter": 1000, "nmajor": -1}
MASK_BEAMS = 2.0                # clean mask: a circle of this many beams around the peak of the dirty image
#: the line the child prints per round: index, mode, solint, kept|rejected, then the round as JSON
ROUND_LINE = re.compile(r"^almadeliver-selfcal: round (\d+) (\S+):(\S+) (kept|rejected): (.*)$")


def _target_field(vis: str) -> str:
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(vis)
    try:
        fields = sorted(int(f) for f in msmd.fieldsforintent("OBSERVE_TARGET*"))
        if not fields:
            raise RuntimeError(f"{vis} has no field with intent OBSERVE_TARGET: give --field")
        return msmd.namesforfields(fields[0])[0]
    finally:
        msmd.close()


def _default_cell(vis: list[str]) -> float:
    """A fifth of the synthesized beam (lambda / longest baseline), in arcsec."""
    import casatools
    import numpy as np

    tb, longest, top = casatools.table(), 0.0, 0.0
    for v in vis:
        tb.open(v)
        uvw = tb.getcol("UVW")
        tb.close()
        longest = max(longest, float(np.max(np.hypot(uvw[0], uvw[1]))))
        tb.open(os.path.join(v, "SPECTRAL_WINDOW"))
        top = max(top, float(max(np.max(c) for c in (tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())))))
        tb.close()
    return float(np.degrees(2.998e8 / top / longest) * 3600.0 / 5.0)


def _image_figures(imagename: str) -> dict[str, Any]:
    """Peak, MAD rms (Jy/beam) and beam of a restored (flat-noise) image."""
    import casatools
    import numpy as np

    ia = casatools.image()
    ia.open(imagename + ".image")
    data = ia.getchunk().astype(float)
    beam = ia.restoringbeam()
    ia.close()
    finite = data[np.isfinite(data)]
    rms = float(1.4826 * np.median(np.abs(finite - np.median(finite))))
    peak = float(finite.max())
    if "major" not in beam:        # per-channel beams: the first
        beam = beam["beams"]["*0"]["*0"]
    return {"peak": peak, "rms": rms, "dynamic_range": peak / rms if rms > 0 else float("inf"),
            "beam": (float(beam["major"]["value"]), float(beam["minor"]["value"]), float(beam["positionangle"]["value"]))}


def _peak_mask(imagename: str, bmaj_arcsec: float, beams: float = MASK_BEAMS) -> str:
    """A CRTF circle of ``beams`` beam widths around the brightest pixel of an image."""
    import casatools
    import numpy as np

    ia = casatools.image()
    ia.open(imagename + ".image")
    data = ia.getchunk()
    ia.close()
    x, y = np.unravel_index(int(np.nanargmax(data)), data.shape)[:2]
    return f"circle[[{x}pix, {y}pix], {beams * bmaj_arcsec:.3f}arcsec]"


def _flagged_solutions(table: str) -> float:
    import casatools
    import numpy as np

    tb = casatools.table()
    tb.open(table)
    flags = tb.getcol("FLAG")
    tb.close()
    return float(np.count_nonzero(flags) / flags.size) if flags.size else 1.0


def selfcal_in_casa(vis: list[str], columns: list[str], field: str | None, rounds: list[dict],
                  cell_arcsec: float | None, imsize: int | None, cubes: list[dict], out: str,
                  spw: Any = "") -> dict[str, Any]:
    """(CASA child, in ``out``) The self-calibration loop of the module doc; prints one line per round.

    Parameters
    ----------
    vis : list[str]
        The calibrated MSs.
    columns : list[str]
        The column holding the calibrated data of each.
    field : str | None
        The field to self-calibrate (None: the target).
    rounds : list[dict]
        The rounds (mode, solint).
    cell_arcsec : float | None
        The image cell in arcsec (None: from the longest baseline).
    imsize : int | None
        The image size in pixels (None: from the primary beam).
    cubes : list[dict]
        The delivered cubes to remake with the solutions.
    out : str
        The output folder.
    spw : Any, default ""
        The continuum spw selection.

    Returns
    -------
    dict[str, Any]
        ``field``, ``rounds``, ``continuum``, ``cubes``, ``vis`` and ``tables``.
    """
    from casatasks import applycal, clearcal, exportfits, ft, gaincal, split, tclean

    os.chdir(out)
    field = field or _target_field(vis[0])
    work = []
    for v, column in zip(vis, columns):
        name = re.sub(r"(\.ms)?(\.split)?(\.cal)?$", "", Path(v).name) + ".selfcal.ms"
        split(vis=v, outputvis=name, field=field, datacolumn=column, keepflags=True)
        work.append(name)
    cell = cell_arcsec or _default_cell(work)
    size = imsize or 128
    base = {"vis": work, "field": "", "spw": spw, "specmode": "mfs", "deconvolver": "hogbom", "gridder": "standard",
            "imsize": size, "cell": f"{cell}arcsec", "weighting": "briggs", "robust": 0.5, "niter": 1000,
            "nmajor": 10,
            "usemask": "user", "pbcor": False, "savemodel": "modelcolumn", "interactive": False}

    def image(name: str, threshold_jy: float, column: str) -> dict[str, Any]:
        for stale in Path(".").glob(name + ".*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        tclean(imagename=name, datacolumn=column, threshold=f"{threshold_jy}Jy", **base)
        return _image_figures(name)

    def report(r: dict[str, Any]) -> dict[str, Any]:
        print(f"almadeliver-selfcal: round {r['index']} {r['mode'] or '-'}:{r['solint'] or '-'} "
              f"{'kept' if r['kept'] else 'rejected'}: {json.dumps(r)}", flush=True)
        return r

    # round 0: a dirty image for the noise, then the clean model of the delivered calibration
    t0 = time.monotonic()
    dirty = dict(base, niter=0, savemodel="none", nmajor=-1)
    tclean(imagename="round0.dirty", datacolumn="data", threshold="0Jy", **dirty)
    dirty_figures = _image_figures("round0.dirty")
    base["mask"] = _peak_mask("round0.dirty", dirty_figures["beam"][0])
    # rounds clean down to the artefact level of the image so far (3 x its rms): a model cleaned deeper
    # than the errors reproduces them, and self-calibration against it changes nothing
    figures = image("round0", THRESHOLD_SIGMA * dirty_figures["rms"], "data")
    results = [report({"index": 0, "mode": "", "solint": "", "kept": True, "flagged_solutions": None,
                       "seconds": round(time.monotonic() - t0, 3), **figures})]
    best = results[0]
    best_image, phase_table, kept_tables = "round0", None, []
    for k, rnd in enumerate(rounds, start=1):
        t0 = time.monotonic()
        table = f"round{k}_{rnd['mode']}_{rnd['solint']}.g"
        pre = [phase_table] if rnd["mode"] == "ap" and phase_table else []
        flagged = []
        for v in work:
            caltable = f"{v}.{table}"
            shutil.rmtree(caltable, ignore_errors=True)
            gaincal(vis=v, caltable=caltable, solint=rnd["solint"], calmode=rnd["mode"], gaintype="G",
                    refant="", minsnr=3.0, minblperant=4, gaintable=[f"{v}.{t}" for t in pre],
                    solnorm=rnd["mode"] == "ap")
            # no table at all: no solution reached minsnr (all flagged)
            flagged.append(_flagged_solutions(caltable) if os.path.isdir(caltable) else 1.0)
        if min(flagged) >= 1.0:
            results.append(report({"index": k, "mode": rnd["mode"], "solint": rnd["solint"], "kept": False,
                                   "flagged_solutions": 1.0, "seconds": round(time.monotonic() - t0, 3),
                                   "peak": float("nan"), "rms": float("nan"), "dynamic_range": float("nan"),
                                   "beam": best["beam"]}))
            continue
        applied = pre + [table]          # phase: this table alone; ap: on top of the last phase table kept
        for v in work:
            applycal(vis=v, gaintable=[f"{v}.{t}" for t in applied], interp="linear", calwt=False,
                     applymode="calonly", flagbackup=False)
        name = f"round{k}"
        figures = image(name, THRESHOLD_SIGMA * best["rms"], "corrected")
        kept = figures["dynamic_range"] > best["dynamic_range"] and figures["rms"] <= best["rms"] * RMS_TOLERANCE
        r = report({"index": k, "mode": rnd["mode"], "solint": rnd["solint"], "kept": kept,
                    "flagged_solutions": round(sum(flagged) / len(flagged), 6),
                    "seconds": round(time.monotonic() - t0, 3), **figures})
        results.append(r)
        if kept:
            best, best_image, kept_tables = r, name, applied
            if rnd["mode"] == "p":
                phase_table = table
            continue
        # rejected: the best model and calibration back in the MSs
        for v in work:
            ft(vis=v, model=best_image + ".model", usescratch=True)
            if kept_tables:
                applycal(vis=v, gaintable=[f"{v}.{t}" for t in kept_tables], interp="linear", calwt=False,
                         applymode="calonly", flagbackup=False)
            else:
                clearcal(vis=v)
    # the deeper clean that goes with self-calibration (seed 003): inside the primary beam, down to
    # THRESHOLD_SIGMA times the rms of the residual (tclean's nsigma), on the best calibration
    stem = field.replace(" ", "_")
    column = "corrected" if kept_tables else "data"
    final = f"{stem}_cont.selfcal"
    for stale in Path(".").glob(final + ".*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    tclean(imagename=final, datacolumn=column, threshold="0Jy",
           **dict(base, savemodel="none", pbcor=True, **DEEP_CLEAN))
    continuum = os.path.join(out, f"{final}.image.pbcor.fits")
    exportfits(imagename=final + ".image.pbcor", fitsimage=continuum, overwrite=True)
    exportfits(imagename=final + ".pb", fitsimage=continuum.replace(".image.pbcor.fits", ".pb.fits"),
               overwrite=True)
    made = []
    for i, cube in enumerate(cubes):
        name = f"{stem}_cube{i}.selfcal"
        for stale in Path(".").glob(name + ".*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        tclean(vis=work, imagename=name, field="", datacolumn=column, specmode="cube", outframe=cube["frame"],
               start=f"{cube['start_hz']}Hz", width=f"{cube['width_hz']}Hz", nchan=cube["nchan"],
               restfreq=f"{cube['restfreq_hz']}Hz" if cube["restfreq_hz"] else [], deconvolver="hogbom",
               gridder="standard", imsize=size, cell=f"{cell}arcsec", weighting="briggs", robust=0.5,
               threshold="0Jy", pbcor=True, **DEEP_CLEAN,
               interactive=False)
        fits = os.path.join(out, f"{stem}_cube{i}.selfcal.image.pbcor.fits")
        exportfits(imagename=name + ".image.pbcor", fitsimage=fits, overwrite=True)
        exportfits(imagename=name + ".pb", fitsimage=fits.replace(".image.pbcor.fits", ".pb.fits"), overwrite=True)
        made.append({"fits": fits, "delivered": cube["fits"]})
    return {"field": field, "rounds": results, "continuum": continuum, "cubes": made,
            "vis": [os.path.abspath(v) for v in work],
            "tables": [os.path.abspath(f"{v}.{t}") for v in work for t in kept_tables]}
