"""image: everything before CASA runs (tclean calls -> jobs, overrides, names, refusals, comparison maths)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from imaging_member import EB, MOUS, pipeline_member

from almadeliver.casa import imaging
from almadeliver.casa.imaging import Overrides
from almadeliver.casa.imaging.restored import science_spws, split_ids
from almadeliver.cli import main
from almadeliver.delivery.contdat import parse_contdat
from almadeliver.errors import TreeError, UsageError

# Written the way the pipeline logs them: several lines per call, iter0 then iter1, a re-run of spw1.
LOG = f"""\
# hif_makeimages(hm_masking='auto')
tclean(vis=['{EB}_targets.ms'], field='src', spw=['0'], intent='OBSERVE_TARGET#ON_SOURCE',
       imagename='{MOUS}.s36_0.src_sci.spw0.cube.I.iter0', imsize=[64, 64], cell=['0.2arcsec'],
       specmode='cube', start='230.0005GHz', width='0.001GHz', nchan=16, weighting='briggs',
       robust=0.5, niter=0, deconvolver='hogbom')
tclean(vis=['{EB}_targets.ms'], field='src', spw=['0'], intent='OBSERVE_TARGET#ON_SOURCE',
       imagename='{MOUS}.s36_0.src_sci.spw0.cube.I.iter1', imsize=[64, 64], cell=['0.2arcsec'],
       specmode='cube', start='230.0005GHz', width='0.001GHz', nchan=16, weighting='briggs',
       robust=0.5, niter=100, threshold='0.01Jy', deconvolver='hogbom', pbcor=True)
tclean(vis=['{EB}_targets.ms'], field='src', spw=['1'], imagename='{MOUS}.s36_0.src_sci.spw1.cube.I.iter1',
       imsize=[64, 64], cell=['0.2arcsec'], specmode='cube', nchan=-1, width='', niter=10)
tclean(vis=['{EB}_targets.ms'], field='src', spw=['1'], imagename='{MOUS}.s37_0.src_sci.spw1.cube.I.iter1',
       imsize=[64, 64], cell=['0.2arcsec'], specmode='cube', nchan=-1, width='', niter=20)
tclean(vis=['{EB}_targets.ms'], field='src', spw=['0:229.9~230.0GHz;230.01~230.02GHz,1'],
       imagename='{MOUS}.s38_0.src_sci.spw0_1.cont.I.iter1', imsize=[64, 64], cell=['0.2arcsec'],
       specmode='mfs', deconvolver='mtmfs', nterms=2, niter=50)
exportfits(imagename='x.image', fitsimage='x.fits')
"""
CONTDAT = """Field: src

SpectralWindow: 0
229.990~230.003GHz LSRK
230.012~230.016GHz LSRK

