"""``check --format html``: one page per MOUS with the checklist verdicts and the plots staff look at.

The page (``report.html``) and its PNG plots (``report_files/``, made with matplotlib from the
reduction area's MSs and images) are:

- per EB: corrected amplitude and phase of each calibrator against time and frequency, per spw
  (``<EB>.ms.split.cal``, as the staff manual asks to check with plotms);
- per EB: the flagged fraction at each saved stage, per spw (the flag versions);
- quick-looks of the product images (the continuum images, and the peak channel of each cube).

A small script on the page counts the images that loaded and writes it into ``#image-status``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from . import visibilities as vis
from .checklist import split_cal
from .report import Report, Severity

_VERDICT = {Severity.INFO: ("pass", "#1a7f37"), Severity.WARNING: ("warn", "#9a6700"), Severity.ERROR: ("FAIL", "#cf222e")}


def write_html_report(report: Report, area: Path, output: Path) -> Path:
    """Write ``output`` (HTML) and its plots in ``<output stem>_files/``; returns ``output``.

    Parameters
    ----------
    report : Report
        The checklist of ``area`` (``check_area``).
    area : Path
        The reduction area the report is about (its MSs and images are plotted).
    output : Path
        The HTML file to write.

    Returns
    -------
    Path
        ``output``.
    """
    from .staff import load_area

    output = Path(output)
    files = output.parent / f"{output.stem}_files"
    files.mkdir(parents=True, exist_ok=True)
    staff = load_area(area)
    figures: list[tuple[str, str]] = []          # (title, relative path)
    for eb in staff.ebs:
        if eb.uid is None:
            continue
        cal_path = split_cal(staff, eb)
        if cal_path is not None:
            summary = vis.ms_summary(cal_path)
            series = vis.calibrator_series(summary)
            if series:
                name = f"{eb.uid.disk}_calibrators.png"
                _plot_calibrators(series, files / name, eb.uid.disk)
                figures.append((f"{eb.uid.disk}: calibrators, amplitude and phase against time and frequency",
                                f"{files.name}/{name}"))
        stages = next((f.numbers.get("stages") for f in report.findings
                       if f.check == "staff.eb.flagging" and f.numbers and f.path.startswith(eb.folder.name)), None)
        if stages:
            name = f"{eb.uid.disk}_flagging.png"
            _plot_flagging(stages, files / name, eb.uid.disk)
            figures.append((f"{eb.uid.disk}: flagged fraction per stage and spw", f"{files.name}/{name}"))
    for image in sorted(staff.imaging.glob("*.pbcor.fits")) if staff.imaging.is_dir() else []:
        name = image.name.replace(".fits", ".png")
        if _plot_image(image, files / name):
            figures.append((f"product {image.name}", f"{files.name}/{name}"))
    output.write_text(_page(report, figures))
    return output


def _figure(rows: int, cols: int, size=(3.2, 2.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return plt, fig, axes


def _plot_calibrators(series: list[vis.CalibratorSeries], path: Path, title: str) -> None:
    plt, fig, axes = _figure(len(series), 4)
    for row, s in zip(axes, series):
        t = (s.times_s - s.times_s.min()) / 60.0
        f = s.freqs_hz / 1e9
        for ax, x, y, xl, yl in ((row[0], t, s.amp_t, "time (min)", "amp (Jy)"),
                                 (row[1], t, s.phase_t_deg, "time (min)", "phase (deg)"),
                                 (row[2], f, s.amp_f, "frequency (GHz)", "amp (Jy)"),
                                 (row[3], f, s.phase_f_deg, "frequency (GHz)", "phase (deg)")):
            ax.plot(x, y, ".", ms=3)
            ax.set_xlabel(xl, fontsize=7)
            ax.set_ylabel(yl, fontsize=7)
            ax.tick_params(labelsize=6)
            if "phase" in yl:
                ax.set_ylim(-180, 180)
        row[0].set_title(f"{s.field} spw {s.spw}", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_flagging(stages: dict[str, dict[str, float]], path: Path, title: str) -> None:
    plt, fig, axes = _figure(1, 1, size=(max(4.0, 0.6 * len(stages) + 2), 3.0))
    ax = axes[0][0]
    spws = sorted({spw for f in stages.values() for spw in f})
    width = 0.8 / max(1, len(spws))
    for k, spw in enumerate(spws):
        ax.bar(np.arange(len(stages)) + k * width, [stages[s].get(spw, np.nan) for s in stages], width,
               label=f"spw {spw}")
    ax.set_xticks(np.arange(len(stages)) + 0.4 - width / 2)
    ax.set_xticklabels([s.replace(f"{title}.", "") for s in stages], rotation=30, ha="right", fontsize=6)
    ax.set_ylabel("flagged fraction", fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_image(fits_path: Path, path: Path) -> bool:
    from astropy.io import fits

    try:
        with fits.open(fits_path) as hdul:
            data = np.asarray(hdul[0].data, dtype=float)
    except (OSError, ValueError, TypeError):
        return False
    if data.ndim < 2:
        return False
    planes = data.reshape((-1,) + data.shape[-2:])
    peaks = [np.nanmax(p) if np.isfinite(p).any() else -np.inf for p in planes]
    k = int(np.argmax(peaks))
    plt, fig, axes = _figure(1, 1, size=(3.4, 3.0))
    ax = axes[0][0]
    im = ax.imshow(planes[k], origin="lower", cmap="inferno")
    fig.colorbar(im, ax=ax, label="Jy/beam")
    ax.set_title(f"{fits_path.name}" + (f" (channel {k})" if len(planes) > 1 else ""), fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _page(report: Report, figures: list[tuple[str, str]]) -> str:
    e = html.escape
    failed, warned = len(report.of(Severity.ERROR)), len(report.of(Severity.WARNING))
    rows = []
    for f in report.findings:
        verdict, colour = _VERDICT[f.severity]
        numbers = json.dumps(f.numbers, default=str) if f.numbers else ""
        rows.append(f"<tr><td style='color:{colour};font-weight:bold'>{verdict}</td><td>{e(f.check)}</td>"
                    f"<td><code>{e(f.path)}</code></td><td>{e(f.message)}"
                    + (f"<br><small>{e(f.hint)}</small>" if f.hint and f.severity is not Severity.INFO else "")
                    + (f"<details><summary>numbers</summary><pre>{e(numbers)}</pre></details>" if numbers else "")
                    + "</td></tr>")
    plots = "\n".join(f"<figure><img src='{e(src)}' alt='{e(title)}'><figcaption>{e(title)}</figcaption></figure>"
                      for title, src in figures)
    mous = report.details.get("mous") or report.details.get("gous") or report.root
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>checklist {e(str(mous))}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top;font-size:13px}}
figure{{display:inline-block;margin:6px}} figcaption{{font-size:12px}} pre{{white-space:pre-wrap;max-width:70em}}</style>
</head><body>
<h1>Final checklist of MOUS {e(str(mous))}</h1>
<p>{e(report.root)}: {len(report.findings) - failed - warned} passed, {warned} warned, {failed} failed</p>
<table><tr><th>verdict</th><th>item</th><th>path</th><th>finding</th></tr>
{chr(10).join(rows)}
</table>
<h2>Plots</h2>
{plots}
<p id="image-status">images not checked yet</p>
<script>
window.addEventListener('load', function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.getElementById('image-status').textContent = 'images loaded ' + ok + ' of ' + imgs.length;
}});
</script>
</body></html>
"""
