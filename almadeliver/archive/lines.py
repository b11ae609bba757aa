"""Spectral lines: a small table of rest frequencies, and a line brought to the sky (--z, --vlsr).

Rest frequencies are laboratory values as listed by the CDMS catalogue (Müller et al. 2005, A&A
370, L49; Endres et al. 2016, J. Mol. Spectrosc. 327, 95) through Splatalogue, each entry naming
its measurement. ALMA bands are the receiver ranges of the ALMA Cycle 10 Proposer's Guide /
Technical Handbook (band 2 as offered from Cycle 12: 67-116 GHz).
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


_CDMS = "CDMS via Splatalogue"
LINES: tuple[Line, ...] = (
    Line("CO(1-0)", 115.2712018, f"{_CDMS}; Winnewisser et al. 1997, J. Mol. Spectrosc. 184, 468"),
    Line("CO(2-1)", 230.5380000, f"{_CDMS}; Winnewisser et al. 1997, J. Mol. Spectrosc. 184, 468"),
    Line("CO(3-2)", 345.7959899, f"{_CDMS}; Winnewisser et al. 1997, J. Mol. Spectrosc. 184, 468"),
    Line("CO(4-3)", 461.0407682, f"{_CDMS}; Winnewisser et al. 1997, J. Mol. Spectrosc. 184, 468"),
    Line("CO(6-5)", 691.4730763, f"{_CDMS}; Winnewisser et al. 1997, J. Mol. Spectrosc. 184, 468"),
    Line("CO(7-6)", 806.6518060, f"{_CDMS}; Winnewisser et al. 1997, J. Mol. Spectrosc. 184, 468"),
    Line("13CO(1-0)", 110.2013543, f"{_CDMS}; Cazzoli et al. 2004, J. Mol. Spectrosc. 223, 211"),
    Line("13CO(2-1)", 220.3986842, f"{_CDMS}; Cazzoli et al. 2004, J. Mol. Spectrosc. 223, 211"),
    Line("13CO(3-2)", 330.5879653, f"{_CDMS}; Cazzoli et al. 2004, J. Mol. Spectrosc. 223, 211"),
    Line("C18O(1-0)", 109.7821734, f"{_CDMS}; Cazzoli et al. 2003, J. Mol. Spectrosc. 218, 63"),
    Line("C18O(2-1)", 219.5603541, f"{_CDMS}; Cazzoli et al. 2003, J. Mol. Spectrosc. 218, 63"),
    Line("C18O(3-2)", 329.3305525, f"{_CDMS}; Cazzoli et al. 2003, J. Mol. Spectrosc. 218, 63"),
    Line("HCN(1-0)", 88.6316022, f"{_CDMS}; Ahrens et al. 2002, Z. Naturforsch. 57a, 669"),
    Line("HCN(3-2)", 265.8864343, f"{_CDMS}; Ahrens et al. 2002, Z. Naturforsch. 57a, 669"),
    Line("HCN(4-3)", 354.5054773, f"{_CDMS}; Ahrens et al. 2002, Z. Naturforsch. 57a, 669"),
    Line("HCO+(1-0)", 89.1885247, f"{_CDMS}; Lattanzi et al. 2007, ApJ 662, 771"),
    Line("HCO+(3-2)", 267.5576259, f"{_CDMS}; Lattanzi et al. 2007, ApJ 662, 771"),
    Line("HCO+(4-3)", 356.7342230, f"{_CDMS}; Lattanzi et al. 2007, ApJ 662, 771"),
    Line("HNC(1-0)", 90.6635680, f"{_CDMS}; Saykally et al. 1976, ApJ 205, L101"),
    Line("N2H+(1-0)", 93.1737700, f"{_CDMS}; Caselli et al. 1995, ApJ 455, L77 (main hyperfine group)"),
    Line("N2H+(3-2)", 279.5117491, f"{_CDMS}; Pagani et al. 2009, A&A 494, 719"),
    Line("CS(2-1)", 97.9809533, f"{_CDMS}; Gottlieb et al. 2003, ApJ 588, 655"),
    Line("CS(5-4)", 244.9355565, f"{_CDMS}; Gottlieb et al. 2003, ApJ 588, 655"),
    Line("CS(7-6)", 342.8828503, f"{_CDMS}; Gottlieb et al. 2003, ApJ 588, 655"),
    Line("SiO(2-1)", 86.8469950, f"{_CDMS}; Müller et al. 2013, J. Mol. Spectrosc. 291, 41 (v=0)"),
    Line("SiO(5-4)", 217.1049190, f"{_CDMS}; Müller et al. 2013, J. Mol. Spectrosc. 291, 41 (v=0)"),
    Line("H2CO(3-2)", 218.2221920, f"{_CDMS}; Müller & Lewen 2017, J. Mol. Spectrosc. 331, 28 (3_03-2_02)"),
    Line("CH3OH(5-4)", 241.7913520, f"{_CDMS}; Xu et al. 2008, J. Mol. Spectrosc. 251, 305 (5_0-4_0 A+)"),
    Line("H2O(3-2)", 183.3100870, "JPL via Splatalogue; De Lucia et al. 1972, Phys. Rev. A 6, 1324 (3_13-2_20)"),
    Line("H2O(10-9)", 321.2256770, "JPL via Splatalogue; Kuze et al. 1981 (10_29-9_36)"),
    Line("[CI](1-0)", 492.1606510, f"{_CDMS}; Yamamoto & Saito 1991, ApJ 370, L103"),
    Line("[CI](2-1)", 809.3419700, f"{_CDMS}; Klein et al. 1998, ApJ 494, L125"),
    Line("[NII]205", 1461.1314060, f"{_CDMS}; Brown et al. 1994, ApJ 428, L37"),
    Line("[CII]", 1900.5369000, f"{_CDMS}; Cooksy et al. 1986, ApJ 305, L89"),
    Line("[OIII]88", 3393.0062440, f"{_CDMS}; Moreno & Ferraro (JPL); 88.356 um"),
    Line("H30alpha", 231.9009280, "Lilley & Palmer 1968, ApJS 16, 143 (hydrogen recombination)"),
    Line("H40alpha", 99.0229500, "Lilley & Palmer 1968, ApJS 16, 143 (hydrogen recombination)"),
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
