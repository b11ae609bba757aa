"""The staff reduction area: prepare and the final checklist (seed 001)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from almadeliver.delivery.report import Severity
from almadeliver.delivery.staff import check_area, check_group_area, load_area, prepare_area
from almadeliver.errors import TreeError, UsageError
from almadeliver.ids import Uid

# The W51 12m MOUS of 2013.1.00308.S (ids from its real README)
MOUS = Uid.parse("uid://A001/X196/X93")
EBS = [Uid.parse("uid://A002/X9ee74a/X26f0"), Uid.parse("uid://A002/Xa8df68/Xb4b")]
STEPS = ["Import of the ASDM", "Fix of SYSCAL table times", "Listobs, flagging", "Bandpass calibration",
         "Gain calibration", "Apply calibrations", "Split out corrected column"]


def calibration_script(eb: Uid, steps=STEPS, thesteps="[]") -> str:
    """A scriptForCalibration.py with the ALMA generator's step structure (Python 3)."""
    titles = ",\n              ".join(f"{k}: '{t}'" for k, t in enumerate(steps))
    blocks = "".join(
        f"\n# {t}\nmystep = {k}\nif(mystep in thesteps):\n"
        f"  casalog.post('Step '+str(mystep)+' '+step_title[mystep],'INFO')\n"
        f"  print('Step ', mystep, step_title[mystep])\n" for k, t in enumerate(steps))
    split = (f"  split(vis = '{eb.disk}.ms.split', outputvis = '{eb.disk}.ms.split.cal',\n"
             "    datacolumn = 'corrected', keepflags = True)\n")
    # step 0 as the ALMA generator writes it, with the staff manual's removal of the flag versions
    blocks = blocks.replace(f"\n# {steps[0]}\nmystep = 0\nif(mystep in thesteps):\n", (
        f"\n# {steps[0]}\nmystep = 0\nif(mystep in thesteps):\n"
        f"  if os.path.exists('{eb.disk}.ms') == False:\n"
        f"    os.system('rm -rf {eb.disk}.ms.flagversions')\n"
        f"    importasdm('{eb.disk}', asis='Antenna Station Receiver Source CalAtmosphere CalWVR CorrelatorMode SBSummary',"
        " bdfflags=True, lazy=False, process_caldevice=False)\n"), 1)
    return (f"thesteps = {thesteps}\nstep_title = {{{titles}}}\n\n"
            "try:\n  print('List of steps to be executed ...', mysteps)\n  thesteps = mysteps\n"
            "except:\n  print('global variable mysteps not set.')\nif (thesteps==[]):\n"
            "  thesteps = range(0,len(step_title))\n" + blocks + split)


def casa_log(lines: list[str], version: str = "4.4.0") -> str:
    lines = [f"CASA Version {version}-REL (r33623)"] + lines
    return "".join(f"2015-07-0{1 + i % 8} 12:00:0{i % 10}\tINFO\t::casa\t{line}\n" for i, line in enumerate(lines))


def image(path: Path, value: float) -> None:
    fits.PrimaryHDU(np.full((1, 1, 16, 16), value, dtype=np.float32)).writeto(path)


