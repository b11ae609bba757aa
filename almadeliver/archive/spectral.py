"""Spectral coverage: ObsCore ``frequency_support`` read spw by spw, and what a request covers.

``frequency_support`` is the correlator setup of the MOUS as text, one bracketed segment per
spectral window joined by `` U `` (../shared/fixtures/real/archive/obscore_columns.md; astroquery
``alma/utils.py`` ``parse_frequency_support``; ALminer issue #8)::

    [86.26..88.14GHz,976.56kHz, XX YY] U [88.15..90.03GHz,976.56kHz, XX YY]
    [239.50..241.37GHz,976.56kHz,1.7mJy/beam@10km/s,111.7uJy/beam@native, XX YY]
    [686.49..688.37GHz,976.56kHz,52.20mJy/beam@10km/s,5.77uJy/beam@native, XX YY,line]

Segment fields after the range are read by their form, not their position (the recorded answers
differ in which are present): a frequency is the spectral resolution, ``...Jy/beam@10km/s`` and
``...Jy/beam@native`` the sensitivities, XX/YY/RR/LL/XY/YX the polarizations, ``line``/``cont``
the spw type the archive's web export adds, and a spectral reference frame (LSRK, TOPO, BARY)
when one is written. ``em_min``/``em_max`` of one ObsCore row describe one spw only; a line
is looked for in every segment, so a MOUS whose line sits in a spw other than the row's is found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

C_KMS = 299792.458
# A TOPO frequency differs from LSRK by at most Earth's orbital (29.8 km/s) + rotational (0.5 km/s)
# velocity + the Sun's motion towards the LSR apex (~20 km/s): 1.7e-4 of the frequency at most.
TOPO_TOLERANCE = 1.7e-4
FRAMES = ("LSRK", "TOPO", "BARY", "LSRD", "GEO", "REST", "GALACTO", "LGROUP", "CMB", "SOURCE")
_POLS = {"XX", "YY", "XY", "YX", "RR", "LL", "RL", "LR", "I", "Q", "U", "V"}
_RANGE = re.compile(r"^\s*([-+\d.eE]+)\s*(?:([kMGT]?Hz))?\s*\.\.\s*([-+\d.eE]+)\s*([kMGT]?Hz)\s*$")
_FREQ = re.compile(r"^\s*([-+\d.eE]+)\s*([kMGT]?Hz)\s*$")
_SENS = re.compile(r"^\s*([-+\d.eE]+)\s*([num]?Jy)/beam@(10km/s|native)\s*$")
_HZ = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "THz": 1e12}
_JY_TO_MJY = {"Jy": 1e3, "mJy": 1.0, "uJy": 1e-3, "nJy": 1e-6}


@dataclass(frozen=True)
class SpwSupport:
    """One spectral window of ``frequency_support``."""

    lo_ghz: float
    hi_ghz: float
    resolution_hz: float | None          # effective channel resolution as ALMA lists it
    sensitivity_10kms: float | None      # mJy/beam in 10 km/s
    sensitivity_native: float | None     # mJy/beam at the native resolution
    polarizations: str = ""
    frame: str | None = None             # LSRK | TOPO | ... when written
    kind: str | None = None              # line | cont when written

    def covers(self, lo_ghz: float, hi_ghz: float | None = None) -> bool:
        """The spw holds frequency ``lo_ghz`` (or overlaps [lo, hi]); a TOPO spw is widened by
        TOPO_TOLERANCE, since a request is made in LSRK."""
        hi_ghz = lo_ghz if hi_ghz is None else hi_ghz
        pad = self.hi_ghz * TOPO_TOLERANCE if self.frame == "TOPO" else 0.0
        return self.lo_ghz - pad <= hi_ghz and self.hi_ghz + pad >= lo_ghz

    def channel_kms(self, at_ghz: float) -> float | None:
        """The channel width as a velocity at frequency ``at_ghz``, km/s."""
        if not self.resolution_hz or at_ghz <= 0:
            return None
        return self.resolution_hz / (at_ghz * 1e9) * C_KMS


def _segment(text: str) -> SpwSupport:
    fields = [f.strip() for f in text.split(",")]
    m = _RANGE.match(fields[0])
    if not m:
        raise ValueError(f"no frequency range in '[{text}]'")
    hi_unit = _HZ[m[4]]
    lo, hi = float(m[1]) * _HZ[m[2] or m[4]] / 1e9, float(m[3]) * hi_unit / 1e9
    res = s10 = native = frame = kind = None
    pols: list[str] = []
    for f in fields[1:]:
        if (fm := _FREQ.match(f)) and res is None:
            res = float(fm[1]) * _HZ[fm[2]]
        elif sm := _SENS.match(f):
            value = float(sm[1]) * _JY_TO_MJY[sm[2]]
            if sm[3] == "native":
                native = value
            else:
                s10 = value
        else:
            for word in f.split():
                if word.upper() in _POLS:
                    pols.append(word.upper())
                elif word.upper() in FRAMES:
                    frame = word.upper()
                elif word.lower() in ("line", "cont", "continuum"):
                    kind = "cont" if word.lower().startswith("cont") else "line"
    return SpwSupport(min(lo, hi), max(lo, hi), res, s10, native, " ".join(pols), frame, kind)


def parse_frequency_support(text: str | None) -> list[SpwSupport]:
    """Every spw segment of a ``frequency_support`` value, in the order written.

    Parameters
    ----------
    text : str or None
        The ObsCore value (None or empty: no spw).

    Returns
    -------
    list of SpwSupport
        Frequencies in GHz, resolution in Hz, sensitivities in mJy/beam.

    Raises
    ------
    ValueError
        A bracketed segment without a readable ``lo..hiGHz`` range.
    """
    if not text or not str(text).strip():
        return []
    segments = re.findall(r"\[([^\]]*)\]", str(text))
    if not segments:  # an unbracketed single range
        segments = [str(text).strip()]
    return [_segment(s) for s in segments]


def parse_quantity_ghz(text: str, what: str) -> float:
    """A frequency or wavelength with units as a frequency in GHz ('230.5GHz', '1.3mm', '1.3 mm').

    Raises
    ------
    UsageError
        No unit, or a unit that is neither a frequency nor a length.
    """
    from astropy import units as u

    try:
        q = u.Quantity(text.strip())
        if q.unit == u.dimensionless_unscaled:
            raise ValueError("no unit")
        value = q.to(u.GHz, equivalencies=u.spectral()).value
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise UsageError(f"{what} '{text}' is not a frequency or wavelength",
                         "give a value with units, such as 230.538GHz, 1.3mm or 84..116GHz") from exc
    if not value > 0:
        raise UsageError(f"{what} '{text}' is not a positive frequency", "give a value above zero")
    return float(value)


def parse_freq_range(text: str) -> tuple[float, float]:
    """``--freq``: one value or ``lo..hi`` (units on one or both ends; frequency or wavelength).

    Returns
    -------
    (lo, hi) : tuple of float
        GHz, lo <= hi (a wavelength range is turned around).
    """
    if ".." not in text:
        f = parse_quantity_ghz(text, "--freq")
        return f, f
    left, right = (s.strip() for s in text.split("..", 1))
    unit = re.sub(r"^[-+\d.eE\s]+", "", right)
    if not unit:
        raise UsageError(f"--freq '{text}' has no unit", "give a range such as 84..116GHz or 2.6..3.6mm")
    if not re.sub(r"^[-+\d.eE\s]+", "", left):
        left += unit
    a, b = parse_quantity_ghz(left, "--freq"), parse_quantity_ghz(right, "--freq")
    return min(a, b), max(a, b)


def parse_limit(text: str, unit: str, what: str) -> float:
    """A limit with optional units converted to ``unit`` ('0.5arcsec', '500mas', '2', '1.5mJy/beam')."""
    from astropy import units as u

    text = re.sub(r"(?<=[\d\s])kms$", "km/s", text.strip())   # 1kms, as people write it
    try:
        q = u.Quantity(text)
        value = q.value if q.unit == u.dimensionless_unscaled else q.to(u.Unit(unit)).value
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise UsageError(f"{what} '{text}' is not a value in {unit}", f"give a number in {unit} or a value with units") from exc
    if not value > 0:
        raise UsageError(f"{what} '{text}' is not positive", "give a value above zero")
    return float(value)
