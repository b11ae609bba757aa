"""image on deliveries of every cycle, before CASA runs: clean-era (Cycle 0-3) imaging scripts converted
and translated, and seed 003's re-imaging examples as options (per-spw --nbin, --cont all, a user's
cont.dat). The CASA runs are in test_image_legacy_casa.py."""
from __future__ import annotations

import numpy as np
import pytest
from imaging_member import EB, MOUS, pipeline_member

from almadeliver.casa import imaging
from almadeliver.casa.imaging import Overrides
from almadeliver.casa.imaging_legacy import mask_region, python3_text, translate_clean
from almadeliver.cli import main
from almadeliver.errors import TreeError, UsageError
from almadeliver.sim import manual
from almadeliver.sim.plan import make_plan

# Two target fields, cubes of spws 17 and 23 (the guide's example ids) and an aggregate continuum.
_CUBE = ("tclean(vis=['{eb}.ms'], field='{f}', spw=['{s}'], imagename='{m}.s36_0.{f}_sci.spw{s}.cube.I.iter1', "
         "imsize=[64, 64], cell=['0.2arcsec'], specmode='cube', start='{start}', width='0.001GHz', nchan=16, "
         "weighting='briggs', robust=0.5, niter=100, deconvolver='hogbom', pbcor=True)\n")
LOG = "".join(_CUBE.format(eb=EB, m=MOUS, f=f, s=s, start=start) for f in ("CoolSource1", "CoolSource2")
              for s, start in (("17", "230.0005GHz"), ("23", "231.0005GHz"))) + "".join(
    f"tclean(vis=['{EB}.ms'], field='{f}', spw=['17:230.001~230.004GHz;230.012~230.015GHz,23:231.0~231.01GHz'], "
    f"imagename='{MOUS}.s38_0.{f}_sci.spw17_23.cont.I.iter1', imsize=[64, 64], cell=['0.2arcsec'], "
    "specmode='mfs', deconvolver='mtmfs', nterms=2, niter=50)\n" for f in ("CoolSource1", "CoolSource2"))
CONTDAT = """Field: {f}

SpectralWindow: 17
230.001~230.004GHz LSRK
230.012~230.015GHz LSRK

SpectralWindow: 23
231.0~231.01GHz LSRK
"""


@pytest.fixture
def member(tmp_path):
    """A restored pipeline member (working/<EB>.ms; empty MS folders: no CASA here)."""
    return pipeline_member(tmp_path, LOG, CONTDAT.format(f="CoolSource1") + "\n" + CONTDAT.format(f="CoolSource2"))


# -- seed 003 example 3: subset of spws and fields, per-spw binning, robust 1.5 ------------------------
def test_subset_with_per_spw_nbin_and_robust(member):
    ov = Overrides(spw="17,23", field="CoolSource1", nbin="17:8,23:2", robust=1.5, specmode="cube")
    jobs = imaging.plan_images(member, ov)
    assert {(j.field, j.spws[0]) for j in jobs} == {("CoolSource1", "17"), ("CoolSource1", "23")}
    by_spw = {j.spws[0]: j.tclean for j in jobs}
    assert by_spw["17"]["nchan"] == 2 and by_spw["17"]["width"] == "0.008GHz"
    assert by_spw["23"]["nchan"] == 8 and by_spw["23"]["width"] == "0.002GHz"
    assert {t["robust"] for t in by_spw.values()} == {1.5}
    # one integer still bins every cube
    assert {j.tclean["nchan"] for j in imaging.plan_images(member, Overrides(nbin=4, specmode="cube"))} == {4}