def real_measurements(area: Path, ebs: list[Uid], source: Path) -> None:
    """Replace the fake MSs of a synthetic area with real ones from ``source`` (the simulated staff
    area of the session, conftest ``staff_reduction``), renamed to this area's EBs: each EB's
    ``.ms.split.cal`` and split flag versions, ``calibrated.ms``, and the product images."""
    import shutil

    sim = sorted(source.glob("Calibration_*"))
    comb = area / "Combination" / "calibrated"
    for k, eb in enumerate(ebs):
        folder, sim_folder = area / f"Calibration_{eb.tail}", sim[k % len(sim)]
        sim_eb = next(sim_folder.glob("*.ms.scriptForCalibration.py")).name[: -len(".ms.scriptForCalibration.py")]
        shutil.copytree(sim_folder / f"{sim_eb}.ms.split.flagversions", folder / f"{eb.disk}.ms.split.flagversions")
        shutil.rmtree(folder / f"{eb.disk}.ms.split.cal")
        dest = comb if len(ebs) > 1 else folder
        shutil.copytree(source / "Combination" / "calibrated" / f"{sim_eb}.ms.split.cal", dest / f"{eb.disk}.ms.split.cal")
    if len(ebs) > 1:
        shutil.rmtree(comb / "calibrated.ms")
        shutil.copytree(source / "Combination" / "calibrated" / "calibrated.ms", comb / "calibrated.ms")
    for fits_file in sorted((source / "Imaging").glob("*.fits")):
        shutil.copy(fits_file, area / "Imaging" / fits_file.name)


def make_area(root: Path, real: Path, ebs=EBS, readme: str | None = None, measurements: Path | None = None) -> Path:
    """A complete, tiny staff area for the W51 MOUS, README from the real W51 README; with
    ``measurements`` (a simulated staff area) its MSs and images are real (see real_measurements)."""
    area = prepare_area(MOUS, ebs, root)
    for eb in ebs:
        folder = area / f"Calibration_{eb.tail}"
        (folder / eb.disk).mkdir()
        (folder / eb.disk / "ASDM.xml").write_text("<ASDM/>\n")
        (folder / f"{eb.disk}.ms.scriptForCalibration.py").write_text(calibration_script(eb))
        (folder / "casa-20150701-120000.log").write_text(
            casa_log([f"Step {k} {t}" for k, t in enumerate(STEPS)]))
        (folder / "qa2").mkdir()
        for k in (1, 2, 3):
            (folder / "qa2" / f"{eb.disk}__qa2_part{k}.png").write_bytes(b"\x89PNG fake plot")
        (folder / "qa2" / "textfile.txt").write_text("QA2 report\n")
        (folder / f"{eb.disk}.ms.split.bandpass").mkdir()
        (folder / f"{eb.disk}.ms.split.bandpass" / "table.dat").write_bytes(b"\0" * 700)
        (folder / f"{eb.disk}.ms.wvrgcal").write_text("WVR statistics\n")
        (folder / f"{eb.disk}.ms.split.bandpass.plots").mkdir()
        (folder / f"{eb.disk}.ms.split.bandpass.plots" / "bp.png").write_bytes(b"\x89PNG bandpass")
        (folder / f"{eb.disk}.ms.split.cal").mkdir()
        (folder / f"{eb.disk}.ms.split.cal" / "table.dat").write_bytes(b"\0" * 100)
        (folder / f"{eb.disk}.ms.flagversions").mkdir()
    if len(ebs) > 1:
        comb = area / "Combination" / "calibrated"
        (comb / "scriptForFluxCalibration.py").write_text("concat(vis=[...], concatvis='calibrated.ms')\n")
        lines = []
        for eb in ebs:
            (comb / f"{eb.disk}.ms.split.fluxscale").write_text(
                "2015-07-01 12:00:00\tINFO\tfluxscale::::\t Flux density for J1922+1530 in SpW=0 "
                "(freq=2.186e+11 Hz) is: 1.02 +/- 0.01 (SNR = 102.0, N = 50)\n")
            lines.append(f'"J1922+1530" 0 218.60 1.0200 1.0200 2015-07-01T06:42:25 /lustre/{eb.disk}.ms.split.cal\n')
        (comb / "allFluxes.txt").write_text("".join(lines))
        (comb / "casa-20150702-120000.log").write_text(casa_log(["concat::::", "setjy::::"]))
        (comb / "calibrated.ms").mkdir()
    imaging = area / "Imaging"
    (imaging / "scriptForImaging.py").write_text("tclean(vis='calibrated.ms', imagename='w51_CO')\n")
    (imaging / "casa-20150703-120000.log").write_text(casa_log(["tclean::::", "exportfits::::"]))
    image(imaging / "w51_CO.image.pbcor.fits", 1.0)
    image(imaging / "w51_CO.flux.fits", 0.5)
    if readme is None:
        text = (real / "delivery" / "W51_2013.1.00308.S_12m_README.txt").read_text()
        readme = text.split("#####")[1].strip() + "\n"     # the reducer's part: header and QA2 notes
    (area / "README").write_text(readme)
    (area / "script").mkdir()
    (area / "script" / "scriptForPI.py").write_text("# scriptForPI (staff copy)\n")
    if measurements is not None:
        real_measurements(area, ebs, measurements)
    return area


