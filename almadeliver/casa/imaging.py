"""Re-imaging a restored delivery: the delivered tclean calls, the user's overrides, CASA per image.

Pipeline deliveries: the product tclean calls come from ``log/<MOUS>.casa_commands.log`` (literal
parser, never eval); each becomes an ``ImagingJob`` (the call with vis pointed at the restored MSs
and the overrides applied, plus ALMA's product names for the exported FITS). Manual deliveries:
``script/scriptForImaging.py`` runs through the legacy shim with ``tclean`` wrapped so that every
call it makes gets the same overrides (see ``run_script_images``); a clean-era script (Cycles 0-3:
Python 2, ``clean()``) is converted and its clean calls run as tclean (``imaging_legacy``).

The pipeline re-imaging guide's options (seed 003): ``--cont all`` (continuum from every unflagged
channel), a user's ``calibrated/working/cont.dat`` (continuum images and --contsub follow it), per-spw
``--nbin``, science-target flag templates applied to a copy before imaging; ``--moments`` adds
immoments maps of the cubes. Each run writes OUT/README with the new beams and rms.

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
from .imaging_legacy import (CleanTranslation, ConvertedScript, Expression, clean_arguments, delivered_masks,
                             python3_text, translate_clean)

_EB_RE = re.compile(UID_DISK_PATTERN)
_SPECMODES = ("cube", "mfs", "cont")
MOMENTS = (-1, 0, 1, 2, 3, 5, 6, 8, 9, 10, 11)


# -- overrides ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overrides:
    """What the user changes (None = keep the delivered value); spw/field/specmode select images."""

    robust: float | None = None
    uvtaper: str | None = None
    niter: int | None = None
    threshold: str | None = None
    nbin: int | str | None = None   # K for every cube, or per spw as the pipeline's nbins: '17:8,23:2'
    width: str | None = None
    spw: str | None = None
    field: str | None = None
    specmode: str | None = None
    cell: str | None = None
    imsize: int | None = None
    contsub: bool = False
    cont: str | None = None          # 'all': continuum images from every unflagged channel (no cont.dat ranges)
    moments: str | None = None       # immoments of each cube, e.g. '0,1,8'

    def __post_init__(self) -> None:
        if self.nbin is not None and self.width is not None:
            raise UsageError("--nbin and --width both set", "give one of them")
        self.nbins  # noqa: B018  (validates --nbin)
        if self.cont not in (None, "all"):
            raise UsageError(f"--cont {self.cont!r} is unknown",
                             "use --cont all for continuum images from every unflagged channel")
        if self.specmode is not None and self.specmode not in _SPECMODES:
            raise UsageError(f"--specmode {self.specmode} is unknown", "use cube, mfs or cont")
        self.moment_list  # noqa: B018  (validates --moments)
        for name, unit in (("uvtaper", "arcsec"), ("threshold", "Jy"), ("cell", "arcsec")):
            value = getattr(self, name)
            if value is not None and _quantity(value, unit) is None:
                raise UsageError(f"--{name} {value!r} is not a quantity in {unit} units",
                                 f"e.g. --{name} 0.5{unit if unit != 'Jy' else 'mJy'}")
        if self.width is not None and not str(self.width).lstrip("-").isdigit() \
                and _quantity(self.width, "Hz") is None and _quantity(self.width, "km/s") is None:
            raise UsageError(f"--width {self.width!r} is neither a channel count nor a frequency or "
                             "velocity width", "e.g. --width 2, --width 1.2MHz or --width 0.5km/s")

    @property
    def nbins(self) -> dict[str | None, int]:
        """--nbin as spw id -> channels to average (key None: every cube); {} when not set.

        Takes the pipeline's form (hif_makeimlist ``nbins='17:8,23:2'``, seed 003) or one integer."""
        if self.nbin is None:
            return {}
        text = str(self.nbin).strip()
        hint = "e.g. --nbin 2 (every cube) or --nbin '17:8,23:2' (spw:channels, as hif_makeimlist's nbins)"
        if re.fullmatch(r"\d+", text):
            if int(text) < 1:
                raise UsageError(f"--nbin {text} is not a positive channel count", hint)
            return {None: int(text)}
        out: dict[str | None, int] = {}
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
            if m is None or int(m.group(2)) < 1:
                raise UsageError(f"--nbin {text!r}: {part.strip()!r} is not spw:channels with a positive count", hint)
            if m.group(1) in out:
                raise UsageError(f"--nbin {text!r} gives spw {m.group(1)} twice", hint)
            out[m.group(1)] = int(m.group(2))
        return out

    @property
    def moment_list(self) -> list[int]:
        """--moments as immoments' moment numbers (CASA: -1 mean, 0 integrated, 1 velocity, 2 dispersion,
        3 median, 5 std, 6 rms, 8 peak, 9 velocity of the peak, 10 minimum, 11 velocity of the minimum)."""
        if self.moments in (None, ""):
            return []
        out = []
        for part in str(self.moments).split(","):
            if not re.fullmatch(r"\s*-?\d+\s*", part) or int(part) not in MOMENTS:
                raise UsageError(f"--moments {self.moments!r}: {part.strip()!r} is not an immoments moment",
                                 f"use some of {','.join(map(str, MOMENTS))}, e.g. --moments 0,1,8")
            out.append(int(part))
        return sorted(set(out))

    def nbin_for(self, spws: list[str]) -> int | None:
        """The channels to average for a cube of ``spws`` (None: no binning)."""
        nbins = self.nbins
        if None in nbins:
            return nbins[None]
        found = {nbins[s] for s in spws if s in nbins}
        return found.pop() if len(found) == 1 else None
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


