"""query: ADQL builder, DataLink parsing (real answers), project-view merging, dedup, output formats."""
from __future__ import annotations

import csv
import io
import json

import pytest
from astropy.io.votable import from_table, parse_single_table
from astropy.table import Table

from almadeliver.archive.client import DEFAULT_ARCHIVE, MIRRORS, mirror_list
from almadeliver.archive.datalink import Link, parse_datalink
from almadeliver.archive.model import ProjectView
from almadeliver.archive.projectview import MousFiles, eb_table, merge, mous_table, sg_from_header, summary
from almadeliver.archive.tap import Selection, build_adql, cone, quote
from almadeliver.cli.query_cmds import Format, View, formatted
from almadeliver.errors import ArchiveError, IdentifierError, NotFoundError, UsageError
from almadeliver.ids import TarballKind, cycle0_name, products_name, raw_name, Uid
from almadeliver.packaging.tarballs import write_tar

MOUS = "uid://A001/X12a3/Xe9"          # the MOUS of the real DataLink answer (2017.1.01185.S)
REAL_EBS = ["uid://A002/Xd28a9e/X71b8", "uid://A002/Xd28a9e/X7b4d", "uid://A002/Xd29c1f/X1f74", "uid://A002/Xd29c1f/X5cf"]


def obscore_rows(project: str, mous_ebs: dict[str, list[str]], gous: str, sources=("src_a", "src_b"), spws=(25, 27),
                 antennas="A001:DA44 A002:DV12 A003:DA51", rights="Public", band="6") -> Table:
    """ObsCore rows as the archive returns them: one per (MOUS x source x spw), one EB per row."""
    rows = []
    for mous, ebs in mous_ebs.items():
        for i, (src, spw) in enumerate((s, w) for s in sources for w in spws):
            rows.append(dict(proposal_id=project, obs_title="Star formation in the 50 km/s cloud",
                             obs_creator_name="Mills, Elisabeth", group_ous_uid=gous, member_ous_uid=mous,
                             asdm_uid=ebs[i % len(ebs)], target_name=src, s_ra=266.4, s_dec=-28.9, band_list=band,
                             t_min=58150.3, data_rights=rights, obs_release_date="2019-04-27T14:16:21.000",
                             qa2_passed="T", science_keyword="Giant Molecular Clouds (GMC) properties",
                             antenna_arrays=antennas, schedblock_name="50kms_a_06_TM1",
                             obs_id=f"{mous}.source.{src}.spw.{spw}"))
    return Table(rows=rows)


@pytest.fixture(scope="module")
def real_answer(real):
    return parse_datalink((real / "archive" / "alma-datalink.xml").read_bytes(), MOUS)


# -- ADQL ---------------------------------------------------------------------------------------------
def test_adql_projects_uids_and_quoting():
    q = build_adql(Selection.from_ids(["2013.1.00308.S", "2017.1.*.L", "uid___A001_X13e_X1fe", "uid://A001/X1/X2"],
                                      keyword="O'Brien's cloud", where=["t_exptime > 100"]))
    assert "proposal_id IN ('2013.1.00308.S')" in q and "proposal_id LIKE '2017.1.%.L'" in q
    assert "member_ous_uid IN ('uid://A001/X13e/X1fe', 'uid://A001/X1/X2')" in q
    assert "group_ous_uid IN ('uid://A001/X13e/X1fe', 'uid://A001/X1/X2')" in q
    assert "LOWER(science_keyword) LIKE '%o''brien''s cloud%'" in q and q.endswith("AND (t_exptime > 100)")
    assert quote("a'b") == "'a''b'"


def test_adql_band_matches_whole_numbers_cone_dates_rights():
    q = build_adql(Selection(bands=[1], cone=cone("83.82", "-5.39", "30arcsec"), public=False,
                             start="2016-10-01", end="2016-10-31"))
    assert "band_list = '1' OR band_list LIKE '1 %' OR band_list LIKE '% 1' OR band_list LIKE '% 1 %'" in q
    assert "'%1%'" not in q                       # would match band 10
    assert "INTERSECTS(CIRCLE('ICRS', 83.82, -5.39, 0.008333333333333333), s_region) = 1" in q
    assert "data_rights = 'Proprietary'" in q
    assert "t_min >= 57662.000000" in q and "t_min < 57693.000000" in q   # MJD of 2016-10-01 and 2016-11-01