# The items that read measurement sets and real images: the synthetic areas here have none (their
# MSs are folders with a table.dat), so these items fail on them; test_checklist.py runs them on a
# simulated area made with CASA.
MS_ITEMS = {"staff.eb.split-cal", "staff.eb.flagging", "staff.eb.calibrators", "staff.combination.concat",
            "staff.combination.separation", "staff.imaging.products"}


def failed(report, ms_items: bool = False) -> dict[str, str]:
    """path -> its failure messages (joined by ' | '); the MS items only when asked."""
    out: dict[str, str] = {}
    for f in report.of(Severity.ERROR):
        if f.check in MS_ITEMS and not ms_items:
            continue
        out[f.path] = f"{out[f.path]} | {f.message}" if f.path in out else f.message
    return out


def test_prepare_makes_the_staff_layout(tmp_path):
    area = prepare_area(MOUS, EBS, tmp_path)
    assert area == tmp_path / "uid___A001_X196_X93"
    assert sorted(str(p.relative_to(area)) for p in area.rglob("*")) == [
        "Calibration_X26f0", "Calibration_Xb4b", "Combination", "Combination/calibrated", "Imaging"]
    (area / "Imaging" / "keep.txt").write_text("x")
    prepare_area(MOUS, EBS, tmp_path)                      # again: harmless
    assert (area / "Imaging" / "keep.txt").exists()
    one = prepare_area(Uid.parse("uid___A001_X196_X94"), EBS[:1], tmp_path)
    assert not (one / "Combination").exists()


def test_prepare_tells_clashing_tails_apart(tmp_path):
    twin = Uid.parse("uid://A002/Xabcdef/X26f0")
    area = prepare_area(MOUS, [EBS[0], twin, EBS[1]], tmp_path)
    assert sorted(p.name for p in area.glob("Calibration_*")) == [
        "Calibration_X9ee74a_X26f0", "Calibration_Xabcdef_X26f0", "Calibration_Xb4b"]
    (area / "Calibration_Xabcdef_X26f0" / f"{twin.disk}.ms.scriptForCalibration.py").write_text("")
    assert [eb.uid for eb in load_area(area).ebs] == [None, twin, None]
    with pytest.raises(UsageError, match="twice"):
        prepare_area(MOUS, [EBS[0], EBS[0]], tmp_path)
    with pytest.raises(UsageError):
        prepare_area(MOUS, [], tmp_path)


