"""The manual (QA2 by an ALMA reducer) delivery flavour.

Parent side: ``write_scripts`` fills script/ from templates/. CASA side (``build_mous_in_casa``, run
by ``run_in_casa``): simulate the EBs into raw/, run our scriptForPI.py through the legacy shim
(which really calibrates every EB) and harvest calibration tables, QA2 plots and text and the log
(``build_mous_in_casa``); then, in a CASA session of its own, scriptForImaging.py, its FITS products
and log (``image_mous_in_casa``), and remove calibrated/.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
from importlib import resources
from pathlib import Path

import numpy as np

from ..ids import ProjectCode, Uid
from ..packaging.tarballs import tree_entries, write_tgz
from .plan import LINE_NAME, LINE_REST_HZ, MousPlan, ProjectPlan, refant

CALTABLE_SUFFIXES = (".tsys", ".wvr", ".antpos", ".ap_pre_bandpass", ".bandpass", ".phase_int", ".ampli_inf", ".flux_inf", ".phase_inf",
                     ".fluxscale", ".listobs", ".flagversions")


def template(name: str) -> str:
    """The text of ``sim/templates/<name>`` (the scripts a manual delivery carries)."""
    return resources.files("almadeliver.sim").joinpath("templates", name).read_text()


def fill(text: str, values: dict[str, object]) -> str:
    """``text`` with every ``@KEY@`` replaced by ``values[KEY]``; ValueError when a placeholder is left."""
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    missing = re.findall(r"@[A-Z]+@", text)
    if missing:
        raise ValueError(f"template placeholders left unfilled: {sorted(set(missing))}")
    return text


def edge_channels(spws: list[dict]) -> str:
    """The edge channels of each spw as a CASA spw selection (``0:0~0;63~63,...``), flagged by the scripts."""
    return ",".join(f"{i}:0~0;{s['nchan'] - 1}~{s['nchan'] - 1}" for i, s in enumerate(spws))


def bandpass_channels(spws: list[dict]) -> str:
    """The central channels of each spw (for the pre-bandpass phase solution)."""
    return ",".join(f"{i}:{s['nchan'] // 2 - 4}~{s['nchan'] // 2 + 3}" for i, s in enumerate(spws))


def casa_gate(casa_version: str) -> str:
    """What the generator's version gate matches: the first three numbers (``6.5.4`` of ``6.5.4-9``)."""
    return ".".join(re.split(r"[.-]", casa_version)[:3])


def generator_header(casa_version: str) -> str:
    """What ALMA's script generator writes after the step titles of every calibration script
    (interferometric and Total Power): the mysteps handling, the imports, the analysisUtils object
    made only when applyonly is not True, and the exact-version gate on ``casa_version``."""
    return fill(template("generator_header.py.in"), {"CASAGATE": casa_gate(casa_version)})


# A Cycle 0 reducer's flux calibrator model was off by up to this much in each EB (relative, spread
# evenly from -x to +x over the EBs of the MOUS, so their mean is right): each EB's .ms.split.cal then
# carries its own amplitude scale, which scriptForFluxCalibration.py's setjy/gaincal/applycal bring to
# the weighted mean of allFluxes.txt (ALMA-FACTS.md section 5; seed 001, Combination).
CYCLE0_FLUX_ERROR = 0.10


def flux_scale_error(plan: ProjectPlan, mous: MousPlan, eb_index: int) -> float:
    """The relative error of EB ``eb_index``'s flux calibrator model (see CYCLE0_FLUX_ERROR); 0 but
    in Cycle 0 members of several EBs."""
    n = len(mous.ebs)
    if plan.flavour != "cycle0" or n < 2:
        return 0.0
    return float(np.linspace(-CYCLE0_FLUX_ERROR, CYCLE0_FLUX_ERROR, n)[eb_index])


