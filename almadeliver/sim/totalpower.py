"""Total Power (single-dish) manual members: the TP execution block, its calibration script, the reducer's run.

An ALMA Total Power EB is observed by the 12m TP antennas (PM01..PM04) of the ACA and holds only
autocorrelations. Its scans follow the position-switching pattern a manual TP calibration script
expects (ALMA-FACTS.md section 3): a CALIBRATE_ATMOSPHERE scan (the Tsys measurement, in SYSCAL)
and OBSERVE_TARGET scans whose subscans alternate OFF_SOURCE (the reference sky) and ON_SOURCE.

Parent side: ``tp_plan`` turns the members of a plan into TP members, ``write_sd_scripts`` writes
``<EB>.ms.scriptForSDCalibration.py`` in the form ALMA's script generator (``SDscience``, CASA
6.4.3 and later) writes it, plus the reducer's Jy/K factors. CASA side: ``simulate_tp_ms`` (the
MS from casatools.simulator, cross-correlations removed, spectra written as the counts a
total-power detector gives), ``observe_tp_mous`` (the ASDMs) and ``build_tp_mous_in_casa`` (the
reducer's run through scriptForPI, the harvest of tables, QA and the calibrated product).

What scriptForPI v2.x leaves of a TP EB: it runs the SD script in ``calibrated/<EB>.calibration/``
and moves only ``<EB>.ms.split.cal`` up, which an SD script never writes; the calibrated TP data,
``<EB>.ms.cal`` (baseline-subtracted, in Jy), stay in ``calibrated/<EB>.calibration/``
(``TP_CALIBRATED_SUFFIX``; the generator's scriptForSDimaging.py images ``<EB>.ms.cal``).
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..delivery.layout import TP_CALIBRATED_SUFFIX
from ..ids import Uid
from .manual import fill, generator_header, script_folder, template
from .observe import rewrite_rows, set_up_simulator, spw_rows
from .plan import MousPlan, ProjectPlan

# One PM antenna: exportasdm cannot write autocorrelation-only data of several antennas (MS2ASDM:
# "Baseline 1 not found"); real TP EBs have one to four (PM01..PM04).
TP_ANTENNAS = 1
TP_CONFIG = "aca.tp.cfg"             # casadata alma/simmos: the TP antennas' pads
JY_PER_K = 42.0                      # the Jy/K factor of a 12m TP antenna in band 3 (about 40)
# The scans of a TP EB: (intents, subscan intents). Each subscan lasts observe.SCAN_S with
# observe.SCAN_GAP_S after it, so that exportasdm makes one subscan of each (observe.SUBSCAN_S).
TP_SCAN_PLAN: list[tuple[list[str], list[str]]] = [
    (["CALIBRATE_ATMOSPHERE"], ["AMBIENT", "HOT"]),
    (["OBSERVE_TARGET"], ["OFF_SOURCE", "ON_SOURCE", "OFF_SOURCE"]),
    (["OBSERVE_TARGET"], ["ON_SOURCE", "OFF_SOURCE"]),
]
LINE_PEAK_K = 1.5                    # antenna temperature of the target's line at its peak
CONTINUUM_K = 0.05


def tp_plan(plan: ProjectPlan) -> ProjectPlan:
    """The plan with every member OUS observed by the Total Power array (``array`` TP, PM
    antennas, scheduling block ``..._TP``); uids and fields stay as planned."""
    members = [replace(m, array="TP", config=TP_CONFIG, antennas=TP_ANTENNAS,
                       sb_name=m.sb_name.rsplit("_", 1)[0] + "_TP") for m in plan.mous]
    return replace(plan, mous=members)


def jyperk_csv(mous: MousPlan, nspw: int, antennas: list[str]) -> str:
    """The reducer's Jy/K factors as gencal(caltype='jyperk', infile=...) reads them (the columns
    of the pipeline's jyperk.csv: MS, Antenna, Spwid, Polarization, Factor)."""
    lines = ["MS,Antenna,Spwid,Polarization,Factor"]
    for eb in mous.ebs:
        for a, name in enumerate(antennas):
            for spw in range(nspw):
                lines.append(f"{eb.disk}.ms,{name},{spw},I,{JY_PER_K + 0.5 * a - 0.25 * spw:.2f}")
    return "\n".join(lines) + "\n"


def jyperk_name(mous: MousPlan) -> str:
    """The reducer's Jy/K factors in calibration/ (scriptForPI runs the SD script two folders below)."""
    return f"{mous.disk}.jyperk.csv"


def tp_antenna_names(count: int = TP_ANTENNAS) -> list[str]:
    """The names of ``count`` TP antennas: PM01, PM02, ..."""
    return [f"PM{i + 1:02d}" for i in range(count)]


