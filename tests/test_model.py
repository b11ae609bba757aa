from almadeliver.archive.model import ArchiveFile, Mous, Project, ProjectView
from almadeliver.delivery.report import Report, Severity
from almadeliver.ids import TarballKind


def test_project_view_json_round_trip():
    f = ArchiveFile("member.uid___A001_X1_X2.README.txt", "http://h/dataPortal/x", 10, TarballKind.README, "uid://A001/X1/X2")
    m = Mous("uid://A001/X1/X2", "uid://A001/X1/X1", None, "12m", True, ["uid://A002/X1/X3"], ["src"], ["3"], 4, [f])
    view = ProjectView("http://h", [Project("2019.1.00001.S", "t", "pi", 7, "Public", "2020-01-01", ["3"], ["src"], [m])], 4, 0)
    back = ProjectView.from_json(view.to_json())
    assert back == view and back.files({TarballKind.README}) == [f] and m.size(TarballKind.RAW) == 0


def test_report_strictness():
    r = Report("x", "manual")
    r.add(Severity.WARNING, "tree.part-file", "a.part", "leftover download")
    assert r.ok() and not r.ok(strict=True)
    r.add(Severity.ERROR, "raw.missing", "raw", "missing")
    assert not r.ok() and len(r.of(Severity.ERROR)) == 1