@pytest.mark.parametrize("ids, kwargs, error", [
    (["2013.1.308.S"], {}, IdentifierError),             # malformed code
    (["2013.1.0030'8.S*"], {}, IdentifierError),         # quote smuggled into a wildcard pattern
    (["uid://A001/X1"], {}, IdentifierError),            # malformed uid
    ([], {}, UsageError),                                # nothing selected
    ([], {"bands": [11]}, UsageError),
    ([], {"start": "yesterday-ish"}, UsageError),
])
def test_adql_rejects_bad_input(ids, kwargs, error):
    with pytest.raises(error):
        build_adql(Selection.from_ids(ids, **kwargs))


def test_mirrors(monkeypatch):
    monkeypatch.delenv("ALMADELIVER_ARCHIVE", raising=False)
    assert mirror_list() == [DEFAULT_ARCHIVE, *MIRRORS.values()]
    assert mirror_list("nrao")[0] == MIRRORS["nrao"] and len(mirror_list("nrao")) == 4
    assert mirror_list("http://127.0.0.1:8080/") == ["http://127.0.0.1:8080"]   # a local archive: alone
    monkeypatch.setenv("ALMADELIVER_ARCHIVE", "naoj")
    assert mirror_list()[0] == MIRRORS["naoj"]
    with pytest.raises(UsageError):
        mirror_list("alma-somewhere")


# -- DataLink (real answers) -------------------------------------------------------------------------
def test_datalink_real_mous_answer(real_answer):
    kinds = [lk.kind for lk in real_answer.links]
    assert kinds == [TarballKind.README, TarballKind.PRODUCTS, TarballKind.AUXILIARY] + [TarballKind.RAW] * 4
    assert real_answer.links[1].size == 556278784 and real_answer.links[1].readable
    assert real_answer.links[1].url == "https://almascience.org/dataPortal/2017.1.01185.S_uid___A001_X12a3_Xe9_001_of_001.tar"
    assert sum(lk.size for lk in real_answer.links if lk.kind is TarballKind.RAW) == 9984396288
    assert real_answer.nested["2017.1.01185.S_uid___A001_X12a3_Xe9_auxiliary.tar"] == (
        "https://almascience.org/datalink/sync?ID=2017.1.01185.S_uid___A001_X12a3_Xe9_auxiliary.tar")


def test_datalink_real_nested_answers_skip_cutouts(real):
    text = (real / "archive" / "alma-datalink-recurse-this.xml").read_text()
    this = parse_datalink(text.encode(), "2017.1.01185.S_uid___A001_X12a3_Xe9_001_of_001.tar")
    assert len(this.links) == text.count("<TR>") - text.count("#cutout")
    assert all(lk.name.startswith("member.uid___A001_X12a3_Xe9.") for lk in this.links)
    aux = parse_datalink((real / "archive" / "alma-datalink-recurse-aux.xml").read_bytes(), "aux")
    assert {lk.semantics for lk in aux.links} == {"#auxiliary", "#documentation"} and len(aux.links) == 48
    assert any(lk.name == "uid___A002_Xd28a9e_X71b8.qa0_report.pdf" and lk.size == 405502 for lk in aux.links)


def _datalink_votable(rows: list[dict]) -> bytes:
    t = Table(rows=rows, names=("ID", "access_url", "service_def", "error_message", "semantics", "description",
                                "content_type", "content_length", "readable"),
              dtype=(str, str, str, str, str, str, str, "i8", bool))
    buf = io.BytesIO()
    from_table(t).to_xml(buf)
    return buf.getvalue()


def test_datalink_faults():
    row = dict(ID="uid://A001/X1/X1", access_url="", service_def="", error_message="NotFoundFault: uid://A001/X1/X1",
               semantics="", description="", content_type="", content_length=0, readable=False)
    with pytest.raises(NotFoundError, match="does not know uid://A001/X1/X1"):
        parse_datalink(_datalink_votable([row]), "uid://A001/X1/X1")
    with pytest.raises(ArchiveError, match="UsageFault"):
        parse_datalink(_datalink_votable([{**row, "error_message": "UsageFault: bad"}]), "x")
    with pytest.raises(ArchiveError, match="not a VOTable"):
        parse_datalink(b"<html>login</html>", "x")


