"""The pipeline delivery flavour: what the ALMA pipeline's exportdata writes for a MOUS.

CASA side (``casa_build_mous``): simulate the EBs, import and calibrate each one on its full
``<EB>.ms`` (pipeline-named caltables), apply the calibration with applycal calls that are recorded
verbatim in ``<EB>.ms.calapply.txt``, save the ``Pipeline_Final`` flag version, and image with tclean
calls that are recorded in ``casa_commands.log`` (multi-line, as CASA logs them). Parent side
(``write_texts``): pprequest, pipescript, restorescript and manifest.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from ..ids import Uid
from ..packaging.tarballs import tree_entries, write_tgz
from .manual import edge_channels, template
from .plan import LINE_REST_HZ, MousPlan, ProjectPlan, refant

FLAG_HEADER = """#
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


def format_call(task: str, kwargs: dict, width: int = 100) -> str:
    """A task call as CASA's commands log writes it: arguments wrapped over indented lines."""
    parts = [f"{k}={v!r}" for k, v in kwargs.items()]
    lines, line = [], f"{task}("
    indent = " " * len(line)
    for i, part in enumerate(parts):
        piece = part + (", " if i < len(parts) - 1 else ")")
        if len(line) + len(piece) > width and line.strip() != f"{task}(":
            lines.append(line.rstrip())
            line = indent
        line += piece
    lines.append(line)
    return "\n".join(lines)


def calapply_line(kwargs: dict) -> str:
    """One line of <EB>.ms.calapply.txt (ALMA-FACTS section 4)."""
    return "applycal(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


