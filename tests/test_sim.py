"""almadeliver simulate: real CASA simulations written as the ALMA archive ships them."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from almadeliver.archive.obscore import COLUMN_NAMES
from almadeliver.archive.spectral import parse_frequency_support
from almadeliver.casa.imaging import product_name
from almadeliver.casa.legacy import run_script_in_casa
from almadeliver.casa.runtime import run_in_casa
from almadeliver.delivery.commandslog import product_tclean_calls, read_commands
from almadeliver.sim.verify import asdm_summary, phase_scatter
from almadeliver.errors import CasaError
from almadeliver.ids import DeliveryFileName, TarballKind, Uid
from almadeliver.sim.catalogue import Catalogue
from almadeliver.sim.plan import make_plan

CODE = "2017.1.00123.S"
PHASE_TOLERANCE_DEG = 3.0   # calibrated phase scatter on the phase calibrator (measured ~0.7 deg)


def _member(tree: Path) -> Path:
    return next(tree.glob("science_goal.*/group.*/member.*"))


# -- no CASA -------------------------------------------------------------------------------------------
def test_plan_is_deterministic_with_alma_uids():
    a = make_plan(CODE, ebs=3, group_12m_7m=True)
    b = make_plan(CODE, ebs=3, group_12m_7m=True)
    assert a == b
    assert [m.array for m in a.mous] == ["12m", "7m"]
    assert a.mous[0].sb_name.endswith("_TC") and a.mous[1].sb_name.endswith("_7m")
    for m in a.mous:
        assert Uid.parse(m.uid).archive.startswith("uid://A001/")
        for eb in m.ebs:
            assert eb.uid.startswith("uid://A002/") and Uid.parse(eb.disk).archive == eb.uid
    assert len({eb.uid for m in a.mous for eb in m.ebs}) == 6
    assert make_plan("2017.1.00124.S").mous[0].uid != a.mous[0].uid


def test_cli_rejects_a_bad_casa_version(tmp_path):
    r = subprocess.run([sys.executable, "-m", "almadeliver", "simulate", CODE, "--out", str(tmp_path),
                        "--casa-version", "6.5"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: --casa-version: CASA version '6.5' is not of the form")
    assert not any(tmp_path.iterdir())


def test_cli_rejects_unknown_flavour(tmp_path):
    r = subprocess.run([sys.executable, "-m", "almadeliver", "simulate", CODE, "--out", str(tmp_path),
                        "--flavour", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "'nope' is not one of 'manual', 'pipeline', 'cycle0'" in r.stderr   # the choices
    r = subprocess.run([sys.executable, "-m", "almadeliver", "simulate", CODE, "--out", str(tmp_path),
                        "--size", "huge"], capture_output=True, text=True)
    assert r.returncode == 2 and "'huge' is not one of 'small', 'medium'" in r.stderr


def test_medium_size_has_more_data_in_the_same_bands():
    small, medium = make_plan(CODE), make_plan(CODE, size="medium")
    assert medium.integration_s < small.integration_s and small.mous == medium.mous
    for s, m in zip(small.spws, medium.spws):
        assert s["nchan"] * s["width_hz"] == m["nchan"] * m["width_hz"] and s["freq_hz"] == m["freq_hz"]
    assert sum(s["nchan"] for s in medium.spws) / medium.integration_s > 8 * sum(
        s["nchan"] for s in small.spws) / small.integration_s
    # channel-averaged spws and the 4-channel WVR spw (183 GHz), split off later, in every flavour
    assert [a["nchan"] for a in small.aux_spws] == [1, 1, 1, 4] and small.aux_spws[3]["asdm_freq_hz"] > 183e9
    assert make_plan(CODE, flavour="pipeline").aux_spws == small.aux_spws
    assert small.casa_version == "6.5.4-9" and make_plan(CODE, casa_version="6.4.1-12").casa_version == "6.4.1-12"
    with pytest.raises(ValueError, match="not of the form"):
        make_plan(CODE, casa_version="6.5")


# -- simulated with CASA (cached) -------------------------------------------------------------------------
def test_arrays_come_from_real_configurations_and_keep_their_shape():
    """12 pads of a real 12m configuration spread from its core to its longest baselines; the whole 7m array."""
    from almadeliver.casa.runtime import casadata_path
    from almadeliver.sim.observe import spread_pads
    from almadeliver.sim.plan import ARRAYS

    plan = make_plan(CODE, flavour="pipeline", group_12m_7m=True)
    assert [(m.array, m.antennas) for m in plan.mous] == [("12m", 12), ("7m", 10)]
    for mous in plan.mous:
        assert (mous.config, mous.antennas) == ARRAYS[mous.array]
        pads = np.loadtxt(casadata_path() / "alma" / "simmos" / mous.config, usecols=(0, 1, 2))
        chosen = spread_pads(pads, mous.antennas)
        assert len(set(chosen)) == mous.antennas
        baselines = [np.linalg.norm(pads[i] - pads[j]) for k, i in enumerate(chosen) for j in chosen[:k]]
        full = [np.linalg.norm(a - b) for k, a in enumerate(pads) for b in pads[:k]]
        assert max(baselines) > 0.85 * max(full)                     # the configuration's resolution
        assert np.median(baselines) < 0.5 * max(baselines)           # and its centrally condensed core
    assert spread_pads(pads, 99) == sorted(spread_pads(pads, 99), key=lambda i: np.linalg.norm(pads[i] - pads.mean(0)))


def test_visibility_noise_follows_the_radiometer_equation():
    from almadeliver.sim.observe import sefd_jy, visibility_sigma_jy

    assert 2000 < sefd_jy(12.0) < 3500                               # ALMA 12m in band 3 (Tsys 75 K)
    s12 = visibility_sigma_jy(12.0, 12.0, 1.953125e6, 10.0)
    assert visibility_sigma_jy(7.0, 7.0, 1.953125e6, 10.0) == pytest.approx(s12 * (12 / 7) ** 2)   # dish area
    assert visibility_sigma_jy(12.0, 7.0, 1.953125e6, 10.0) == pytest.approx(s12 * 12 / 7)
    assert visibility_sigma_jy(12.0, 12.0, 4 * 1.953125e6, 10.0) == pytest.approx(s12 / 2)       # 1/sqrt(dnu)
    assert visibility_sigma_jy(12.0, 12.0, 1.953125e6, 40.0) == pytest.approx(s12 / 2)          # 1/sqrt(t)


def test_target_has_compact_and_extended_emission_and_a_line_with_a_velocity_gradient():
    from almadeliver.sim.observe import line_points
    from almadeliver.sim.plan import line_halfwidth_hz

    comps = make_plan(CODE).field("target")["components"]
    assert {c.get("fwhm_arcsec", 0.0) for c in comps} == {0.0, 4.0}
    (line_comp,) = [c for c in comps if c.get("line")]
    points = line_points(line_comp)
    centres = [f for _, _, f in points]
    assert centres == sorted(centres) and centres[-1] - centres[0] == pytest.approx(
        2 * line_comp["line"]["gradient"]["shift_hz"])
    offsets = [np.hypot(dx - line_comp["dx_arcsec"], dy - line_comp["dy_arcsec"]) for dx, dy, _ in points]
    assert max(offsets) == pytest.approx(line_comp["line"]["gradient"]["extent_arcsec"])
    assert line_halfwidth_hz(line_comp["line"]) == pytest.approx(
        3 * line_comp["line"]["sigma_hz"] + line_comp["line"]["gradient"]["shift_hz"])


@pytest.fixture(scope="module")
def manual2(simulated) -> Path:
    return simulated(CODE, ebs=2)


@pytest.mark.slow
def test_tarball_names_parse_and_catalogue_is_complete(manual2):
    cat = Catalogue.load(manual2)
    plan = make_plan(CODE, ebs=2)
    mous = plan.mous[0]
    kinds = {}
    for f in cat.files:
        parsed = DeliveryFileName.parse(f.name)
        kinds.setdefault(parsed.kind, []).append(f)
        assert (manual2 / "files" / f.name).stat().st_size == f.size
        assert f.ids == [mous.uid]
        for m in f.members:
            assert m.path.startswith(f"{CODE}/science_goal.{Uid(plan.sg_uid).disk}/group.{Uid(plan.gous_uid).disk}/"
                                     f"member.{mous.disk}/")
    assert len(kinds[TarballKind.PRODUCTS]) == 1 and kinds[TarballKind.PRODUCTS][0].semantics == "#this"
    assert len(kinds[TarballKind.AUXILIARY]) == 1 and len(kinds[TarballKind.README]) == 1
    assert sorted(DeliveryFileName.parse(f.name).uid.archive for f in kinds[TarballKind.RAW]) == \
        sorted(eb.uid for eb in mous.ebs)
    assert all(m.path.split("/")[4] == "raw" for f in kinds[TarballKind.RAW] for m in f.members)
    assert any(m.content_type == "image/fits" for m in kinds[TarballKind.PRODUCTS][0].members)
    # ObsCore: one row per MOUS x source x spw x EB, every column present
    assert len(cat.obscore) == 3 * 2
    for row in cat.obscore:
        assert list(row) == list(COLUMN_NAMES)
        assert re.fullmatch(rf"{re.escape(mous.uid)}\.source\.\S+\.spw\.\d", row["obs_id"])
        assert row["data_rights"] == "Public" and row["qa2_passed"] == "T" and row["band_list"] == "3"
        assert row["s_region"].startswith("Circle ICRS ")
        # frequency_support: the whole setup (every science spw), the same on every row of the MOUS
        spws = parse_frequency_support(row["frequency_support"])
        assert row["frequency_support"] == cat.obscore[0]["frequency_support"] and len(spws) == len(plan.spws)
        assert any(s.covers(row["frequency"]) for s in spws)
        assert row["schedblock_name"].endswith("_TC")
        assert all(re.fullmatch(r"[A-Z]\d{3}:[A-Z]{2}\d{2}", pair) for pair in row["antenna_arrays"].split())
    assert {r["asdm_uid"] for r in cat.obscore} == {eb.uid for eb in mous.ebs}


@pytest.mark.slow
def test_asdm_roundtrips_through_importasdm(manual2, unpack, tmp_path):
    tree = unpack(manual2, tmp_path / "unpacked")
    plan = make_plan(CODE, ebs=2)
    asdm = _member(tree) / "raw" / f"{plan.mous[0].ebs[0].disk}.asdm.sdm"
    info = run_in_casa(asdm_summary, {"asdm": str(asdm), "vis": str(tmp_path / "rt.ms")},
                       workdir=tmp_path)
    names = {f["role"]: f["name"] for f in plan.fields}
    assert info["fields"] == [names["bandpass"], names["phase"], names["target"]]
    # the science spws, then the channel-averaged spw a real ASDM carries beside each of them, then WVR
    assert info["nspw"] == 7 and info["nchan"] == [32, 16, 16, 1, 1, 1, 4]
    assert info["nobservations"] == 1 and len(info["antennas"]) == plan.mous[0].antennas == 12
    assert info["scan_intents"]["1"] == ["CALIBRATE_ATMOSPHERE#ON_SOURCE", "CALIBRATE_WVR#ON_SOURCE"]
    assert info["scan_intents"]["2"] == ["CALIBRATE_BANDPASS#ON_SOURCE", "CALIBRATE_FLUX#ON_SOURCE",
                                         "CALIBRATE_WVR#ON_SOURCE"]
    assert info["scan_intents"]["3"] == ["CALIBRATE_PHASE#ON_SOURCE", "CALIBRATE_WVR#ON_SOURCE"]
    assert info["scan_intents"]["4"] == ["OBSERVE_TARGET#ON_SOURCE"]
    assert info["scan_fields"]["4"] == [names["target"]] and info["scan_fields"]["3"] == [names["phase"]]
    assert len(info["scan_intents"]) == 9


@pytest.mark.slow
def test_scriptforpi_calibrates_to_flat_phases(manual2, unpack, tmp_path):
    """Run the delivered scriptForPI.py (legacy shim) on the unpacked delivery: each EB gets a
    .ms.split.cal whose phases on the phase calibrator are flat within PHASE_TOLERANCE_DEG."""
    tree = unpack(manual2, tmp_path / "unpacked")
    member = _member(tree)
    plan = make_plan(CODE, ebs=2)
    lines = []
    run_in_casa(run_script_in_casa,
                {"script": str(member / "script" / "scriptForPI.py"), "cwd": str(member / "script"),
                 "variables": {"SPACESAVING": 1}, "pass_version_gates": True}, workdir=tmp_path / "run",
                on_line=lines.append)
    free = int(re.fullmatch(r"Found (\d+) MB of available free disk space\.",
                            next(l for l in lines if l.startswith("Found "))).group(1))
    need = float(re.fullmatch(r"Expect to need up to ([\d.]+) MB of free disk space\.",
                              next(l for l in lines if l.startswith("Expect "))).group(1))
    raw_mb = int(subprocess.check_output(["du", "-sm", str(member / "raw")], text=True).split()[0])
    assert need == raw_mb * (7 + 3)       # level 1: 7x raw, +3x (flux script); raw/ in MB rounded up as du -sm
    assert free > need
    assert any(l.startswith("Step  18 Split out corrected column") for l in lines)
    assert any(l.startswith("Step  1 Fix of SYSCAL table times") for l in lines)        # applyonly steps only
    assert not any(l.startswith("Step  13 ") for l in lines)
    assert any("asks for CASA 6.5.4; running in this CASA anyway" in l for l in lines)
    calibrated = member / "calibrated"
    assert (calibrated / "calibrated.ms").is_dir()
    phasecal = plan.field("phase")["name"]
    for eb in plan.mous[0].ebs:
        cal = calibrated / f"{eb.disk}.ms.split.cal"
        assert cal.is_dir() and not (calibrated / f"{eb.disk}.calibration" / f"{eb.disk}.ms.split").exists()
        after = run_in_casa(phase_scatter, {"vis": str(cal), "field": phasecal},
                            workdir=tmp_path / "run")
        before = run_in_casa(phase_scatter,
                             {"vis": str(calibrated / f"{eb.disk}.calibration" / f"{eb.disk}.ms"), "field": phasecal},
                             workdir=tmp_path / "run")
        assert len(after) == 3, after                 # the split kept the science spws only
        assert max(after.values()) < PHASE_TOLERANCE_DEG, after
        assert min(before.values()) > 20.0, before   # the corruption is real: calibration matters


@pytest.mark.slow
def test_scriptforpi_refuses_outside_script_folder(manual2, unpack, tmp_path):
    tree = unpack(manual2, tmp_path / "unpacked")
    member = _member(tree)
    with pytest.raises(CasaError, match="ERROR: Please start scriptForPI.py from inside the directory named"):
        run_in_casa(run_script_in_casa,
                    {"script": str(member / "script" / "scriptForPI.py"), "cwd": str(member)},
                    workdir=tmp_path / "run")


@pytest.mark.slow
def test_products_are_fits_images_with_a_restoring_beam(manual2, unpack, tmp_path):
    from astropy.io import fits

    member = _member(unpack(manual2, tmp_path / "unpacked"))
    products = sorted((member / "product").glob("*.image.pbcor.fits"))
    # seed 002: a cube per spw (3) and a continuum image per sideband (2)
    assert len(products) == 5 and len(list((member / "product").glob("*.flux.fits"))) == 5
    for path in products:
        with fits.open(path) as hdul:
            h = hdul[0].header
            assert h["BUNIT"].lower() == "jy/beam" and h["BMAJ"] > 0 and h["BMIN"] > 0
            assert h["NAXIS1"] == h["NAXIS2"] == 64
            assert np.isfinite(hdul[0].data).any()
    readme = (member / "README").read_text()
    assert f"Project code: {CODE}" in readme and "CASA version used for reduction: 6.5.4-9" in readme
    assert "scriptForFluxCalibration.py" in readme and "member." in readme
    qa = sorted(p.name for p in (member / "qa").iterdir())
    assert len(qa) == 8 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (member / "qa").glob("*.png"))


@pytest.mark.slow
def test_cycle0_delivery_is_one_project_wide_set_attached_to_every_eb(simulated, unpack, tmp_path):
    project = simulated("2011.0.00340.S", flavour="cycle0", ebs=2)
    cat = Catalogue.load(project)
    names = [DeliveryFileName.parse(f.name) for f in cat.files]
    assert {n.kind for n in names} == {TarballKind.CYCLE0} and {n.parts for n in names} == {len(names)}
    mous_uids = sorted({r["member_ous_uid"] for r in cat.obscore})
    assert len(mous_uids) == 2                         # one archive row set per EB ...
    assert all(sorted(f.ids) == mous_uids for f in cat.files)   # ... all listing the same tarballs
    tree = unpack(project, tmp_path / "unpacked")
    member = next(tree.glob("sg_ouss_id/group_ouss_id/member_ouss_*_id"))
    plan = make_plan("2011.0.00340.S", flavour="cycle0", ebs=2)
    for eb in plan.mous[0].ebs:
        assert (member / "calibrated" / f"{eb.disk}.ms.split.cal").is_dir()
        assert (member / "raw" / f"{eb.disk}.ms.split").is_dir()
        assert (member / "calibration" / f"{eb.disk}.calibration").is_dir()
        assert (member / "script" / f"{eb.disk}.ms.scriptForCalibration.py").is_file()
    assert not list((member / "raw").glob("*.asdm.sdm")) and (member / "README").is_file()


@pytest.mark.slow
def test_pipeline_group_12m_7m_proprietary(pipeline_group, unpack, tmp_path):
    """Pipeline flavour, a 12m + 7m group, proprietary: the files the restore stage consumes."""
    import ast
    import tarfile

    code, project = pipeline_group.name, pipeline_group
    cat = Catalogue.load(project)
    plan = make_plan(code, flavour="pipeline", group_12m_7m=True, proprietary=True)
    assert cat.proprietary and {r["data_rights"] for r in cat.obscore} == {"Proprietary"}
    assert {r["schedblock_name"][-3:] for r in cat.obscore} == {"_TC", "_7m"}
    assert len({r["member_ous_uid"] for r in cat.obscore}) == 2 and len({r["group_ous_uid"] for r in cat.obscore}) == 1
    for f in cat.files:
        DeliveryFileName.parse(f.name)
    tree = unpack(project, tmp_path / "unpacked")
    for mous in plan.mous:
        member = tree / f"science_goal.{Uid(plan.sg_uid).disk}" / f"group.{Uid(plan.gous_uid).disk}" / f"member.{mous.disk}"
        prefix = f"member.{mous.disk}"
        cal = member / "calibration"
        with tarfile.open(cal / f"{prefix}.session_1.caltables.tgz") as tar:
            tables = {m.name.split("/")[0] for m in tar.getmembers()}
        for eb in mous.ebs:
            lines = (cal / f"{eb.disk}.ms.calapply.txt").read_text().splitlines()
            assert len(lines) == 3
            intents = set()
            for line in lines:
                call = ast.parse(line).body[0].value
                assert call.func.id == "applycal"
                kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
                assert kw["vis"] == f"{eb.disk}.ms" and set(kw["gaintable"]) <= tables
                intents |= set(kw["intent"].split(","))
            assert intents == {"BANDPASS", "AMPLITUDE", "PHASE", "TARGET"}
            with tarfile.open(cal / f"{eb.disk}.ms.flagversions.tgz") as tar:
                assert f"{eb.disk}.ms.flagversions/flags.Pipeline_Final" in tar.getnames()
            assert (cal / f"{eb.disk}_flagtemplate.txt").read_text().startswith("#\n# User flagging commands")
            assert (member / "raw" / f"{eb.disk}.asdm.sdm" / "ASDM.xml").is_file()
        assert (cal / f"{prefix}.cont.dat").read_text().startswith("Field: ")
        assert (cal / f"{prefix}.pipeline_manifest.xml").is_file()
        calls = read_commands(member / "log" / f"{prefix}.casa_commands.log")
        assert any("\n" in c.text for c in calls)          # calls spanning several lines
        made = {product_name(c.kwargs["imagename"]) for c in product_tclean_calls(calls)}
        products = {p.name for p in (member / "product").glob("*pbcor.fits")}
        assert {f"member.{m}" for m in made} == {re.sub(r"(\.tt0)?\.pbcor\.fits$", "", p) for p in products}
        for name in ("scriptForPI.py", "hifa_calimage.casa_pipescript.py",
                     "hifa_calimage.casa_piperestorescript.py", "hifa_calimage.pprequest.xml"):
            assert (member / "script" / f"{prefix}.{name}").is_file()
    # our scriptForPI knows pipeline data needs hifa_restoredata (monolithic CASA --pipeline)
    member = next(tree.glob("science_goal.*/group.*/member.*"))
    script = next((member / "script").glob("*.scriptForPI.py"))
    with pytest.raises(CasaError, match="ERROR: this MOUS was calibrated by the ALMA pipeline"):
        run_in_casa(run_script_in_casa, {"script": str(script), "cwd": str(member / "script"),
                                                           "variables": {"SPACESAVING": -1}},
                    workdir=tmp_path / "run")
