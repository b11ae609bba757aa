"""image with real CASA: re-runs of a simulated pipeline delivery restored with the native engine, and of
a manual one (tiny MSs, 64x64 images)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from almadeliver.casa import imaging
from almadeliver.casa.imaging import Overrides
from almadeliver.casa.restore import plan_restore, restore
from almadeliver.casa import legacy
from almadeliver.casa.runtime import task_in_casa, run_in_casa
from almadeliver.cli import main
from almadeliver.delivery.contdat import parse_contdat
from almadeliver.delivery.layout import find_members
from almadeliver.sim.plan import LINE_REST_HZ, make_plan

pytestmark = pytest.mark.slow

# Reproduction tolerance: max |new - delivered| / delivered peak. The native restore gives the pipeline's
# CORRECTED_DATA and flags exactly and tclean is deterministic on the same data and arguments: measured
# 0.0 on working/<EB>.ms; allowed 1e-5 for float32 round-off (the split MS stores the same values in DATA).
PIXEL_TOLERANCE = 1e-5


def _restored(pipeline_group, unpack, root, spacesaving: int) -> Path:
    """The 12m member of the simulated pipeline project, unpacked and restored natively at ``spacesaving``
    (with DOSPLIT: SPACESAVING 2 then keeps only <EB>.ms.split.cal)."""
    plan = make_plan(pipeline_group.name, flavour="pipeline", group_12m_7m=True, proprietary=True)
    (member,) = [m for m in find_members(unpack(pipeline_group, root)) if m.mous.disk == plan.mous[0].disk]
    restore_plan = plan_restore(member.path, spacesaving=spacesaving, dosplit=True, engine="native")
    assert restore_plan.engine == "native"
    restore(restore_plan)
    return member.path


@pytest.fixture(scope="session")
def pipeline_member(pipeline_group, unpack, tmp_path_factory):
    """The restored 12m pipeline member (SPACESAVING 0: calibrated/working/<EB>.ms kept)."""
    return _restored(pipeline_group, unpack, tmp_path_factory.mktemp("image-pipeline"), 0)


def _products(member: Path) -> list[str]:
    return sorted(p.name for p in (member / "product").glob("*.pbcor.fits"))


def test_rerun_without_override_reproduces_the_products(pipeline_member, tmp_path):
    plan = imaging.plan(pipeline_member)
    result = imaging.run(plan, out=tmp_path / "same", workers=2)
    assert result.failures == {}
    assert sorted(c.fits for c in result.comparisons) == _products(pipeline_member)
    assert len(result.comparisons) == 4                     # 3 cubes + the continuum
    for c in result.comparisons:
        assert c.delivered is not None
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-6)
        assert c.new.bmin_arcsec == pytest.approx(c.delivered.bmin_arcsec, rel=1e-6)
        assert c.new.nchan == c.delivered.nchan
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE, c
        assert (result.out / c.quicklook).read_bytes()[:4] == b"\x89PNG"     # new beside delivered
    record = json.loads(result.record.read_text())
    (eb,) = {p.name[: -len(".ms")] for p in (pipeline_member / "calibrated" / "working").glob("*.ms")}
    assert record["images"][0]["tclean"]["vis"] == [str(pipeline_member / "calibrated" / "working" / f"{eb}.ms")]


def test_robust_2_gives_a_larger_beam_and_nbin_2_half_the_channels(pipeline_member, tmp_path):
    result = imaging.run(imaging.plan(pipeline_member, Overrides(robust=2, nbin=2)), out=tmp_path / "r2", workers=2)
    assert result.failures == {}
    assert len(result.comparisons) == 4
    for c in result.comparisons:
        area_new = c.new.bmaj_arcsec * c.new.bmin_arcsec
        area_old = c.delivered.bmaj_arcsec * c.delivered.bmin_arcsec
        if ".cube." in c.fits:
            # a cube's restoringbeam='common' is set by its worst channel, so robust barely moves it
            assert area_new >= area_old * (1 - 1e-3), (c.fits, area_new, area_old)
            assert c.new.nchan == c.delivered.nchan // 2 and c.delivered.nchan in (12, 28)
            # the binned cube's first channel starts where the delivered one did
            new_h, old_h = fits.getheader(result.out / c.fits), fits.getheader(pipeline_member / "product" / c.fits)
            assert new_h["CDELT3"] == pytest.approx(2 * old_h["CDELT3"])
            assert new_h["CRVAL3"] - new_h["CDELT3"] / 2 == pytest.approx(old_h["CRVAL3"] - old_h["CDELT3"] / 2,
                                                                          abs=1.0)
        else:
            assert c.new.nchan == c.delivered.nchan == 1
            assert area_new > 1.05 * area_old, (c.fits, area_new, area_old)      # measured +8 %


def test_contsub_removes_the_continuum_from_the_line_cube(pipeline_member, tmp_path):
    plan = imaging.plan(pipeline_member, Overrides(contsub=True, specmode="cube", spw="0"))
    result = imaging.run(plan, out=tmp_path / "cs", workers=1)
    assert result.failures == {}
    (c,) = result.comparisons
    new = fits.getdata(result.out / c.fits)[0]
    old = fits.getdata(pipeline_member / "product" / c.fits)[0]
    h = fits.getheader(pipeline_member / "product" / c.fits)
    freqs = h["CRVAL3"] + (np.arange(old.shape[0]) + 1 - h["CRPIX3"]) * h["CDELT3"]   # LSRK, like cont.dat
    (contdat,) = (pipeline_member / "calibration").glob("*.cont.dat")
    ((_, spws),) = parse_contdat(contdat).fields.items()
    free = [i for i, f in enumerate(freqs) if any(r.low_hz <= f <= r.high_hz for r in spws[0].ranges)]
    centre = (slice(28, 36), slice(28, 36))
    peaks = np.array([np.nanmax(plane[centre]) for plane in old])
    line = int(np.nanargmax(peaks))
    assert line not in free and len(free) >= 2     # the cube's line-free channels at both ends
    ch = free[0]
    assert abs(np.nanmax(new[ch][centre])) < 0.5 * peaks[ch]                 # continuum gone
    assert np.nanmax(new[line][centre]) > 0.5 * (peaks[line] - peaks[ch])   # the line stays


# -- each override against physics, on the default simulated project (12 antennas of C43-2, 4 arcsec extended
# emission beside a compact source): every assertion fails if the override does not reach tclean.
def _area(stats) -> float:
    return stats.bmaj_arcsec * stats.bmin_arcsec


def _continuum(pipeline_member, tmp_path, name: str, **overrides) -> tuple[imaging.ImagingResult, imaging.ImagingJob]:
    """The continuum image (mtmfs) re-made with ``overrides``; its residual (tt0) exported beside it."""
    plan = imaging.plan(pipeline_member, Overrides(specmode="cont", **overrides))
    (job,) = plan.jobs
    job.exports[".residual.tt0"] = f"{job.name}.residual.tt0.fits"
    result = imaging.run(plan, out=tmp_path / name, workers=1)
    assert result.failures == {}
    return result, job


def _residual_rms(result, job) -> float:
    data = fits.getdata(result.out / job.exports[".residual.tt0"])
    return float(np.sqrt(np.nanmean(data ** 2)))


def test_uniform_and_natural_weighting_differ_by_more_than_30_percent(pipeline_member, tmp_path):
    """Briggs robust -2 (uniform) gives the long baselines the weight natural weighting (robust 2) gives the
    many short ones: a smaller beam. The delivered robust 0.5 lies between."""
    areas = {}
    for robust in (-2, 2):
        result = imaging.run(imaging.plan(pipeline_member, Overrides(robust=robust, spw="0")),
                             out=tmp_path / f"r{robust}", workers=2)
        assert result.failures == {} and len(result.comparisons) == 2        # the spw0 cube, its continuum
        areas[robust] = {c.fits: c for c in result.comparisons}
    for name, c in areas[2].items():
        ratio = _area(c.new) / _area(areas[-2][name].new)
        assert ratio > 1.3, (name, ratio)                                        # measured 1.4
        if c.delivered is not None:                                              # the cube: robust 0.5 delivered
            assert _area(areas[-2][name].new) < _area(c.delivered) < _area(c.new), name


def test_uvtaper_enlarges_the_beam_as_a_gaussian_convolution(pipeline_member, tmp_path):
    """A Gaussian uv taper of FWHM t (image plane) convolves the beam: each axis grows towards sqrt(b^2 + t^2)."""
    taper = 3.0
    result, _ = _continuum(pipeline_member, tmp_path, "taper", uvtaper=f"{taper}arcsec")
    (c,) = result.comparisons
    for new, old in ((c.new.bmaj_arcsec, c.delivered.bmaj_arcsec), (c.new.bmin_arcsec, c.delivered.bmin_arcsec)):
        assert new > 1.15 * old, (new, old)
        assert new == pytest.approx(np.hypot(old, taper), rel=0.25), (new, old)
    assert _area(c.new) > 1.5 * _area(c.delivered)


def test_a_smaller_cell_keeps_the_beam(pipeline_member, tmp_path):
    """Half the pixel size over the same field (twice the pixels): the same uv weighting cells, the same beam."""
    (job,) = imaging.plan(pipeline_member, Overrides(specmode="cont")).jobs
    cell = float(str(job.tclean["cell"][0] if isinstance(job.tclean["cell"], list) else job.tclean["cell"])
                 .removesuffix("arcsec")) / 2
    size = 2 * int(job.tclean["imsize"][0])
    result, _ = _continuum(pipeline_member, tmp_path, "cell", cell=f"{cell}arcsec", imsize=size)
    (c,) = result.comparisons
    head = fits.getheader(result.out / c.fits)
    assert abs(head["CDELT2"]) * 3600 == pytest.approx(cell) and head["NAXIS1"] == size
    assert _area(c.new) == pytest.approx(_area(c.delivered), rel=0.05)


def test_more_iterations_lower_the_residual_rms(pipeline_member, tmp_path):
    """niter 0 leaves the dirty image (the sources' sidelobes) as residual; cleaning removes them."""
    dirty, dirty_job = _continuum(pipeline_member, tmp_path, "niter0", niter=0)
    clean, clean_job = _continuum(pipeline_member, tmp_path, "niter500", niter=500, threshold="1mJy")
    assert dirty_job.tclean["niter"] == 0 and clean_job.tclean["niter"] == 500
    rms_dirty, rms_clean = _residual_rms(dirty, dirty_job), _residual_rms(clean, clean_job)
    assert rms_clean < 0.3 * rms_dirty, (rms_clean, rms_dirty)


@pytest.mark.parametrize("args,msg", [(["--field", "other"], "field 'other' is not among the imaged fields"),
                                      (["--spw", "7"], "spw 7 is not among the imaged spws of this delivery (0, 1, 2)")])
def test_cli_refuses_unknown_spw_or_field_before_casa(pipeline_member, capsys, args, msg):
    assert main(["image", str(pipeline_member), *args]) == 2
    assert msg in capsys.readouterr().err
    assert not any(p.name.startswith("reimage") for p in pipeline_member.iterdir())


def test_spacesaving_2_split_cal_reimages_the_same_products(pipeline_group, unpack, tmp_path):
    """Restored at SPACESAVING 2 only <EB>.ms.split.cal is left (spws renumbered from 0, DATA calibrated):
    the delivered tclean calls, remapped onto it, make the same images."""
    member = _restored(pipeline_group, unpack, tmp_path / "ss2", 2)
    assert not list((member / "calibrated" / "working").glob("*.ms"))
    plan = imaging.plan(member, Overrides(specmode="cube"))
    (split,) = (member / "calibrated").glob("*.ms.split.cal")
    assert {tuple(j.tclean["vis"]) for j in plan.jobs} == {(str(split),)}
    assert sorted(j.tclean["spw"][0] for j in plan.jobs) == ["0", "1", "2"]
    result = imaging.run(plan, out=tmp_path / "same", workers=2)
    assert result.failures == {} and len(result.comparisons) == 3
    for c in result.comparisons:
        assert c.new.nchan == c.delivered.nchan
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-5)
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE, c