SpectralWindow: 1
231.0~231.1GHz LSRK
"""


@pytest.fixture
def member(tmp_path):
    """A pipeline member folder as restore leaves it (the MS folders are empty: no CASA here)."""
    m = pipeline_member(tmp_path, LOG, CONTDAT, split_cal=True)
    fits.PrimaryHDU(np.zeros((1, 16, 8, 8), np.float32)).writeto(
        m / "product" / f"{MOUS}.src_sci.spw0.cube.I.pbcor.fits")
    return m


def test_jobs_are_the_last_iter1_calls_with_alma_product_names(member):
    jobs = imaging.plan_images(member)
    assert [j.name for j in jobs] == [f"{MOUS}.src_sci.spw0.cube.I", f"{MOUS}.src_sci.spw1.cube.I",
                                      f"{MOUS}.src_sci.spw0_1.cont.I"]
    spw0, spw1, cont = jobs
    assert spw1.tclean["niter"] == 20 and spw1.source.endswith("casa_commands.log:12")
    assert spw0.exports == {".image.pbcor": f"{MOUS}.src_sci.spw0.cube.I.pbcor.fits",
                            ".pb": f"{MOUS}.src_sci.spw0.cube.I.pb.fits"}
    assert cont.exports == {".image.tt0.pbcor": f"{MOUS}.src_sci.spw0_1.cont.I.tt0.pbcor.fits",
                            ".pb.tt0": f"{MOUS}.src_sci.spw0_1.cont.I.pb.tt0.fits"}
    assert [j.kind for j in jobs] == ["cube", "cube", "cont"] and cont.spws == ["0", "1"]
    # vis points at the restored MS with the pipeline's spw ids (calibrated/working wins over split.cal)
    assert spw0.tclean["vis"] == [str(member / "calibrated" / "working" / f"{EB}.ms")]
    assert spw0.delivered[f"{MOUS}.src_sci.spw0.cube.I.pbcor.fits"].endswith("spw0.cube.I.pbcor.fits")
    assert spw0.delivered[f"{MOUS}.src_sci.spw0.cube.I.pb.fits"] is None
    assert spw0.changed == {}  # no override, nothing changed beyond vis/imagename
    # the delivered call read DATA of <EB>_targets.ms; the restored working/<EB>.ms holds the calibrated data
    # in CORRECTED_DATA: that is the column read
    assert spw0.tclean["datacolumn"] == "corrected"
    assert spw0.reads == [{"vis": str(member / "calibrated" / "working" / f"{EB}.ms"), "datacolumn": "corrected",
                           "delivered": "datacolumn='corrected'"}]


def test_overrides_change_exactly_what_was_asked(member):
    ov = Overrides(robust=2, uvtaper="0.5arcsec", niter=7, threshold="1mJy", cell="0.1arcsec", imsize=128)
    spw0 = imaging.plan_images(member, ov)[0]
    t = spw0.tclean
    assert (t["weighting"], t["robust"], t["uvtaper"], t["niter"], t["threshold"]) == \
        ("briggs", 2.0, ["0.5arcsec"], 7, "1mJy")
    assert t["cell"] == "0.1arcsec" and t["imsize"] == [128, 128]
    assert spw0.changed["robust"] == [0.5, 2.0] and spw0.changed["niter"] == [100, 7]
    # the spw1 call had no weighting: robust needs briggs
    assert imaging.plan_images(member, ov)[1].tclean["weighting"] == "briggs"


def test_nbin_halves_cube_channels_and_keeps_the_band_edge(member):
    spw0, spw1, cont = imaging.plan_images(member, Overrides(nbin=2))
    assert spw0.tclean["nchan"] == 8 and spw0.tclean["width"] == "0.002GHz"
    # first binned channel spans the first two delivered ones: centre moves by half a delivered channel
    assert spw0.tclean["start"] == "230.001GHz"
    assert spw1.tclean["width"] == 2 and spw1.tclean["nchan"] == -1
    assert "width" not in cont.changed  # continuum images are not binned


@pytest.mark.parametrize("tclean,kw,expect", [
    ({"width": "0.001GHz", "nchan": 16, "start": "230.0005GHz"}, {"width": "4MHz"},
     {"width": "4MHz", "nchan": 4, "start": "230.002GHz"}),
    ({"width": 1, "nchan": 15}, {"width": "2"}, {"width": 2, "nchan": 7}),
    ({"width": "", "nchan": 10}, {"nbin": 3}, {"width": 3, "nchan": 3}),
    ({"width": "-0.5MHz", "nchan": 10, "start": "100GHz"}, {"nbin": 2},
     {"width": "-1MHz", "nchan": 5, "start": "99.99975GHz"}),
    ({"width": "0.5MHz", "nchan": 10}, {"width": "1km/s"}, {"width": "1km/s", "nchan": -1}),
])
def test_rebin_arithmetic(tclean, kw, expect):
    assert imaging.rebin(tclean, **kw) == expect


def test_spw_selection_narrows_the_aggregate_continuum(member):
    jobs = imaging.plan_images(member, Overrides(spw="1"))
    assert [j.name for j in jobs] == [f"{MOUS}.src_sci.spw1.cube.I", f"{MOUS}.src_sci.spw1.cont.I"]
    assert jobs[1].tclean["spw"] == ["1"]
    jobs = imaging.plan_images(member, Overrides(spw="0", specmode="cont"))
    assert jobs[0].tclean["spw"] == ["0:229.9~230.0GHz;230.01~230.02GHz"]


EB2 = "uid___A002_Xab_X13"
# Real pipeline spw ids (17, 19, 21): .ms.split.cal keeps the science spws, numbered from 0.
SPLIT_LOG = f"""\
tclean(vis=['{EB}_targets.ms', '{EB2}_targets.ms'], field='src', spw=['19', '19'],
       imagename='{MOUS}.s36_0.src_sci.spw19.cube.I.iter1', specmode='cube', niter=10)
