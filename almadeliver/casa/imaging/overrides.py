"""The user's image overrides (``Overrides``) and how they change a delivered tclean call.

``Overrides`` validates the options (``--robust``, ``--nbin '17:8,23:2'``, ``--width``, ``--cont all``,
``--moments`` ...) before anything runs; ``apply_overrides`` and ``rebin`` turn them into tclean
arguments. Also the spw-string helpers every part of imaging uses (``spw_ids``).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable

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
    width: str | None = None         # cube channel width (channels, Hz or km/s), one or per spw: '17:2MHz,23:1km/s'
    start: str | None = None         # cube's first channel (channel, Hz or km/s), one or per spw
    nchan: int | str | None = None   # cube's channel count, one or per spw
    restfreq: str | None = None      # cube's rest frequency (velocities are relative to it), one or per spw
    spectral_range: str | None = None  # --range LO~HI (Hz or km/s): start and nchan covering it, one or per spw
    line_free: str | None = None     # --line-free ranges for --contsub/--moments where no cont.dat gives them
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
        per_spw = {name: self.per_spw(name) for name in PER_SPW}     # validates each
        both = set(per_spw["spectral_range"]) & (set(per_spw["start"]) | set(per_spw["nchan"]))
        if both or (per_spw["spectral_range"] and None in set(per_spw["start"]) | set(per_spw["nchan"])):
            raise UsageError("--range and --start/--nchan both set for the same cube",
                             "give --range (it sets start and nchan), or --start and --nchan")

    @property
    def nbins(self) -> dict[str | None, int]:
        """--nbin as spw id -> channels to average (key None: every cube); {} when not set.

        Takes the pipeline's form (hif_makeimlist ``nbins='17:8,23:2'``, seed 003) or one integer.

        Raises
        ------
        UsageError
            ``--nbin`` is not a positive count nor ``spw:count`` pairs, or names a spw twice.
        """
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
        3 median, 5 std, 6 rms, 8 peak, 9 velocity of the peak, 10 minimum, 11 velocity of the minimum).

        Raises
        ------
        UsageError
            A ``--moments`` entry is not an immoments moment.
        """
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
        """The channels to average for a cube of ``spws`` (None: no binning).

        Parameters
        ----------
        spws : list[str]
            The cube's spw ids.

        Returns
        -------
        int | None
            The channel count, or None.
        """
        return _for_spws(self.nbins, spws)

    def per_spw(self, name: str) -> dict[str | None, Any]:
        """A per-spw option (``PER_SPW``: width, start, nchan, restfreq, spectral_range) as spw id -> value
        (key None: every cube); {} when not set. Raises UsageError when a value is not of its kind.

        Parameters
        ----------
        name : str
            The option's name (``PER_SPW``).

        Returns
        -------
        dict[str | None, Any]
            spw id (None: every cube) -> value.
        """
        value = getattr(self, name)
        return {} if value in (None, "") else parse_per_spw(PER_SPW[name][0], value, *PER_SPW[name][1:])

    def value_for(self, name: str, spws: list[str]) -> Any:
        """The value of the per-spw option ``name`` for a cube of ``spws`` (None: keep the delivered one).

        Parameters
        ----------
        name : str
            The option's name (``PER_SPW``).
        spws : list[str]
            The cube's spw ids.

        Returns
        -------
        Any
            The value, or None.
        """
        return _for_spws(self.per_spw(name), spws)

    def spectral_options(self) -> list[str]:
        """The cube options given (as --names): they apply to cubes only.

        Returns
        -------
        list[str]
            The option names, as ``--name``.
        """
        names = {"nbin": "--nbin", **{n: PER_SPW[n][0] for n in PER_SPW}}
        return [flag for name, flag in names.items() if getattr(self, name) not in (None, "")]

    def changes(self) -> dict[str, Any]:
        """The options the user set (for the record).

        Returns
        -------
        dict[str, Any]
            Option name -> value.
        """
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}

    @property
    def spws(self) -> list[str] | None:
        """The ``--spw`` selection as a list of spw ids, or None (all)."""
        return _split(self.spw) if self.spw else None

    @property
    def fields(self) -> list[str] | None:
        """The ``--field`` selection as a list of field names, or None (all)."""
        return _split(self.field) if self.field else None


def _for_spws(values: dict[str | None, Any], spws: list[str]) -> Any:
    """The value for a cube of ``spws``: the one for every cube, else the spws' own when they agree."""
    if None in values:
        return values[None]
    found = [values[s] for s in spws if s in values]
    return found[0] if found and all(f == found[0] for f in found) else None


def _channels_or(kinds: tuple[str, ...], positive: bool = False):
    """A parser of a channel count/number or a quantity of one of ``kinds`` (units), kept as text."""
    def parse(text: str) -> int | str:
        if re.fullmatch(r"-?\d+", text):
            if positive and int(text) < 1:
                raise ValueError("is not a positive channel count")
            return int(text)
        if not kinds or not any(_quantity(text, unit) is not None for unit in kinds):
            raise ValueError("is not " + (" nor ".join(["a channel count" if positive else "a channel number",
                                                        *(f"a quantity in {u}" for u in kinds)])))
        return text
    return parse


