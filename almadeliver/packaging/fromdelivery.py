"""Fill a staff reduction area from a restored and re-imaged delivery (staff re-packaging a re-processed MOUS).

What goes where, as staff lay out their own reduction (delivery/staff.py)::

    README                          the reducer's part of the delivered README, and a re-processing note
    script/scriptForPI.py           the delivery's own scriptForPI.py (it restored these data)
    Calibration_X<tail>/            per EB: <EB> (the ASDM from raw/), <EB>.ms.scriptForCalibration.py,
                                    casa-<time>.log (the restore log's part for this EB), qa2/ (the
                                    delivered qa/<EB>__*), the calibration tables the restore made
                                    (calibrated/<EB>.calibration/, intermediate MSs left out) and the
                                    delivered calibration plots
    Combination/calibrated/         several EBs: *.ms.split.cal, the *.ms.split.fluxscale of each EB,
                                    calibrated.ms, allFluxes.txt, scriptForFluxCalibration.py,
                                    casa-<time>.log (its part of the log); one EB: its .ms.split.cal
                                    goes into its Calibration_X folder
    Imaging/                        scriptForImaging.py, casa-<time>.log (of `almadeliver image`),
                                    *.pbcor.fits and *.flux.fits from the images folder

Nothing already in the area is overwritten: fill a freshly prepared one.
"""
from __future__ import annotations

import json
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ..casa.restore import WORK, script_logs
from ..delivery.layout import Flavour, Member, find_members, plain_name
from ..delivery.readme import reducer_section
from ..delivery.staff import FLUX_SCRIPT, IMAGING_SCRIPT, load_area
from ..errors import TreeError, UsageError
from ..ids import Uid
from .package import SCRIPT_FOR_PI

_LOG_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)")


@dataclass
class StaffFill:
    """What ``staff_from_delivery`` put in the area (paths relative to it)."""

    area: Path
    member: Path
    restore_log: Path
    images: Path
    placed: list[str] = field(default_factory=list)


def staff_from_delivery(member: Path, images: Path, area: Path, restore_log: Path | None = None) -> StaffFill:
    """Fill the prepared ``area`` from a restored manual ``member`` and the ``images`` folder that
    ``almadeliver image`` wrote. ``restore_log`` defaults to the reducer's full run the delivery ships
    (``log/<MOUS>.scriptForPI.log``: a restore runs the calibration scripts in applyonly mode, not
    every step), else the member's latest restore CASA log."""
    m = _manual_member(Path(member))
    staff = load_area(area)
    ebs = m.ebs_in_scripts
    folders = {uid: eb.folder.name for uid in ebs for eb in staff.ebs if eb.fits(uid)}
    if sorted(folders) != ebs or len(staff.ebs) != len(ebs):
        raise UsageError(f"the area {staff.root} does not match the delivery's EBs "
                         f"({', '.join(eb.archive for eb in ebs)})",
                         f"prepare it with 'almadeliver prepare {m.mous.archive if m.mous else 'MOUS'} "
                         + " ".join(f"--eb {eb.archive}" for eb in ebs) + "' in a new folder")
    reducer = m.path / "log" / f"{m.mous.disk}.scriptForPI.log" if m.mous else None
    log = Path(restore_log) if restore_log else (
        reducer if reducer is not None and reducer.is_file() else _latest_restore_log(m.path))
    parts = script_logs(log)
    images = Path(images)
    fill = StaffFill(staff.root, m.path, log, images)
    put = _Placer(staff.root, fill.placed)

    # the README `image` wrote beside the images carries their new beams and rms (else the delivered one)
    readme = images / "README" if (images / "README").is_file() else m.path / "README"
    put.text(reducer_section(_read(readme)) + _note(log, images), "README")
    put.copy(m.path / m.script_for_pi, f"script/{SCRIPT_FOR_PI}")
    for eb in ebs:
        _fill_eb(put, m, eb, folders[eb], parts, log)
    if len(ebs) > 1:
        _fill_combination(put, m, parts, log)
    _fill_imaging(put, m, images)
    return fill