tclean(vis=['{EB}_targets.ms', '{EB2}_targets.ms'], field='src', spw='17:229.9~230.0GHz;230.01~230.02GHz,21',
       imagename='{MOUS}.s38_0.src_sci.spw17_21.cont.I.iter1', specmode='mfs', niter=10)
"""
CALAPPLY = ("applycal(vis='{eb}.ms', field='J1924-2914', intent='AMPLITUDE,BANDPASS', spw='17,19,21,25', "
            "gaintable=['a.tbl'])\n"
            "applycal(vis='{eb}.ms', field='src', intent='TARGET', spw='17,19,21', gaintable=['a.tbl'])\n")


@pytest.fixture
def split_member(tmp_path):
    """A pipeline member restored at SPACESAVING 2 for EB (only .ms.split.cal) and 1 for EB2 (working/)."""
    m = tmp_path / f"member.{MOUS}"
    for sub in ("log", "product", "calibration", "calibrated/working"):
        (m / sub).mkdir(parents=True)
    (m / "log" / f"member.{MOUS}.casa_commands.log").write_text(SPLIT_LOG)
    for eb in (EB, EB2):
        (m / "calibration" / f"{eb}.ms.calapply.txt").write_text(CALAPPLY.format(eb=eb))
        (m / "calibrated" / f"{eb}.ms.split.cal").mkdir()
    (m / "calibrated" / "working" / f"{EB2}.ms").mkdir()
    (m / "product" / f"member.{MOUS}.src_sci.spw19.cube.I.pbcor.fits").write_bytes(b"")
    # what the native restore recorded: EB's science spws split out and re-indexed (the EBs' spws differed)
    (m / "calibrated" / "working" / "casa_commands.log").write_text(
        f"mstransform(vis='{EB}.ms', outputvis='../{EB}.ms.split.cal', spw='17,19,21', datacolumn='corrected',\n"
        "            reindex=True, keepflags=True)\n")
    return m


def test_spws_are_renumbered_for_split_cal_and_kept_for_working_ms(split_member):
    cube, cont = imaging.plan_images(split_member)
    # one tclean call, two MSs: CORRECTED_DATA of working/<EB2>.ms, DATA of the split (tclean's fallback)
    assert cube.tclean["datacolumn"] == "corrected"
    assert [(r["vis"].rsplit("/", 1)[1], r["datacolumn"]) for r in cube.reads] == \
        [(f"{EB}.ms.split.cal", "data"), (f"{EB2}.ms", "corrected")]
    split, working = str(split_member / "calibrated" / f"{EB}.ms.split.cal"), \
        str(split_member / "calibrated" / "working" / f"{EB2}.ms")
    assert cube.tclean["vis"] == [split, working] and cube.tclean["spw"] == ["1", "19"]
    # one selection for both MSs becomes one per MS, channel/frequency ranges kept
    assert cont.tclean["spw"] == ["0:229.9~230.0GHz;230.01~230.02GHz,2", "17:229.9~230.0GHz;230.01~230.02GHz,21"]
    assert cube.spws == ["19"] and cont.spws == ["17", "21"]          # the user still speaks pipeline ids
    # delivered products carry the member. prefix: the new ones get the same names
    assert cube.name == f"member.{MOUS}.src_sci.spw19.cube.I"
    assert cube.delivered[f"member.{MOUS}.src_sci.spw19.cube.I.pbcor.fits"] is not None
    assert imaging.plan_images(split_member, Overrides(spw="21"))[0].tclean["spw"] == ["2", "21"]


def test_split_cal_spw_ids_follow_what_the_restore_recorded(split_member):
    """A split that did not re-index (scriptForPI v2.x when the EBs' science spws agree) keeps the
    pipeline's ids: image must use them as they are, never an assumed renumbering."""
    log = split_member / "calibrated" / "working" / "casa_commands.log"
    log.write_text(log.read_text().replace("reindex=True", "reindex=False"))
    cube, cont = imaging.plan_images(split_member)
    assert cube.tclean["spw"] == ["19", "19"]
    assert cont.tclean["spw"] == ["17:229.9~230.0GHz;230.01~230.02GHz,21"] * 2


def test_split_cal_without_calapply_cannot_be_mapped(split_member):
    (split_member / "calibrated" / "working" / "casa_commands.log").unlink()
    (split_member / "calibration" / f"{EB}.ms.calapply.txt").unlink()
    with pytest.raises(TreeError, match=rf"cannot map the pipeline's spw ids onto {EB}.ms.split.cal"):
        imaging.plan_images(split_member)


@pytest.mark.parametrize("science,rows,expect", [
    (["17", "19", "21"], 3, {"17": "0", "19": "1", "21": "2"}),      # re-indexed: only the science rows
    (["17", "19", "21"], 21, {"17": "0", "19": "1", "21": "2"}),     # no row 21: re-indexed
    (["17", "19", "21"], 22, {"17": "17", "19": "19", "21": "21"}),  # a row 21: every ASDM row kept
    (["1", "2", "3"], 3, {"1": "0", "2": "1", "3": "2"}),            # 3 rows, the highest id 3: re-indexed
    (["0", "1"], 2, {"0": "0", "1": "1"}),
])
def test_a_split_keeps_the_ids_only_when_its_spw_table_has_the_highest_one(science, rows, expect):
    """Without a restore record, the split MS's SPECTRAL_WINDOW rows tell a re-indexed split (science spws
    from 0) from one that kept every row of the ASDM (the rows are read in CASA; the choice is not)."""
    assert split_ids(science, rows) == expect


def test_spw_ids_are_read_without_the_spaces_around_them():
    """A selection written with spaces ('17, 19', ' 21:1~5'): the ids alone, once each, in order."""
    assert imaging.spw_ids(["17, 19", " 21:1~5;7~9", "19"]) == ["17", "19", "21"]
    assert imaging.spw_ids("25:90.1~90.2GHz, 27") == ["25", "27"] and imaging.spw_ids("") == []


def test_the_science_spws_are_those_of_the_target_applycal_lines_in_numerical_order(split_member):
    (split_member / "calibration" / f"{EB}.ms.calapply.txt").write_text(
        f"applycal(vis='{EB}.ms', field='J1924-2914', intent='AMPLITUDE,BANDPASS', spw='9,17,19,21,25', "
        "gaintable=['a.tbl'])\n"
        f"applycal(vis='{EB}.ms', field='J1925', intent='PHASE', spw='27', gaintable=['a.tbl'])\n"
        f"applycal(vis='{EB}.ms', field='src', intent='CHECK,TARGET', spw='21,9', gaintable=['a.tbl'])\n"
        f"applycal(vis='{EB}.ms', field='src2', intent='TARGET', spw='17,9', gaintable=['a.tbl'])\n")
    assert science_spws(split_member, EB) == ["9", "17", "21"]
    assert science_spws(split_member, "uid___A002_Xab_X99") == []     # no calapply.txt for that EB


@pytest.mark.parametrize("ov,msg", [
    (Overrides(spw="7"), r"spw 7 is not among the imaged spws of this delivery \(0, 1\)"),
    (Overrides(field="nope"), r"field 'nope' is not among the imaged fields of this delivery \(src\)"),
    (Overrides(nbin=2, specmode="cont"), "--nbin apply to cubes"),
])
def test_unknown_spw_or_field_is_refused_before_casa(member, ov, msg):
    with pytest.raises(UsageError, match=msg):
        imaging.plan_images(member, ov)


@pytest.mark.parametrize("kw,msg", [
    ({"nbin": 2, "width": "2"}, "both set"), ({"nbin": 0}, "not a positive"), ({"specmode": "line"}, "unknown"),
    ({"threshold": "3"}, "quantity in Jy"), ({"uvtaper": "1GHz"}, "quantity in arcsec"), ({"width": "wide"}, "--width"),
])
def test_bad_overrides(kw, msg):
    with pytest.raises(UsageError, match=msg):
        Overrides(**kw)


def test_unrestored_member_is_refused(member):
    import shutil
    shutil.rmtree(member / "calibrated")
    with pytest.raises(TreeError, match="no restored MS .* almadeliver restore"):
        imaging.plan_images(member)


def test_contsub_uses_contdat_ranges_and_images_the_subtracted_ms(member, real):
    jobs = imaging.plan_images(member, Overrides(contsub=True, spw="0"))
    cube = jobs[0]
    assert cube.tclean["vis"] == [f"contsub/{EB}.ms.src.contsub"]
    (run,) = cube.contsub
    assert run["ranges"] == {"0": [(229.99e9, 230.003e9, "LSRK"), (230.012e9, 230.016e9, "LSRK")]}
    assert jobs[1].contsub == []  # continuum images are made from the unsubtracted data
    # the real pipeline cont.dat reads into the same shape
    ranges = imaging.contdat_ranges(parse_contdat(real / "pipeline" / "G008.67.B3.12m.cont.dat"))
    assert ranges["G008.67"]["25"][0] == pytest.approx((93.100687e9, 93.152312e9, "LSRK"))


@pytest.mark.parametrize("generation", [1, 2, 3])
def test_contsub_reads_every_contdat_generation(member, generation):
    from almadeliver.sim.pipeline import contdat_text

    text = contdat_text("src", {0: [(229.99e9, 230.003e9)], 1: [(231.0e9, 231.1e9)]}, generation,
                        flags={1: ["ALLCONT"], 0: ["LOWSPREAD"]})
    (member / "calibration" / f"{MOUS}.cont.dat").write_text(text)
    jobs = imaging.plan_images(member, Overrides(contsub=True, specmode="cube"))
    ranges = {spw: r for job in jobs for run in job.contsub for spw, r in run["ranges"].items()}
    # the earliest generation wrote no frame: the pipeline reads its ranges as TOPO
    frame = "TOPO" if generation == 1 else "LSRK"
    assert ranges["0"] == [(pytest.approx(229.99e9), pytest.approx(230.003e9), frame)]
    # ALLCONT / ALL: the whole spw is continuum (the earliest generation could not say so)
    assert ranges["1"] == ([(0.0, float("inf"), frame)] if generation > 1
                           else [(pytest.approx(231.0e9), pytest.approx(231.1e9), frame)])


def test_contsub_refuses_a_spw_where_no_continuum_was_found(member):
    from almadeliver.sim.pipeline import contdat_text

    (member / "calibration" / f"{MOUS}.cont.dat").write_text(
        contdat_text("src", {0: [], 1: [(231.0e9, 231.1e9)]}, 3))
    with pytest.raises(TreeError, match="no continuum range for field 'src' spw 0"):
        imaging.plan_images(member, Overrides(contsub=True, spw="0"))


def test_out_folder_is_new_and_never_product(member):
    first = imaging.new_out_folder(member, None)
    assert first.name == "reimage" and imaging.new_out_folder(member, None).name == "reimage.2"
    with pytest.raises(UsageError, match="inside product/"):
        imaging.new_out_folder(member, member / "product" / "x")
    (first / "a").write_text("x")
    with pytest.raises(UsageError, match="already holds files"):
        imaging.new_out_folder(member, first)


def _gaussian_fits(path, peak, sigma_noise, bmaj_arcsec, nchan=1, beams_table=False, seed=1):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64]
    img = peak * np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / (2 * 3.0 ** 2))
    data = img[None, None] + rng.normal(0, sigma_noise, (1, nchan, 64, 64))
    hdu = fits.PrimaryHDU(data.astype(np.float32))
    hdu.header["BUNIT"] = "Jy/beam"
    hdus = [hdu]
    if beams_table:
        cols = [fits.Column("BMAJ", "E", array=np.full(nchan, bmaj_arcsec)),
                fits.Column("BMIN", "E", array=np.full(nchan, bmaj_arcsec / 2)),
                fits.Column("BPA", "E", array=np.full(nchan, 30.0))]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="BEAMS"))
    else:
        hdu.header.update(BMAJ=bmaj_arcsec / 3600, BMIN=bmaj_arcsec / 7200, BPA=30.0)
    fits.HDUList(hdus).writeto(path)


