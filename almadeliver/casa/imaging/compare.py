"""The re-made images against the delivered ones: beam, rms and peak per FITS image, the comparison
table, ``image_record.json`` and OUT/README with the new numbers.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .jobs import ImagingJob
from .overrides import Overrides


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
    quicklook: str | None = None        # <name>.png beside the FITS: new beside delivered, one colour scale
    delivered_fits: str | None = None   # the delivered product's name when it differs (image --selfcal)


def image_stats(path: Path) -> ImageStats:
    """Beam (header BMAJ/BMIN/BPA, else the median of a BEAMS table), MAD rms and peak of a FITS image.

    Parameters
    ----------
    path : Path
        The FITS image.

    Returns
    -------
    ImageStats
        Beam (arcsec, deg), rms and peak (image units, Jy/beam).
    """
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
    """max |new - delivered| over pixels finite in both, in units of the delivered peak; None if shapes differ.

    Parameters
    ----------
    new : Path
        The re-made FITS image.
    delivered : Path
        The delivered FITS image.

    Returns
    -------
    float | None
        The difference as a fraction of the delivered peak, or None.
    """
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
    """A row per exported pbcor image: new stats beside the delivered product's.

    Parameters
    ----------
    out : Path
        The output folder of the run.
    jobs : list[ImagingJob]
        The jobs run.

    Returns
    -------
    list[Comparison]
        One comparison per exported pbcor image.
    """
    rows = []
    for job in jobs:
        for fits_name in job.exports.values():
            if ".pbcor." not in fits_name or not (Path(out) / fits_name).is_file():
                continue
            new = Path(out) / fits_name
            old = job.delivered.get(fits_name)
            stats = [image_stats(new)] + ([image_stats(Path(old))] if old else [])
            rows.append(Comparison(fits_name, stats[0], stats[1] if old else None,
                                   max_difference(new, Path(old)) if old else None,
                                   quicklook_png(new, Path(old) if old else None, stats=stats).name))
        for fits_name in (job.moments.get("fits") or {}).values():
            if (Path(out) / fits_name).is_file():
                stats = [image_stats(Path(out) / fits_name)]
                png = quicklook_png(Path(out) / fits_name, stats=stats)
                rows.append(Comparison(fits_name, stats[0], None, None, png.name))
    return rows


def _plane(path: Path):
    """The 2-D plane shown of a FITS image: the image itself, or a cube's channel holding its peak."""
    import numpy as np
    from astropy.io import fits

    with fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=float)
    data = data.reshape((-1,) + data.shape[-2:])                 # (planes, y, x): Stokes and channels
    if not np.isfinite(data).any():
        return data[0], 0
    k = int(np.nanargmax(np.nanmax(np.where(np.isfinite(data), data, -np.inf), axis=(1, 2))))
    return data[k], k


