"""One detection test per validate finding type: a clean tree, broken in exactly one way, must gain that
finding (and only what that break implies), at its severity.

The table below must name every check id validate.py can report (a test reads the module's source), so a
new finding type cannot land without a tree that produces it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from almadeliver.delivery import validate as validate_module
from almadeliver.delivery.validate import validate
from processes import run_as_nobody
from test_validate import (EBS, MOUS, PIPE_MOUS, PROJECT, manual_member, pipeline_member, touch,
                           write_asdm, write_fits)

C0_EBS = ["uid___A002_X554543_X207", "uid___A002_X554543_X3c4"]


def cycle0_member(root: Path, real: Path) -> Path:
    """A restored Cycle 0 delivery with two EBs (raw/<EB>.ms.split, calibrated/<EB>.ms.split.cal)."""
    m = root / "2011.0.00340.S/sg_ouss_id/group_ouss_id/member_ouss_2012-12-05_id"
    touch(m / "README", "Project code: 2011.0.00340.S\nPI name: Someone\nCASA version used for reduction: 3.4\n")
    touch(m / "script/scriptForImaging.py")
    for eb in C0_EBS:
        touch(m / f"script/{eb}.ms.scriptForCalibration.py")
        touch(m / f"raw/{eb}.ms.split/table.dat")
        touch(m / f"calibrated/{eb}.ms.split.cal/table.dat")
        (m / f"calibration/{eb}.calibration").mkdir(parents=True)
        touch(m / f"log/{eb}.calibration.log")
        touch(m / f"qa/{eb}__textfile.txt")
    write_fits(m / "product/TWHya.continuum.fits")
    return m


STAFF_MOUS = "uid___A001_X13e_X1fe"


def staff_area(root: Path, real: Path) -> Path:
    """An observatory reduction area with one EB in its Calibration folder."""
    area = root / STAFF_MOUS
    write_asdm(area / "Calibration_X26f0/uid___A002_X9ee74a_X26f0")
    touch(area / "Calibration_X26f0/uid___A002_X9ee74a_X26f0.ms.scriptForCalibration.py")
    (area / "Calibration_X26f0/qa2").mkdir()
    return area


def _readme(m: Path, old: str, new: str) -> None:
    text = (m / "README").read_text()
    assert old in text
    (m / "README").write_text(text.replace(old, new))


def _rm(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


# check id -> (base tree, how to break it, the severity, every check the break adds)
P = f"member.{PIPE_MOUS}."
CASES = {
    "readme.missing": (manual_member, lambda m: _rm(m / "README"), "warning", {"readme.missing"}),
    "readme.project-mismatch": (manual_member, lambda m: _readme(m, "Project code: 2013.1.00308.S",
                                                                 "Project code: 2016.1.01435.S"),
                                "error", {"readme.project-mismatch"}),
    "readme.field-missing": (manual_member, lambda m: _readme(m, "PI name: Adam Ginsburg\n", ""),
                             "warning", {"readme.field-missing"}),
    "layout.flavour": (manual_member, lambda m: [_rm(p) for p in (m / "script").glob("*.py")], "error",
                       {"layout.flavour", "script.no-scriptforpi", "raw.semipass"}),
    "script.no-calibration-script": (manual_member, lambda m: [_rm(p) for p in (m / "script").glob(
        "*.scriptForCalibration.py")], "error", {"script.no-calibration-script", "raw.semipass"}),
    "script.no-restorescript": (pipeline_member, lambda m: _rm(
        m / f"script/{PIPE_MOUS}.hifa_calimage.casa_piperestorescript.py"), "error",
        {"script.no-restorescript"}),
    "calibration.missing-tables": (manual_member, lambda m: [_rm(p) for p in (m / "calibration").glob(
        f"{EBS[1]}.calibration*")], "warning", {"calibration.missing-tables"}),
    "log.empty": (manual_member, lambda m: [_rm(p) for p in (m / "log").iterdir()], "warning", {"log.empty"}),
    "qa.missing-report": (manual_member, lambda m: [_rm(p) for p in (m / "qa").glob(f"{EBS[0]}_*")],
                          "warning", {"qa.missing-report"}),
    "qa.no-weblog": (pipeline_member, lambda m: _rm(m / f"qa/{PIPE_MOUS}.weblog.tgz"), "warning",
                     {"qa.no-weblog", "pipeline.manifest-missing"}),     # the manifest lists the weblog
    "pipeline.no-caltables": (pipeline_member, lambda m: _rm(m / f"calibration/{PIPE_MOUS}.session_1.caltables.tgz"),
                              "error", {"pipeline.no-caltables", "pipeline.manifest-missing"}),
    "pipeline.manifest-unparsed": (pipeline_member, lambda m: (m / f"calibration/{P}pipeline_manifest.xml")
                                   .write_text("<piperesults><ous>\n"), "error", {"pipeline.manifest-unparsed"}),
    "product.no-fits": (manual_member, lambda m: [_rm(p) for p in (m / "product").glob("*.fits")], "warning",
                        {"product.no-fits"}),
    "raw.empty": (manual_member, lambda m: [_rm(p) for p in (m / "raw").iterdir()], "error",
                  {"raw.empty", "raw.missing-asdm"}),
    "raw.truncated-ms": (cycle0_member, lambda m: _rm(m / f"raw/{C0_EBS[1]}.ms.split/table.dat"), "error",
                         {"raw.truncated-ms"}),
    "calibrated.missing-eb": (cycle0_member, lambda m: _rm(m / f"calibrated/{C0_EBS[1]}.ms.split.cal"), "warning",
                              {"calibrated.missing-eb"}),
    "staff.naming": (staff_area, lambda a: a.rename(a.parent / "my_reduction"), "warning", {"staff.naming"}),
    "staff.no-asdm": (staff_area, lambda a: _rm(a / "Calibration_X26f0/uid___A002_X9ee74a_X26f0"), "error",
                      {"staff.no-asdm"}),
    "staff.no-calibration": (staff_area, lambda a: [_rm(a / "Calibration_X26f0"), (a / "Combination").mkdir(),
                                                    (a / "Imaging").mkdir()], "error", {"staff.no-calibration", "staff.ebs"}),   # the checklist too
}
# produced by tests in test_validate.py (named there), or needing another user (the test below)
ELSEWHERE = {"tree.unreadable", "tree.broken-symlink", "tree.partial-download", "tree.leftover-tarball",
             "tree.zero-size", "layout.naming", "layout.missing-folder", "readme.unparsed",
             "readme.casa-version", "readme.summary", "script.no-scriptforpi", "raw.absent", "raw.missing-asdm",
             "raw.semipass", "raw.truncated-asdm", "pipeline.missing-eb-file", "pipeline.unparsed",
             "pipeline.contdat", "pipeline.contdat-flags", "pipeline.flagtemplate-note", "pipeline.manifest-missing",
             "product.unreadable", "product.truncated", "product.no-beam", "calibrated.empty", "staff.tail-mismatch"}


def _findings(root: Path) -> dict[str, set[str]]:
    """check id -> the severities it was reported with."""
    found: dict[str, set[str]] = {}
    for f in validate(root).findings:
        found.setdefault(f.check, set()).add(f.severity.value)
    return found


def test_every_check_validate_reports_has_a_tree_that_produces_it():
    source = Path(validate_module.__file__).read_text()
    ids = set(re.findall(r'report\.add\(\s*\w+,\s*"([a-z0-9]+\.[a-z0-9-]+)"', source))
    assert len(ids) > 40
    assert ids == set(CASES) | ELSEWHERE, (ids - set(CASES) - ELSEWHERE, set(CASES) | ELSEWHERE - ids)
    mentioned = "".join(Path(__file__).with_name(n).read_text() for n in ("test_validate.py",))
    assert all(f'"{c}"' in mentioned for c in ELSEWHERE - {"tree.unreadable"}), \
        [c for c in ELSEWHERE if f'"{c}"' not in mentioned]


@pytest.mark.parametrize("check", sorted(CASES))
def test_a_tree_broken_in_one_way_gets_that_finding(tmp_path, real, check):
    base, breaker, severity, adds = CASES[check]
    clean = base(tmp_path / "clean", real)
    before = _findings(tmp_path / "clean")
    assert check not in before
    made = base(tmp_path / "broken", real)
    breaker(made)
    after = _findings(tmp_path / "broken")
    assert severity in after.get(check, set()), after
    new = {c for c, sev in after.items() if c not in before or sev - before[c]}
    assert new == adds, (new, adds)
    assert clean.exists()


def _validate_as_nobody(root: Path) -> list[dict]:
    """validate ``root`` as nobody (root reads every folder)."""
    return run_as_nobody(lambda: [{"check": f.check, "severity": f.severity.value, "path": f.path}
                                  for f in validate(root).findings])


def test_a_folder_validate_cannot_read_is_an_error(real):
    """A folder without read permission (validate run by another user than the tree's owner)."""
    top = Path(tempfile.mkdtemp(prefix="almadeliver-unreadable-"))
    try:
        top.chmod(0o755)
        m = manual_member(top, real)
        locked = m / f"calibration/{EBS[0]}.calibration.plots"
        locked.chmod(0)
        errors = [f for f in _validate_as_nobody(top / PROJECT) if f["severity"] == "error"]
        assert [f["check"] for f in errors] == ["tree.unreadable"]
        assert errors[0]["path"].endswith(f"member.{MOUS}/calibration/{EBS[0]}.calibration.plots")
    finally:
        for dirpath, dirnames, _ in os.walk(top):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
        top.chmod(0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_a_readme_of_another_project_is_an_error_at_the_cli(tmp_path, real):
    """The planted fault 'validate no longer reports a README whose project differs': exit 1, one error."""
    from almadeliver.cli import main

    m = manual_member(tmp_path, real)
    assert main(["validate", str(tmp_path)]) == 0
    _readme(m, "Project code: 2013.1.00308.S", "Project code: 2016.1.01435.S")
    assert main(["validate", str(tmp_path)]) == 1
    (err,) = [f for f in validate(tmp_path).findings if f.severity.value == "error"]
    assert err.check == "readme.project-mismatch" and "2016.1.01435.S" in err.message and PROJECT in err.message


def test_an_eb_whose_calibration_script_is_missing_is_named(tmp_path, real):
    """Of two EBs, one has lost its scriptForCalibration.py: scriptForPI would skip it (semipass) and say so."""
    m = manual_member(tmp_path, real)
    (m / f"script/{EBS[1]}.ms.scriptForCalibration.py").unlink()
    report = validate(tmp_path)
    (semi,) = [f for f in report.findings if f.check == "raw.semipass"]
    assert semi.path.endswith(f"raw/{EBS[1]}.asdm.sdm") and "no calibration script" in semi.message
    assert "uid://A002/Xa8df68/Xb4b" in semi.message


def test_a_staff_area_validated_itself_is_reported_as_dot(tmp_path, real):
    area = staff_area(tmp_path, real)
    report = validate(area)
    (info,) = report.details["staff_areas"]
    assert info["path"] == "." and info["mous"] == "uid://A001/X13e/X1fe"


def test_each_total_power_eb_in_raw_needs_its_calibrated_data_even_after_one_not_in_raw(tmp_path, real):
    """Two Total Power EBs; the first's ASDM is not in raw/ (not restored, nothing to look for): the second's
    missing <EB>.calibration/<EB>.ms.cal is still reported."""
    from test_validate import EBS

    m = manual_member(tmp_path, real)
    for eb in EBS:
        (m / f"script/{eb}.ms.scriptForCalibration.py").rename(m / f"script/{eb}.ms.scriptForSDCalibration.py")
    first, second = sorted(EBS)
    shutil.rmtree(m / f"raw/{first}.asdm.sdm")
    (m / f"calibrated/{second}.calibration").mkdir(parents=True)
    (m / f"calibrated/{second}.ms").mkdir()
    missing = [f for f in validate(tmp_path).findings if f.check == "calibrated.missing-eb"]
    assert [f.path.rsplit("/", 2)[-2:] for f in missing] == [[f"{second}.calibration", f"{second}.ms.cal"]]
