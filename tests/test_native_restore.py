"""Native pipeline restore (issue 9) on simulated pipeline deliveries, compared with the simulation's own
calibration (``<project>/truth/<EB>.npz``: CORRECTED_DATA and FLAG of every EB after the pipeline).

Two simulated projects, shared with test_sim.py / test_sim_pipeline.py / test_image_casa.py: the
12m + 7m group (one EB per member) and a two-EB member."""
import shutil

import numpy as np
import pytest

from almadeliver.casa.native_restore import native_restore, plan_native_restore
from almadeliver.delivery.calls import iter_calls
from almadeliver.delivery.layout import find_members
from almadeliver.errors import ParseError, TreeError
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


def _columns(ms, *names):
    import casatools

    tb = casatools.table()
    tb.open(str(ms))
    try:
        return [tb.getcol(n) for n in names]
    finally:
        tb.close()


def test_one_eb_restores_the_pipeline_corrected_data_and_flags(pipeline_group, unpack, tmp_path):
    project, member = pipeline_group, _group_member(pipeline_group, unpack, tmp_path, "12m")
    result = native_restore(member, spacesaving=0)
    cal = member.path / "calibrated"
    (eb,) = [e.disk for e in member.ebs_in_raw]
    assert (cal / "products").readlink().as_posix() == "../calibration"
    assert (cal / "rawdata" / eb).resolve() == (member.path / "raw" / f"{eb}.asdm.sdm").resolve()
    assert result.split_cal == [cal / f"{eb}.ms.split.cal"] and result.applycal_calls == 3
    truth = np.load(project / "truth" / f"{eb}.npz")
    corrected, flag = _columns(cal / "working" / f"{eb}.ms", "CORRECTED_DATA", "FLAG")
    np.testing.assert_allclose(corrected, truth["corrected"], rtol=0, atol=ATOL)
    assert np.array_equal(flag, truth["flag"]) and 0 < flag.mean() < 0.5
    data, split_flag = _columns(result.split_cal[0], "DATA", "FLAG")
    np.testing.assert_allclose(data, truth["corrected"], rtol=0, atol=ATOL)
    assert np.array_equal(split_flag, truth["flag"])
    calls = list(iter_calls(result.commands_log.read_text(), "casa_commands.log"))
    assert [c.task for c in calls] == ["importasdm", "flagmanager", "applycal", "applycal", "applycal", "split"]
    assert calls[1].kwargs["versionname"] == "Pipeline_Final"
    assert calls[2].kwargs["intent"] == "CALIBRATE_FLUX#ON_SOURCE,CALIBRATE_BANDPASS#ON_SOURCE"


def test_two_ebs_at_spacesaving_2_keep_only_the_split_cal(simulated, unpack, tmp_path):
    project, member = _member(simulated, unpack, tmp_path)
    result = native_restore(member, spacesaving=2)
    assert len(result.split_cal) == 2 and result.working_ms == []
    for split in result.split_cal:
        eb = split.name[: -len(".ms.split.cal")]
        assert not (member.path / "calibrated" / "working" / f"{eb}.ms").exists()
        truth = np.load(project / "truth" / f"{eb}.npz")
        data, flag = _columns(split, "DATA", "FLAG")
        np.testing.assert_allclose(data, truth["corrected"], rtol=0, atol=ATOL)
        assert np.array_equal(flag, truth["flag"])


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
    truth = np.load(pipeline_group / "truth" / f"{eb}.npz")
    data, flag = _columns(member.path / "calibrated" / f"{eb}.ms.split.cal", "DATA", "FLAG")
    np.testing.assert_allclose(data, truth["corrected"], rtol=0, atol=ATOL)
    assert np.array_equal(flag, truth["flag"])