def test_synthetic_area_passes_every_file_item(tmp_path, real):
    """Every item that reads files passes; the MS items fail on fake MSs, each saying why."""
    report = check_area(make_area(tmp_path, real))
    assert failed(report) == {}
    assert report.flavour == "staff-area"
    assert report.details == {"mous": MOUS.archive, "ebs": [e.archive for e in EBS]}
    checks = sorted({f.check for f in report.findings})
    assert checks == sorted({
        "staff.casa-version", "staff.combination.allfluxes", "staff.combination.fluxcal-script",
        "staff.combination.fluxscale", "staff.combination.log", "staff.combination.log-warnings", "staff.eb.flagversions",
        "staff.eb.log", "staff.eb.log-warnings", "staff.eb.qa2", "staff.eb.script", "staff.eb.setjy",
        "staff.imaging.fits-verify", "staff.imaging.flux", "staff.imaging.log", "staff.imaging.log-warnings",
        "staff.imaging.masks", "staff.imaging.pbcor", "staff.imaging.script", "staff.readme"} | {
        "staff.eb.split-cal", "staff.eb.flagging", "staff.combination.concat", "staff.imaging.products",
        "staff.imaging.sensitivity", "staff.imaging.resolution"})
    assert [f.message for f in report.findings if f.check == "staff.readme"] == ["CASA 4.4.0"]
    assert {f.path for f in report.findings if f.check == "staff.eb.script"} == {
        f"Calibration_{eb.tail}/{eb.disk}.ms.scriptForCalibration.py" for eb in EBS}
    ms_failures = failed(report, ms_items=True)
    assert "not a readable MS" in ms_failures[f"Calibration_X26f0/{EBS[0].disk}.ms.split.cal"]
    assert "not a readable MS" in ms_failures["Combination/calibrated/calibrated.ms"]
    assert ms_failures["Calibration_X26f0"] == "no flag versions (<vis>.flagversions) and no .ms.split.cal"
    # the real W51 README's request: 5.85 mJy/beam in 0.728 MHz, 1.0 then changed to 0.2 arcsec
    by = {f.check: f for f in report.findings}
    assert by["staff.imaging.sensitivity"].numbers == {"requested_rms_jy": pytest.approx(5.85e-3)}
    assert by["staff.imaging.resolution"].numbers == {"requested_beam_arcsec": 0.2}
    assert by["staff.casa-version"].numbers["versions"]["Imaging"] == "4.4.0"
    assert by["staff.combination.allfluxes"].numbers["max_relative_difference"] == 0.0


def test_one_eb_needs_no_combination(tmp_path, real):
    area = make_area(tmp_path, real, ebs=EBS[:1])
    report = check_area(area)
    assert failed(report) == {}
    assert not [f for f in report.findings if f.check.startswith("staff.combination")]


def test_stale_leap_second_table_is_a_warning(tmp_path, real):
    """casacore's SEVERE about an old leap second table (what CASA 6.7 writes here) is about the install."""
    area = make_area(tmp_path, real, ebs=EBS[:1])
    log = area / "Imaging" / "casa-20150703-120000.log"
    origin = "tclean::MeasTable::dUTC(Double) (file MeasTable.cc, line 4290)"
    log.write_text(log.read_text() + f"2015-07-03 12:00:09\tSEVERE\t{origin}\tLeap second table TAI_UTC seems "
                   f"out-of-date.\n2015-07-03 12:00:09\tSEVERE\t{origin}+\tUntil the table is updated\n")
    report = check_area(area)
    assert failed(report) == {}
    [warning] = [w for w in report.of(Severity.WARNING) if "leap second" in w.message]
    assert warning.check == "staff.imaging.log"
    assert not [w for w in report.of(Severity.WARNING) if w.check.endswith("log-warnings")]
    log.write_text(log.read_text() + "2015-07-03 12:00:10\tSEVERE\ttclean::::\tTask tclean raised an exception\n")
    assert "SEVERE message at line 6" in failed(check_area(area))["Imaging/casa-20150703-120000.log"]


