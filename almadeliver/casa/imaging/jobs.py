"""Imaging jobs from the delivered product tclean calls: ALMA's product names, the selection
(--spw/--field/--specmode, refused when the delivery did not image it), the vis pointed at the
restored MSs and the overrides applied.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ...delivery.calls import TaskCall
from ...delivery.commandslog import product_tclean_calls
from ...errors import TreeError, UsageError
from .delivered import _product_base, delivered_product
from .overrides import PER_SPW, Overrides, _narrow_spw, apply_overrides, spw_ids
from .restored import Restored, calibrated_column, restored_mss, rewrite_vis


@dataclass
class ImagingJob:
    """One image to make: the tclean call as it will run, where it came from, and its FITS names."""

    name: str                       # product base name, e.g. <MOUS>.src_sci.spw0.cube.I
    source: str                     # e.g. uid___A001_X1_X2.casa_commands.log:12
    field: str
    spws: list[str]
    kind: str                       # cube, mfs or cont (ALMA's product naming)
    tclean: dict[str, Any]          # the exact tclean arguments (vis rewritten, overrides applied)
    exports: dict[str, str]         # CASA image suffix (after imagename) -> FITS file name
    delivered: dict[str, str | None] = field(default_factory=dict)  # FITS name -> delivered product
    changed: dict[str, Any] = field(default_factory=dict)            # tclean args the overrides changed
    contsub: list[dict[str, Any]] = field(default_factory=list)      # uvcontsub runs before tclean
    flagtargets: list[dict[str, Any]] = field(default_factory=list)  # target copies flagged before (hifa_flagtargets)
    reads: list[dict[str, str]] = field(default_factory=list)        # per MS tclean opens: vis, datacolumn, why
    translated_from: dict[str, Any] | None = None   # a clean() call: its arguments and the translation notes
    # continuum image whose channels come from a user's cont.dat: per vis, MS spw id -> [(low Hz, high Hz, frame)]
    cont_ranges: list[dict[str, list[tuple[float, float, str]]]] = field(default_factory=list)
    # --moments: {"moments": [0, 1, 8], "line_free": [(low Hz, high Hz, frame)]} (cont.dat ranges of the cube's spw)
    moments: dict[str, Any] = field(default_factory=dict)

    @property
    def imagename(self) -> str:
        """The image's name (tclean's ``imagename``)."""
        return self.tclean["imagename"]


def product_name(imagename: str) -> str:
    """ALMA's product base for a pipeline imagename: the stage token and ``.iterN`` dropped.

    ``uid___A001_X1_X3.s36_0.src_sci.spw0.cube.I.iter1`` -> ``uid___A001_X1_X3.src_sci.spw0.cube.I``

    Parameters
    ----------
    imagename : str
        The tclean imagename.

    Returns
    -------
    str
        The product's base name.
    """
    base = Path(str(imagename)).name
    base = re.sub(r"\.iter\d+$", "", base)
    return re.sub(r"\.s\d+(?:_\d+)*\.", ".", base, count=1)


def image_kind(call: TaskCall) -> str:
    """cube, mfs or cont: from the name token the pipeline writes, else from specmode and the spws.

    Parameters
    ----------
    call : TaskCall
        A tclean call.

    Returns
    -------
    str
        ``cube``, ``mfs`` or ``cont``.
    """
    name = str(call.kwargs.get("imagename", ""))
    for kind in ("cube", "cont", "mfs"):
        if f".{kind}." in name or name.endswith(f".{kind}"):
            return kind
    if call.kwargs.get("specmode", "mfs") == "cube":
        return "cube"
    return "cont" if len(spw_ids(call.kwargs.get("spw", ""))) > 1 else "mfs"


def export_names(base: str, tclean: dict[str, Any]) -> dict[str, str]:
    """CASA image suffix -> ALMA product FITS name (pbcor and pb; mtmfs carries tt0).

    Parameters
    ----------
    base : str
        The product's base name (``product_name``).
    tclean : dict[str, Any]
        The tclean arguments (deconvolver, specmode).

    Returns
    -------
    dict[str, str]
        CASA image suffix -> FITS file name.
    """
    if tclean.get("deconvolver") == "mtmfs" and int(tclean.get("nterms", 2) or 2) > 1:
        return {".image.tt0.pbcor": f"{base}.tt0.pbcor.fits", ".pb.tt0": f"{base}.pb.tt0.fits"}
    return {".image.pbcor": f"{base}.pbcor.fits", ".pb": f"{base}.pb.fits"}


def jobs_from_calls(calls: Iterable[TaskCall], member: Path, source: str, ov: Overrides,
                    restored: Restored | None = None, check_vis: bool = True) -> list[ImagingJob]:
    """ImagingJobs for the product tclean calls, selected and overridden; refuses unknown spw/field.

    Parameters
    ----------
    calls : Iterable[TaskCall]
        The delivered tclean calls.
    member : Path
        The member folder (restored, for the imaging functions).
    source : str
        ``pipeline`` or ``script``.
    ov : Overrides
        The user's overrides of the delivered tclean calls.
    restored : Restored | None, default None
        The restored MSs (None: found under calibrated/).
    check_vis : bool, default True
        Require the restored MSs (False for a listing).

    Returns
    -------
    list[ImagingJob]
        One job per product image.

    Raises
    ------
    TreeError
        No call made a product image (no imagename ending .iter1).
    UsageError
        The selection (--spw, --field, --specmode) leaves no image, or cube options are given and no cube is
        selected.
    """
    member = Path(member)
    calls = product_tclean_calls(list(calls))
    if not calls:
        raise TreeError(f"{source} holds no product tclean call (no imagename ending .iter1)",
                        "is this the pipeline's casa_commands.log?")
    _check_selection(calls, ov, source)
    jobs: list[ImagingJob] = []
    for call in calls:
        kind = image_kind(call)
        fieldname = str(call.kwargs.get("field", ""))
        spws = spw_ids(call.kwargs.get("spw", ""))
        if ov.fields and fieldname not in ov.fields:
            continue
        if ov.specmode and kind != ov.specmode:
            continue
        name = product_name(call.kwargs["imagename"])
        kw = dict(call.kwargs)
        if ov.spws:
            keep = [s for s in spws if s in ov.spws]
            if not keep:
                continue
            if keep != spws:
                kw["spw"] = _narrow_spw(kw.get("spw", ""), set(keep))
                name = re.sub(r"\.spw[\d_]+\.", f".spw{'_'.join(keep)}.", name, count=1)
                spws = keep
        # recent pipeline deliveries prefix the products with 'member.': a narrowed spw set keeps it
        if _product_base(member, product_name(call.kwargs["imagename"])).startswith("member."):
            name = f"member.{name}"
        kw["imagename"] = name + ".iter1"
        kw["pbcor"] = True
        reads: list[dict[str, str]] = []
        if check_vis:
            kw["vis"], kw["spw"] = rewrite_vis(kw.get("vis", ""), kw.get("spw", ""),
                                               restored or restored_mss(member), member)
            kw["datacolumn"], reads = _read_columns(call, kw["vis"], source)
        kw, changed = apply_overrides(kw, kind, ov, spws)
        exports = export_names(name, kw)
        jobs.append(ImagingJob(
            name=name, source=f"{source}:{call.line}", field=fieldname, spws=spws, kind=kind, tclean=kw,
            exports=exports, changed=changed, reads=reads,
            delivered={f: (str(p) if (p := delivered_product(member, f)) else None) for f in exports.values()},
        ))
    if not jobs:
        raise UsageError("the selection leaves no image to make",
                         f"run almadeliver image {member} --list to see the delivered images")
    given = ov.spectral_options()
    if given and not any(j.kind == "cube" for j in jobs):
        raise UsageError(f"{'/'.join(given)} apply to cubes, and no cube is selected",
                         f"drop {'/'.join(given)} or select a cube (--specmode cube)")
    return jobs


def _check_per_spw(ov: Overrides, known_spws: list[str]) -> None:
    """The per-spw options (--nbin, --width, --start, --nchan, --restfreq, --range) name imaged spws, and
    (as hif_makeimlist asks of nbins) a per-spw --nbin has an entry for every spw chosen with --spw."""
    per_spw = {"--nbin": ov.nbins, **{PER_SPW[name][0]: ov.per_spw(name) for name in PER_SPW}}
    for flag, values in per_spw.items():
        for spw in sorted((s for s in values if s is not None), key=int):
            if spw not in known_spws:
                raise UsageError(f"{flag} names spw {spw}, which is not among the imaged spws "
                                 f"({', '.join(known_spws)})", "use the spw ids of the product names")
    nbins = {s for s in ov.nbins if s is not None}
    missing = [s for s in ov.spws or [] if s not in nbins]
    if nbins and missing:
        raise UsageError(f"--nbin {ov.nbin!r} has no entry for spw {', '.join(missing)} chosen with --spw",
                         "give every chosen spw an entry, spw:1 for no binning")


def continuum_subtracted(call: TaskCall) -> bool:
    """True when a delivered tclean call imaged continuum-subtracted data: ``<EB>_targets_line.ms``
    (hif_uvcontsub, PL2022 on) holds the line data in DATA, the continuum fitted on cont.dat's ranges.

    Parameters
    ----------
    call : TaskCall
        A delivered tclean call.

    Returns
    -------
    bool
        True when its vis are continuum-subtracted.
    """
    vis = call.kwargs.get("vis", "")
    return any(str(v).rstrip("/").endswith("_targets_line.ms") for v in (vis if isinstance(vis, (list, tuple)) else [vis]))


def _read_columns(call: TaskCall, mss: list[str], source: str) -> tuple[str, list[dict[str, str]]]:
    """The datacolumn tclean must read on the restored MSs (whatever the delivered call said: the
    pipeline's ``<EB>_targets.ms`` hold the calibrated data in DATA, ``working/<EB>.ms`` in
    CORRECTED_DATA), and what each MS is read for."""
    columns = {ms: calibrated_column(ms) for ms in mss}
    delivered = call.kwargs.get("datacolumn", "corrected")
    reads = [{"vis": ms, "datacolumn": c, "delivered": f"datacolumn={delivered!r}"} for ms, c in columns.items()]
    # one column per tclean call: 'corrected' when any MS needs it (tclean reads DATA in the MSs that
    # have no CORRECTED_DATA column, which the CASA child checks), else 'data'
    return ("corrected" if "corrected" in columns.values() else "data"), reads


def _check_selection(calls: list[TaskCall], ov: Overrides, source: str) -> None:
    """Refuse spws and fields the delivery did not image (checked before any CASA starts)."""
    known_spws = sorted({s for c in calls for s in spw_ids(c.kwargs.get("spw", ""))}, key=int)
    known_fields = sorted({str(c.kwargs.get("field", "")) for c in calls})
    _check_per_spw(ov, known_spws)
    for spw in ov.spws or []:
        if spw not in known_spws:
            raise UsageError(f"spw {spw} is not among the imaged spws of this delivery ({', '.join(known_spws)})",
                             "pick one of those with --spw (the ids in the product file names)")
    for name in ov.fields or []:
        if name not in known_fields:
            raise UsageError(f"field {name!r} is not among the imaged fields of this delivery "
                             f"({', '.join(known_fields)})", "pick one of those with --field")
