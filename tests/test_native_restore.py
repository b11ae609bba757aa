"""Native pipeline restore (issue 9) on simulated pipeline deliveries, compared with the simulation's own
calibration (``<project>/truth/<EB>.npz``: CORRECTED_DATA and FLAG of every EB after the pipeline), and, as
a truth independent of both, with the simulated sky: the calibrators' calibrated visibilities must equal
their point-source models within the thermal noise.

Two simulated projects, shared with test_sim.py / test_sim_pipeline.py / test_image_casa.py: the
12m + 7m group (one EB per member) and a two-EB member."""
import shutil

import numpy as np
import pytest

from almadeliver.casa.native_restore import native_restore, plan_native_restore, read_restore_script
from almadeliver.delivery.calls import iter_calls
from almadeliver.delivery.layout import find_members
from almadeliver.errors import CasaNotFoundError, ParseError, TreeError
from almadeliver.sim.plan import make_plan

CODE = "2019.1.00042.S"
ATOL = 1e-6     # Jy; CORRECTED_DATA is complex64, restore and simulation run the same applycal calls
                # (measured: max difference 0.0)


def _member(simulated, unpack, tmp_path):
    """The two-EB member."""
    project = simulated(CODE, flavour="pipeline", ebs=2)
    (member,) = find_members(unpack(project, tmp_path))
    return project, member


def _group_member(project, unpack, tmp_path, array):
    """The 12m or 7m member of the group project (``array``: "12m" or "7m")."""
    plan = make_plan(project.name, flavour="pipeline", group_12m_7m=True, proprietary=True)
    (mous,) = [m for m in plan.mous if m.array == array]
    (member,) = [m for m in find_members(unpack(project, tmp_path)) if m.mous.disk == mous.disk]
    return member


def _by_spw(ms, column):
    """{spw id: (column, FLAG)} of an MS, rows selected through DATA_DESCRIPTION's SPECTRAL_WINDOW_ID."""
    import casatools

    tb = casatools.table()
    tb.open(f"{ms}/DATA_DESCRIPTION")
    spw_of = list(tb.getcol("SPECTRAL_WINDOW_ID"))
    tb.close()
    tb.open(str(ms))
    out = {}
    try:
        for ddid in sorted(set(tb.getcol("DATA_DESC_ID"))):
            sel = tb.query(f"DATA_DESC_ID=={ddid}")
            out[int(spw_of[ddid])] = (sel.getcol(column), sel.getcol("FLAG"))
            sel.close()
    finally:
        tb.close()
    return out


def _assert_truth(ms, column, truth, spw_ids=None):
    """The science spws of ``ms`` hold exactly the pipeline's calibrated data and flags (``spw_ids``: the
    ids they carry in ``ms``, default the pipeline's)."""
    science = [int(s) for s in truth["spw"]]
    got = _by_spw(ms, column)
    ids = spw_ids or science
    assert sorted(got) == sorted(ids), (sorted(got), ids)
    for new, old in zip(ids, science):
        data, flag = got[new]
        np.testing.assert_allclose(data, truth[f"corrected_{old}"], rtol=0, atol=ATOL)
        assert np.array_equal(flag, truth[f"flag_{old}"])


