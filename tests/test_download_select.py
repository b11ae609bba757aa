"""download --files / --cutout: single files from inside the tarballs, and SODA cutouts (issue 21).

Against the local archive serving the simulated Cycle 10 pipeline project (``pipeline_modern``, shared
with the sim, restore and image tests): its nested DataLink answers are checked against the form of
ALMA's (alma-datalink-recurse-this.xml), the files fetched against the untarred tarballs byte for byte,
and the server's counts prove the tarballs themselves were never fetched.
"""
from __future__ import annotations

import filecmp
import io
import warnings

import numpy as np
import pytest
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import parse as parse_votable
from astropy.nddata import Cutout2D
from astropy.wcs import WCS, FITSFixedWarning

from almadeliver.archive.client import ArchiveClient
from almadeliver.archive.datalink import fetch_datalink, parse_datalink
from almadeliver.archive.tap import Selection
from almadeliver.cli import main
from almadeliver.delivery.validate import validate
from almadeliver.sim.archive import Faults, LocalArchive
from almadeliver.sim.catalogue import Catalogue
from almadeliver.transfer.download import TransferConfig
from almadeliver.transfer.select import make_cutout
from almadeliver.workflow import FetchOptions, fetch_selected, open_archive, plan_selected
from tiny_archive import tiny_root  # noqa: F401  (a session fixture: the tiny archive)

PROJECT = "2023.1.00077.S"
TARGET = "G008.67"
C = 299_792_458.0


@pytest.fixture(scope="module")
def served(pipeline_modern):
    with LocalArchive(pipeline_modern.parent) as archive:
        yield archive


@pytest.fixture(scope="module")
def untarred(pipeline_modern, unpack, tmp_path_factory):
    """The project's tarballs untarred the ordinary way: what the single files must equal."""
    return unpack(pipeline_modern, tmp_path_factory.mktemp("whole")).parent


@pytest.fixture(scope="module")
def catalogue(pipeline_modern):
    return Catalogue.load(pipeline_modern)


def _plan_file(served, tmp_path):
    """A project view written by `query --format json` (the query reads the science goal from the
    products tarball's first block: the download's counts start after it)."""
    plan = tmp_path / "plan.json"
    assert main(["query", PROJECT, "--archive", served.url, "--format", "json", "-o", str(plan)]) == 0
    served.stats.reset()
    return plan


def _tarballs(catalogue):
    return [f for f in catalogue.files if f.name.endswith(".tar")]


def test_the_nested_datalink_has_the_form_of_almas(served, catalogue, real):
    real_xml = (real / "archive" / "alma-datalink-recurse-this.xml").read_bytes()
    real_fields = [(f.name, f.datatype) for f in parse_votable(io.BytesIO(real_xml)).get_first_table().fields]
    client = ArchiveClient(served.url)
    for tar in _tarballs(catalogue):
        if tar.semantics == "#progenitor":
            continue
        text = requests.get(f"{served.url}/datalink/sync", params={"ID": tar.name}, timeout=30).content
        fields = [(f.name, f.datatype) for f in parse_votable(io.BytesIO(text)).get_first_table().fields]
        assert fields == real_fields
        answer = parse_datalink(text, tar.name)
        assert sorted(link.size for link in answer.links) == sorted(m.size for m in tar.members)
        fits_members = [m.path.rsplit("/", 1)[-1] for m in tar.members
                        if m.path.endswith(".fits") and "/product/" in m.path]
        # every FITS product (and nothing else) has a #cutout row with its own SODA.sync service
        assert sorted(answer.cutouts) == sorted(fits_members)
        assert all(url.startswith(f"{served.url}/soda/sync?ID=") for url in answer.cutouts.values())
        assert text.count(b'ID="SODA.sync"') == len(fits_members)
        assert fetch_datalink(client, tar.name).links == answer.links
    assert any(tar.semantics == "#this" and any(m.path.endswith(".pbcor.fits") for m in tar.members)
               for tar in _tarballs(catalogue))