# -- merging and dedup ----------------------------------------------------------------------------------
def test_merge_real_answer_into_one_mous(real_answer):
    rows = obscore_rows("2017.1.01185.S", {MOUS: REAL_EBS[:2]}, "uid://A001/X12a3/Xe8")
    view = merge(rows, {MOUS: MousFiles(real_answer.links, "uid://A001/X12a3/Xe7")}, "https://almascience.org")
    (p,) = view.projects
    assert (p.code, p.cycle, p.pi, p.data_rights, p.release_date) == (
        "2017.1.01185.S", 5, "Mills, Elisabeth", "Public", "2019-04-27")
    (m,) = p.mous
    assert (m.rows, m.array, m.qa2_passed, m.sg, m.bands, m.targets) == (4, "12m", True, "uid://A001/X12a3/Xe7", ["6"], ["src_a", "src_b"])
    assert m.ebs == REAL_EBS                          # 2 from ObsCore, all 4 once the raw tarballs are counted
    assert m.size(TarballKind.PRODUCTS, TarballKind.README) == 556278784 + 3523
    assert m.size(TarballKind.RAW) == 9984396288 and len(view.files()) == 7
    assert summary(view) == "4 rows -> 1 MOUS, 4 EBs; 7 files, 0 duplicates dropped"


def _cycle0_links(project: str, mous: str) -> list[Link]:
    return [Link(mous, n, f"http://a/dataPortal/{n}", "#this", "application/x-tar", 1_000_000 + i, True)
            for i, n in enumerate(cycle0_name(project, "2012-12-05", k, 17) for k in range(1, 18))]


def test_cycle0_tarballs_under_every_eb_count_once():
    """Cycle 0: the whole delivery (17 tarballs) listed once per EB; the plan lists it once."""
    project, mous = "2011.0.00340.S", "uid://A001/X2d6/X41"
    ebs = ["uid://A002/X5578f1/X1b8", "uid://A002/X5784d5/X15c", "uid://A002/X56a957/X25b"]
    rows = obscore_rows(project, {mous: ebs}, "uid://A001/X2d6/X40", sources=("NGC1068",), spws=(0, 1, 2, 3, 4, 5))
    links = _cycle0_links(project, mous) * 3 + [
        Link(mous, raw_name(project, Uid.parse(eb)), f"http://a/dataPortal/{raw_name(project, Uid.parse(eb))}",
             "#progenitor", "application/x-tar", 5000, True) for eb in ebs]
    view = merge(rows, {mous: MousFiles(links, None)}, "http://a")
    assert len(view.projects) == 1 and len(view.projects[0].mous) == 1
    assert len(view.files({TarballKind.CYCLE0})) == 17 and view.duplicates_dropped == 34
    assert summary(view) == "6 rows -> 1 MOUS, 3 EBs; 20 files, 34 duplicates dropped"
    t = eb_table(view)
    assert list(t["shares_with"]) == ["2 3", "1 3", "1 2"] and all(t["raw_bytes"] == 5000)


def test_same_files_under_several_mous_are_shared_not_repeated():
    project = "2011.0.00340.S"
    mous = ["uid://A001/X2d6/X41", "uid://A001/X2d6/X43"]
    rows = obscore_rows(project, {m: [f"uid://A002/X5578f1/X{i}b8"] for i, m in enumerate(mous)}, "uid://A001/X2d6/X40")
    view = merge(rows, {m: MousFiles(_cycle0_links(project, m), None) for m in mous}, "http://a")
    first, second = view.projects[0].mous
    assert len(first.files) == 17 and second.files == [] and len(second.shared_files) == 17
    assert view.duplicates_dropped == 17
    back = ProjectView.from_json(view.to_json())
    assert back == view
    assert list(eb_table(view)["shares_with"]) == ["2", "1"]


