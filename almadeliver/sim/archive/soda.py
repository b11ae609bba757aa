"""The local archive's SODA service (``/soda/sync``): a real sub-image of a FITS product, cut with astropy.

ALMA's nested DataLink answer gives every FITS product a ``#cutout`` row whose service is
``/soda/sync?ID=<file name>`` (alma-datalink-recurse-this.xml). SODA 1.0 parameters [IVOA SODA 1.0]:
``CIRCLE=<ra> <dec> <radius>`` (ICRS, degrees) and ``BAND=<lo> <hi>`` (vacuum wavelength, metres);
either or both. The answer is a FITS file: the pixels inside the circle's bounding box (astropy
``Cutout2D``, mode ``trim``) and the channels whose centre frequency lies in the band, every header
keyword kept (beam included) but the reference pixels, and a ``BEAMS`` table cut to the channels kept.
"""
from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .content import ArchiveContent, ServedFile

C_M_PER_S = 299_792_458.0


class SodaError(ValueError):
    """A SODA request the service cannot answer (bad parameters, no overlap): HTTP 400."""


@dataclass(frozen=True)
class CutoutRequest:
    """What a SODA request asks: a circle (ra, dec, radius in degrees) and/or a band (metres)."""

    circle: tuple[float, float, float] | None = None
    band: tuple[float, float] | None = None


def parse_soda(params: list[tuple[str, str]]) -> tuple[str, CutoutRequest]:
    """(ID, request) from the query parameters; SodaError when ID is missing or a value is malformed."""
    p: dict[str, str] = {}
    for key, value in params:
        p.setdefault(key.upper(), value)
    if not p.get("ID"):
        raise SodaError("ID is missing")

    def numbers(key: str, n: int) -> tuple[float, ...] | None:
        if key not in p:
            return None
        try:
            values = tuple(float(v) for v in p[key].replace(",", " ").split())
        except ValueError:
            values = ()
        if len(values) != n or not all(np.isfinite(values)):
            raise SodaError(f"{key}={p[key]!r}: expected {n} numbers")
        return values

    circle, band = numbers("CIRCLE", 3), numbers("BAND", 2)
    if circle is not None and circle[2] <= 0:
        raise SodaError(f"CIRCLE radius {circle[2]} must be positive")
    if band is not None and not 0 < band[0] <= band[1]:
        raise SodaError(f"BAND={p['BAND']!r}: expected two wavelengths in metres, low then high")
    if circle is None and band is None:
        raise SodaError("give CIRCLE and/or BAND")
    return p["ID"], CutoutRequest(circle, band)  # type: ignore[arg-type]


def cut(raw: bytes, request: CutoutRequest) -> bytes:
    """The FITS file ``raw`` cut as ``request`` asks; SodaError when nothing of the image is left."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError
    from astropy.wcs import WCS, FITSFixedWarning

    with fits.open(io.BytesIO(raw)) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)   # CASA's OBSGEO cards: noted, not a problem
        header = hdul[0].header.copy()
        data = hdul[0].data
        beams = hdul["BEAMS"].copy() if "BEAMS" in hdul else None
        wcs = WCS(header)
        naxis = wcs.naxis
        starts = [0] * naxis                       # per WCS axis (FITS order)
        view = [slice(None)] * naxis               # per numpy axis (reversed)
        if request.circle is not None:
            ra, dec, radius = request.circle
            lng, lat = wcs.wcs.lng, wcs.wcs.lat
            try:
                box = Cutout2D(np.zeros(data.shape[-2:], dtype=bool), SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"),
                               2 * radius * u.deg, wcs=wcs.celestial, mode="trim")
            except (NoOverlapError, ValueError):        # outside the image, or beyond its projection
                raise SodaError(f"CIRCLE {ra} {dec} {radius} does not overlap the image") from None
            ys, xs = box.slices_original
            view[naxis - 1 - lng], view[naxis - 1 - lat] = xs, ys
            starts[lng], starts[lat] = xs.start, ys.start
        if request.band is not None and wcs.wcs.spec >= 0:
            s = wcs.wcs.spec
            nchan = data.shape[naxis - 1 - s]
            spectral = wcs.sub([s + 1])
            freq = u.Quantity(spectral.all_pix2world(np.arange(nchan), 0)[0], spectral.wcs.cunit[0]).to_value(u.Hz)
            lo, hi = C_M_PER_S / request.band[1], C_M_PER_S / request.band[0]
            inside = np.flatnonzero((freq >= lo) & (freq <= hi))
            if inside.size == 0:
                raise SodaError(f"BAND {request.band[0]} {request.band[1]} m ({lo / 1e9:.6f}-{hi / 1e9:.6f} GHz) "
                                f"misses the image's channels ({freq.min() / 1e9:.6f}-{freq.max() / 1e9:.6f} GHz)")
            first, last = int(inside.min()), int(inside.max())
            view[naxis - 1 - s] = slice(first, last + 1)
            starts[s] = first
            if beams is not None:
                chans = np.asarray(beams.data["CHAN"])
                keep = (chans >= first) & (chans <= last)
                beams.data = beams.data[keep]
                beams.data["CHAN"] = beams.data["CHAN"] - first
                beams.header["NCHAN"] = last - first + 1
        for i, start in enumerate(starts):
            if start:
                header[f"CRPIX{i + 1}"] = header[f"CRPIX{i + 1}"] - start
        cube = np.ascontiguousarray(data[tuple(view)])
    out = fits.HDUList([fits.PrimaryHDU(cube, header)] + ([beams] if beams is not None else []))
    buffer = io.BytesIO()
    out.writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


class Cutouts:
    """The cutouts made so far, as files in a temporary folder (so Range requests resume them)."""

    def __init__(self) -> None:
        self._folder: tempfile.TemporaryDirectory | None = None
        self._lock = threading.Lock()

    def served(self, content: ArchiveContent, id_: str, request: CutoutRequest) -> ServedFile | None:
        """The cutout of the FITS product ``id_`` (made on first use); None when there is no such product."""
        source = content.file(id_)
        if source is None or not id_.endswith(".fits"):
            return None
        key = hashlib.sha256(repr((id_, request)).encode()).hexdigest()[:16]
        name = f"{id_.removesuffix('.fits')}.cutout.fits"
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="almadeliver-soda-")
            path = Path(self._folder.name) / f"{key}.fits"
            if not path.exists():
                with open(source.path, "rb") as fh:
                    fh.seek(source.offset)
                    raw = fh.read(source.length())
                path.write_bytes(cut(raw, request))
        return ServedFile(name, path, "image/fits", source.proprietary)

    def close(self) -> None:
        """Delete the cutouts made."""
        with self._lock:
            if self._folder is not None:
                self._folder.cleanup()
                self._folder = None


class SodaPages:
    """The ``/soda/sync`` endpoint of the HTTP handler; mixed into its class."""

    def _soda(self, params: list[tuple[str, str]], method: str) -> None:
        try:
            id_, request = parse_soda(params)
            served = self.archive.cutouts.served(self.archive.content, id_, request)
        except SodaError as exc:
            self._send(400, f"UsageError: {exc}\n", "text/plain", method)
            return
        if served is None:
            self._send(404, f"NotFoundFault: {id_} is not a FITS product of this archive\n", "text/plain", method)
            return
        self._serve(served, method)
