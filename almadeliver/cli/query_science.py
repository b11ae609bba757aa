"""query: the terminal text of science answers (spectral coverage per MOUS, one line per row)."""
from __future__ import annotations

from ..archive.science import ScienceResult


def _grid(headers: list[str], rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    return [indent + "  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [headers, *rows]]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def science_lines(result: ScienceResult) -> list[str]:
    """Per MOUS: which spws cover each request and the channel width there, spatial resolution,
    largest angular scale, sensitivity in 10 km/s, and the --targets entries it covers."""
    lines = []
    for r in result.requests:
        rest = f" (rest {r.rest_ghz:.6f} GHz; {r.source})" if r.rest_ghz else ""
        sky = f"{r.lo_ghz:.6f} GHz" if r.lo_ghz == r.hi_ghz else f"{r.lo_ghz:.4f}..{r.hi_ghz:.4f} GHz"
        lines.append(f"requested {r.label}: sky (LSRK) {sky}{rest}")
    rows = []
    for p in result.view.projects:
        for m in p.mous:
            s = result.mous.get(m.uid)
            if s is None:
                continue
            cov = s.coverage[0] if s.coverage else None
            row = [m.uid, " ".join(s.bands), _num(s.spatial_resolution, ".2f"), _num(s.largest_angular_scale, ".1f"),
                   _num(s.sensitivity_10kms, ".2f")]
            if result.requests:
                row += [" | ".join(f"{c.request}: {' '.join(c.spws)}" for c in s.coverage) or "-",
                        _num(cov.channel_kms if cov else None, ".3f")]
            if result.targets:
                row.append(", ".join(s.targets[:4]) + (f" +{len(s.targets) - 4}" if len(s.targets) > 4 else ""))
            rows.append(row)
    headers = ["MOUS", "band", "res\"", "LAS\"", "sens mJy/b@10km/s"]
    if result.requests:
        headers += ["spws covering", "chan km/s"]
    if result.targets:
        headers.append("targets")
    return lines + _grid(headers, rows) if rows else lines


def rows_lines(result: ScienceResult) -> list[str]:
    """``--view rows``: one line per ObsCore row (MOUS x source x spw)."""
    from ..archive.projectview import _rows

    rows = []
    for i, r in enumerate(_rows(result.table), start=1):
        em_min, em_max = r.get("em_min"), r.get("em_max")
        freq = (f"{299792458.0 / em_max / 1e9:.3f}..{299792458.0 / em_min / 1e9:.3f}"
                if em_min and em_max else "-")
        rows.append([str(i), str(r.get("proposal_id")), str(r.get("member_ous_uid")), str(r.get("target_name")),
                     str(r.get("obs_id", "")).rsplit(".spw.", 1)[-1] if ".spw." in str(r.get("obs_id", "")) else "-",
                     freq, _num(r.get("spatial_resolution"), ".2f"), _num(r.get("sensitivity_10kms"), ".2f"),
                     str(r.get("asdm_uid"))])
    return _grid(["row", "project", "MOUS", "target", "spw", "GHz", "res\"", "sens mJy/b", "EB"], rows)