def quicklook_png(new: Path, delivered: Path | None = None, png: Path | None = None,
                  stats: list[ImageStats] | None = None) -> Path:
    """A quick-look PNG of a re-made image, beside the delivered one when given, on one colour scale.

    Each panel shows the image (a cube: its peak channel), the restoring beam as an ellipse in the
    lower left, and its peak and MAD rms with the image's unit (``image_stats``).

    Parameters
    ----------
    new : Path
        The re-made FITS image.
    delivered : Path, optional
        The delivered FITS image of the same name (drawn on the right, same colour scale).
    png : Path, optional
        Where to write; default ``new`` with ``.png`` for ``.fits``.
    stats : list of ImageStats, optional
        ``image_stats`` of ``new`` (and ``delivered``) when the caller has them (not measured again).

    Returns
    -------
    Path
        The PNG written.
    """
    import numpy as np
    from astropy.io import fits
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    png = Path(png) if png else new.with_suffix(".png")
    panels = [("re-made", new)] + ([("delivered", delivered)] if delivered else [])
    planes = [_plane(p) for _, p in panels]
    finite = np.concatenate([d[np.isfinite(d)] for d, _ in planes] or [np.zeros(1)])
    vmin, vmax = (float(np.min(finite)), float(np.max(finite))) if finite.size else (0.0, 1.0)
    fig = Figure(figsize=(4.2 * len(panels), 4.2), dpi=80)
    measured = stats or [image_stats(p) for _, p in panels]
    for i, ((label, path), (data, k), stats) in enumerate(zip(panels, planes, measured), 1):
        ax = fig.add_subplot(1, len(panels), i)
        shown = ax.imshow(data, origin="lower", cmap="inferno", vmin=vmin, vmax=vmax)
        head = fits.getheader(path)
        if stats.bmaj_arcsec and head.get("CDELT2"):
            pix = abs(float(head["CDELT2"])) * 3600                   # arcsec per pixel
            w, h = stats.bmin_arcsec / pix, stats.bmaj_arcsec / pix
            ax.add_patch(Ellipse((1 + max(w, h), 1 + max(w, h)), w, h, angle=stats.bpa_deg or 0.0,
                                 edgecolor="white", facecolor="none"))
        plane = f", channel {k}" if stats.nchan > 1 else ""
        ax.set_title(f"{label}{plane}\npeak {stats.peak:.3g}, rms {stats.rms:.3g} {stats.unit}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=stats.unit)
    fig.suptitle(new.name, fontsize=7)
    fig.savefig(png)
    return png


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
# an image's noise or beam as a reducer writes it in free text ("an RMS of 4.2 mJy/beam", "beam: 0.51x0.59
# arcsec"), not the request ("Proposed rms: 25.0 mJy/beam", "Requested RMS 5.85 mJy")
_README_FIGURE_RE = re.compile(r"\d\s*(?:mJy|uJy|Jy)/beam|beam(?:size)?:?\s+[\d.]+\s*x\s*[\d.]+", re.IGNORECASE)
_README_REQUEST_RE = re.compile(r"propos|request", re.IGNORECASE)
README_MEASURE = "rms: MAD over the pbcor image, as in comparison.tsv"


def readme_numbers(stats: ImageStats) -> dict[str, str]:
    """``{"rms": "rms 3.10 mJy/beam", "beamsize": "beamsize 9.69x7.30 arcsec"}`` of an image, in the
    words of the README's imaging notes (``beamsize`` empty when the image has no beam).

    Parameters
    ----------
    stats : ImageStats
        The image's measured figures (rms in its brightness unit, beam in arcsec).

    Returns
    -------
    dict[str, str]
        ``rms`` and ``beamsize`` as the README writes them.
    """
    rms = (f"rms {stats.rms * 1e3:.2f} mJy/beam" if stats.unit.lower().startswith("jy")
           else f"rms {stats.rms:.4g} {stats.unit}")
    beam = f"beamsize {stats.bmaj_arcsec:.2f}x{stats.bmin_arcsec:.2f} arcsec" if stats.bmaj_arcsec else ""
    return {"rms": rms, "beamsize": beam}


def _figures(stats: ImageStats) -> str:
    numbers = readme_numbers(stats)
    return numbers["rms"] + (f", {numbers['beamsize']}" if numbers["beamsize"] else "")


def readme_numbers_line(c: Comparison) -> str:
    """One re-made image as the README lists it: ``<fits>: rms ..., beamsize ... (delivered: rms ...,
    beamsize ...)``, the delivered product measured the same way beside the new one.

    Parameters
    ----------
    c : Comparison
        The re-made image beside its delivered product.

    Returns
    -------
    str
        The README's line.
    """
    text = f"{c.fits}: {_figures(c.new)}"
    if c.delivered is None:
        return text + " (no delivered image of this name)"
    return text + f" (delivered{' ' + c.delivered_fits if c.delivered_fits else ''}: {_figures(c.delivered)})"


def comparisons_from_record(record: Path) -> list[Comparison]:
    """The comparisons ``write_record`` saved in ``image_record.json`` (empty when it has none).

    Parameters
    ----------
    record : Path
        An ``image_record.json``.

    Returns
    -------
    list[Comparison]
        Its comparisons, in the order written.
    """
    data = json.loads(Path(record).read_text())
    return [Comparison(c["fits"], ImageStats(**c["new"]), ImageStats(**c["delivered"]) if c.get("delivered") else None,
                       c.get("max_diff"), c.get("quicklook"), c.get("delivered_fits"))
            for c in data.get("comparison", [])]


def updated_readme(member: Path, out: Path, comparisons: list[Comparison], overrides: Overrides | None = None,
                   how: str | None = None, measure: str = README_MEASURE) -> Path | None:
    """OUT/README: the delivered README (member/README, never changed) with the numbers users read
    brought up to date.

    A line naming a re-made product gets its new ``rms ... mJy/beam`` and ``beamsize AxB arcsec``
    followed by the delivered image's, measured the same way (``(delivered: ...)``); a line giving a
    beam or noise figure that names no re-made product (another product, or free text such as "an
    RMS of 4.2 mJy/beam") is marked ``[as delivered]``; a closing section lists every re-made
    image's beam and rms beside the delivered ones (``readme_numbers_line``). A product re-made
    under another name (``Comparison.delivered_fits``, image --selfcal) keeps its line's numbers
    and gets ``[re-made as <fits>: ...]``. ``how`` replaces the "overrides: ..." words of the
    closing section and ``measure`` says how the rms was measured. None when the member has no README.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    out : Path
        The output folder.
    comparisons : list[Comparison]
        The comparisons of the re-made images.
    overrides : Overrides | None, default None
        The user's overrides of the delivered tclean calls.
    how : str | None, default None
        Replaces the "overrides: ..." words of the closing section.
    measure : str
        How the rms was measured (said in the closing section).

    Returns
    -------
    Path | None
        OUT/README, or None.
    """
    readme = Path(member) / "README"
    if not readme.is_file():
        return None
    by_name = {c.fits: c for c in comparisons}
    renamed = {c.delivered_fits: c for c in comparisons if c.delivered_fits and c.delivered_fits != c.fits}
    lines = []
    for line in readme.read_text(errors="replace").splitlines():
        name = next((n for n in by_name if n in line), None)
        other = next((n for n in renamed if n in line), None) if name is None else None
        if other is not None:
            line += f" [re-made as {renamed[other].fits}: {_figures(renamed[other].new)}]"
        elif name is not None:
            c = by_name[name]
            new = readme_numbers(c.new)
            line = _README_IMAGE_RE.sub(lambda m: new["rms"] if m.group(0).startswith("rms") else
                                        (new["beamsize"] or m.group(0)), line)
            if c.delivered is not None and _README_IMAGE_RE.search(line):
                old = readme_numbers(c.delivered)
                line += f" (delivered: {old['rms']}" + (f", {old['beamsize']}" if old["beamsize"] else "") + ")"
        elif comparisons and _README_FIGURE_RE.search(line) and not _README_REQUEST_RE.search(line):
            line += " [as delivered]"
        lines.append(line)
    changes = ", ".join(f"{k}={v}" for k, v in (overrides or Overrides()).changes().items()) or "none"
    lines += ["", "#####", "", f"Re-imaged by almadeliver ({how or 'overrides: ' + changes}); images in "
              f"{Path(out).name}/ ({measure}; the delivered image beside each):", ""]
    lines += [readme_numbers_line(c) for c in comparisons]
    target = Path(out) / "README"
    target.write_text("\n".join(lines) + "\n")
    return target


def write_record(out: Path, jobs: list[ImagingJob], comparisons: list[Comparison],
                 failures: dict[str, str], overrides: Overrides | None = None,
                 script_notes: list[str] | None = None) -> tuple[Path, Path]:
    """``image_record.json`` (exact parameters per image; for a script, its conversion and clean()
    translations) and ``comparison.tsv``.

    Parameters
    ----------
    out : Path
        The output folder.
    jobs : list[ImagingJob]
        The jobs run.
    comparisons : list[Comparison]
        Their comparisons.
    failures : dict[str, str]
        Image name -> why it failed.
    overrides : Overrides | None, default None
        The user's overrides of the delivered tclean calls.
    script_notes : list[str] | None, default None
        The script's conversion notes (``ImagingPlan.script_notes``).

    Returns
    -------
    tuple[Path, Path]
        (image_record.json, comparison.tsv).
    """
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
    """The rows of the comparison table (``COMPARISON_COLUMNS``), as text: beam, rms and peak, delivered vs remade.

    Parameters
    ----------
    comparisons : list[Comparison]
        The comparisons.

    Returns
    -------
    list[tuple[str, ...]]
        One tuple of text cells per comparison.
    """
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