def test_files_fetches_only_the_matching_files_into_the_tree(served, catalogue, untarred, tmp_path, capsys):
    plan = _plan_file(served, tmp_path)
    dest = tmp_path / "dest"
    assert main(["download", str(plan), "--archive", served.url, "--dest", str(dest),
                 "--files", "*pbcor.fits"]) == 0
    out = capsys.readouterr().out
    # the server sent the member files and not one byte of any tarball
    for tar in _tarballs(catalogue):
        assert served.stats[tar.name].gets == 0 and served.stats[tar.name].bytes_sent == 0, tar.name
    pbcor = sorted(m.path for tar in _tarballs(catalogue) for m in tar.members if m.path.endswith("pbcor.fits"))
    assert len(pbcor) == 4
    on_disk = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and ".almadeliver" not in p.parts)
    assert on_disk == pbcor                       # where untarring puts them, and nothing else
    for rel in pbcor:
        assert filecmp.cmp(dest / rel, untarred / rel, shallow=False), rel
    assert served.stats.bytes_sent == sum((dest / rel).stat().st_size for rel in pbcor)
    whole = sum(t.size for t in _tarballs(catalogue) if t.semantics != "#progenitor")
    assert "selection: 4 files, " in out and "whole tarballs" in out and "saved" in out
    assert str(whole) not in out                       # sizes are shown human-readable

    # validate: what was not asked is information, not an error; what was asked and is gone is an error
    report = validate(dest / PROJECT)
    assert report.ok(), [f for f in report.findings if f.severity.value == "error"]
    checks = {f.check for f in report.findings}
    assert "partial.not-asked" in checks and "partial.summary" in checks
    assert any("script/ is missing" in f.message for f in report.findings if f.check == "partial.not-asked")
    (dest / pbcor[0]).unlink()
    report = validate(dest / PROJECT)
    missing = [f for f in report.findings if f.check == "partial.missing"]
    assert [f.severity.value for f in missing] == ["error"] and pbcor[0].endswith(missing[0].path.split("/")[-1])
    assert main(["validate", str(dest / PROJECT)]) == 1

    # a rerun fetches only the file that went missing
    served.stats.reset()
    assert main(["download", str(plan), "--archive", served.url, "--dest", str(dest), "--files", "*pbcor.fits"]) == 0
    assert served.stats.bytes_sent == (dest / pbcor[0]).stat().st_size
    assert filecmp.cmp(dest / pbcor[0], untarred / pbcor[0], shallow=False)


def test_files_takes_several_patterns_and_says_when_nothing_matches(served, catalogue, untarred, tmp_path, capsys):
    plan = _plan_file(served, tmp_path)
    dest = tmp_path / "dest"
    assert main(["download", str(plan), "--archive", served.url, "--dest", str(dest),
                 "--files", "*.cont.dat", "--files", "*scriptForPI.py"]) == 0
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and ".almadeliver" not in p.parts)
    assert [g.rsplit("/", 2)[-2:] for g in got] == [["calibration", "member.uid___A001_Xf0df_X428.cont.dat"],
                                                    ["script", "member.uid___A001_Xf0df_X428.scriptForPI.py"]]
    assert all(filecmp.cmp(dest / g, untarred / g, shallow=False) for g in got)
    capsys.readouterr()
    assert main(["download", str(plan), "--archive", served.url, "--dest", str(dest), "--files", "*.nothing"]) == 2
    assert "match *.nothing" in capsys.readouterr().err


