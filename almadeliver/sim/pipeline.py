"""The pipeline flavour of a simulated delivery: a real calibration and imaging run, delivered as the
ALMA pipeline delivers it.

``reduce_pipeline`` runs in a CASA child (``run_in_casa``) inside the run's ``working/`` folder,
next to ``rawdata/`` (symlinks to the ASDMs), like a pipeline run. For every EB it imports the ASDM
with the options hifa_importdata uses, flags (edge channels, the EB's flag template), sets the
amplitude calibrator's model (flux.csv), solves bandpass, phase and amplitude gains, transfers the
flux scale, runs the applycal calls it later writes to ``<EB>.ms.calapply.txt`` and saves the
flags as ``Pipeline_Final``. Then it images the target (a cube per spw and a continuum image from
the cont.dat channels) with the tclean calls it logs. Every CASA call is recorded as the pipeline's
``casa_commands.log`` records it (long calls wrapped over several lines).

``build_mous_in_casa`` (CASA child) simulates a MOUS's EBs and runs ``reduce_pipeline``; it stores the
calibrated CORRECTED_DATA and FLAG arrays of every EB in ``truth_dir`` (``<EB>.npz``) so a restore
can be compared with what the pipeline made. ``write_member_files`` (host side) then writes the
member's pipeline files: script/, calibration/, log/, product/, qa/ with ALMA's names
(``member.<MOUS>.`` prefix on MOUS-named files, as recent deliveries do; the PPR is
``member.<MOUS>.hifa_calimage.pprequest.xml``, which ALMA's scriptForPI finds with its pattern
``*cal*pprequest.xml``). deliveries._Builder.build_pipeline drives both and writes the README.

Science spws are the ``OBSERVE_TARGET`` spws with more than 4 channels (the pipeline's science
windows): the channel-averaged (1 channel) and WVR (4 channels) spws an ASDM carries are never
calibrated nor imaged.

Imaging layout by cycle (``modern_layout``): up to Cycle 8 the tclean calls image ``<EB>.ms`` with
``datacolumn='corrected'``; from Cycle 9 (PL2022 on) the pipeline first splits the calibrated target
data to ``<EB>_targets.ms`` (``hif_mstransform``: DATA = calibrated, spw ids kept) and subtracts the
continuum (cont.dat ranges) into ``<EB>_targets_line.ms`` (``hif_uvcontsub``); the cubes image
``<EB>_targets_line.ms`` and the continuum ``<EB>_targets.ms``, both with ``datacolumn='data'``.

``write_total_power_member`` writes the files of a Total Power MOUS (recipe ``hsd_calimage``: the
restore script calls ``hsd_restoredata``, Jy/K factors in ``jyperk.csv``).

script/ holds ``member.<MOUS>.scriptForPI.py``: the same scriptForPI as manual deliveries
(templates/scriptForPI.py), as ALMA ships one scriptForPI that takes the pipeline path (hifa_restoredata
via the casa_piperestorescript, CASA started with --pipeline) when script/ has a piperestorescript
and no scriptForCalibration.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from string import Template
from typing import Any

from ..casa.commands import CommandRecorder
from ..delivery.calapply import PIPELINE_INTENTS
from ..delivery.calls import TaskCall
from ..ids import Uid
from ..packaging.tarballs import tree_entries, write_tgz
from .manual import template

PIPELINE_VERSION = "2024.1.0.8 (almadeliver simulation)"
RECIPE = "hifa_calimage"
TP_RECIPE = "hsd_calimage"
MIN_SCIENCE_CHANNELS = 5   # science spws have more than 4 channels (WVR: 4, channel average: 1)
MODERN_LAYOUT_CYCLE = 9    # <EB>_targets.ms / <EB>_targets_line.ms imaging from Cycle 9 (PL2022) on
CUBE_EDGE = 2             # channels left out of the cubes at each spw edge
TRUTH_DIR = "truth"       # <project>/truth/<EB>.npz: what the simulation's calibration produced
FLAG_HEADER = """\
#
# User flagging commands file for the calibration pipeline
#
# Examples
# Note: Do not put spaces inside the reason string !
#
# mode='manual' correlation='YY' antenna='DV01;DV08;DA43;DA48&DV23' spw='21:1920~2880' autocorr=False reason='bad_channels'
# mode='manual' spw='25:0~3;122~127' reason='stage8_2'
# mode='manual' antenna='DV07' timerange='2013/01/31/08:09:55.248~2013/01/31/08:10:01.296' reason='quack'
#
"""


# -- how calls are written ----------------------------------------------------------------------------
def modern_layout(project: str) -> bool:
    """True when a project's pipeline images ``<EB>_targets.ms`` / ``<EB>_targets_line.ms`` (Cycle 9 on)."""
    from ..ids import ProjectCode

    return ProjectCode.parse(project).cycle >= MODERN_LAYOUT_CYCLE


