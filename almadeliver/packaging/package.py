"""Package a checked MOUS reduction area into the archive's delivery files.

The member tree ``<project>/science_goal.<SG>/group.<GOUS>/member.<MOUS>/`` holds README, script/,
calibration/, qa/, product/ and log/. What goes where follows the archive's nested DataLink listings:

- ``<project>_<MOUS>_<m>_of_<n>.tar`` (#this): README and product/ (the Imaging FITS), split at max-size
- ``<project>_<MOUS>_auxiliary.tar`` (#auxiliary): script/, calibration/, qa/, log/
- ``<project>_<EB>.asdm.sdm.tar`` (#progenitor): raw/<EB>.asdm.sdm, one per EB, from --raw
- ``member.<MOUS>.README.txt`` (#documentation): the README
- ``<project>_<MOUS>.manifest.json``: name, size, sha256 and members of every file above
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..delivery.layout import StaffArea, StaffEb
from ..delivery.checklist import imaging_masks
from ..delivery.readme import parse_readme_text
from ..delivery.report import Severity
from ..delivery.staff import CASA_LOG_GLOB, FLUX_SCRIPT, IMAGING_SCRIPT, casa_logs, check_area, load_area
from ..units import human_size
from ..errors import DiskSpaceError, PackagingError, ParseError, UsageError
from ..ids import ProjectCode, Uid, auxiliary_name, products_name, raw_name, readme_name
from .tarballs import Entry, TarRecord, tar_size, tree_entries, write_parts, write_tar_record, write_tgz

log = logging.getLogger("almadeliver")

DEFAULT_MAX_SIZE = "10GB"
SCRIPT_FOR_PI = "scriptForPI.py"
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_BANNER = "Atacama Large Millimeter/submillimeter Array (ALMA)"
# not in <EB>.calibration.tgz: CASA's .last files and <EB>.ms.flagversions (importasdm refuses to
# overwrite it when scriptForPI re-imports the ASDM); <EB>.ms.split.flagversions is kept: the
# applyonly run restores the reducer's flags from it (as the simulator delivers them)
_SKIP_IN_CALIBRATION = (".ms.flagversions", ".last")
_PLOTS = (".plots", ".png", ".pdf")


@dataclass
class TarMemberInfo:
    """A file inside a delivered tarball (what the nested DataLink answer lists)."""

    path: str
    size: int
    content_type: str
    semantics: str


@dataclass
class DeliveryFile:
    """One file the archive serves for this OUS."""

    name: str
    semantics: str        # #this | #auxiliary | #progenitor | #documentation
    content_type: str
    size: int
    sha256: str
    description: str = ""
    members: list[TarMemberInfo] = field(default_factory=list)


@dataclass
class PackageResult:
    """What ``package`` wrote: the delivery files, the manifest and any warnings."""

    project: str
    ous: str                  # uid://... of the MOUS (or GOUS for a group)
    out: Path
    files: list[DeliveryFile]
    manifest: Path
    warnings: list[str] = field(default_factory=list)

    def manifest_dict(self) -> dict:
        """The manifest's content: project, OUS and every file with its size and SHA-256."""
        return {"project": self.project, "ous": self.ous, "files": [asdict(f) for f in self.files]}


