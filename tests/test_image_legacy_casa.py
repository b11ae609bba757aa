"""image with real CASA on clean-era manual deliveries: the simulated Cycle 0 project (shared with test_sim
and test_restore_casa) ships a CASA 3.4 scriptForImaging.py (Python 2, clean()); a Cycle 1 project's
CASA 4.2.2 script is re-run over the same data. The products were made by the equivalent tclean calls
written by hand (sim/templates/scriptForImaging.py.in)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from almadeliver.casa import imaging
from almadeliver.casa.imaging import Overrides

pytestmark = pytest.mark.slow

# The translated clean() calls run the same tclean as the hand-written ones on the same data: measured 0.0;
# the bar is 1e-3 of the peak.
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def cycle0_member(simulated, unpack, tmp_path_factory) -> Path:
    """The simulated Cycle 0 member with calibrated/calibrated.ms made as the Cycle 0 guide makes it
    (restore --concat runs the delivered scriptForFluxCalibration.py: "The imaging script will then work
    with the calibrated.ms", seed 000); the reducer imaged that flux-scaled calibrated.ms, and the
    delivered *.ms.split.cal are not scaled."""
    from almadeliver.casa.concat import concat_cycle0
    from almadeliver.casa.restore import plan_restore

    tree = unpack(simulated("2011.0.00340.S", flavour="cycle0", ebs=2), tmp_path_factory.mktemp("image-cycle0"))
    member = next(tree.glob("sg_ouss_id/group_ouss_id/member_ouss_*_id"))
    assert concat_cycle0(plan_restore(member)).script is not None
    return member


@pytest.fixture
def cycle1_member(cycle0_member, tmp_path) -> Path:
    """A Cycle 1 manual delivery's imaging: the CASA 4.2.2 scriptForImaging.py the simulator writes for
    2012.1.00009.S (same target, spws and 12m cell as the Cycle 0 project), over the Cycle 0 project's
    calibrated MSs and products (linked, not copied)."""
    from almadeliver.sim.manual import write_scripts
    from almadeliver.sim.plan import make_plan

    plan = make_plan("2012.1.00009.S")
    assert plan.field("target")["name"] == make_plan("2011.0.00340.S", flavour="cycle0", ebs=2).field("target")["name"]
    member = tmp_path / "member.uid___A001_X1_X9"
    write_scripts(plan, plan.mous[0], member, tmp_path / "reducer")
    for sub in ("calibrated", "product"):
        (member / sub).symlink_to(cycle0_member / sub)
    return member


def test_clean_era_script_reimaged_matches_the_hand_written_tclean(cycle1_member, tmp_path):
    script = (cycle1_member / "script" / "scriptForImaging.py").read_text()
    assert "clean(vis = vislist" in script and "print 'Step '" in script      # CASA 4.2.2 form, as delivered
    assert "re.search('^4.2.2', casadef.casa_version)" in script
    result = imaging.run(imaging.plan(cycle1_member), out=tmp_path / "same")
    assert result.failures == {}
    assert sorted(c.fits for c in result.comparisons) == sorted(
        p.name for p in (cycle1_member / "product").glob("*.image.pbcor.fits"))
    assert len(result.comparisons) == 5        # a continuum image per sideband, a cube per spw (QA2 set)
    for c in result.comparisons:
        assert c.delivered is not None and c.new.nchan == c.delivered.nchan
        assert c.new.bmaj_arcsec == pytest.approx(c.delivered.bmaj_arcsec, rel=1e-6)
        assert c.max_diff is not None and c.max_diff < TOLERANCE, c
    # the script's impbcor read clean's <name>.flux: tclean's .pb, linked
    assert all((result.out / "work" / f"{j.name}.flux").is_symlink() for j in result.jobs)
    record = json.loads(result.record.read_text())
    assert record["script"][0].startswith("scriptForImaging.py is Python 2 (CASA 3.4-4.x)")
    cube = next(i for i in record["images"] if i["kind"] == "cube")
    assert cube["tclean"]["specmode"] == "cube" and cube["tclean"]["restoringbeam"] == "common"
    assert "  resmooth=True -> restoringbeam='common'" in cube["translated_from"]["translation"]
    assert (cycle1_member / "script" / "scriptForImaging.py").read_text() == script     # never rewritten


def test_overrides_reach_the_translated_clean_calls(cycle0_member, tmp_path):
    """The Cycle 0 delivery's own CASA 3.4 script: --specmode cube skips the continuum clean() (and its
    impbcor/exportfits), --nbin 2 bins the cube."""
    assert "re.search('^3.4.0', casadef.casa_version)" in (cycle0_member / "script" / "scriptForImaging.py").read_text()
    result = imaging.run(imaging.plan(cycle0_member, Overrides(specmode="cube", nbin=2)), out=tmp_path / "nbin")
    assert result.failures == {}
    assert len(result.comparisons) == 3        # the cube of each spw; no continuum image
    for c in result.comparisons:
        assert c.new.nchan == c.delivered.nchan // 2, c
    assert not list(result.out.glob("*_cont_*"))


def test_target_flag_commands_are_applied_to_the_copy_only(cycle0_member, tmp_path):
    """flagtargets_in_casa (hifa_flagtargets on a copy): an edited template's command flags the copy; the
    restored MS keeps its flags."""
    from almadeliver.casa.imaging import flagtargets_in_casa
    from almadeliver.casa.runtime import run_in_casa

    vis = str(sorted((cycle0_member / "calibrated").glob("*.ms.split.cal"))[0])
    run = {"vis": vis, "outputvis": str(tmp_path / "targets" / "eb_targets.ms"), "datacolumn": "data",
           "template": "eb_flagtargetstemplate.txt", "commands": ["mode='manual' spw='0:8~15' reason='user'"]}
    edited = run_in_casa(flagtargets_in_casa, {"run": run}, workdir=tmp_path)
    assert edited["flagged_after"] > edited["flagged_before"] + 0.05, edited
    again = run_in_casa(flagtargets_in_casa, {"run": {**run, "vis": vis, "commands": []}},
                        workdir=tmp_path)
    assert again["flagged_after"] == pytest.approx(edited["flagged_before"])   # the source MS was not flagged