def pprequest_name(mous: str, recipe: str = RECIPE) -> str:
    """The PPR file name as recent deliveries carry it; ALMA's scriptForPI finds it with ``*cal*pprequest.xml``."""
    return f"member.{mous}.{recipe}.pprequest.xml"


def calapply_line(kwargs: dict[str, Any]) -> str:
    """One line of ``<EB>.ms.calapply.txt``: the applycal call with pipeline intent names."""
    return TaskCall("applycal", kwargs, 0).render()


# -- CASA side -------------------------------------------------------------------------------------------
def _timerange(ms: str, scan: int) -> str:
    """A flag template timerange (``YYYY/MM/DD/hh:mm:ss.s~...``) covering the first half of a scan."""
    import casatools

    msmd, qa = casatools.msmetadata(), casatools.quanta()
    msmd.open(ms)
    times = sorted(msmd.timesforscan(scan))
    msmd.close()
    half = times[: max(1, len(times) // 2)]

    def fmt(t: float) -> str:
        return qa.time(qa.quantity(t, "s"), form=["ymd"], prec=9)[0]
    return f"{fmt(half[0] - 1.0)}~{fmt(half[-1] + 1.0)}"


def _channels(ms: str, spw: int, field_id: int) -> tuple[list[float], list[float], float]:
    """Channel frequencies of an spw: TOPO, LSRK (towards the field) and the channel width, in Hz."""
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(ms)
    topo = list(msmd.chanfreqs(spw))
    width = abs(float(msmd.chanwidths(spw)[0]))
    msmd.close()
    ms_tool = casatools.ms()
    ms_tool.open(ms)
    lsrk = list(ms_tool.cvelfreqs(spwids=[spw], fieldids=[field_id], mode="channel", outframe="LSRK"))
    ms_tool.close()
    return topo, lsrk, width


def _line_free(ms: str, spw: int, field_id: int, line: dict) -> tuple[list[tuple[int, int]], list[tuple[float, float]]]:
    """Line-free channel ranges of an spw (outside the line's range, plan.line_halfwidth_hz) and the same
    ranges in LSRK Hz."""
    from .plan import line_halfwidth_hz

    topo, lsrk, width = _channels(ms, spw, field_id)
    free = [abs(f - line["freq_hz"]) > line_halfwidth_hz(line) for f in topo]
    chans, freqs, start = [], [], None
    for i, ok in enumerate(free + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            chans.append((start, i - 1))
            lo, hi = sorted((lsrk[start], lsrk[i - 1]))
            freqs.append((lo - width / 2, hi + width / 2))
            start = None
    return chans, freqs


def _field_id(ms: str, name: str) -> int:
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(ms)
    fid = int(msmd.fieldsforname(name)[0])
    msmd.close()
    return fid


def _cell_arcsec(ms: str) -> float:
    """A fifth of the synthesized beam (lambda / longest baseline), rounded to 0.1 arcsec."""
    import math

    import casatools
    import numpy as np

    tb, msmd = casatools.table(), casatools.msmetadata()
    tb.open(ms)
    uvw = tb.getcol("UVW")
    tb.close()
    msmd.open(ms)
    freq = max(float(np.max(msmd.chanfreqs(s))) for s in range(msmd.nspw()) if msmd.nchan(s) > 4)   # science spws
    msmd.close()
    beam = 299_792_458.0 / freq / float(np.max(np.hypot(uvw[0], uvw[1]))) * 180 / math.pi * 3600
    return max(0.1, round(beam / 5, 1))


def science_spws(msmd: Any) -> list[int]:
    """The science spws of an open msmetadata: OBSERVE_TARGET spws with more than 4 channels."""
    return sorted(int(s) for s in msmd.spwsforintent("OBSERVE_TARGET*") if msmd.nchan(s) >= MIN_SCIENCE_CHANNELS)


def reduce_pipeline(mous: str, ebs: list[dict], roles: dict[str, str], flux: dict[str, float],
                    line: dict[str, float], truth_dir: str, modern: bool = False) -> dict:
    """Calibrate and image the EBs (``eb``: {"eb": disk uid, "session": "session_1"}) in the current
    folder (``working/``); ``rawdata/<EB>`` are the ASDMs. ``modern``: image ``<EB>_targets.ms`` and
    ``<EB>_targets_line.ms`` (see the module doc). Returns the calls, the calapply lines, cont.dat
    ranges, flux.csv rows, table names per session and the product images."""
    import casatools
    import numpy as np

    run = CommandRecorder()
    bp, ph, target = roles["bandpass"], roles["phase"], roles["target"]
    out: dict[str, Any] = {"calapply": {}, "tables": {}, "flux": [], "templates": {}, "qa": [], "roles": roles,
                           "sessions": {eb["eb"]: eb["session"] for eb in ebs}}
    msnames = []
    for eb in ebs:
        uid, vis = eb["eb"], f"{eb['eb']}.ms"
        msnames.append(vis)
        run.stage(f"hifa_importdata(vis=['{uid}'], session=['{eb['session']}'])")
        run("importasdm", asdm=f"../rawdata/{uid}", vis=vis, createmms=False, ocorr_mode="ca", lazy=False,
            asis="Antenna Station Receiver Source CalAtmosphere CalWVR CorrelatorMode SBSummary",
            process_caldevice=False, savecmds=True, outfile=f"{uid}.flagonline.txt", overwrite=False,
            bdfflags=True, with_pointing_correction=True)
        msmd = casatools.msmetadata()
        msmd.open(vis)
        spws = science_spws(msmd)
        nchan = {s: int(msmd.nchan(s)) for s in spws}
        freqs = {s: float(np.mean(msmd.chanfreqs(s))) for s in spws}
        antennas = list(msmd.antennanames())
        target_scans = sorted(int(s) for s in msmd.scansforintent("OBSERVE_TARGET#ON_SOURCE"))
        msmd.close()
        spw_sel = ",".join(map(str, spws))
        spw_tag = "spw" + "_".join(map(str, spws))
        refant = ",".join(antennas)

        run.stage("hifa_flagdata(pipelinemode='automatic')")
        run("flagdata", vis=vis, mode="manual", autocorr=True, reason="autocorr", flagbackup=False)
        edges = ",".join(f"{s}:0~0;{nchan[s] - 1}~{nchan[s] - 1}" for s in spws)
        run("flagdata", vis=vis, mode="manual", spw=edges, reason="edgespw", flagbackup=False)
        flagfile = f"{uid}_flagtemplate.txt"
        bad_ant = antennas[-1]
        Path(flagfile).write_text(
            FLAG_HEADER + f"mode='manual' antenna='{bad_ant}' spw='{spws[-1]}' "
            f"timerange='{_timerange(vis, target_scans[0])}' reason='amp_loss'\n")
        out["templates"][uid] = flagfile
        run.stage(f"hifa_flagtargets / hifa_flagdata(filetemplate='{flagfile}')")
        run("flagdata", vis=vis, mode="list", inpfile=flagfile, reason="any", action="apply", flagbackup=False)

        run.stage("hifa_fluxcalflag / hifa_importdata flux.csv: setjy of the amplitude calibrator")
        for s in spws:
            ratio = freqs[s] / flux["reffreq_hz"]
            i_jy = round(flux["flux_jy"] * ratio ** flux["spix"], 4)
            out["flux"].append({"ms": vis, "field": bp, "spw": s, "I": i_jy, "spix": flux["spix"]})
            run("setjy", vis=vis, field=bp, spw=str(s), standard="manual",
                fluxdensity=[i_jy, 0, 0, 0], spix=[flux["spix"]], reffreq=f"{freqs[s] / 1e9:.6f}GHz",
                scalebychan=True, usescratch=True)

        prefix = f"{vis}.hifa"
        phaseup = f"{prefix}_bandpass.s6_2.{spw_tag}.solintint.gpcal.tbl"
        bcal = f"{prefix}_bandpass.s6_3.{spw_tag}.channel.solintinf.bcal.tbl"
        gp_int = f"{prefix}_timegaincal.s9_1.{spw_tag}.solintint.gpcal.tbl"
        gp_inf = f"{prefix}_timegaincal.s9_2.{spw_tag}.solintinf.gpcal.tbl"
        ga_inf = f"{prefix}_timegaincal.s9_3.{spw_tag}.solintinf.gacal.tbl"
        fluxscaled = f"{prefix}_gfluxscale.s9_4.{spw_tag}.solintinf.fluxscale.gacal.tbl"
        bp_intent = "CALIBRATE_BANDPASS#ON_SOURCE"
        ph_intent = "CALIBRATE_PHASE#ON_SOURCE"
        run.stage("hifa_bandpass(pipelinemode='automatic')")
        run("gaincal", vis=vis, caltable=phaseup, field=bp, intent=bp_intent, spw=spw_sel, solint="int",
            combine="", refant=refant, minsnr=3.0, calmode="p", gaintype="G")
        run("bandpass", vis=vis, caltable=bcal, field=bp, intent=bp_intent, spw=spw_sel, solint="inf",
            combine="scan", refant=refant, minsnr=3.0, bandtype="B", solnorm=True, gaintable=[phaseup])
        run.stage("hifa_timegaincal(pipelinemode='automatic')")
        cals = f"{bp},{ph}"
        cal_intents = f"{bp_intent},{ph_intent}"
        run("gaincal", vis=vis, caltable=gp_int, field=cals, intent=cal_intents, spw=spw_sel, solint="int",
            refant=refant, minsnr=3.0, calmode="p", gaintype="G", gaintable=[bcal])
        run("gaincal", vis=vis, caltable=gp_inf, field=ph, intent=ph_intent, spw=spw_sel, solint="inf",
            refant=refant, minsnr=3.0, calmode="p", gaintype="G", gaintable=[bcal])
        run("gaincal", vis=vis, caltable=ga_inf, field=cals, intent=cal_intents, spw=spw_sel, solint="inf",
            refant=refant, minsnr=3.0, calmode="a", gaintype="T", gaintable=[bcal, gp_int])
        run.stage("hifa_gfluxscale(pipelinemode='automatic')")
        run("fluxscale", vis=vis, caltable=ga_inf, fluxtable=fluxscaled, reference=bp, transfer=ph)
        out["tables"].setdefault(eb["session"], []).extend([bcal, gp_int, gp_inf, fluxscaled])

        run.stage("hif_applycal(pipelinemode='automatic')")
        applies = [
            ("AMPLITUDE,BANDPASS", bp, [bcal, gp_int, fluxscaled], ["", bp, bp]),
            ("PHASE", ph, [bcal, gp_int, fluxscaled], ["", ph, ph]),
            ("TARGET", target, [bcal, gp_inf, fluxscaled], ["", ph, ph]),
        ]
        lines = []
        for intent, fld, tables, gainfield in applies:
            kwargs = dict(vis=vis, field=fld, intent=intent, spw=spw_sel, antenna="", gaintable=tables,
                          gainfield=gainfield, spwmap=[[] for _ in tables],
                          interp=["linear,linear"] + ["linear"] * (len(tables) - 1),
                          calwt=[False] * len(tables), parang=False, applymode="calflagstrict",
                          flagbackup=False)
            lines.append(calapply_line(kwargs))
            ms_intent = ",".join(PIPELINE_INTENTS[n] for n in intent.split(","))
            run("applycal", **{**kwargs, "intent": ms_intent})
        out["calapply"][uid] = lines
        run.stage("hifa_exportdata: final flags")
        run("flagmanager", vis=vis, mode="save", versionname="Pipeline_Final",
            comment="Final flags saved at the end of the pipeline run", merge="replace")

        tb = casatools.table()
        tb.open(vis)
        truth = {}
        for s in spws:   # per science spw (the spws differ in channels; DATA_DESCRIPTION row = spw id here)
            sel = tb.query(f"DATA_DESC_ID=={s}")
            truth[f"corrected_{s}"], truth[f"flag_{s}"] = sel.getcol("CORRECTED_DATA"), sel.getcol("FLAG")
            sel.close()
        np.savez(Path(truth_dir) / f"{uid}.npz", spw=np.array(spws), **truth)
        sel = tb.query(f"FIELD_ID=={_field_id(vis, ph)} && DATA_DESC_ID=={spws[-1]}")
        raw_phase = np.degrees(np.angle(np.ma.masked_array(sel.getcol("DATA"), sel.getcol("FLAG"))))
        cal_phase = np.degrees(np.angle(np.ma.masked_array(sel.getcol("CORRECTED_DATA"), sel.getcol("FLAG"))))
        sel.close()
        tb.close()
        out["qa"].append({"eb": uid, "phase_rms_deg": float(cal_phase.std()), "raw_phase_rms_deg": float(raw_phase.std())})
        out.setdefault("spws", spws)

    out["images"], out["contdat"], out["allcont"] = _image(run, mous, msnames, roles, out["spws"], line, modern)
    out["commands"] = run.lines
    return out


def _split_targets(run: CommandRecorder, msnames: list[str], target: str, spws: list[int],
                   fitspec: dict[int, list[tuple[int, int]]]) -> tuple[list[str], list[str]]:
    """hif_mstransform and hif_uvcontsub (PL2022 on): ``<EB>_targets.ms`` (the calibrated target data in
    DATA, spw ids kept) and ``<EB>_targets_line.ms`` (continuum subtracted on the cont.dat channels)."""
    targets, lines = [], []
    spw_sel = ",".join(map(str, spws))
    spec = ",".join(f"{s}:" + ";".join(f"{a}~{b}" for a, b in fitspec[s]) for s in spws if s in fitspec)
    run.stage("hif_mstransform(pipelinemode='automatic')")
    for vis in msnames:
        out = vis[: -len(".ms")] + "_targets.ms"
        run("mstransform", vis=vis, outputvis=out, field=target, intent="OBSERVE_TARGET#ON_SOURCE", spw=spw_sel,
            datacolumn="corrected", reindex=False, keepflags=True)
        targets.append(out)
    run.stage("hif_uvcontsub(pipelinemode='automatic')")
    for vis in targets:
        out = vis[: -len("_targets.ms")] + "_targets_line.ms"
        run("uvcontsub", vis=vis, outputvis=out, field=target, fitspec=spec, fitorder=1, datacolumn="data")
        lines.append(out)
    return targets, lines


def _image(run: CommandRecorder, mous: str, msnames: list[str], roles: dict[str, str], spws: list[int],
           line: dict[str, float], modern: bool = False
           ) -> tuple[list[dict], dict[int, list[tuple[float, float]]], list[int]]:
    """Cubes per spw and a continuum image of the target; returns (images, cont.dat ranges, the spws
    that are all continuum: cont.dat's ALLCONT)."""
    target = roles["target"]
    field_id = _field_id(msnames[0], target)
    cell = f"{_cell_arcsec(msnames[0])}arcsec"
    common = dict(field=target, intent="OBSERVE_TARGET#ON_SOURCE", datacolumn="corrected",
                  imsize=[64, 64], cell=[cell], stokes="I", gridder="standard", pblimit=0.2,
                  weighting="briggs", robust=0.5, interactive=False, parallel=False)
    contdat, cont_spw, allcont, fitspec = {}, [], [], {}
    for s in spws:
        chans, freqs = _line_free(msnames[0], s, field_id, line)
        if not chans:
            continue
        contdat[s] = freqs
        fitspec[s] = chans
        whole = len(chans) == 1 and chans[0][0] == 0
        if whole:
            allcont.append(s)
        cont_spw.append(str(s) if whole else f"{s}:" + ";".join(f"{a}~{b}" for a, b in chans))
    cube_vis = cont_vis = msnames
    if modern:
        cont_vis, cube_vis = _split_targets(run, msnames, target, spws, fitspec)
        common["datacolumn"] = "data"
    images = []
    run.stage("hif_makeimages(specmode='cube')")
    for s in spws:
        # like hif_makeimages: the cube stops CUBE_EDGE channels short of each (flagged) spw edge, so no
        # LSRK cube channel depends on a flagged edge channel
        nchan = len(_channels(msnames[0], s, field_id)[0])
        base = f"{mous}.s36_0.{target}_sci.spw{s}.cube.I"
        run("tclean", **common, vis=cube_vis, spw=[str(s)] * len(msnames), imagename=f"{base}.iter1", specmode="cube",
            start=CUBE_EDGE, width=1, nchan=nchan - 2 * CUBE_EDGE, outframe="LSRK", deconvolver="hogbom",
            niter=20, threshold="0.1Jy", pbcor=True, restoringbeam="common")
        images.append({"image": f"{base}.iter1.image.pbcor", "fits": f"{mous}.{target}_sci.spw{s}.cube.I.pbcor.fits"})
        images.append({"image": f"{base}.iter1.pb", "fits": f"{mous}.{target}_sci.spw{s}.cube.I.pb.fits"})
    run.stage("hif_makeimages(specmode='cont')")
    tag = "spw" + "_".join(map(str, spws))
    base = f"{mous}.s38_0.{target}_sci.{tag}.cont.I"
    for it, niter in (("iter0", 0), ("iter1", 50)):
        run("tclean", **common, vis=cont_vis, spw=[",".join(cont_spw)] * len(msnames), imagename=f"{base}.{it}",
            specmode="mfs", deconvolver="mtmfs", nterms=2, niter=niter, threshold="0.01Jy", pbcor=it == "iter1")
    images.append({"image": f"{base}.iter1.image.tt0.pbcor", "fits": f"{mous}.{target}_sci.{tag}.cont.I.tt0.pbcor.fits"})
    images.append({"image": f"{base}.iter1.pb.tt0", "fits": f"{mous}.{target}_sci.{tag}.cont.I.pb.tt0.fits"})
    run.stage("hifa_exportdata(pipelinemode='automatic')")
    for img in images:
        run("exportfits", imagename=img["image"], fitsimage=f"products/{img['fits']}", velocity=False,
            optical=False, bitpix=-32, minpix=0, maxpix=-1, overwrite=True, dropstokes=False, stokeslast=True,
            history=True, dropdeg=False)
    return images, {int(k): v for k, v in contdat.items()}, allcont


# -- host side ----------------------------------------------------------------------------------------------
def _weblog(out: Path, work: Path, mous: str, res: dict) -> Path:
    """A small weblog (``pipeline-<stamp>/html/index.html``: per EB phase rms, the products)."""
    html = work / "weblog" / "pipeline-simulated" / "html"
    html.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"<tr><td>{q['eb']}</td><td>{q['raw_phase_rms_deg']:.1f}</td><td>{q['phase_rms_deg']:.1f}</td></tr>"
                   for q in res["qa"])
    images = "".join(f"<li>{img['fits']}</li>" for img in res["images"])
    (html / "index.html").write_text(
        f"<html><head><title>Pipeline weblog {mous}</title></head><body><h1>{mous} ({RECIPE})</h1>"
        f"<table><tr><th>EB</th><th>raw phase rms (deg)</th><th>calibrated phase rms (deg)</th></tr>{rows}</table>"
        f"<ul>{images}</ul></body></html>\n")
    return write_tgz(out, tree_entries(html.parent))


#: cont.dat generations the pipeline has written (ALMA-FACTS.md section 3); the simulated pipeline
#: (PIPELINE_VERSION 2024) writes the newest unless asked otherwise.
CONTDAT_GENERATIONS = (1, 2, 3)


def contdat_text(target: str, ranges: dict[int, list[tuple[float, float]]], generation: int = 3,
                 flags: dict[int, list[str]] | None = None, spw_names: dict[int, str] | None = None) -> str:
    """cont.dat as the pipeline writes it, in one of its three generations.

    Parameters
    ----------
    target : str
        The field name.
    ranges : dict
        spw id -> [(low Hz, high Hz)] LSRK continuum ranges (an empty list: no continuum found).
    generation : int
        1: the field name alone, ``SPW<id>``, ``lo~hiGHz`` without frame (ranges in TOPO, as the old
        pipeline wrote them); 2: ``Field:``, ``SpectralWindow: <id>``, ``lo~hiGHz LSRK``, ``NONE`` for a
        spw without continuum and ``ALL`` for an all-continuum one; 3: ``SpectralWindow: <id> <name>``,
        ``Flags:`` (``ALLCONT`` ...), an all-continuum spw as its line with no ranges (ALMA-FACTS.md
        section 3), ``NONE`` for a spw without continuum.
    flags : dict, optional
        spw id -> flags (``ALLCONT``, ``LOWBANDWIDTH``, ``LOWSPREAD``); generation 2 writes ``ALLCONT``
        as ``ALL``, generation 1 drops flags.
    spw_names : dict, optional
        spw id -> spw name (generation 3); default ``ALMA_RB_xx#BB_n#SW-01#FULL_RES``-like names.
    """
    if generation not in CONTDAT_GENERATIONS:
        raise ValueError(f"cont.dat generation {generation} is not one of {CONTDAT_GENERATIONS}")
    flags = flags or {}
    out = [target if generation == 1 else f"Field: {target}", ""]
    for i, (spw, rs) in enumerate(sorted(ranges.items())):
        spw_flags = flags.get(spw, [])
        if generation == 1:
            out.append(f"SPW{spw}")
        elif generation == 2:
            out.append(f"SpectralWindow: {spw}")
        else:
            name = (spw_names or {}).get(spw, f"X{spw:x}#ALMA_RB_03#BB_{i + 1}#SW-01#FULL_RES")
            out.append(f"SpectralWindow: {spw} {name}")
            if spw_flags:
                out.append(f"Flags: {' '.join(spw_flags)}")
        frame = "" if generation == 1 else " LSRK"
        out += [f"{lo / 1e9:.10f}~{hi / 1e9:.10f}GHz{frame}" for lo, hi in rs]
        if generation == 2 and "ALLCONT" in spw_flags:
            out.append("ALL")
        elif not rs and "ALLCONT" not in spw_flags:
            out.append("NONE")
        out.append("")
    return "\n".join(out)


def _manifest(mous: str, sessions: dict[str, str], files: dict[str, str], images: list[str]) -> str:
    by_session: dict[str, list[str]] = {}
    for eb, session in sessions.items():
        by_session.setdefault(session, []).append(eb)
    lines = ['<?xml version="1.0" ?>', "<ProductList>", f'    <ousstatus name="{mous}">',
             f'        <pipeline_version name="{PIPELINE_VERSION}"/>', '        <casa_version name="6.7.0"/>']
    for session, ebs in sorted(by_session.items()):
        lines.append(f'        <session name="{session}">')
        lines.append(f'            <caltables name="{files["caltables"].format(session=session)}"/>')
        for eb in ebs:
            lines += [f'            <asdm name="{eb}">',
                      f'                <finalflags name="{eb}.ms.flagversions.tgz"/>',
                      f'                <applycmds name="{eb}.ms.calapply.txt"/>',
                      "            </asdm>"]
        lines.append("        </session>")
    for tag in ("casa_cmdlog", "pprequest", "restorescript", "casa_pipescript", "contdat"):
        lines.append(f'        <{tag} name="{files[tag]}"/>')
    lines += [f'        <image imtype="science" name="{name}"/>' for name in images]
    lines += ["    </ousstatus>", "</ProductList>", ""]
    return "\n".join(lines)


def _template(name: str, **values: str) -> str:
    """templates/pipeline_<name>.in with ``$name`` placeholders filled."""
    return Template(template(f"pipeline_{name}.in")).substitute(values)


def build_mous_in_casa(plan: dict, index: int, member: str, work: str, truth_dir: str) -> dict:
    """CASA side of one MOUS: simulate its EBs into ``member/raw``, then ``reduce_pipeline`` in
    ``work/working`` (``work/rawdata`` links to the ASDMs, as in a pipeline run)."""
    import os

    from .observe import observe_mous

    mous = plan["mous"][index]
    work_p, raw = Path(work), Path(member) / "raw"
    observed = observe_mous(plan, index, raw, work_p / "sim")
    (work_p / "rawdata").mkdir(parents=True, exist_ok=True)
    (work_p / "working" / "products").mkdir(parents=True, exist_ok=True)
    ebs = [eb["uid"].replace("uid://", "uid___").replace("/", "_") for eb in mous["ebs"]]
    for eb in ebs:
        link = work_p / "rawdata" / eb
        if not link.is_symlink():
            link.symlink_to(raw.resolve() / f"{eb}.asdm.sdm")
    shutil.rmtree(work_p / "sim", ignore_errors=True)
    Path(truth_dir).mkdir(parents=True, exist_ok=True)
    fields = plan["fields"]
    roles = {f["role"]: f["name"] for f in fields}
    amp = next(f for f in fields if f["role"] == "bandpass")
    comp = amp["components"][0]
    flux = {"flux_jy": comp["flux_jy"], "spix": comp.get("spix", 0.0), "reffreq_hz": amp["ref_freq_hz"]}
    line = next(c["line"] for f in fields for c in f["components"] if c.get("line"))
    os.chdir(work_p / "working")
    result = reduce_pipeline(Uid(mous["uid"]).disk, [{"eb": eb, "session": f"session_{i + 1}"} for i, eb in enumerate(ebs)],
                             roles, flux, line, truth_dir, modern=modern_layout(plan["code"]))
    result["observed"] = {eb["uid"]: info for eb, info in zip(mous["ebs"], observed)}
    return result


def write_member_files(member_dir: Path, res: dict, *, project: str, mous: str, gous: str, sb_name: str,
                       work: Path, contdat_generation: int = 3) -> None:
    """The member's pipeline files (script/, calibration/, log/, product/) from a ``reduce_pipeline``
    result whose run folder is ``work``; cont.dat in the given generation (see ``contdat_text``)."""
    ebs = sorted(res["calapply"])
    sessions = res["sessions"]
    roles = res["roles"]
    names = {
        "caltables": f"member.{mous}.{{session}}.caltables.tgz",
        "casa_cmdlog": f"member.{mous}.casa_commands.log",
        "pprequest": pprequest_name(mous),
        "restorescript": f"member.{mous}.{RECIPE}.casa_piperestorescript.py",
        "casa_pipescript": f"member.{mous}.{RECIPE}.casa_pipescript.py",
        "contdat": f"member.{mous}.cont.dat",
    }
    dirs = {d: member_dir / d for d in ("script", "calibration", "log", "product", "qa")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    cal = dirs["calibration"]
    for eb in ebs:
        (cal / f"{eb}.ms.calapply.txt").write_text("\n".join(res["calapply"][eb]) + "\n")
        shutil.copyfile(work / res["templates"][eb], cal / res["templates"][eb])
        (cal / f"{eb}_flagtargetstemplate.txt").write_text(FLAG_HEADER.replace("calibration pipeline", "imaging pipeline"))
        write_tgz(cal / f"{eb}.ms.flagversions.tgz", tree_entries(work / f"{eb}.ms.flagversions"))
    for session, tables in res["tables"].items():
        entries = [e for t in tables for e in tree_entries(work / t)]
        write_tgz(cal / names["caltables"].format(session=session), entries)
    contdat = {int(k): v for k, v in res["contdat"].items()}
    allcont = {s: ["ALLCONT"] for s in res.get("allcont", [])}
    (cal / names["contdat"]).write_text(contdat_text(roles["target"], contdat, contdat_generation, flags=allcont))
    rows = ["ms,field,spw,I,Q,U,V,spix,uvmin,uvmax,comment"]
    rows += [f"{r['ms']},{r['field']},{r['spw']},{r['I']},0.0,0.0,0.0,{r['spix']},0.0,0.0,\"# simulated\""
             for r in res["flux"]]
    (cal / "flux.csv").write_text("\n".join(rows) + "\n")
    (dirs["log"] / names["casa_cmdlog"]).write_text("\n".join(res["commands"]) + "\n")
    products = []
    for img in res["images"]:
        dest = dirs["product"] / f"member.{img['fits']}"
        shutil.copyfile(work / "products" / img["fits"], dest)
        products.append(dest.name)
    _weblog(dirs["qa"] / f"member.{mous}.{RECIPE}.weblog.tgz", work, mous, res)
    vis_list = repr(ebs)
    session_list = repr([sessions[eb] for eb in ebs])
    (dirs["script"] / names["restorescript"]).write_text(_template(
        "casa_piperestorescript.py", vis=vis_list, session=session_list))
    (dirs["script"] / names["casa_pipescript"]).write_text(_template(
        "casa_pipescript.py", vis=vis_list, session=session_list))
    (dirs["script"] / names["pprequest"]).write_text(_template(
        "pprequest.xml", mous=mous, gous=gous, project=project, sb_name=sb_name, recipe=RECIPE,
        asdms="\n".join(f"                <AsdmIdentifier><AsdmDiskName>{eb}</AsdmDiskName></AsdmIdentifier>"
                        for eb in ebs)))
    (dirs["script"] / f"member.{mous}.scriptForPI.py").write_text(template("scriptForPI.py"))
    (cal / f"member.{mous}.pipeline_manifest.xml").write_text(_manifest(mous, sessions, names, products))


# -- Total Power -----------------------------------------------------------------------------------------
TP_ANTENNAS = ("PM01", "PM02", "PM03", "PM04")


def write_total_power_member(member_dir: Path, *, project: str, mous: str, gous: str, sb_name: str,
                             ebs: list[str], spws: tuple[int, ...] = (17, 19, 21, 23)) -> None:
    """The script/ and calibration/ files of a Total Power MOUS calibrated by the pipeline (recipe
    ``hsd_calimage``), as ALMA delivers them [ALMA-FACTS.md section 3]: the restore script calls
    ``hsd_restoredata`` (autocorrelations, ``ocorr_mode='ao'``), the Jy/K factors per EB, antenna, spw
    and polarisation are in ``calibration/jyperk.csv``, and ``<EB>.ms.calapply.txt`` applies the
    sky (``.skycal.tbl``) and Tsys tables. The simulator cannot write a single-dish ASDM (simobserve
    makes interferometer data), so the member is written as delivered before its raw tarballs are
    unpacked (no raw/)."""
    dirs = {d: member_dir / d for d in ("script", "calibration", "log", "product", "qa")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    sessions = [f"session_{i + 1}" for i in range(len(ebs))]
    vis, session = repr(list(ebs)), repr(sessions)
    script = dirs["script"]
    (script / f"member.{mous}.{TP_RECIPE}.casa_piperestorescript.py").write_text(
        "__rethrow_casa_exceptions = True\nh_init()\ntry:\n"
        f"    hsd_restoredata (vis={vis}, session={session}, ocorr_mode='ao')\n"
        "finally:\n    h_save()\n")
    steps = ["hsd_importdata(vis={vis}, session={session})", "hsd_flagdata(pipelinemode=\"automatic\")",
             "h_tsyscal(pipelinemode=\"automatic\")", "hsd_tsysflag(pipelinemode=\"automatic\")",
             "hsd_skycal(pipelinemode=\"automatic\")", "hsd_k2jycal(dbservice=True, endpoint='asdm')",
             "hsd_applycal(pipelinemode=\"automatic\")", "hsd_atmcor(pipelinemode=\"automatic\")",
             "hsd_baseline(pipelinemode=\"automatic\")", "hsd_blflag(pipelinemode=\"automatic\")",
             "hsd_baseline(pipelinemode=\"automatic\")", "hsd_blflag(pipelinemode=\"automatic\")",
             "hsd_imaging(pipelinemode=\"automatic\")", "hsd_exportdata(pipelinemode=\"automatic\")"]
    (script / f"member.{mous}.{TP_RECIPE}.casa_pipescript.py").write_text(
        "__rethrow_casa_exceptions = True\ncontext = h_init()\n"
        "context.set_state('ProjectSummary', 'observatory', 'ALMA Joint Observatory')\n"
        "context.set_state('ProjectSummary', 'telescope', 'ALMA')\ntry:\n"
        + "".join(f"    {s.format(vis=vis, session=session)}\n" for s in steps) + "finally:\n    h_save()\n")
    (script / pprequest_name(mous, TP_RECIPE)).write_text(_template(
        "pprequest.xml", mous=mous, gous=gous, project=project, sb_name=sb_name, recipe=TP_RECIPE,
        asdms="\n".join(f"                <AsdmIdentifier><AsdmDiskName>{eb}</AsdmDiskName></AsdmIdentifier>"
                        for eb in ebs)))
    (script / f"member.{mous}.scriptForPI.py").write_text(template("scriptForPI.py"))
    cal = dirs["calibration"]
    rows = ["MS,Antenna,Spwid,Polarization,Factor"]
    for i, eb in enumerate(ebs):
        sky = f"{eb}.ms.hsd_skycal.s6_1.spw{'_'.join(map(str, spws))}.skycal.tbl"
        tsys = f"{eb}.ms.h_tsyscal.s4_1.tsyscal.tbl"
        line = TaskCall("applycal", dict(
            vis=f"{eb}.ms", field="", intent="TARGET", spw=",".join(map(str, spws)), antenna="",
            gaintable=[sky, tsys], gainfield=["", ""], spwmap=[[], []], interp=["linear,linear", "linear,linear"],
            calwt=[True, True], applymode="calflagstrict", flagbackup=False), 0).render()
        (cal / f"{eb}.ms.calapply.txt").write_text(line + "\n")
        for j, ant in enumerate(TP_ANTENNAS):
            for k, spw in enumerate(spws):
                for pol in ("XX", "YY"):
                    rows.append(f"{eb}.ms,{ant},{spw},{pol},{40.0 + 0.7 * j + 0.3 * k + 0.1 * i + (pol == 'YY') * 0.2:.3f}")
    (cal / "jyperk.csv").write_text("\n".join(rows) + "\n")
