"""Write a project as the local archive serves it (catalogue.json + files/), for tests and benchmarks.

Realistic ObsCore rows (one per MOUS x source x spw, one EB per row) and real, tiny delivery
tarballs written by packaging.tarballs.write_tar, whose first headers name the science goal.
"""
from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

from almadeliver.archive.obscore import OBSCORE_COLUMNS
from almadeliver.ids import Uid, auxiliary_name, cycle0_name, external_name, products_name, raw_name, readme_name
from almadeliver.packaging.tarballs import write_tar
from almadeliver.sim.catalogue import (FILES_DIR, Catalogue, CatalogueFile, circle_region, frequency_support,
                                       polygon_region, union_region)
from almadeliver.sim.deliveries import external_description, external_entries

_EMPTY = {"char": "", "int": 0, "double": 0.0}


def obscore_row(**values) -> dict:
    """A full ObsCore row: every column, the given values over neutral defaults."""
    row = {c.name: _EMPTY[c.datatype] for c in OBSCORE_COLUMNS}
    unknown = set(values) - set(row)
    assert not unknown, f"not ObsCore columns: {unknown}"
    row.update(values)
    return row


def _uid(prefix: str, n: int) -> str:
    return f"uid://{prefix}/X{n:x}"


def write_project(root: Path, project: str, n_mous: int = 2, sources: int = 2, spws: int = 2, ebs_per_mous: int = 1,
                  proprietary: bool = False, cycle0_tarballs: int = 0, payload: int = 64,
                  external: str | None = None) -> Catalogue:
    """DIR/<project>/catalogue.json and files/: n_mous MOUS in one SG/GOUS, tiny real tarballs.

    With ``external`` (a label such as ``ari_l``) each MOUS also has an external product tarball,
    written as the simulator writes it (sim/deliveries.py external_entries).

    With ``cycle0_tarballs`` the project is delivered as Cycle 0 was: that many
    ``<project>_<date>_m_of_n.tar`` listed under every MOUS, once per EB.
    """
    folder = Path(root) / project
    files_dir = folder / FILES_DIR
    files_dir.mkdir(parents=True, exist_ok=True)
    key = f"X{zlib.crc32(project.encode()) & 0xfffff:x}"     # uids differ between projects
    sg, gous = Uid.parse(f"uid://A001/{key}/X2"), Uid.parse(f"uid://A001/{key}/X3")
    rows, files = [], []
    rights = "Proprietary" if proprietary else "Public"
    with tempfile.TemporaryDirectory(prefix="almadeliver-tree-") as tmp:
        _write(project, Path(tmp), files_dir, n_mous, sources, spws, ebs_per_mous, rights, cycle0_tarballs,
               payload, key, sg, gous, rows, files, external)
    catalogue = Catalogue(project, proprietary, rows, files)
    catalogue.save(folder)
    return catalogue


C_M_S = 299792458.0
SPW_OFFSETS_GHZ = (0.0, 1.9, 16.0, 17.9)       # two spws per sideband, 16 GHz apart (band 6)
SPW_RES_KHZ = (976.56, 488.28, 31250.0, 15625.0)
RESOLUTION_ARCSEC = (0.3, 0.8, 1.5)