def test_per_spw_nbin_cli_form_and_refusals(member, capsys):
    assert main(["image", str(member), "--spw", "17,23", "--field", "CoolSource1,CoolSource2",
                 "--nbin", "17:8,23:2", "--robust", "1.5", "--specmode", "cube", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("nchan=2,") == 2 and out.count("nchan=8,") == 2 and "robust=1.5" in out
    for nbin, msg in (("17:8", "no entry for spw 23"), ("5:2", "spw 5, which is not among the imaged spws"),
                      ("17:0", "is not spw:channels"), ("x", "is not spw:channels")):
        assert main(["image", str(member), "--spw", "17,23", "--nbin", nbin, "--dry-run"]) == 2, nbin
        assert msg in capsys.readouterr().err, nbin


# -- the cube's spectral axis per spw: --width, --start/--nchan, --restfreq, --range (velocity or frequency) ---
def test_per_spw_width_start_nchan_restfreq_and_velocity_range(member):
    def cubes(**kw):
        jobs = imaging.plan_images(member, Overrides(field="CoolSource1", specmode="cube", **kw))
        return {j.spws[0]: j.tclean for j in jobs}

    by_spw = cubes(width="17:0.002GHz,23:0.004GHz")
    assert (by_spw["17"]["width"], by_spw["17"]["nchan"]) == ("0.002GHz", 8)
    assert (by_spw["23"]["width"], by_spw["23"]["nchan"]) == ("0.004GHz", 4)
    by_spw = cubes(start="17:230.004GHz", nchan="17:4")          # spw 23 keeps its delivered axis
    assert (by_spw["17"]["start"], by_spw["17"]["nchan"]) == ("230.004GHz", 4)
    assert (by_spw["23"]["start"], by_spw["23"]["nchan"]) == ("231.0005GHz", 16)
    # a velocity range in 1 km/s channels around a rest frequency: 40 channels, the first centred at -19.5 km/s
    by_spw = cubes(width="23:1km/s", spectral_range="23:-20~20km/s", restfreq="23:231.005GHz")
    assert by_spw["23"] == {**by_spw["23"], "width": "1km/s", "nchan": 40, "start": "-19.5km/s",
                            "restfreq": "231.005GHz"}
    assert "restfreq" not in by_spw["17"] and by_spw["17"]["nchan"] == 16
    # one value for every chosen cube; a frequency range in the delivered 1 MHz channels
    by_spw = cubes(spw="17", spectral_range="230.002~230.006GHz", restfreq="230.5GHz")
    assert {s: (t["start"], t["nchan"], t["restfreq"]) for s, t in by_spw.items()} == {
        "17": ("230.0025GHz", 4, "230.5GHz")}


@pytest.mark.parametrize("kw,msg", [
    ({"spectral_range": "-20~20km/s"}, "give the width in km/s too"),       # delivered width is in GHz
    ({"start": "5:230GHz"}, "--start names spw 5, which is not among the imaged spws"),
    ({"nchan": "17:10", "specmode": "cont"}, "--nchan apply to cubes"),
    ({"spectral_range": "17:-5~5km/s", "nchan": "17:3"}, "--range and --start/--nchan both set"),
    ({"restfreq": "17:3km/s"}, "'3km/s' is not a positive frequency"),
    ({"start": "17:230GHz,17:231GHz"}, "gives spw 17 twice"),
    ({"width": "x:2"}, "'x:2' is not spw:value"),
])
def test_per_spw_spectral_options_refused_before_casa(member, kw, msg):
    with pytest.raises(UsageError, match=msg):
        imaging.plan_images(member, Overrides(**kw))


def test_per_spw_spectral_options_on_the_command_line(member, capsys):
    assert main(["image", str(member), "--field", "CoolSource1", "--specmode", "cube", "--width", "23:1km/s",
                 "--range", "23:-20~20km/s", "--restfreq", "23:231.005GHz", "--start", "17:230.004GHz",
                 "--nchan", "17:4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    spw17, spw23 = (next(line for line in out.splitlines() if f"spw{s}.cube" in line and line.startswith("tclean("))
                    for s in ("17", "23"))
    assert "start='230.004GHz'" in spw17 and "nchan=4," in spw17 and "restfreq" not in spw17
    assert "start='-19.5km/s'" in spw23 and "nchan=40," in spw23 and "restfreq='231.005GHz'" in spw23
    assert main(["image", str(member), "--range", "17:1~2"]) == 2
    assert "--range '17:1~2'" in capsys.readouterr().err


# -- line-free channels where cont.dat does not give them: --line-free, the finder -------------------------
def _hz(ranges):
    return [(round(lo), round(hi), frame) for lo, hi, frame in ranges]


def test_line_free_ranges_replace_cont_dat_for_contsub_and_moments(member):
    ov = Overrides(field="CoolSource1", spw="17", specmode="cube", contsub=True, moments="0",
                   line_free="17:230.001~230.003GHz;230.013~230.0155GHz")
    (job,) = imaging.plan_images(member, ov)
    expected = [(230_001_000_000, 230_003_000_000, "LSRK"), (230_013_000_000, 230_015_500_000, "LSRK")]
    assert _hz(job.contsub[0]["ranges"]["17"]) == expected and list(job.contsub[0]["ranges"]) == ["17"]
    assert _hz(job.moments["line_free"]) == expected and job.moments["contdat"] == "--line-free"
    for bad, msg in (("17:1~2", "not LO~HI in frequency"), ("17:-5~5km/s", "not in frequency units"),
                     ("5:230~231GHz", "--line-free names spw 5"), ("17:230~231GHz XYZ", "frame 'XYZ'")):
        with pytest.raises(UsageError, match=msg):
            imaging.plan_images(member, Overrides(line_free=bad, contsub=True))


def test_line_free_finder_says_which_channels_hold_the_line(tmp_path):
    from astropy.io import fits as pyfits

    from almadeliver.casa.imaging.linefree import find_line_free

    rng = np.random.default_rng(1)
    cube = rng.normal(0, 0.01, (1, 40, 16, 16)) + 0.5 * np.exp(-((np.arange(16) - 8) ** 2)[None, :] / 4) * \
        np.exp(-((np.arange(16) - 8) ** 2)[:, None] / 4)          # continuum in every channel
    cube[0, 20:24, 7:10, 7:10] += 0.3                                  # the line
    cube[0, :2] = 0                                                    # flagged edge channels: blank
    head = pyfits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "CTYPE3": "FREQ", "CRVAL3": 230e9,
                          "CDELT3": 1e6, "CRPIX3": 1, "CUNIT3": "Hz", "CTYPE4": "STOKES", "SPECSYS": "LSRK"})
    pyfits.PrimaryHDU(cube.astype(np.float32), head).writeto(tmp_path / "x.image.pbcor.fits")
    found = find_line_free(tmp_path / "x.image.pbcor.fits")
    assert found.line_channels == [(20, 23)]
    assert _hz(found.ranges) == [(230_001_500_000, 230_018_500_000, "LSRK"), (230_024_500_000, 230_039_500_000, "LSRK")]
    assert "line channels 20-23 of 40 found in x.image.pbcor.fits" in found.describe()


# -- seed 003 example 1: aggregate continuum from all unflagged channels ---------------------------------
def test_cont_all_drops_the_cont_dat_ranges(member):
    (job, _) = sorted(imaging.plan_images(member, Overrides(specmode="cont", cont="all")), key=lambda j: j.field)
    assert job.tclean["spw"] == ["17,23"] and job.changed["spw"][1] == ["17,23"]
    (same, _) = sorted(imaging.plan_images(member, Overrides(specmode="cont")), key=lambda j: j.field)
    assert ":" in same.tclean["spw"][0]
    with pytest.raises(UsageError, match="--cont 'some' is unknown"):
        Overrides(cont="some")


# -- seed 003 example 2: a revised cont.dat drives the continuum images and the continuum subtraction ------
def test_user_cont_dat_in_working_drives_continuum_and_contsub(member):
    plain = imaging.plan_images(member, Overrides(specmode="cont"))
    assert all(not j.cont_ranges for j in plain)
    (member / "calibrated" / "working" / "cont.dat").write_text(
        CONTDAT.format(f="CoolSource1").replace("230.001~230.004GHz", "230.002~230.0025GHz")
        + "\n" + CONTDAT.format(f="CoolSource2"))
    jobs = imaging.plan_images(member, Overrides(contsub=True))
    cont = next(j for j in jobs if j.kind == "cont" and j.field == "CoolSource1")
    ((ms_ranges),) = cont.cont_ranges
    assert ms_ranges["17"][0][:2] == pytest.approx((230.002e9, 230.0025e9))
    assert "cont.dat" in cont.changed["spw"][1]
    cube = next(j for j in jobs if j.kind == "cube" and j.field == "CoolSource1" and j.spws == ["17"])
    assert cube.contsub[0]["ranges"]["17"][0][:2] == pytest.approx((230.002e9, 230.0025e9))
    # --cont all wins over any cont.dat
    assert all(not j.cont_ranges for j in imaging.plan_images(member, Overrides(cont="all")))


# -- clean-era imaging scripts (Cycles 0-3) --------------------------------------------------------------
@pytest.mark.parametrize("code,casa", [("2012.1.00042.S", "4.2.2"), ("2015.1.00042.S", "4.5.3")])
def test_simulator_writes_cycle_1_to_3_imaging_scripts_as_casa4_python2(tmp_path, code, casa):
    plan = make_plan(code)
    reducer = manual.write_scripts(plan, plan.mous[0], tmp_path / "m", tmp_path / "work")
    script = tmp_path / "m" / "script" / "scriptForImaging.py"
    text = script.read_text()
    assert "print 'Step ', mystep" in text and "clean(vis = vislist" in text and "tclean(" not in text
    assert f"re.search('^{casa}', casadef.casa_version)" in text and "pbimage = name+'.flux'" in text
    with pytest.raises(SyntaxError):
        compile(text, str(script), "exec")
    converted = python3_text(script)
    assert converted.python2 and converted.changed_lines and "print('Step ', mystep" in converted.text
    assert script.read_text() == text                           # the delivered script is not changed
    assert reducer.parent == tmp_path / "work" and "tclean(" in reducer.read_text()
    later = make_plan("2016.1.00042.S")
    assert manual.write_scripts(later, later.mous[0], tmp_path / "c4", tmp_path / "w4").name == "scriptForImaging.py"
    assert "tclean(" in (tmp_path / "c4" / "script" / "scriptForImaging.py").read_text()


def test_clean_translation_rules():
    t = translate_clean({"vis": "a.ms", "imagename": "x", "mode": "velocity", "start": "-10km/s", "width": "1km/s",
                         "nchan": 20, "imagermode": "mosaic", "psfmode": "clark", "interactive": True,
                         "mask": [[10, 12, 30, 32], [40, 40, 50, 50]], "minpb": 0.3, "uvtaper": True,
                         "outertaper": ["1arcsec"], "innertaper": ["5arcsec"], "usescratch": True,
                         "npercycle": 100, "resmooth": True, "outframe": "LSRK", "restfreq": "230.538GHz"})
    tc = t.tclean
    assert tc["specmode"] == "cube" and (tc["start"], tc["width"], tc["nchan"]) == ("-10km/s", "1km/s", 20)
    assert tc["gridder"] == "mosaic" and tc["deconvolver"] == "clark" and tc["pblimit"] == 0.3
    assert tc["uvtaper"] == ["1arcsec"] and tc["savemodel"] == "modelcolumn" and tc["restoringbeam"] == "common"
    assert tc["mask"] == ["box[[10pix,12pix],[30pix,32pix]]", "box[[40pix,40pix],[50pix,50pix]]"]
    assert tc["usemask"] == "user" and tc["interactive"] is False
    assert (tc["niter"], tc["imsize"], tc["cyclefactor"]) == (500, [256, 256], 1.5)   # clean's defaults written out
    assert any(n.startswith("innertaper=") for n in t.not_translated)
    assert any(n.startswith("npercycle=") for n in t.not_translated)
    assert "cleaned inside the call's mask" in t.interactive
    ms = translate_clean({"vis": "a.ms", "imagename": "y", "multiscale": [0, 5, 15], "nterms": 1})
    assert ms.tclean["deconvolver"] == "multiscale" and ms.tclean["scales"] == [0, 5, 15]
    mt = translate_clean({"vis": "a.ms", "imagename": "y", "nterms": 2, "mode": "mfs"})
    assert mt.tclean["deconvolver"] == "mtmfs" and mt.tclean["nterms"] == 2
    # an interactive clean without a mask: the delivered product/<imagename>.mask, else the threshold
    delivered = translate_clean({"imagename": "TWHya.continuum", "interactive": True},
                                {"TWHya.continuum": "/d/product/TWHya.continuum.mask"})
    assert delivered.tclean["mask"] == "/d/product/TWHya.continuum.mask" and "delivered mask" in delivered.interactive
    bare = translate_clean({"imagename": "z", "interactive": True, "threshold": "2mJy"})
    assert "mask" not in bare.tclean and "down to threshold='2mJy'" in bare.interactive
    assert mask_region("") == "" and mask_region("my.mask") == "my.mask"


def test_clean_era_manual_delivery_plan_lists_the_translations(tmp_path, capsys):
    plan = make_plan("2013.1.00042.S")
    m = tmp_path / "member.uid___A001_X1_X9"
    manual.write_scripts(plan, plan.mous[0], m, tmp_path / "work")
    (m / "calibrated" / "calibrated.ms").mkdir(parents=True)
    (m / "product").mkdir()
    listed = imaging.list_images(m)
    # the QA2 product set: a continuum image per sideband, then a cube per spw (the line cube first)
    assert [(j.kind, j.spws) for j in listed] == [("mfs", ["0", "1"]), ("mfs", ["2"]), ("cube", ["0"]),
                                                 ("cube", ["1"]), ("cube", ["2"])]
    assert all(j.source.endswith("clean()") for j in listed)
    assert main(["image", str(m), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "scriptForImaging.py is Python 2 (CASA 3.4-4.x): converted for the run with fissix" in out
    assert "mode='frequency' -> specmode='cube'" in out and "resmooth=True -> restoringbeam='common'" in out
    assert "interactive=True -> interactive=False: no mask delivered" in out
    assert "not translated: npercycle=100" in out
    bad = m / "script" / "scriptForImaging.py"
    bad.write_text("print 'a'\nif x ==:\n  pass\n")
    with pytest.raises(TreeError, match="neither Python 3 nor Python 2"):
        imaging.plan(m)


# -- seed 003 example 4: the science target flags (hifa_flagtargets) before imaging ------------------------
FLAG_HEADER = "# User flagging commands file for the imaging pipeline\n#\n"


def test_target_flag_template_with_commands_is_applied_to_a_copy(member, capsys):
    (member / "calibration" / f"{EB}_flagtargetstemplate.txt").write_text(FLAG_HEADER)    # as delivered: empty
    assert all(not j.flagtargets for j in imaging.plan_images(member))
    working = member / "calibrated" / "working"
    (working / f"{EB}_flagtargetstemplate.txt").write_text(
        FLAG_HEADER + "mode='manual' spw='17:3~5' field='CoolSource1' reason='user_line_flag'\n")
    jobs = imaging.plan_images(member, Overrides(contsub=True))
    copy = f"targets/{EB}_targets.ms"
    for job in jobs:
        assert job.tclean["datacolumn"] == "data", job.name
        assert job.tclean["vis"] == ([copy] if job.kind == "cont" else [f"contsub/{EB}_targets.ms.{job.field}.contsub"])
        (run,) = job.flagtargets
        assert run["vis"] == str(working / f"{EB}.ms") and run["datacolumn"] == "corrected"
        assert run["commands"] == ["mode='manual' spw='17:3~5' field='CoolSource1' reason='user_line_flag'"]
    cube = next(j for j in jobs if j.kind == "cube")
    assert cube.contsub[0]["vis"] == copy          # the continuum is fitted on the flagged copy
    assert main(["image", str(member), "--specmode", "cont", "--field", "CoolSource1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"flagdata(vis='{copy}', mode='list'" in out and f"# {EB}_flagtargetstemplate.txt" in out
    assert f"reads {copy} datacolumn='data'" in out


# -- moment maps of the cubes ----------------------------------------------------------------------------
def test_moments_planned_for_each_cube_with_cont_dat_line_free_ranges(member, capsys):
    jobs = imaging.plan_images(member, Overrides(moments="8,0,1", field="CoolSource1"))
    cubes = [j for j in jobs if j.kind == "cube"]
    assert cubes and all(j.moments["moments"] == [0, 1, 8] for j in cubes)
    assert not any(j.moments for j in jobs if j.kind == "cont")
    spw17 = next(j for j in cubes if j.spws == ["17"])
    assert [r[:2] for r in spw17.moments["line_free"]] == pytest.approx([(230.001e9, 230.004e9), (230.012e9, 230.015e9)])
    assert spw17.moments["fits"][8] == f"{MOUS}.CoolSource1_sci.spw17.cube.I.mom8.fits"
    assert main(["image", str(member), "--moments", "0,8", "--specmode", "cube", "--dry-run"]) == 0
    assert "immoments(moments=[0, 8]) of" in capsys.readouterr().out
    for bad in ("4", "zero"):
        assert main(["image", str(member), "--moments", bad, "--dry-run"]) == 2
        assert "is not an immoments moment" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--moments applies to cubes"):
        imaging.plan_images(member, Overrides(moments="0", specmode="cont"))


def test_readme_copy_and_staff_readme_get_the_new_beam_and_rms_beside_the_delivered(tmp_path):
    """Item 7 of issue 26: after re-imaging, OUT/README and the staff README show each re-made image's
    beam and rms with the delivered image's beside them; free-text figures of the delivered images
    are marked as such (the request lines are not)."""
    from almadeliver.casa.imaging import Comparison, ImageStats, updated_readme, write_record
    from almadeliver.packaging.fromdelivery import _note

    member, out = tmp_path / "member.uid___A001_X1_X3", tmp_path / "reimage"
    member.mkdir()
    out.mkdir()
    delivered = ("Proposed rms: 25.0 mJy/beam in 5.9 MHz at Rep. Freq. 97.981 GHz\nImaging:\n\nTarget: W51\n"
                 "x.spw0.cube.I.pbcor.fits: rms 485.80 mJy/beam, beamsize 10.00x7.76 arcsec\n"
                 "x.cont.I.tt0.pbcor.fits: rms 8.77 mJy/beam, beamsize 8.52x6.60 arcsec\n"
                 "Cubes of concatenated dataset has an RMS of 4.2 mJy/beam (no cont. subtraction)\n")
    (member / "README").write_text(delivered)
    new = Comparison("x.spw0.cube.I.pbcor.fits", ImageStats(9.69, 7.30, 10.0, 0.4012, 1.2, 16, "Jy/beam"),
                     ImageStats(10.0, 7.76, 10.0, 0.4858, 1.2, 32, "Jy/beam"), None)
    readme = updated_readme(member, out, [new], Overrides(nbin=2))
    text = readme.read_text()
    assert ("x.spw0.cube.I.pbcor.fits: rms 401.20 mJy/beam, beamsize 9.69x7.30 arcsec "
            "(delivered: rms 485.80 mJy/beam, beamsize 10.00x7.76 arcsec)\n") in text
    assert "x.cont.I.tt0.pbcor.fits: rms 8.77 mJy/beam, beamsize 8.52x6.60 arcsec [as delivered]\n" in text  # not re-made
    assert "an RMS of 4.2 mJy/beam (no cont. subtraction) [as delivered]\n" in text
    assert "Proposed rms: 25.0 mJy/beam in 5.9 MHz at Rep. Freq. 97.981 GHz\n" in text      # the request
    assert "Re-imaged by almadeliver (overrides: nbin=2)" in text
    closing = text.split("Re-imaged by almadeliver")[1]
    assert "x.spw0.cube.I.pbcor.fits: rms 401.20 mJy/beam, beamsize 9.69x7.30 arcsec (delivered: rms 485.80" in closing
    assert (member / "README").read_text() == delivered                                       # never changed
    # the staff README (packaging.fromdelivery): the same numbers, read back from image_record.json
    write_record(out, [], [new], {}, Overrides(nbin=2))
    note = _note(tmp_path / "casa-20240101-000000.log", out)
    assert "with nbin=2" in note
    assert ("x.spw0.cube.I.pbcor.fits: rms 401.20 mJy/beam, beamsize 9.69x7.30 arcsec "
            "(delivered: rms 485.80 mJy/beam, beamsize 10.00x7.76 arcsec)") in note
    # image --selfcal re-makes the continuum under another name: its line keeps the delivered numbers
    # and names the new image with its own (casa/selfcal.comparisons)
    selfcal = Comparison("x_selfcal.image.pbcor.fits", ImageStats(8.50, 6.61, 12.0, 0.0021, 0.9, 1, "Jy/beam"),
                         ImageStats(8.52, 6.60, 12.0, 0.0088, 0.8, 1, "Jy/beam"), None,
                         delivered_fits="x.cont.I.tt0.pbcor.fits")
    (tmp_path / "sc").mkdir()
    text = updated_readme(member, tmp_path / "sc", [selfcal], how="self-calibration of W51").read_text()
    assert ("x.cont.I.tt0.pbcor.fits: rms 8.77 mJy/beam, beamsize 8.52x6.60 arcsec [re-made as "
            "x_selfcal.image.pbcor.fits: rms 2.10 mJy/beam, beamsize 8.50x6.61 arcsec]\n") in text
    assert ("x_selfcal.image.pbcor.fits: rms 2.10 mJy/beam, beamsize 8.50x6.61 arcsec (delivered "
            "x.cont.I.tt0.pbcor.fits: rms 8.80 mJy/beam, beamsize 8.52x6.60 arcsec)") in text
    assert "Re-imaged by almadeliver (self-calibration of W51)" in text
