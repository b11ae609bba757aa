"""What a member folder of a delivery holds for re-imaging: the commands log or imaging script, the
delivered products, cont.dat (the user's or the delivered one) and the target flag templates.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...errors import TreeError, UsageError
from .restored import _EB_RE


def commands_log(member: Path) -> Path | None:
    """The pipeline's ``log/*casa_commands.log`` of a member folder, if delivered.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).

    Returns
    -------
    Path | None
        The log, or None.
    """
    logs = sorted((Path(member) / "log").glob("*casa_commands.log"))
    return logs[0] if logs else None


def imaging_script(member: Path) -> Path | None:
    """The manual delivery's ``script/*scriptForImaging.py`` of a member folder, if delivered.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).

    Returns
    -------
    Path | None
        The script, or None.
    """
    found = sorted((Path(member) / "script").glob("*scriptForImaging.py"))
    return found[0] if found else None


def member_source(member: Path, source: str = "auto") -> str:
    """pipeline or script: what the images are re-made from (``auto``: the commands log if present).

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    source : str, default "auto"
        ``auto``, ``pipeline`` or ``script``.

    Returns
    -------
    str
        ``pipeline`` or ``script``.

    Raises
    ------
    UsageError
        ``member`` is not a folder, or ``source`` is not auto, pipeline or script.
    TreeError
        The member has no casa_commands.log (``pipeline``), or neither it nor scriptForImaging.py
        (``auto``).
    """
    member = Path(member)
    if not member.is_dir():
        raise UsageError(f"{member} is not a folder", "give the member.uid___... folder of a delivery")
    log, script = commands_log(member), imaging_script(member)
    if source == "pipeline" or (source == "auto" and log):
        if not log:
            raise TreeError(f"{member}/log has no casa_commands.log", "use --from script for manual deliveries")
        return "pipeline"
    if source in ("script", "auto"):
        if not script:
            raise TreeError(f"{member} has neither log/*casa_commands.log nor script/scriptForImaging.py",
                            "is this a member folder of a delivery?")
        return "script"
    raise UsageError(f"--from {source} is unknown", "use auto, pipeline or script")


def _product_base(member: Path, name: str) -> str:
    """The product base as delivered: recent pipeline deliveries prefix it with ``member.``."""
    prefixed = f"member.{name}"
    if any(p.name.startswith(prefixed + ".") for p in (Path(member) / "product").glob(f"{prefixed}.*")):
        return prefixed
    return name


def delivered_product(member: Path, fits_name: str) -> Path | None:
    """The delivered ``product/<fits_name>`` (or its ``.gz``), if it is there.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    fits_name : str
        The product's FITS name.

    Returns
    -------
    Path | None
        The file, or None.
    """
    for cand in (Path(member) / "product" / fits_name, Path(member) / "product" / (fits_name + ".gz")):
        if cand.is_file():
            return cand
    return None


def target_flag_templates(member: Path) -> dict[str, Path]:
    """EB -> its science-target flag template: the user's copy in calibrated/working/ (where the
    restore puts them for editing, seed 003) if present, else the delivered
    calibration/<EB>_flagtargetstemplate.txt (``_`` or ``.`` before ``flagtargetstemplate``).

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).

    Returns
    -------
    dict[str, Path]
        EB (``uid___...``) -> flag template file.
    """
    found: dict[str, Path] = {}
    for folder in (Path(member) / "calibration", Path(member) / "calibrated" / "working"):  # later wins
        for path in sorted(folder.glob("*flagtargetstemplate.txt")) if folder.is_dir() else []:
            m = _EB_RE.match(path.name)
            if m and path.name[len(m.group(0)):] in ("_flagtargetstemplate.txt", ".flagtargetstemplate.txt"):
                found[m.group(0)] = path
    return found


def user_contdat(member: Path) -> Path | None:
    """The user's cont.dat: ``calibrated/working/cont.dat``. As in the pipeline (seed 003: "If a file
    called cont.dat ... is present in the directory where pipeline imaging tasks are run, it will be
    used"), it replaces the delivered ranges, for the continuum images as well as --contsub.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).

    Returns
    -------
    Path | None
        The file, or None when the user has none.
    """
    found = Path(member) / "calibrated" / "working" / "cont.dat"
    return found if found.is_file() else None


def contdat_file(member: Path) -> Path | None:
    """The cont.dat in force: the user's (``user_contdat``), else the delivered calibration/<MOUS>.cont.dat.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).

    Returns
    -------
    Path | None
        The file, or None.
    """
    user = user_contdat(member)
    if user is not None:
        return user
    found = sorted((Path(member) / "calibration").glob("*cont.dat"))
    return found[0] if found else None


def _product_objects(member: Path) -> set[str]:
    """The OBJECT (field name) of every delivered FITS product."""
    from astropy.io import fits

    names = set()
    for path in sorted((Path(member) / "product").glob("*.fits*")):
        try:
            obj = fits.getheader(path).get("OBJECT")
        except OSError:
            continue
        if obj:
            names.add(str(obj).strip())
    return names


def contdat_ranges(contdat: Any) -> dict[str, dict[str, list[tuple[float, float, str]]]]:
    """field -> spw -> [(low Hz, high Hz, frame)] from a parsed cont.dat, in any generation.

    A range written without a frame is in the frame the pipeline reads it in (``ContDat.default_frame``:
    TOPO for the earliest generation); an all-continuum spw (``ALL``, ``Flags: ALLCONT``) is the whole
    spw, ``(0, inf, frame)``; a spw where no continuum was found (``NONE``, or no range) has no range.

    Parameters
    ----------
    contdat : Any
        A parsed cont.dat (``ContDat``).

    Returns
    -------
    dict[str, dict[str, list[tuple[float, float, str]]]]
        field -> spw -> [(low Hz, high Hz, frame)].
    """
    out: dict[str, dict[str, list[tuple[float, float, str]]]] = {}
    for f, spws in contdat.fields.items():
        out[f] = {}
        for spw, sr in spws.items():
            frames = [r.frame or contdat.default_frame for r in sr.ranges]
            if sr.all_continuum:
                out[f][str(spw)] = [(0.0, math.inf, frames[0] if frames else "TOPO")]
            else:
                out[f][str(spw)] = [(r.low_hz, r.high_hz, fr) for r, fr in zip(sr.ranges, frames)]
    return out
