"""``simulate_project``: a whole simulated ALMA project, written as the archive ships it.

    DIR/<project>/catalogue.json     ObsCore rows and DataLink entries (sim/catalogue.py)
    DIR/<project>/files/<name>       delivery tarballs and member.<MOUS>.README.txt

The project is built in a temporary folder next to DIR/<project> and renamed into place, so an
aborted run never leaves half a project. CASA work runs in one child process per MOUS.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import numpy as np

from ..archive.obscore import COLUMN_NAMES
from ..casa.runtime import run_in_casa
from ..errors import UsageError
from ..ids import (DeliveryFileName, ProjectCode, Uid, auxiliary_name, cycle0_name, external_name,
                   products_name, raw_name, readme_name)
from ..packaging.tarballs import plan_parts, tar_size, tree_entries, write_tar
from . import manual, pipeline, totalpower
from .catalogue import Catalogue, CatalogueFile, TarMember, frequency_support
from .plan import DELIVERY_CASA_VERSION, LINE_REST_HZ, SIZES, MousPlan, ProjectPlan, make_plan
from .readme import qa2_notes, readme_text, tree_text

FLAVOURS = ("manual", "pipeline", "cycle0")
C_LIGHT = 299_792_458.0


@dataclass
class SimulatedProject:
    """What ``simulate_project`` made."""

    folder: Path                 # DIR/<project>
    catalogue: Catalogue
    mous_uids: list[str]
    eb_uids: list[str]
    seconds: float


def member_path(plan: ProjectPlan, mous: MousPlan) -> str:
    """The member folder inside the delivery tree, relative to the tree root."""
    if plan.flavour == "cycle0":
        return f"{plan.code}/sg_ouss_id/group_ouss_id/member_ouss_{cycle0_date(plan)}_id"
    return (f"{plan.code}/science_goal.{Uid(plan.sg_uid).disk}/group.{Uid(plan.gous_uid).disk}/"
            f"member.{mous.disk}")


def cycle0_date(plan: ProjectPlan) -> str:
    """The delivery date of a Cycle 0 project (a few weeks after its last EB)."""
    last = max(eb.start_mjd for m in plan.mous for eb in m.ebs)
    return (date(1858, 11, 17) + timedelta(days=int(last) + 30)).isoformat()


def _content_type(name: str) -> str:
    if name.endswith(".fits"):
        return "image/fits"
    if name.endswith((".txt", ".py", ".log", ".xml", ".csv", ".dat")) or name == "README":
        return "text/plain"
    if name.endswith(".png"):
        return "image/png"
    return "application/octet-stream"


def _members(entries: list[tuple[str, Path]]) -> list[TarMember]:
    return [TarMember(arc, p.stat().st_size, _content_type(p.name)) for arc, p in sorted(entries)
            if p.is_file() and not p.is_symlink()]


def _image_stats(fits: Path) -> dict:
    from astropy.io import fits as pyfits

    with pyfits.open(fits) as hdul:
        h, data = hdul[0].header, np.asarray(hdul[0].data, float)
    plane = data.reshape(-1, data.shape[-2], data.shape[-1]).copy()
    ny, nx = plane.shape[-2:]
    plane[:, ny // 2 - ny // 5:ny // 2 + ny // 5, nx // 2 - nx // 5:nx // 2 + nx // 5] = np.nan  # the source
    return {"name": fits.name, "rms_mjy": float(np.nanstd(plane) * 1e3),
            "bmaj": float(h.get("BMAJ", 0) * 3600), "bmin": float(h.get("BMIN", 0) * 3600)}


class _Builder:
    """Builds one project in a temporary folder (``stage``) and packs it."""

    def __init__(self, plan: ProjectPlan, stage: Path, on_line: Callable[[str], None] | None,
                 contdat_generation: int = 3, external: str | None = None):
        self.plan, self.stage, self.on_line = plan, stage, on_line
        self.contdat_generation = contdat_generation
        self.external = external
        self.tree = stage / "tree"
        self.work = stage / "work"
        self.files = stage / "project" / "files"
        self.files.mkdir(parents=True)
        self.catalogue_files: list[CatalogueFile] = []
        self.eb_info: dict[str, dict] = {}   # EB uid -> what observe.py reports (scans, antennas)

    def say(self, text: str) -> None:
        if self.on_line:
            self.on_line(text)

    # -- CASA work ---------------------------------------------------------------------------------
    def build_manual(self, index: int, mous: MousPlan) -> None:
        member = self.tree / member_path(self.plan, mous)
        if mous.array == "TP":       # Total Power: <EB>.ms.scriptForSDCalibration.py (sim/totalpower.py)
            return totalpower.build_member(self, index, mous, member)
        for folder in ("calibration", "qa", "log", "product"):
            (member / folder).mkdir(parents=True)
        work = self.work / mous.disk
        imaging_script = manual.write_scripts(self.plan, mous, member, work)
        self.say(f"{mous.uid}: simulating {len(mous.ebs)} EB(s), calibrating and imaging in CASA")
        cycle0 = self.plan.flavour == "cycle0"
        result = run_in_casa(manual.build_mous_in_casa,
                             {"plan": asdict(self.plan), "index": index, "member": str(member), "work": str(work),
                              "cycle0": cycle0},
                             workdir=work, logfile=work / "casa.log", on_line=self._casa_line)
        self.eb_info.update(result["observed"])
        # the reducer images in a new CASA session (log/<MOUS>.imaging.log), as almadeliver image does
        run_in_casa(manual.image_mous_in_casa,
                    {"plan": asdict(self.plan), "index": index, "member": str(member), "work": str(work),
                     "cycle0": cycle0, "imaging_script": str(imaging_script)},
                    workdir=work, logfile=work / "casa-imaging.log", on_line=self._casa_line)
        if cycle0:  # Cycle 0 deliveries shipped the reducer's scripts but no scriptForPI
            (member / "script" / "scriptForPI.py").unlink()
        images = [_image_stats(p) for p in sorted((member / "product").glob("*.image.pbcor.fits"))]
        notes = qa2_notes(self.plan, result["qa"], images)
        raw = member / "raw"
        parked = self.work / f"{mous.disk}.raw"
        if not cycle0:
            raw.rename(parked)  # the README's tree shows the delivery without raw/
        tree = tree_text(self.tree / self.plan.code, self.plan.code)
        if not cycle0:
            parked.rename(raw)
        (member / "README").write_text(readme_text(self.plan, mous, notes, tree, pipeline=False))

    def build_pipeline(self, index: int, mous: MousPlan) -> None:
        """Simulate, reduce and write one pipeline member (sim/pipeline.py); the CORRECTED_DATA and FLAG
        of every EB go to ``<project>/truth/<EB>.npz`` (kept with the project, never served)."""
        member = self.tree / member_path(self.plan, mous)
        member.mkdir(parents=True)
        work = self.work / mous.disk
        self.say(f"{mous.uid}: simulating {len(mous.ebs)} EB(s), pipeline calibration and imaging in CASA")
        res = run_in_casa(pipeline.build_mous_in_casa,
                          {"plan": asdict(self.plan), "index": index, "member": str(member), "work": str(work),
                           "truth_dir": str(self.stage / "project" / pipeline.TRUTH_DIR)},
                          workdir=work, logfile=work / "casa.log", on_line=self._casa_line)
        self.eb_info.update(res["observed"])
        pipeline.write_member_files(member, res, project=self.plan.code, mous=mous.disk, gous=self.plan.gous_uid,
                                    sb_name=mous.sb_name, work=work / "working",
                                    contdat_generation=self.contdat_generation)
        images = [_image_stats(p) for p in sorted((member / "product").glob("*.pbcor.fits"))]
        notes = qa2_notes(self.plan, res["qa"], images)
        parked = self.work / f"{mous.disk}.raw"
        (member / "raw").rename(parked)  # the README's tree shows the delivery without raw/
        tree = tree_text(self.tree / self.plan.code, self.plan.code)
        parked.rename(member / "raw")
        (member / "README").write_text(readme_text(self.plan, mous, notes, tree, pipeline=True))

    def _casa_line(self, line: str) -> None:
        if line.startswith(("simulated ", "exported ", "running ", "Step ", "Processing ASDM", "calibrating ",
                            "imaging ")) and self.on_line:
            self.on_line("  " + line.strip())

    # -- tarballs ----------------------------------------------------------------------------------
    def _add(self, name: str, semantics: str, ids: list[str], entries: list[tuple[str, Path]] | None,
             path: Path | None = None, description: str = "") -> None:
        out = self.files / name
        if entries is not None:
            write_tar(out, entries)
            members = _members(entries)
            content_type = "application/x-tar"
        else:
            shutil.copyfile(path, out)
            members, content_type = [], "text/plain"
        self.catalogue_files.append(CatalogueFile(name, semantics, content_type, out.stat().st_size, ids,
                                                  description, members))

    def pack_member(self, mous: MousPlan) -> None:
        """products _001_of_001.tar, _auxiliary.tar, one raw tar per EB, README.txt."""
        rel = member_path(self.plan, mous)
        member = self.tree / rel
        code = self.plan.code
        ids = [mous.uid]
        products = [(f"{rel}/README", member / "README")] + tree_entries(member / "product", f"{rel}/product")
        self._add(products_name(code, Uid(mous.uid), 1, 1), "#this", ids, products,
                  description="Download dataset of type: product, and class: SCIENCE.")
        aux = [e for d in ("script", "calibration", "qa", "log") for e in tree_entries(member / d, f"{rel}/{d}")]
        self._add(auxiliary_name(code, Uid(mous.uid)), "#auxiliary", ids, aux,
                  description="Download auxiliary data (scripts, calibration, QA2, logs).")
        for eb in mous.ebs:
            asdm = member / "raw" / f"{eb.disk}.asdm.sdm"
            self._add(raw_name(code, Uid(eb.uid)), "#progenitor", ids,
                      tree_entries(asdm, f"{rel}/raw/{eb.disk}.asdm.sdm"),
                      description=f"Download raw data of execution block {eb.uid}.")
        self._add(readme_name(Uid(mous.uid)), "#documentation", ids, None, path=member / "README",
                  description="Download the README of this member OUS.")

    def pack_external(self, mous: MousPlan, label: str) -> None:
        """An external product of the member (ARI-L and the like): ``<project>_<MOUS>_external_<label>_001_of_001.tar``."""
        rel = member_path(self.plan, mous)
        self._add(external_name(self.plan.code, Uid(mous.uid), label), "#this", [mous.uid],
                  external_entries(rel, self.tree / rel, label), description=external_description(label))

    def pack_cycle0(self, parts: int = 3) -> list[str]:
        """The whole project as <project>_<date>_<m>_of_<n>.tar, attached to every EB: each EB is
        its own (pseudo) member OUS in ObsCore and DataLink lists the same tarballs for each."""
        root = self.tree / self.plan.code
        entries = [e for e in tree_entries(root, self.plan.code) if e[1].is_file()]
        ids = [cycle0_mous_uid(self.plan, j) for j in range(len(self.plan.mous[0].ebs))]
        chunks = plan_parts(entries, tar_size(entries) // parts + (1 << 20))
        day = cycle0_date(self.plan)
        for m, chunk in enumerate(chunks, start=1):
            self._add(cycle0_name(self.plan.code, day, m, len(chunks)), "#this", ids, chunk,
                      description=f"Cycle 0 delivery of {self.plan.code}, part {m} of {len(chunks)}.")
        return ids

    # -- ObsCore -----------------------------------------------------------------------------------
    def obscore_rows(self, mous: MousPlan, eb_info: dict[str, dict]) -> list[dict]:
        plan = self.plan
        target = plan.field("target")
        rows = []
        # the whole correlator setup, one segment per spw, repeated on every row of the MOUS
        support = frequency_support([{"lo_ghz": min(f0, f0 + w * n) / 1e9, "hi_ghz": max(f0, f0 + w * n) / 1e9,
                                      "res_khz": abs(w) / 1e3}
                                     for f0, w, n in ((s["freq_hz"], s["width_hz"], s["nchan"]) for s in plan.spws)])
        for eb in mous.ebs:
            ant = eb_info[eb.uid]["antennas"]
            baselines = [math.dist((ant["x"][i], ant["y"][i], ant["z"][i]), (ant["x"][j], ant["y"][j], ant["z"][j]))
                         for i in range(len(ant["x"])) for j in range(i)]
            for s, spw in enumerate(plan.spws):
                f0 = spw["freq_hz"]
                f1 = f0 + spw["width_hz"] * spw["nchan"]
                fc = 0.5 * (f0 + f1)
                resolution = C_LIGHT / fc / (max(baselines) if baselines else 12.0) * 180 / math.pi  # TP: the dish
                fov = 1.13 * C_LIGHT / fc / (7.0 if mous.array == "7m" else 12.0) * 180 / math.pi
                released = date(1858, 11, 17) + timedelta(days=int(eb.start_mjd) + 365)
                if plan.proprietary:
                    released = max(released, date.today() + timedelta(days=300))
                row = dict.fromkeys(COLUMN_NAMES)
                row.update({
                    "obs_publisher_did": f"ADS/JAO.ALMA#{plan.code}", "obs_collection": "ALMA",
                    "facility_name": "JAO", "instrument_name": "ALMA",
                    "obs_id": f"{mous.uid}.source.{target['name']}.spw.{s}", "dataproduct_type": "cube",
                    "calib_level": 2, "target_name": target["name"], "s_ra": target["ra_deg"],
                    "s_dec": target["dec_deg"], "s_fov": fov,
                    "s_region": f"Circle ICRS {target['ra_deg']:.6f} {target['dec_deg']:.6f} {fov / 2:.6f}",
                    "s_resolution": resolution, "t_min": eb.start_mjd,
                    "t_max": eb.start_mjd + 340.0 / 86400, "t_exptime": 90.0, "t_resolution": 6.0,
                    "em_min": C_LIGHT / f1, "em_max": C_LIGHT / f0, "em_res_power": fc / spw["width_hz"],
                    "pol_states": "/XX/YY/", "o_ucd": "phot.flux.density;phys.polarization",
                    "access_url": f"https://almascience.org/datalink/sync?ID={mous.uid}",
                    "access_format": "text/html", "proposal_id": plan.code,
                    "data_rights": "Proprietary" if plan.proprietary else "Public",
                    "band_list": "3", "em_resolution": C_LIGHT / fc ** 2 * spw["width_hz"],
                    "bandwidth": spw["width_hz"] * spw["nchan"] / 1e9,
                    "antenna_arrays": " ".join(f"{p}:{n}" for p, n in zip(ant["pads"], ant["names"])),
                    "is_mosaic": "F", "obs_release_date": f"{released.isoformat()}T00:00:00.000",
                    "spatial_resolution": resolution * 3600,
                    "frequency_support": support,
                    "frequency": fc / 1e9, "velocity_resolution": C_LIGHT * spw["width_hz"] / fc,
                    "obs_creator_name": plan.pi, "pi_name": plan.pi, "proposal_authors": plan.pi,
                    "schedblock_name": mous.sb_name, "group_ous_uid": plan.gous_uid, "member_ous_uid": mous.uid,
                    "asdm_uid": eb.uid, "obs_title": plan.title, "type": ProjectCode(plan.code).type,
                    "scan_intent": "TARGET", "science_observation": "T",
                    "spatial_scale_max": resolution * 3600 * 4, "qa2_passed": "T",
                    "science_keyword": plan.keyword, "scientific_category": plan.category,
                    "spectral_resolution": spw["width_hz"], "lastModified": f"{released.isoformat()}T00:00:00.000",
                    "sensitivity_10kms": 10.0, "cont_sensitivity_bandwidth": 0.5, "pwv": 2.1,
                    "proposal_abstract": f"We propose to map CS(2-1) at {LINE_REST_HZ / 1e9:.3f} GHz in "
                                         f"{target['name'].replace('_', ' ')} (simulated project).",
                    "gal_longitude": None, "gal_latitude": None,
                })
                rows.append(row)
        return rows


def external_entries(member_rel: str, member: Path, label: str) -> list[tuple[str, Path]]:
    """What an external product tarball holds: the member's images, reprocessed, under
    ``<member path>/external/<label>/`` (untarred at the top of the tree beside product/, which it
    never overwrites). ARI-L (ALMA Reprocessed Images, Legacy) ships images of Cycle 2-4 members."""
    images = sorted(p for p in (member / "product").glob("*.fits*") if p.is_file())
    if not images:
        raise UsageError(f"{member} has no product images to ship as external '{label}'", "simulate the member first")
    base = f"{member_rel}/external/{label}"
    return [(f"{base}/{p.name.replace('.I.', f'.I.{label}.', 1)}", p) for p in images]


def check_external_label(label: str) -> None:
    """Raise UsageError unless ``label`` makes an external file name the file name parser reads back."""
    try:
        ok = DeliveryFileName.parse(external_name("2000.1.00000.S", Uid("uid://A001/X1/X1"), label)).label == label
    except UsageError:
        ok = False
    if not ok:
        raise UsageError(f"'{label}' is not an external product label", "use letters, digits and '_', e.g. ari_l")


def external_description(label: str) -> str:
    """The DataLink ``description`` the ALMA archive gives an external product (e.g. ARI-L) of ``label``."""
    return f"Download dataset of type: external ({label.replace('_', '-').upper()}), and class: SCIENCE."


def cycle0_mous_uid(plan: ProjectPlan, eb_index: int) -> str:
    """The member OUS uid under which the archive lists EB ``eb_index`` of a Cycle 0 project."""
    from .plan import ous_uid

    return ous_uid(plan.code, "cycle0", eb_index).archive


def simulate_project(code: str, out: Path, flavour: str = "manual", mous: int = 1, ebs: int = 1,
                     group_12m_7m: bool = False, proprietary: bool = False,
                     on_line: Callable[[str], None] | None = None, size: str = "small",
                     contdat_generation: int = 3, external: str | None = None,
                     casa_version: str = DELIVERY_CASA_VERSION, residual_phase_deg: float = 0.0,
                     total_power: bool = False) -> SimulatedProject:
    """Simulate project ``code`` with real CASA and write it under ``out/<code>`` (see module doc).

    Pipeline members write cont.dat in ``contdat_generation`` (1, 2 or 3: see pipeline.contdat_text);
    with ``external`` (a label such as ``ari_l``) every member also gets an external product tarball.
    ``casa_version``: the CASA that made the delivery (README, calibration scripts' version gate),
    by default DELIVERY_CASA_VERSION, older than the installed modular CASA. ``residual_phase_deg``:
    a self-calibration case (see ``make_plan``). ``total_power``: every member is a manual Total Power
    member (sim/totalpower.py; manual flavour only). Raises UsageError for a bad option."""
    ProjectCode.parse(code)
    if flavour not in FLAVOURS:
        raise UsageError(f"unknown flavour '{flavour}'", f"choose one of {', '.join(FLAVOURS)}")
    if mous < 1 or ebs < 1 or ebs > 9 or mous > 4:
        raise UsageError("--mous must be 1..4 and --ebs 1..9", "keep simulated projects small")
    if size not in SIZES:
        raise UsageError(f"unknown size '{size}'", f"choose one of {', '.join(SIZES)}")
    if not 0 <= residual_phase_deg <= 90:
        raise UsageError(f"--residual-phase-deg {residual_phase_deg} is out of range", "give 0 to 90 (degrees rms)")
    if external:
        check_external_label(external)
    if contdat_generation not in pipeline.CONTDAT_GENERATIONS:
        raise UsageError(f"unknown cont.dat generation {contdat_generation}",
                         "1 (field name, SPW<id>), 2 (Field:, SpectralWindow:, NONE/ALL) or 3 (spw names, Flags:)")
    if total_power and (flavour != "manual" or group_12m_7m):
        raise UsageError("--total-power makes manual Total Power members", "drop --flavour and --group-12m-7m")
    started = time.monotonic()
    try:
        plan = make_plan(code, flavour, mous, ebs, group_12m_7m, proprietary, size, casa_version,
                         residual_phase_deg=residual_phase_deg)
    except ValueError as exc:
        raise UsageError(f"--casa-version: {exc}", "give the CASA version as 6.5.4 or 6.5.4-9") from None
    if total_power:
        plan = totalpower.tp_plan(plan)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = out / f".{code}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        builder = _Builder(plan, stage, on_line, contdat_generation, external)
        if flavour == "cycle0":
            rows = _build_cycle0(builder)
        else:
            rows = _build_members(builder, builder.build_pipeline if flavour == "pipeline" else builder.build_manual)
        catalogue = Catalogue(code, proprietary, rows, builder.catalogue_files)
        project = stage / "project"
        catalogue.save(project)
        final = out / code
        if final.exists():
            shutil.rmtree(final)
        project.rename(final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    mous_uids = list(dict.fromkeys(row["member_ous_uid"] for row in catalogue.obscore))
    return SimulatedProject(final, catalogue, mous_uids,
                            [eb.uid for m in plan.mous for eb in m.ebs], time.monotonic() - started)


def _build_members(builder: _Builder, build) -> list[dict]:
    """Manual and pipeline projects: build, pack and catalogue each member OUS in turn."""
    rows = []
    for index, mous in enumerate(builder.plan.mous):
        build(index, mous)
        builder.pack_member(mous)
        if builder.external:
            builder.pack_external(mous, builder.external)
        rows += builder.obscore_rows(mous, builder.eb_info)
    return rows


def _build_cycle0(builder: _Builder) -> list[dict]:
    plan = builder.plan
    if len(plan.mous) != 1:
        raise UsageError("a Cycle 0 project has one member OUS", "drop --mous/--group-12m-7m with --flavour cycle0")
    mous = plan.mous[0]
    builder.build_manual(0, mous)
    ids = builder.pack_cycle0()
    rows = builder.obscore_rows(mous, builder.eb_info)
    eb_index = {eb.uid: j for j, eb in enumerate(mous.ebs)}
    for row in rows:
        uid = ids[eb_index[row["asdm_uid"]]]
        row["obs_id"] = row["obs_id"].replace(mous.uid, uid)
        row["member_ous_uid"] = uid
        row["access_url"] = f"https://almascience.org/datalink/sync?ID={uid}"
    return rows