def _manual_member(path: Path) -> Member:
    members = find_members(path)
    if len(members) != 1:
        raise UsageError(f"{path} holds {len(members)} member folders", "give one member folder (member.uid___...)")
    m = members[0]
    if m.flavour is not Flavour.MANUAL or not m.script_for_pi or not m.readme:
        raise UsageError(f"{m.path} is not a manually calibrated delivery with scriptForPI.py and README "
                         f"({m.flavour.value})", "staff areas are filled from manual deliveries")
    if not (m.path / "calibrated").is_dir():
        raise TreeError(f"{m.path} is not restored (no calibrated/)", f"run 'almadeliver restore {m.path}' first")
    return m


def _latest_restore_log(member: Path) -> Path:
    logs = sorted((member / WORK).glob("casa-*.log"))
    if not logs:
        raise TreeError(f"no restore log in {member / WORK}", f"run 'almadeliver restore {member}' first")
    return logs[-1]


def _session_header(log: Path) -> str:
    """The start of a CASA log up to its "CASA Version" line: each part cut from the restore log
    starts with it, as a CASA session's own log does (the checklist compares the versions)."""
    lines = log.read_text(errors="replace").splitlines(keepends=True)
    for k, line in enumerate(lines[:200]):
        if "CASA Version" in line:
            return "".join(lines[: k + 1])
    return ""


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def _note(restore_log: Path, images: Path) -> str:
    """The README paragraph saying how these data were re-processed (with the imaging overrides) and
    each re-made image's beam and rms beside the delivered one's (``image_record.json``)."""
    from ..casa.imaging.compare import README_MEASURE, comparisons_from_record, readme_numbers_line

    record = images / "image_record.json"
    overrides = json.loads(record.read_text()).get("overrides") if record.is_file() else None
    how = f" with {', '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else ""
    measure = README_MEASURE
    if not record.is_file() and (images / "selfcal_record.json").is_file():   # image --selfcal
        from ..casa.selfcal import SELFCAL_MEASURE

        record, how, measure = images / "selfcal_record.json", " and self-calibrated (image --selfcal)", SELFCAL_MEASURE
    comparisons = comparisons_from_record(record) if record.is_file() else []
    numbers = "".join(f"{readme_numbers_line(c)}\n" for c in comparisons)
    return (f"\nRe-processing: calibrated data restored with scriptForPI.py (CASA log {restore_log.name}); "
            f"images re-made from scriptForImaging.py{how}.\n"
            + (f"Re-made images ({measure}; the delivered image beside each):\n{numbers}" if numbers else ""))


def _log_name(text: str) -> str:
    """``casa-YYYYMMDD-HHMMSS.log`` from the first line's time, as CASA names its logs."""
    m = _LOG_TIME.match(text)
    return f"casa-{''.join(m.groups()[:3])}-{''.join(m.groups()[3:])}.log" if m else "casa.log"


def _fill_eb(put: "_Placer", m: Member, eb: Uid, folder: str, parts: dict[str, str], log: Path) -> None:
    if eb.disk not in parts:
        raise TreeError(f"the restore log {log} does not show the calibration of {eb.archive}",
                        f"restore again: almadeliver restore {m.path}")
    if eb not in m.asdms:
        raise TreeError(f"{m.path}/raw has no ASDM of {eb.archive}", f"download {m.raw_tarball(eb)} and untar it")
    put.copy(m.path / m.asdms[eb], f"{folder}/{eb.disk}")
    script = m.path / m.calibration_scripts[eb]
    put.copy(script, f"{folder}/{plain_name(script.name)}")
    put.text(_session_header(log) + parts[eb.disk], f"{folder}/{_log_name(parts[eb.disk])}")
    for qa in sorted((m.path / "qa").glob(f"{eb.disk}__*")):
        put.copy(qa, f"{folder}/qa2/{qa.name}")
    work = m.path / "calibrated" / f"{eb.disk}.calibration"
    intermediate = {eb.disk, f"{eb.disk}.ms", f"{eb.disk}.ms.split"}   # the ASDM link and the MSs
    for path in sorted(work.iterdir()) if work.is_dir() else []:
        if path.name not in intermediate and not path.is_symlink():
            put.copy(path, f"{folder}/{path.name}")
    plots = m.path / "calibration" / f"{eb.disk}.calibration.plots.tgz"
    if plots.is_file():
        put.untar(plots, f"{eb.disk}.calibration.plots/", folder)
    split_cal = m.path / "calibrated" / f"{eb.disk}.ms.split.cal"
    if len(m.ebs_in_scripts) == 1 and split_cal.is_dir():    # one EB: its .split.cal stays in its folder
        put.copy(split_cal, f"{folder}/{split_cal.name}")