# -- CASA side ------------------------------------------------------------------------------------------
def _calibrate(eb: str, plan: dict, ref: str, commands: list[str]) -> tuple[list[str], list[dict]]:
    """Calibrate <EB>.ms in the current folder; returns the caltables and the applycal calls used."""
    import casatasks as ct

    fields = {f["role"]: f for f in plan["fields"]}
    bp, ph, target = fields["bandpass"]["name"], fields["phase"]["name"], fields["target"]["name"]
    spws = ",".join(str(i) for i in range(len(plan["spws"])))
    vis = f"{eb}.ms"
    tag = "spw" + "_".join(str(i) for i in range(len(plan["spws"])))

    def run(task: str, **kwargs) -> object:
        commands.append(format_call(task, kwargs))
        return getattr(ct, task)(**kwargs)

    comp = fields["bandpass"]["components"][0]
    commands.append(f"# hifa_importdata(vis=['{eb}'], session=['session_1'])")
    run("importasdm", asdm=eb, vis=vis)
    commands.append("# hifa_flagdata()")
    run("flagdata", vis=vis, mode="manual", autocorr=True, flagbackup=False)
    run("flagdata", vis=vis, mode="manual", spw=edge_channels(plan["spws"]), flagbackup=False)
    commands.append("# hifa_bandpassflag() / hifa_bandpass()")
    run("setjy", vis=vis, field=bp, standard="manual", fluxdensity=[comp["flux_jy"], 0, 0, 0], spix=[comp["spix"]],
        reffreq=f"{fields['bandpass']['ref_freq_hz'] / 1e9:.1f}GHz", usescratch=True)
    t = {"pre": f"{vis}.hifa_bandpass.s6_1.{tag}.solintint.gpcal.tbl",
         "bp": f"{vis}.hifa_bandpass.s6_3.{tag}.channel.solintinf.bcal.tbl",
         "phint": f"{vis}.hifa_timegaincal.s11_2.{tag}.solintint.gpcal.tbl",
         "amp": f"{vis}.hifa_timegaincal.s11_4.{tag}.solintinf.gacal.tbl",
         "flux": f"{vis}.hifa_gfluxscale.s10_1.{tag}.solintinf.fluxgaincal.tbl",
         "phinf": f"{vis}.hifa_timegaincal.s11_5.{tag}.solintinf.gpcal.tbl"}
    run("gaincal", vis=vis, caltable=t["pre"], field=bp, spw=spws, solint="int", refant=ref, calmode="p")
    run("bandpass", vis=vis, caltable=t["bp"], field=bp, solint="inf", combine="scan", refant=ref,
        solnorm=True, bandtype="B", gaintable=[t["pre"]])
    commands.append("# hifa_timegaincal()")
    run("gaincal", vis=vis, caltable=t["phint"], field=f"{bp},{ph}", solint="int", refant=ref, calmode="p",
        gaintable=[t["bp"]])
    run("gaincal", vis=vis, caltable=t["amp"], field=f"{bp},{ph}", solint="inf", refant=ref, gaintype="T",
        calmode="a", gaintable=[t["bp"], t["phint"]])
    run("fluxscale", vis=vis, caltable=t["amp"], fluxtable=t["flux"], reference=bp)
    run("gaincal", vis=vis, caltable=t["phinf"], field=f"{bp},{ph}", solint="inf", refant=ref, calmode="p",
        gaintable=[t["bp"]])
    commands.append("# hifa_applycal()")
    calls = []
    for field, intent, phase, gainfield in ((bp, "BANDPASS,AMPLITUDE", t["phint"], bp),
                                            (ph, "PHASE", t["phint"], ph),
                                            (target, "TARGET", t["phinf"], ph)):
        kwargs = {"vis": vis, "field": field, "intent": intent, "spw": spws, "antenna": "*&*",
                  "gaintable": [t["bp"], phase, t["flux"]], "gainfield": ["", gainfield, gainfield],
                  "spwmap": [], "interp": ["linear,linear", "linear", "linear"], "calwt": [False, False, False]}
        intents = {"BANDPASS": "CALIBRATE_BANDPASS", "AMPLITUDE": "CALIBRATE_FLUX", "PHASE": "CALIBRATE_PHASE",
                   "TARGET": "OBSERVE_TARGET"}
        casa_intent = ",".join(f"*{intents[i]}*" for i in intent.split(","))
        run("applycal", **{**kwargs, "intent": casa_intent, "flagbackup": False})
        calls.append(kwargs)
    run("flagmanager", vis=vis, mode="save", versionname="Pipeline_Final")
    return [t[k] for k in ("pre", "bp", "phint", "amp", "flux", "phinf")], calls