def _calibrators_against_the_sky(ms, column, fields) -> dict[str, dict[str, float]]:
    """How well the calibrators' calibrated visibilities in ``ms`` match the simulated sky, computed here from
    the MS and the simulation's inputs (point sources at the phase centre: flux x (freq/ref)^spix), not from
    the calibration tables or any almadeliver code: per calibrator (Stokes I, in the scans of its intent), the
    median amplitude ratio to the model, the worst channel's deviation from the model in sigma, the rms of the
    residual (data - model) and the thermal noise measured from consecutive integrations of each baseline
    (their difference / sqrt 2)."""
    import casatools

    tb = casatools.table()
    tb.open(f"{ms}/FIELD")
    names = list(tb.getcol("NAME"))
    tb.close()
    tb.open(f"{ms}/DATA_DESCRIPTION")
    spw_of = list(tb.getcol("SPECTRAL_WINDOW_ID"))
    tb.close()
    tb.open(f"{ms}/SPECTRAL_WINDOW")
    freqs = {i: tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())}
    tb.close()
    tb.open(f"{ms}/STATE")
    modes = list(tb.getcol("OBS_MODE"))
    tb.close()
    intent = {"bandpass": "CALIBRATE_BANDPASS", "phase": "CALIBRATE_PHASE"}   # the scans applycal calibrated
    out, errors = {}, {}
    tb.open(str(ms))
    try:
        for f in fields:
            if f["role"] not in ("bandpass", "phase"):
                continue
            (comp,) = f["components"]
            ratios, residuals, diffs, channels = [], [], [], []
            for ddid in sorted(set(tb.getcol("DATA_DESC_ID"))):
                states = [i for i, mode in enumerate(modes) if intent[f["role"]] in mode]
                sel = tb.query(f"FIELD_ID=={names.index(f['name'])} && DATA_DESC_ID=={ddid} && ANTENNA1!=ANTENNA2 "
                               f"&& STATE_ID IN {states}", sortlist="ANTENNA1,ANTENNA2,TIME")
                if sel.nrows() == 0:
                    sel.close()
                    continue
                data, flag = sel.getcol(column), sel.getcol("FLAG")        # (pol, chan, row)
                # Stokes I = (XX + YY) / 2: the simulated pipeline solves amplitudes with both polarizations
                # together (gaintype 'T'), so XX and YY alone keep the simulated per-polarization gain ratio
                data, flag = data.mean(axis=0, keepdims=True), flag.any(axis=0, keepdims=True)
                a1, a2 = sel.getcol("ANTENNA1"), sel.getcol("ANTENNA2")
                sel.close()
                model = comp["flux_jy"] * (freqs[spw_of[ddid]] / f["ref_freq_hz"]) ** comp["spix"]
                ratio = np.where(flag, np.nan, data / model[None, :, None])
                ratios.append(ratio[~flag])
                residuals.append((data - model[None, :, None])[~flag])
                n = (~flag).sum(axis=(0, 2))
                mean = np.nansum(np.nan_to_num(ratio, nan=0.0), axis=(0, 2)) / np.maximum(n, 1)   # vector mean
                # the bandpass check: each channel against the spw's own mean (the flux scale is amp_ratio's,
                # and a gain solution's noise, common to every channel of a scan, is not a bandpass error)
                spw_mean = np.sum(mean[n > 0] * n[n > 0]) / np.sum(n[n > 0])
                channels.append((int(ddid), mean - spw_mean, model, n))
                same = (a1[1:] == a1[:-1]) & (a2[1:] == a2[:-1])
                both = ~flag[..., 1:] & ~flag[..., :-1] & same[None, None, :]
                diffs.append(((data[..., 1:] - data[..., :-1]) / np.sqrt(2))[both])
            ratio, residual, diff = (np.concatenate(x) for x in (ratios, residuals, diffs))
            noise = float(np.sqrt(np.mean(np.concatenate([diff.real, diff.imag]) ** 2)))
            # each channel's thermal error of its vector-mean ratio: noise / (flux sqrt(n))
            errors[f["role"]] = {ddid: (dev, np.where(n > 0, noise / (flux * np.sqrt(np.maximum(n, 1))), np.inf))
                                 for ddid, dev, flux, n in channels}
            out[f["role"]] = {"amp_ratio": float(np.median(np.abs(ratio))),
                              "noise_jy": noise,
                              "residual_rms_jy": float(np.sqrt(np.mean(np.concatenate([residual.real, residual.imag]) ** 2))),
                              "phase_rms_deg": float(np.degrees(np.sqrt(np.mean(np.angle(ratio) ** 2)))),
                              "visibilities": int(ratio.size)}
    finally:
        tb.close()
    # each channel's mean ratio less its spw's, in sigma. The bandpass solved on the bandpass calibrator
    # carries that calibrator's channel errors into every other field: the phase calibrator's error is
    # its own thermal error and the bandpass calibrator's, in quadrature
    for role, per_spw in errors.items():
        worst = 0.0
        for ddid, (dev, err) in per_spw.items():
            if role != "bandpass" and ddid in errors.get("bandpass", {}):
                err = np.hypot(err, errors["bandpass"][ddid][1])
            ok = np.isfinite(err)
            worst = max(worst, float(np.max(np.maximum(np.abs(dev[ok].real), np.abs(dev[ok].imag)) / err[ok])))
        out[role]["worst_channel_sigma"] = worst
    return out


