"""query against almadeliver's LocalArchive (real HTTP server on 127.0.0.1, catalogues written here)."""
from __future__ import annotations

import pytest

from almadeliver.sim.archive import LocalArchive

from archive_catalogue import write_project  # noqa: E402

from almadeliver.archive.client import ArchiveClient  # noqa: E402
from almadeliver.archive.model import ProjectView  # noqa: E402
from almadeliver.archive.projectview import eb_table, query, summary  # noqa: E402
from almadeliver.archive.tap import Selection, cone  # noqa: E402
from almadeliver.cli import main  # noqa: E402
from almadeliver.errors import NotFoundError  # noqa: E402
from almadeliver.ids import TarballKind, Uid  # noqa: E402
from almadeliver.units import human_size  # noqa: E402


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_project(root, "2019.1.00458.S", n_mous=3, sources=2, spws=2, ebs_per_mous=2)
    write_project(root, "2011.0.00340.S", n_mous=3, sources=1, spws=2, cycle0_tarballs=17)
    write_project(root, "2021.1.00123.S", n_mous=1, proprietary=True)
    with LocalArchive(root) as a:
        yield a


def test_project_view(archive):
    view = query(Selection(projects=["2019.1.00458.S"]), ArchiveClient(archive.url))
    (p,) = view.projects
    assert (p.code, p.cycle, p.pi, p.data_rights) == ("2019.1.00458.S", 7, "Ginsburg, Adam", "Public")
    assert len(p.mous) == 3 and all(m.sg == "uid://A001/X385f5/X2" for m in p.mous)
    assert all(len(m.ebs) == 2 and m.rows == 4 and m.size(TarballKind.RAW) == 128 for m in p.mous)
    assert summary(view) == "12 rows -> 3 MOUS, 6 EBs; 15 files, 0 duplicates dropped"


def test_cycle0_project_lists_its_tarballs_once(archive):
    view = query(Selection(projects=["2011.0.*"]), ArchiveClient(archive.url))
    (p,) = view.projects
    assert len(view.files({TarballKind.CYCLE0})) == 17 and view.duplicates_dropped >= 34
    assert [len(m.shared_files) for m in p.mous] == [0, 17, 17]
    assert all(row["shares_with"] for row in eb_table(view))


def test_selections(archive):
    client = ArchiveClient(archive.url)
    uid = query(Selection(uids=["uid___A001_X385f5_X101"]), client)
    assert [m.uid for p in uid.projects for m in p.mous] == ["uid://A001/X385f5/X101"]
    gous = query(Selection(uids=["uid://A001/X49a3e/X3", "uid://A001/X385f5/X100"], public=True), client)
    assert [(p.code, len(p.mous)) for p in gous.projects] == [("2011.0.00340.S", 3), ("2019.1.00458.S", 1)]
    assert {p.code for p in query(Selection(public=False, bands=[6]), client).projects} == {"2021.1.00123.S"}
    assert query(Selection(cone=cone("266.41", "-28.9", "10arcsec"), keyword="molecular CLOUDS"), client).projects
    prop = query(Selection(projects=["2021.1.00123.S"]), client)
    (m,) = prop.projects[0].mous
    assert prop.projects[0].data_rights == "Proprietary" and m.files and not any(f.readable for f in m.files)
    assert m.sg is None                                   # its tarball header needs a login: sg unknown
    with pytest.raises(NotFoundError, match="project 2099.1.00001.S is not in the archive"):
        query(Selection(projects=["2099.1.00001.S"]), client)