def parse_size(text: str) -> int:
    """``10GB``, ``500MB``, ``1.5G``, ``2GiB`` or plain bytes -> bytes (K/M/G/T are powers of 1000)."""
    m = _SIZE_RE.match(str(text))
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS:
        raise UsageError(f"'{text}' is not a size", "write it like 10GB, 500MB, 1.5G or 2GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def member_prefix(project: ProjectCode, sg: Uid, group: Uid, mous: Uid) -> str:
    """The path of a member folder inside the delivery tree: ``<project>/science_goal.<SG>/group.<GOUS>/member.<MOUS>``."""
    return f"{project}/science_goal.{sg.disk}/group.{group.disk}/member.{mous.disk}"


def package_mous(area: Path, project: str, sg: str, group: str, out: Path, max_size: int,
                 raw: Path | None = None, script_for_pi: Path | None = None) -> PackageResult:
    """Check ``area`` and, when every checklist item passes, write its delivery files into ``out``."""
    code, sg_uid, group_uid = ProjectCode.parse(project), Uid.parse(sg), Uid.parse(group)
    staff = load_area(area)
    require_checklist(check_area(area))
    pi_script = _script_for_pi(staff, script_for_pi)
    raws = _raw_asdms(staff, raw)
    prefix = member_prefix(code, sg_uid, group_uid, staff.ous)
    out = _out_folder(out)
    staging = out / f".staging.{staff.ous.disk}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        aux = _auxiliary_entries(staff, staging, prefix, pi_script)
        products = [(f"{prefix}/product/{p.name}", p) for p in _images(staff)] + _mask_entries(staff, prefix)
        readme = staging / "README"
        tree = _tree_listing([a for a, _ in aux + products] + [f"{prefix}/README"], f"{code}")
        readme.write_text(compose_readme(staff.readme.read_text(errors="replace"), code, tree))
        products.append((f"{prefix}/README", readme))
        raw_entries = {eb: tree_entries(path, f"{prefix}/raw/{path.name}") for eb, path in raws.items()}
        _check_space(out, tar_size(products) + tar_size(aux) + readme.stat().st_size
                     + sum(tar_size(e) for e in raw_entries.values()))
        result = PackageResult(code.code, staff.ous.archive, out, [], out / f"{code}_{staff.ous.disk}.manifest.json")
        _write_products(result, out, code, staff.ous, products, max_size)
        rec = write_tar_record(out / auxiliary_name(code, staff.ous), aux)
        result.files.append(_delivery_file(rec, "#auxiliary", "auxiliary tarball: scripts, calibration, qa, logs"))
        for eb, entries in raw_entries.items():
            rec = write_tar_record(out / raw_name(code, eb), entries)
            result.files.append(_delivery_file(rec, "#progenitor", f"raw data of EB {eb.archive}"))
        result.files.append(_copy_readme(readme, out / readme_name(staff.ous)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(result)
    return result


def require_checklist(report) -> None:
    """Refuse with every failing checklist item (path: message) when the checklist fails."""
    failed = report.of(Severity.ERROR)
    if failed:
        items = "; ".join(f"{f.path}: {f.message}" for f in failed)
        raise PackagingError(f"the final checklist fails ({len(failed)} item{'s' * (len(failed) > 1)}): {items}",
                             "fix them ('almadeliver check AREA' lists every item) and package again")


def _script_for_pi(staff: StaffArea, given: Path | None) -> Path:
    path = Path(given) if given else staff.root / "script" / SCRIPT_FOR_PI
    if not path.is_file():
        raise PackagingError(f"no scriptForPI.py at {path}",
                             f"put one at {staff.root / 'script' / SCRIPT_FOR_PI} or pass --script-for-pi PATH")
    return path


def _raw_asdms(staff: StaffArea, raw: Path | None) -> dict[Uid, Path]:
    if raw is None:
        return {}
    found = {eb.uid: Path(raw) / f"{eb.uid.disk}.asdm.sdm" for eb in staff.ebs}
    missing = [p.name for p in found.values() if not p.is_dir()]
    if missing:
        raise PackagingError(f"{raw} has no {', '.join(missing)}",
                             "put each EB's ASDM there as <EB>.asdm.sdm, or leave out --raw")
    return found


def _out_folder(out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def _check_space(out: Path, need: int) -> None:
    free = shutil.disk_usage(out).free
    if free < need:
        raise DiskSpaceError(f"{out} has {human_size(free)} free; the delivery needs {human_size(need)}",
                             "free some space or choose another folder with --out")


def _images(staff: StaffArea) -> list[Path]:
    return sorted(p for p in staff.imaging.iterdir()
                  if p.is_file() and (p.name.endswith(".fits") or p.name.endswith(".fits.gz")))


def _mask_entries(staff: StaffArea, prefix: str) -> list[Entry]:
    """The imaging masks scriptForImaging.py names, as CASA images in product/ (seed 002, section 4.3:
    masks are provided as CASA images where the script cannot give them analytically)."""
    script = staff.imaging / IMAGING_SCRIPT
    names = imaging_masks(script.read_text(errors="replace")) if script.is_file() else []
    return [e for n in names if (staff.imaging / n).is_dir()
            for e in tree_entries(staff.imaging / n, f"{prefix}/product/{n}")]


def _auxiliary_entries(staff: StaffArea, staging: Path, prefix: str, pi_script: Path) -> list[Entry]:
    """script/, calibration/ (tgz made in ``staging``), qa/ and log/ of the member tree."""
    entries: list[Entry] = [(f"{prefix}/script/{SCRIPT_FOR_PI}", pi_script),
                            (f"{prefix}/script/{IMAGING_SCRIPT}", staff.imaging / IMAGING_SCRIPT)]
    logs = staging / "log"
    cal = staging / "calibration"
    logs.mkdir()
    cal.mkdir()
    for eb in staff.ebs:
        entries.append((f"{prefix}/script/{eb.script.name}", eb.script))
        tables, plots = _calibration_files(eb)
        name = f"{eb.uid.disk}.calibration"
        entries.append((f"{prefix}/calibration/{name}.tgz", write_tgz(cal / f"{name}.tgz", _under(name, tables))))
        if plots:
            entries.append((f"{prefix}/calibration/{name}.plots.tgz",
                            write_tgz(cal / f"{name}.plots.tgz", _under(f"{name}.plots", plots))))
        for path in sorted((eb.folder / "qa2").rglob("*")):
            if path.is_file():
                rel = "_".join(path.relative_to(eb.folder / "qa2").parts)
                name_in_qa = rel if rel.startswith(eb.uid.disk) else f"{eb.uid.disk}__{rel}"
                entries.append((f"{prefix}/qa/{name_in_qa}", path))
        entries.append(_log_tgz(logs, f"{eb.uid.disk}.log", casa_logs(eb.folder), prefix))
    if len(staff.ebs) > 1:
        entries.append((f"{prefix}/script/{FLUX_SCRIPT}", staff.combination / FLUX_SCRIPT))
        fluxes = staff.combination / "allFluxes.txt"
        if fluxes.is_file():
            entries.append((f"{prefix}/calibration/allFluxes.txt", fluxes))
        entries.append(_log_tgz(logs, "calibrated.log", casa_logs(staff.combination), prefix))
    entries.append(_log_tgz(logs, "Imaging.log", casa_logs(staff.imaging), prefix))
    return entries


def _calibration_files(eb: StaffEb) -> tuple[list[Path], list[Path]]:
    """(calibration tables and text files, plots) of an EB folder; the ASDM, MSs, script, logs and
    qa2 stay out."""
    skip = {eb.uid.disk, f"{eb.uid.disk}.asdm.sdm", f"{eb.uid.disk}.ms", f"{eb.uid.disk}.ms.split",
            f"{eb.uid.disk}.ms.split.cal", eb.script.name, "qa2"}
    tables, plots = [], []
    for path in sorted(eb.folder.iterdir()):
        if path.name in skip or path.name.endswith(_SKIP_IN_CALIBRATION) or path.match(CASA_LOG_GLOB) \
                or path.name.startswith("ipython"):
            continue
        (plots if path.name.endswith(_PLOTS) else tables).append(path)
    return tables, plots


def _under(folder: str, paths: list[Path]) -> list[Entry]:
    """Entries for ``paths`` (files or whole folders) below ``folder`` in a tgz."""
    entries: list[Entry] = [(folder, None)]
    for path in paths:
        entries += tree_entries(path, f"{folder}/{path.name}") if path.is_dir() else [(f"{folder}/{path.name}", path)]
    return entries


def _log_tgz(staging: Path, name: str, logs: list[Path], prefix: str) -> Entry:
    tgz = write_tgz(staging / f"{name}.tgz", [(f"{name}/{p.name}", p) for p in logs] or [(name, None)])
    return f"{prefix}/log/{name}.tgz", tgz


def _write_products(result: PackageResult, out: Path, project: ProjectCode, ous: Uid,
                    entries: list[Entry], max_size: int) -> None:
    """The m_of_n product tarballs; stale parts of an earlier run with another n are removed."""
    records = write_parts(lambda m, n: out / products_name(project, ous, m, n), entries, max_size)
    keep = {r.path.name for r in records}
    for old in out.glob(f"{project}_{ous.disk}_[0-9][0-9][0-9]_of_[0-9][0-9][0-9].tar"):
        if old.name not in keep:
            old.unlink()
    for rec in records:
        if rec.oversized:
            result.warnings.append(f"{rec.path.name} is {rec.size} bytes, over --max-size {max_size}: "
                                   "it holds one file larger than a part")
        result.files.append(_delivery_file(rec, "#this", "product tarball: README and FITS images"))


def _content_type(name: str) -> str:
    if name.endswith((".fits", ".fits.gz")):
        return "image/fits"
    if name.endswith((".txt", ".py", ".log", "README", ".xml", ".html")):
        return "text/plain"
    return "application/octet-stream"


def _delivery_file(rec: TarRecord, semantics: str, description: str) -> DeliveryFile:
    members = [TarMemberInfo(m.path, m.size, _content_type(m.path), semantics) for m in rec.members]
    return DeliveryFile(rec.path.name, semantics, "application/x-tar", rec.size, rec.sha256, description, members)


def _copy_readme(readme: Path, dest: Path) -> DeliveryFile:
    data = readme.read_bytes()
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    part.replace(dest)
    return DeliveryFile(dest.name, "#documentation", "text/plain", len(data), hashlib.sha256(data).hexdigest(),
                        "README of the delivery")


def write_manifest(result: PackageResult) -> Path:
    """``<project>_<OUS>.manifest.json``: every delivered file with its size, sha256 and members."""
    result.manifest.write_text(json.dumps(result.manifest_dict(), indent=1) + "\n")
    return result.manifest


def compose_readme(staff_text: str, project: ProjectCode, tree: str) -> str:
    """The delivered README in the ALMA format: banner, the reducer's README (with its project
    code checked or added), what each folder holds, and the tree."""
    body = staff_text.strip()
    if body.startswith(_BANNER):
        body = body[len(_BANNER):].lstrip("\n# ").strip()
    try:
        stated = parse_readme_text(body, "README", require_project=False).project
    except ParseError as exc:
        raise PackagingError(exc.message, exc.hint) from None
    if stated and stated != project:
        raise PackagingError(f"the README names project {stated}, not {project}",
                             "fix the README or --project")
    if not stated:
        body = f"Project code: {project}\n{body}"
    return f"{_BANNER}\n\n#####\n\n{body}\n\n#####\n\n{_FOLDERS}\n#####\n\n{tree}"


_FOLDERS = """\
This file describes the content of the tar files you have received. The
member_ouss_id directory contains this README file and the following
directories: calibration, script, qa, log, product.

- 'calibration' contains the files needed for calibration starting from
the ASDM to the fully calibrated data (one <EB>.calibration.tgz per
execution, and its plots in <EB>.calibration.plots.tgz).
- 'script' contains the reduction scripts: one <EB>.ms.scriptForCalibration.py
per execution, scriptForFluxCalibration.py (several executions),
scriptForImaging.py, and scriptForPI.py, which rebuilds the calibrated data.
- 'product' contains the FITS files of the image products: the primary beam
corrected image (".pbcor.fits") and the primary beam used (".flux.fits").
- 'qa' contains the QA2 reports.
- 'log' contains the CASA log files.

How to obtain a calibrated MeasurementSet (MS): untar the raw data tarballs
(<project>_<EB>.asdm.sdm.tar) next to the others, so that a 'raw' directory
holds the uid*.asdm.sdm directories, cd into 'script' and run scriptForPI.py
in CASA (SPACESAVING = N before it limits the disk space used, N = 0 to 3).
"""


def _tree_listing(arcs: list[str], root: str) -> str:
    """A ``tree``-style listing of the member tree from the project folder down."""
    paths = set()
    for arc in arcs:
        pieces = arc.split("/")
        paths.update("/".join(pieces[: i + 1]) for i in range(len(pieces)))
    children: dict[str, list[str]] = {}
    for p in sorted(paths):
        if "/" in p:
            parent, name = p.rsplit("/", 1)
            children.setdefault(parent, []).append(name)
    lines = [root]
    dirs = files = 0

    def walk(node: str, indent: str) -> None:
        nonlocal dirs, files
        kids = children.get(node, [])
        for i, name in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{indent}{'`-- ' if last else '|-- '}{name}")
            path = f"{node}/{name}"
            if path in children:
                dirs += 1
                walk(path, indent + ("    " if last else "|   "))
            else:
                files += 1

    walk(root, "")
    return "\n".join(lines) + f"\n\n{dirs} directories, {files} files\n"