def _assert_calibrators_match_the_sky(ms, column, fields):
    """Calibrated calibrators equal the sky within the noise: the flux scale within 2 %, every channel's mean
    within 5 sigma of its spw's mean ratio to the model (the bandpass removed), the residual no more than 1.2 x the thermal noise."""
    found = _calibrators_against_the_sky(ms, column, fields)
    print(f"\n{ms}: {found}")
    assert set(found) == {"bandpass", "phase"}
    for role, m in found.items():
        assert m["visibilities"] > 1000, (role, m)
        assert abs(m["amp_ratio"] - 1) < 0.02, (role, m)
        assert m["worst_channel_sigma"] < 5, (role, m)
        assert m["residual_rms_jy"] < 1.2 * m["noise_jy"], (role, m)


def test_one_eb_restores_the_pipeline_corrected_data_and_flags(pipeline_group, unpack, tmp_path):
    project, member = pipeline_group, _group_member(pipeline_group, unpack, tmp_path, "12m")
    (member.path / "script" / "scriptForImaging.py").write_text("# imaged manually\n")
    result = native_restore(member, spacesaving=0, dosplit=False)   # imaged manually: split all the same
    cal = member.path / "calibrated"
    (eb,) = [e.disk for e in member.ebs_in_raw]
    assert (cal / "products").readlink().as_posix() == "../calibration"
    assert (cal / "rawdata" / eb).resolve() == (member.path / "raw" / f"{eb}.asdm.sdm").resolve()
    assert result.split_cal == [cal / f"{eb}.ms.split.cal"] and result.applycal_calls == 3
    assert result.linked == [] and not (cal / f"{eb}.ms").exists()
    truth = np.load(project / "truth" / f"{eb}.npz")
    working = _by_spw(cal / "working" / f"{eb}.ms", "CORRECTED_DATA")
    assert len(working) == 7                      # 3 science spws, 3 channel-average spws and the WVR spw
    for s in truth["spw"]:
        np.testing.assert_allclose(working[int(s)][0], truth[f"corrected_{s}"], rtol=0, atol=ATOL)
        assert np.array_equal(working[int(s)][1], truth[f"flag_{s}"]) and 0 < working[int(s)][1].mean() < 0.5
    # the split keeps the science spws only (more than 4 channels), with the pipeline's ids (one EB)
    _assert_truth(result.split_cal[0], "DATA", truth)
    _assert_calibrators_match_the_sky(result.split_cal[0], "DATA",
                                      make_plan(project.name, flavour="pipeline", group_12m_7m=True,
                                                proprietary=True).fields)
    calls = list(iter_calls(result.commands_log.read_text(), "casa_commands.log"))
    assert [c.task for c in calls] == ["importasdm", "flagmanager", "applycal", "applycal", "applycal", "mstransform"]
    assert calls[1].kwargs["versionname"] == "Pipeline_Final"
    assert calls[2].kwargs["intent"] == "CALIBRATE_FLUX#ON_SOURCE,CALIBRATE_BANDPASS#ON_SOURCE"
    assert calls[5].kwargs["spw"] == "0,1,2" and calls[5].kwargs["reindex"] is False


