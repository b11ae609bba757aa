"""The SODA request a cutout came from, recorded in its FITS header (``download --cutout``).

A cutout ``<name>.cutout.fits`` carries, in its primary header, the SODA parameters it was cut with
(``SODACIRC`` = CIRCLE ``ra dec radius`` in ICRS degrees, ``SODABAND`` = BAND ``lo hi`` in metres
[IVOA SODA 1.0]) and the product it was cut from (``SODAID``), so the file says what it is without
the download's journal, and a rerun with the same request knows it is done.
"""
from __future__ import annotations

from pathlib import Path

#: SODA parameter -> header keyword (and its comment)
CARDS = {"ID": ("SODAID", "product this SODA cutout was cut from"),
         "CIRCLE": ("SODACIRC", "SODA CIRCLE: ra dec radius [deg, ICRS]"),
         "BAND": ("SODABAND", "SODA BAND: wavelength lo hi [m]")}


def stamp_cutout(path: Path, params: dict[str, str]) -> None:
    """Write the SODA ``params`` (ID, CIRCLE, BAND) into the primary header of the cutout at ``path``.

    Parameters
    ----------
    path : Path
        The cutout FITS file.
    params : dict[str, str]
        The SODA parameters of the request (ID, CIRCLE in degrees, BAND in metres).
    """
    from astropy.io import fits

    with fits.open(path, mode="update") as hdul:
        header = hdul[0].header
        for key, (card, comment) in CARDS.items():
            if key in params:   # a long value (a product name) goes on CONTINUE cards, without the comment
                header[card] = (params[key], comment) if len(params[key]) + len(comment) < 60 else params[key]
        header.add_history("almadeliver download --cutout: cut by the archive's SODA service")


def cutout_stamped(path: Path, params: dict[str, str]) -> bool:
    """True when the cutout at ``path`` exists and its header records exactly the SODA ``params``.

    Parameters
    ----------
    path : Path
        The cutout FITS file.
    params : dict[str, str]
        The SODA parameters of the request (ID, CIRCLE in degrees, BAND in metres).

    Returns
    -------
    bool
        True when the file can be kept as the cutout of ``params``.
    """
    from astropy.io import fits

    if not Path(path).is_file():
        return False
    try:
        header = fits.getheader(path)
    except (OSError, ValueError):
        return False
    return all(header.get(card) == params.get(key) for key, (card, _comment) in CARDS.items())
