"""Unmodified astroquery and pyvo against the local archive."""
from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import pytest
import pyvo
from astropy.coordinates import SkyCoord

from almadeliver.ids import Uid, auxiliary_name, products_name, readme_name
from tiny_archive import (EBS_12M, MOUS_7M, MOUS_12M, ORION, PROP_MOUS, PROPRIETARY, PUBLIC, SGRA, archive,  # noqa: F401
                          tiny_root)


@pytest.fixture
def alma(archive, tmp_path):
    """astroquery's Alma, pointed at the local archive the way a user would (archive_url)."""
    from astroquery.alma import AlmaClass
    client = AlmaClass()
    client.archive_url = archive.url
    client.cache_location = str(tmp_path / "astroquery-cache")
    return client


def test_astroquery_query_by_project_code(alma):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = alma.query(payload={"project_code": PUBLIC})
    assert len(table) == 12
    assert set(table["member_ous_uid"]) == {MOUS_12M, MOUS_7M}
    assert set(table["proposal_id"]) == {PUBLIC}
    assert set(table["data_rights"]) == {"Public"}
    assert table["s_ra"].unit == u.deg


def test_astroquery_query_region(alma):
    table = alma.query_region(SkyCoord(*ORION, unit="deg"), 0.05 * u.deg)
    assert set(table["proposal_id"]) == {PUBLIC} and len(table) == 8
    assert set(table["target_name"]) == {"Orion_KL"}
    # public=True (the default) hides the proprietary project; public=False finds only it
    assert len(alma.query_region(SkyCoord(*SGRA, unit="deg"), 0.05 * u.deg)) == 0
    hidden = alma.query_region(SkyCoord(*SGRA, unit="deg"), 0.05 * u.deg, public=False)
    assert set(hidden["proposal_id"]) == {PROPRIETARY}


def test_astroquery_get_data_info_expands_tarballs(alma, archive):
    info = alma.get_data_info(MOUS_12M, expand_tarfiles=True)
    names = [url.rsplit("/", 1)[1] for url in info["access_url"] if url]
    assert readme_name(Uid.parse(MOUS_12M)) in names
    assert any(n.endswith(".pbcor.fits") for n in names)           # members of the products tarball
    assert any(n.endswith(".casa_commands.log") for n in names)    # members of the auxiliary tarball
    assert not any(sd for sd in info["service_def"] if sd)         # service rows replaced by the members
    assert all(url.startswith(f"{archive.url}/dataPortal/") for url in info["access_url"] if url)
    plain = alma.get_data_info(MOUS_12M)
    assert {url.rsplit("/", 1)[1] for url in plain["access_url"] if url} >= {PRODUCTS, auxiliary_name(PUBLIC, Uid.parse(MOUS_12M))}


PRODUCTS = products_name(PUBLIC, Uid.parse(MOUS_12M), 1, 1)


def test_astroquery_download_files(alma, tiny_root, tmp_path):
    info = alma.get_data_info(MOUS_12M)
    urls = [url for url in info["access_url"] if url]
    saved = alma.download_files(urls, savedir=str(tmp_path), cache=False)
    assert len(saved) == len(urls) == 3 + len(EBS_12M)
    for path in map(Path, saved):
        assert path.read_bytes() == (tiny_root / PUBLIC / "files" / path.name).read_bytes()


def test_astroquery_skips_proprietary_files_without_login(alma, tmp_path):
    info = alma.get_data_info(PROP_MOUS)
    assert not any(info["readable"])
    urls = [url for url in info["access_url"] if url]
    assert alma.download_files(urls, savedir=str(tmp_path), cache=False) == []


def test_pyvo_tap_service(archive):
    tap = pyvo.dal.TAPService(f"{archive.url}/tap")
    result = tap.search("SELECT TOP 5 obs_id, s_region FROM ivoa.obscore "
                        "WHERE CONTAINS(POINT('ICRS', 83.80917, -5.37239), s_region) = 1 ORDER BY obs_id", maxrec=3)
    assert len(result) == 3 and result.query_status == "OVERFLOW"
    assert "ivoa.obscore" in list(tap.tables.keys())
    assert [c.name for c in tap.tables["ivoa.obscore"].columns][:3] == ["obs_publisher_did", "obs_collection", "facility_name"]
    with pytest.raises(pyvo.dal.DALQueryError, match="GROUP BY"):
        tap.search("SELECT target_name, COUNT(*) FROM ivoa.obscore GROUP BY target_name")


def test_pyvo_datalink_services(archive):
    links = pyvo.dal.adhoc.DatalinkService(f"{archive.url}/datalink/sync").run_sync(MOUS_12M)
    services = {s.ID: s for s in links.iter_adhocservices()}
    assert f"DataLink.{PRODUCTS}" in services
    nested = [p.value for p in services[f"DataLink.{PRODUCTS}"].params if p.name == "accessURL"][0]
    assert nested == f"{archive.url}/datalink/sync?ID={PRODUCTS}"
    assert {r.semantics for r in links} == {"#documentation", "#this", "#auxiliary", "#progenitor"}
