"""Checks of simulated data, run in a CASA child (tests, benchmarks and other stages use them)."""
from __future__ import annotations

import shutil

import numpy as np


def asdm_summary(asdm: str, vis: str) -> dict:
    """Import ``asdm`` with importasdm into ``vis``; return its fields, intents per scan, spws, antennas."""
    import casatools
    from casatasks import importasdm

    shutil.rmtree(vis, ignore_errors=True)
    importasdm(asdm=asdm, vis=vis)
    msmd = casatools.msmetadata()
    msmd.open(vis)
    try:
        scans = [int(s) for s in msmd.scannumbers()]
        return {
            "fields": list(msmd.fieldnames()),
            "intents": sorted(msmd.intents()),
            "scan_intents": {str(s): sorted(msmd.intentsforscan(s)) for s in scans},
            "scan_fields": {str(s): [str(msmd.namesforfields(int(f))[0]) for f in msmd.fieldsforscan(s)] for s in scans},
            "nspw": int(msmd.nspw()),
            "nchan": [int(msmd.nchan(i)) for i in range(msmd.nspw())],
            "antennas": list(msmd.antennanames()),
            "nobservations": int(msmd.nobservations()),
        }
    finally:
        msmd.close()


def phase_scatter(vis: str, field: str, column: str = "DATA") -> dict:
    """Per spw: the standard deviation (deg) of the channel-averaged phase of ``field``'s
    cross-correlations (both polarizations, every baseline and integration)."""
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(vis)
    fid = int(msmd.fieldsforname(field)[0])
    nspw = int(msmd.nspw())
    msmd.close()
    tb = casatools.table()
    tb.open(vis)
    out = {}
    for spw in range(nspw):
        sub = tb.query(f"FIELD_ID=={fid} && DATA_DESC_ID=={spw} && ANTENNA1!=ANTENNA2")
        data = np.where(sub.getcol("FLAG"), np.nan, sub.getcol(column))
        sub.close()
        vis_avg = np.nanmean(data, axis=1)  # (pol, row)
        out[str(spw)] = float(np.degrees(np.nanstd(np.angle(vis_avg))))
    tb.close()
    return out