@pytest.fixture(scope="session")
def manual_member(pipeline_member, pipeline_group, tmp_path_factory):
    """A restored manual member: calibrated/calibrated.ms (the restored pipeline data), the simulation's
    scriptForImaging.py, and the products that script made when run in calibrated/ (as the simulation
    makes them)."""
    from almadeliver.sim.manual import fill, template

    root = tmp_path_factory.mktemp("image-manual")
    m = root / "member.uid___A001_X1_X9"
    for sub in ("script", "product", "calibrated"):
        (m / sub).mkdir(parents=True)
    # like scriptForPI's split: the calibrated data in DATA, no CORRECTED_DATA column
    (working,) = (pipeline_member / "calibrated" / "working").glob("*.ms")
    run_in_casa(task_in_casa, {"task": "split", "vis": str(working), "outputvis": str(m / "calibrated" / "calibrated.ms"),
                            "datacolumn": "corrected"}, workdir=root)
    target = make_plan(pipeline_group.name, flavour="pipeline", group_12m_7m=True).field("target")["name"]
    (m / "script" / "scriptForImaging.py").write_text(fill(template("scriptForImaging.py.in"), {
        "CASAVERSION": "6.7.0", "TARGET": target, "CELL": "2arcsec", "IMSIZE": 64, "LINE": "CS",
        "LSBSPWS": "0,1", "USBSPWS": "2", "CUBEA": "1", "CUBEB": "2", "LINESPW": "0", "RESTFREQ": f"{LINE_REST_HZ / 1e9:.6f}GHz", "CONTTHRESHOLD": "20mJy",
        "LINETHRESHOLD": "60mJy"}))
    run_in_casa(legacy.run_script_in_casa,
                {"script": str(m / "script" / "scriptForImaging.py"), "cwd": str(m / "calibrated")},
                workdir=root)
    for f in (m / "calibrated").glob("*.fits"):
        shutil.move(f, m / "product" / f.name)
    for image in (m / "calibrated").glob(f"{target}_*"):
        shutil.rmtree(image)
    return m


