"""Small catalogues with real tarballs for the local-archive tests (until `simulate` serves them).

Three projects, written the way ``almadeliver simulate`` lays them out (catalogue.json + files/):
- 2017.1.01185.S (public, Cycle 5): two MOUS in one GOUS; ObsCore rows per MOUS x source x spw,
  one EB per row; README, products tarball, auxiliary tarball, raw ASDM tarballs.
- 2011.0.00340.S (public, Cycle 0): two MOUS that both list the same two project tarballs.
- 2019.1.00099.S (proprietary): one MOUS.
"""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from almadeliver.archive.obscore import COLUMN_NAMES
from almadeliver.ids import Uid, auxiliary_name, cycle0_name, products_name, raw_name, readme_name
from almadeliver.packaging.tarballs import write_tar
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile, TarMember
from almadeliver.sim.archive import LocalArchive

PUBLIC = "2017.1.01185.S"
CYCLE0 = "2011.0.00340.S"
PROPRIETARY = "2019.1.00099.S"

MOUS_12M = "uid://A001/X12a3/Xe9"
MOUS_7M = "uid://A001/X12a3/Xeb"
GOUS = "uid://A001/X12a3/Xe8"
SG = "uid://A001/X12a3/Xe7"
EBS_12M = ["uid://A002/Xd28a9e/X71b8", "uid://A002/Xd28a9e/X7b4d"]
EBS_7M = ["uid://A002/Xd29c1f/X5cf"]
C0_MOUS = ["uid://A001/X74/X29", "uid://A001/X74/X2b"]
PROP_MOUS = "uid://A001/X1465/X2f66"

ORION = (83.80917, -5.37239)
OMC2 = (83.8625, -5.166)
NGC253 = (11.888, -25.288)
SGRA = (266.4168, -29.0078)
ASDM_TABLES = ("Main", "ExecBlock", "Scan", "Subscan", "ConfigDescription", "DataDescription", "SpectralWindow",
               "Antenna", "Field", "Polarization", "Processor", "Station", "State")


def _content_type(name: str) -> str:
    if name.endswith((".fits", ".fits.gz", ".tgz", ".png")):
        return "application/octet-stream"
    return "text/plain"


def _tarball(out: Path, tree: dict[str, bytes], staging: Path) -> list[TarMember]:
    """Write a real tarball holding ``tree`` (arcname -> bytes) and list its regular members."""
    entries = []
    for arc, data in tree.items():
        src = staging / arc
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        entries.append((arc, src))
    write_tar(out, entries)
    with tarfile.open(out) as tar:
        return [TarMember(m.name, m.size, _content_type(m.name)) for m in tar if m.isreg()]


def _file(files: Path, name: str, semantics: str, ids: list[str], members=None) -> CatalogueFile:
    ctype = "text/plain" if name.endswith(".txt") else "application/x-tar"
    return CatalogueFile(name, semantics, ctype, (files / name).stat().st_size, ids, members=members or [])


def _row(project: str, title: str, pi: str, mous: str, source: str, pos: tuple[float, float], spw: int,
         eb: str, region: str, band: str, freq: float, rights: str, release: str, **extra) -> dict:
    row = dict.fromkeys(COLUMN_NAMES)
    row.update(
        obs_publisher_did=f"ADS/JAO.ALMA#{project}", obs_collection="ALMA", facility_name="JAO",
        instrument_name="ALMA", obs_id=f"{mous}.source.{source}.spw.{spw}", dataproduct_type="cube",
        calib_level=2, target_name=source, s_ra=pos[0], s_dec=pos[1], s_fov=0.0164, s_region=region,
        s_resolution=0.3, t_min=58480.431262, t_max=58480.47, t_exptime=3024.0, t_resolution=6.048,
        em_min=0.00298, em_max=0.00299, em_res_power=130000.0, pol_states="/XX/YY/", o_ucd="phot.flux.density;phys.polarization",
        access_url=f"http://almascience.org/aq?member_ous_id={mous}", access_format="text/html",
        proposal_id=project, data_rights=rights, gal_longitude=209.0, gal_latitude=-19.4, band_list=band,
        em_resolution=1.2e-8, bandwidth=1875000000.0, antenna_arrays="A001:DA44 A002:DA51 A003:DV09",
        is_mosaic="F", obs_release_date=release, spatial_resolution=0.3, frequency_support=f"[{freq - 1:.2f}..{freq + 1:.2f}GHz,976.56kHz,1.5mJy/beam@10km/s,50mJy/beam@native, XX YY]",
        frequency=freq, velocity_resolution=2500.0, obs_creator_name=pi, pub_title=None, first_author=None,
        authors=None, pub_abstract=None, publication_year=None, proposal_abstract="Test proposal abstract.",
        schedblock_name=f"{source}_a_0{band}_TM1", proposal_authors="Someone, A.", sensitivity_10kms=1.5,
        cont_sensitivity_bandwidth=0.05, pwv=1.2, group_ous_uid=GOUS, member_ous_uid=mous, asdm_uid=eb,
        obs_title=title, type="S", scan_intent="TARGET", science_observation="T", spatial_scale_max=3.2,
        qa2_passed="T", bib_reference=None, science_keyword="Outflows, jets and ionized winds",
        scientific_category="ISM and star formation", spectral_resolution=976562.5,
        lastModified="2020-03-03T03:20:58.000", pi_name=pi,
    )
    row.update(extra)
    return row


