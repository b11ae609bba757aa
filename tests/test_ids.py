from pathlib import Path

import pytest
from astropy.io.votable import parse_single_table

from almadeliver.errors import IdentifierError
from almadeliver.ids import (DeliveryFileName, ProjectCode, TarballKind, Uid, eb_uids_in, external_name, is_project_code,
                             ous_uids_in, products_name, raw_name)


def test_uid_round_trips_both_forms():
    u = Uid.parse("uid://A001/X13e/X1fe")
    assert u.disk == "uid___A001_X13e_X1fe"
    assert Uid.parse(u.disk) == u
    assert u.tail == "X1fe" and u.is_ous
    assert not Uid.parse("uid___A002_Xd28a9e_X71b8").is_ous


@pytest.mark.parametrize("bad", ["uid://A001/X13e", "uid:/A001/X1/X2", "A001_X1_X2", ""])
def test_bad_uid_is_refused(bad):
    with pytest.raises(IdentifierError, match="not an ALMA uid"):
        Uid.parse(bad)


def test_project_code():
    assert ProjectCode.parse(" 2011.0.00340.S ").cycle == 0
    with pytest.raises(IdentifierError):
        ProjectCode.parse("2011.0.340.S")


def test_every_real_datalink_file_name_parses(real: Path):
    table = parse_single_table(real / "archive" / "alma-datalink.xml").to_table()
    names = [u.rsplit("/", 1)[1] for u in table["access_url"] if u]
    kinds = [DeliveryFileName.parse(n).kind for n in names]
    assert kinds.count(TarballKind.RAW) == 4
    assert {TarballKind.README, TarballKind.PRODUCTS, TarballKind.AUXILIARY} <= set(kinds)
    prod = DeliveryFileName.parse("2017.1.01185.S_uid___A001_X12a3_Xe9_001_of_001.tar")
    assert prod.uid == Uid.parse("uid://A001/X12a3/Xe9") and (prod.part, prod.parts) == (1, 1)
    assert products_name(prod.project, prod.uid, 1, 1) == prod.name


def test_real_cycle0_names_parse(real: Path):
    for line in (real / "archive" / "cycle0_delivery_asdm_mapping.txt").read_text().splitlines()[:50]:
        stem, eb = line.split("\t")[:2]
        parsed = DeliveryFileName.parse(f"{stem}_001_of_017.tar")
        assert parsed.kind is TarballKind.CYCLE0 and parsed.parts == 17
        assert raw_name(parsed.project, Uid.parse(eb)).endswith(".asdm.sdm.tar")


def test_unknown_file_name_says_what_is_expected():
    with pytest.raises(IdentifierError, match="expected"):
        DeliveryFileName.parse("random.tar")


# -- the one grammar: every form ALMA has used (ALMA-FACTS.md section 1) ----------------------------
@pytest.mark.parametrize("code, cycle, kind", [
    ("2011.0.00340.S", 0, "S"),          # Cycle 0
    ("2011.0.00016.SV", 0, "SV"),        # science verification
    ("2013.1.00001.CSV", 2, "CSV"),      # commissioning science verification
    ("2017.1.01355.L", 5, "L"),          # large programme
    ("2018.A.00062.S", 6, "S"),          # Director's Discretionary Time
    ("2019.1.00001.T", 7, "T"),
    ("2016.1.00010.V", 4, "V"),
    ("2021.1.00005.P", 8, "P"),
    ("2022.1.00007.E", 9, "E"),
])
def test_every_project_code_form(code, cycle, kind):
    p = ProjectCode.parse(code)
    assert (p.cycle, p.type, p.is_ddt) == (cycle, kind, ".A." in code)
    assert is_project_code(code)


@pytest.mark.parametrize("bad", ["2018.B.00062.S", "2017.1.0123.S", "2017.1.00123.s", "2017.1.00123.ABCD",
                                 "2017.1.00123", "17.1.00123.S", ""])
def test_malformed_project_codes_are_refused(bad):
    with pytest.raises(IdentifierError, match="not an ALMA project code"):
        ProjectCode.parse(bad)


def test_cycle1_ous_uids_start_a002_and_are_told_by_where_they_are_written():
    text = ("2012.1.00123.S/science_goal.uid___A002_X5784d5_X2a2/group.uid___A002_X5784d5_X2a3/"
            "member.uid___A002_X5784d5_X2a4/raw/uid___A002_X6218fb_X1c6.asdm.sdm uid://A001/X13e/X1fe")
    assert Uid.parse("uid://A002/X5784d5/X2a4").disk == "uid___A002_X5784d5_X2a4"
    assert eb_uids_in(text) == [Uid.parse("uid://A002/X6218fb/X1c6")]
    assert Uid.parse("uid___A002_X5784d5_X2a4") in ous_uids_in(text)


@pytest.mark.parametrize("name, kind, project", [
    ("2018.A.00062.S_uid___A001_X1296_X107_001_of_001.tar", TarballKind.PRODUCTS, "2018.A.00062.S"),
    ("2011.0.00016.SV_uid___A002_X1d54a1_X5.asdm.sdm.tar", TarballKind.RAW, "2011.0.00016.SV"),
    ("2012.1.00123.S_uid___A002_X5784d5_X2a4_auxiliary.tar", TarballKind.AUXILIARY, "2012.1.00123.S"),
    ("2011.0.00016.SV_2012-12-05_001_of_002.tar", TarballKind.CYCLE0, "2011.0.00016.SV"),
    ("2016.1.00437.S_uid___A001_X87c_X171_external_ari_l_001_of_001.tar", TarballKind.EXTERNAL, "2016.1.00437.S"),
    ("2018.A.00062.S_uid___A001_X1296_X107_external_ari_l_002_of_003.tar", TarballKind.EXTERNAL, "2018.A.00062.S"),
])
def test_file_names_of_every_code_form(name, kind, project):
    parsed = DeliveryFileName.parse(name)
    assert (parsed.kind, str(parsed.project)) == (kind, project)


# -- through the CLI: a malformed identifier is bad usage (exit 2) in every command -----------------
@pytest.mark.parametrize("args", [
    ["query", "2017.1.123.S", "--archive", "http://127.0.0.1:9"],
    ["query", "uid://A001/X13e", "--archive", "http://127.0.0.1:9"],
    ["download", "2017.1.0012.S", "--archive", "http://127.0.0.1:9", "--dest", "."],
    ["prepare", "uid___A001_X13e", "--eb", "uid___A002_X1_X2"],
    ["prepare", "uid___A001_X13e_X1fe", "--eb", "A002_X1_X2"],
    ["package", ".", "--project", "2018.Z.00062.S", "--sg", "uid://A001/X1/X1", "--group", "uid://A001/X1/X2"],
    ["run", "--projects", "2018.A.0062.S", "--archive", "http://127.0.0.1:9", "--dest", "."],
])
def test_malformed_identifier_exits_2_everywhere(args, tmp_path, monkeypatch, capsys):
    from almadeliver.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: '") and ("not an ALMA project code" in err or "not an ALMA uid" in err)


def test_external_product_names_round_trip():
    mous = Uid.parse("uid://A001/X87c/X171")
    name = external_name("2016.1.00437.S", mous, "ari_l", 2, 3)
    parsed = DeliveryFileName.parse(name)
    assert (parsed.kind, parsed.uid, parsed.label, parsed.part, parsed.parts) == (TarballKind.EXTERNAL, mous, "ari_l", 2, 3)
