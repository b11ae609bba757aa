"""validate: check a delivery tree (project, member folder) or a staff reduction area, finding by finding.

One walk of the tree (layout.scan), then checks that read the index; files are opened only for the
README, cont.dat, flag templates, the pipeline manifest, ASDM.xml and product FITS headers.
"""
from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import IdentifierError, ParseError
from ..ids import DeliveryFileName
from .calapply import read_calapply
from .contdat import ContDat, parse_contdat
from .flagtemplate import parse_flagtemplate
from .layout import TP_CALIBRATED_SUFFIX, Flavour, Member, StaffArea, TreeIndex, join, load, plain_name
from .partial import review_partial
from .readme import parse_readme
from .report import Report, Severity

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO

# Tables every ASDM has, whatever ASDM.xml says (a copy cut short loses them first or last).
ASDM_CORE_TABLES = ("Main", "ExecBlock", "Scan", "Subscan", "ConfigDescription", "DataDescription",
                    "SpectralWindow", "Antenna", "Field", "Polarization", "Processor", "Station", "State")
_ASDM_TABLE_RE = re.compile(r"<Table>\s*<Name>\s*(\w+)\s*</Name>\s*<NumberRows>\s*(\d+)\s*</NumberRows>", re.S)
_MAIN_BLOB_RE = re.compile(r"<dataUID>\s*<EntityRef\s+entityId=\"([^\"]+)\"")
_MANIFEST_FILE_RE = re.compile(r"\.(tgz|tar|gz|txt|py|xml|fits|log|dat|csv|pdf|png)$")
_BEAM_FREE = (".pb.", ".flux.", ".mask", ".alpha", ".psf.", ".residual.", ".model.", ".sumwt.", ".weight.")


def validate(path: str | Path, products: bool = True) -> Report:
    """Check the tree at ``path``; the Report lists every finding (empty means a clean tree).

    Parameters
    ----------
    path : str | Path
        A delivery tree: a DEST, a project or a member folder.
    products : bool, default True
        Open every product FITS file (astropy); False leaves that out: what a restore, which never
        reads product/, asks before it runs.

    Returns
    -------
    Report
        Every finding; ``report.ok()`` tells whether the tree passes.
    """
    tree = load(path)
    index = tree.index
    report = Report(root=str(index.root), flavour=tree.flavour,
                    details={"files": index.n_files, "folders": len(index.dirs), "members": [], "staff_areas": []})
    _check_files(index, report)
    for member in tree.members:
        _check_member(index, member, report, products)
    for area in tree.staff_areas:
        _check_staff(index, area, report)
    review_partial(report, Path(index.root))     # single files fetched from inside the tarballs
    return report


# -- the whole tree: leftovers, empty files, broken links ---------------------------------------------
def _check_files(index: TreeIndex, report: Report) -> None:
    for rel in index.unreadable:
        report.add(E, "tree.unreadable", rel or ".", "folder cannot be read", "check its permissions")
    for rel, listing in index.dirs.items():
        if listing.in_table:
            continue
        casa_output = "calibrated" in rel.split("/") or "/pipeline-" in f"/{rel}"
        for name, target_exists in listing.links.items():
            if not target_exists:
                report.add(E, "tree.broken-symlink", join(rel, name), "symbolic link points nowhere",
                           "restore the file it points to, or delete the link")
        for name, size in listing.files.items():
            where = join(rel, name)
            if name.endswith(".part"):
                report.add(E, "tree.partial-download", where, "incomplete download left behind",
                           "run `almadeliver download` again to resume it, or delete it")
            elif name.endswith(".tar") and (kind := _tarball_kind(name)):
                report.add(W, "tree.leftover-tarball", where,
                           f"delivery {kind} tarball inside the tree ({size / 1e6:.1f} MB)",
                           "untar it at the top of the tree if not done yet, then delete it")
            elif size == 0 and not casa_output:
                report.add(W, "tree.zero-size", where, "file is empty (0 bytes)",
                           "fetch the tarball holding it again")


