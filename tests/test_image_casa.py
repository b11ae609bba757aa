"""image with real CASA: re-runs of a restored pipeline member and a manual one (tiny MSs, 64x64 images)."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from astropy.io import fits

from almadeliver.casa import imaging
from almadeliver.casa.imaging import Overrides
from almadeliver.casa.runtime import run_in_casa
from almadeliver.cli import main

pytestmark = pytest.mark.slow

MOUS = "uid___A001_X1_X3"
EB = "uid___A002_Xab_X12"
# Reproduction tolerance: max |new - delivered| / delivered peak, measured 0.0 (tclean is
# deterministic on the same MS and arguments); allowed 1e-5 for float32 round-off.
PIXEL_TOLERANCE = 1e-5


def _eb(ms: str) -> dict:
    """A one-EB observation: 8 antennas, a cube spw with a line, a short continuum spw; source up at start."""
    mjd = 60000.1
    lst = (280.46061837 + 360.98564736629 * (mjd + 2400000.5 - 2451545.0) - 67.755) % 360.0

    def fld(name, role, dra, dec, comps):
        return {"name": name, "role": role, "ra_deg": (lst + dra) % 360, "dec_deg": dec,
                "ref_freq_hz": 230e9, "components": comps}
    line = {"peak_jy": 1.0, "freq_hz": 230.004e9, "sigma_hz": 1.0e6}
    return {"config": "alma.cycle0.compact.cfg", "antennas": 8, "array": "12m", "start_mjd": mjd, "seed": 7,
            "noise_jy": 0.02,
            "spws": [{"name": "spw0", "freq_hz": 230.0e9, "width_hz": 1.0e6, "nchan": 8},
                     {"name": "spw1", "freq_hz": 232.0e9, "width_hz": 4.0e6, "nchan": 4}],
            "fields": [fld("J1924-2914", "bandpass", -8, -29.2, [{"dx_arcsec": 0, "dy_arcsec": 0, "flux_jy": 3.0}]),
                       fld("J1925-3000", "phase", -2, -30.0, [{"dx_arcsec": 0, "dy_arcsec": 0, "flux_jy": 1.0}]),
                       fld("src", "target", 0, -30.0, [{"dx_arcsec": 0.0, "dy_arcsec": 0.0, "flux_jy": 0.3,
                                                        "line": line}])]}


LOG = f"""\
# hif_makeimages(hm_masking='auto')
tclean(vis=['{EB}_targets.ms'], field='src', spw=['0'], intent='OBSERVE_TARGET#ON_SOURCE', datacolumn='data',
       imagename='{MOUS}.s36_0.src_sci.spw0.cube.I.iter0', imsize=[64, 64], cell=['0.5arcsec'],
       specmode='cube', start='230.0GHz', width='0.001GHz', nchan=8, outframe='TOPO', weighting='briggs',
       robust=0.5, niter=0, deconvolver='hogbom', gridder='standard', pbcor=True, restoringbeam='common')
tclean(vis=['{EB}_targets.ms'], field='src', spw=['0'], intent='OBSERVE_TARGET#ON_SOURCE', datacolumn='data',
       imagename='{MOUS}.s36_0.src_sci.spw0.cube.I.iter1', imsize=[64, 64], cell=['0.5arcsec'],
       specmode='cube', start='230.0GHz', width='0.001GHz', nchan=8, outframe='TOPO', weighting='briggs',
       robust=0.5, niter=30, threshold='0.05Jy', deconvolver='hogbom', gridder='standard', pbcor=True,
       restoringbeam='common', parallel=False)
tclean(vis=['{EB}_targets.ms'], field='src', spw=['0,1'], intent='OBSERVE_TARGET#ON_SOURCE', datacolumn='data',
       imagename='{MOUS}.s38_0.src_sci.spw0_1.cont.I.iter1', imsize=[64, 64], cell=['0.5arcsec'],
       specmode='mfs', deconvolver='mtmfs', nterms=2, weighting='briggs', robust=0.5, niter=30,
       threshold='0.02Jy', gridder='standard', pbcor=True)