def apply_overrides(tclean: dict[str, Any], kind: str, ov: Overrides,
                    spws: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tclean arguments with the overrides applied, and the ones that changed (old, new).
    ``spws``: the image's spw ids as the delivery names them (for a per-spw --nbin; default: read
    from the call's spw)."""
    new = dict(tclean)
    spws = spws if spws is not None else spw_ids(tclean.get("spw", ""))
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
    nbin = ov.nbin_for(spws)
    if kind == "cube" and (nbin is not None or ov.width is not None):
        new.update(rebin(new, nbin=nbin, width=ov.width))
    if kind in ("cont", "mfs") and ov.cont == "all":
        # every unflagged channel: the spw ids without the channel or frequency ranges
        spw = new.get("spw", "")
        new["spw"] = [",".join(spw_ids(s)) for s in spw] if isinstance(spw, (list, tuple)) else ",".join(spw_ids(spw))
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
    if (ov.nbin is not None or ov.width is not None) and not any(j.kind == "cube" for j in jobs):
        raise UsageError("--nbin/--width apply to cubes, and no cube is selected",
                         "drop --nbin/--width or select a cube (--specmode cube)")
    return jobs


def _check_nbins(ov: Overrides, known_spws: list[str]) -> None:
    """A per-spw --nbin names imaged spws, and (as hif_makeimlist asks) every spw chosen with --spw."""
    per_spw = {s for s in ov.nbins if s is not None}
    if not per_spw:
        return
    for spw in sorted(per_spw, key=int):
        if spw not in known_spws:
            raise UsageError(f"--nbin names spw {spw}, which is not among the imaged spws ({', '.join(known_spws)})",
                             "use the spw ids of the product names")
    missing = [s for s in ov.spws or [] if s not in per_spw]
    if missing:
        raise UsageError(f"--nbin {ov.nbin!r} has no entry for spw {', '.join(missing)} chosen with --spw",
                         "give every chosen spw an entry, spw:1 for no binning")


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
    _check_nbins(ov, known_spws)
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
    _attach_target_flags(jobs, member)
    if ov.contsub or line_data:
        # cubes imaged from <EB>_targets_line.ms were continuum subtracted by the pipeline: do the same
        _attach_contsub([j for j in jobs if j in line_data or (ov.contsub and j.kind == "cube")], member)
    if ov.moment_list:
        _attach_moments([j for j in jobs if j.kind == "cube"], member, ov.moment_list)
    user = user_contdat(member)
    if user is not None and ov.cont != "all":
        _attach_cont_ranges([j for j in jobs if j.kind in ("cont", "mfs")], member, user)
    return jobs


def target_flag_templates(member: Path) -> dict[str, Path]:
    """EB -> its science-target flag template: the user's copy in calibrated/working/ (where the
    restore puts them for editing, seed 003) if present, else the delivered
    calibration/<EB>_flagtargetstemplate.txt (``_`` or ``.`` before ``flagtargetstemplate``)."""
    found: dict[str, Path] = {}
    for folder in (Path(member) / "calibration", Path(member) / "calibrated" / "working"):  # later wins
        for path in sorted(folder.glob("*flagtargetstemplate.txt")) if folder.is_dir() else []:
            m = _EB_RE.match(path.name)
            if m and path.name[len(m.group(0)):] in ("_flagtargetstemplate.txt", ".flagtargetstemplate.txt"):
                found[m.group(0)] = path
    return found


def _attach_target_flags(jobs: list[ImagingJob], member: Path) -> None:
    """hifa_flagtargets: each EB whose target flag template holds commands is imaged from a copy of its
    calibrated data (``targets/<EB>_targets.ms``, data in DATA) with the template's commands applied
    (spw ids renumbered for an ``<EB>.ms.split.cal``). The restored MS is not touched. An EB whose
    template is empty (the usual case) is imaged as restored."""
    from ..delivery.flagtemplate import parse_flagtemplate

    templates = target_flag_templates(member)
    runs: dict[str, dict[str, Any]] = {}
    for job in jobs:
        vis_list = job.tclean["vis"] if isinstance(job.tclean["vis"], list) else [job.tclean["vis"]]
        new_vis, changed = [], False
        for vis in vis_list:
            eb = _EB_RE.match(Path(vis).name)
            template = templates.get(eb.group(0)) if eb else None
            commands = parse_flagtemplate(template).commands if template else []
            if not commands:
                new_vis.append(vis)
                continue
            mapping = split_spw_map(member, eb.group(0)) if vis.endswith(".ms.split.cal") else None
            lines = []
            for c in commands:
                params = dict(c.params)
                if "spw" in params:
                    params["spw"] = remap_spw(params["spw"], mapping, vis)
                lines.append(" ".join(f"{k}='{v}'" for k, v in params.items()))
            run = runs.setdefault(vis, {"vis": vis, "outputvis": f"targets/{eb.group(0)}_targets.ms",
                                        "datacolumn": calibrated_column(vis), "template": str(template),
                                        "commands": lines})
            job.flagtargets.append(run)
            new_vis.append(run["outputvis"])
            changed = True
        if changed:
            job.changed["vis"] = [job.tclean["vis"], new_vis]
            column = {r["outputvis"]: r for r in job.flagtargets}
            job.reads = [{"vis": v, "datacolumn": "data" if v in column else calibrated_column(v),
                          "delivered": (f"{Path(column[v]['vis']).name} ({column[v]['datacolumn'].upper()}) with "
                                        f"{Path(column[v]['template']).name} applied") if v in column
                          else "as restored"} for v in new_vis]
            job.tclean["vis"] = new_vis
            job.tclean["datacolumn"] = "data" if all(v in column for v in new_vis) else "corrected"


def flagtargets_child(run: dict[str, Any]) -> dict[str, Any]:
    """CASA child: copy the calibrated data of one MS (its science target scans) to ``outputvis``
    (DATA) and apply the target flag template's commands there, as hifa_flagtargets does on
    ``<EB>_targets.ms``. Returns the flagged fraction before and after."""
    from casatasks import flagdata, split

    out = Path(run["outputvis"])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    column = run.get("datacolumn") or calibrated_column(run["vis"])
    _check_column(run["vis"], column)
    split(vis=run["vis"], outputvis=str(out), intent="*OBSERVE_TARGET*", datacolumn=column, keepflags=True)
    before = flagdata(vis=str(out), mode="summary")
    if run["commands"]:
        flagdata(vis=str(out), mode="list", inpfile=list(run["commands"]), action="apply", flagbackup=False)
    after = flagdata(vis=str(out), mode="summary")
    return {"flagged_before": before["flagged"] / before["total"], "flagged_after": after["flagged"] / after["total"]}


def _attach_moments(jobs: list[ImagingJob], member: Path, moments: list[int]) -> None:
    """Each cube also gets its moment maps: over its line channels (those outside cont.dat's ranges for
    the cube's spw, every channel without cont.dat), the noise from its line-free channels."""
    from ..delivery.contdat import parse_contdat

    if not jobs:
        raise UsageError("--moments applies to cubes, and no cube is selected", "select a cube (--specmode cube)")
    contdat = contdat_file(member)
    ranges = contdat_ranges(parse_contdat(contdat)) if contdat else {}
    for job in jobs:
        free = [r for s in job.spws for r in ranges.get(job.field, {}).get(s, [])]
        job.moments = {"moments": moments, "line_free": free, "contdat": contdat.name if contdat else None}
        base = job.exports[".image.pbcor"][: -len(".pbcor.fits")] if ".image.pbcor" in job.exports else job.name
        job.moments["fits"] = {m: f"{base}.mom{m}.fits" for m in moments}


def user_contdat(member: Path) -> Path | None:
    """The user's cont.dat: ``calibrated/working/cont.dat``. As in the pipeline (seed 003: "If a file
    called cont.dat ... is present in the directory where pipeline imaging tasks are run, it will be
    used"), it replaces the delivered ranges, for the continuum images as well as --contsub."""
    found = Path(member) / "calibrated" / "working" / "cont.dat"
    return found if found.is_file() else None


def contdat_file(member: Path) -> Path | None:
    """The cont.dat in force: the user's (``user_contdat``), else the delivered calibration/<MOUS>.cont.dat."""
    user = user_contdat(member)
    if user is not None:
        return user
    found = sorted((Path(member) / "calibration").glob("*cont.dat"))
    return found[0] if found else None


def _attach_cont_ranges(jobs: list[ImagingJob], member: Path, contdat: Path) -> None:
    """Continuum images take their channels from the user's cont.dat (selected in the CASA child, in
    each MS's channels) instead of the ranges the delivered call logged."""
    from ..delivery.contdat import parse_contdat

    ranges = contdat_ranges(parse_contdat(contdat))
    for job in jobs:
        field_ranges = ranges.get(job.field, {})
        missing = [s for s in job.spws if not field_ranges.get(s)]
        if len(missing) == len(job.spws):
            raise TreeError(f"{contdat} has no continuum range for field {job.field!r} spw {', '.join(missing)}",
                            "add ranges (or ALL) to cont.dat, or use --cont all")
        spw = job.tclean.get("spw", "")
        per_vis = spw if isinstance(spw, (list, tuple)) else [spw] * len(job.tclean["vis"])
        job.cont_ranges = [{ms_id: field_ranges.get(s, []) for ms_id, s in zip(spw_ids(entry), job.spws)}
                           for entry in per_vis]
        job.changed["spw"] = [spw, f"channels of {contdat.name} (selected per MS in CASA)"]


@dataclass
class ImagingPlan:
    """What ``almadeliver image`` will do: pipeline jobs, or scriptForImaging.py with the overrides."""

    member: Path
    source: str                     # pipeline or script
    overrides: Overrides
    jobs: list[ImagingJob] = field(default_factory=list)   # pipeline: the images, planned in full
    script: Path | None = None                             # script: run with tclean wrapped
    converted: ConvertedScript | None = None               # script: the text that runs (Python 2 converted)
    translations: list[tuple[int, CleanTranslation]] = field(default_factory=list)  # script: clean() -> tclean()

    def script_notes(self) -> list[str]:
        """What running the script involves beyond the overrides: its conversion and each clean()
        call's translation (shown by ``image --dry-run`` and kept in image_record.json)."""
        if self.converted is None:
            return []
        notes = [self.converted.describe()]
        if self.converted.python2:
            notes.append("its CASA version gates are passed (the script runs in this CASA); viewer/imview/plotms "
                         "calls are skipped (no display)")
        for line, t in self.translations:
            notes.append(f"clean() at line {line} runs as tclean(" +
                         ", ".join(f"{k}={v if isinstance(v, Expression) else repr(v)}" for k, v in t.tclean.items())
                         + "):")
            notes += t.lines()
        return notes


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
    if ov.moment_list:
        raise UsageError("--moments works on pipeline deliveries (cont.dat gives the line-free channels)",
                         "run immoments on the re-made cube in OUT/work, or add it to a copy of the script")
    if not restored_mss(member).by_eb and restored_mss(member).combined is None:
        raise TreeError(f"no restored MS under {member / 'calibrated'}",
                        f"restore the data first: almadeliver restore {member}")
    _check_script_selection(member, script, ov)
    return ImagingPlan(member, kind, ov, script=script, converted=python3_text(script),
                       translations=script_clean_translations(script, delivered_masks(member)))


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
    masks = delivered_masks(member)
    for line, task, kwargs in _script_calls(python3_text(script).text):
        name = str(kwargs.get("imagename", "?"))
        tclean = translate_clean(kwargs, masks).tclean if task == "clean" else kwargs
        jobs.append(ImagingJob(name=name, source=f"{script.name}:{line}" + (" clean()" if task == "clean" else ""),
                               field=str(kwargs.get("field", "?")), spws=spw_ids(kwargs.get("spw", "")) or ["?"],
                               kind="cube" if tclean.get("specmode") == "cube" else "mfs",
                               tclean=tclean, exports={}))
    return jobs


def run(plan_: ImagingPlan, out: Path | None = None, workers: int | None = None,
        on_done: Callable[[str, str | None], None] | None = None) -> "ImagingResult":
    """Make the planned images in a new folder (product/ is never written)."""
    folder = new_out_folder(plan_.member, out)
    if plan_.source == "pipeline":
        return run_images(plan_.jobs, folder, workers, on_done, plan_.overrides)
    return run_script_images(plan_, folder, on_done)


# -- manual deliveries: scriptForImaging.py ---------------------------------------------------------------
def script_tclean_calls(script: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every tclean/clean call in the script: (line, {arg: literal value, or its source text}), as
    written (a clean() call keeps clean's parameters: ``script_clean_translations`` translates them).
    A Python 2 script is read as converted (``imaging_legacy.python3_text``): the line numbers are
    those of the converted text, which fissix keeps for every line it does not split or join."""
    return [(line, kwargs) for line, _, kwargs in _script_calls(python3_text(script).text)]


def _script_calls(text: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(line, task, arguments) of every tclean/clean call in a Python 3 script text."""
    import ast

    tree = ast.parse(text)
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
            if node.func.id == "clean" and node.args:
                positional = clean_arguments(tuple(Expression(ast.get_source_segment(text, a) or "?")
                                                   for a in node.args), {})
                kwargs = {**positional, **kwargs}
            calls.append((node.lineno, node.func.id, kwargs))
    return sorted(calls, key=lambda c: c[0])


def script_clean_translations(script: Path, masks: dict[str, str] | None = None) -> list[tuple[int, CleanTranslation]]:
    """Each clean() call of the script (line in the converted text) with its tclean translation,
    read statically (computed arguments are translated when the script runs)."""
    return [(line, translate_clean(kwargs, masks)) for line, task, kwargs in _script_calls(python3_text(script).text)
            if task == "clean"]


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
    converted = plan_.converted or python3_text(plan_.script)
    script = plan_.script
    if converted.python2:   # the converted copy runs; the delivered script stays as it is
        script = work / plan_.script.name
        script.write_text(converted.text)
    try:
        made = run_in_casa(script_child,
                           {"script": str(script), "out": str(out),
                            "overrides": asdict(plan_.overrides), "legacy": converted.python2,
                            "masks": delivered_masks(plan_.member)},
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
            exports=exports, changed=call["changed"], translated_from=call.get("clean"),
            delivered={f: (str(p) if (p := delivered_product(plan_.member, f)) else None) for f in exports.values()}))
        if on_done:
            on_done(Path(image).name, None)
    if not failures and not jobs:
        failures[plan_.script.name] = "the selection matched no tclean call of the script"
    if failures and on_done:
        on_done(plan_.script.name, failures[plan_.script.name])
    comparisons = compare(out, jobs)
    record, table = write_record(out, jobs, comparisons, failures, plan_.overrides,
                                 script_notes=plan_.script_notes())
    readme = updated_readme(plan_.member, out, comparisons, plan_.overrides)
    return ImagingResult(out, record, table, jobs, comparisons, failures, readme)


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

    contdat = contdat_file(member)
    if contdat is None:
        raise TreeError(f"{member}/calibration has no cont.dat", "--contsub needs the pipeline's <MOUS>.cont.dat")
    found = [contdat]
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
            source = {r["outputvis"]: r["vis"] for r in job.flagtargets}.get(vis, vis)   # a flagged copy keeps its spw ids
            mapping = split_spw_map(member, eb.group(0)) if eb and source.endswith(".ms.split.cal") else None
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
    readme: Path | None = None      # OUT/README: the delivered README with the re-made images' numbers


_README_IMAGE_RE = re.compile(r"rms\s+[-+\d.eE]+\s*(?:mJy|uJy|Jy)/beam|beamsize\s+[\d.]+\s*x\s*[\d.]+\s*arcsec")


def updated_readme(member: Path, out: Path, comparisons: list[Comparison], overrides: Overrides | None = None
                   ) -> Path | None:
    """OUT/README: the delivered README (member/README, never changed) with the numbers users read
    brought up to date: a line naming a re-made product gets the new ``rms ... mJy/beam`` and
    ``beamsize AxB arcsec``, and a closing section lists every re-made image's beam and rms (real
    READMEs also give them in free text). None when the member has no README."""
    readme = Path(member) / "README"
    if not readme.is_file():
        return None
    by_name = {c.fits: c for c in comparisons}

    def numbers(c: Comparison) -> dict[str, str]:
        rms = f"rms {c.new.rms * 1e3:.2f} mJy/beam" if c.new.unit.lower().startswith("jy") else f"rms {c.new.rms:.4g} {c.new.unit}"
        beam = f"beamsize {c.new.bmaj_arcsec:.2f}x{c.new.bmin_arcsec:.2f} arcsec" if c.new.bmaj_arcsec else ""
        return {"rms": rms, "beamsize": beam}

    lines = []
    for line in readme.read_text(errors="replace").splitlines():
        name = next((n for n in by_name if n in line), None)
        if name is not None:
            new = numbers(by_name[name])
            line = _README_IMAGE_RE.sub(lambda m: new["rms"] if m.group(0).startswith("rms") else
                                        (new["beamsize"] or m.group(0)), line)
        lines.append(line)
    changes = ", ".join(f"{k}={v}" for k, v in (overrides or Overrides()).changes().items()) or "none"
    lines += ["", "#####", "", f"Re-imaged by almadeliver (overrides: {changes}); images in {Path(out).name}/ "
              "(rms: MAD over the pbcor image, as in comparison.tsv):", ""]
    for c in comparisons:
        new = numbers(c)
        lines.append(f"{c.fits}: {new['rms']}" + (f", {new['beamsize']}" if new["beamsize"] else ""))
    target = Path(out) / "README"
    target.write_text("\n".join(lines) + "\n")
    return target


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
        for fits_name in (job.moments.get("fits") or {}).values():
            if (Path(out) / fits_name).is_file():
                rows.append(Comparison(fits_name, image_stats(Path(out) / fits_name), None, None))
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

    flagged = {c["outputvis"]: c for j in jobs for c in j.flagtargets}
    if flagged:
        with ThreadPoolExecutor(workers) as pool:
            done = {vis: pool.submit(run_in_casa, flagtargets_child, {"run": c},
                                     workdir=out / "work", logfile=out / "logs" / f"{Path(vis).name}.casa.log")
                    for vis, c in flagged.items()}
            for vis, fut in done.items():
                try:
                    flagged[vis]["result"] = fut.result()
                except Exception as exc:  # noqa: BLE001  (reported per image below)
                    failures[vis] = str(exc)
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
        bad = [c["outputvis"] for c in job.flagtargets if c["outputvis"] in failures]
        if bad:
            return f"target flagging failed: {failures[bad[0]]}"
        bad = [c["outputvis"] for c in job.contsub if c["outputvis"] in failures or c["vis"] in failures]
        if bad:
            c = next(c for c in job.contsub if c["outputvis"] in bad)
            return f"continuum subtraction failed: {failures.get(c['outputvis']) or failures[c['vis']]}"
        try:
            made = run_in_casa(tclean_child,
                        {"tclean": job.tclean, "exports": job.exports, "out": str(out), "reads": job.reads,
                         "cont_ranges": job.cont_ranges, "field": job.field, "moments": job.moments},
                        workdir=out / "work", logfile=out / "logs" / f"{job.name}.casa.log")
        except Exception as exc:  # noqa: BLE001  (one image failing must not stop the others)
            return str(exc)
        if job.moments and isinstance(made, dict):
            job.moments["made"] = made.get("moments")
        if job.cont_ranges and isinstance(made, dict) and "spw" in made:   # the channels cont.dat selected
            job.changed["spw"] = [job.changed.get("spw", [None])[0], made["spw"]]
        return None

    with ThreadPoolExecutor(workers) as pool:
        for job, error in zip(jobs, pool.map(one, jobs)):
            if error:
                failures[job.name] = error
            if on_done:
                on_done(job.name, error)
    comparisons = compare(out, [j for j in jobs if j.name not in failures])
    record, table = write_record(out, jobs, comparisons, failures, overrides)
    member = _member_of(jobs)
    readme = updated_readme(member, out, comparisons, overrides) if member else None
    return ImagingResult(out, record, table, jobs, comparisons, failures, readme)


def _member_of(jobs: list[ImagingJob]) -> Path | None:
    """The member folder of the jobs' delivered products (None when nothing was delivered to compare)."""
    for job in jobs:
        for path in job.delivered.values():
            if path:
                return Path(path).parent.parent
    return None


def write_record(out: Path, jobs: list[ImagingJob], comparisons: list[Comparison],
                 failures: dict[str, str], overrides: Overrides | None = None,
                 script_notes: list[str] | None = None) -> tuple[Path, Path]:
    """``image_record.json`` (exact parameters per image; for a script, its conversion and clean()
    translations) and ``comparison.tsv``."""
    out = Path(out)
    record = out / "image_record.json"
    record.write_text(json.dumps({
        "overrides": (overrides or Overrides()).changes(),
        **({"script": script_notes} if script_notes else {}),
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
                 reads: list[dict[str, str]] | None = None,
                 cont_ranges: list[dict[str, list]] | None = None, field: str | None = None,
                 moments: dict[str, Any] | None = None) -> dict[str, Any]:
    """tclean (arguments this CASA does not know are dropped and reported), then exportfits. Before
    tclean, every MS must hold the column the plan says it is read from (``reads``): the calibrated
    visibilities, never the raw ones. ``cont_ranges`` (per vis, spw -> cont.dat ranges): the spw
    selection becomes the channels of each MS inside the ranges (towards ``field``)."""
    import inspect

    from casatasks import exportfits
    from casatasks import tclean as casa_tclean

    known = set(inspect.signature(casa_tclean).parameters)
    kwargs = {k: v for k, v in tclean.items() if k in known}
    if cont_ranges:
        vis = kwargs["vis"] if isinstance(kwargs["vis"], list) else [kwargs["vis"]]
        kwargs["spw"] = [cont_selection(v, r, field) for v, r in zip(vis, cont_ranges)]
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
    made = moment_maps(kwargs["imagename"] + ".image.pbcor", moments, out) if moments else {}
    return {"dropped": dropped, "fits": written, "moments": made,
            **({"spw": kwargs["spw"]} if cont_ranges else {})}


def moment_maps(cube: str, moments: dict[str, Any], out: str) -> dict[str, Any]:
    """CASA child: immoments of a pbcor cube over its line channels (outside ``line_free``, the cont.dat
    ranges in their frame; every channel when there are none), moments other than 0, 8 and 10 only
    from pixels where the flat-noise cube (``.image`` beside the ``.image.pbcor``) is above 3 x its rms
    in the line-free channels (MAD; of the whole cube without them): one threshold holds across the
    field only before the primary-beam correction. Each map goes to FITS in ``out`` with a PNG
    quick-look beside it."""
    import numpy as np
    from casatasks import exportfits, immoments
    from casatools import image

    flat = cube[: -len(".pbcor")] if cube.endswith(".pbcor") and Path(cube[: -len(".pbcor")]).is_dir() else cube
    ia = image()
    ia.open(flat)
    try:
        data = np.asarray(ia.getchunk(dropdeg=False), dtype=float)     # x, y, stokes, chan
        mask = np.asarray(ia.getchunk(getmask=True, dropdeg=False), dtype=bool)
        cs = ia.coordsys()
        spectral = cs.findaxisbyname("spectral")
        nchan = data.shape[spectral]
        pixel = [0.0] * len(data.shape)
        freqs = []
        for c in range(nchan):
            pixel[spectral] = float(c)
            freqs.append(float(cs.toworld(pixel, "n")["numeric"][spectral]))
        frame = cs.referencecode("spectral")[0]
    finally:
        ia.close()
    free_ranges = [r for r in moments.get("line_free", []) if r[2] == frame or r[2] in ("", None)]
    free = [c for c, f in enumerate(freqs) if any(lo <= f <= hi for lo, hi, _ in free_ranges)]
    line = [c for c in range(nchan) if c not in free] or list(range(nchan))
    noise_chans = free or list(range(nchan))
    values = np.take(np.where(mask, data, np.nan), noise_chans, axis=spectral)
    values = values[np.isfinite(values)]
    rms = float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0
    made: dict[str, Any] = {"line_channels": [list(r) for r in _runs(line)], "rms": rms, "frame": frame,
                            "rms_from": Path(flat).name, "maps": {}}
    for m in moments["moments"]:
        outfile = f"{cube}.mom{m}"
        if Path(outfile).exists():
            shutil.rmtree(outfile)
        clip = "" if m in (0, 8, 10) else f'"{flat}" > {3 * rms:.6g}'
        immoments(imagename=cube, moments=[m], chans=";".join(f"{a}~{b}" for a, b in _runs(line)),
                  mask=clip, outfile=outfile)
        fits_name = moments["fits"][str(m)] if str(m) in moments["fits"] else moments["fits"][m]
        exportfits(imagename=outfile, fitsimage=str(Path(out) / fits_name), overwrite=True, dropdeg=True)
        quicklook_png(Path(out) / fits_name, Path(out) / (fits_name[: -len(".fits")] + ".png"))
        made["maps"][str(m)] = {"fits": fits_name, "mask": clip}
    return made


def quicklook_png(fits_path: Path, png: Path) -> Path:
    """A PNG quick-look of a 2-D FITS map (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.io import fits

    with fits.open(fits_path) as hdul:
        data = np.squeeze(np.asarray(hdul[0].data, dtype=float))
        unit = str(hdul[0].header.get("BUNIT", ""))
    fig, ax = plt.subplots(figsize=(4, 4))
    shown = ax.imshow(data, origin="lower", cmap="viridis")
    fig.colorbar(shown, ax=ax, label=unit)
    ax.set_title(fits_path.name, fontsize=7)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


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


def cont_selection(vis: str, ranges: dict[str, list], field: str | None = None) -> str:
    """CASA child: a tclean spw selection of the channels of ``vis`` whose frequency (in each range's
    frame, towards ``field``) lies in cont.dat's ranges: '0:2~9;20~28,1' (a spw wholly inside: its id)."""
    parts = []
    for spw, spw_ranges in ranges.items():
        if not spw_ranges:
            continue
        freqs = {fr: channel_frequencies(vis, int(spw), fr, field) for fr in {r[2] for r in spw_ranges}}
        n = len(next(iter(freqs.values())))
        chans = [i for i in range(n) if any(lo <= freqs[fr][i] <= hi for lo, hi, fr in spw_ranges)]
        if len(chans) == n:
            parts.append(str(spw))
        elif chans:
            parts.append(f"{spw}:" + ";".join(f"{a}~{b}" for a, b in _runs(chans)))
    if not parts:
        raise RuntimeError(f"no channel of {vis} lies in the cont.dat ranges {ranges}")
    return ",".join(parts)


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


def script_child(script: str, out: str, overrides: dict[str, Any], legacy: bool = False,
                 masks: dict[str, str] | None = None) -> dict[str, Any]:
    """Exec scriptForImaging.py in the legacy namespace with tclean and exportfits wrapped (see
    run_script_images). ``legacy`` (a clean-era script, already converted to Python 3): ``clean`` runs
    as its tclean translation (``imaging_legacy.translate_clean``, ``masks``: the delivered masks),
    its version gates are passed, ``casadef`` answers this CASA's version and display-only tasks
    (viewer, imview, plotms) are skipped."""
    import inspect
    import types

    import casatasks
    import casatools

    from .imaging_legacy import clean_arguments, link_clean_outputs
    from .legacy import run_script

    ov = Overrides(**overrides)
    names = list(inspect.signature(casatasks.tclean).parameters)
    calls: list[dict[str, Any]] = []
    exports: list[dict[str, str]] = []
    skipped: list[str] = []

    def is_skipped(image: str) -> bool:
        return any(image == s or image.startswith(s + ".") for s in skipped if s)

    def run_tclean(kwargs: dict[str, Any], clean: dict[str, Any] | None = None) -> Any:
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
        calls.append({"tclean": new, "changed": changed, "kind": kind, **({"clean": clean} if clean else {})})
        return casatasks.tclean(**new)

    def tclean(*args: Any, **kwargs: Any) -> Any:
        return run_tclean({**dict(zip(names, args)), **kwargs})

    def clean(*args: Any, **kwargs: Any) -> Any:
        call = clean_arguments(args, kwargs)
        t = translate_clean(call, masks)
        result = run_tclean(dict(t.tclean), clean={"arguments": {k: repr(v) for k, v in call.items()},
                                                    "translation": t.lines()})
        if not is_skipped(str(call.get("imagename", ""))):
            link_clean_outputs(str(call["imagename"]), t.pbcor_in_place)
        return result

    def exportfits(*args: Any, **kwargs: Any) -> Any:
        kwargs = {**dict(zip(list(inspect.signature(casatasks.exportfits).parameters), args)), **kwargs}
        image = str(kwargs.get("imagename", ""))
        if is_skipped(image):
            return None
        kwargs["fitsimage"] = str(Path(out) / Path(str(kwargs["fitsimage"])).name)
        kwargs["overwrite"] = True
        exports.append({"imagename": image, "fits": Path(kwargs["fitsimage"]).name})
        return casatasks.exportfits(**kwargs)

    def guarded(task: Any) -> Callable[..., Any]:
        """An image task that does nothing on an image the selection skipped."""
        params = list(inspect.signature(task).parameters)

        def run_task(*args: Any, **kwargs: Any) -> Any:
            kwargs = {**dict(zip(params, args)), **kwargs}
            if is_skipped(str(kwargs.get("imagename", ""))):
                return None
            return task(**kwargs)
        return run_task

    variables: dict[str, Any] = {"tclean": tclean, "exportfits": exportfits}
    for task in ("impbcor", "immath", "imstat", "imhead", "immoments", "imsmooth", "imsubimage", "imrebin"):
        if hasattr(casatasks, task):
            variables[task] = guarded(getattr(casatasks, task))
    if legacy:
        version = ".".join(str(n) for n in casatools.version()[:3])
        variables["clean"] = clean
        variables["casadef"] = types.SimpleNamespace(casa_version=version, subversion_revision="0")
        for task in ("viewer", "imview", "plotms", "plotxy", "plotcal"):
            variables[task] = lambda *a, _task=task, **k: print(f"almadeliver: {_task}() skipped (no display)")
        variables["input"] = lambda *a: print("almadeliver: a prompt for input answered with ''") or ""
    run_script(script, os.getcwd(), variables, pass_version_gates=legacy)
    return {"calls": calls, "exports": exports, "skipped": skipped}