def _local_cutout(path, ra, dec, radius_deg, band_m):
    """The cutout made here with astropy from the whole cube: Cutout2D's box, the channels in the band."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
            wcs = WCS(header)
    box = Cutout2D(data[0, 0], SkyCoord(ra, dec, unit="deg"), 2 * radius_deg * u.deg, wcs=wcs.celestial, mode="trim")
    freq = wcs.spectral.pixel_to_world(np.arange(data.shape[1])).to_value(u.Hz)
    chans = np.flatnonzero((freq >= C / band_m[1]) & (freq <= C / band_m[0]))
    cube = data[:, chans.min():chans.max() + 1][:, :, box.slices_original[0], box.slices_original[1]]
    return cube, box.wcs, wcs.spectral[chans.min():], header


def test_a_cutout_equals_the_one_astropy_makes_from_the_whole_cube(served, untarred, tmp_path, capsys):
    plan = _plan_file(served, tmp_path)
    dest = tmp_path / "dest"
    cube_name = "*spw0.cube.I.pbcor.fits"
    whole = next(untarred.rglob(cube_name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        spectral = WCS(fits.getheader(whole)).spectral
    freq = spectral.pixel_to_world(np.arange(28)).to_value(u.GHz)
    lo, hi = freq[5], freq[14]                                  # channels 5..14 of 28
    row = next(r for r in Catalogue.load(next(served.root.rglob("catalogue.json")).parent).obscore
               if r["target_name"] == TARGET)
    ra, dec = row["s_ra"], row["s_dec"]
    args = ["download", str(plan), "--archive", served.url, "--dest", str(dest), "--files", cube_name,
            "--cutout", "--target", TARGET, "--radius", "3arcsec", "--freq", f"{lo - 1e-4}..{hi + 1e-4}GHz"]
    assert main(args) == 0
    assert "selection: 1 cutouts" in capsys.readouterr().out
    got = list(dest.rglob("*.cutout.fits"))
    assert [g.name for g in got] == [whole.name.replace(".fits", ".cutout.fits")]
    assert got[0].parent.relative_to(dest) == whole.parent.relative_to(untarred)   # beside the product
    assert not list(dest.rglob("*.pbcor.fits"))                                   # the cube itself was not fetched
    cut = make_cutout(str(ra), str(dec), "3arcsec", freq=f"{lo - 1e-4}..{hi + 1e-4}GHz")
    cube, celestial, _spec, header = _local_cutout(whole, ra, dec, cut.radius_deg, cut.band_m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(got[0]) as hdul:
            mine, h = hdul[0].data, hdul[0].header
            wcs = WCS(h)
    assert mine.shape == cube.shape and mine.shape[1] == 10 and mine.shape[2] < 64
    assert np.array_equal(mine, cube, equal_nan=True)                              # the same pixels
    assert np.allclose(wcs.celestial.wcs.crpix, celestial.wcs.crpix)
    assert np.allclose(wcs.celestial.wcs.crval, celestial.wcs.crval)
    assert np.allclose(wcs.spectral.pixel_to_world(0).to_value(u.GHz), freq[5])    # the first channel kept
    for key in ("BMAJ", "BMIN", "BPA", "BUNIT", "CDELT1", "CDELT2", "CDELT3", "RESTFRQ"):
        assert h[key] == header[key], key                                          # the beam and the grid
    # the request is in the header (and the selection record)
    assert h["SODACIRC"] == cut.params()["CIRCLE"] and h["SODABAND"] == cut.params()["BAND"]
    assert h["SODAID"] == whole.name
    assert (dest / ".almadeliver" / "selection.json").read_text().count("CIRCLE") == 1
    # resumable: a rerun with the same request fetches nothing; the SODA service was used, no tarball
    served.stats.reset()
    assert main(args) == 0
    assert served.stats.bytes_sent == 0


def test_soda_refuses_bad_requests_and_has_the_files_faults(served, tmp_path):
    member = "member.uid___A001_Xf0df_X428.G008.67_sci.spw0.cube.I.pbcor.fits"
    soda = f"{served.url}/soda/sync"
    assert requests.get(soda, params={"ID": member, "CIRCLE": "1 2"}, timeout=30).status_code == 400
    far = requests.get(soda, params={"ID": member, "CIRCLE": "10 10 0.001"}, timeout=30)
    assert far.status_code == 400 and "does not overlap" in far.text
    assert requests.get(soda, params={"ID": member, "BAND": "1 2"}, timeout=30).status_code == 400
    assert requests.get(soda, params={"ID": "nothing.fits", "BAND": "0.001 0.002"}, timeout=30).status_code == 404
    band = f"{C / 98.0e9} {C / 97.95e9}"
    served.faults.fail_503 = 1
    try:
        first = requests.get(soda, params={"ID": member, "BAND": band}, timeout=30)
        assert first.status_code == 503
        whole = requests.get(soda, params={"ID": member, "BAND": band}, timeout=30)
        part = requests.get(soda, params={"ID": member, "BAND": band}, headers={"Range": "bytes=100-"}, timeout=30)
    finally:
        served.faults = Faults()
    assert whole.status_code == 200 and part.status_code == 206 and part.content == whole.content[100:]
    with fits.open(io.BytesIO(whole.content)) as hdul:
        assert hdul[0].data.shape[1] < 28


def test_cutout_words_without_cutout_are_a_usage_error(served, tmp_path, capsys):
    assert main(["download", PROJECT, "--archive", served.url, "--dest", str(tmp_path), "--radius", "3arcsec"]) == 2
    assert "add --cutout" in capsys.readouterr().err
    assert main(["download", PROJECT, "--archive", served.url, "--dest", str(tmp_path), "--cutout"]) == 2
    assert main(["download", PROJECT, "--archive", served.url, "--dest", str(tmp_path), "--cutout",
                 "--line", "CO(1-0)"]) == 2
    assert "--line-width" in capsys.readouterr().err


def test_the_python_api_takes_the_same_selection(served, catalogue, untarred, tmp_path):
    options = FetchOptions(archive=served.url, what="products,auxiliary", files=("*.cont.dat",),
)
    client = open_archive(options)
    selected = plan_selected(Selection(projects=[PROJECT]), client, options)
    assert [f.name.rsplit("/", 1)[-1] for f in selected.plan.files] == ["member.uid___A001_Xf0df_X428.cont.dat"]
    assert selected.tarball_bytes == sum(t.size for t in _tarballs(catalogue) if t.semantics != "#progenitor")
    assert selected.selected_bytes == 350 and selected.tarballs_left == []   # --what left the raw tarball out
    result = fetch_selected(selected, tmp_path, TransferConfig(progress=False), client.session)
    assert result.ok and filecmp.cmp(tmp_path / selected.plan.files[0].name,
                                     untarred / selected.plan.files[0].name, shallow=False)


def test_run_fetches_one_mous_with_the_same_selection(served, untarred, tmp_path):
    """`almadeliver run`'s fetch step (workflow.fetch_mous) takes --files too; validate knows the tree is partial."""
    from almadeliver.ids import ProjectCode, Uid
    from almadeliver.workflow import fetch_mous

    mous = Uid.parse("uid://A001/Xf0df/X428")
    options = FetchOptions(archive=served.url, what="products,auxiliary,raw", files=("*.tt0.pbcor.fits",))
    said = []
    fetched = fetch_mous(ProjectCode.parse(PROJECT), mous, tmp_path / "trees", tmp_path / "staging", options,
                         say=said.append)
    files = [p for p in fetched.member.rglob("*") if p.is_file()]
    assert fetched.files == 1 and [p.name for p in files] == [next(untarred.rglob("*.tt0.pbcor.fits")).name]
    assert filecmp.cmp(files[0], next(untarred.rglob("*.tt0.pbcor.fits")), shallow=False)
    assert not (tmp_path / "staging").exists()
    report = validate(fetched.member)
    assert report.ok() and any(f.check == "partial.summary" and "1 of 1 asked" in f.message for f in report.findings)