def _frequency(text: str) -> str:
    q = _quantity(text, "Hz")
    if q is None or q.value <= 0:
        raise ValueError("is not a positive frequency")
    return text


def spectral_range(text: str) -> tuple[Any, Any]:
    """``LO~HI`` (``-50~50km/s``, ``230.1GHz~230.3GHz``: a unit on HI serves both) as two astropy
    Quantities of frequency or velocity, LO < HI. Raises ValueError otherwise.

    Parameters
    ----------
    text : str
        ``LO~HI`` with a unit.

    Returns
    -------
    tuple[Any, Any]
        (LO, HI) as astropy Quantities (Hz-like or km/s-like).
    """
    lo_text, sep, hi_text = text.partition("~")
    hi = _quantity(hi_text, "Hz")
    hi = hi if hi is not None else _quantity(hi_text, "km/s")
    if not sep or hi is None:
        raise ValueError("is not LO~HI in frequency or velocity units (e.g. -50~50km/s)")
    lo = _quantity(lo_text, hi.unit)
    if lo is None and re.fullmatch(r"\s*[-+.\deE]+\s*", lo_text):     # the unit written once, on HI
        lo = _quantity(f"{lo_text.strip()}{hi.unit.to_string().replace(' ', '')}", hi.unit)
    if lo is None or lo.to_value(hi.unit) >= hi.value:
        raise ValueError("is not LO~HI with LO below HI in one kind of unit")
    return lo, hi


# per-spw options: field -> (option, value parser, example); the same spw:value grammar as --nbin
PER_SPW: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "width": ("--width", _channels_or(("Hz", "km/s"), positive=True), "2MHz"),
    "start": ("--start", _channels_or(("Hz", "km/s")), "-50km/s"),
    "nchan": ("--nchan", _channels_or((), positive=True), "100"),
    "restfreq": ("--restfreq", _frequency, "230.538GHz"),
    "spectral_range": ("--range", spectral_range, "-50~50km/s"),
    "line_free": ("--line-free", lambda text: line_free_ranges(text), "230.0~230.1GHz;230.3~230.4GHz"),
}
_FRAMES = ("LSRK", "TOPO", "BARY", "LSRD", "GEO", "REST", "GALACTO", "LGROUP", "CMB")


def line_free_ranges(text: str) -> list[tuple[float, float, str]]:
    """``--line-free`` ranges of one spw: ``LO~HI[;LO~HI...]`` in frequency units (a unit on HI serves
    LO), optionally followed by a frame (``LSRK`` default, as cont.dat writes them), e.g.
    ``230.0~230.1GHz;230.3~230.4GHz``. Returns [(low Hz, high Hz, frame)]; raises ValueError.

    Parameters
    ----------
    text : str
        The ``--line-free`` value of one spw.

    Returns
    -------
    list[tuple[float, float, str]]
        [(low Hz, high Hz, frame)].
    """
    body, _, frame = text.strip().partition(" ")
    frame = frame.strip().upper() or "LSRK"
    if frame not in _FRAMES:
        raise ValueError(f"names the frame {frame!r}, which CASA does not know ({', '.join(_FRAMES)})")
    out = []
    for part in body.split(";"):
        lo, hi = spectral_range(part)
        if not lo.unit.is_equivalent("Hz"):
            raise ValueError("is not in frequency units (e.g. 230.0~230.1GHz;230.3~230.4GHz)")
        out.append((float(lo.to_value("Hz")), float(hi.to_value("Hz")), frame))
    return out