def mous_spws(i: int, spws: int, frame: str | None = None) -> list[dict]:
    """The spws of MOUS ``i`` in write_project: tunings 1.7 GHz apart over five MOUS, so a line
    lies in spw 0, spw 1 or no spw depending on the MOUS (CO(2-1) at z=0.0125: MOUS 2 and 3)."""
    base = 221.0 + 1.7 * (i % 5)
    return [{"lo_ghz": base + SPW_OFFSETS_GHZ[w % 4] + 20.0 * (w // 4), "hi_ghz": base + SPW_OFFSETS_GHZ[w % 4] + 20.0 * (w // 4) + 1.875,
             "res_khz": SPW_RES_KHZ[w % 4], "sens_10kms": 1.2 + 0.3 * w + 0.1 * (i % 3), "sens_native": 0.0611 + 0.01 * w,
             "frame": frame, "kind": "cont" if SPW_RES_KHZ[w % 4] > 10000 else "line"} for w in range(spws)]


def _region(i: int, ra: float, dec: float) -> tuple[str, float]:
    """MOUS ``i``'s s_region and s_fov: a single pointing, a mosaic polygon, or two mosaics (Union)."""
    if i % 3 == 0:
        return circle_region(ra, dec, 0.0035), 0.007
    if i % 3 == 1:
        return polygon_region(ra, dec, 0.006), 0.012
    return union_region([(ra, dec, 0.005), (ra + 0.02, dec + 0.015, 0.004)]), 0.04


def _write(project, work, files_dir, n_mous, sources, spws, ebs_per_mous, rights, cycle0_tarballs, payload,
           key, sg, gous, rows, files, external=None) -> None:
    for i in range(n_mous):
        mous = Uid.parse(_uid(f"A001/{key}", 0x100 + i))
        ebs = [Uid.parse(_uid(f"A002/{key}{i:04x}", 0x10 + k)) for k in range(ebs_per_mous)]
        setup = mous_spws(i, spws, frame="TOPO" if i % 5 == 4 else None)
        support = frequency_support(setup)
        res = RESOLUTION_ARCSEC[i % 3]
        for s in range(sources):
            region, fov = _region(i, 266.4 + s * 0.01, -28.9)
            for w in range(spws):
                eb = ebs[(s * spws + w) % len(ebs)]
                spw = setup[w]
                centre = 0.5 * (spw["lo_ghz"] + spw["hi_ghz"])
                rows.append(obscore_row(
                    obs_publisher_did=f"ADS/JAO.ALMA#{project}", obs_collection="ALMA", facility_name="JAO",
                    instrument_name="ALMA", obs_id=f"{mous.archive}.source.src{s}.spw.{25 + 2 * w}",
                    dataproduct_type="cube", calib_level=2, target_name=f"src{s}", s_ra=266.4 + s * 0.01,
                    s_dec=-28.9, s_fov=fov, s_region=region, s_resolution=res / 3600,
                    em_min=C_M_S / (spw["hi_ghz"] * 1e9), em_max=C_M_S / (spw["lo_ghz"] * 1e9),
                    em_res_power=centre * 1e6 / spw["res_khz"], em_resolution=C_M_S / (centre * 1e9) ** 2 * spw["res_khz"] * 1e3,
                    bandwidth=1.875, frequency_support=support, spatial_resolution=res, spatial_scale_max=res * 8,
                    sensitivity_10kms=spw["sens_10kms"], cont_sensitivity_bandwidth=0.05,
                    velocity_resolution=spw["res_khz"] * 1e3 / (centre * 1e9) * C_M_S, is_mosaic="F" if i % 3 == 0 else "T",
                    pol_states="/XX/YY/", spectral_resolution=spw["res_khz"] * 1e3,
                    t_min=58850.1 + i * 0.01, t_max=58850.15 + i * 0.01, t_exptime=1512.0, proposal_id=project,
                    data_rights=rights, band_list="6", antenna_arrays="A001:DA44 A002:DV12 A003:DA51",
                    obs_release_date="2021-03-02T00:00:00.000", obs_creator_name="Ginsburg, Adam",
                    obs_title="Simulated survey of the 50 km/s cloud", group_ous_uid=gous.archive,
                    member_ous_uid=mous.archive, asdm_uid=eb.archive, qa2_passed="T", science_observation="T",
                    science_keyword="Giant Molecular Clouds (GMC) properties", schedblock_name="src_a_06_TM1",
                    scientific_category="ISM and star formation", frequency=centre, pi_name="Ginsburg, Adam"))
        member = work / project / f"science_goal.{sg.disk}" / f"group.{gous.disk}" / f"member.{mous.disk}"
        (member / "product").mkdir(parents=True, exist_ok=True)
        (member / "product" / f"member.{mous.disk}.src0.cube.I.pbcor.fits").write_bytes(b"F" * payload)
        (member / "README").write_text(f"ALMA README for {mous.archive}\n")
        if not cycle0_tarballs:
            tar = write_tar(files_dir / products_name(project, mous, 1, 1),
                            [(project, work / project)] + [(str(p.relative_to(work)), p) for p in member.rglob("*")])
            aux = write_tar(files_dir / auxiliary_name(project, mous), [(str(member.relative_to(work)) + "/README", member / "README")])
            readme = files_dir / readme_name(mous)
            readme.write_text(f"ALMA README for {mous.archive}\n")
            files += [CatalogueFile(tar.name, "#this", "application/x-tar", tar.stat().st_size, [mous.archive]),
                      CatalogueFile(aux.name, "#auxiliary", "application/x-tar", aux.stat().st_size, [mous.archive]),
                      CatalogueFile(readme.name, "#documentation", "text/plain", readme.stat().st_size, [mous.archive])]
            if external:
                ext = write_tar(files_dir / external_name(project, mous, external),
                                external_entries(str(member.relative_to(work)), member, external))
                files.append(CatalogueFile(ext.name, "#this", "application/x-tar", ext.stat().st_size, [mous.archive],
                                           external_description(external)))
        for eb in ebs:
            raw = files_dir / raw_name(project, eb)
            raw.write_bytes(b"R" * payload)
            files.append(CatalogueFile(raw.name, "#progenitor", "application/x-tar", payload, [mous.archive]))
    if cycle0_tarballs:
        all_mous = sorted({r["member_ous_uid"] for r in rows})
        for k in range(1, cycle0_tarballs + 1):
            path = files_dir / cycle0_name(project, "2012-12-05", k, cycle0_tarballs)
            path.write_bytes(b"T" * (payload + k))
            files.append(CatalogueFile(path.name, "#this", "application/x-tar", payload + k, all_mous))