def test_two_ebs_at_spacesaving_2_keep_only_the_split_cal(simulated, unpack, tmp_path):
    project, member = _member(simulated, unpack, tmp_path)
    result = native_restore(member, spacesaving=2)
    assert len(result.split_cal) == 2 and result.working_ms == []
    for split in result.split_cal:
        eb = split.name[: -len(".ms.split.cal")]
        assert not (member.path / "calibrated" / "working" / f"{eb}.ms").exists()
        _assert_truth(split, "DATA", np.load(project / "truth" / f"{eb}.npz"))
        _assert_calibrators_match_the_sky(split, "DATA", make_plan(CODE, flavour="pipeline", ebs=2).fields)
    assert result.reindexed is False                 # both EBs have the same science spws


@pytest.fixture()
def pipeline_member(simulated, unpack, tmp_path):
    return _member(simulated, unpack, tmp_path)[1]


def test_plan_reads_every_calapply_line(pipeline_member):
    plan = plan_native_restore(pipeline_member)
    assert [len(e.calls) for e in plan.ebs] == [3, 3] and len(plan.caltables) == 2


def test_malformed_calapply_line_is_rejected_with_its_number(pipeline_member):
    eb = pipeline_member.ebs_in_raw[1].disk
    path = pipeline_member.path / "calibration" / f"{eb}.ms.calapply.txt"
    path.write_text(path.read_text() + "applycal(vis='x.ms', gaintable=[__import__('os').system('id')])\n")
    with pytest.raises(ParseError, match=rf"{eb}.ms.calapply.txt:4: .*not a literal"):
        plan_native_restore(pipeline_member)
    assert not (pipeline_member.path / "calibrated").exists()


def test_missing_table_is_named(pipeline_member):
    eb = pipeline_member.ebs_in_raw[0].disk
    path = pipeline_member.path / "calibration" / f"{eb}.ms.calapply.txt"
    path.write_text(path.read_text().replace("solintinf.bcal.tbl", "solintinf.bcal.tbl.gone", 1))
    with pytest.raises(TreeError, match=rf"calapply.txt:1: calibration table {eb}\S+bcal.tbl.gone is missing"):
        native_restore(pipeline_member)


def test_missing_flagversions_is_named(pipeline_member):
    eb = pipeline_member.ebs_in_raw[1].disk
    (pipeline_member.path / "calibration" / f"{eb}.ms.flagversions.tgz").unlink()
    with pytest.raises(TreeError, match=rf"calibration/{eb}.ms.flagversions.tgz is missing"):
        native_restore(pipeline_member)


def test_missing_caltables_tarball_is_named(pipeline_member):
    for tgz in (pipeline_member.path / "calibration").glob("*.session_2.caltables.tgz"):
        tgz.unlink()
    with pytest.raises(TreeError, match=r"is missing \(searched member\.\S+\.session_1\.caltables\.tgz\)"):
        native_restore(pipeline_member)
    shutil.rmtree(pipeline_member.path / "calibrated", ignore_errors=True)


