"""The user's image overrides (``Overrides``) and how they change a delivered tclean call.

``Overrides`` validates the options (``--robust``, ``--nbin '17:8,23:2'``, ``--width``, ``--cont all``,
``--moments`` ...) before anything runs; ``apply_overrides`` and ``rebin`` turn them into tclean
arguments. Also the spw-string helpers every part of imaging uses (``spw_ids``).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from ...errors import UsageError


_SPECMODES = ("cube", "mfs", "cont")
MOMENTS = (-1, 0, 1, 2, 3, 5, 6, 8, 9, 10, 11)


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
