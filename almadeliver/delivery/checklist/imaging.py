"""Checklist items on Imaging/: the product set, FITS conformance, sensitivity and resolution, mask images."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import TreeError
from .. import visibilities as vis
from .thresholds import BEAM_WARN, RMS_WARN

if TYPE_CHECKING:
    from ..layout import StaffArea
    from .thresholds import _Checker


# -- Imaging -------------------------------------------------------------------------------------------
@dataclass
class ImageFigures:
    """What the checklist measures on one product image."""

    path: Path
    kind: str                 # "cube" or "continuum"
    low_hz: float
    high_hz: float
    nchan: int
    chan_width_hz: float
    bmaj_arcsec: float | None
    bmin_arcsec: float | None
    rms_jy: float | None      # median over channels of the robust rms where the primary beam > 0.5


def image_figures(pbcor: Path, flux: Path | None) -> ImageFigures:
    """Frequency coverage, beam and noise of a ``.pbcor.fits`` (the noise on pbcor x pb, i.e. the
    flat-noise image, where the primary beam is above 0.5).

    Parameters
    ----------
    pbcor : Path
        The primary-beam-corrected image (``.pbcor.fits``).
    flux : Path | None
        Its primary beam (``.flux.fits``); None to measure the noise on the whole pbcor image.

    Returns
    -------
    ImageFigures
        Frequency range (Hz), channels, channel width (Hz), beam (arcsec) and rms (Jy/beam).
    """
    from astropy.io import fits

    with fits.open(pbcor) as hdul:
        header, data = hdul[0].header, hdul[0].data
        beams = hdul["BEAMS"].data if "BEAMS" in hdul else None
    naxis = header.get("NAXIS", 0)
    freq_axis = next((i for i in range(1, naxis + 1) if str(header.get(f"CTYPE{i}", "")).upper().startswith("FREQ")), None)
    if freq_axis:
        n = int(header[f"NAXIS{freq_axis}"])
        crval, cdelt, crpix = float(header[f"CRVAL{freq_axis}"]), float(header[f"CDELT{freq_axis}"]), float(header[f"CRPIX{freq_axis}"])
        centres = crval + (np.arange(1, n + 1) - crpix) * cdelt
        low, high = float(centres.min() - abs(cdelt) / 2), float(centres.max() + abs(cdelt) / 2)
    else:
        n, cdelt, low, high = 1, 0.0, math.nan, math.nan
    if "BMAJ" in header:
        bmaj, bmin = float(header["BMAJ"]) * 3600, float(header["BMIN"]) * 3600
    elif beams is not None and len(beams):
        bmaj, bmin = float(np.median(beams["BMAJ"])), float(np.median(beams["BMIN"]))
    else:
        bmaj = bmin = None
    rms = None
    if data is not None:
        cube = np.asarray(data, dtype=float).reshape((-1,) + data.shape[-2:])
        pb = None
        if flux is not None and flux.is_file():
            with fits.open(flux) as f:
                pb = np.asarray(f[0].data, dtype=float).reshape((-1,) + f[0].data.shape[-2:])
        per_chan = []
        for c in range(cube.shape[0]):
            plane = cube[c]
            if pb is not None:
                beam = pb[min(c, pb.shape[0] - 1)]
                plane = np.where(beam > 0.5, plane * beam, np.nan)
            values = plane[np.isfinite(plane)]
            if values.size:
                per_chan.append(1.4826 * float(np.median(np.abs(values - np.median(values)))))
        rms = float(np.median(per_chan)) if per_chan else None
    return ImageFigures(pbcor, "cube" if n > 1 else "continuum", low, high, n, abs(cdelt), bmaj, bmin, rms)


def imaged_ms(area: "StaffArea") -> Path | None:
    """The MS the images were made from: calibrated.ms (several EBs) or the one .ms.split.cal.

    Parameters
    ----------
    area : StaffArea
        The staff reduction area of the MOUS.

    Returns
    -------
    Path | None
        The MS, or None when the area has none.
    """
    for path in [area.combination / "calibrated.ms", area.imaging / "calibrated.ms"]:
        if path.is_dir():
            return path
    singles = sorted(area.combination.glob("*.ms.split.cal")) + [p for eb in area.ebs for p in eb.folder.glob("*.ms.split.cal")]
    return singles[0] if singles else None


def check_products(check: "_Checker", area: "StaffArea", images: list[ImageFigures]) -> None:
    """Per spw one cube, per sideband one continuum image (seed 002, section 3).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    images : list[ImageFigures]
        The figures of the product images (``image_figures``).
    """
    ms = imaged_ms(area)
    if ms is None:
        check.fail("staff.imaging.products", area.imaging, "no calibrated.ms or .ms.split.cal to read the spws from",
                   "keep the imaged MS in Combination/calibrated")
        return
    try:
        spws = vis.ms_summary(ms).spws
    except (TreeError, RuntimeError) as exc:
        check.fail("staff.imaging.products", ms, f"cannot read the spws of the imaged MS ({exc})",
                   "keep the imaged MS (calibrated.ms or the .ms.split.cal) readable")
        return
    cubes = [i for i in images if i.kind == "cube"]
    conts = [i for i in images if i.kind == "continuum"]

    def overlap(im: ImageFigures, lo: float, hi: float) -> float:
        return max(0.0, min(im.high_hz, hi) - max(im.low_hz, lo))

    cube_of = {}
    for s in spws:
        best = max(cubes, key=lambda im: overlap(im, s.low_hz, s.high_hz), default=None)
        if best is not None and overlap(best, s.low_hz, s.high_hz) > 0.5 * min(best.high_hz - best.low_hz, s.high_hz - s.low_hz):
            cube_of[s.spw] = best.path.name
    groups = vis.sidebands(spws)
    cont_of = {}
    for k, group in enumerate(groups):
        lo, hi = min(s.low_hz for s in group), max(s.high_hz for s in group)
        label = f"{'LSB' if k == 0 and len(groups) > 1 else 'USB' if len(groups) > 1 else 'SB'} ({lo / 1e9:.2f}-{hi / 1e9:.2f} GHz)"
        hit = [im.path.name for im in conts if lo - 1e6 <= (im.low_hz + im.high_hz) / 2 <= hi + 1e6]
        cont_of[label] = hit[0] if hit else None
    numbers = {"spws": {str(s.spw): {"low_ghz": s.low_hz / 1e9, "high_ghz": s.high_hz / 1e9, "cube": cube_of.get(s.spw)}
                        for s in spws},
               "sidebands": cont_of, "cubes": len(cubes), "continuum_images": len(conts)}
    missing = [f"cube of spw {s.spw}" for s in spws if s.spw not in cube_of] + \
              [f"continuum of {label}" for label, name in cont_of.items() if name is None]
    if missing:
        check.fail("staff.imaging.products", area.imaging, f"missing {', '.join(missing)} "
                   f"({len(spws)} spws, {len(groups)} sidebands; {len(cubes)} cubes, {len(conts)} continuum images)",
                   "make one cube per spw and one continuum image per sideband (QA2 data products)", numbers)
    else:
        check.ok("staff.imaging.products", area.imaging, f"a cube for each of {len(spws)} spws, a continuum image "
                 f"for each of {len(groups)} sidebands", numbers)


def check_fits_verify(check: "_Checker", paths: list[Path]) -> None:
    """Every FITS file conforms to the standard (astropy's verify).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    paths : list[Path]
        The FITS files of Imaging/.
    """
    from astropy.io import fits

    problems = {}
    for path in paths:
        try:
            with fits.open(path) as hdul:
                errs = _verify(hdul)
        except (OSError, ValueError) as exc:
            errs = [str(exc)]
        if errs:
            problems[path.name] = errs
    numbers = {"files": len(paths), "not_conforming": {k: v[:5] for k, v in problems.items()}}
    if problems:
        name, errs = next(iter(problems.items()))
        check.fail("staff.imaging.fits-verify", next(p for p in paths if p.name == name),
                   f"{len(problems)} of {len(paths)} FITS files do not conform: {errs[0]}",
                   "export the image again with exportfits (FITS 3.0)", numbers)
    elif paths:
        check.ok("staff.imaging.fits-verify", paths[0].parent, f"{len(paths)} FITS files conform (astropy verify)", numbers)


def _verify(hdul) -> list[str]:
    """astropy's verification messages of an HDU list (empty when it conforms)."""
    from astropy.io.fits.verify import VerifyError

    try:
        hdul.verify("exception")
    except VerifyError as exc:
        # "Verification reported errors:\nHDU 0:\n    Card 15:\n        Card keyword 'bunit' is not upper case."
        problems, where = [], []
        for line in str(exc).splitlines():
            text = line.strip()
            if not text or text.startswith(("Verification reported", "Note: astropy")):
                continue
            if re.fullmatch(r"(HDU|Card) \d+:", text):
                where = [w for w in where if not w.startswith(text.split()[0])] + [text[:-1]]
                continue
            problems.append(f"{', '.join(where)}: {text}" if where else text)
        return problems or [str(exc).strip()]
    return []


def readme_request(text: str) -> dict[str, float]:
    """The requested rms and resolution a README states: ``Proposed rms: 5.85 mJy/beam in 0.728 MHz``
    and ``Requested angular resolution 1.0 arcsec`` (the real W51 README's lines; the last stated
    value when it was changed).

    Parameters
    ----------
    text : str
        The README's text.

    Returns
    -------
    dict[str, float]
        Any of ``rms_jy`` (Jy/beam), ``bandwidth_hz`` (Hz) and ``beam_arcsec`` (arcsec) the README states.
    """
    out: dict[str, float] = {}
    m = re.search(r"Proposed rms:\s*([0-9.]+)\s*(mJy|uJy|Jy)(?:/beam)?(?:\s+in\s+([0-9.]+)\s*(kHz|MHz|GHz))?", text)
    if m:
        out["rms_jy"] = float(m.group(1)) * {"uJy": 1e-6, "mJy": 1e-3, "Jy": 1.0}[m.group(2)]
        if m.group(3):
            out["bandwidth_hz"] = float(m.group(3)) * {"kHz": 1e3, "MHz": 1e6, "GHz": 1e9}[m.group(4)]
    m = re.search(r"Requested angular resolution\s*:?\s*([0-9.]+)\s*arcsec((?:[^\n]*?changed to\s*([0-9.]+)\s*arcsec)?)", text)
    if m:
        out["beam_arcsec"] = float(m.group(3) or m.group(1))
    return out


def check_request(check: "_Checker", area: "StaffArea", images: list[ImageFigures],
                  rms_jy: float | None, beam_arcsec: float | None) -> None:
    """Achieved rms of the cubes (scaled to the requested bandwidth) and beam against the request.

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.
    images : list[ImageFigures]
        The figures of the product images (``image_figures``).
    rms_jy : float | None
        The requested rms in Jy/beam (``--requested-rms``); None: the README's.
    beam_arcsec : float | None
        The requested resolution in arcsec (``--requested-beam``); None: the README's.
    """
    stated = readme_request(area.readme.read_text(errors="replace")) if area.readme.is_file() else {}
    source = "--requested-rms/--requested-beam" if rms_jy or beam_arcsec else "README"
    rms_req = rms_jy or stated.get("rms_jy")
    beam_req = beam_arcsec or stated.get("beam_arcsec")
    bandwidth = stated.get("bandwidth_hz") if not rms_jy else None
    cubes = [i for i in images if i.kind == "cube" and i.rms_jy is not None]
    if rms_req is None:
        check.warn("staff.imaging.sensitivity", area.readme, "no requested rms (README 'Proposed rms:' line)",
                   "give --requested-rms or state the request in the README", {"requested_rms_jy": None})
    elif not cubes:
        check.warn("staff.imaging.sensitivity", area.imaging, "no cube with a measurable rms",
                   "export the cubes with their .flux.fits", {"requested_rms_jy": rms_req})
    else:
        achieved = {}
        for im in cubes:
            scale = math.sqrt(im.chan_width_hz / bandwidth) if bandwidth and im.chan_width_hz else 1.0
            achieved[im.path.name] = {"rms_jy": im.rms_jy, "rms_at_requested_bandwidth_jy": im.rms_jy * scale}
        best = min(achieved.items(), key=lambda kv: kv[1]["rms_at_requested_bandwidth_jy"])
        ratio = best[1]["rms_at_requested_bandwidth_jy"] / rms_req
        numbers = {"requested_rms_jy": rms_req, "requested_bandwidth_hz": bandwidth, "source": source,
                   "achieved": achieved, "ratio": ratio}
        msg = (f"rms {best[1]['rms_at_requested_bandwidth_jy'] * 1e3:.2f} mJy/beam ({best[0]}"
               f"{', scaled to the requested bandwidth' if bandwidth else ''}) against {rms_req * 1e3:.2f} requested "
               f"({source}): x{ratio:.2f}")
        _verdict(check, "staff.imaging.sensitivity", area.imaging, msg, ratio, RMS_WARN,
                 "note on the ticket that the requested sensitivity is not reached", numbers)
    beams = [i for i in images if i.bmaj_arcsec]
    if beam_req is None:
        check.warn("staff.imaging.resolution", area.readme, "no requested resolution (README 'Requested angular "
                   "resolution' line)", "give --requested-beam or state the request in the README",
                   {"requested_beam_arcsec": None})
    elif not beams:
        check.warn("staff.imaging.resolution", area.imaging, "no image has a beam", "restore the images with a beam",
                   {"requested_beam_arcsec": beam_req})
    else:
        achieved = {i.path.name: math.sqrt(i.bmaj_arcsec * i.bmin_arcsec) for i in beams}
        name, best = min(achieved.items(), key=lambda kv: kv[1])
        ratio = best / beam_req
        numbers = {"requested_beam_arcsec": beam_req, "source": source, "achieved_arcsec": achieved, "ratio": ratio}
        msg = f"beam {best:.2f} arcsec ({name}, geometric mean) against {beam_req:.2f} requested ({source}): x{ratio:.2f}"
        _verdict(check, "staff.imaging.resolution", area.imaging, msg, ratio, BEAM_WARN,
                 "note on the ticket that the requested resolution is not reached", numbers)


def _verdict(check: "_Checker", item: str, path: Path, msg: str, ratio: float, warn: float,
             hint: str, numbers: dict) -> None:
    if ratio > warn:
        check.warn(item, path, msg, hint, numbers)
    else:
        check.ok(item, path, msg, numbers)


def imaging_masks(script_text: str) -> list[str]:
    """Mask images scriptForImaging.py names (``mask='x.mask'`` or a list of them); region strings
    ('circle[...]', 'box[...]') and CRTF files are analytic and need no mask image.

    Parameters
    ----------
    script_text : str
        The text of scriptForImaging.py.

    Returns
    -------
    list[str]
        The mask image names, in script order.
    """
    names = []
    for m in re.finditer(r"\bmask\s*=\s*(\[[^\]]*\]|(['\"])[^'\"]*\2)", script_text):
        for s in re.findall(r"['\"]([^'\"]+)['\"]", m.group(1)):
            if s and not re.match(r"^\s*(circle|box|ellipse|poly|rotbox|annulus|centerbox)\s*\[", s) \
                    and not s.endswith((".crtf", ".txt", ".rgn")):
                names.append(s)
    return names


def check_masks(check: "_Checker", area: "StaffArea") -> list[Path]:
    """The mask images the imaging script names are in Imaging/ (they are delivered as CASA images).

    Parameters
    ----------
    check : _Checker
        The checker the item adds its verdict to (pass, warn or FAIL, with its numbers).
    area : StaffArea
        The staff reduction area of the MOUS.

    Returns
    -------
    list[Path]
        The mask images found in Imaging/.
    """
    script = area.imaging / "scriptForImaging.py"
    names = imaging_masks(script.read_text(errors="replace")) if script.is_file() else []
    found = [area.imaging / n for n in names if (area.imaging / n).is_dir()]
    missing = [n for n in names if not (area.imaging / n).is_dir()]
    numbers = {"named": names, "missing": missing}
    if missing:
        check.fail("staff.imaging.masks", script, f"mask image(s) {', '.join(missing)} named by the script are not "
                   "in Imaging/", "put the mask CASA images in Imaging/ (they are delivered with the products)", numbers)
    else:
        check.ok("staff.imaging.masks", area.imaging, f"{len(found)} mask image(s) named by the script, all present"
                 if names else "the script names no mask image (masks analytic or none)", numbers)
    return found