"""


@pytest.fixture(scope="session")
def pipeline_member(tmp_path_factory):
    """A restored pipeline member: calibrated/working/<EB>.ms, the commands log, cont.dat, and products
    made by those tclean calls (the way the pipeline made them)."""
    root = tmp_path_factory.mktemp("image-pipeline")
    m = root / f"member.{MOUS}"
    for sub in ("log", "product", "calibration", "calibrated/working", "script"):
        (m / sub).mkdir(parents=True)
    ms = m / "calibrated" / "working" / f"{EB}.ms"
    run_in_casa("almadeliver.sim.observe:simulate_ms", {"ms": str(ms), "eb": _eb(str(ms))}, workdir=root)
    (m / "log" / f"{MOUS}.casa_commands.log").write_text(LOG)
    # cont.dat in LSRK, as the pipeline writes it: channels 0-1 and 6-7 are line-free
    lsrk = [f / 1e9 for f in run_in_casa("almadeliver.casa.imaging:channel_frequencies",
                                         {"vis": str(ms), "spw": 0, "frame": "LSRK"}, workdir=root)]
    (m / "calibration" / f"{MOUS}.cont.dat").write_text(
        f"Field: src\n\nSpectralWindow: 0\n{lsrk[0] - 4e-4:.6f}~{lsrk[1] + 4e-4:.6f}GHz LSRK\n"
        f"{lsrk[6] - 4e-4:.6f}~{lsrk[7] + 4e-4:.6f}GHz LSRK\n")
    jobs = imaging.plan_images(m)
    for job in jobs:  # the "pipeline" run: same calls, products exported under ALMA's names
        run_in_casa("almadeliver.casa.imaging:tclean_child",
                    {"tclean": job.tclean, "exports": job.exports, "out": str(m / "product")}, workdir=root / "pl")
    return m


def test_rerun_without_override_reproduces_the_products(pipeline_member, tmp_path):
    plan = imaging.plan(pipeline_member)
    result = imaging.run(plan, out=tmp_path / "same", workers=2)
    assert result.failures == {}
    assert sorted(c.fits for c in result.comparisons) == [f"{MOUS}.src_sci.spw0.cube.I.pbcor.fits",
                                                          f"{MOUS}.src_sci.spw0_1.cont.I.tt0.pbcor.fits"]
    for c in result.comparisons:
        assert c.delivered is not None
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-6)
        assert c.new.bmin_arcsec == pytest.approx(c.delivered.bmin_arcsec, rel=1e-6)
        assert c.new.nchan == c.delivered.nchan
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE
    assert (tmp_path / "same" / f"{MOUS}.src_sci.spw0.cube.I.pb.fits").is_file()
    record = json.loads(result.record.read_text())
    assert record["images"][0]["tclean"]["vis"] == [str(pipeline_member / "calibrated" / "working" / f"{EB}.ms")]


def test_robust_2_gives_a_larger_beam_and_nbin_2_half_the_channels(pipeline_member, tmp_path):
    result = imaging.run(imaging.plan(pipeline_member, Overrides(robust=2, nbin=2)), out=tmp_path / "r2", workers=2)
    assert result.failures == {}
    by = {c.fits: c for c in result.comparisons}
    cube = by[f"{MOUS}.src_sci.spw0.cube.I.pbcor.fits"]
    assert cube.new.nchan == cube.delivered.nchan // 2 == 4
    for c in result.comparisons:
        area_new = c.new.bmaj_arcsec * c.new.bmin_arcsec
        area_old = c.delivered.bmaj_arcsec * c.delivered.bmin_arcsec
        assert area_new > 1.02 * area_old, (c.fits, area_new, area_old)
    # the binned cube's first channel starts where the delivered one did
    new_h = fits.getheader(result.out / cube.fits)
    old_h = fits.getheader(cube.fits and pipeline_member / "product" / cube.fits)
    assert new_h["CDELT3"] == pytest.approx(2 * old_h["CDELT3"])
    assert new_h["CRVAL3"] - new_h["CDELT3"] / 2 == pytest.approx(old_h["CRVAL3"] - old_h["CDELT3"] / 2, abs=1.0)


def test_contsub_removes_the_continuum_from_the_cube(pipeline_member, tmp_path):
    plan = imaging.plan(pipeline_member, Overrides(contsub=True, specmode="cube"))
    result = imaging.run(plan, out=tmp_path / "cs", workers=1)
    assert result.failures == {}
    (c,) = result.comparisons
    new = fits.getdata(result.out / c.fits)[0]
    old = fits.getdata(pipeline_member / "product" / c.fits)[0]
    centre = (slice(None), slice(28, 36), slice(28, 36))
    # line-free channel 0: continuum gone after subtraction; line channel 4 keeps its line
    assert abs(np.nanmax(new[0][centre[1:]])) < 0.5 * np.nanmax(old[0][centre[1:]])
    assert np.nanmax(new[4][centre[1:]]) > 0.5 * (np.nanmax(old[4][centre[1:]]) - np.nanmax(old[0][centre[1:]]))


def test_cli_refuses_unknown_spw_before_casa(pipeline_member, capsys):
    assert main(["image", str(pipeline_member), "--field", "other"]) == 2
    assert "field 'other' is not among the imaged fields" in capsys.readouterr().err
    assert not any(p.name.startswith("reimage") for p in pipeline_member.iterdir())


@pytest.fixture(scope="session")
def manual_member(pipeline_member, tmp_path_factory):
    """A restored manual member: calibrated/calibrated.ms, the simulation's scriptForImaging.py, and the
    products that script made when run in calibrated/ (as the simulation makes them)."""
    from almadeliver.sim.manual import fill, template

    root = tmp_path_factory.mktemp("image-manual")
    m = root / "member.uid___A001_X1_X9"
    for sub in ("script", "product", "calibrated"):
        (m / sub).mkdir(parents=True)
    # like scriptForPI's split: the calibrated data in DATA, no CORRECTED_DATA column
    run_in_casa("casatasks:split", {"vis": str(pipeline_member / "calibrated" / "working" / f"{EB}.ms"),
                                    "outputvis": str(m / "calibrated" / "calibrated.ms"), "datacolumn": "data"},
                workdir=root)
    (m / "script" / "scriptForImaging.py").write_text(fill(template("scriptForImaging.py.in"), {
        "CASAVERSION": "6.7.0", "TARGET": "src", "CELL": "0.5arcsec", "IMSIZE": 64, "LINE": "CS",
        "CONTSPWS": "1", "LINESPW": "0", "RESTFREQ": "230.004GHz", "CONTTHRESHOLD": "20mJy",
        "LINETHRESHOLD": "60mJy"}))
    run_in_casa("almadeliver.casa.legacy:run_script",
                {"script": str(m / "script" / "scriptForImaging.py"), "cwd": str(m / "calibrated")},
                workdir=root)
    for f in (m / "calibrated").glob("*.fits"):
        shutil.move(f, m / "product" / f.name)
    for image in (m / "calibrated").glob("src_*"):
        shutil.rmtree(image)
    return m


def test_manual_rerun_reproduces_then_robust_and_nbin(manual_member, tmp_path):
    listed = imaging.list_images(manual_member)
    assert [(j.kind, j.spws) for j in listed] == [("mfs", ["1"]), ("cube", ["0"])]
    assert all(j.source.startswith("scriptForImaging.py:") for j in listed)
    same = imaging.run(imaging.plan(manual_member), out=tmp_path / "same")
    assert same.failures == {} and sorted(c.fits for c in same.comparisons) == [
        "src_CS.image.pbcor.fits", "src_cont.image.pbcor.fits"]
    for c in same.comparisons:
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-6)
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE
    assert not list((manual_member / "product").glob("*.iter*"))  # product/ untouched
    changed = imaging.run(imaging.plan(manual_member, Overrides(robust=2, nbin=2)), out=tmp_path / "r2")
    assert changed.failures == {}
    by = {c.fits: c for c in changed.comparisons}
    assert by["src_CS.image.pbcor.fits"].new.nchan == by["src_CS.image.pbcor.fits"].delivered.nchan // 2
    for c in changed.comparisons:
        assert c.new.bmaj_arcsec * c.new.bmin_arcsec > 1.02 * c.delivered.bmaj_arcsec * c.delivered.bmin_arcsec
    record = json.loads(changed.record.read_text())
    assert {i["tclean"]["robust"] for i in record["images"]} == {2.0}


@pytest.mark.parametrize("args,msg", [(["--spw", "5"], "spw 5 is not imaged by scriptForImaging.py"),
                                      (["--field", "other"], "field 'other' is not imaged by scriptForImaging.py")])
def test_manual_unknown_spw_or_field_is_refused(manual_member, capsys, args, msg):
    assert main(["image", str(manual_member), *args]) == 2
    assert msg in capsys.readouterr().err
    assert not (manual_member / "reimage").exists()


def test_simulated_manual_delivery_restored_then_reimaged(simulated, unpack, tmp_path):
    """The whole chain on the simulation's own manual delivery: unpack, restore (scriptForPI), image."""
    from almadeliver.casa.restore import plan_restore, restore

    tree = unpack(simulated("2019.1.00010.S", flavour="manual"), tmp_path / "dl")
    member = next(p for p in tree.rglob("member.uid___*") if p.is_dir())
    restore(plan_restore(member))
    same = imaging.run(imaging.plan(member), out=tmp_path / "same")
    assert same.failures == {} and len(same.comparisons) == 2
    for c in same.comparisons:
        assert c.delivered is not None and c.new.nchan == c.delivered.nchan
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-4)
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE, c
    changed = imaging.run(imaging.plan(member, Overrides(robust=2, nbin=2)), out=tmp_path / "r2")
    assert changed.failures == {}
    for c in changed.comparisons:
        assert c.new.bmaj_arcsec * c.new.bmin_arcsec > c.delivered.bmaj_arcsec * c.delivered.bmin_arcsec
        if c.new.nchan > 1 or c.delivered.nchan > 1:
            assert c.new.nchan == c.delivered.nchan // 2