def test_query_shows_the_bytes_a_selection_fetches_against_the_whole_tarballs(served, catalogue, capsys):
    whole = sum(t.size for t in _tarballs(catalogue) if t.semantics != "#progenitor")
    pbcor = sum(m.size for t in _tarballs(catalogue) for m in t.members if m.path.endswith("pbcor.fits"))
    from almadeliver.units import human_size

    assert main(["query", PROJECT, "--archive", served.url, "--files", "*pbcor.fits"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (f"selection: 4 files, {human_size(pbcor)} instead of {human_size(whole)} in 2 whole tarballs, "
                    f"{100 * (1 - pbcor / whole):.1f} % saved")
    row = next(r for r in catalogue.obscore if r["target_name"] == TARGET)
    served.stats.reset()
    assert main(["query", PROJECT, "--archive", served.url, "--files", "*spw0.cube.I.pbcor.fits", "--cutout",
                 "--ra", str(row["s_ra"]), "--dec", str(row["s_dec"]), "--radius", "3arcsec"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    cut = served.stats[next(n for n in served.stats.files if n.endswith(".cutout.fits"))]
    assert cut.heads == 1 and cut.gets == 0                   # the SODA service told the size; nothing was fetched
    assert line.startswith("selection: 1 cutouts, ") and "% saved" in line


def test_a_cutout_survives_dropped_connections_and_skips_the_images_it_misses(served, untarred, tmp_path, capsys):
    """Resumable like the rest: the SODA answer is fetched by ranges across drops; a band that only one
    spw covers leaves the other products out (the service refuses them) instead of failing the plan."""
    plan = _plan_file(served, tmp_path)
    dest = tmp_path / "dest"
    served.faults.drop_after = 8000
    try:
        assert main(["download", str(plan), "--archive", served.url, "--dest", str(dest), "--cutout",
                     "--freq", "97.965..97.985GHz"]) == 0
    finally:
        served.faults = Faults()
    out = capsys.readouterr().out
    assert "selection: 1 cutouts" in out and "3 products the cutout misses" in out
    got = list(dest.rglob("*.cutout.fits"))
    assert [g.name for g in got] == [next(untarred.rglob("*spw0.cube.I.pbcor.fits")).name.replace(".fits", ".cutout.fits")]
    name = next(n for n in served.stats.files if n.endswith(".cutout.fits"))
    assert served.stats[name].gets > 1                         # cut short by the fault, resumed with Range
    with fits.open(got[0]) as hdul:
        # channels 2..12 of spw0 (97.9614 GHz + n x 1.953 MHz) lie in 97.965..97.985 GHz
        assert hdul[0].data.shape[:2] == (1, 11) and hdul[0].header["SODABAND"]


def test_a_shared_name_served_under_its_tar_path_lands_at_that_path(tiny_root, tmp_path):
    """The tiny archive's two MOUS both have a README in their products tarball: the local archive serves
    each under its dotted tar path; --files puts each back where untarring puts it."""
    import tarfile

    from tiny_archive import PUBLIC

    with LocalArchive(tiny_root) as archive:
        assert main(["download", PUBLIC, "--archive", archive.url, "--dest", str(tmp_path / "d"),
                     "--files", "*README", "--what", "products"]) == 0
    got = sorted(str(p.relative_to(tmp_path / "d")) for p in (tmp_path / "d").rglob("README"))
    expected = []
    for tar in sorted((tiny_root / PUBLIC / "files").glob("*_001_of_001.tar")):
        with tarfile.open(tar) as t:
            for m in t:
                if m.name.endswith("/README"):
                    expected.append(m.name)
                    assert (tmp_path / "d" / m.name).read_bytes() == t.extractfile(m).read()
    assert got == sorted(expected) and len(got) == 2


def test_a_proprietary_tarballs_files_need_a_login(tiny_root, tmp_path, capsys, monkeypatch):
    from tiny_archive import PROP_MOUS, PROPRIETARY

    with LocalArchive(tiny_root, users={"pi_user": "s3cret"}) as archive:
        args = ["download", PROP_MOUS, "--archive", archive.url, "--dest", str(tmp_path), "--files", "*README"]
        assert main(args) == 1
        assert "is proprietary" in capsys.readouterr().err and not list(tmp_path.rglob("README"))
        monkeypatch.setenv("ALMA_PASSWORD", "s3cret")
        assert main([*args, "--user", "pi_user"]) == 0
    import tarfile

    [readme] = tmp_path.rglob("README")
    [tar] = (tiny_root / PROPRIETARY / "files").glob("*.tar")
    with tarfile.open(tar) as whole:
        member = next(m for m in whole if m.name.endswith("/README"))
        assert str(readme.relative_to(tmp_path)) == member.name          # where untarring puts it
        assert readme.read_bytes() == whole.extractfile(member).read()