def _circle(pos, r=0.0082) -> str:
    return f"Circle ICRS {pos[0]:.6f} {pos[1]:.6f} {r}"


def _square(pos, half=0.01) -> str:
    ra, dec = pos
    return f"Polygon ICRS {ra - half:.6f} {dec - half:.6f} {ra + half:.6f} {dec - half:.6f} {ra + half:.6f} {dec + half:.6f} {ra - half:.6f} {dec + half:.6f}"


def _fits(beam: bool, gz: bool = False) -> bytes:
    """A small real FITS image (a clean beam in the header when ``beam``), gzipped when ``gz``."""
    import gzip
    import io

    import numpy as np
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.zeros((1, 1, 4, 4), dtype=np.float32))
    if beam:
        hdu.header.update(BMAJ=1.6e-4, BMIN=1.4e-4, BPA=-80.0)
    out = io.BytesIO()
    hdu.writeto(out)
    return gzip.compress(out.getvalue(), mtime=0) if gz else out.getvalue()


def _member_tree(project: str, mous: str, kind: str, ebs: list[str] = (), auxiliary: bool = True) -> dict[str, bytes]:
    """A pipeline member as the products (or auxiliary) tarball holds it: valid for `validate`."""
    m = Uid.parse(mous).disk
    base = f"{project}/science_goal.{Uid.parse(SG).disk}/group.{Uid.parse(GOUS).disk}/member.{m}"
    if kind == "products":
        disks = [Uid.parse(eb).disk for eb in ebs]
        tree = {f"{base}/product/member.{m}.Orion_KL_sci.spw25.cube.I.pbcor.fits": _fits(beam=True),
                f"{base}/product/member.{m}.Orion_KL_sci.spw25.cube.I.pb.fits.gz": _fits(beam=False, gz=True),
                f"{base}/README": (f"Project code: {project}\nPI name: Smith, Jane\n"
                                   "CASA version used for reduction: 6.5.4\n").encode(),
                f"{base}/script/member.{m}.scriptForPI.py": b"print('scriptForPI')\n",
                f"{base}/script/{m}.hifa_calimage.casa_piperestorescript.py":
                    f"hifa_restoredata(vis={disks}, session={['session_1'] * len(disks)})\n".encode(),
                f"{base}/calibration/{m}.session_1.caltables.tgz": bytes(400)}
        for eb in disks:
            tree[f"{base}/calibration/{eb}.ms.calapply.txt"] = (
                f"applycal(vis='{eb}.ms', field='', intent='', spw='', gaintable=['{m}.s1.tsyscal.tbl'])\n").encode()
            tree[f"{base}/calibration/{eb}.ms.flagversions.tgz"] = bytes(300)
        if not auxiliary:            # the weblog and the CASA log; a MOUS with an auxiliary tarball has them there
            tree[f"{base}/qa/{m}.weblog.tgz"] = bytes(1500)
            tree[f"{base}/log/{m}.casa_commands.log"] = b"tclean(vis=['x.ms'])\n"
        return tree
    return {f"{base}/calibration/{m}.hifa_calimage.auxproducts.tgz": bytes(700),
            f"{base}/qa/{m}.weblog.tgz": bytes(1500),
            f"{base}/log/{m}.casa_commands.log": b"tclean(vis=['x.ms'])\n"}


def _raw_tree(project: str, mous: str, eb: str) -> dict[str, bytes]:
    """A raw tarball: the EB's ASDM under member.<MOUS>/raw/, as the archive's raw tarballs unpack."""
    m, e = Uid.parse(mous).disk, Uid.parse(eb).disk
    base = f"{project}/science_goal.{Uid.parse(SG).disk}/group.{Uid.parse(GOUS).disk}/member.{m}/raw/{e}.asdm.sdm"
    tables = "".join(f"<Table> <Name> {t} </Name> <NumberRows> 1 </NumberRows> </Table> " for t in ASDM_TABLES)
    tree = {f"{base}/ASDM.xml": f'<?xml version="1.0"?> <ASDM> {tables}</ASDM>'.encode()}
    for t in ASDM_TABLES:
        tree[f"{base}/{t}.xml"] = f"<{t}Table> <row/> </{t}Table>".encode()
    return tree