def test_comparison_maths_and_record(tmp_path):
    new, old = tmp_path / "new.pbcor.fits", tmp_path / "old.pbcor.fits"
    _gaussian_fits(new, 1.0, 0.01, 1.2, nchan=4, beams_table=True, seed=1)
    _gaussian_fits(old, 1.0, 0.01, 1.0, nchan=4, seed=2)
    s_new, s_old = imaging.image_stats(new), imaging.image_stats(old)
    assert s_new.bmaj_arcsec == pytest.approx(1.2) and s_old.bmaj_arcsec == pytest.approx(1.0)
    assert (s_old.bmin_arcsec, s_old.bpa_deg, s_old.nchan) == (pytest.approx(0.5), 30.0, 4)
    assert s_new.rms == pytest.approx(0.01, rel=0.1)  # MAD ignores the source
    assert s_new.peak == pytest.approx(1.0, abs=0.05)
    diff = imaging.max_difference(new, old)
    assert 0.03 < diff < 0.2  # two noise draws of sigma 0.01 differ by a few sigma at most
    assert imaging.max_difference(new, new) == 0.0
    job = imaging.ImagingJob(name="new", source="log:1", field="src", spws=["0"], kind="cube",
                             tclean={"imagename": "new.iter1", "robust": 2.0},
                             exports={".image.pbcor": "new.pbcor.fits"}, delivered={"new.pbcor.fits": str(old)},
                             changed={"robust": [0.5, 2.0]})
    rows = imaging.compare(tmp_path, [job])
    record, table = imaging.write_record(tmp_path, [job], rows, {}, Overrides(robust=2))
    data = json.loads(record.read_text())
    assert data["overrides"] == {"robust": 2}
    assert data["images"][0]["tclean"]["robust"] == 2.0 and data["images"][0]["failed"] is None
    assert data["comparison"][0]["delivered"]["bmaj_arcsec"] == pytest.approx(1.0)
    lines = table.read_text().splitlines()
    assert lines[0].startswith("image\tbeam new") and lines[1].startswith("new.pbcor.fits\t1.200 x 0.600, 30.0\t1.000 x 0.500")