def calibration_values(plan: ProjectPlan, mous: MousPlan, eb_disk: str) -> dict[str, object]:
    """The placeholders of the calibration script template for the EB ``eb_disk`` of ``mous`` (its
    flux calibrator model off by ``flux_scale_error``)."""
    bp = plan.field("bandpass")
    comp = bp["components"][0]
    error = flux_scale_error(plan, mous, [eb.disk for eb in mous.ebs].index(eb_disk))
    return {"EB": eb_disk, "CASAVERSION": plan.casa_version, "HEADER": generator_header(plan.casa_version),
            "CASAGATE": casa_gate(plan.casa_version),
            "BPCAL": bp["name"],
            "PHCAL": plan.field("phase")["name"], "TARGET": plan.field("target")["name"], "REFANT": refant(mous.array),
            "SPWS": ",".join(str(i) for i in range(len(plan.spws))), "EDGECHANNELS": edge_channels(plan.spws),
            "BPCHANNELS": bandpass_channels(plan.spws), "FLUXDENSITY": round(comp["flux_jy"] * (1 + error), 6),
            "SPIX": comp["spix"],
            "REFFREQ": f"{bp['ref_freq_hz'] / 1e9:.1f}GHz"}


def imaging_values(plan: ProjectPlan, mous: MousPlan) -> dict[str, object]:
    """The placeholders of the scriptForImaging.py template for ``mous`` (cell and size by array)."""
    cell = "2.5arcsec" if mous.array == "7m" else "0.4arcsec"     # a fifth of the beam (plan.ARRAYS)
    return {"CASAVERSION": plan.casa_version, "TARGET": plan.field("target")["name"], "CELL": cell, "IMSIZE": 64,
            "LINE": LINE_NAME, "LSBSPWS": "0,1", "USBSPWS": "2", "CUBEA": "1", "CUBEB": "2", "LINESPW": "0", "RESTFREQ": f"{LINE_REST_HZ / 1e9:.6f}GHz",
            "CONTTHRESHOLD": "5mJy", "LINETHRESHOLD": "60mJy"}


# The CASA that ALMA's Cycle 0-3 manual imaging scripts were written for (Python 2, the clean task);
# from Cycle 4 manual imaging used tclean. Cycle -> CASA version of the simulated imaging script.
CLEAN_ERA_CASA = {0: "3.4.0", 1: "4.2.2", 2: "4.4.0", 3: "4.5.3"}


def clean_era(plan: ProjectPlan) -> bool:
    """True for a project of Cycles 0-3, whose manual imaging script is CASA 3.4-4.x code."""
    return ProjectCode.parse(plan.code).cycle in CLEAN_ERA_CASA


def script_folder(member: Path) -> Path:
    """``member/script/`` made, with the scriptForPI.py every manual delivery carries; returns the folder."""
    script = member / "script"
    script.mkdir(parents=True, exist_ok=True)
    (script / "scriptForPI.py").write_text(template("scriptForPI.py"))
    return script


def write_scripts(plan: ProjectPlan, mous: MousPlan, member: Path, work: Path | None = None) -> Path:
    """script/: scriptForPI.py, one calibration script per EB, flux calibration (several EBs), imaging.

    Cycles 0-3 (``clean_era``): script/scriptForImaging.py is the CASA 3.4-4.x form (Python 2,
    ``clean()``, ``impbcor`` of the ``.flux`` primary beam), and the products are made by its tclean
    equivalent written by hand (our templates/scriptForImaging.py.in), which goes to ``work``: CASA 6
    has no clean. Returns the imaging script the simulated reducer runs."""
    script = script_folder(member)
    for eb in mous.ebs:
        (script / f"{eb.disk}.ms.scriptForCalibration.py").write_text(
            fill(template("scriptForCalibration.py.in"), calibration_values(plan, mous, eb.disk)))
    if len(mous.ebs) > 1 and plan.flavour != "cycle0":   # Cycle 0: written after calibration (cycle0_flux_script)
        vislist = ", ".join(f"'{eb.disk}.ms.split.cal'" for eb in mous.ebs)
        (script / "scriptForFluxCalibration.py").write_text(fill(template("scriptForFluxCalibration.py.in"), {
            "CASAVERSION": plan.casa_version, "VISLIST": vislist, "PHCAL": plan.field("phase")["name"],
            "SPWLIST": ", ".join(str(i) for i in range(len(plan.spws)))}))
    values = imaging_values(plan, mous)
    if not clean_era(plan):
        (script / "scriptForImaging.py").write_text(fill(template("scriptForImaging.py.in"), values))
        return script / "scriptForImaging.py"
    cycle = ProjectCode.parse(plan.code).cycle
    (script / "scriptForImaging.py").write_text(fill(template("scriptForImaging_clean.py.in"),
                                                     {**values, "CASAVERSION": CLEAN_ERA_CASA[cycle]}))
    reducer = Path(work or member) / "scriptForImaging.tclean-equivalent.py"
    reducer.parent.mkdir(parents=True, exist_ok=True)
    reducer.write_text(fill(template("scriptForImaging.py.in"), values))
    return reducer