def test_cli_plan_round_trip(archive, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert main(["query", "2019.1.00458.S", "--archive", archive.url, "--format", "json", "-o", str(plan)]) == 0
    assert len(ProjectView.from_json(plan.read_text()).files()) == 15
    assert main(["query", "2019.1.00458.S", "--archive", archive.url, "--view", "mous"]) == 0
    out = capsys.readouterr().out
    assert "uid://A001/X385f5/X100" in out and "12 rows -> 3 MOUS, 6 EBs; 15 files, 0 duplicates dropped" in out


def test_an_empty_answer_names_the_condition_that_emptied_it(archive, capsys):
    client = ArchiveClient(archive.url)
    with pytest.raises(NotFoundError, match=r"^2019.1.00458.S has no data matching --band 1 \(it has bands 6\); drop"):
        query(Selection(projects=["2019.1.00458.S"], bands=[1]), client)
    with pytest.raises(NotFoundError, match=r"2021.1.00123.S has no data matching --public "
                                            r"\(it has data rights Proprietary\)"):
        query(Selection(projects=["2021.1.00123.S"], public=True), client)
    with pytest.raises(NotFoundError, match=r"uid___A001_X385f5_X101 has no data matching --band 3 --end 2000-01-01 "
                                            r"\(it has bands 6; observations from \d{4}-\d\d-\d\d to "):
        query(Selection(uids=["uid___A001_X385f5_X101"], bands=[3], end="2000-01-01"), client)
    # a project that is not there at all is still said to be missing, filter or not
    with pytest.raises(NotFoundError, match="project 2099.1.00001.S is not in the archive"):
        query(Selection(projects=["2099.1.00001.S"], bands=[1]), client)
    with pytest.raises(NotFoundError, match=r"^2019.1.00458.S has no data matching --band 1 \(it has bands 6\); "
                                            r"project 2099.1.00001.S is not in the archive at "):
        query(Selection(projects=["2019.1.00458.S", "2099.1.00001.S"], bands=[1]), client)
    # through the CLI: one line, exit 1; with another project found, a warning names the emptied one
    assert main(["query", "2019.1.00458.S", "--band", "1", "--archive", archive.url]) == 1
    assert capsys.readouterr().err.startswith(
        "error: 2019.1.00458.S has no data matching --band 1 (it has bands 6); drop or widen")
    assert main(["query", "2019.1.00458.S", "2021.1.00123.S", "--public", "--archive", archive.url]) == 0
    assert "2021.1.00123.S has no data matching --public (it has data rights Proprietary)" in capsys.readouterr().err


# -- a DDT project with an external (ARI-L) product -------------------------------------------------
DDT = "2018.A.00062.S"


@pytest.fixture(scope="module")
def ddt_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddt-archive")
    write_project(root, DDT, n_mous=1, sources=1, spws=2, external="ari_l")
    with LocalArchive(root) as a:
        yield a


def test_ddt_project_view_lists_its_external_product(ddt_archive, capsys, tmp_path):
    view = query(Selection(projects=[DDT]), ArchiveClient(ddt_archive.url))
    (p,) = view.projects
    (m,) = p.mous
    (ext,) = [f for f in m.files if f.kind is TarballKind.EXTERNAL]
    assert p.cycle == 6 and ext.name == f"{DDT}_{Uid.parse(m.uid).disk}_external_ari_l_001_of_001.tar"
    assert m.size(TarballKind.EXTERNAL) == ext.size > 0
    assert main(["query", DDT, "--archive", ddt_archive.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{DDT}  cycle 6  Public")
    header = next(line for line in out.splitlines() if line.strip().startswith("MOUS"))
    assert header.split() == ["MOUS", "array", "QA2", "EBs", "products", "auxiliary", "raw", "external"]
    assert f"external {ext.name} (" in out
    assert f"\nexternal products: {human_size(ext.size)} in 1 files (download --what external)\n" in out
    assert f"raw 64 B)\n" in out                 # the default download total leaves the external product out
    # --what external fetches it and unpacks it into the member's tree, beside product/
    assert main(["download", DDT, "--archive", ddt_archive.url, "--what", "external", "--dest", str(tmp_path)]) == 0
    member = next((tmp_path / DDT).glob("science_goal.*/group.*/member.*"))
    (image,) = (member / "external" / "ari_l").iterdir()
    assert image.name.endswith(".cube.I.ari_l.pbcor.fits") and not (member / "product").exists()