def _tarball_kind(name: str) -> str | None:
    """The kind of an archive delivery tarball (products, auxiliary, raw, cycle0); None for other tars."""
    try:
        return DeliveryFileName.parse(name).kind.value
    except IdentifierError:
        return None


# -- one member ---------------------------------------------------------------------------------------
def _check_member(index: TreeIndex, m: Member, report: Report, products: bool = True) -> None:
    rel = m.rel or "."
    listing = index.get(m.rel)
    report.details["members"].append({
        "path": rel, "project": str(m.project) if m.project else None,
        "mous": str(m.mous) if m.mous else None, "gous": str(m.gous) if m.gous else None,
        "sg": str(m.sg) if m.sg else None, "flavour": m.flavour.value, "raw": m.has_raw,
        "restored": m.restored, "ebs": [str(e) for e in m.ebs],
        "ebs_in_raw": [str(e) for e in m.ebs_in_raw], "ebs_in_scripts": [str(e) for e in m.ebs_in_scripts],
    })
    naming_severity = I if m.flavour is Flavour.CYCLE0 else W
    for problem in m.naming:
        report.add(naming_severity, "layout.naming", rel, problem,
                   "keep the archive's names: <project>/science_goal.uid___.../group.uid___.../member.uid___...")
    if m.flavour is Flavour.UNKNOWN:
        report.add(E, "layout.flavour", rel, "cannot tell manual from pipeline: no scriptForPI.py, "
                   "calibration script or pipeline restore script", "fetch the product tarball of this member again")
    _check_readme(index, m, report)
    for folder in ("script", "calibration", "qa", "product", "log"):
        if folder not in listing.dirs:
            severity = E if folder in ("script", "calibration") else W
            report.add(severity, "layout.missing-folder", join(m.rel, folder), f"{folder}/ is missing",
                       "fetch the product tarball of this member again and untar it at the top of the tree")
    if "log" in listing.dirs and not index.get(join(m.rel, "log")).names():
        report.add(W, "log.empty", join(m.rel, "log"), "log/ is empty", "the CASA logs come with the products tarball")
    _check_scripts(m, report)
    _check_raw(index, m, report)
    if m.flavour is Flavour.PIPELINE:
        _check_pipeline(index, m, report)
    else:
        _check_manual_calibration(index, m, report)
    _check_qa(index, m, report)
    if products:
        _check_fits_folder(index, join(m.rel, "product"), report)
    _check_restored(index, m, report)


def _check_readme(index: TreeIndex, m: Member, report: Report) -> None:
    if m.readme is None:
        report.add(W, "readme.missing", join(m.rel, "README"), "no README in the member folder",
                   "the README comes with the products tarball (or as member.<MOUS>.README.txt)")
        return
    try:
        readme = parse_readme(index.path(m.readme))
    except ParseError as exc:
        report.add(W, "readme.unparsed", m.readme, exc.message, exc.hint)
        return
    info = report.details["members"][-1]
    info["readme"] = {"project": str(readme.project), "pi": readme.pi, "casa_version": readme.casa_version,
                      "sb_name": readme.sb_name, "qa2_notes": readme.qa2_notes}
    if m.project and readme.project != m.project:
        report.add(E, "readme.project-mismatch", m.readme,
                   f"README names project {readme.project} but the tree is {m.project}",
                   "this README belongs to another delivery; fetch the right one")
    for label, value in (("PI name", readme.pi), ("CASA version used for reduction", readme.casa_version_text)):
        if not value:
            report.add(W, "readme.field-missing", m.readme, f"no '{label}:' line", "see the QA2 notes in the archive")
    if readme.casa_version_text and readme.casa_version_problem:
        report.add(W, "readme.casa-version", m.readme,
                   f"line {readme.casa_version_line}: {readme.casa_version_problem}",
                   "the CASA version is in the pipeline manifest or the CASA logs in log/; ask the helpdesk")
    notes = len(readme.qa2_notes.splitlines())
    report.add(I, "readme.summary", m.readme,
               f"project {readme.project}, PI {readme.pi or '?'}, CASA {readme.casa_version or '?'}, "
               f"QA2 notes {notes} line{'s' if notes != 1 else ''}")