# -- CASA side ---------------------------------------------------------------------------------------
def _phases(ms: str, field: str, column: str = "DATA") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, phase in degrees, amplitude) of every unflagged XX visibility of ``field``, spw 1."""
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(ms)
    fid = msmd.fieldsforname(field)[0]
    msmd.close()
    tb = casatools.table()
    tb.open(ms)
    sub = tb.query(f"FIELD_ID=={fid} && DATA_DESC_ID==1 && ANTENNA1!=ANTENNA2")
    data, flag, time = sub.getcol(column), sub.getcol("FLAG"), sub.getcol("TIME")
    sub.close()
    tb.close()
    vis = np.nanmean(np.where(flag, np.nan, data)[0], axis=0)
    return time, np.degrees(np.angle(vis)), np.abs(vis)


def qa_products(plan: dict, eb: str, calwork: Path, calibrated_ms: Path, qa: Path) -> dict:
    """QA2 plots and text file of one EB; returns the phase scatter (deg) on the phase calibrator."""
    import casatools

    from .pngplot import scatter_png

    phasecal = next(f["name"] for f in plan["fields"] if f["role"] == "phase")
    bpcal = next(f["name"] for f in plan["fields"] if f["role"] == "bandpass")
    t_raw, ph_raw, _ = _phases(str(calwork / f"{eb}.ms"), phasecal)
    t_cal, ph_cal, amp_cal = _phases(str(calibrated_ms), phasecal)
    scatter_png(qa / f"{eb}__qa2_part1.png", [(t_raw - t_raw.min(), ph_raw)], ylim=(-180, 180))
    scatter_png(qa / f"{eb}__qa2_part2.png", [(t_cal - t_cal.min(), ph_cal)], ylim=(-180, 180))
    tb = casatools.table()
    tb.open(str(calibrated_ms))
    msmd = casatools.msmetadata()
    msmd.open(str(calibrated_ms))
    bp_id = msmd.fieldsforname(bpcal)[0]
    spectra = []
    for spw in range(msmd.nspw()):
        sub = tb.query(f"FIELD_ID=={bp_id} && DATA_DESC_ID=={spw}")
        d = np.where(sub.getcol("FLAG"), np.nan, sub.getcol("DATA"))
        spectra.append((msmd.chanfreqs(spw) / 1e9, np.abs(np.nanmean(d[0], axis=1))))
        sub.close()
    tb.close()
    antennas, scans = msmd.antennanames(), len(msmd.scannumbers())
    msmd.close()
    scatter_png(qa / f"{eb}__qa2_part3.png", spectra)
    rms = float(np.nanstd(ph_cal))
    (qa / f"{eb}__textfile.txt").write_text(
        f"QA2 report for {eb} ({plan['code']})\n"
        f"Antennas: {len(antennas)} ({' '.join(antennas)})\n"
        f"Scans: {scans}\n"
        f"Fields: {', '.join(f['name'] + ' (' + f['role'] + ')' for f in plan['fields'])}\n"
        f"Spectral windows: {len(plan['spws'])}\n"
        f"Phase calibrator {phasecal}, spw 1, XX: phase scatter before calibration {np.nanstd(ph_raw):.1f} deg, "
        f"after calibration {rms:.2f} deg\n"
        f"Phase calibrator {phasecal}, spw 1: calibrated amplitude {np.nanmean(amp_cal):.3f} Jy\n"
        f"QA2 status: PASS\n")
    return {"eb": eb, "phase_rms_deg": rms, "raw_phase_rms_deg": float(np.nanstd(ph_raw))}


def cycle0_flux_script(plan: dict, mous: dict, calibrated: Path, script: Path) -> list[dict]:
    """(CASA side) What a Cycle 0 reducer's ``es.generateReducScript(<split.cal>, step='fluxcal')``
    wrote once every EB was calibrated: ``script`` (scriptForFluxCalibration.py, CASA 3.4 form:
    Python 2, setjy with a bare fluxdensity) that sets the phase calibrator of each EB's
    ``.ms.split.cal`` to the weighted mean of its fluxscale fluxes in each spw, solves the amplitude
    per EB (gaincal calmode 'a', solint 'inf' on the calibrator), applies it to the calibrator and
    the target, splits and concatenates into calibrated.ms; allFluxes.txt's lines are its comments.
    Returns the allFluxes rows (field, spw, freq_ghz, flux_jy, mean_jy, date, vis)."""
    import casatools

    from ..delivery.checklist import read_fluxscale

    phasecal = next(f["name"] for f in plan["fields"] if f["role"] == "phase")
    target = next(f["name"] for f in plan["fields"] if f["role"] == "target")
    vislist = [f"{Uid(eb['uid']).disk}.ms.split.cal" for eb in mous["ebs"]]
    measured, ids = {}, {}
    quanta, msmd = casatools.quanta(), casatools.msmetadata()
    for vis in vislist:
        eb = vis[:-len(".ms.split.cal")]
        fluxes = read_fluxscale(calibrated / f"{eb}.calibration" / f"{eb}.ms.split.fluxscale")
        msmd.open(str(calibrated / vis))
        start = quanta.time(msmd.timerangeforobs(0)["begin"]["m0"], form="fits")[0]
        ids[vis] = (int(msmd.fieldsforname(phasecal)[0]), int(msmd.fieldsforname(target)[0]))
        for (field, spw), (flux, err) in fluxes.items():
            if field == phasecal:
                measured[(vis, spw)] = (msmd.meanfreq(spw) / 1e9, flux, err, start)
        msmd.close()
    rows = []
    for spw in sorted({spw for _, spw in measured}):
        these = [(vis, measured[(vis, spw)]) for vis in vislist if (vis, spw) in measured]
        weights = [1.0 / max(err, 1e-6) ** 2 for _, (_, _, err, _) in these]
        mean = sum(w * flux for w, (_, (_, flux, _, _)) in zip(weights, these)) / sum(weights)
        rows += [{"field": phasecal, "spw": spw, "freq_ghz": freq, "flux_jy": flux, "mean_jy": mean, "date": date,
                  "vis": vis} for vis, (freq, flux, _, date) in these]
    allfluxes = "\n".join(f'#{"":39}"{r["field"]}"     {r["spw"]}     {r["freq_ghz"]:.2f}      {r["flux_jy"]:.5f}'
                           f'      {r["mean_jy"]:.5f}       {r["date"]}  {r["vis"]}' for r in rows)
    setjy = "".join(f"setjy(vis = '{r['vis']}',\n  field = '{phasecal}',\n  spw = '{r['spw']}',\n"
                    f"  fluxdensity = [{r['mean_jy']:.5f}, 0, 0, 0])\n\n"
                    for spw in sorted({r["spw"] for r in rows}) for r in rows if r["spw"] == spw)
    scaling = "".join(
        f"os.system('rm -rf {vis}.ampli_inf') \n"
        f"gaincal(vis = '{vis}',\n  caltable = '{vis}.ampli_inf',\n  field = '{phasecal}',\n  solint = 'inf',\n"
        f"  combine = 'scan',\n  refant = '{refant(mous['array'])}',\n  gaintype = 'T',\n  calmode = 'a')\n\n"
        f"applycal(vis = '{vis}',\n  field = '{ids[vis][0]},{ids[vis][1]}', # {phasecal},{target}\n"
        f"  gaintable = '{vis}.ampli_inf',\n  gainfield = '{ids[vis][0]}', # {phasecal}\n  calwt = F,\n"
        f"  flagbackup = F)\n\n" for vis in vislist)
    script.write_text(fill(template("scriptForFluxCalibration_cycle0.py.in"), {
        "CASAGATE": ".".join(CLEAN_ERA_CASA[0].split(".")[:2]), "ALLFLUXES": allfluxes, "SETJY": setjy,
        "SCALING": scaling, "VISLINES": ",\n              ".join(f"'{v}'" for v in vislist),
        "VISLIST": ", ".join(f"'{v}'" for v in vislist)}))
    return rows


def run_cycle0_flux_script(script: Path, calibrated: Path, work: Path) -> None:
    """(CASA side) The reducer runs scriptForFluxCalibration.py (``cycle0_flux_script``) on copies of
    the EBs' ``.ms.split.cal`` in ``work``: calibrated/ gets the flux-scaled calibrated.ms for imaging
    and keeps the unscaled ``.ms.split.cal`` that Cycle 0 deliveries ship."""
    from ..casa.legacy import run_clean_era_script_in_casa

    combination = work / "Combination" / "calibrated"
    combination.mkdir(parents=True)
    for ms in sorted(calibrated.glob("*.ms.split.cal")):
        shutil.copytree(ms, combination / ms.name, symlinks=True)
    run_clean_era_script_in_casa(str(script), str(combination), casa_version=CLEAN_ERA_CASA[0])
    shutil.move(combination / "calibrated.ms", calibrated / "calibrated.ms")
    os.chdir(work)
    shutil.rmtree(work / "Combination")


def reducer_analysis_utils():
    """What the simulated reducer's calibration run needs of analysisUtils: the generator's header
    makes ``es = aU.stuffForScienceDataReduction()`` when applyonly is not True; the simulated
    scripts call nothing on it."""
    import types

    return types.SimpleNamespace(stuffForScienceDataReduction=lambda: types.SimpleNamespace())


def start_session_log(path: Path, casa_version: str) -> None:
    """Make ``path`` the CASA log, starting as the log of a CASA session does: its header names
    the Python and the CASA version (monolithic CASA 6: ``CASA Version CASA 6.5.4-9``), here the
    CASA the simulated reducer ran (``casa_version``). The staff checklist compares these lines
    between the calibration and imaging logs."""
    import platform
    import time

    from casatasks import casalog

    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    lines = ["", f"Python version {platform.python_version()}", f"CASA Version CASA {casa_version}",
             "    Descriptor: CASA"]
    with open(path, "a") as fh:
        fh.writelines(f"{stamp}\tINFO\t::casa\t{line}\n" for line in lines)
    casalog.setlogfile(str(path))


def build_mous_in_casa(plan: dict, index: int, member: str, work: str, cycle0: bool = False) -> dict:
    """CASA side of one manual MOUS (see module doc). Returns per-EB QA figures.

    ``cycle0``: lay the member out as Cycle 0 deliveries were: calibrated/<EB>.ms.split.cal,
    raw/<EB>.ms.split (no ASDM), calibration/<EB>.calibration/ and .calibration.plots/ folders.
    The calibrated data stay in calibrated/ for ``image_mous_in_casa``."""
    from ..casa.legacy import run_script_in_casa
    from .observe import observe_mous

    member_p, work_p = Path(member), Path(work)
    mous = plan["mous"][index]
    observed = observe_mous(plan, index, member_p / "raw", work_p)
    log = member_p / "log"
    log.mkdir(exist_ok=True)
    start_session_log(log / f"{Uid(mous['uid']).disk}.scriptForPI.log", plan["casa_version"])
    print(f"running scriptForPI.py for {mous['uid']}", flush=True)
    # the reducer's run: the full calibration (applyonly False) in the CASA that made the delivery;
    # analysisUtils is not on PyPI and the simulated reducer uses none of it (``reducer_analysis_utils``)
    run_script_in_casa(str(member_p / "script" / "scriptForPI.py"), str(member_p / "script"),
               {"SPACESAVING": 0 if cycle0 else 1, "applyonly": False, "aU": reducer_analysis_utils()},
               casa_version=plan["casa_version"])
    calibrated = member_p / "calibrated"
    if cycle0 and len(mous["ebs"]) > 1:
        print(f"running scriptForFluxCalibration.py for {mous['uid']}", flush=True)
        script = member_p / "script" / "scriptForFluxCalibration.py"
        cycle0_flux_script(plan, mous, calibrated, script)
        run_cycle0_flux_script(script, calibrated, work_p)
    calibration, qa = member_p / "calibration", member_p / "qa"
    calibration.mkdir(exist_ok=True)
    qa.mkdir(exist_ok=True)
    results = []
    for eb in mous["ebs"]:
        disk = Uid(eb["uid"]).disk
        calwork = calibrated / f"{disk}.calibration"
        results.append(qa_products(plan, disk, calwork, calibrated / f"{disk}.ms.split.cal", qa))
        # not <EB>.ms.flagversions: importasdm refuses to overwrite it when scriptForPI re-imports the ASDM
        tables = sorted(p for p in calwork.iterdir()
                        if p.name.endswith(CALTABLE_SUFFIXES) and not p.name.endswith(".ms.flagversions"))
        plots = [qa / f"{disk}__qa2_part{k}.png" for k in (1, 2, 3)]
        if cycle0:
            folder = calibration / f"{disk}.calibration"
            folder.mkdir()
            for table in tables:
                shutil.move(table, folder / table.name)
            (calibration / f"{disk}.calibration.plots").mkdir()
            for plot in plots:
                shutil.copy(plot, calibration / f"{disk}.calibration.plots" / plot.name)
            shutil.rmtree(member_p / "raw" / f"{disk}.asdm.sdm")
            shutil.move(calwork / f"{disk}.ms.split", member_p / "raw" / f"{disk}.ms.split")
            continue
        write_tgz(calibration / f"{disk}.calibration.tgz",
                  [e for p in tables for e in tree_entries(p, f"{disk}.calibration/{p.name}")])
        write_tgz(calibration / f"{disk}.calibration.plots.tgz",
                  [(f"{disk}.calibration.plots/{p.name}", p) for p in plots])
    os.chdir(work_p)
    return {"qa": results, "observed": {eb["uid"]: info for eb, info in zip(mous["ebs"], observed)}}


def image_mous_in_casa(plan: dict, index: int, member: str, work: str, cycle0: bool = False,
                    imaging_script: str | None = None) -> dict:
    """CASA side of the reducer's imaging session for one manual MOUS (after ``build_mous_in_casa``):
    scriptForImaging.py in ``calibrated/``, FITS products into product/, then calibrated/ removed
    (Cycle 0: only its ``.ms.split.cal`` kept). A CASA session of its own with its own log, as the
    reducer images (log/<MOUS>.imaging.log); it returns the product names.

    ``imaging_script``: the script that makes the products (default script/scriptForImaging.py; for
    Cycles 0-3 the tclean equivalent of the delivered clean-era script, see ``write_scripts``).

    Imaging in the calibration session would image with that session's state: a cube channel whose
    LSRK grid falls on a flagged edge channel then comes out differently from a fresh session's."""
    from ..casa.legacy import run_script_in_casa

    member_p, work_p = Path(member), Path(work)
    mous = plan["mous"][index]
    calibrated = member_p / "calibrated"
    start_session_log(member_p / "log" / f"{Uid(mous['uid']).disk}.imaging.log", plan["casa_version"])
    print(f"running scriptForImaging.py for {mous['uid']}", flush=True)
    run_script_in_casa(imaging_script or str(member_p / "script" / "scriptForImaging.py"), str(calibrated))
    product = member_p / "product"
    product.mkdir(exist_ok=True)
    for fits in sorted(glob.glob(str(calibrated / "*.fits"))):
        shutil.move(fits, product / os.path.basename(fits))
    os.chdir(work_p)
    if cycle0:
        for leftover in calibrated.iterdir():
            if not leftover.name.endswith(".ms.split.cal"):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    else:
        shutil.rmtree(calibrated)
    return {"products": sorted(p.name for p in product.iterdir())}