def test_manual_rerun_reproduces_then_robust_and_nbin(manual_member, tmp_path):
    listed = imaging.list_images(manual_member)
    # a continuum image per sideband, a cube per spw (seed 002)
    assert [(j.kind, j.spws) for j in listed] == [("mfs", ["0", "1"]), ("mfs", ["2"]), ("cube", ["0"]), ("cube", ["1"]),
                                                  ("cube", ["2"])]
    assert all(j.source.startswith("scriptForImaging.py:") for j in listed)
    same = imaging.run(imaging.plan(manual_member), out=tmp_path / "same")
    assert same.failures == {} and len(same.comparisons) == 5
    line_fits = next(c.fits for c in same.comparisons if c.fits.endswith("_CS.image.pbcor.fits"))
    for c in same.comparisons:
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-6)
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE
    assert not list((manual_member / "product").glob("*.iter*"))  # product/ untouched
    changed = imaging.run(imaging.plan(manual_member, Overrides(robust=2, nbin=2)), out=tmp_path / "r2")
    assert changed.failures == {}
    by = {c.fits: c for c in changed.comparisons}
    assert by[line_fits].new.nchan == by[line_fits].delivered.nchan // 2 == 16
    for c in changed.comparisons:   # the continuum image (a cube's beam follows its binned channels)
        if c.new.nchan == 1:
            # +1 % measured since a continuum image spans a sideband with its line spw (the 5-antenna array
            # weights little differently: issue 25); a dropped robust gives exactly 1
            assert c.new.bmaj_arcsec * c.new.bmin_arcsec > 1.004 * c.delivered.bmaj_arcsec * c.delivered.bmin_arcsec
    record = json.loads(changed.record.read_text())
    assert {i["tclean"]["robust"] for i in record["images"]} == {2.0}


