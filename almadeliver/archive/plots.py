"""Pictures of a query answer (matplotlib): where on the sky, which frequencies, what resolution.

One figure, three panels drawn from the same ScienceResult as the tables:

* sky: every MOUS's ``s_region`` footprint (Circle, Polygon, Union) and the --targets positions;
* frequency coverage: one line per MOUS, a bar per spw of ``frequency_support``, the requested
  lines as vertical lines, the ALMA bands (archive.lines.BANDS_GHZ) as labelled shaded spans;
* band / resolution overview (as ALminer draws it): spatial resolution against frequency, a
  marker shape per band.

Readable in black and white: projects differ by line style and hatch, bands by marker shape.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import UsageError
from .lines import BANDS_GHZ
from .science import ScienceResult

_STYLES = ["-", "--", ":", "-."]
_HATCHES = ["////", "....", "xxxx", "\\\\\\\\", "++++", "oooo"]
_MARKERS = {1: "v", 2: "<", 3: "o", 4: ">", 5: "^", 6: "s", 7: "D", 8: "p", 9: "h", 10: "*"}
MAX_MOUS_LINES = 40     # frequency panel: beyond this, the first 40 MOUS are drawn and the title says so


def _outlines(region: str) -> list[list[tuple[float, float]]]:
    """The closed outlines of an STC-S region (circles as 72-gons; holes drawn as outlines too)."""
    from ..sim.regions import Circle, Compound, Polygon, RegionError, parse_stcs

    try:
        shape = parse_stcs(region)
    except RegionError:
        return []
    out = []

    def walk(s):
        if isinstance(s, Circle):
            cosd = max(math.cos(math.radians(s.dec)), 1e-3)
            out.append([(s.ra + s.radius * math.sin(a) / cosd, s.dec + s.radius * math.cos(a))
                        for a in (2 * math.pi * k / 72 for k in range(73))])
        elif isinstance(s, Polygon):
            out.append(list(s.vertices) + [s.vertices[0]])
        elif isinstance(s, Compound):
            for part in s.parts:
                walk(part)

    walk(shape)
    return out


def plot_answer(result: ScienceResult, path: Path):
    """Draw the answer to ``path`` (.png, .pdf or .svg) and return the matplotlib Figure.

    Raises
    ------
    UsageError
        ``path`` has another suffix, or its folder does not exist.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--plot {path}: unknown picture format", "name a .png, .pdf or .svg file")
    if not path.parent.is_dir():
        raise UsageError(f"--plot {path}: folder {path.parent} does not exist", "create it or name another file")
    mous = [(p.code, m.uid, result.mous[m.uid]) for p in result.view.projects for m in p.mous if m.uid in result.mous]
    projects = list(dict.fromkeys(code for code, _, _ in mous))
    fig = Figure(figsize=(13, 4.8 + 0.12 * min(len(mous), MAX_MOUS_LINES)), layout="constrained")
    sky, freq, res = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.5, 1]})

    # sky
    for code, uid, m in mous:
        style = _STYLES[projects.index(code) % len(_STYLES)]
        for k, region in enumerate(m.regions):
            for j, outline in enumerate(_outlines(region)):
                xs, ys = zip(*outline)
                sky.plot(xs, ys, color="black", linestyle=style, linewidth=0.9,
                         label=code if (uid == next(u for c, u, _ in mous if c == code) and k == j == 0) else None)
    # the footprints set the view; targets far from every footprint are counted in the legend
    xs_all = [x for _, _, m in mous for r in m.regions for o in _outlines(r) for x, _ in o]
    ys_all = [y for _, _, m in mous for r in m.regions for o in _outlines(r) for _, y in o]
    positioned = [t for t in result.targets if t.ra is not None]
    covered = {name for _, _, m in mous for name in m.targets}
    shown = [t for t in positioned if t.name in covered] if xs_all else positioned
    if shown:
        outside = len(positioned) - len(shown)
        sky.plot([t.ra for t in shown], [t.dec for t in shown], linestyle="none", marker="+",
                 color="black", markersize=9, label="--targets" + (f" ({outside} outside)" if outside else ""))
    if xs_all:
        xs_all += [t.ra for t in shown]
        ys_all += [t.dec for t in shown]
        mx, my = max(1e-4, 0.08 * (max(xs_all) - min(xs_all))), max(1e-4, 0.08 * (max(ys_all) - min(ys_all)))
        sky.set_xlim(min(xs_all) - mx, max(xs_all) + mx)
        sky.set_ylim(min(ys_all) - my, max(ys_all) + my)
    decs = [m.s_dec for _, _, m in mous if m.s_dec is not None]
    if decs:
        sky.set_aspect(1 / max(math.cos(math.radians(sum(decs) / len(decs))), 1e-3), adjustable="box")
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    sky.xaxis.set_major_locator(MaxNLocator(4))
    sky.invert_xaxis()
    sky.set_xlabel("RA (ICRS) [deg]")
    sky.set_ylabel("Dec (ICRS) [deg]")
    sky.set_title("Fields (s_region)")
    sky.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small")

    # frequency coverage
    drawn = mous[:MAX_MOUS_LINES]
    lo = min((w.lo_ghz for _, _, m in drawn for _, w in m.spws), default=84.0)
    hi = max((w.hi_ghz for _, _, m in drawn for _, w in m.spws), default=116.0)
    for r in result.requests:
        lo, hi = min(lo, r.lo_ghz), max(hi, r.hi_ghz)
    pad = max(0.5, 0.03 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    for band, (a, b) in BANDS_GHZ.items():
        if a <= hi and b >= lo:
            freq.axvspan(max(a, lo), min(b, hi), color="0.92", zorder=0)
            freq.text(0.5 * (max(a, lo) + min(b, hi)), 1.0, f"band {band}", transform=freq.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize="small")
            for edge in (a, b):
                if lo < edge < hi:
                    freq.axvline(edge, color="0.5", linewidth=0.8, linestyle=":")
    for y, (code, uid, m) in enumerate(drawn):
        hatch = _HATCHES[projects.index(code) % len(_HATCHES)]
        freq.broken_barh([(w.lo_ghz, w.hi_ghz - w.lo_ghz) for _, w in m.spws], (y - 0.35, 0.7),
                         facecolor="white", edgecolor="black", hatch=hatch, linewidth=0.7,
                         label=code if uid == next(u for c, u, _ in drawn if c == code) else None)
    for k, r in enumerate(result.requests):
        style = _STYLES[k % len(_STYLES)]
        if r.lo_ghz == r.hi_ghz:
            freq.axvline(r.lo_ghz, color="black", linewidth=1.4, linestyle=style, label=r.label)
        else:
            freq.axvspan(r.lo_ghz, r.hi_ghz, facecolor="none", edgecolor="black", linestyle=style, linewidth=1.2,
                         label=r.label)
    freq.set_yticks(range(len(drawn)), [uid for _, uid, _ in drawn], fontsize="x-small")
    freq.set_ylim(-0.8, max(len(drawn), 1) - 0.2)
    freq.invert_yaxis()
    freq.set_xlim(lo, hi)
    freq.set_xlabel("Sky frequency [GHz]")
    freq.set_ylabel("MOUS")
    freq.set_title("Spectral windows (frequency_support)" +
                   (f", first {MAX_MOUS_LINES} of {len(mous)} MOUS" if len(mous) > MAX_MOUS_LINES else ""), pad=14)
    freq.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small")

    # band / resolution overview
    seen_bands = set()
    for _, _, m in mous:
        if m.spatial_resolution is None or not m.spws:
            continue
        centre = sum(0.5 * (w.lo_ghz + w.hi_ghz) for _, w in m.spws) / len(m.spws)
        band = int(m.bands[0]) if m.bands and m.bands[0].isdigit() else 0
        res.plot([centre], [m.spatial_resolution], linestyle="none", marker=_MARKERS.get(band, "x"),
                 markerfacecolor="white", markeredgecolor="black",
                 label=f"band {band}" if band not in seen_bands else None)
        seen_bands.add(band)
    res.set_yscale("log")
    res.yaxis.set_major_formatter(ScalarFormatter())
    res.yaxis.set_minor_formatter(ScalarFormatter())
    res.set_xlabel("Mean spw frequency [GHz]")
    res.set_ylabel("Spatial resolution [arcsec]")
    res.set_title("Band / resolution")
    res.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small")

    fig.savefig(path, dpi=80 if path.suffix.lower() == ".png" else "figure")
    return fig