def sd_calibration_values(plan: ProjectPlan, mous: MousPlan, eb_disk: str) -> dict[str, object]:
    """The placeholders of templates/scriptForSDCalibration.py.in for EB ``eb_disk``."""
    spws = ",".join(str(i) for i in range(len(plan.spws)))
    target = plan.field("target")["name"]
    edges = ",".join(f"{i}:0~0;{s['nchan'] - 1}~{s['nchan'] - 1}" for i, s in enumerate(plan.spws))
    return {"EB": eb_disk, "CASAVERSION": plan.casa_version, "HEADER": generator_header(plan.casa_version),
            "TARGET": target, "SPWS": spws, "EDGECHANNELS": edges, "JYPERK": f"../../calibration/{jyperk_name(mous)}"}


def write_sd_scripts(plan: ProjectPlan, mous: MousPlan, member: Path) -> None:
    """script/: scriptForPI.py and one ``<EB>.ms.scriptForSDCalibration.py`` per EB; calibration/:
    the reducer's Jy/K factors (``<MOUS>.jyperk.csv``)."""
    script = script_folder(member)
    for eb in mous.ebs:
        (script / f"{eb.disk}.ms.scriptForSDCalibration.py").write_text(
            fill(template("scriptForSDCalibration.py.in"), sd_calibration_values(plan, mous, eb.disk)))
    (member / "calibration").mkdir(parents=True, exist_ok=True)
    (member / "calibration" / jyperk_name(mous)).write_text(
        jyperk_csv(mous, len(plan.spws), tp_antenna_names(mous.antennas)))


# -- CASA side ---------------------------------------------------------------------------------------
def _tp_antennas(count: int) -> dict[str, Any]:
    """``count`` TP antennas: PM names on the ACA's TP pads (the first pads of the ACA configuration
    when casadata has no TP configuration)."""
    import casatools
    from casatasks.private.simutil import simutil

    path = casatools.ctsys.resolve(f"alma/simmos/{TP_CONFIG}")
    if not Path(path).exists():
        path = casatools.ctsys.resolve("alma/simmos/aca.cycle7.cfg")
    x, y, z, d, pads, _names, _tel, _pos = simutil().readantenna(path)
    order = list(range(count))
    return {"x": [float(x[i]) for i in order], "y": [float(y[i]) for i in order], "z": [float(z[i]) for i in order],
            "diameter": [12.0] * count, "pads": [pads[i] for i in order], "names": tp_antenna_names(count)}


def _fill_spectra(ms: str, spws: list[dict], blocks: list[dict], target: dict, seed: int,
                  integration_s: float) -> None:
    """Autocorrelation spectra as a total-power detector gives them: gain x (Tsys + source), with
    Tsys from SYSCAL (the same spectrum gencal's Tsys table carries), the target's line and
    continuum (K) on ON_SOURCE only, and radiometer noise; real, positive."""
    import casatools

    rng = np.random.default_rng(seed + 7)
    tb = casatools.table()
    tb.open(f"{ms}/SYSCAL")
    tsys = {(int(a), int(s)): np.asarray(t)[0] for a, s, t in zip(tb.getcol("ANTENNA_ID"), tb.getcol("SPECTRAL_WINDOW_ID"),
                                                                  [tb.getcell("TSYS_SPECTRUM", r) for r in range(tb.nrows())])}
    tb.close()
    tb.open(ms, nomodify=False)
    for s, spw, sub, freqs in spw_rows(tb, spws):
        line = target["components"][0].get("line")
        source = np.full(spw["nchan"], CONTINUUM_K)
        if line:
            source = source + LINE_PEAK_K * np.exp(-0.5 * ((freqs - line["freq_hz"]) / line["sigma_hz"]) ** 2)
        ants, times = sub.getcol("ANTENNA1"), sub.getcol("TIME")
        data = np.zeros((2, spw["nchan"], len(ants)), dtype=complex)
        for r, (a, t) in enumerate(zip(ants, times)):
            block = next((b for b in blocks if b["start_s"] <= t <= b["stop_s"]), None)
            on = block is not None and block["subscan"] == "ON_SOURCE"
            hot = block is not None and block["subscan"] in ("HOT", "AMBIENT")
            base = tsys.get((int(a), s), np.full(spw["nchan"], 70.0))
            sky = base + (source if on else 0.0) + (200.0 if hot else 0.0)
            noise = sky / math.sqrt(abs(spw["width_hz"]) * integration_s)
            for p in range(2):
                gain = 1e-3 * (1.0 + 0.1 * a + 0.05 * p)
                data[p, :, r] = gain * (sky + rng.normal(0.0, 1.0, spw["nchan"]) * noise)
        sub.putcol("DATA", data)
        sub.putcol("FLAG", np.zeros(data.shape, dtype=bool))
    tb.close()


