"""Line-free channels of a cube where no cont.dat gives them (manual deliveries): the user's
``--line-free`` ranges (``overrides.line_free_ranges``), or the channels found free of line emission
in the delivered cube (``find_line_free``).

``--contsub`` fits the continuum on them and ``--moments`` integrates over the other channels (the
noise from these), as the pipeline does with cont.dat's ranges. The finder says what it found (the
plan shows it before anything runs).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path


# every spw (a --line-free given without spw ids): the key used in the plan and the CASA child
ALL_SPWS = "*"
DEFAULT_FRAME = "LSRK"


@dataclass
class FoundLineFree:
    """What ``find_line_free`` found in a delivered cube."""

    cube: str                                  # the FITS file searched
    nchan: int
    line_channels: list[tuple[int, int]]       # channel runs holding line emission (or absorption)
    ranges: list[tuple[float, float, str]]     # the line-free channels as (low Hz, high Hz, frame)

    def describe(self) -> str:
        """One line for the plan and the record.

        Returns
        -------
        str
            The line-free channels and the clip used.
        """
        line = ", ".join(f"{a}-{b}" for a, b in self.line_channels) or "none"
        free = "; ".join(f"{lo / 1e9:.6f}~{hi / 1e9:.6f}GHz" for lo, hi, _ in self.ranges) or "none"
        frame = self.ranges[0][2] if self.ranges else ""
        return f"line channels {line} of {self.nchan} found in {self.cube}; line-free {free} {frame}".rstrip()


def find_line_free(fits_path: Path, clip: float = 4.0) -> FoundLineFree:
    """The line-free channels of a cube (FITS, spectral axis in frequency).

    Per pixel the continuum is the median over the channels; per channel the line signal is the largest
    |cube - continuum| over the pixels. Channels where it exceeds the median of the line-free channels
    by ``clip`` times their MAD rms (iterated until stable) hold line; they are widened by one channel
    on each side, and the rest is line-free. Raises ValueError when the file is not a cube in frequency.

    Parameters
    ----------
    fits_path : Path
        The cube (FITS).
    clip : float, default 4.0
        The threshold, in MAD rms of the line signal.

    Returns
    -------
    FoundLineFree
        The line-free channels and their frequency ranges (Hz).
    """
    import numpy as np                 # not at import: the command line starts without numpy
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(fits_path) as hdul:
        header, data = hdul[0].header, np.asarray(hdul[0].data, dtype=float)
    wcs = WCS(header)
    spec = wcs.wcs.spec
    if spec < 0 or not str(wcs.wcs.ctype[spec]).startswith("FREQ"):
        raise ValueError(f"{Path(fits_path).name} has no frequency axis")
    axis = data.ndim - 1 - spec                     # numpy order is the reverse of FITS's
    cube = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
    nchan = cube.shape[0]
    if nchan < 4:
        raise ValueError(f"{Path(fits_path).name} has {nchan} channel(s): not a cube to find lines in")
    # a flagged channel is blank (0 or NaN everywhere): neither line nor line-free
    blank = np.array([not np.any(np.isfinite(c) & (c != 0)) for c in cube])
    if blank.sum() > nchan - 4:
        raise ValueError(f"{Path(fits_path).name} has fewer than 4 channels with data")
    with warnings.catch_warnings():      # a pixel outside the primary beam is NaN in every channel
        warnings.simplefilter("ignore", RuntimeWarning)
        residual = np.abs(cube - np.nanmedian(np.where(blank[:, None], np.nan, cube), axis=0))
    signal = np.array([np.nanmax(r) if not b else np.nan for r, b in zip(residual, blank)])
    line = np.zeros(nchan, bool)
    for _ in range(10):
        free = signal[~line & ~blank]
        centre = np.median(free)
        rms = 1.4826 * np.median(np.abs(free - centre))
        new = ~blank & (signal > centre + clip * max(rms, 1e-30))
        if (new == line).all():
            break
        line = new
    wide = line | blank
    wide[1:] |= line[:-1]
    wide[:-1] |= line[1:]
    freqs = wcs.sub([spec + 1]).all_pix2world(np.arange(nchan), 0)[0] * u_scale(wcs.wcs.cunit[spec])
    half = abs(freqs[1] - freqs[0]) / 2
    frame = str(header.get("SPECSYS", DEFAULT_FRAME)).strip().upper() or DEFAULT_FRAME
    ranges = [(float(min(freqs[a], freqs[b]) - half), float(max(freqs[a], freqs[b]) + half), frame)
              for a, b in channel_runs([c for c in range(nchan) if not wide[c]])]
    return FoundLineFree(Path(fits_path).name, nchan, channel_runs([c for c in range(nchan) if line[c]]), ranges)


def u_scale(unit) -> float:
    """Hz per unit of a FITS spectral axis unit ('' reads as Hz).

    Parameters
    ----------
    unit : object
        The CUNIT of the spectral axis (``Hz``, ``GHz``, ...).

    Returns
    -------
    float
        Hz per unit.
    """
    from astropy import units as u

    return float(u.Unit(str(unit) or "Hz").to("Hz"))


def channel_runs(chans: list[int]) -> list[tuple[int, int]]:
    """[0,1,2,5,6] -> [(0,2),(5,6)].

    Parameters
    ----------
    chans : list[int]
        Channel numbers, ascending.

    Returns
    -------
    list[tuple[int, int]]
        (first, last) of each run of consecutive channels.
    """
    runs: list[tuple[int, int]] = []
    for c in sorted(chans):
        if runs and c == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return runs
