"""Issue 11's done-criterion: a whole round trip with the real parts.

simulate (cached) -> restore -> image -> prepare the staff area and fill it from those results ->
check -> package -> serve the tarballs with the local archive -> query -> download -> validate (no
errors) -> restore again (the same calibrated visibilities and flags, from the re-packaged delivery).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from conftest import installed_casa_version

from almadeliver.archive.client import ArchiveClient
from almadeliver.archive.projectview import query
from almadeliver.archive.tap import Selection
from almadeliver.casa.restore import plan_restore, restore
from almadeliver.delivery.layout import find_members
from almadeliver.delivery.report import Severity
from almadeliver.delivery.staff import check_area
from almadeliver.delivery.validate import validate
from almadeliver.errors import UsageError
from almadeliver.ids import Uid
from almadeliver.packaging.package import package_mous, parse_size
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, catalogue_from_manifests
from almadeliver.sim.archive import LocalArchive
from almadeliver.transfer.download import TransferConfig, download
from almadeliver.transfer.plan import make_plan, parse_what

PROJECT = "2017.1.00123.S"          # the demo's project: one MOUS, 2 EBs (flux calibration + combination)


def _visibilities(ms: Path) -> dict[str, np.ndarray]:
    """The calibrated data (DATA of a split MS), flags and row keys of an MS, read with casatools."""
    import casatools

    tb = casatools.table()
    tb.open(str(ms))
    try:
        return {c: tb.getcol(c) for c in ("DATA", "FLAG", "TIME", "ANTENNA1", "ANTENNA2", "FIELD_ID", "DATA_DESC_ID")}
    finally:
        tb.close()


@pytest.mark.slow
def test_round_trip(staff_reduction, tmp_path):
    # simulated, restored, re-imaged and put in a staff area once per session (conftest)
    simulated_project, member = staff_reduction.project, staff_reduction.member
    ebs = member.ebs_in_scripts
    assert len(ebs) == 2
    restored, imaged, area, fill = staff_reduction.restored, staff_reduction.imaged, staff_reduction.area, staff_reduction.fill
    # a cube per spw (3) and a continuum image per sideband (2)
    assert not imaged.failures and len(imaged.comparisons) == 5
    # the simulated reducer calibrated in this CASA (conftest): the scripts' gates pass as they are
    assert restored.casa_asked == [installed_casa_version().split("-")[0]] and not restored.mismatch_allowed
    # the staff area, filled from those results, passes the final checklist. A restore runs the
    # calibration scripts in applyonly mode (not every step); the reducer's full run is the
    # scriptForPI log the delivery ships in log/.
    assert fill.restore_log == member.path / "log" / f"{member.mous.disk}.scriptForPI.log"
    report = check_area(area)
    assert report.ok(), [(f.path, f.message) for f in report.of(Severity.ERROR)]
    assert {f.check for f in report.findings if f.severity is Severity.INFO} >= {
        "staff.eb.script", "staff.eb.log", "staff.eb.qa2", "staff.combination.log",
        "staff.combination.fluxcal-script", "staff.imaging.log", "staff.imaging.pbcor", "staff.imaging.flux"}
    assert "Combination/calibrated/calibrated.ms" in fill.placed
    for eb in ebs:                             # each EB's log is its own part of the restore log
        [log] = (area / f"Calibration_{eb.archive.rsplit('/', 2)[1]}_{eb.tail}").glob("casa-*.log")
        assert f"Processing ASDM {eb.disk}" in log.read_text() and "Step 13 " in log.read_text()

    # package into an archive folder, published with the simulator's ObsCore rows for this project
    root = tmp_path / "archive"
    template = resources.files("almadeliver.sim").joinpath("templates", "scriptForPI.py")
    packaged = package_mous(area, PROJECT, member.sg.archive, member.gous.archive, root / PROJECT / FILES_DIR,
                            parse_size("10GB"), raw=member.path / "raw", script_for_pi=Path(str(template)))
    assert not packaged.warnings
    obscore = Catalogue.load(simulated_project).obscore
    catalogue_from_manifests(PROJECT, obscore, [packaged.manifest]).save(root / PROJECT)

    with LocalArchive(root) as archive:
        view = query(Selection.from_ids([PROJECT]), ArchiveClient(archive.url))
        [project] = view.projects
        [mous] = project.mous
        assert mous.uid == member.mous.archive and sorted(mous.ebs) == [eb.archive for eb in ebs]
        assert mous.sg == member.sg.archive
        plan = make_plan(view, parse_what("products,auxiliary,raw,readme"))
        assert sorted(f.name for f in plan.files) == sorted(f.name for f in packaged.files)
        fetched = download(plan, tmp_path / "download", TransferConfig(progress=False))
    assert fetched.ok, [(f.name, f.error) for f in fetched.failed]

    tree = tmp_path / "download" / PROJECT
    findings = validate(tree)
    assert findings.ok(), [(f.check, f.path, f.message) for f in findings.of(Severity.ERROR)]
    [again] = find_members(tree)
    assert again.ebs_in_raw == again.ebs_in_scripts == ebs
    assert (again.path / "script" / "scriptForPI.py").read_text() == template.read_text()
    readme = (again.path / "README").read_text()
    assert "Project code: 2017.1.00123.S" in readme and "Re-processing: calibrated data restored" in readme

    second = restore(plan_restore(again.path, spacesaving=1, casa_version_mismatch="allow"))
    assert sorted(second.calibrated_ebs) == sorted(eb.disk for eb in ebs)
    assert (again.path / "calibrated" / "calibrated.ms" / "table.dat").is_file()
    assert {p.name for p in second.measurement_sets} == {"calibrated.ms"} | {f"{eb.disk}.ms.split.cal" for eb in ebs}
    # ... holding the same calibrated visibilities and flags as the first restore, row for row
    for ms in second.measurement_sets:
        before, after = _visibilities(member.path / "calibrated" / ms.name), _visibilities(ms)
        assert before.keys() == after.keys() and before["DATA"].size > 1000, ms.name
        assert np.array_equal(before["FLAG"], after["FLAG"]) and 0 < before["FLAG"].mean() < 0.5, ms.name
        np.testing.assert_allclose(after["DATA"], before["DATA"], rtol=0, atol=1e-6, err_msg=ms.name)
        for column in ("TIME", "ANTENNA1", "ANTENNA2", "FIELD_ID", "DATA_DESC_ID"):
            assert np.array_equal(before[column], after[column]), (ms.name, column)

    # what came back is what was packaged: the re-made images, byte for byte
    for name in (c.fits for c in imaged.comparisons):
        assert (again.path / "product" / name).read_bytes() == (imaged.out / name).read_bytes()
    [aux] = [f for f in json.loads(packaged.manifest.read_text())["files"] if f["semantics"] == "#auxiliary"]
    names = {m["path"].rsplit("/", 2)[-2] + "/" + m["path"].rsplit("/", 1)[-1] for m in aux["members"]}
    assert names >= {f"{folder}/{eb.disk}{suffix}" for eb in ebs for folder, suffix in (
        ("calibration", ".calibration.tgz"), ("calibration", ".calibration.plots.tgz"), ("log", ".log.tgz"),
        ("script", ".ms.scriptForCalibration.py"), ("qa", "__textfile.txt"))}
    assert names >= {"calibration/allFluxes.txt", "log/calibrated.log.tgz", "log/Imaging.log.tgz",
                     "script/scriptForFluxCalibration.py", "script/scriptForImaging.py"}


def test_fill_refuses_what_it_cannot_use(simulated, unpack, tmp_path, capsys):
    """prepare --from-delivery: an unrestored member, EBs that do not match, a manifest of another project."""
    from almadeliver.cli import main

    [member] = find_members(unpack(simulated(PROJECT, ebs=2), tmp_path / "delivered"))
    ebs = [eb.archive for eb in member.ebs_in_scripts]
    args = ["prepare", member.mous.archive, "--from-delivery", str(member.path)]
    (member.path / "calibrated").mkdir()
    assert main(args + ["--root", str(tmp_path / "one"), "--eb", ebs[0]]) == 2
    assert "does not match the delivery's EBs" in capsys.readouterr().err
    (member.path / "calibrated").rmdir()
    assert main(args + ["--root", str(tmp_path / "two"), "--eb", ebs[0], "--eb", ebs[1]]) == 1
    assert "is not restored (no calibrated/)" in capsys.readouterr().err
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"project": "2019.1.00001.S", "ous": member.mous.archive, "files": []}))
    with pytest.raises(UsageError, match="not 2017.1.00123.S"):
        catalogue_from_manifests(PROJECT, [], [manifest])