def _check_scripts(m: Member, report: Report) -> None:
    if m.flavour is Flavour.CYCLE0:
        return
    if m.script_for_pi is None:
        report.add(E, "script.no-scriptforpi", join(m.rel, "script/scriptForPI.py"), "scriptForPI.py is missing",
                   "fetch the product tarball of this member again; restore needs it")
    if m.flavour is Flavour.PIPELINE and m.restore_script is None:
        report.add(E, "script.no-restorescript", join(m.rel, "script"), "no casa_piperestorescript.py",
                   "fetch the product tarball of this member again; restore needs it")
    if m.flavour is Flavour.MANUAL and not m.calibration_scripts:
        report.add(E, "script.no-calibration-script", join(m.rel, "script"),
                   "no <EB>.ms.scriptForCalibration.py", "fetch the product tarball of this member again")


def _check_raw(index: TreeIndex, m: Member, report: Report) -> None:
    raw_rel = join(m.rel, "raw")
    if not m.has_raw:
        if m.ebs_in_scripts and m.flavour is not Flavour.CYCLE0:
            names = ", ".join(m.raw_tarball(eb) for eb in m.ebs_in_scripts)
            report.add(I, "raw.absent", raw_rel, f"raw/ not present (products only); {len(m.ebs_in_scripts)} "
                       f"ASDM(s) needed to restore", f"fetch {names} and untar them at the top of the tree")
        return
    if not m.ebs_in_raw:
        report.add(E, "raw.empty", raw_rel, "raw/ holds no ASDM (uid___A002_..._X....asdm.sdm)",
                   "untar the raw data tarballs at the top of the tree (the folder holding the project)")
    for eb in m.missing_raw:
        script = Path(m.calibration_scripts.get(eb) or m.restore_script or "the calibration").name
        report.add(E, "raw.missing-asdm", join(raw_rel, f"{eb.disk}.asdm.sdm"),
                   f"ASDM {eb} is missing: {script} needs it",
                   f"fetch {m.raw_tarball(eb)} and untar it at the top of the tree")
    for eb in m.semipass:
        report.add(I, "raw.semipass", m.asdms[eb],
                   f"ASDM {eb} has no calibration script: QA semipass data, scriptForPI skips it")
    for eb, rel in m.asdms.items():
        if rel.endswith(".ms.split"):
            if "table.dat" not in index.get(rel).files:
                report.add(E, "raw.truncated-ms", rel, "not a complete MS (no table.dat)",
                           "fetch the delivery tarball holding it again")
        else:
            _check_asdm(index, rel, eb, report, m.raw_tarball(eb))


def _check_asdm(index: TreeIndex, rel: str, eb, report: Report, tarball: str | None) -> None:
    """An ASDM is truncated when an XML table it declares (or every ASDM has) is missing or empty."""
    listing = index.get(rel)
    hint = f"fetch {tarball} again and untar it" if tarball else "copy the ASDM again from the archive"
    files = listing.files
    if files.get("ASDM.xml", 0) <= 0:
        report.add(E, "raw.truncated-asdm", rel, "ASDM.xml is missing or empty: not a complete ASDM", hint)
        return
    text = (index.path(rel) / "ASDM.xml").read_text(encoding="utf-8", errors="replace")
    declared = {name for name, rows in _ASDM_TABLE_RE.findall(text) if int(rows) > 0}
    missing = sorted(t for t in (set(ASDM_CORE_TABLES) | declared)
                     if files.get(f"{t}.xml", 0) <= 0 and files.get(f"{t}.bin", 0) <= 0)
    if missing:
        shown = ", ".join(f"{t}.xml" for t in missing[:6]) + (" ..." if len(missing) > 6 else "")
        report.add(E, "raw.truncated-asdm", rel,
                   f"ASDM is truncated: {len(missing)} table(s) missing or empty ({shown})", hint)
    if files.get("Main.xml", 0) > 0:
        main = (index.path(rel) / "Main.xml").read_text(encoding="utf-8", errors="replace")
        blobs = {re.sub(r"[:/]", "_", u) for u in _MAIN_BLOB_RE.findall(main)}
        binary = index.get(join(rel, "ASDMBinary")).files
        lost = sorted(b for b in blobs if binary.get(b, 0) <= 0)
        if lost:
            report.add(E, "raw.truncated-asdm", join(rel, "ASDMBinary"),
                       f"{len(lost)} of {len(blobs)} visibility file(s) named in Main.xml missing or empty "
                       f"(e.g. {lost[0]})", hint)


