"""image --selfcal on a simulated delivery with residual phase errors on a bright target."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from almadeliver.casa.selfcal import parse_rounds, plan_selfcal, selfcal
from almadeliver.delivery.layout import find_members
from almadeliver.errors import UsageError
from almadeliver.sim.plan import make_plan

SELFCAL = "2011.0.00341.S"     # Cycle 0 flavour: calibrated/*.ms.split.cal and product/ as delivered
PHASE_DEG = 40.0


def plan_target(code: str) -> str:
    return make_plan(code, "cycle0", residual_phase_deg=PHASE_DEG).field("target")["name"]


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*"))


def test_rounds_parse_and_refuse():
    assert [(r.mode, r.solint) for r in parse_rounds("p:inf,p:30s,p:int,ap:inf")] == \
        [("p", "inf"), ("p", "30s"), ("p", "int"), ("ap", "inf")]
    for bad in ("x:inf", "p:often", "p", ""):
        with pytest.raises(UsageError):
            parse_rounds(bad)
    r = subprocess.run([sys.executable, "-m", "almadeliver", "image", "/nonexistent", "--selfcal",
                        "--selfcal-rounds", "p:xx"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "MODE:SOLINT" in r.stderr, r.stderr


@pytest.mark.slow
def test_selfcal_fixes_residual_phases_rejects_a_worse_round_and_leaves_calibrated_alone(simulated, unpack, tmp_path):
    [member] = find_members(unpack(simulated(SELFCAL, flavour="cycle0", residual_phase_deg=PHASE_DEG), tmp_path))
    before = _listing(member.path / "calibrated")
    plan = plan_selfcal(member.path, "p:int,p:inf")
    assert plan.continuum_spw == "0,1" and plan.delivered_continuum is not None
    assert [c.fits.name for c in plan.cubes][:1] == [f"{plan_target(SELFCAL)}_CS_2-1.image.pbcor.fits"], plan.cubes
    plan.cubes = plan.cubes[:1]          # the line cube only: the other spws' cubes cost CASA time, test nothing more
    r = selfcal(plan)
    kept = [x.kept for x in r.rounds]
    # p:int follows the phase errors; p:inf after it undoes that (solved afresh per scan): rejected
    assert kept == [True, True, False], (r.rounds, r.final, r.delivered)
    assert r.gain_over_start >= 2.0, r.rounds
    # the bar: at least 2x the dynamic range of the delivered continuum image (same spws, cell, size)
    assert r.gain_over_delivered is not None and r.gain_over_delivered >= 2.0, (r.final, r.delivered)
    # the truth: the target's continuum at the image's frequency; self-calibration brings the peak to it
    plan_ = make_plan(SELFCAL, "cycle0", residual_phase_deg=PHASE_DEG)
    target = plan_.field("target")
    comp = target["components"][0]
    from astropy.io import fits
    freq = float(fits.getheader(r.continuum)["CRVAL3"])
    truth = comp["flux_jy"] * (freq / target["ref_freq_hz"]) ** comp["spix"]
    assert abs(r.final.peak - truth) < abs(r.delivered.peak - truth), (r.final.peak, r.delivered.peak, truth)
    assert math.isclose(r.final.peak, truth, rel_tol=0.15), (r.final.peak, truth)
    assert r.cubes and r.cubes[0][0].is_file()
    assert _listing(member.path / "calibrated") == before          # only read: the target was split out
    assert (r.out / "selfcal_record.json").is_file() and r.out.parent == member.path


def test_run_takes_the_recalibrate_and_selfcal_options(tmp_path, capsys, monkeypatch):
    """run --steps ...,recalibrate,selfcal: the options reach the run's configuration; bad ones are one usage line."""
    from almadeliver.cli import main, scale_cmds
    from almadeliver.scale.run import RunConfig, RunResult

    seen: list[RunConfig] = []
    monkeypatch.setattr(scale_cmds, "run", lambda config, mous, on_outcome=None: seen.append(config) or RunResult())
    monkeypatch.setattr(scale_cmds, "find_mous", lambda codes, client=None, archive=None: [])
    base = ["run", "--projects", SELFCAL, "--dest", str(tmp_path)]
    assert main([*base, "--steps", "selfcal,recalibrate,restore", "--recalibrate-steps", "9-18", "--skip-lacking",
                 "--selfcal-rounds", "p:int,ap:inf", "--no-selfcal-cubes", "--casa-version-mismatch", "allow"]) == 0
    assert main(base) == 0
    [config, default] = seen
    assert config.steps == ("restore", "recalibrate", "selfcal")           # data-flow order
    assert (config.recalibrate.steps, config.recalibrate.skip_lacking, config.recalibrate.casa_version_mismatch) \
        == ("9-18", True, "allow")
    assert (config.selfcal.rounds, config.selfcal.cubes) == ("p:int,ap:inf", False)
    assert default.steps == ("download", "validate", "restore", "image")   # recalibrate, selfcal: when asked
    assert main([*base, "--steps", "selfcal", "--selfcal-rounds", "q:inf"]) == 2
    assert "MODE:SOLINT" in capsys.readouterr().err


@pytest.mark.slow
def test_run_selfcal_step_on_a_cycle0_member(simulated, unpack, tmp_path):
    """The selfcal step of ``run`` (one round, continuum only) on the Cycle 0 member in its tree."""
    import json

    from almadeliver.scale.run import RunConfig, run
    from almadeliver.workflow import SelfcalOptions

    dest = tmp_path / "dest"
    unpack(simulated(SELFCAL, flavour="cycle0", residual_phase_deg=PHASE_DEG), dest)
    mous = make_plan(SELFCAL, "cycle0", residual_phase_deg=PHASE_DEG).mous[0].uid
    config = RunConfig(dest, steps=("selfcal",), workers=1, dask=False,
                       selfcal=SelfcalOptions("p:int", cubes=False))
    [outcome] = run(config, [(SELFCAL, mous)]).outcomes
    assert outcome.ok, outcome.error
    record = json.loads(Path(outcome.output["record"]).read_text())
    assert [r["kept"] for r in record["rounds"]] == [True, True] and record["cubes"] == []
    assert record["gain_over_delivered"] >= 2.0, record
    assert Path(outcome.output["out"]).name == "run-selfcal" and "round 1 p:int" in Path(outcome.log).read_text()
