"""Re-imaging a restored delivery: the delivered tclean calls, the user's overrides, CASA per image.

Pipeline deliveries: the product tclean calls come from ``log/<MOUS>.casa_commands.log`` (literal
parser, never eval); each becomes an ``ImagingJob`` (the call with vis pointed at the restored MSs
and the overrides applied, plus ALMA's product names for the exported FITS). Manual deliveries:
``script/scriptForImaging.py`` runs through the legacy shim with ``tclean`` wrapped so that every
call it makes gets the same overrides (see ``run_script_images``).

Everything up to ``plan_images`` needs no CASA; spw and field are checked against what the delivery
imaged before any CASA process starts.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..delivery.calls import TaskCall
from ..delivery.commandslog import product_tclean_calls, read_commands
from ..errors import TreeError, UsageError
from ..ids import UID_DISK_PATTERN

_EB_RE = re.compile(UID_DISK_PATTERN)
_SPECMODES = ("cube", "mfs", "cont")


# -- overrides ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overrides:
    """What the user changes (None = keep the delivered value); spw/field/specmode select images."""

    robust: float | None = None
    uvtaper: str | None = None
    niter: int | None = None
    threshold: str | None = None
    nbin: int | None = None
    width: str | None = None
    spw: str | None = None
    field: str | None = None
    specmode: str | None = None
    cell: str | None = None
    imsize: int | None = None
    contsub: bool = False

    def __post_init__(self) -> None:
        if self.nbin is not None and self.width is not None:
            raise UsageError("--nbin and --width both set", "give one of them")
        if self.nbin is not None and self.nbin < 1:
            raise UsageError(f"--nbin {self.nbin} is not a positive channel count", "use e.g. --nbin 2")
        if self.specmode is not None and self.specmode not in _SPECMODES:
            raise UsageError(f"--specmode {self.specmode} is unknown", "use cube, mfs or cont")
        for name, unit in (("uvtaper", "arcsec"), ("threshold", "Jy"), ("cell", "arcsec")):
            value = getattr(self, name)
            if value is not None and _quantity(value, unit) is None:
                raise UsageError(f"--{name} {value!r} is not a quantity in {unit} units",
                                 f"e.g. --{name} 0.5{unit if unit != 'Jy' else 'mJy'}")
        if self.width is not None and not str(self.width).lstrip("-").isdigit() \
                and _quantity(self.width, "Hz") is None and _quantity(self.width, "km/s") is None:
            raise UsageError(f"--width {self.width!r} is neither a channel count nor a frequency or "
                             "velocity width", "e.g. --width 2, --width 1.2MHz or --width 0.5km/s")

    def changes(self) -> dict[str, Any]:
        """The options the user set (for the record)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}

    @property
    def spws(self) -> list[str] | None:
        """The ``--spw`` selection as a list of spw ids, or None (all)."""
        return _split(self.spw) if self.spw else None

    @property
    def fields(self) -> list[str] | None:
        """The ``--field`` selection as a list of field names, or None (all)."""
        return _split(self.field) if self.field else None