def _fill_combination(put: "_Placer", m: Member, parts: dict[str, str], log: Path) -> None:
    if FLUX_SCRIPT not in parts:
        raise TreeError(f"the restore log {log} does not show {FLUX_SCRIPT}", f"restore again: almadeliver restore {m.path}")
    cal = m.path / "calibrated"
    for path in sorted(cal.glob("*.ms.split.cal")) + [cal / "calibrated.ms", cal / "allFluxes.txt"]:
        if path.exists():
            put.copy(path, f"Combination/calibrated/{path.name}")
    for eb in m.ebs_in_scripts:     # the manual: copy each uid*.ms.split.fluxscale next to the .split.cal
        fluxscale = cal / f"{eb.disk}.calibration" / f"{eb.disk}.ms.split.fluxscale"
        if fluxscale.exists():
            put.copy(fluxscale, f"Combination/calibrated/{fluxscale.name}")
    put.copy(m.path / "script" / FLUX_SCRIPT, f"Combination/calibrated/{FLUX_SCRIPT}")
    put.text(_session_header(log) + parts[FLUX_SCRIPT], f"Combination/calibrated/{_log_name(parts[FLUX_SCRIPT])}")


def _fill_imaging(put: "_Placer", m: Member, images: Path) -> None:
    fits = sorted(p for p in images.glob("*.fits") if p.name.endswith((".pbcor.fits", ".flux.fits")))
    logs = sorted((images / "logs").glob(f"*{IMAGING_SCRIPT}.casa.log"))
    if not fits or len(logs) != 1:
        raise TreeError(f"{images} holds no images and log of {IMAGING_SCRIPT}",
                        f"make them with 'almadeliver image {m.path} --out {images}'")
    put.copy(m.path / "script" / IMAGING_SCRIPT, f"Imaging/{IMAGING_SCRIPT}")
    text = _read(logs[0])
    put.text(text, f"Imaging/{_log_name(text)}")
    for path in fits:
        put.copy(path, f"Imaging/{path.name}")


class _Placer:
    """Copies into the area, refusing to overwrite, and records what it placed."""

    def __init__(self, root: Path, placed: list[str]):
        self.root, self.placed = root, placed

    def _dest(self, rel: str) -> Path:
        dest = self.root / rel
        if dest.exists() or dest.is_symlink():
            raise UsageError(f"the area already holds {rel}", "fill a freshly prepared area (another --root)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.placed.append(rel)
        return dest

    def copy(self, src: Path, rel: str) -> None:
        dest = self._dest(rel)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest)

    def text(self, text: str, rel: str) -> None:
        self._dest(rel).write_text(text)

    def untar(self, tgz: Path, top: str, folder: str) -> None:
        """The files under ``top`` in ``tgz``, placed in ``folder`` without that top folder."""
        with tarfile.open(tgz) as tar:
            for info in tar:
                if info.isfile() and info.name.startswith(top) and ".." not in Path(info.name).parts:
                    data = tar.extractfile(info)
                    assert data is not None
                    self._dest(f"{folder}/{info.name[len(top):]}").write_bytes(data.read())