def _check_manual_calibration(index: TreeIndex, m: Member, report: Report) -> None:
    cal_rel = join(m.rel, "calibration")
    cal = index.get(cal_rel)
    names = set(cal.files) | set(cal.dirs)
    for eb in m.ebs_in_scripts:
        if not ({f"{eb.disk}.calibration.tgz", f"{eb.disk}.calibration"} & names):
            report.add(W, "calibration.missing-tables", join(cal_rel, f"{eb.disk}.calibration.tgz"),
                       f"no calibration tables for EB {eb}", "fetch the product tarball of this member again")


def _check_pipeline(index: TreeIndex, m: Member, report: Report) -> None:
    cal_rel = join(m.rel, "calibration")
    cal = index.get(cal_rel)
    plain = {plain_name(n): n for n in cal.files}
    if not any(p.endswith(".caltables.tgz") for p in plain):
        report.add(E, "pipeline.no-caltables", cal_rel, "no <MOUS>.session_N.caltables.tgz",
                   "fetch the product tarball of this member again; restore needs it")
    for eb in m.ebs_in_scripts:
        for suffix in (".ms.calapply.txt", ".ms.flagversions.tgz"):
            if eb.disk + suffix not in plain:
                report.add(E, "pipeline.missing-eb-file", join(cal_rel, eb.disk + suffix),
                           f"{eb.disk}{suffix} is missing (hifa_restoredata needs it for EB {eb})",
                           "fetch the product tarball of this member again")
    for p, name in sorted(plain.items()):
        where = join(cal_rel, name)
        try:
            if p.endswith(".ms.calapply.txt"):
                read_calapply(index.path(where))
            elif p.endswith("cont.dat"):
                _contdat_notes(parse_contdat(index.path(where)), where, report)
            elif p.endswith("flagtemplate.txt") or p.endswith("flagtargetstemplate.txt"):
                for note in parse_flagtemplate(index.path(where)).notes:
                    report.add(I, "pipeline.flagtemplate-note", where, note.split(": ", 1)[1])
        except ParseError as exc:
            severity = W if "flag" in p else E
            message = exc.message.replace(str(index.path(where)) + ": ", "").replace(name + ":", "line ")
            report.add(severity, "pipeline.unparsed", where, message, exc.hint or "fetch the product tarball again")
    manifests = [(rel, n) for rel, listing in index.under(m.rel) if not listing.in_table
                 for n in listing.files if n.endswith("pipeline_manifest.xml")]
    if manifests:
        present = {n for _, listing in index.under(m.rel) for n in (*listing.files, *listing.dirs)}
        for rel, name in manifests:
            _check_manifest(index, join(rel, name), present, report)