def simulate_tp_ms(ms: str, eb: dict) -> dict:
    """Make the MS of one TP EB (keys of ``eb`` as observe.observe_ebs_in_casa); returns its scans (with
    their subscans) and antennas."""
    import casatools

    from .observe import SCAN_GAP_S, SCAN_S, _add_syscal, _one_observation, _single_polarization

    integration_s = float(eb["integration_s"])
    sm, me, qa = casatools.simulator(), casatools.measures(), casatools.quanta()
    ant = _tp_antennas(eb["antennas"])
    set_up_simulator(sm, me, ms, ant, eb["spws"], autocorr_weight=1.0)
    target = next(f for f in eb["fields"] if f["role"] == "target")
    sm.setfield(sourcename=target["name"], sourcedirection=me.direction(
        "J2000", qa.quantity(target["ra_deg"], "deg"), qa.quantity(target["dec_deg"], "deg")))
    sm.settimes(integrationtime=f"{integration_s}s", usehourangle=False,
                referencetime=me.epoch("utc", qa.quantity(eb["start_mjd"], "d")))
    scans, blocks, start = [], [], 0.0
    for intents, subscans in TP_SCAN_PLAN:
        first = len(blocks)
        for subscan in subscans:
            for spw in eb["spws"]:
                sm.observe(sourcename=target["name"], spwname=spw["name"], starttime=f"{start}s",
                           stoptime=f"{start + SCAN_S}s", state_obs_mode=f"{intents[0]}#{subscan}",
                           observer=eb.get("observer", "alma"), project=eb.get("project", ""))
            blocks.append({"subscan": subscan, "offset_s": start})
            start += SCAN_S + SCAN_GAP_S
        scans.append({"field": target["name"], "intents": intents, "blocks": list(range(first, len(blocks)))})
    sm.close()
    rewrite_rows(ms, "ANTENNA1==ANTENNA2", "TIME, DATA_DESC_ID, ANTENNA1")  # the autocorrelations only
    _single_polarization(ms)
    _one_observation(ms, eb.get("project", ""), integration_s)
    tb = casatools.table()
    tb.open(ms)
    t0 = float(tb.getcol("TIME").min()) - integration_s / 2
    tb.close()
    half = integration_s / 2
    for b in blocks:
        b.update(start_s=t0 + b["offset_s"], stop_s=t0 + b["offset_s"] + SCAN_S + half)
    for scan in scans:
        scan.update(start_s=blocks[scan["blocks"][0]]["start_s"], stop_s=blocks[scan["blocks"][-1]]["stop_s"],
                    subscans=[blocks[i]["subscan"] for i in scan["blocks"]])
    _add_syscal(ms, eb["spws"], scans, eb["seed"])
    _fill_spectra(ms, eb["spws"], blocks, target, eb["seed"], integration_s)
    return {"scans": scans, "blocks": blocks, "antennas": ant}


def _subscan_intents(asdm: Path, blocks: list[dict]) -> None:
    """Give each subscan of the ASDM the intent of the block it falls in (ON_SOURCE, OFF_SOURCE,
    HOT, AMBIENT); exportasdm writes every subscan as ON_SOURCE. importasdm makes the MS's STATE
    OBS_MODE (``OBSERVE_TARGET#OFF_SOURCE``) from the scan and subscan intents."""
    from .observe import _get_time, _rows, _set

    path = asdm / "Subscan.xml"
    text = path.read_text()
    for row in _rows(text):
        mid = 0.5 * (_get_time(row, "startTime") + _get_time(row, "endTime"))
        block = next((b for b in blocks if b["start_s"] - 1 <= mid <= b["stop_s"] + 1), None)
        if block is None:
            raise RuntimeError(f"{asdm.name}: no simulated subscan at {mid:.1f} s")
        text = text.replace(row, _set(row, "subscanIntent", block["subscan"]), 1)
    path.write_text(text)


