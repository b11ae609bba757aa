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
    assert plan.continuum_spw == "0,1" and plan.cubes and plan.delivered_continuum is not None
    r = selfcal(plan)
    kept = [x.kept for x in r.rounds]
    # p:int follows the phase errors; p:inf after it undoes that (solved afresh per scan): rejected
    assert kept == [True, True, False], r.rounds
    assert r.gain_over_start >= 2.0, r.rounds
    assert r.gain_over_delivered is not None and r.gain_over_delivered > 1.0
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