def _contdat_notes(contdat: ContDat, where: str, report: Report) -> None:
    """What cont.dat says beyond its ranges: its generation, all-continuum spws and the pipeline's flags."""
    spws = [(f, s, sr) for f, by_spw in contdat.fields.items() for s, sr in by_spw.items()]
    allcont = [f"{f} spw {s}" for f, s, sr in spws if sr.all_continuum]
    nocont = [f"{f} spw {s}" for f, s, sr in spws if sr.no_continuum]
    message = f"cont.dat generation {contdat.generation}: {len(contdat.fields)} field(s), {len(spws)} spw block(s)"
    if allcont:
        message += f"; all continuum: {', '.join(allcont)}"
    if nocont:
        message += f"; no continuum found: {', '.join(nocont)}"
    report.add(I, "pipeline.contdat", where, message)
    for field_name, spw, flags in contdat.flagged():
        report.add(I, "pipeline.contdat-flags", where, f"field {field_name} spw {spw}: Flags {' '.join(flags)}")


def _check_manifest(index: TreeIndex, rel: str, present: set[str], report: Report) -> None:
    try:
        root = ET.parse(index.path(rel)).getroot()
    except (ET.ParseError, OSError) as exc:
        report.add(E, "pipeline.manifest-unparsed", rel, f"manifest is not XML ({exc})",
                   "fetch the auxiliary tarball again")
        return
    for element in root.iter():
        name = element.get("name", "")
        if _MANIFEST_FILE_RE.search(name) and Path(name).name not in present:
            report.add(E, "pipeline.manifest-missing", rel, f"manifest lists {Path(name).name} ({element.tag}) "
                       "which is not in the member folder", "fetch the product and auxiliary tarballs again")


def _check_qa(index: TreeIndex, m: Member, report: Report) -> None:
    qa_rel = join(m.rel, "qa")
    if qa_rel not in index.dirs:
        return
    qa = index.get(qa_rel)
    names = [*qa.files, *qa.dirs]
    if m.flavour is Flavour.PIPELINE:
        if not any(".weblog." in n or n.startswith("pipeline-") for n in names):
            report.add(W, "qa.no-weblog", qa_rel, "no pipeline weblog (<MOUS>.weblog.tgz)",
                       "fetch the product tarball of this member again")
        return
    for eb in m.ebs_in_scripts:
        if not any(n.startswith(eb.disk + "_") for n in names):
            report.add(W, "qa.missing-report", join(qa_rel, f"{eb.disk}__qa2_part1.png"),
                       f"no QA2 report for EB {eb}", "fetch the product tarball of this member again")


def _check_fits_folder(index: TreeIndex, rel: str, report: Report) -> None:
    if rel not in index.dirs:
        return
    fits = sorted(n for n in index.get(rel).files if n.endswith((".fits", ".fits.gz")))
    if not fits:
        report.add(W, "product.no-fits", rel, "no FITS image in the products",
                   "fetch the product tarball of this member again")
    for name in fits:
        check_fits(index.path(join(rel, name)), join(rel, name), report)


def check_fits(path: Path, rel: str, report: Report) -> None:
    """A product FITS file opens with astropy, is not cut short, and (for images) carries a beam.

    Parameters
    ----------
    path : Path
        The FITS file.
    rel : str
        Its path relative to the validated tree (for the finding).
    report : Report
        The report the findings are added to.
    """
    from astropy.io import fits

    hint = "fetch the product tarball holding it again"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _check_fits(fits, path, rel, report, hint)
    except Exception as exc:  # astropy raises OSError, ValueError, VerifyError for broken files
        report.add(E, "product.unreadable", rel, f"not a readable FITS file ({type(exc).__name__}: {exc})", hint)


def _check_fits(fits, path: Path, rel: str, report: Report, hint: str) -> None:
    with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
        header = hdul[0].header
        if not path.name.endswith(".gz"):
            need = abs(header.get("BITPIX", 8)) // 8 if header.get("NAXIS", 0) else 0
            for i in range(1, header.get("NAXIS", 0) + 1):
                need *= header.get(f"NAXIS{i}", 0)
            end, size = hdul.fileinfo(0)["datLoc"] + need, path.stat().st_size
            if end > size:
                report.add(E, "product.truncated", rel, f"FITS data cut short ({size} of {end} bytes)", hint)
                return
        if any(k in path.name for k in _BEAM_FREE) or "BMAJ" in header:
            return
        if not any(h.name == "BEAMS" for h in hdul):
            report.add(W, "product.no-beam", rel, "image has no beam (no BMAJ/BMIN/BPA, no BEAMS table)",
                       "the image was not restored with a clean beam; check how it was made")