def test_restore_cli_engine_auto_uses_native_without_pipeline_casa(pipeline_group, unpack, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from almadeliver.cli import app

    monkeypatch.delenv("ALMADELIVER_CASA", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")          # no monolithic casa on PATH
    member = _group_member(pipeline_group, unpack, tmp_path, "7m")
    runner = CliRunner()
    refused = runner.invoke(app, ["restore", str(member.path), "--engine", "casa", "--spacesaving", "1"])
    assert refused.exit_code != 0 and "--engine native" in str(refused.exception)
    done = runner.invoke(app, ["restore", str(member.path), "--spacesaving", "1", "--dosplit"])
    assert done.exit_code == 0, done.output
    assert "native pipeline restore" in done.output
    assert f"{member.ebs_in_raw[0].disk}.ms.split.cal" in done.output
    # the 7m member too restores to exactly what the simulation's pipeline made
    (eb,) = [e.disk for e in member.ebs_in_raw]
    _assert_truth(member.path / "calibrated" / f"{eb}.ms.split.cal", "DATA",
                  np.load(pipeline_group / "truth" / f"{eb}.npz"))


# -- the restore script, read whole -----------------------------------------------------------------------
EDITED = """__rethrow_casa_exceptions = True
h_init()
try:
    hifa_importdata(vis={vis}, session=['session_1'], bdfflags=False)
    hifa_restoredata (vis={vis}, session=['session_1'], ocorr_mode='ca', lazy=True)
    from casarecipes.almahelpers import fixsyscaltimes
    fixsyscaltimes(vis='{eb}.ms')
finally:
    h_save()
"""


def test_restore_script_statements_the_engine_will_not_run_are_listed(tmp_path):
    path = tmp_path / "member.uid___A001_X1_X2.hifa_calimage.casa_piperestorescript.py"
    path.write_text(EDITED.format(vis="['uid___A002_X1_X1']", eb="uid___A002_X1_X1"))
    script = read_restore_script(path)
    assert script.task == "hifa_restoredata" and script.recipe == "hifa_calimage"
    assert script.native_refusal() is None
    assert [w.split(": ", 1)[0] for w in script.not_run] == [f"{path.name}:{n}" for n in (4, 5, 6, 7)]
    assert "hifa_importdata(vis=['uid___A002_X1_X1'], session=['session_1'], bdfflags=False)" in script.not_run[0]
    assert "argument lazy=True" in script.not_run[1] and "fixsyscaltimes(vis='uid___A002_X1_X1.ms')" in script.not_run[3]


def test_dry_run_lists_the_restore_script_statements_not_run(pipeline_member, monkeypatch):
    from typer.testing import CliRunner

    from almadeliver.cli import app

    monkeypatch.delenv("ALMADELIVER_CASA", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (script,) = (pipeline_member.path / "script").glob("*casa_piperestorescript.py")
    vis = repr([e.disk for e in pipeline_member.ebs_in_raw])
    script.write_text(EDITED.format(vis=vis, eb=pipeline_member.ebs_in_raw[0].disk))
    done = CliRunner().invoke(app, ["restore", str(pipeline_member.path), "--dry-run", "--spacesaving", "-1"])
    assert done.exit_code == 0, done.output
    warnings = [l for l in done.output.splitlines() if l.startswith("warning ")]
    assert len(warnings) == 4 and "bdfflags=False" in warnings[0] and "fixsyscaltimes" in warnings[3]
    assert plan_native_restore(pipeline_member).warnings == read_restore_script(script).not_run


def _tp_member(root):
    from almadeliver.sim.pipeline import write_total_power_member

    mous = "uid___A001_X2d1f_X3a4"
    member = root / "2023.1.00077.S" / "science_goal.uid___A001_X2d1f_X3a1" / "group.uid___A001_X2d1f_X3a2" / f"member.{mous}"
    write_total_power_member(member, project="2023.1.00077.S", mous=mous, gous="uid://A001/X2d1f/X3a2",
                             sb_name="ngc_a_06_TP", ebs=["uid___A002_X10a7a20_X2b4e"])
    return member


def test_total_power_restore_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """hsd_restoredata (Total Power) needs the pipeline's single-dish tasks: never restored as interferometer data."""
    from typer.testing import CliRunner

    from almadeliver.casa.restore import plan_restore
    from almadeliver.cli import app

    monkeypatch.delenv("ALMADELIVER_CASA", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    member = _tp_member(tmp_path)
    (script,) = (member / "script").glob("*.hsd_calimage.casa_piperestorescript.py")
    assert read_restore_script(script).kwargs["ocorr_mode"] == "ao"
    assert (member / "calibration" / "jyperk.csv").read_text().startswith("MS,Antenna,Spwid,Polarization,Factor\n")
    with pytest.raises(CasaNotFoundError, match=r"calls hsd_restoredata \(recipe hsd_calimage, Total Power"):
        plan_native_restore(member)
    for engine in ("auto", "native"):
        plan = plan_restore(member, engine=engine)
        assert isinstance(plan.refusal, CasaNotFoundError) and "monolithic CASA with the pipeline" in plan.refusal.message
        result = CliRunner().invoke(app, ["restore", str(member), "--engine", engine])
        assert result.exit_code != 0 and "hsd_restoredata" in str(result.exception)
    assert not (member / "calibrated").exists()