def test_cli_list_dry_run_and_refusal(member, capsys):
    assert main(["image", str(member), "--list"]) == 0
    out = capsys.readouterr().out
    assert f"{MOUS}.src_sci.spw1.cube.I  field=src spw=1 cube  ({MOUS}.casa_commands.log:12)" in out
    assert main(["image", str(member), "--dry-run", "--nbin", "2", "--spw", "0"]) == 0
    out = capsys.readouterr().out
    assert "would run 2 image(s)" in out and "nchan=8" in out and "width='0.002GHz'" in out
    assert not (member / "reimage").exists()
    assert main(["image", str(member), "--spw", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: spw 9 is not among the imaged spws") and len(err.strip().splitlines()) == 1


def test_script_tclean_calls_resolve_names_assigned_once(tmp_path):
    from almadeliver.casa.imaging import Expression, script_tclean_calls

    script = tmp_path / "scriptForImaging.py"
    script.write_text(
        "field = 'G008.67'\nname = 'G008.67_cont'\nvislist = ['a.ms']\nwidth = 2\nwidth = 4\n"
        "for i in range(2):\n    pass\n"
        "tclean(vis=vislist, imagename=name, field=field, width=width, spw=str(i))\n")
    ((line, kwargs),) = script_tclean_calls(script)
    assert line == 8 and kwargs["field"] == "G008.67" and kwargs["imagename"] == "G008.67_cont"
    assert kwargs["vis"] == ["a.ms"]
    assert isinstance(kwargs["width"], Expression)      # assigned twice: not a constant
    assert isinstance(kwargs["spw"], Expression)


def test_the_restore_record_is_the_split_of_this_eb_not_a_later_one(split_member):
    log = split_member / "calibrated" / "working" / "casa_commands.log"
    log.write_text(log.read_text() + f"split(vis='{EB2}.ms', outputvis='../{EB2}.ms.split.cal', spw='25')\n"
                   f"listobs(vis='{EB}.ms.split.cal', listfile='{EB}.ms.split.cal.listobs')\n")
    assert imaging.restore_spw_record(split_member, EB) == {"17": "0", "19": "1", "21": "2"}
    assert imaging.restore_spw_record(split_member, EB2) == {"25": "0"}


def test_one_selection_for_one_split_ms_stays_one_selection(split_member):
    restored = imaging.Restored({EB: split_member / "calibrated" / f"{EB}.ms.split.cal"}, None)
    mss, spw = imaging.rewrite_vis(f"{EB}.ms", "17:1~9,21", restored, split_member)
    assert mss == [str(split_member / "calibrated" / f"{EB}.ms.split.cal")] and spw == "0:1~9,2"
    mss, spw = imaging.rewrite_vis([f"{EB}.ms"], ["17", "21"], restored, split_member)
    assert spw == ["0", "2"]


def test_quicklook_draws_new_beside_delivered_on_one_scale_with_beam_and_numbers(tmp_path):
    """The quick-look PNG: two panels (re-made, delivered) for a cube, the peak channel shown; one panel
    without a delivered image; the numbers in the titles are image_stats' with the FITS unit."""
    from matplotlib.image import imread

    from almadeliver.casa.imaging.compare import _plane, quicklook_png

    def cube(path, peak_channel, scale):
        data = np.zeros((1, 5, 32, 32))
        data[0, peak_channel, 16, 16] = scale
        head = fits.Header({"BUNIT": "Jy/beam", "BMAJ": 2 / 3600, "BMIN": 1 / 3600, "BPA": 30.0,
                            "CDELT1": -0.2 / 3600, "CDELT2": 0.2 / 3600})
        fits.writeto(path, data, head)
        return path

    new, old = cube(tmp_path / "a.cube.I.pbcor.fits", 3, 2.0), cube(tmp_path / "b.fits", 3, 1.0)
    plane, k = _plane(new)
    assert k == 3 and plane.shape == (32, 32) and plane.max() == 2.0
    both = imread(quicklook_png(new, old))
    alone = imread(quicklook_png(new, png=tmp_path / "alone.png"))
    assert both.shape[1] == 2 * alone.shape[1] and both.shape[0] == alone.shape[0]
    assert (tmp_path / "a.cube.I.pbcor.png").is_file()