def test_each_failure_is_named_with_its_path(tmp_path, real):
    area = make_area(tmp_path, real)
    eb0, eb1 = (area / f"Calibration_{eb.tail}" for eb in EBS)
    log0 = eb0 / "casa-20150701-120000.log"
    log0.write_text(log0.read_text() + "2015-07-01 12:00:09\tSEVERE\tapplycal::Calibrater::selectvis\t"
                    "Caught exception: Specified selection selects zero rows!\n")
    script1 = eb1 / f"{EBS[1].disk}.ms.scriptForCalibration.py"
    script1.write_text(calibration_script(EBS[1], STEPS[:-1]))          # no final split step
    (area / "Combination" / "calibrated" / "scriptForFluxCalibration.py").unlink()
    (area / "Imaging" / "casa-20150704-120000.log").write_text(casa_log(["tclean::::"]))   # a second log
    (area / "Imaging" / "w51_CO.flux.fits").unlink()
    report = check_area(area)
    assert not report.ok()
    problems = failed(report)
    assert "SEVERE message at line 9" in problems["Calibration_X26f0/casa-20150701-120000.log"]
    assert "does not split" in problems[f"Calibration_Xb4b/{EBS[1].disk}.ms.scriptForCalibration.py"]
    assert problems["Combination/calibrated/scriptForFluxCalibration.py"] == "missing or empty"
    assert "2 CASA logs" in problems["Imaging"]
    assert "primary beam of w51_CO.image.pbcor.fits" in problems["Imaging/w51_CO.flux.fits"]
    assert "staff.imaging.flux" in {f.check for f in report.of(Severity.ERROR)}


def test_script_and_log_criteria(tmp_path, real):
    area = make_area(tmp_path, real, ebs=EBS[:1])
    folder = area / "Calibration_X26f0"
    script = folder / f"{EBS[0].disk}.ms.scriptForCalibration.py"
    script.write_text(calibration_script(EBS[0], thesteps="[0, 1]"))
    assert "thesteps = []" in failed(check_area(area))[str(script.relative_to(area))]
    script.write_text("importasdm('x')\n")
    assert "step_title" in failed(check_area(area))[str(script.relative_to(area))]
    script.write_text(calibration_script(EBS[0]))
    log = folder / "casa-20150701-120000.log"
    log.write_text(casa_log([f"Step {k} {t}" for k, t in enumerate(STEPS) if k != 3]))
    assert "step(s) 3" in failed(check_area(area))[str(log.relative_to(area))]
    log.unlink()
    assert "no CASA log" in failed(check_area(area))["Calibration_X26f0"]
    (folder / "casa.log").write_text(casa_log([f"Step {k} {t}" for k, t in enumerate(STEPS)]))
    (folder / "qa2" / "textfile.txt").unlink()
    (folder / "qa2" / f"{EBS[0].disk}__qa2_part1.png").unlink()
    assert failed(check_area(area)) == {"Calibration_X26f0/qa2": "missing qa2_part1.png, textfile.txt (2 files there)"}


def test_readme_and_images(tmp_path, real):
    area = make_area(tmp_path, real, ebs=EBS[:1], readme="Comments from Reducer: fine.\n")
    (area / "Imaging" / "w51_CO.image.pbcor.fits").write_bytes(b"not a fits file")
    problems = failed(check_area(area))
    assert problems["README"] == "does not name the CASA version"
    assert problems["Imaging/w51_CO.image.pbcor.fits"].startswith("not a readable FITS file")
    for p in (area / "Imaging").glob("*.fits"):
        p.unlink()
    problems = failed(check_area(area))
    assert problems["Imaging"] == "no *.pbcor.fits | no *.flux.fits"
    assert {f.check for f in check_area(area).of(Severity.ERROR)} >= {"staff.imaging.pbcor", "staff.imaging.flux"}


def test_eb_named_by_nothing_and_bad_area(tmp_path, real):
    area = prepare_area(MOUS, EBS[:1], tmp_path)
    assert load_area(area).ebs[0].uid is None
    assert "naming an EB ending in X26f0" in failed(check_area(area))["Calibration_X26f0"]
    with pytest.raises(TreeError, match="not a uid folder"):
        load_area(tmp_path)
    with pytest.raises(TreeError, match="not a folder"):
        check_area(tmp_path / "nothing")


