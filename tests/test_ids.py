from pathlib import Path

import pytest
from astropy.io.votable import parse_single_table

from almadeliver.errors import IdentifierError
from almadeliver.ids import DeliveryFileName, ProjectCode, TarballKind, Uid, products_name, raw_name


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