def observe_tp_mous(plan: dict, index: int, raw: Path, work: Path) -> list[dict]:
    """Simulate every EB of TP member ``index`` of ``plan``: the MSs in ``work``, the ASDMs in
    ``raw/<EB>.asdm.sdm`` (science spws, then the channel-average and WVR spws, as observe_mous)."""
    from casatasks import exportasdm

    from .observe import INTEGRATION_S, SUBSCAN_S, _associate_spws, _relabel_spws, _split_scans, asdm_uid

    mous = plan["mous"][index]
    raw.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for eb in mous["ebs"]:
        disk = Uid(eb["uid"]).disk
        ms, asdm = work / f"{disk}.sim.ms", raw / f"{disk}.asdm.sdm"
        for path in (ms, asdm):
            shutil.rmtree(path, ignore_errors=True)
        spws = plan["spws"] + plan.get("aux_spws", [])
        info = simulate_tp_ms(str(ms), {"antennas": mous["antennas"], "spws": spws, "fields": plan["fields"],
                                        "integration_s": plan.get("integration_s", INTEGRATION_S),
                                        "start_mjd": eb["start_mjd"], "seed": eb["seed"], "project": plan["code"]})
        print(f"simulated {ms.name}: {len(info['scans'])} scans, {len(info['antennas']['names'])} TP antennas "
              f"(autocorrelations), {len(spws)} spws", flush=True)
        exportasdm(vis=str(ms), asdm=str(asdm), archiveid="A002", rangeid=eb["rangeid"],
                   subscanduration=f"{SUBSCAN_S}s", sbduration="86400s", verbose=False)
        _split_scans(asdm, info["scans"])
        _subscan_intents(asdm, info["blocks"])
        _associate_spws(asdm, spws)
        _relabel_spws(asdm, spws)
        info["uid"] = asdm_uid(asdm)
        if info["uid"] != eb["uid"]:
            raise RuntimeError(f"exportasdm named the ASDM {info['uid']}, expected {eb['uid']}")
        print(f"exported {asdm.name} ({info['uid']})", flush=True)
        results.append(info)
    return results


def _spectra(ms: str, column: str, intent: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frequency in GHz, mean unflagged first-polarization spectrum) of every science spw (more
    than 4 channels) of ``ms``, over the rows of ``intent`` (a STATE OBS_MODE) when given."""
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(ms)
    spws = [s for s in range(msmd.nspw()) if msmd.nchan(s) > 4]
    freqs = {s: msmd.chanfreqs(s) / 1e9 for s in spws}
    ddids = {s: msmd.datadescids(spw=s)[0] for s in spws}
    msmd.close()
    tb = casatools.table()
    states = None
    if intent:
        tb.open(f"{ms}/STATE")
        states = [i for i, mode in enumerate(tb.getcol("OBS_MODE")) if intent in mode]
        tb.close()
    tb.open(ms)
    if column not in tb.colnames():     # importasdm writes autocorrelation-only data to FLOAT_DATA
        column = "FLOAT_DATA"
    out = []
    for s in spws:
        where = f"DATA_DESC_ID=={ddids[s]}" + (f" && STATE_ID IN {states}" if states else "")
        sub = tb.query(where)
        data = np.where(sub.getcol("FLAG"), np.nan, sub.getcol(column).real)[0]
        sub.close()
        out.append((freqs[s], np.nanmean(data, axis=1)))
    tb.close()
    return out


def line_peak_jy(ms: str) -> float:
    """(CASA child) The peak of the mean calibrated spectrum of the first science spw of a TP
    product (``<EB>.ms.cal``, Jy): the target's line."""
    return float(np.nanmax(_spectra(ms, "DATA")[0][1]))


def tp_qa_products(plan: dict, eb: str, calwork: Path, qa: Path) -> dict:
    """QA2 plots and text of one TP EB: raw ON_SOURCE spectra, calibrated spectra (Jy), and the
    line's peak in the calibrated data."""
    from .pngplot import scatter_png

    raw = _spectra(str(calwork / f"{eb}.ms"), "DATA", "OBSERVE_TARGET#ON_SOURCE")
    cal = _spectra(str(calwork / f"{eb}{TP_CALIBRATED_SUFFIX}"), "DATA")
    scatter_png(qa / f"{eb}__qa2_part1.png", raw)
    scatter_png(qa / f"{eb}__qa2_part2.png", cal[:1])
    scatter_png(qa / f"{eb}__qa2_part3.png", cal)
    peak = line_peak_jy(str(calwork / f"{eb}{TP_CALIBRATED_SUFFIX}"))
    rms = float(np.nanstd(np.concatenate([c[1] for c in cal[1:]]))) if len(cal) > 1 else float("nan")
    target = next(f["name"] for f in plan["fields"] if f["role"] == "target")
    (qa / f"{eb}__textfile.txt").write_text(
        f"QA2 report for {eb} ({plan['code']}), Total Power\n"
        f"Target: {target} (position switching, OFF_SOURCE reference)\n"
        f"Spectral windows: {len(plan['spws'])}\n"
        f"Calibrated line peak (spw 0): {peak:.1f} Jy; continuum spws rms {rms:.3f} Jy\n"
        f"QA2 status: PASS\n")
    return {"eb": eb, "line_peak_jy": peak, "rms_jy": rms}