@pytest.mark.parametrize("args,msg", [(["--spw", "5"], "spw 5 is not imaged by scriptForImaging.py"),
                                      (["--field", "other"], "field 'other' is not imaged by scriptForImaging.py")])
def test_manual_unknown_spw_or_field_is_refused(manual_member, capsys, args, msg):
    assert main(["image", str(manual_member), *args]) == 2
    assert msg in capsys.readouterr().err
    assert not (manual_member / "reimage").exists()


def test_manual_contsub_and_moments_on_the_found_line_free_channels(manual_member, tmp_path, capsys):
    """A manual delivery has no cont.dat: the line-free channels are found in the delivered cube (and
    said), uvcontsub fits them before tclean, and immoments integrates over the others."""
    plan = imaging.plan(manual_member, Overrides(spw="0", specmode="cube", contsub=True, moments="0"))
    (line_fits,) = [p.name for p in (manual_member / "product").glob("*_CS.image.pbcor.fits")]
    (note,) = [n for n in plan.script_notes() if "found in" in n]
    assert f"found in {line_fits}" in note and plan.line_free["0"]
    result = imaging.run(plan, out=tmp_path / "cs")
    assert result.failures == {}
    (cube,) = [c for c in result.comparisons if c.fits == line_fits]
    (mom0,) = [c for c in result.comparisons if c.fits.endswith(".mom0.fits")]
    (job,) = result.jobs
    assert job.contsub and job.contsub[0]["result"]["fitspec"].startswith("0:")
    assert job.tclean["datacolumn"] == "data" and job.tclean["vis"] == [job.contsub[0]["outputvis"]]
    new, old = fits.getdata(result.out / line_fits)[0], fits.getdata(manual_member / "product" / line_fits)[0]
    centre = (slice(28, 36), slice(28, 36))
    peaks = np.array([np.nanmax(plane[centre]) for plane in old])
    line = int(np.nanargmax(peaks))
    made = job.moments["made"]
    free = [c for c in range(len(peaks)) if not any(a <= c <= b for a, b in made["line_channels"])]
    assert line not in free and free
    ch = max(free, key=lambda c: peaks[c])          # the brightest line-free channel (edge channels are blank)
    assert peaks[ch] > 0
    assert abs(np.nanmax(new[ch][centre])) < 0.5 * peaks[ch]                 # continuum gone
    assert np.nanmax(new[line][centre]) > 0.5 * (peaks[line] - peaks[ch])   # the line stays
    assert (result.out / (mom0.fits[: -len(".fits")] + ".png")).is_file() and mom0.new.peak > 0


