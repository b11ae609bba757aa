"""What runs in the CASA child for a pipeline re-imaging: target flagging, uvcontsub, tclean with its
FITS export, cont.dat channel selection and the moment maps.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .linefree import channel_runs
from .restored import calibrated_column


def flagtargets_in_casa(run: dict[str, Any]) -> dict[str, Any]:
    """CASA child: copy the calibrated data of one MS (its science target scans) to ``outputvis``
    (DATA) and apply the target flag template's commands there, as hifa_flagtargets does on
    ``<EB>_targets.ms``. Returns the flagged fraction before and after.

    Parameters
    ----------
    run : dict[str, Any]
        ``vis``, ``outputvis``, ``commands`` (the flag template's flagdata commands) and optionally
        ``datacolumn`` of one MS.

    Returns
    -------
    dict[str, Any]
        ``flagged_before`` and ``flagged_after``: the flagged fractions (0-1) of the copy.
    """
    from casatasks import flagdata, split

    out = Path(run["outputvis"])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    column = run.get("datacolumn") or calibrated_column(run["vis"])
    _check_column(run["vis"], column)
    split(vis=run["vis"], outputvis=str(out), intent="*OBSERVE_TARGET*", datacolumn=column, keepflags=True)
    before = flagdata(vis=str(out), mode="summary")
    if run["commands"]:
        flagdata(vis=str(out), mode="list", inpfile=list(run["commands"]), action="apply", flagbackup=False)
    after = flagdata(vis=str(out), mode="summary")
    return {"flagged_before": before["flagged"] / before["total"], "flagged_after": after["flagged"] / after["total"]}


def tclean_in_casa(tclean: dict[str, Any], exports: dict[str, str], out: str,
                 reads: list[dict[str, str]] | None = None,
                 cont_ranges: list[dict[str, list]] | None = None, field: str | None = None,
                 moments: dict[str, Any] | None = None) -> dict[str, Any]:
    """tclean (arguments this CASA does not know are dropped and reported), then exportfits. Before
    tclean, every MS must hold the column the plan says it is read from (``reads``): the calibrated
    visibilities, never the raw ones. ``cont_ranges`` (per vis, spw -> cont.dat ranges): the spw
    selection becomes the channels of each MS inside the ranges (towards ``field``).

    Parameters
    ----------
    tclean : dict[str, Any]
        The tclean arguments.
    exports : dict[str, str]
        CASA image suffix -> FITS file name to export.
    out : str
        The output folder.
    reads : list[dict[str, str]] | None, default None
        Per vis: the column it must hold (``vis``, ``column``).
    cont_ranges : list[dict[str, list]] | None, default None
        Per vis: spw -> cont.dat ranges (low Hz, high Hz, frame).
    field : str | None, default None
        The field the ranges are towards (frequency frames).
    moments : dict[str, Any] | None, default None
        The moment maps to make of the exported cube (``moment_maps``).

    Returns
    -------
    dict[str, Any]
        ``fits`` (the exported FITS files), ``dropped`` (arguments this CASA does not know), ``moments``
        (the maps made) and, with ``cont_ranges``, the ``spw`` selection used.
    """
    import inspect

    from casatasks import exportfits
    from casatasks import tclean as casa_tclean

    known = set(inspect.signature(casa_tclean).parameters)
    kwargs = {k: v for k, v in tclean.items() if k in known}
    if cont_ranges:
        vis = kwargs["vis"] if isinstance(kwargs["vis"], list) else [kwargs["vis"]]
        kwargs["spw"] = [cont_selection(v, r, field) for v, r in zip(vis, cont_ranges)]
    dropped = sorted(set(tclean) - known)
    column = str(kwargs.get("datacolumn", "corrected")).lower()   # tclean's default is corrected
    planned = {r["vis"]: r["datacolumn"] for r in reads or []}
    for vis in kwargs["vis"] if isinstance(kwargs["vis"], list) else [kwargs["vis"]]:
        _check_column(vis, planned.get(vis, column), fallback=column == "corrected")
    for stale in Path(".").glob(kwargs["imagename"] + ".*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    casa_tclean(**kwargs)
    written = []
    for suffix, fits_name in exports.items():
        image = kwargs["imagename"] + suffix
        if not Path(image).is_dir():
            raise RuntimeError(f"tclean made no {image}")
        target = Path(out) / fits_name
        exportfits(imagename=image, fitsimage=str(target), overwrite=True, dropdeg=False)
        written.append(str(target))
    made = moment_maps(kwargs["imagename"] + ".image.pbcor", moments, out) if moments else {}
    return {"dropped": dropped, "fits": written, "moments": made,
            **({"spw": kwargs["spw"]} if cont_ranges else {})}


def moment_maps(cube: str, moments: dict[str, Any], out: str) -> dict[str, Any]:
    """CASA child: immoments of a pbcor cube over its line channels (outside ``line_free``, the cont.dat
    ranges in their frame; every channel when there are none), moments other than 0, 8 and 10 only
    from pixels where the flat-noise cube (``.image`` beside the ``.image.pbcor``) is above 3 x its rms
    in the line-free channels (MAD; of the whole cube without them): one threshold holds across the
    field only before the primary-beam correction. Each map goes to FITS in ``out`` with a PNG
    quick-look beside it.

    Parameters
    ----------
    cube : str
        The pbcor cube (CASA image).
    moments : dict[str, Any]
        ``moments`` (ids), ``line_free`` ranges (low Hz, high Hz, frame) and ``fits`` (moment -> FITS name).
    out : str
        The output folder.

    Returns
    -------
    dict[str, Any]
        ``line_channels`` (runs of channels), ``rms`` (Jy/beam of the flat-noise cube), ``frame``,
        ``rms_from`` (the cube it was measured on) and ``maps`` (moment -> its FITS name and mask).
    """
    import numpy as np
    from casatasks import exportfits, immoments
    from casatools import image

    flat = cube[: -len(".pbcor")] if cube.endswith(".pbcor") and Path(cube[: -len(".pbcor")]).is_dir() else cube
    ia = image()
    ia.open(flat)
    try:
        data = np.asarray(ia.getchunk(dropdeg=False), dtype=float)     # x, y, stokes, chan
        mask = np.asarray(ia.getchunk(getmask=True, dropdeg=False), dtype=bool)
        cs = ia.coordsys()
        spectral = cs.findaxisbyname("spectral")
        nchan = data.shape[spectral]
        pixel = [0.0] * len(data.shape)
        freqs = []
        for c in range(nchan):
            pixel[spectral] = float(c)
            freqs.append(float(cs.toworld(pixel, "n")["numeric"][spectral]))
        frame = cs.referencecode("spectral")[0]
    finally:
        ia.close()
    free_ranges = [r for r in moments.get("line_free", []) if r[2] == frame or r[2] in ("", None)]
    free = [c for c, f in enumerate(freqs) if any(lo <= f <= hi for lo, hi, _ in free_ranges)]
    line = [c for c in range(nchan) if c not in free] or list(range(nchan))
    noise_chans = free or list(range(nchan))
    values = np.take(np.where(mask, data, np.nan), noise_chans, axis=spectral)
    values = values[np.isfinite(values)]
    rms = float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0
    made: dict[str, Any] = {"line_channels": [list(r) for r in channel_runs(line)], "rms": rms, "frame": frame,
                            "rms_from": Path(flat).name, "maps": {}}
    for m in moments["moments"]:
        outfile = f"{cube}.mom{m}"
        if Path(outfile).exists():
            shutil.rmtree(outfile)
        clip = "" if m in (0, 8, 10) else f'"{flat}" > {3 * rms:.6g}'
        immoments(imagename=cube, moments=[m], chans=";".join(f"{a}~{b}" for a, b in channel_runs(line)),
                  mask=clip, outfile=outfile)
        fits_name = moments["fits"][str(m)] if str(m) in moments["fits"] else moments["fits"][m]
        exportfits(imagename=outfile, fitsimage=str(Path(out) / fits_name), overwrite=True, dropdeg=True)
        made["maps"][str(m)] = {"fits": fits_name, "mask": clip}
    return made


def contsub_in_casa(run: dict[str, Any]) -> dict[str, Any]:
    """uvcontsub of one MS and field (its calibrated column), fitted on the channels whose frequency (in
    cont.dat's frame) lies in its ranges.

    Parameters
    ----------
    run : dict[str, Any]
        ``vis``, ``outputvis``, ``field``, ``ranges`` (spw id -> [(low Hz, high Hz, frame)]) and optionally
        ``datacolumn`` of one MS.

    Returns
    -------
    dict[str, Any]
        ``fitspec``: the channels the continuum was fitted on, per spw (uvcontsub's form).
    """
    from casatasks import uvcontsub

    fitspec = []
    for spw, ranges in run["ranges"].items():
        freqs = {frame: channel_frequencies(run["vis"], int(spw), frame, run["field"]) for frame in {r[2] for r in ranges}}
        n = len(next(iter(freqs.values())))
        chans = [i for i in range(n) if any(lo <= freqs[frame][i] <= hi for lo, hi, frame in ranges)]
        if not chans:
            raise RuntimeError(f"no channel of spw {spw} lies in the cont.dat ranges {ranges}")
        fitspec.append(f"{spw}:" + ";".join(f"{a}~{b}" for a, b in channel_runs(chans)))
    Path(run["outputvis"]).parent.mkdir(parents=True, exist_ok=True)
    if Path(run["outputvis"]).exists():
        shutil.rmtree(run["outputvis"])
    column = run.get("datacolumn") or calibrated_column(run["vis"])
    _check_column(run["vis"], column)
    # no spw selection: the output keeps the delivered spw ids (spws without ranges are fitted on all channels)
    uvcontsub(vis=run["vis"], outputvis=run["outputvis"], field=run["field"], fitspec=",".join(fitspec),
              fitorder=1, datacolumn=column)
    return {"fitspec": ",".join(fitspec)}


def cont_selection(vis: str, ranges: dict[str, list], field: str | None = None) -> str:
    """CASA child: a tclean spw selection of the channels of ``vis`` whose frequency (in each range's
    frame, towards ``field``) lies in cont.dat's ranges: '0:2~9;20~28,1' (a spw wholly inside: its id).

    Parameters
    ----------
    vis : str
        The MS.
    ranges : dict[str, list]
        spw id -> cont.dat ranges (low Hz, high Hz, frame).
    field : str | None, default None
        The field the frequencies are towards (None: the MS's first).

    Returns
    -------
    str
        The tclean spw selection.
    """
    parts = []
    for spw, spw_ranges in ranges.items():
        if not spw_ranges:
            continue
        freqs = {fr: channel_frequencies(vis, int(spw), fr, field) for fr in {r[2] for r in spw_ranges}}
        n = len(next(iter(freqs.values())))
        chans = [i for i in range(n) if any(lo <= freqs[fr][i] <= hi for lo, hi, fr in spw_ranges)]
        if len(chans) == n:
            parts.append(str(spw))
        elif chans:
            parts.append(f"{spw}:" + ";".join(f"{a}~{b}" for a, b in channel_runs(chans)))
    if not parts:
        raise RuntimeError(f"no channel of {vis} lies in the cont.dat ranges {ranges}")
    return ",".join(parts)


def _check_column(vis: str, column: str, fallback: bool = False) -> None:
    """CASA child: refuse to read ``column`` (data/corrected) of ``vis`` when the MS does not have it.
    ``fallback``: tclean runs with datacolumn='corrected' and reads DATA in this MS, which it does only
    when the MS has no CORRECTED_DATA."""
    from casatools import table

    name = {"data": "DATA", "corrected": "CORRECTED_DATA"}.get(column.lower(), column.upper())
    tb = table()
    tb.open(vis)
    try:
        names = tb.colnames()
    finally:
        tb.close()
    if name not in names:
        raise RuntimeError(f"{vis} has no {name} column to read the calibrated visibilities from "
                           f"(datacolumn='{column}'); restore the data again")
    if fallback and name == "DATA" and "CORRECTED_DATA" in names:
        raise RuntimeError(f"{vis} holds its calibrated data in DATA but also has a CORRECTED_DATA column, "
                           "which tclean (datacolumn='corrected' for the other MSs) would read; image it alone")


def channel_frequencies(vis: str, spw: int, frame: str = "LSRK", field: str | None = None) -> list[float]:
    """The channel centres (Hz) of one spw of an MS in ``frame``, towards ``field`` (a name; default the
    MS's first field) (CASA child).

    Parameters
    ----------
    vis : str
        The MS.
    spw : int
        The spw id.
    frame : str, default "LSRK"
        The frequency frame (LSRK, TOPO, ...).
    field : str | None, default None
        The field name (None: the MS's first field).

    Returns
    -------
    list[float]
        The channel centres in Hz.
    """
    from casatools import ms as mstool
    from casatools import msmetadata

    fieldids: list[int] = []
    if field:
        md = msmetadata()
        md.open(vis)
        try:
            fieldids = [int(md.fieldsforname(field)[0])]
        finally:
            md.close()
    ms = mstool()
    ms.open(vis)
    try:
        return [float(f) for f in ms.cvelfreqs(spwids=[spw], fieldids=fieldids, mode="channel", outframe=frame)]
    finally:
        ms.close()