def casa_build_mous(plan: dict, index: int, member: str, work: str) -> dict:
    """CASA side of one pipeline MOUS (see module doc)."""
    import casatasks as ct
    from casatasks import casalog

    from .manual import qa_products
    from .observe import observe_mous

    member_p, work_p = Path(member), Path(work)
    mous = plan["mous"][index]
    mous_disk = Uid(mous["uid"]).disk
    prefix = f"member.{mous_disk}"
    observed = observe_mous(plan, index, member_p / "raw", work_p)
    calibration, log, qa, product = (member_p / d for d in ("calibration", "log", "qa", "product"))
    casalog.setlogfile(str(log / f"casa-{mous_disk}.log"))
    commands = ["# ALMA pipeline (simulated by almadeliver): CASA commands, one call per entry"]
    caltables, vislist, results = [], [], []
    target = next(f["name"] for f in plan["fields"] if f["role"] == "target")
    for eb in mous["ebs"]:
        disk = Uid(eb["uid"]).disk
        folder = work_p / disk
        folder.mkdir(parents=True, exist_ok=True)
        os.chdir(folder)
        os.symlink(member_p / "raw" / f"{disk}.asdm.sdm", disk)
        print(f"calibrating {disk} (pipeline)", flush=True)
        tables, calls = _calibrate(disk, plan, refant(mous["array"]), commands)
        caltables += [folder / t for t in tables]
        (calibration / f"{disk}.ms.calapply.txt").write_text("".join(calapply_line(c) + "\n" for c in calls))
        write_tgz(calibration / f"{disk}.ms.flagversions.tgz",
                  tree_entries(folder / f"{disk}.ms.flagversions", f"{disk}.ms.flagversions"))
        (calibration / f"{disk}_flagtemplate.txt").write_text(FLAG_HEADER)
        (calibration / f"{disk}_flagtargetstemplate.txt").write_text(FLAG_HEADER.replace(
            "calibration pipeline", "imaging pipeline"))
        split = folder / f"{disk}.ms.split.cal"
        ct.split(vis=f"{disk}.ms", outputvis=str(split), datacolumn="corrected", keepflags=True)
        results.append(qa_products(plan, disk, folder, split, qa))
        vislist.append(str(folder / f"{disk}.ms"))
    write_tgz(calibration / f"{prefix}.session_1.caltables.tgz",
              [e for t in caltables for e in tree_entries(t, t.name)])
    lo = LINE_REST_HZ / 1e9
    (calibration / f"{prefix}.cont.dat").write_text(
        f"Field: {target}\n\nSpectralWindow: 0\n{lo - 0.030:.6f}~{lo - 0.012:.6f}GHz LSRK\n"
        f"{lo + 0.012:.6f}~{lo + 0.030:.6f}GHz LSRK\n\nSpectralWindow: 1\nALL\n\nSpectralWindow: 2\nALL\n\n")
    (calibration / "flux.csv").write_text("ms,field,spw,I,Q,U,V,spix,uvmin,uvmax,comment\n" + "".join(
        f"{Uid(eb['uid']).disk}.ms,0,{s},{plan['fields'][0]['components'][0]['flux_jy']},0,0,0,"
        f"{plan['fields'][0]['components'][0]['spix']},0.0,0.0,simulated\n"
        for eb in mous["ebs"] for s in range(len(plan["spws"]))))
    os.chdir(work_p)
    commands.append("# hif_makeimlist(specmode='mfs') / hif_makeimages()")
    cell = "4.0arcsec" if mous["array"] == "7m" else "2.5arcsec"
    images = []
    for name, spw, specmode, extra in ((f"{prefix}.{target}_sci.spw1_2.mfs.I", "1,2", "mfs", {}),
                                       (f"{prefix}.{target}_sci.spw0.cube.I", "0", "cube",
                                        {"restfreq": f"{LINE_REST_HZ / 1e9:.6f}GHz", "outframe": "LSRK",
                                         "restoringbeam": "common"})):
        kwargs = {"vis": vislist, "imagename": str(work_p / f"{name}.iter1"), "field": target, "intent": "OBSERVE_TARGET#ON_SOURCE",
                  "spw": [spw] * len(vislist), "specmode": specmode, "imsize": [64, 64], "cell": [cell],
                  "gridder": "standard", "deconvolver": "hogbom", "weighting": "briggs", "robust": 0.5,
                  "niter": 200, "threshold": "5mJy" if specmode == "mfs" else "60mJy", "interactive": False,
                  "pbcor": True, "datacolumn": "corrected", **extra}
        print(f"imaging {name}", flush=True)
        commands.append(format_call("tclean", {**kwargs, "vis": [Path(v).name for v in vislist],
                                               "imagename": f"{name}.iter1"}))
        ct.tclean(**kwargs)
        ct.exportfits(imagename=f"{name}.iter1.image.pbcor", fitsimage=str(product / f"{name}.pbcor.fits"))
        ct.exportfits(imagename=f"{name}.iter1.pb", fitsimage=str(work_p / f"{name}.pb.fits"))
        with open(work_p / f"{name}.pb.fits", "rb") as src, gzip.GzipFile(
                product / f"{name}.pb.fits.gz", "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
        images.append(name)
    (log / f"{prefix}.hifa_calimage.casa_commands.log").write_text("\n".join(commands) + "\n")
    return {"qa": results, "images": images,
            "observed": {eb["uid"]: info for eb, info in zip(mous["ebs"], observed)}}


# -- parent side ------------------------------------------------------------------------------------------
def write_texts(plan: ProjectPlan, mous: MousPlan, member: Path) -> None:
    """script/: scriptForPI, pipescript, restorescript, pprequest; calibration/: the manifest."""
    prefix = f"member.{mous.disk}"
    script, calibration = member / "script", member / "calibration"
    (script / f"{prefix}.scriptForPI.py").write_text(template("scriptForPI.py"))
    asdms = ", ".join(f"'../rawdata/{eb.disk}'" for eb in mous.ebs)
    (script / f"{prefix}.hifa_calimage.casa_pipescript.py").write_text(
        "from recipes.almahelpers import fixsyscaltimes # SACM/JAO - Fixes\n"
        "__rethrow_casa_exceptions = True\ncontext = h_init()\ncontext.set_state('ProjectSummary', 'proposal_code', "
        f"'{plan.code}')\ntry:\n    hifa_importdata(vis=[{asdms}], session=['session_1'])\n"
        "    hifa_flagdata()\n    hifa_fluxcalflag()\n    hif_rawflagchans()\n    hif_refant()\n"
        "    hifa_bandpassflag()\n    hifa_bandpass()\n    hifa_spwphaseup()\n    hifa_gfluxscaleflag()\n"
        "    hifa_gfluxscale()\n    hifa_timegaincal()\n    hif_applycal()\n    hif_makeimlist(specmode='mfs')\n"
        "    hif_makeimages()\n    hif_makeimlist(specmode='cube')\n    hif_makeimages()\n"
        "    hifa_exportdata()\nfinally:\n    h_save()\n")
    (script / f"{prefix}.hifa_calimage.casa_piperestorescript.py").write_text(
        "__rethrow_casa_exceptions = True\nh_init()\ntry:\n"
        f"    hifa_restoredata (vis=[{', '.join(repr(eb.disk) for eb in mous.ebs)}], session=['session_1'], "
        "ocorr_mode='ca')\nfinally:\n    h_save()\n")
    (script / f"{prefix}.pprequest.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ns2:SciPipeRequest xmlns:ns2="Alma/pipelinescience/SciPipeRequest">\n'
        f"  <ProjectSummary><ProposalCode>{plan.code}</ProposalCode><PIName>{plan.pi}</PIName></ProjectSummary>\n"
        f"  <ProjectStructure><OUSStatusRef entityId=\"{mous.uid}\"/></ProjectStructure>\n"
        "  <ProcessingRequests><RecipeName>hifa_calimage</RecipeName>\n"
        + "".join(f'    <DataSet><SchedBlockRef entityId="{mous.uid}"/><AsdmIdentifier><AsdmRef><ExecBlockId>'
                  f"{eb.uid}</ExecBlockId></AsdmRef></AsdmIdentifier></DataSet>\n" for eb in mous.ebs)
        + "  </ProcessingRequests>\n</ns2:SciPipeRequest>\n")
    files = sorted(p.name for p in calibration.iterdir())
    (calibration / f"{prefix}.pipeline_manifest.xml").write_text(
        '<?xml version="1.0" ?>\n<piperesults name="' + plan.code + '">\n'
        f'  <ous name="{mous.disk}">\n    <pipeline_version name="2023.1.0.124"/>\n'
        f'    <casa_version name="{plan.casa_version}"/>\n'
        + "".join(f'    <asdm name="{eb.disk}">\n      <flagversions name="{eb.disk}.ms.flagversions.tgz"/>\n'
                  f'      <applycmds name="{eb.disk}.ms.calapply.txt"/>\n    </asdm>\n' for eb in mous.ebs)
        + f'    <caltables name="{prefix}.session_1.caltables.tgz"/>\n'
        + "".join(f'    <file name="{name}"/>\n' for name in files)
        + "  </ous>\n</piperesults>\n")