def test_array_and_qa2_from_rows(real_answer):
    rows = obscore_rows("2019.1.00001.S", {"uid://A001/X1/X3": ["uid://A002/X1/X1"]}, "uid://A001/X1/X2",
                        antennas="A001:CM01 A002:CM02 A003:CM03")
    rows["qa2_passed"][0] = "F"
    (m,) = merge(rows, {"uid://A001/X1/X3": MousFiles([], None)}, "h").projects[0].mous
    assert m.array == "7m" and m.qa2_passed is False and m.sg is None and m.files == []


# -- science goal from the first tar header -------------------------------------------------------------
def test_sg_from_the_first_header_of_a_real_tarball(tmp_path):
    member = tmp_path / "2017.1.01185.S/science_goal.uid___A001_X12a3_Xe7/group.uid___A001_X12a3_Xe8/member.uid___A001_X12a3_Xe9"
    (member / "product").mkdir(parents=True)
    (member / "product" / "member.uid___A001_X12a3_Xe9.cont.I.pbcor.fits").write_bytes(b"\0" * 50_000)
    (member / "README").write_text("ALMA README\n")
    tar = write_tar(tmp_path / products_name("2017.1.01185.S", Uid.parse(MOUS), 1, 1),
                    [("2017.1.01185.S", tmp_path / "2017.1.01185.S")] + [
                        (str(p.relative_to(tmp_path)), p) for p in (tmp_path / "2017.1.01185.S").rglob("*")])
    data = tar.read_bytes()
    assert sg_from_header(data[:10240]) == "uid://A001/X12a3/Xe7"
    assert sg_from_header(data[:700]) is None or sg_from_header(data[:700]) == "uid://A001/X12a3/Xe7"
    assert sg_from_header(b"<html>please log in</html>" * 40) is None
    cycle0 = tmp_path / "c0" / "2011.0.00340.S" / "sg_ouss_id" / "group_ouss_id" / "member_ouss_2012-12-05_id"
    cycle0.mkdir(parents=True)
    (cycle0 / "README").write_text("x")
    c0 = write_tar(tmp_path / "c0.tar", [(str(p.relative_to(tmp_path / "c0")), p) for p in (tmp_path / "c0").rglob("*")])
    assert sg_from_header(c0.read_bytes()[:10240]) is None      # Cycle 0 trees name no science goal uid


# -- output formats ----------------------------------------------------------------------------------------
def test_formats(real_answer):
    rows = obscore_rows("2017.1.01185.S", {MOUS: REAL_EBS[:2]}, "uid://A001/X12a3/Xe8")
    view = merge(rows, {MOUS: MousFiles(real_answer.links, "uid://A001/X12a3/Xe7")}, "https://almascience.org")
    text = formatted(view, View.project, Format.table)
    assert "2017.1.01185.S  cycle 5  Public (released 2019-04-27)" in text
    assert "SG uid://A001/X12a3/Xe7" in text and "GOUS uid://A001/X12a3/Xe8" in text
    assert "uid://A001/X12a3/Xe9  12m    pass  4    556.3 MB  135.5 MB   10.0 GB" in text
    assert text.rstrip().endswith("4 rows -> 1 MOUS, 4 EBs; 7 files, 0 duplicates dropped")
    assert "uid://A002/Xd29c1f/X5cf" in formatted(view, View.raw, Format.table)
    assert ProjectView.from_json(formatted(view, View.project, Format.json)) == view
    (line,) = list(csv.DictReader(io.StringIO(formatted(view, View.mous, Format.csv))))
    assert line["mous"] == MOUS and int(line["raw_bytes"]) == 9984396288 and line["sg"] == "uid://A001/X12a3/Xe7"
    ecsv = Table.read(formatted(view, View.raw, Format.ecsv), format="ascii.ecsv")
    assert list(ecsv["eb"]) == REAL_EBS
    vot = parse_single_table(io.BytesIO(formatted(view, View.mous, Format.votable).encode())).to_table()
    assert vot["products_bytes"][0] == 556278784 + 3523
    assert json.loads(view.to_json())["schema"] == "almadeliver.projectview/1"
    assert len(mous_table(merge(rows[:0], {}, "h"))) == 0
