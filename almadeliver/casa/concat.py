"""Cycle 0 deliveries: the delivered calibrated MSs combined into ``calibrated/calibrated.ms``.

A Cycle 0 delivery ships its ``*.ms.split.cal`` already calibrated (``RestorePlan.already_calibrated``);
``almadeliver restore --concat`` runs the delivered scriptForFluxCalibration.py (flux scaling, then
concat) in a CASA child, or with ``--no-flux-scaling`` only concatenates them.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..delivery.layout import FLUX_SCRIPT
from ..errors import CasaError, DiskSpaceError, TreeError, UsageError
from . import legacy
from .diskspace import MB, du_bytes
from .restore import RestorePlan, _logs
from .runtime import run_in_casa


# -- Cycle 0 -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConcatResult:
    """Cycle 0: the delivered ``*.ms.split.cal`` combined into ``calibrated/calibrated.ms``.

    ``script``: the delivered scriptForFluxCalibration.py when it ran (its setjy/gaincal/applycal
    scaling, then its concat), None when the MSs were only concatenated. ``amplitudes``: EB ->
    spw -> (delivered, in calibrated.ms) vector-averaged amplitude (Jy) of the phase calibrator, and
    ``calibrator`` its name(s)."""

    inputs: list[Path]
    output: Path
    seconds: float
    casa_log: Path
    script: Path | None = None
    amplitudes: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    calibrator: str = ""


def concat_cycle0(plan: RestorePlan, on_line: Callable[[str], None] | None = None,
                  scaling: bool = True) -> ConcatResult:
    """Combine a Cycle 0 delivery's calibrated MSs into ``calibrated/calibrated.ms`` (CASA child).

    As the Cycle 0 guide does (seed 000: the flux calibration script "does the flux calibration, then
    combines"): with ``scaling`` and a delivered ``script/scriptForFluxCalibration.py``, that script
    runs (its Python 2 converted for the run, CASA 3.4's setjy form mapped, version gate passed:
    ``legacy.run_clean_era_script_in_casa``) in ``almadeliver-restore/fluxcal-<time>/calibrated/`` on
    copies of the ``*.ms.split.cal``, so the delivered MSs are never changed: each EB's phase
    calibrator is set to allFluxes.txt's weighted mean per spw, its amplitude solved (gaincal) and
    applied, and the EBs concatenated. Without the script (or with ``scaling`` False, the staff
    guide's "delete the setjy, gaincal and applycal commands") the MSs are only concatenated.

    Parameters
    ----------
    plan : RestorePlan
        The restore plan of a Cycle 0 member (``already_calibrated``).
    on_line : callable, optional
        Receives every line the CASA child prints.
    scaling : bool, default True
        Run the delivered flux-calibration script (False: concat only).

    Returns
    -------
    ConcatResult
        The inputs, calibrated.ms, the time taken, the CASA log, the script that ran and the phase
        calibrator's amplitudes per EB and spw before and after.

    Raises
    ------
    UsageError
        Not a Cycle 0 delivery.
    TreeError
        No ``*.ms.split.cal``, or calibrated.ms exists already.
    DiskSpaceError
        Not enough free space in calibrated/ (copies, the script's split, the output).
    CasaError
        The script or concat failed, or made no calibrated.ms.
    """
    if not plan.already_calibrated:
        raise UsageError(f"{plan.path} is not a Cycle 0 delivery", "run `almadeliver restore` without --concat")
    inputs = sorted(plan.calibrated.glob("*.ms.split.cal"))
    output = plan.calibrated / "calibrated.ms"
    if not inputs:
        raise TreeError(f"no *.ms.split.cal in {plan.calibrated}", "fetch the Cycle 0 delivery tarballs again")
    if output.exists():
        raise TreeError(f"{output} already exists", "move it away to concatenate again")
    script = plan.path / "script" / FLUX_SCRIPT
    script = script if scaling and script.is_file() and len(inputs) > 1 else None
    sizes = [du_bytes(p) for p in inputs]
    # the script: a copy of every EB, one EB re-split at a time, the output; concat alone: the output
    needed = -(-(2 * sum(sizes) + max(sizes) if script else sum(sizes)) // MB)
    free = shutil.disk_usage(plan.calibrated).free // MB
    if needed > free:
        raise DiskSpaceError(f"{'the flux calibration script' if script else 'concat'} needs {needed} MB in "
                             f"{plan.calibrated}, {free} MB free ({needed - free} MB missing)", "free some space first")
    work, casa_log, _ = _logs(plan)
    start = time.monotonic()
    if script is None:
        made = run_in_casa(cycle0_concat_in_casa, {"vis": [str(p) for p in inputs], "concatvis": str(output)},
                           workdir=work, logfile=casa_log, on_line=on_line)
    else:
        stage = work / f"fluxcal-{casa_log.stem[len('casa-'):]}" / "calibrated"
        stage.mkdir(parents=True)
        for name in ("script", "calibration", "raw", "product"):      # the member's layout around calibrated/
            if (plan.path / name).exists():
                (stage.parent / name).symlink_to(plan.path / name)
        try:
            for p in inputs:
                shutil.copytree(p, stage / p.name, symlinks=True)
            made = run_in_casa(flux_script_in_casa, {"script": str(script), "cwd": str(stage),
                                                     "inputs": [str(p) for p in inputs],
                                                     "converted": str(work / f"{script.stem}.py3.py")},
                               workdir=stage, logfile=casa_log, on_line=on_line)
            (stage / "calibrated.ms").rename(output)
        except CasaError as exc:
            raise CasaError(f"{script.name} failed: {exc.message}", f"see the CASA log {casa_log}") from None
        finally:
            shutil.rmtree(stage.parent, ignore_errors=True)
    amplitudes = {Path(vis).name.split(".ms")[0]: {int(spw): (before, made["after"][vis][spw])
                                                   for spw, before in spws.items() if spw in made["after"][vis]}
                  for vis, spws in made["before"].items()}
    return ConcatResult(inputs, output, time.monotonic() - start, casa_log, script, amplitudes,
                        ", ".join(made["calibrators"]))


def concat_in_casa(vis: list[str], concatvis: str) -> str:
    """(CASA child) ``concat`` as the Cycle 0 flux-calibration scripts end.

    Parameters
    ----------
    vis : list[str]
        The MSs to join.
    concatvis : str
        The MS to write.

    Returns
    -------
    str
        ``concatvis``.

    Raises
    ------
    CasaError
        concat wrote no MS.
    """
    from casatasks import concat

    concat(vis=vis, concatvis=concatvis)
    if not os.path.isfile(os.path.join(concatvis, "table.dat")):
        raise CasaError(f"concat did not write {concatvis}")
    return concatvis


def cycle0_concat_in_casa(vis: list[str], concatvis: str) -> dict:
    """(CASA child) ``concat_in_casa`` alone (no flux scaling), with the phase calibrator's amplitudes
    before and after.

    Parameters
    ----------
    vis : list[str]
        The MSs to join.
    concatvis : str
        The MS to write.

    Returns
    -------
    dict
        ``_amplitudes_by_eb``: the phase calibrator's amplitudes (Jy) per EB and spw, before and after.
    """
    before = {v: calibrator_amplitudes(v) for v in vis}
    concat_in_casa(vis, concatvis)
    return _amplitudes_by_eb(before, concatvis)


def flux_script_in_casa(script: str, cwd: str, inputs: list[str], converted: str) -> dict:
    """(CASA child) The delivered scriptForFluxCalibration.py run in ``cwd`` (copies of ``inputs``)
    as a CASA 3.4-4.x script (``legacy.run_clean_era_script_in_casa``; a Python 2 script's Python 3
    text is kept in ``converted``); it must leave ``cwd/calibrated.ms``.

    Parameters
    ----------
    script : str
        The delivered scriptForFluxCalibration.py.
    cwd : str
        The staging ``calibrated/`` folder it runs in.
    inputs : list[str]
        The copies of the ``*.ms.split.cal`` in ``cwd``.
    converted : str
        Where a Python 2 script's Python 3 text goes.

    Returns
    -------
    dict
        ``_amplitudes_by_eb``: the phase calibrator's amplitudes (Jy) per EB and spw, before and after.

    Raises
    ------
    CasaError
        The script ran but wrote no calibrated.ms.
    """
    before = {v: calibrator_amplitudes(v) for v in inputs}
    legacy.run_clean_era_script_in_casa(script, cwd, converted=converted)
    concatvis = os.path.join(cwd, "calibrated.ms")
    if not os.path.isfile(os.path.join(concatvis, "table.dat")):
        raise CasaError(f"{os.path.basename(script)} ran but wrote no calibrated.ms in its folder")
    return _amplitudes_by_eb(before, concatvis)


def _amplitudes_by_eb(before: dict[str, list[dict]], concatvis: str) -> dict:
    """(CASA child) ``before`` (input MS -> its ``calibrator_amplitudes``, one observation) matched with
    the observations of ``concatvis`` by start time: ``{"before": {vis: {spw: Jy}}, "after": {vis:
    {spw: Jy}}, "calibrators": [names]}`` (MSs without a phase calibrator left out)."""
    after = calibrator_amplitudes(concatvis)
    first = {vis: obs[0] for vis, obs in before.items() if obs}
    matched = {vis: min(after, key=lambda o: abs(o["begin_s"] - obs["begin_s"]))["spw_jy"]
               for vis, obs in first.items() if after}
    return {"before": {v: o["spw_jy"] for v, o in first.items() if v in matched}, "after": matched,
            "calibrators": sorted({n for o in after for n in o["fields"]})}


def calibrator_amplitudes(ms: str) -> list[dict]:
    """(CASA child) Per observation (EB) of ``ms``: the vector average over time, channels and the
    parallel hands of every unflagged cross-correlation of the phase calibrator (intent
    CALIBRATE_PHASE) in each science spw, in DATA (Jy; a point source at the phase centre, so this
    is its flux density once the phases are calibrated).

    Parameters
    ----------
    ms : str
        The measurement set.

    Returns
    -------
    list of dict
        ``{"observation": id, "begin_s": MJD seconds, "fields": [names], "spw_jy": {spw: Jy}}``; empty
        when no field has intent CALIBRATE_PHASE.
    """
    import casatools
    import numpy as np

    msmd = casatools.msmetadata()
    msmd.open(ms)
    fields = sorted(int(f) for f in msmd.fieldsforintent("CALIBRATE_PHASE*"))
    names = [msmd.namesforfields(f)[0] for f in fields]
    spw_of_dd = {dd: int(spw) for dd, spw in enumerate(msmd.spwfordatadesc(-1)) if msmd.nchan(int(spw)) > 4}
    observations = {obs: float(msmd.timerangeforobs(obs)["begin"]["m0"]["value"]) * 86400.0
                    for obs in range(msmd.nobservations())}
    msmd.close()
    if not fields:
        return []
    tb = casatools.table()
    tb.open(ms)
    out = []
    for obs, begin in sorted(observations.items()):
        spw_jy = {}
        for dd, spw in sorted(spw_of_dd.items()):
            sub = tb.query(f"FIELD_ID IN {fields} && DATA_DESC_ID=={dd} && OBSERVATION_ID=={obs} "
                           f"&& ANTENNA1!=ANTENNA2")
            if sub.nrows():
                data = np.where(sub.getcol("FLAG"), np.nan, sub.getcol("DATA"))   # [corr, chan, row]
                parallel = data[[0, -1]] if data.shape[0] == 4 else data
                if np.isfinite(parallel).any():
                    spw_jy[spw] = float(np.abs(np.nanmean(parallel)))
            sub.close()
        out.append({"observation": obs, "begin_s": begin, "fields": names, "spw_jy": spw_jy})
    tb.close()
    return out
