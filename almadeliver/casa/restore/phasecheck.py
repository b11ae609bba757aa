"""Checking a restore's result: the phase scatter on the phase calibrator of each restored MS (in CASA)."""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import CasaError
from ..runtime import run_in_casa

# -- checking the result ---------------------------------------------------------------------------------
def phase_scatter(measurement_sets: list[Path], workdir: Path) -> dict[str, dict]:
    """Phase rms (deg) on the phase calibrator of each MS, computed in a CASA child.

    Parameters
    ----------
    measurement_sets : list[Path]
        The restored MSs.
    workdir : Path
        The folder the CASA child runs in (its log goes there).

    Returns
    -------
    dict[str, dict]
        MS path -> ``fields``, ``rms_deg`` (degrees) and ``visibilities`` (count).
    """
    return run_in_casa(phase_scatter_in_casa,
                       {"measurement_sets": [str(p) for p in measurement_sets]},
                       workdir=workdir, logfile=Path(workdir) / "phase-check.casa.log")


def phase_scatter_in_casa(measurement_sets: list[str]) -> dict[str, dict]:
    """(CASA child) For each MS: the rms about the mean of the phase of every unflagged cross-correlation
    (channel-averaged, first correlation, science spws) on the fields observed with intent CALIBRATE_PHASE, in DATA
    (split MSs), or CORRECTED_DATA for a pipeline restore's calibrated/working/<EB>.ms.

    Parameters
    ----------
    measurement_sets : list[str]
        The MS paths.

    Returns
    -------
    dict[str, dict]
        MS path -> ``fields``, ``rms_deg`` (degrees) and ``visibilities`` (count).

    Raises
    ------
    CasaError
        An MS has no field observed with intent CALIBRATE_PHASE.
    """
    import casatools
    import numpy as np

    out: dict[str, dict] = {}
    for ms in measurement_sets:
        msmd = casatools.msmetadata()
        msmd.open(ms)
        fields = sorted(int(f) for f in msmd.fieldsforintent("CALIBRATE_PHASE*"))
        names = [msmd.namesforfields(f)[0] for f in fields]
        # science spws only (more than 4 channels): WVR and channel-average spws are never calibrated
        science_dd = {dd for dd, spw in enumerate(msmd.spwfordatadesc(-1)) if msmd.nchan(int(spw)) > 4}
        msmd.close()
        if not fields:
            raise CasaError(f"{ms} has no field with intent CALIBRATE_PHASE")
        tb = casatools.table()
        tb.open(ms)
        column = "CORRECTED_DATA" if os.path.basename(os.path.dirname(os.path.abspath(ms))) == "working" \
            and "CORRECTED_DATA" in tb.colnames() else "DATA"
        phases = []
        for ddid in sorted(set(tb.getcol("DATA_DESC_ID").tolist()) & science_dd):
            sub = tb.query(f"FIELD_ID IN {fields} && DATA_DESC_ID=={ddid} && ANTENNA1!=ANTENNA2")
            if sub.nrows():
                data = np.where(sub.getcol("FLAG"), np.nan, sub.getcol(column))[0]   # [chan, row]
                vis = np.nanmean(data, axis=0) if np.isfinite(data).any() else np.array([])
                vis = vis[np.isfinite(vis)]
                if vis.size:
                    phases.append(np.angle(vis / np.mean(vis)))   # about the mean phasor: no wrapping
            sub.close()
        tb.close()
        ph = np.degrees(np.concatenate(phases)) if phases else np.array([])
        out[ms] = {"fields": names, "rms_deg": float(np.sqrt(np.mean(ph ** 2))) if ph.size else float("nan"),
                   "visibilities": int(ph.size)}
    return out