def _split(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def _quantity(text: Any, unit: str):
    """``text`` as an astropy Quantity convertible to ``unit``, else None."""
    from astropy import units as u

    try:
        q = u.Quantity(str(text).strip())
        q.to(unit)
        return q
    except (TypeError, ValueError, u.UnitsError):
        return None


def _format_quantity(value: float, unit) -> str:
    return f"{value:.12g}{unit.to_string().replace(' ', '')}"


# -- spw strings ---------------------------------------------------------------------------------------
def spw_ids(spw: Any) -> list[str]:
    """The spw ids in a tclean spw= value: '0', '0,1', '17:90.1~90.2GHz;90.5~90.6GHz', or a list of them."""
    items = spw if isinstance(spw, (list, tuple)) else [spw]
    ids: list[str] = []
    for item in items:
        for part in str(item).split(","):
            m = re.match(r"\s*(\d+)", part)
            if m and m.group(1) not in ids:
                ids.append(m.group(1))
    return ids


def _narrow_spw(spw: Any, keep: set[str]) -> Any:
    """``spw`` with only the spws in ``keep`` (channel ranges kept), same shape (str or list)."""
    def one(item: str) -> str:
        return ",".join(p for p in str(item).split(",")
                        if (m := re.match(r"\s*(\d+)", p)) and m.group(1) in keep)
    return [one(i) for i in spw] if isinstance(spw, (list, tuple)) else one(spw)


# -- the job ---------------------------------------------------------------------------------------------
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
    reads: list[dict[str, str]] = field(default_factory=list)        # per MS tclean opens: vis, datacolumn, why

    @property
    def imagename(self) -> str:
        """The image's name (tclean's ``imagename``)."""
        return self.tclean["imagename"]


def product_name(imagename: str) -> str:
    """ALMA's product base for a pipeline imagename: the stage token and ``.iterN`` dropped.

    ``uid___A001_X1_X3.s36_0.src_sci.spw0.cube.I.iter1`` -> ``uid___A001_X1_X3.src_sci.spw0.cube.I``
    """
    base = Path(str(imagename)).name
    base = re.sub(r"\.iter\d+$", "", base)
    return re.sub(r"\.s\d+(?:_\d+)*\.", ".", base, count=1)


def image_kind(call: TaskCall) -> str:
    """cube, mfs or cont: from the name token the pipeline writes, else from specmode and the spws."""
    name = str(call.kwargs.get("imagename", ""))
    for kind in ("cube", "cont", "mfs"):
        if f".{kind}." in name or name.endswith(f".{kind}"):
            return kind
    if call.kwargs.get("specmode", "mfs") == "cube":
        return "cube"
    return "cont" if len(spw_ids(call.kwargs.get("spw", ""))) > 1 else "mfs"


def export_names(base: str, tclean: dict[str, Any]) -> dict[str, str]:
    """CASA image suffix -> ALMA product FITS name (pbcor and pb; mtmfs carries tt0)."""
    if tclean.get("deconvolver") == "mtmfs" and int(tclean.get("nterms", 2) or 2) > 1:
        return {".image.tt0.pbcor": f"{base}.tt0.pbcor.fits", ".pb.tt0": f"{base}.pb.tt0.fits"}
    return {".image.pbcor": f"{base}.pbcor.fits", ".pb": f"{base}.pb.fits"}


def apply_overrides(tclean: dict[str, Any], kind: str, ov: Overrides) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tclean arguments with the overrides applied, and the ones that changed (old, new)."""
    new = dict(tclean)
    if ov.robust is not None:
        if not str(new.get("weighting", "")).startswith("briggs"):
            new["weighting"] = "briggs"
        new["robust"] = float(ov.robust)
    if ov.uvtaper is not None:
        new["uvtaper"] = [ov.uvtaper]
    if ov.niter is not None:
        new["niter"] = int(ov.niter)
    if ov.threshold is not None:
        new["threshold"] = ov.threshold
    if ov.cell is not None:
        new["cell"] = ov.cell
    if ov.imsize is not None:
        new["imsize"] = [int(ov.imsize), int(ov.imsize)]
    if kind == "cube" and (ov.nbin is not None or ov.width is not None):
        new.update(rebin(new, nbin=ov.nbin, width=ov.width))
    changed = {k: [tclean.get(k), v] for k, v in new.items() if tclean.get(k) != v}
    return new, changed


def rebin(tclean: dict[str, Any], nbin: int | None = None, width: str | None = None) -> dict[str, Any]:
    """New start/width/nchan for a cube binned by ``nbin`` channels or set to ``width``.

    ``width`` may be a channel count or a quantity (frequency or velocity). ``nchan`` shrinks by the
    same factor (floor) and a quantity ``start`` (a channel centre) moves by half the width change,
    so the first new channel still begins where the first delivered one began. When the factor
    cannot be known (velocity against frequency), nchan=-1 lets tclean cover the band.
    """
    old_w, nchan, start = tclean.get("width", ""), tclean.get("nchan", -1), tclean.get("start", "")
    old_q = _spectral(old_w)
    out: dict[str, Any] = {}
    factor: float | None = None
    if nbin is not None:
        factor = float(nbin)
        out["width"] = _format_quantity(old_q.value * nbin, old_q.unit) if old_q is not None \
            else int(old_w or 1) * nbin
    elif str(width).strip().lstrip("-").isdigit():
        out["width"] = int(str(width).strip())
        if old_q is None:
            factor = out["width"] / int(old_w or 1)
    else:
        out["width"] = str(width).strip()
        new_q = _spectral(out["width"])
        if old_q is not None and new_q is not None and new_q.unit.is_equivalent(old_q.unit):
            factor = abs(float(new_q.to_value(old_q.unit) / old_q.value))
    if isinstance(nchan, int) and nchan > 0:
        out["nchan"] = max(1, int(math.floor(nchan / factor + 1e-9))) if factor else -1
    start_q, new_q = _spectral(start), _spectral(out["width"])
    if start_q is not None and old_q is not None and new_q is not None \
            and start_q.unit.is_equivalent(old_q.unit) and new_q.unit.is_equivalent(old_q.unit):
        shift = (new_q.to(start_q.unit) - old_q.to(start_q.unit)) / 2
        out["start"] = _format_quantity((start_q + shift).value, start_q.unit)
    return out


def _spectral(value: Any):
    """A width or start given as a frequency or velocity quantity, else None (channels, '')."""
    if _is_channels(value):
        return None
    q = _quantity(value, "Hz")
    return q if q is not None else _quantity(value, "km/s")


def _is_channels(width: Any) -> bool:
    return isinstance(width, int) or str(width).strip().lstrip("-").isdigit() or str(width).strip() == ""


# -- the delivery ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Restored:
    """The restored MSs of a member: one per EB, and the combined manual calibrated.ms if present."""

    by_eb: dict[str, Path]
    combined: Path | None


def restored_mss(member: Path) -> Restored:
    """Restored MSs under calibrated/: working/<EB>.ms (pipeline ids) first, else calibrated/<EB>.ms (the
    link scriptForPI v2.x makes to it), else <EB>.ms.split.cal. Only these exact names count: an
    ``<EB>_targets.ms`` a pipeline run left in working/ is not a restored MS."""
    cal = Path(member) / "calibrated"
    by_eb: dict[str, Path] = {}
    for pattern, suffix in (("*.ms.split.cal", ".ms.split.cal"), ("*.ms", ".ms"), ("working/*.ms", ".ms")):
        for ms in sorted(cal.glob(pattern)):  # later patterns win
            m = _EB_RE.match(ms.name)
            if m and ms.name == m.group(0) + suffix and ms.is_dir():
                by_eb[m.group(0)] = ms
    combined = next((p for p in (cal / "calibrated_final.ms", cal / "calibrated.ms") if p.is_dir()), None)
    return Restored(by_eb, combined)


def calibrated_column(ms: str | Path) -> str:
    """The column of ``ms`` that holds the calibrated visibilities: ``corrected`` in the MSs that
    hifa_restoredata calibrates in place (``working/<EB>.ms``, and ``calibrated/<EB>.ms``, scriptForPI's
    link to it); ``data`` in split MSs (``<EB>.ms.split.cal``, ``calibrated.ms``, ``calibrated_final.ms``,
    ``<EB>_targets.ms``, continuum-subtracted copies). Decided from the name; the CASA child checks the
    column is there before tclean reads it."""
    name = Path(str(ms).rstrip("/")).name
    m = _EB_RE.match(name)
    return "corrected" if m and name == m.group(0) + ".ms" else "data"


def restore_spw_record(member: Path, eb: str) -> dict[str, str] | None:
    """Pipeline spw id -> spw id in ``<EB>.ms.split.cal`` as the restore made it, from the split or
    mstransform call that wrote it in ``calibrated/working/casa_commands.log`` (native restore): its spw
    selection, renumbered from 0 when it re-indexed (split always does; mstransform with reindex=True).
    None when no such call is recorded."""
    from ..delivery.calls import iter_calls

    log = Path(member) / "calibrated" / "working" / "casa_commands.log"
    if not log.is_file():
        return None
    found = None
    for call in iter_calls(log.read_text(), source=str(log)):
        out = Path(str(call.kwargs.get("outputvis", "")).rstrip("/")).name
        if call.task in ("split", "mstransform") and out == f"{eb}.ms.split.cal":
            found = call
    if found is None:
        return None
    ids = spw_ids(found.kwargs.get("spw", ""))
    reindex = found.task == "split" or bool(found.kwargs.get("reindex", True))
    return {old: (str(new) if reindex else old) for new, old in enumerate(sorted(ids, key=int))}


def split_spw_map(member: Path, eb: str) -> dict[str, str]:
    """Pipeline spw id -> spw id in ``<EB>.ms.split.cal``: as the restore recorded it
    (``restore_spw_record``), else read from the split MS itself.

    Without a record, the split kept the science spws (those of the TARGET applycal lines in
    ``<EB>.ms.calapply.txt``); its SPECTRAL_WINDOW table says whether they were re-indexed: it keeps
    every row of the ASDM when they were not (scriptForPI v2.x, EBs with the same spws), and holds
    only the science spws, renumbered from 0 in increasing order, when they were."""
    from ..delivery.calapply import read_calapply

    recorded = restore_spw_record(member, eb)
    if recorded is not None:
        return recorded
    found = sorted((Path(member) / "calibration").glob(f"*{eb}.ms.calapply.txt"))
    science = sorted({s for c in (read_calapply(found[0]) if found else []) if "TARGET" in c.intent.split(",")
                      for s in spw_ids(c.spw)}, key=int)
    if not science:
        raise TreeError(f"cannot map the pipeline's spw ids onto {eb}.ms.split.cal: no TARGET applycal line "
                        f"with spws in calibration/{eb}.ms.calapply.txt",
                        f"restore with SPACESAVING below 2 to keep calibrated/working/{eb}.ms")
    rows = _spw_rows(Path(member) / "calibrated" / f"{eb}.ms.split.cal")
    if rows > max(int(s) for s in science):
        return {old: old for old in science}
    return {old: str(new) for new, old in enumerate(science)}


def _spw_rows(ms: Path) -> int:
    """The number of rows of an MS's SPECTRAL_WINDOW table (read in a CASA child)."""
    from ..errors import CasaError
    from .runtime import run_in_casa

    if not (ms / "SPECTRAL_WINDOW" / "table.dat").is_file():
        raise TreeError(f"cannot tell which spw ids {ms.name} carries: {ms}/SPECTRAL_WINDOW is not a table",
                        "restore the data again (almadeliver restore)")
    try:
        return int(run_in_casa(spw_rows_child, {"ms": str(ms)}, workdir=ms.parent))
    except CasaError as exc:
        raise TreeError(f"cannot read the spw table of {ms.name} ({exc.message})",
                        "restore the data again (almadeliver restore)") from None


def spw_rows_child(ms: str) -> int:
    """CASA child: rows of ``ms``/SPECTRAL_WINDOW."""
    from casatools import table

    tb = table()
    tb.open(f"{ms}/SPECTRAL_WINDOW")
    try:
        return int(tb.nrows())
    finally:
        tb.close()


def remap_spw(spw: str, mapping: dict[str, str] | None, ms: str) -> str:
    """A spw selection ('17:1~9;20~30,19', '') with its spw ids renumbered by ``mapping`` (None: as is)."""
    if mapping is None:
        return spw
    parts = []
    for part in str(spw).split(","):
        m = re.match(r"(\s*)(\d+)(.*)$", part, flags=re.S)
        if m is None:
            parts.append(part)
        elif m.group(2) not in mapping:
            raise TreeError(f"spw {m.group(2)} of a delivered tclean call is not in {Path(ms).name} "
                            f"(science spws {', '.join(mapping)})", "restore the data again with SPACESAVING 0 or 1")
        else:
            parts.append(m.group(1) + mapping[m.group(2)] + m.group(3))
    return ",".join(parts)


def commands_log(member: Path) -> Path | None:
    """The pipeline's ``log/*casa_commands.log`` of a member folder, if delivered."""
    logs = sorted((Path(member) / "log").glob("*casa_commands.log"))
    return logs[0] if logs else None


def imaging_script(member: Path) -> Path | None:
    """The manual delivery's ``script/*scriptForImaging.py`` of a member folder, if delivered."""
    found = sorted((Path(member) / "script").glob("*scriptForImaging.py"))
    return found[0] if found else None


def member_source(member: Path, source: str = "auto") -> str:
    """pipeline or script: what the images are re-made from (``auto``: the commands log if present)."""
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


def rewrite_vis(vis: Any, spw: Any, restored: Restored, member: Path) -> tuple[list[str], Any]:
    """The pipeline's vis names pointed at the restored MSs (matched by EB uid), and its spw selection
    renumbered for each MS that is an ``<EB>.ms.split.cal`` (``split_spw_map``). A spw list with one
    entry per vis stays one entry per MS; a single selection becomes one per MS when the MSs need
    different numbers."""
    names = list(vis) if isinstance(vis, (list, tuple)) else [vis]
    per_vis = isinstance(spw, (list, tuple)) and len(spw) == len(names)
    mss: list[str] = []
    spws: list[str] = []
    maps: list[dict[str, str] | None] = []
    for i, v in enumerate(names):
        m = _EB_RE.search(str(v))
        mapping = None
        if m and m.group(0) in restored.by_eb:
            ms = str(restored.by_eb[m.group(0)])
            if ms.endswith(".ms.split.cal"):
                mapping = split_spw_map(member, m.group(0))
        elif m is None and restored.combined is not None:
            ms = str(restored.combined)
        else:
            raise TreeError(f"no restored MS for {v} under {Path(member) / 'calibrated'}",
                            f"restore the data first: almadeliver restore {member}")
        if ms in mss:
            continue
        mss.append(ms)
        maps.append(mapping)
        if per_vis:
            spws.append(remap_spw(spw[i], mapping, ms))
    if per_vis:
        return mss, spws
    if all(mp == maps[0] for mp in maps):
        return mss, ([remap_spw(s, maps[0], mss[0]) for s in spw] if isinstance(spw, (list, tuple))
                     else remap_spw(spw, maps[0], mss[0]))
    one = ",".join(spw) if isinstance(spw, (list, tuple)) else spw
    return mss, [remap_spw(one, mp, ms) for mp, ms in zip(maps, mss)]


def _product_base(member: Path, name: str) -> str:
    """The product base as delivered: recent pipeline deliveries prefix it with ``member.``."""
    prefixed = f"member.{name}"
    if any(p.name.startswith(prefixed + ".") for p in (Path(member) / "product").glob(f"{prefixed}.*")):
        return prefixed
    return name


def delivered_product(member: Path, fits_name: str) -> Path | None:
    """The delivered ``product/<fits_name>`` (or its ``.gz``), if it is there."""
    for cand in (Path(member) / "product" / fits_name, Path(member) / "product" / (fits_name + ".gz")):
        if cand.is_file():
            return cand
    return None


def jobs_from_calls(calls: Iterable[TaskCall], member: Path, source: str, ov: Overrides,
                    restored: Restored | None = None, check_vis: bool = True) -> list[ImagingJob]:
    """ImagingJobs for the product tclean calls, selected and overridden; refuses unknown spw/field."""
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
        name = _product_base(member, name)
        kw["imagename"] = name + ".iter1"
        kw["pbcor"] = True
        reads: list[dict[str, str]] = []
        if check_vis:
            kw["vis"], kw["spw"] = rewrite_vis(kw.get("vis", ""), kw.get("spw", ""),
                                               restored or restored_mss(member), member)
            kw["datacolumn"], reads = _read_columns(call, kw["vis"], source)
        kw, changed = apply_overrides(kw, kind, ov)
        exports = export_names(name, kw)
        jobs.append(ImagingJob(
            name=name, source=f"{source}:{call.line}", field=fieldname, spws=spws, kind=kind, tclean=kw,
            exports=exports, changed=changed, reads=reads,
            delivered={f: (str(p) if (p := delivered_product(member, f)) else None) for f in exports.values()},
        ))
    if not jobs:
        raise UsageError("the selection leaves no image to make",
                         f"run almadeliver image {member} --list to see the delivered images")
    if (ov.nbin is not None or ov.width is not None) and not any(j.kind == "cube" for j in jobs):
        raise UsageError("--nbin/--width apply to cubes, and no cube is selected",
                         "drop --nbin/--width or select a cube (--specmode cube)")
    return jobs


def continuum_subtracted(call: TaskCall) -> bool:
    """True when a delivered tclean call imaged continuum-subtracted data: ``<EB>_targets_line.ms``
    (hif_uvcontsub, PL2022 on) holds the line data in DATA, the continuum fitted on cont.dat's ranges."""
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
    for spw in ov.spws or []:
        if spw not in known_spws:
            raise UsageError(f"spw {spw} is not among the imaged spws of this delivery ({', '.join(known_spws)})",
                             "pick one of those with --spw (the ids in the product file names)")
    for name in ov.fields or []:
        if name not in known_fields:
            raise UsageError(f"field {name!r} is not among the imaged fields of this delivery "
                             f"({', '.join(known_fields)})", "pick one of those with --field")


def plan_images(member: Path, overrides: Overrides | None = None, source: str = "auto") -> list[ImagingJob]:
    """The images a pipeline re-run will make (one job per product tclean call). No CASA runs."""
    member = Path(member)
    ov = overrides or Overrides()
    if member_source(member, source) != "pipeline":
        raise UsageError(f"{member} was imaged by scriptForImaging.py, not the pipeline",
                         "use plan() (almadeliver image picks the script for you)")
    log = commands_log(member)
    assert log is not None
    calls = read_commands(log)
    jobs = jobs_from_calls(calls, member, log.name, ov)
    by_line = {c.line: c for c in calls}
    line_data = [j for j in jobs if continuum_subtracted(by_line[int(j.source.rsplit(":", 1)[1])])]
    if ov.contsub or line_data:
        # cubes imaged from <EB>_targets_line.ms were continuum subtracted by the pipeline: do the same
        _attach_contsub([j for j in jobs if j in line_data or (ov.contsub and j.kind == "cube")], member)
    return jobs


@dataclass
class ImagingPlan:
    """What ``almadeliver image`` will do: pipeline jobs, or scriptForImaging.py with the overrides."""

    member: Path
    source: str                     # pipeline or script
    overrides: Overrides
    jobs: list[ImagingJob] = field(default_factory=list)   # pipeline: the images, planned in full
    script: Path | None = None                             # script: run with tclean wrapped


def plan(member: Path, overrides: Overrides | None = None, source: str = "auto") -> ImagingPlan:
    """Check the request against the delivery (no CASA) and say what will run."""
    member = Path(member).resolve()
    ov = overrides or Overrides()
    kind = member_source(member, source)
    if kind == "pipeline":
        return ImagingPlan(member, kind, ov, jobs=plan_images(member, ov, "pipeline"))
    script = imaging_script(member)
    assert script is not None
    if ov.contsub:
        raise UsageError("--contsub works on pipeline deliveries (cont.dat ranges)",
                         "scriptForImaging.py does its own continuum subtraction; edit it instead")
    if not restored_mss(member).by_eb and restored_mss(member).combined is None:
        raise TreeError(f"no restored MS under {member / 'calibrated'}",
                        f"restore the data first: almadeliver restore {member}")
    _check_script_selection(member, script, ov)
    return ImagingPlan(member, kind, ov, script=script)


def list_images(member: Path, source: str = "auto") -> list[ImagingJob]:
    """The delivered images as jobs (pipeline: the product tclean calls; script: its literal tclean calls)."""
    member = Path(member).resolve()
    if member_source(member, source) == "pipeline":
        log = commands_log(member)
        assert log is not None
        return jobs_from_calls(read_commands(log), member, log.name, Overrides(), check_vis=False)
    script = imaging_script(member)
    assert script is not None
    jobs = []
    for line, kwargs in script_tclean_calls(script):
        name = str(kwargs.get("imagename", "?"))
        jobs.append(ImagingJob(name=name, source=f"{script.name}:{line}", field=str(kwargs.get("field", "?")),
                               spws=spw_ids(kwargs.get("spw", "")) or ["?"],
                               kind="cube" if kwargs.get("specmode") == "cube" else "mfs",
                               tclean=kwargs, exports={}))
    return jobs


def run(plan_: ImagingPlan, out: Path | None = None, workers: int | None = None,
        on_done: Callable[[str, str | None], None] | None = None) -> "ImagingResult":
    """Make the planned images in a new folder (product/ is never written)."""
    folder = new_out_folder(plan_.member, out)
    if plan_.source == "pipeline":
        return run_images(plan_.jobs, folder, workers, on_done, plan_.overrides)
    return run_script_images(plan_, folder, on_done)


# -- manual deliveries: scriptForImaging.py ---------------------------------------------------------------
class Expression(str):
    """A tclean argument the script computes (a variable, an expression): its source text."""


def script_tclean_calls(script: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every tclean/clean call in the script: (line, {arg: literal value, or its source text})."""
    import ast

    text = Path(script).read_text()
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise TreeError(f"{Path(script).name}:{exc.lineno}: not valid Python 3 ({exc.msg})",
                        "a Python 2 script needs converting before it can run in CASA 6") from None
    constants = _script_constants(tree)
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("tclean", "clean"):
            kwargs: dict[str, Any] = {}
            for kw in node.keywords:
                if kw.arg is None:
                    continue
                if isinstance(kw.value, ast.Name) and kw.value.id in constants:
                    kwargs[kw.arg] = constants[kw.value.id]
                    continue
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    kwargs[kw.arg] = Expression(ast.get_source_segment(text, kw.value) or "?")
            calls.append((node.lineno, kwargs))
    return sorted(calls, key=lambda c: c[0])


def _script_constants(tree) -> dict[str, Any]:
    """Top-level ``name = literal`` assignments made exactly once (e.g. ``field = 'G008.67'``)."""
    import ast

    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign, ast.For)) else []
        for target in targets:
            for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                seen[name] = seen.get(name, 0) + 1
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return {name: value for name, value in values.items() if seen.get(name) == 1}


def _check_script_selection(member: Path, script: Path, ov: Overrides) -> None:
    """Refuse spws/fields the script's literal tclean arguments (and product headers) do not name."""
    calls = [kw for _, kw in script_tclean_calls(script)]
    spws = [kw.get("spw", "") for kw in calls]
    fields = [kw.get("field", "") for kw in calls]
    literal = lambda v: not isinstance(v, Expression)  # noqa: E731
    if ov.spws and calls and all(literal(v) and v not in ("", []) for v in spws):
        known = sorted({s for v in spws for s in spw_ids(v)}, key=int)
        for spw in ov.spws:
            if spw not in known:
                raise UsageError(f"spw {spw} is not imaged by {script.name} (spws {', '.join(known) or 'all'})",
                                 "pick one of those with --spw")
    known_f = sorted({str(v) for v in fields if literal(v)} | _product_objects(member))
    if ov.fields and calls and (all(literal(v) for v in fields) or _product_objects(member)):
        for name in ov.fields:
            if name not in known_f:
                raise UsageError(f"field {name!r} is not imaged by {script.name} ({', '.join(known_f)})",
                                 "pick one of those with --field")


def run_script_images(plan_: ImagingPlan, out: Path,
                      on_done: Callable[[str, str | None], None] | None = None) -> "ImagingResult":
    """Run scriptForImaging.py through the legacy shim in out/work (the restored MSs linked there).

    The shim's ``tclean`` is wrapped: each call the script makes gets the overrides applied and is
    skipped when --spw/--field/--specmode exclude it; ``exportfits`` writes into ``out``. This works
    whatever the script computes its arguments from (real scripts use variables, so rewriting literal
    call text would miss most of them). One CASA process: the script's steps depend on each other.
    """
    from .runtime import run_in_casa

    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    for ms in sorted((plan_.member / "calibrated").glob("*.ms*")):
        if ms.is_dir() and not (work / ms.name).exists():
            (work / ms.name).symlink_to(ms.resolve())
    failures: dict[str, str] = {}
    jobs: list[ImagingJob] = []
    try:
        made = run_in_casa(script_child,
                           {"script": str(plan_.script), "out": str(out),
                            "overrides": asdict(plan_.overrides)},
                           workdir=work, logfile=out / "logs" / f"{plan_.script.name}.casa.log")
    except Exception as exc:  # noqa: BLE001  (reported like a failed image)
        failures[plan_.script.name] = str(exc)
        made = {"calls": [], "exports": []}
    for call in made["calls"]:
        image = call["tclean"]["imagename"]
        exports = {e["imagename"][len(image):]: e["fits"] for e in made["exports"]
                   if e["imagename"].startswith(image + ".")}
        jobs.append(ImagingJob(
            name=Path(image).name, source=f"{plan_.script.name}", field=str(call["tclean"].get("field", "")),
            spws=spw_ids(call["tclean"].get("spw", "")), kind=call["kind"], tclean=call["tclean"],
            exports=exports, changed=call["changed"],
            delivered={f: (str(p) if (p := delivered_product(plan_.member, f)) else None) for f in exports.values()}))
        if on_done:
            on_done(Path(image).name, None)
    if not failures and not jobs:
        failures[plan_.script.name] = "the selection matched no tclean call of the script"
    if failures and on_done:
        on_done(plan_.script.name, failures[plan_.script.name])
    comparisons = compare(out, jobs)
    record, table = write_record(out, jobs, comparisons, failures, plan_.overrides)
    return ImagingResult(out, record, table, jobs, comparisons, failures)


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


# -- continuum subtraction (--contsub) ------------------------------------------------------------------
def _attach_contsub(jobs: list[ImagingJob], member: Path) -> None:
    """Cube jobs image continuum-subtracted copies of their MSs, fitted on cont.dat's ranges."""
    from ..delivery.contdat import parse_contdat

    found = sorted((Path(member) / "calibration").glob("*cont.dat"))
    if not found:
        raise TreeError(f"{member}/calibration has no cont.dat", "--contsub needs the pipeline's <MOUS>.cont.dat")
    ranges = contdat_ranges(parse_contdat(found[0]))
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for job in jobs:
        if job.kind != "cube":
            continue
        spw_ranges = {s: ranges.get(job.field, {}).get(s) for s in job.spws}
        missing = [s for s, r in spw_ranges.items() if not r]
        if missing:
            raise TreeError(f"{found[0].name} has no continuum range for field {job.field!r} spw {', '.join(missing)}",
                            "add the ranges to cont.dat, or image without --contsub")
        new_vis = []
        for vis in job.tclean["vis"]:
            run = runs.setdefault((vis, job.field), {
                "vis": vis, "outputvis": f"contsub/{Path(vis).name}.{job.field}.contsub", "field": job.field,
                "datacolumn": calibrated_column(vis), "ranges": {}})
            eb = _EB_RE.match(Path(vis).name)
            mapping = split_spw_map(member, eb.group(0)) if eb and vis.endswith(".ms.split.cal") else None
            run["ranges"].update({remap_spw(s, mapping, vis): r for s, r in spw_ranges.items()})
            job.contsub.append(run)
            new_vis.append(run["outputvis"])
        job.changed["vis"] = [job.tclean["vis"], new_vis]
        job.reads = [{"vis": out, "datacolumn": "data",
                      "delivered": f"uvcontsub of {Path(vis).name} ({calibrated_column(vis).upper()}), cont.dat ranges"}
                     for vis, out in zip(job.tclean["vis"], new_vis)]
        job.tclean["vis"] = new_vis
        job.tclean["datacolumn"] = "data"   # uvcontsub writes the subtracted data to DATA


def contdat_ranges(contdat: Any) -> dict[str, dict[str, list[tuple[float, float, str]]]]:
    """field -> spw -> [(low Hz, high Hz, frame)] from a parsed cont.dat, in any generation.

    A range written without a frame is in the frame the pipeline reads it in (``ContDat.default_frame``:
    TOPO for the earliest generation); an all-continuum spw (``ALL``, ``Flags: ALLCONT``) is the whole
    spw, ``(0, inf, frame)``; a spw where no continuum was found (``NONE``, or no range) has no range."""
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


# -- running ---------------------------------------------------------------------------------------------
@dataclass
class ImageStats:
    """What the comparison table shows for one FITS image."""

    bmaj_arcsec: float | None
    bmin_arcsec: float | None
    bpa_deg: float | None
    rms: float
    peak: float
    nchan: int
    unit: str


@dataclass
class Comparison:
    """One new product beside the delivered one (``max_diff``: max |new - delivered| / delivered peak)."""

    fits: str
    new: ImageStats
    delivered: ImageStats | None
    max_diff: float | None


@dataclass
class ImagingResult:
    """What ``run`` made: the output folder, the parameter record, the comparison table, the jobs and comparisons."""
    out: Path
    record: Path
    table: Path
    jobs: list[ImagingJob]
    comparisons: list[Comparison]
    failures: dict[str, str]


def image_stats(path: Path) -> ImageStats:
    """Beam (header BMAJ/BMIN/BPA, else the median of a BEAMS table), MAD rms and peak of a FITS image."""
    import numpy as np
    from astropy.io import fits

    with fits.open(path) as hdul:
        head, data = hdul[0].header, np.asarray(hdul[0].data, dtype=float)
        if "BMAJ" in head:
            bmaj, bmin, bpa = head["BMAJ"] * 3600, head["BMIN"] * 3600, head["BPA"]
        elif "BEAMS" in hdul:
            beams = hdul["BEAMS"].data
            bmaj, bmin, bpa = (float(np.median(beams[c])) for c in ("BMAJ", "BMIN", "BPA"))
        else:
            bmaj = bmin = bpa = None
        nchan = int(head.get("NAXIS3", 1)) if head.get("NAXIS", 2) >= 3 else 1
        unit = str(head.get("BUNIT", ""))
    finite = data[np.isfinite(data)]
    rms = float(1.4826 * np.median(np.abs(finite - np.median(finite)))) if finite.size else float("nan")
    peak = float(finite.max()) if finite.size else float("nan")
    return ImageStats(bmaj, bmin, bpa, rms, peak, nchan, unit)


def max_difference(new: Path, delivered: Path) -> float | None:
    """max |new - delivered| over pixels finite in both, in units of the delivered peak; None if shapes differ."""
    import numpy as np
    from astropy.io import fits

    a = np.asarray(fits.getdata(new), dtype=float)
    b = np.asarray(fits.getdata(delivered), dtype=float)
    if a.shape != b.shape:
        return None
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return None
    diff, peak = float(np.max(np.abs(a[ok] - b[ok]))), float(np.max(np.abs(b[ok])))
    return diff / peak if peak > 0 else (0.0 if diff == 0 else float("inf"))


def compare(out: Path, jobs: list[ImagingJob]) -> list[Comparison]:
    """A row per exported pbcor image: new stats beside the delivered product's."""
    rows = []
    for job in jobs:
        for fits_name in job.exports.values():
            if ".pbcor." not in fits_name or not (Path(out) / fits_name).is_file():
                continue
            new = Path(out) / fits_name
            old = job.delivered.get(fits_name)
            rows.append(Comparison(fits_name, image_stats(new), image_stats(Path(old)) if old else None,
                                   max_difference(new, Path(old)) if old else None))
    return rows


def new_out_folder(member: Path, out: Path | None) -> Path:
    """A new folder for the images: ``--out`` (must not hold anything yet) or member/reimage[.N]."""
    member = Path(member).resolve()
    if out is None:
        out = member / "reimage"
        n = 1
        while out.exists():
            n += 1
            out = member / f"reimage.{n}"
    out = Path(out).resolve()
    if out == member / "product" or member / "product" in out.parents:
        raise UsageError(f"--out {out} is inside product/", "product/ is never written; choose another folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} already holds files", "give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_images(jobs: list[ImagingJob], out: Path, workers: int | None = None,
               on_done: Callable[[str, str | None], None] | None = None,
               overrides: Overrides | None = None) -> ImagingResult:
    """Run every job (one CASA child per image, ``workers`` at a time), export FITS, compare, record.

    Continuum subtraction runs first (once per output MS). A failed job does not stop the others;
    its error is in ``failures``.
    """
    from .runtime import run_in_casa

    out = Path(out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    workers = max(1, workers or min(len(jobs), os.cpu_count() or 1))
    failures: dict[str, str] = {}

    contsubs = {c["outputvis"]: c for j in jobs for c in j.contsub}
    if contsubs:
        with ThreadPoolExecutor(workers) as pool:
            done = {vis: pool.submit(run_in_casa, contsub_child, {"run": c},
                                     workdir=out / "work", logfile=out / "logs" / f"{Path(vis).name}.casa.log")
                    for vis, c in contsubs.items()}
            for vis, fut in done.items():
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001  (reported per image below)
                    failures[vis] = str(exc)

    def one(job: ImagingJob) -> str | None:
        bad = [c["outputvis"] for c in job.contsub if c["outputvis"] in failures]
        if bad:
            return f"continuum subtraction failed: {failures[bad[0]]}"
        try:
            run_in_casa(tclean_child,
                        {"tclean": job.tclean, "exports": job.exports, "out": str(out), "reads": job.reads},
                        workdir=out / "work", logfile=out / "logs" / f"{job.name}.casa.log")
        except Exception as exc:  # noqa: BLE001  (one image failing must not stop the others)
            return str(exc)
        return None

    with ThreadPoolExecutor(workers) as pool:
        for job, error in zip(jobs, pool.map(one, jobs)):
            if error:
                failures[job.name] = error
            if on_done:
                on_done(job.name, error)
    comparisons = compare(out, [j for j in jobs if j.name not in failures])
    record, table = write_record(out, jobs, comparisons, failures, overrides)
    return ImagingResult(out, record, table, jobs, comparisons, failures)


def write_record(out: Path, jobs: list[ImagingJob], comparisons: list[Comparison],
                 failures: dict[str, str], overrides: Overrides | None = None) -> tuple[Path, Path]:
    """``image_record.json`` (exact parameters per image) and ``comparison.tsv``."""
    out = Path(out)
    record = out / "image_record.json"
    record.write_text(json.dumps({
        "overrides": (overrides or Overrides()).changes(),
        "images": [{**asdict(j), "failed": failures.get(j.name)} for j in jobs],
        "comparison": [asdict(c) for c in comparisons],
    }, indent=2, default=str) + "\n")
    table = out / "comparison.tsv"
    table.write_text("\n".join(["\t".join(COMPARISON_COLUMNS)] + ["\t".join(r) for r in comparison_rows(comparisons)]) + "\n")
    return record, table


COMPARISON_COLUMNS = ("image", "beam new (arcsec x arcsec, deg)", "beam delivered", "rms new", "rms delivered",
                      "peak new", "peak delivered", "nchan new/delivered", "max |diff|/peak")


def comparison_rows(comparisons: list[Comparison]) -> list[tuple[str, ...]]:
    """The rows of the comparison table (``COMPARISON_COLUMNS``), as text: beam, rms and peak, delivered vs remade."""
    def beam(s: ImageStats | None) -> str:
        if s is None or s.bmaj_arcsec is None:
            return "-"
        return f"{s.bmaj_arcsec:.3f} x {s.bmin_arcsec:.3f}, {s.bpa_deg:.1f}"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    rows = []
    for c in comparisons:
        d = c.delivered
        rows.append((c.fits, beam(c.new), beam(d), num(c.new.rms), num(d.rms if d else None),
                     num(c.new.peak), num(d.peak if d else None),
                     f"{c.new.nchan}/{d.nchan if d else '-'}", num(c.max_diff)))
    return rows


# -- in the CASA child ---------------------------------------------------------------------------------
def tclean_child(tclean: dict[str, Any], exports: dict[str, str], out: str,
                 reads: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """tclean (arguments this CASA does not know are dropped and reported), then exportfits. Before
    tclean, every MS must hold the column the plan says it is read from (``reads``): the calibrated
    visibilities, never the raw ones."""
    import inspect

    from casatasks import exportfits
    from casatasks import tclean as casa_tclean

    known = set(inspect.signature(casa_tclean).parameters)
    kwargs = {k: v for k, v in tclean.items() if k in known}
    dropped = sorted(set(tclean) - known)
    column = str(kwargs.get("datacolumn", "corrected")).lower()   # tclean's default is corrected
    planned = {r["vis"]: r["datacolumn"] for r in reads or []}
    for vis in kwargs["vis"] if isinstance(kwargs["vis"], list) else [kwargs["vis"]]:
        _check_column(vis, planned.get(vis, column), fallback=column == "corrected")
    for stale in Path(".").glob(kwargs["imagename"] + ".*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    casa_tclean(**kwargs)
    written = []
    for suffix, fits_name in exports.items():
        image = kwargs["imagename"] + suffix
        if not Path(image).is_dir():
            raise RuntimeError(f"tclean made no {image}")
        target = Path(out) / fits_name
        exportfits(imagename=image, fitsimage=str(target), overwrite=True, dropdeg=False)
        written.append(str(target))
    return {"dropped": dropped, "fits": written}


def contsub_child(run: dict[str, Any]) -> dict[str, Any]:
    """uvcontsub of one MS and field (its calibrated column), fitted on the channels whose frequency (in
    cont.dat's frame) lies in its ranges."""
    from casatasks import uvcontsub

    fitspec = []
    for spw, ranges in run["ranges"].items():
        freqs = {frame: channel_frequencies(run["vis"], int(spw), frame, run["field"]) for frame in {r[2] for r in ranges}}
        n = len(next(iter(freqs.values())))
        chans = [i for i in range(n) if any(lo <= freqs[frame][i] <= hi for lo, hi, frame in ranges)]
        if not chans:
            raise RuntimeError(f"no channel of spw {spw} lies in the cont.dat ranges {ranges}")
        fitspec.append(f"{spw}:" + ";".join(f"{a}~{b}" for a, b in _runs(chans)))
    Path(run["outputvis"]).parent.mkdir(parents=True, exist_ok=True)
    if Path(run["outputvis"]).exists():
        shutil.rmtree(run["outputvis"])
    column = run.get("datacolumn") or calibrated_column(run["vis"])
    _check_column(run["vis"], column)
    # no spw selection: the output keeps the delivered spw ids (spws without ranges are fitted on all channels)
    uvcontsub(vis=run["vis"], outputvis=run["outputvis"], field=run["field"], fitspec=",".join(fitspec),
              fitorder=1, datacolumn=column)
    return {"fitspec": ",".join(fitspec)}


def _check_column(vis: str, column: str, fallback: bool = False) -> None:
    """CASA child: refuse to read ``column`` (data/corrected) of ``vis`` when the MS does not have it.
    ``fallback``: tclean runs with datacolumn='corrected' and reads DATA in this MS, which it does only
    when the MS has no CORRECTED_DATA."""
    from casatools import table

    name = {"data": "DATA", "corrected": "CORRECTED_DATA"}.get(column.lower(), column.upper())
    tb = table()
    tb.open(vis)
    try:
        names = tb.colnames()
    finally:
        tb.close()
    if name not in names:
        raise RuntimeError(f"{vis} has no {name} column to read the calibrated visibilities from "
                           f"(datacolumn='{column}'); restore the data again")
    if fallback and name == "DATA" and "CORRECTED_DATA" in names:
        raise RuntimeError(f"{vis} holds its calibrated data in DATA but also has a CORRECTED_DATA column, "
                           "which tclean (datacolumn='corrected' for the other MSs) would read; image it alone")


def channel_frequencies(vis: str, spw: int, frame: str = "LSRK", field: str | None = None) -> list[float]:
    """The channel centres (Hz) of one spw of an MS in ``frame``, towards ``field`` (a name; default the
    MS's first field) (CASA child)."""
    from casatools import ms as mstool
    from casatools import msmetadata

    fieldids: list[int] = []
    if field:
        md = msmetadata()
        md.open(vis)
        try:
            fieldids = [int(md.fieldsforname(field)[0])]
        finally:
            md.close()
    ms = mstool()
    ms.open(vis)
    try:
        return [float(f) for f in ms.cvelfreqs(spwids=[spw], fieldids=fieldids, mode="channel", outframe=frame)]
    finally:
        ms.close()


def _runs(chans: list[int]) -> list[tuple[int, int]]:
    """[0,1,2,5,6] -> [(0,2),(5,6)]"""
    runs: list[tuple[int, int]] = []
    for c in sorted(chans):
        if runs and c == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return runs


def script_child(script: str, out: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Exec scriptForImaging.py in the legacy namespace with tclean and exportfits wrapped (see run_script_images)."""
    import inspect

    import casatasks

    from .legacy import run_script

    ov = Overrides(**overrides)
    names = list(inspect.signature(casatasks.tclean).parameters)
    calls: list[dict[str, Any]] = []
    exports: list[dict[str, str]] = []
    skipped: list[str] = []

    def tclean(*args: Any, **kwargs: Any) -> Any:
        kwargs = {**dict(zip(names, args)), **kwargs}
        spws = spw_ids(kwargs.get("spw", ""))
        kind = "cube" if kwargs.get("specmode") == "cube" else ("mfs" if len(spws) == 1 else "cont")
        excluded = ((ov.fields and str(kwargs.get("field", "")) not in ov.fields)
                    or (ov.spws and spws and not set(spws) & set(ov.spws))
                    or (ov.specmode and (ov.specmode == "cube") != (kind == "cube")))
        if excluded:
            skipped.append(str(kwargs.get("imagename", "")))
            return None
        if ov.spws:
            kwargs["spw"] = _narrow_spw(kwargs["spw"], set(ov.spws)) if spws else ",".join(ov.spws)
        new, changed = apply_overrides(kwargs, kind, ov)
        calls.append({"tclean": new, "changed": changed, "kind": kind})
        return casatasks.tclean(**new)

    def exportfits(*args: Any, **kwargs: Any) -> Any:
        kwargs = {**dict(zip(list(inspect.signature(casatasks.exportfits).parameters), args)), **kwargs}
        image = str(kwargs.get("imagename", ""))
        if any(image == s or image.startswith(s + ".") for s in skipped if s):
            return None
        kwargs["fitsimage"] = str(Path(out) / Path(str(kwargs["fitsimage"])).name)
        kwargs["overwrite"] = True
        exports.append({"imagename": image, "fits": Path(kwargs["fitsimage"]).name})
        return casatasks.exportfits(**kwargs)

    run_script(script, os.getcwd(), {"tclean": tclean, "exportfits": exportfits})
    return {"calls": calls, "exports": exports, "skipped": skipped}
