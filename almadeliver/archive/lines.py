"""Spectral lines: a small table of rest frequencies, and a line brought to the sky (--z, --vlsr).

Rest frequencies are the laboratory values of the CDMS and JPL spectral line catalogues as
Splatalogue lists them (each entry names its catalogue and, where it matters, the transition).
ALMA bands are the receiver ranges of the ALMA Technical Handbook (band 2: the 67-116 GHz
receiver, which overlaps band 3).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Line:
    """A transition with its rest frequency."""

    name: str            # as users write it: CO(2-1), HCO+(1-0), [CII]
    rest_ghz: float      # rest frequency, GHz
    source: str          # where the value comes from


_CDMS = "CDMS catalogue (Müller et al. 2005, A&A 370, L49) via Splatalogue"
_JPL = "JPL catalogue (Pickett et al. 1998, JQSRT 60, 883) via Splatalogue"
LINES: tuple[Line, ...] = (
    Line("CO(1-0)", 115.2712018, _CDMS),
    Line("CO(2-1)", 230.5380000, _CDMS),
    Line("CO(3-2)", 345.7959899, _CDMS),
    Line("CO(4-3)", 461.0407682, _CDMS),
    Line("CO(6-5)", 691.4730763, _CDMS),
    Line("CO(7-6)", 806.6518060, _CDMS),
    Line("13CO(1-0)", 110.2013543, _CDMS),
    Line("13CO(2-1)", 220.3986842, _CDMS),
    Line("13CO(3-2)", 330.5879653, _CDMS),
    Line("C18O(1-0)", 109.7821734, _CDMS),
    Line("C18O(2-1)", 219.5603541, _CDMS),
    Line("C18O(3-2)", 329.3305525, _CDMS),
    Line("HCN(1-0)", 88.6316022, _CDMS),
    Line("HCN(3-2)", 265.8864343, _CDMS),
    Line("HCN(4-3)", 354.5054773, _CDMS),
    Line("HCO+(1-0)", 89.1885247, _CDMS),
    Line("HCO+(3-2)", 267.5576259, _CDMS),
    Line("HCO+(4-3)", 356.7342230, _CDMS),
    Line("HNC(1-0)", 90.6635680, _CDMS),
    Line("N2H+(1-0)", 93.1737700, f"{_CDMS} (main hyperfine group)"),
    Line("N2H+(3-2)", 279.5117491, _CDMS),
    Line("CS(2-1)", 97.9809533, _CDMS),
    Line("CS(5-4)", 244.9355565, _CDMS),
    Line("CS(7-6)", 342.8828503, _CDMS),
    Line("SiO(2-1)", 86.8469950, f"{_CDMS} (v=0)"),
    Line("SiO(5-4)", 217.1049190, f"{_CDMS} (v=0)"),
    Line("H2CO(3-2)", 218.2221920, f"{_CDMS} (3_03-2_02)"),
    Line("CH3OH(5-4)", 241.7913520, f"{_CDMS} (5_0-4_0 A+)"),
    Line("H2O(3-2)", 183.3100870, f"{_JPL} (3_13-2_20)"),
    Line("H2O(10-9)", 321.2256770, f"{_JPL} (10_29-9_36)"),
    Line("[CI](1-0)", 492.1606510, _CDMS),
    Line("[CI](2-1)", 809.3419700, _CDMS),
    Line("[NII]205", 1461.1314060, _CDMS),
    Line("[CII]", 1900.5369000, _CDMS),
    Line("[OIII]88", 3393.0062440, _CDMS),
    Line("H30alpha", 231.9009280, "Rydberg formula for hydrogen (recombination line tables of Lilley & Palmer 1968, ApJS 16, 143)"),
    Line("H40alpha", 99.0229500, "Rydberg formula for hydrogen (recombination line tables of Lilley & Palmer 1968, ApJS 16, 143)"),
)

# ALMA receiver bands (GHz).
BANDS_GHZ: dict[int, tuple[float, float]] = {
    1: (35.0, 50.0), 2: (67.0, 116.0), 3: (84.0, 116.0), 4: (125.0, 163.0), 5: (163.0, 211.0),
    6: (211.0, 275.0), 7: (275.0, 373.0), 8: (385.0, 500.0), 9: (602.0, 720.0), 10: (787.0, 950.0),
}

CONVENTIONS = ("radio", "optical", "relativistic")


def _key(name: str) -> str:
    return re.sub(r"[\s_]", "", name).lower().replace("−", "-").replace("–", "-")


_BY_KEY = {_key(line.name): line for line in LINES}


def find_line(name: str) -> Line:
    """The built-in line called ``name`` (spaces and case ignored: 'co(2-1)', 'CO 2-1' too).

    Raises
    ------
    UsageError
        No line of that name; the message lists the names known.
    """
    key = _key(name)
    line = _BY_KEY.get(key) or _BY_KEY.get(re.sub(r"^([^(]+?)(\d+-\d+)$", r"\1(\2)", key))
    if line is None:
        raise UsageError(f"'{name}' is not a line almadeliver knows",
                         "give a rest frequency (230.538GHz) or one of " + ", ".join(l.name for l in LINES))
    return line


def parse_line(text: str) -> Line:
    """A line from ``--line``: a rest frequency with units (230.538GHz, 1.3mm) or a table name."""
    from .spectral import parse_quantity_ghz

    try:
        return Line(text.strip(), parse_quantity_ghz(text, "--line"), "given on the command line")
    except UsageError:
        return find_line(text)


def sky_frequency_ghz(rest_ghz: float, z: float | None = None, vlsr_kms: float | None = None,
                      convention: str = "radio") -> float:
    """The frequency at which a line of rest frequency ``rest_ghz`` is observed.

    Parameters
    ----------
    rest_ghz : float
        Rest frequency, GHz.
    z : float, optional
        Redshift; observed = rest / (1 + z) (the definition of z; astropy's ``u.doppler_redshift``
        relates the same z to a relativistic velocity).
    vlsr_kms : float, optional
        Source velocity in the LSRK frame, km/s, in ``convention`` (astropy ``u.doppler_radio``,
        ``doppler_optical`` or ``doppler_relativistic``; radio is ALMA's and CASA's default).
    convention : str
        radio | optical | relativistic.

    Returns
    -------
    float
        The LSRK sky frequency in GHz.

    Raises
    ------
    UsageError
        Both z and vlsr given, a convention not known, or a velocity that is not physical.
    """
    from astropy import units as u

    if z is not None and vlsr_kms is not None:
        raise UsageError("--z and --vlsr both given", "give the redshift or the LSRK velocity, not both")
    if convention not in CONVENTIONS:
        raise UsageError(f"velocity convention '{convention}' is not known", f"use one of {', '.join(CONVENTIONS)}")
    rest = rest_ghz * u.GHz
    if z is not None:
        if z <= -1:
            raise UsageError(f"--z {z} is not a redshift", "give z > -1")
        return float(rest.value / (1 + z))
    if vlsr_kms is None:
        return float(rest_ghz)
    if abs(vlsr_kms) >= 299792.458:
        raise UsageError(f"--vlsr {vlsr_kms} km/s is faster than light", "give the velocity in km/s")
    equivalency = {"radio": u.doppler_radio, "optical": u.doppler_optical,
                   "relativistic": u.doppler_relativistic}[convention](rest)
    return float((vlsr_kms * u.km / u.s).to(u.GHz, equivalencies=equivalency).value)


def bands_of(lo_ghz: float, hi_ghz: float) -> list[int]:
    """The ALMA bands whose receiver range overlaps [lo, hi] GHz."""
    return [b for b, (a, c) in BANDS_GHZ.items() if a <= hi_ghz and c >= lo_ghz]