def test_simulated_manual_delivery_restored_then_reimaged(simulated, unpack, tmp_path):
    """The whole chain on the simulation's own manual delivery: unpack, restore (scriptForPI), image
    reproduces the delivered products."""
    tree = unpack(simulated("2019.1.00011.S", flavour="manual"), tmp_path / "dl")  # test_restore_casa's 1-EB project
    member = next(p for p in tree.rglob("member.uid___*") if p.is_dir())
    restore(plan_restore(member, casa_version_mismatch="allow"))
    same = imaging.run(imaging.plan(member), out=tmp_path / "same")
    assert same.failures == {} and len(same.comparisons) == 5      # a cube per spw, a continuum per sideband
    for c in same.comparisons:
        assert c.delivered is not None and c.new.nchan == c.delivered.nchan
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-3)   # 2e-4 measured
        assert c.max_diff is not None and c.max_diff <= PIXEL_TOLERANCE, c
    # robust and nbin reaching the same script's tclean calls: test_manual_rerun_reproduces_then_robust_and_nbin


@pytest.fixture(scope="session")
def modern_member(pipeline_modern, unpack, tmp_path_factory):
    """The Cycle 10 pipeline member (tclean on <EB>_targets(_line).ms, datacolumn='data'), restored natively
    without DOSPLIT: calibrated/<EB>.ms links to working/<EB>.ms, as scriptForPI v2.x leaves it."""
    (member,) = find_members(unpack(pipeline_modern, tmp_path_factory.mktemp("image-modern")))
    restore(plan_restore(member.path, spacesaving=0, dosplit=False, engine="native"))
    return member.path


def test_targets_line_delivery_is_reimaged_from_the_calibrated_column(modern_member, tmp_path, capsys):
    """The delivered calls read DATA of <EB>_targets.ms / <EB>_targets_line.ms; the restore gives
    working/<EB>.ms, whose calibrated data are in CORRECTED_DATA: image reads that column (after the
    pipeline's continuum subtraction for the cubes) and reproduces the delivered images."""
    cal = modern_member / "calibrated"
    (working,) = (cal / "working").glob("*.ms")
    assert (cal / working.name).readlink().as_posix() == f"working/{working.name}"
    assert not list(cal.glob("*.split.cal"))
    assert main(["image", str(modern_member), "--spw", "0", "--specmode", "cube", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"uvcontsub(vis='{working}', outputvis='contsub/{working.name}." in out and "datacolumn='corrected')" in out
    assert "reads contsub/" in out and "datacolumn='data' (delivered: uvcontsub of " in out
    plan = imaging.plan(modern_member)
    cont = next(j for j in plan.jobs if j.kind == "cont")
    assert cont.reads == [{"vis": str(working), "datacolumn": "corrected", "delivered": "datacolumn='data'"}]
    assert cont.tclean["datacolumn"] == "corrected" and cont.contsub == []
    assert all(j.contsub and j.tclean["datacolumn"] == "data" for j in plan.jobs if j.kind == "cube")
    result = imaging.run(plan, out=tmp_path / "same", workers=2)
    assert result.failures == {} and len(result.comparisons) == 4
    for c in result.comparisons:
        assert c.delivered is not None and c.new.nchan == c.delivered.nchan
        assert c.max_diff is not None and c.max_diff < 1e-3, c