def test_group_area(tmp_path, real):
    area = make_area(tmp_path, real, ebs=EBS[:1])
    gous = tmp_path / "uid___A001_X196_X92"
    (gous / "Imaging").mkdir(parents=True)
    for name in ("scriptForImaging.py", "casa-20150703-120000.log", "w51_CO.image.pbcor.fits", "w51_CO.flux.fits"):
        (gous / "Imaging" / name).write_bytes((area / "Imaging" / name).read_bytes())
    assert not check_group_area(gous).ok()                     # no README yet
    (gous / "README").write_text((area / "README").read_text())
    report = check_group_area(gous)
    assert failed(report) == {}
    assert report.details == {"gous": "uid://A001/X196/X92"}


def test_flagversions_removal_forms():
    """Step 0's removal of <EB>.ms.flagversions: the manual's literal, built from vis, rmtree; not after
    importasdm, not in another step, not commented out."""
    from almadeliver.delivery.checklist import flagversions_removal

    eb = EBS[0]
    head = "thesteps = []\nstep_title = {0: 'Import of the ASDM', 1: 'Listobs'}\n"

    def step0(body: str) -> str:
        return head + "\nmystep = 0\nif(mystep in thesteps):\n" + body + "\nmystep = 1\nif(mystep in thesteps):\n  listobs(vis='x')\n"

    imp = f"  importasdm('{eb.disk}', asis='Antenna Station Receiver Source')\n"
    assert flagversions_removal(step0(f"  os.system('rm -rf {eb.disk}.ms.flagversions')\n" + imp), eb) == (True, 6, 7)
    built = f"vis = '{eb.disk}.ms'\n" + step0("  os.system('rm -rf ' + vis + '.flagversions')\n" + imp)
    assert flagversions_removal(built, eb)[0]
    assert flagversions_removal(step0(f"  shutil.rmtree('{eb.disk}.ms.flagversions', ignore_errors=True)\n" + imp), eb)[0]
    assert flagversions_removal(step0(imp + f"  os.system('rm -rf {eb.disk}.ms.flagversions')\n"), eb) == (False, None, 6)
    assert not flagversions_removal(step0(f"  # os.system('rm -rf {eb.disk}.ms.flagversions')\n" + imp), eb)[0]
    assert not flagversions_removal(step0(f"  os.system('rm -rf {EBS[1].disk}.ms.flagversions')\n" + imp), eb)[0]
    assert flagversions_removal(step0("  listobs(vis='x')\n"), eb) == (False, None, None)


def test_setjy_against_other_ebs_and_flux_csv(tmp_path, real):
    area = make_area(tmp_path, real)
    for eb, flux in zip(EBS, (1.50, 1.52)):
        script = area / f"Calibration_{eb.tail}" / f"{eb.disk}.ms.scriptForCalibration.py"
        script.write_text(script.read_text() + "bpcal = 'J1924-2914'\nsetjy(vis = 'x.ms.split', field = bpcal, "
                          f"standard = 'manual', fluxdensity = [{flux}, 0, 0, 0], spix = [-0.6])\n")
    report = check_area(area)
    setjy = [f for f in report.findings if f.check == "staff.eb.setjy"]
    assert [f.severity for f in setjy] == [Severity.INFO, Severity.INFO]
    assert setjy[0].numbers["setjy"][0]["field"] == "J1924-2914"
    assert setjy[0].numbers["max_relative_difference"] == pytest.approx(0.02 / 1.52)
    # the pipeline's flux.csv (ms, field, spw, I, Q, U, V, spix, uvmin, uvmax, comment) says 1.0 Jy
    (area / "Combination" / "calibrated" / "flux.csv").write_text(
        "ms,field,spw,I,Q,U,V,spix,uvmin,uvmax,comment\nx.ms,J1924-2914,0,1.0,0,0,0,-0.6,0,0,\"# catalogue\"\n")
    setjy = [f for f in check_area(area).findings if f.check == "staff.eb.setjy"]
    assert {f.severity for f in setjy} == {Severity.ERROR}
    assert "differs by 50%" in setjy[0].message and "flux.csv 1 Jy" in setjy[0].message