def parse_per_spw(option: str, text: Any, parse: Callable[[str], Any], example: str) -> dict[str | None, Any]:
    """One value for every cube, or ``spw:value,spw:value`` (hif_makeimlist's nbins form, seed 003) as
    spw id -> value (key None: every cube). Raises UsageError naming the part that is wrong.

    Parameters
    ----------
    option : str
        The option's name, for the errors.
    text : Any
        The option's value (text or already parsed).
    parse : Callable[[str], Any]
        Reads one value.
    example : str
        An example value, for the hint.

    Returns
    -------
    dict[str | None, Any]
        spw id (None: every cube) -> value.

    Raises
    ------
    UsageError
        A part is not ``spw:value``, a spw is given twice, or ``parse`` refuses a value.
    """
    text = str(text).strip()
    hint = f"e.g. {option} {example} (every cube) or {option} '17:{example},23:{example}' (per spw)"
    out: dict[str | None, Any] = {}
    for part in (text.split(",") if ":" in text else [text]):
        spw, _, value = part.strip().rpartition(":")
        if ":" in part and not spw.strip().isdigit():
            raise UsageError(f"{option} {text!r}: {part.strip()!r} is not spw:value", hint)
        key = spw.strip() if ":" in part else None
        if key in out:
            raise UsageError(f"{option} {text!r} gives spw {key} twice", hint)
        try:
            out[key] = parse(value.strip())
        except ValueError as exc:
            raise UsageError(f"{option} {text!r}: {value.strip()!r} {exc}", hint) from None
    return out


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
    """The spw ids in a tclean spw= value: '0', '0,1', '17:90.1~90.2GHz;90.5~90.6GHz', or a list of them.

    Parameters
    ----------
    spw : Any
        The tclean spw= value.

    Returns
    -------
    list[str]
        The spw ids, as text.
    """
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
    ``spws``: the image's spw ids as the delivery names them (for the per-spw options; default: read
    from the call's spw). Raises UsageError when --range cannot be turned into channels of the cube.

    Parameters
    ----------
    tclean : dict[str, Any]
        The tclean arguments of one image.
    kind : str
        ``cube``, ``mfs`` or ``cont``.
    ov : Overrides
        The user's overrides of the delivered tclean calls.
    spws : list[str] | None, default None
        The image's spw ids (None: read from the call).

    Returns
    -------
    tuple[dict[str, Any], dict[str, Any]]
        (new tclean arguments, name -> (old, new) of those changed).
    """
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
    if kind == "cube":
        nbin, width = ov.nbin_for(spws), ov.value_for("width", spws)
        if nbin is not None or width is not None:
            new.update(rebin(new, nbin=nbin, width=width))
        new.update(spectral_axis(new, ov, spws))
    if kind in ("cont", "mfs") and ov.cont == "all":
        # every unflagged channel: the spw ids without the channel or frequency ranges
        spw = new.get("spw", "")
        new["spw"] = [",".join(spw_ids(s)) for s in spw] if isinstance(spw, (list, tuple)) else ",".join(spw_ids(spw))
    changed = {k: [tclean.get(k), v] for k, v in new.items() if tclean.get(k) != v}
    return new, changed


def spectral_axis(tclean: dict[str, Any], ov: Overrides, spws: list[str]) -> dict[str, Any]:
    """The cube's start, nchan and restfreq as --start/--nchan/--restfreq/--range give them for ``spws``.

    ``--range LO~HI`` becomes the channels of the cube's width (``tclean``'s, already rebinned)
    covering it: nchan = ceil((HI - LO) / |width|), start the centre of the first channel (LO + width/2,
    or HI - |width|/2 for a negative width), as tclean reads ``start``. Velocities are radio velocities
    towards ``restfreq`` (--restfreq, else the call's, else the MS's rest frequency), as in tclean.

    Parameters
    ----------
    tclean : dict[str, Any]
        The tclean arguments of one image.
    ov : Overrides
        The user's overrides of the delivered tclean calls.
    spws : list[str]
        The cube's spw ids.

    Returns
    -------
    dict[str, Any]
        ``start``, ``nchan`` and ``restfreq`` as changed.

    Raises
    ------
    UsageError
        ``--range`` is in units (velocity or frequency) the cube's width cannot be turned into.
    """
    out: dict[str, Any] = {}
    window = ov.value_for("spectral_range", spws)
    if window is not None:
        lo, hi = window
        width = _spectral(tclean.get("width", ""))
        unit = lo.unit.to_string().replace(" ", "")
        if width is None or not width.unit.is_equivalent(lo.unit):
            raise UsageError(f"--range {ov.spectral_range} is in {unit}, and the cube of spw {','.join(spws)} "
                             f"has width={tclean.get('width', '')!r}",
                             f"give the width in {unit} too, e.g. --width {','.join(spws)}:1{unit}")
        step = abs(width.to_value(lo.unit))
        out["nchan"] = max(1, int(math.ceil((hi - lo).to_value(lo.unit) / step - 1e-9)))
        first = lo.value + step / 2 if width.value > 0 else hi.to_value(lo.unit) - step / 2
        out["start"] = _format_quantity(first, lo.unit)
    for name in ("start", "nchan", "restfreq"):
        value = ov.value_for(name, spws)
        if value is not None:
            out[name] = value
    return out


def rebin(tclean: dict[str, Any], nbin: int | None = None, width: str | None = None) -> dict[str, Any]:
    """New start/width/nchan for a cube binned by ``nbin`` channels or set to ``width``.

    ``width`` may be a channel count or a quantity (frequency or velocity). ``nchan`` shrinks by the
    same factor (floor) and a quantity ``start`` (a channel centre) moves by half the width change,
    so the first new channel still begins where the first delivered one began. When the factor
    cannot be known (velocity against frequency), nchan=-1 lets tclean cover the band.

    Parameters
    ----------
    tclean : dict[str, Any]
        The tclean arguments of one image.
    nbin : int | None, default None
        Channels to average (None: not binned by count).
    width : str | None, default None
        The new width: a channel count or a frequency or velocity quantity.

    Returns
    -------
    dict[str, Any]
        The new ``start``, ``width`` and ``nchan``.
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