def build_tp_mous_in_casa(plan: dict, index: int, member: str, work: str) -> dict:
    """CASA side of one manual TP member: simulate the EBs into raw/, run scriptForPI.py as the
    reducer (every step of each SD script, applyonly False), then harvest the tables
    (``<EB>.calibration.tgz``), QA2 plots and text, and the log; calibrated/ is removed."""
    from casatasks import casalog

    from ..casa.legacy import run_script_in_casa
    from ..packaging.tarballs import tree_entries, write_tgz
    from .manual import reducer_analysis_utils

    member_p, work_p = Path(member), Path(work)
    mous = plan["mous"][index]
    observed = observe_tp_mous(plan, index, member_p / "raw", work_p)
    log = member_p / "log"
    log.mkdir(exist_ok=True)
    casalog.setlogfile(str(log / f"{Uid(mous['uid']).disk}.scriptForPI.log"))
    print(f"running scriptForPI.py for {mous['uid']}", flush=True)
    run_script_in_casa(str(member_p / "script" / "scriptForPI.py"), str(member_p / "script"),
               {"SPACESAVING": 1, "applyonly": False, "aU": reducer_analysis_utils()},
               casa_version=plan["casa_version"])
    calibrated, calibration, qa = member_p / "calibrated", member_p / "calibration", member_p / "qa"
    qa.mkdir(exist_ok=True)
    results = []
    for eb in mous["ebs"]:
        disk = Uid(eb["uid"]).disk
        calwork = calibrated / f"{disk}.calibration"
        results.append(tp_qa_products(plan, disk, calwork, qa))
        tables = [calwork / f"{disk}.ms.{t}" for t in ("tsys", "sky", "jy", "listobs")]
        write_tgz(calibration / f"{disk}.calibration.tgz",
                  [e for p in tables for e in tree_entries(p, f"{disk}.calibration/{p.name}")])
        write_tgz(calibration / f"{disk}.calibration.plots.tgz",
                  [(f"{disk}.calibration.plots/{disk}__qa2_part{k}.png", qa / f"{disk}__qa2_part{k}.png")
                   for k in (1, 2, 3)])
    os.chdir(work_p)
    shutil.rmtree(calibrated)
    return {"qa": results, "observed": {eb["uid"]: info for eb, info in zip(mous["ebs"], observed)}}


def tp_qa2_notes(plan: ProjectPlan, qa: list[dict]) -> list[str]:
    """The reducer's notes of a TP member: calibration per EB (Tsys, OFF_SOURCE sky, Jy/K, baseline)."""
    notes = ["Data reduction & calibration:", ""]
    for q in qa:
        notes.append(f"{q['eb']}: Tsys and OFF_SOURCE sky calibration, Jy/K factors from calibration/, "
                     f"baseline subtracted; line peak {q['line_peak_jy']:.1f} Jy, continuum spws rms "
                     f"{q['rms_jy']:.3f} Jy.")
    notes += ["", "Major flagging:", "", "edge channels of every spw.", "", "Imaging:", "",
              f"Target: {plan.field('target')['name']} (calibrated spectra; no image)"]
    return notes


def build_member(builder: Any, index: int, mous: MousPlan, member: Path) -> None:
    """Simulate, reduce and write one manual TP member folder ``member`` for ``builder`` (deliveries._Builder)."""
    from dataclasses import asdict

    from ..casa.runtime import run_in_casa
    from .readme import readme_text, tree_text

    for folder in ("calibration", "qa", "log", "product"):
        (member / folder).mkdir(parents=True)
    write_sd_scripts(builder.plan, mous, member)
    work = builder.work / mous.disk
    builder.say(f"{mous.uid}: simulating {len(mous.ebs)} Total Power EB(s), calibrating in CASA")
    result = run_in_casa(build_tp_mous_in_casa,
                         {"plan": asdict(builder.plan), "index": index, "member": str(member), "work": str(work)},
                         workdir=work, logfile=work / "casa.log", on_line=builder._casa_line)
    builder.eb_info.update(result["observed"])
    notes = tp_qa2_notes(builder.plan, result["qa"])
    parked = builder.work / f"{mous.disk}.raw"
    (member / "raw").rename(parked)     # the README's tree shows the delivery without raw/
    tree = tree_text(builder.tree / builder.plan.code, builder.plan.code)
    parked.rename(member / "raw")
    (member / "README").write_text(readme_text(builder.plan, mous, notes, tree, pipeline=False))
