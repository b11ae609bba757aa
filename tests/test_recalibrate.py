"""recalibrate: a Cycle 0 delivery's calibration redone step by step in a working copy (seed 004)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from almadeliver.casa.calsteps import parse_steps, read_steps
from almadeliver.casa.recalibrate import plan_recalibration, recalibrate
from almadeliver.casa.recalibrate_child import FLAG_PREFIX
from almadeliver.delivery.layout import find_members
from almadeliver.errors import CasaNotFoundError, CasaVersionMismatchError, TreeError, UsageError

CYCLE0 = "2011.0.00340.S"     # test_restore_casa's Cycle 0 project (2 EBs): one cached simulation


@pytest.fixture(scope="module")
def cycle0(simulated, unpack, tmp_path_factory) -> Path:
    [member] = find_members(unpack(simulated(CYCLE0, flavour="cycle0", ebs=2), tmp_path_factory.mktemp("c0")))
    return member.path


def _script(member: Path) -> tuple[str, Path]:
    [script] = sorted((member / "script").glob("uid*.ms.scriptForCalibration.py"))[:1]
    return script.name.split(".ms.")[0], script


def _edited(script: Path, tmp: Path, step_line: str, extra: str) -> Path:
    """A copy of ``script`` with ``extra`` inserted before the (unique) line ``step_line``."""
    text = script.read_text()
    assert text.count(step_line) == 1
    out = tmp / f"edited-{abs(hash(extra))}.py"
    out.write_text(text.replace(step_line, extra + step_line))
    return out


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*"))


def test_steps_titles_and_spec(cycle0):
    _, script = _script(cycle0)
    steps = read_steps(script)
    assert [s.number for s in steps] == list(range(19))
    assert steps[13].title == "Bandpass calibration" and not any(s.lacks for s in steps)
    numbers = [s.number for s in steps]
    assert parse_steps("9-11,13", numbers) == [9, 10, 11, 13]
    for bad, msg in (("9-30", "no step 19"), ("12-9", "backwards"), ("a", "not a step")):
        with pytest.raises(UsageError, match=msg):
            parse_steps(bad, numbers)


def test_plan_starts_cycle0_after_the_split_and_refuses_in_one_line(cycle0, tmp_path):
    eb, script = _script(cycle0)
    plan = plan_recalibration(cycle0, ebs=[eb])
    [item] = plan.ebs
    assert item.run == list(range(9, 19)) and item.start.startswith(f"raw/{eb}.ms.split")
    assert item.workdir == cycle0 / "recalibration" / eb
    assert isinstance(plan.refusal, CasaVersionMismatchError)    # the simulated reducer ran CASA 6.5.4
    assert plan_recalibration(cycle0, ebs=[eb], casa_version_mismatch="allow").refusal is None
    # Cycle 0 has no ASDM: the import step cannot run
    refused = plan_recalibration(cycle0, ebs=[eb], steps="0-3", casa_version_mismatch="allow").refusal
    assert isinstance(refused, TreeError) and "--from-step 9" in str(refused)
    # a step calling analysisUtils: refused, or skipped and listed with --skip-lacking
    au = _edited(script, tmp_path, "    setjy(vis=vis + '.split'", "    es.fixForCSV2555(vis + '.split')\n")
    refused = plan_recalibration(cycle0, ebs=[eb], script=au, casa_version_mismatch="allow").refusal
    assert isinstance(refused, CasaNotFoundError) and "step 11" in str(refused) and "es.fixForCSV2555" in str(refused)
    skipping = plan_recalibration(cycle0, ebs=[eb], script=au, casa_version_mismatch="allow", skip_lacking=True)
    assert skipping.refusal is None and 11 not in skipping.ebs[0].run and "analysisUtils" in skipping.ebs[0].skipped[11]
    with pytest.raises(UsageError, match="one EB"):
        plan_recalibration(cycle0, script=au)
    with pytest.raises(UsageError, match="--steps and --from-step"):
        plan_recalibration(cycle0, steps="9", from_step=9)
    py2 = tmp_path / "py2.py"
    py2.write_text("print 'Step', 9\n")
    assert isinstance(plan_recalibration(cycle0, ebs=[eb], script=py2).refusal, CasaNotFoundError)
    r = subprocess.run([sys.executable, "-m", "almadeliver", "recalibrate", str(cycle0), "--eb", eb],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--casa-version-mismatch allow" in r.stderr, r.stderr
    assert not (cycle0 / "recalibration").exists()        # nothing written before a refusal


@pytest.mark.slow
def test_steps_9_18_reproduce_the_delivery_and_a_rerun_restores_the_flags(cycle0, tmp_path):
    eb, script = _script(cycle0)
    raw_before, cal_before = _listing(cycle0 / "raw"), _listing(cycle0 / "calibrated")
    events = []
    plan = plan_recalibration(cycle0, ebs=[eb], steps="9-18", casa_version_mismatch="allow")
    [first] = recalibrate(plan, on_event=events.append).ebs
    assert [t.step for t in first.steps] == list(range(9, 19)) and all(t.seconds > 0 for t in first.steps)
    assert [e.step for e in events if e.kind == "start"] == list(range(9, 19))
    assert {e.title for e in events if e.kind == "start"} >= {"Bandpass calibration", "Gain calibration"}
    assert not [e for e in events if e.kind == "restored"]
    c = first.comparison
    assert c.flags_equal and c.max_relative_difference is not None and c.max_relative_difference < 1e-5, c
    assert abs(c.phase_rms_deg - c.delivered_phase_rms_deg) < 1e-3
    assert c.fluxes and all(abs(new - old) < 1e-4 * old for new, old in c.fluxes.values()), c.fluxes
    assert _listing(cycle0 / "raw") == raw_before and _listing(cycle0 / "calibrated") == cal_before
    base = first.flagged_fraction

    # the guide's loop: edit a step (here: flag spw 2 before the bandpass), run it again ...
    edited = _edited(script, tmp_path, "    os.system('rm -rf ' + vis + '.split.ap_pre_bandpass')",
                     "    flagdata(vis=vis + '.split', mode='manual', spw='2', flagbackup=False)\n")
    [second] = recalibrate(plan_recalibration(cycle0, ebs=[eb], steps="13", script=edited,
                                              casa_version_mismatch="allow")).ebs
    assert second.steps[0].flags_restored and second.flagged_fraction > base + 0.1
    assert second.comparison.flags_equal is None          # step 18 did not run: nothing new to compare
    # ... and undo the edit: the flags saved before step 13's first run come back first
    events.clear()
    [third] = recalibrate(plan_recalibration(cycle0, ebs=[eb], steps="13", script=script,
                                             casa_version_mismatch="allow"), on_event=events.append).ebs
    assert [(e.step, e.flag_version) for e in events if e.kind == "restored"] == [(13, f"{FLAG_PREFIX}13")]
    assert third.flagged_fraction == pytest.approx(base, abs=1e-6)
    versions = (first.workdir / f"{eb}.ms.split.flagversions" / "FLAG_VERSION_LIST").read_text()
    assert f"{FLAG_PREFIX}13" in versions and f"{FLAG_PREFIX}14" not in versions   # later ones were stale