def build(root: Path) -> Path:
    """Write the three projects under ``root`` and return ``root``."""
    root = Path(root)
    staging = root / ".staging"

    # 2017.1.01185.S: public, two MOUS
    files = root / PUBLIC / FILES_DIR
    files.mkdir(parents=True)
    cat_files, rows = [], []
    for mous, ebs, sources, spws, shape in ((MOUS_12M, EBS_12M, [("Orion_KL", ORION), ("OMC2", OMC2)], [25, 27, 29, 31], _circle),
                                            (MOUS_7M, EBS_7M, [("Orion_KL", ORION)], [16, 18, 20, 22], _square)):
        uid = Uid.parse(mous)
        (files / readme_name(uid)).write_text(f"README of {mous}\n" * 20)
        cat_files.append(_file(files, readme_name(uid), "#documentation", [mous]))
        name = products_name(PUBLIC, uid, 1, 1)
        members = _tarball(files / name, _member_tree(PUBLIC, mous, "products", ebs, auxiliary=mous == MOUS_12M),
                           staging / name)
        cat_files.append(_file(files, name, "#this", [mous], members))
        if mous == MOUS_12M:
            name = auxiliary_name(PUBLIC, uid)
            members = _tarball(files / name, _member_tree(PUBLIC, mous, "auxiliary"), staging / name)
            cat_files.append(_file(files, name, "#auxiliary", [mous], members))
        for eb in ebs:
            name = raw_name(PUBLIC, Uid.parse(eb))
            _tarball(files / name, _raw_tree(PUBLIC, mous, eb), staging / name)
            cat_files.append(_file(files, name, "#progenitor", [mous]))
        for i, ((source, pos), spw) in enumerate((s, w) for s in sources for w in spws):
            rows.append(_row(PUBLIC, "Outflows in Orion", "Smith, Jane", mous, source, pos, spw, ebs[i % len(ebs)],
                             shape(pos), "6", 230.5 + spw / 10, "Public", "2019-06-01T00:00:00.000"))
    Catalogue(PUBLIC, False, rows, cat_files).save(root / PUBLIC)

    # 2011.0.00340.S: Cycle 0, the same tarballs under both MOUS
    files = root / CYCLE0 / FILES_DIR
    files.mkdir(parents=True)
    cat_files, rows = [], []
    for part in (1, 2):
        name = cycle0_name(CYCLE0, "2012-12-05", part, 2)
        tree = {f"{CYCLE0}/sg_ouss_id/group_ouss_id/member_ouss_2012-12-05_id/calibrated/part{part}.ms.split.cal/table.dat": bytes(2000 * part)}
        members = _tarball(files / name, tree, staging / name)
        cat_files.append(_file(files, name, "#this", list(C0_MOUS), members))
    for mous in C0_MOUS:
        for spw in (0, 1):
            rows.append(_row(CYCLE0, "NGC 253 starburst", "Bolatto, Alberto", mous, "NGC253", NGC253, spw,
                             "uid://A002/X5a9a13/Xe5", _circle(NGC253, 0.007), "3", 100.0 + spw,
                             "Public", "2013-12-05T00:00:00.000", group_ous_uid="uid://A001/X74/X28"))
    Catalogue(CYCLE0, False, rows, cat_files).save(root / CYCLE0)

    # 2019.1.00099.S: proprietary
    files = root / PROPRIETARY / FILES_DIR
    files.mkdir(parents=True)
    uid = Uid.parse(PROP_MOUS)
    (files / readme_name(uid)).write_text("README (proprietary)\n")
    name = products_name(PROPRIETARY, uid, 1, 1)
    members = _tarball(files / name, _member_tree(PROPRIETARY, PROP_MOUS, "products", auxiliary=False),
                       staging / name)
    cat_files = [_file(files, readme_name(uid), "#documentation", [PROP_MOUS]),
                 _file(files, name, "#this", [PROP_MOUS], members)]
    rows = [_row(PROPRIETARY, "The Galactic Centre", "Doe, John", PROP_MOUS, "Sgr_A_star", SGRA, spw,
                 "uid://A002/Xe1f219/X6d0", _circle(SGRA), "7", 345.0, "Proprietary", "2031-01-01T00:00:00.000",
                 group_ous_uid="uid://A001/X1465/X2f65") for spw in (17, 19)]
    Catalogue(PROPRIETARY, True, rows, cat_files).save(root / PROPRIETARY)
    shutil.rmtree(staging)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The three projects, written once per test session."""
    return build(tmp_path_factory.mktemp("tiny-archive"))


@pytest.fixture(scope="module")
def archive(tiny_root):
    """A running local archive with one account (pi:secret); faults stay off."""
    with LocalArchive(tiny_root, users={"pi": "secret"}) as running:
        yield running


@pytest.fixture
def fresh(tiny_root):
    """A running local archive of its own, for tests that set faults."""
    with LocalArchive(tiny_root, users={"pi": "secret"}) as running:
        yield running