def _check_restored(index: TreeIndex, m: Member, report: Report) -> None:
    if not m.restored:
        return
    cal_rel = join(m.rel, "calibrated")
    found = {n for rel, listing in index.under(cal_rel) if rel.count("/") - cal_rel.count("/") <= 1
             for n in (*listing.dirs, *listing.links)
             if n.endswith((".ms.split.cal", ".ms")) or n == "calibrated.ms"}
    if not found:
        report.add(W, "calibrated.empty", cal_rel, "calibrated/ holds no calibrated MS (a failed restore?)",
                   "delete calibrated/ and run `almadeliver restore` again (scriptForPI stops when it exists)")
        return
    for eb in m.total_power_ebs:   # scriptForPI v2.x leaves a TP EB's calibrated data in <EB>.calibration/
        if eb not in m.ebs_in_raw:
            continue
        workdir, product = join(cal_rel, f"{eb.disk}.calibration"), f"{eb.disk}{TP_CALIBRATED_SUFFIX}"
        if product not in index.get(workdir).dirs:
            report.add(W, "calibrated.missing-eb", join(workdir, product),
                       f"no calibrated data for Total Power EB {eb} (its SD script ends with {product})",
                       "delete calibrated/ and run `almadeliver restore` again (scriptForPI stops when it exists)")
    if m.flavour is Flavour.CYCLE0:
        for eb in m.ebs_in_raw:
            if f"{eb.disk}.ms.split.cal" not in found:
                report.add(W, "calibrated.missing-eb", join(cal_rel, f"{eb.disk}.ms.split.cal"),
                           f"no calibrated MS for EB {eb}", "fetch the Cycle 0 delivery tarballs again")


# -- staff reduction area -----------------------------------------------------------------------------
def _check_staff(index: TreeIndex, area: StaffArea, report: Report) -> None:
    rel = area.rel or "."
    folders = index.get(area.rel).dirs
    report.details["staff_areas"].append({
        "path": rel, "mous": str(area.ous) if area.ous else None,
        "ebs": [str(e) for e in sorted(uid for eb in area.ebs for uid in eb.asdms)],
        "combination": "Combination" in folders, "imaging": "Imaging" in folders,
    })
    if area.ous is None:
        report.add(W, "staff.naming", rel, "the reduction area is not named after its MOUS (uid___A001_X..._X...)",
                   "the packager expects <MOUS uid___>/Calibration_X<EB tail>/")
    if not area.ebs:
        report.add(E, "staff.no-calibration", rel, "no Calibration_X<EB tail>/ folder",
                   "make one Calibration_X<tail> folder per EB and move its ASDM there")
    for eb in area.ebs:
        cal_rel = area.rel_path(eb.folder)
        if not eb.asdms:
            report.add(E, "staff.no-asdm", cal_rel, f"no ASDM (uid___A002_..._{eb.tail}) in {eb.folder.name}",
                       "move the EB's ASDM into its Calibration folder")
        for uid, asdm in eb.asdms.items():
            if not eb.fits(uid):
                report.add(E, "staff.tail-mismatch", area.rel_path(asdm),
                           f"ASDM {uid} sits in Calibration_{eb.tail} (its tail is {uid.tail})",
                           f"move it to Calibration_{uid.tail}")
            _check_asdm(index, area.rel_path(asdm), uid, report, None)
    _staff_checklist(area, report)


def _staff_checklist(area: StaffArea, report: Report) -> None:
    """The final checklist of the `check` command (scripts, logs, qa2, README, images), under this root."""
    from .staff import check_area

    for finding in check_area(area).findings:
        finding.path = join(area.rel, finding.path) if area.rel else finding.path
        report.findings.append(finding)


__all__ = ["validate", "check_fits", "ASDM_CORE_TABLES"]
