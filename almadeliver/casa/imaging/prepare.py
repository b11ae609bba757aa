"""What runs before tclean, attached to the planned jobs: hifa_flagtargets' target flags, uvcontsub
(--contsub, or the pipeline's line MSs), a user's cont.dat ranges for the continuum images, and the
moment maps of the cubes (--moments).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import TreeError, UsageError
from .delivered import contdat_file, contdat_ranges, target_flag_templates
from .jobs import ImagingJob
from .linefree import ALL_SPWS
from .overrides import spw_ids
from .restored import _EB_RE, calibrated_column, remap_spw, split_spw_map


def _attach_target_flags(jobs: list[ImagingJob], member: Path) -> None:
    """hifa_flagtargets: each EB whose target flag template holds commands is imaged from a copy of its
    calibrated data (``targets/<EB>_targets.ms``, data in DATA) with the template's commands applied
    (spw ids renumbered for an ``<EB>.ms.split.cal``). The restored MS is not touched. An EB whose
    template is empty (the usual case) is imaged as restored."""
    from ...delivery.flagtemplate import parse_flagtemplate

    templates = target_flag_templates(member)
    runs: dict[str, dict[str, Any]] = {}
    for job in jobs:
        vis_list = job.tclean["vis"] if isinstance(job.tclean["vis"], list) else [job.tclean["vis"]]
        new_vis, changed = [], False
        for vis in vis_list:
            eb = _EB_RE.match(Path(vis).name)
            template = templates.get(eb.group(0)) if eb else None
            commands = parse_flagtemplate(template).commands if template else []
            if not commands:
                new_vis.append(vis)
                continue
            mapping = split_spw_map(member, eb.group(0)) if vis.endswith(".ms.split.cal") else None
            lines = []
            for c in commands:
                params = dict(c.params)
                if "spw" in params:
                    params["spw"] = remap_spw(params["spw"], mapping, vis)
                lines.append(" ".join(f"{k}='{v}'" for k, v in params.items()))
            run = runs.setdefault(vis, {"vis": vis, "outputvis": f"targets/{eb.group(0)}_targets.ms",
                                        "datacolumn": calibrated_column(vis), "template": str(template),
                                        "commands": lines})
            job.flagtargets.append(run)
            new_vis.append(run["outputvis"])
            changed = True
        if changed:
            job.changed["vis"] = [job.tclean["vis"], new_vis]
            column = {r["outputvis"]: r for r in job.flagtargets}
            job.reads = [{"vis": v, "datacolumn": "data" if v in column else calibrated_column(v),
                          "delivered": (f"{Path(column[v]['vis']).name} ({column[v]['datacolumn'].upper()}) with "
                                        f"{Path(column[v]['template']).name} applied") if v in column
                          else "as restored"} for v in new_vis]
            job.tclean["vis"] = new_vis
            job.tclean["datacolumn"] = "data" if all(v in column for v in new_vis) else "corrected"


def _attach_moments(jobs: list[ImagingJob], member: Path, moments: list[int],
                    line_free: dict[str, list] | None = None) -> None:
    """Each cube also gets its moment maps: over its line channels (those outside cont.dat's ranges for
    the cube's spw, or the --line-free ones in ``line_free``; every channel without either), the noise
    from its line-free channels."""
    from ...delivery.contdat import parse_contdat

    if not jobs:
        raise UsageError("--moments applies to cubes, and no cube is selected", "select a cube (--specmode cube)")
    contdat = contdat_file(member)
    ranges = contdat_ranges(parse_contdat(contdat)) if contdat else {}
    for job in jobs:
        free = [r for s in job.spws for r in (_given(line_free, s) if line_free else
                                              ranges.get(job.field, {}).get(s, []))]
        job.moments = {"moments": moments, "line_free": free,
                       "contdat": "--line-free" if line_free else contdat.name if contdat else None}
        base = job.exports[".image.pbcor"][: -len(".pbcor.fits")] if ".image.pbcor" in job.exports else job.name
        job.moments["fits"] = {m: f"{base}.mom{m}.fits" for m in moments}


def _attach_cont_ranges(jobs: list[ImagingJob], member: Path, contdat: Path) -> None:
    """Continuum images take their channels from the user's cont.dat (selected in the CASA child, in
    each MS's channels) instead of the ranges the delivered call logged."""
    from ...delivery.contdat import parse_contdat

    ranges = contdat_ranges(parse_contdat(contdat))
    for job in jobs:
        field_ranges = ranges.get(job.field, {})
        missing = [s for s in job.spws if not field_ranges.get(s)]
        if len(missing) == len(job.spws):
            raise TreeError(f"{contdat} has no continuum range for field {job.field!r} spw {', '.join(missing)}",
                            "add ranges (or ALL) to cont.dat, or use --cont all")
        spw = job.tclean.get("spw", "")
        per_vis = spw if isinstance(spw, (list, tuple)) else [spw] * len(job.tclean["vis"])
        job.cont_ranges = [{ms_id: field_ranges.get(s, []) for ms_id, s in zip(spw_ids(entry), job.spws)}
                           for entry in per_vis]
        job.changed["spw"] = [spw, f"channels of {contdat.name} (selected per MS in CASA)"]


def _attach_contsub(jobs: list[ImagingJob], member: Path, line_free: dict[str, list] | None = None) -> None:
    """Cube jobs image continuum-subtracted copies of their MSs, fitted on cont.dat's ranges (or the
    --line-free ranges in ``line_free``, spw id -> ranges)."""
    from ...delivery.contdat import parse_contdat

    contdat = contdat_file(member)
    if contdat is None and not line_free:
        raise TreeError(f"{member}/calibration has no cont.dat", "--contsub needs the pipeline's <MOUS>.cont.dat "
                        "or --line-free ranges")
    found = [Path("--line-free") if line_free else contdat]
    ranges = {} if line_free else contdat_ranges(parse_contdat(found[0]))
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for job in jobs:
        if job.kind != "cube":
            continue
        spw_ranges = {s: _given(line_free, s) if line_free else ranges.get(job.field, {}).get(s) for s in job.spws}
        missing = [s for s, r in spw_ranges.items() if not r]
        if missing:
            raise TreeError(f"{found[0].name} has no continuum range for field {job.field!r} spw {', '.join(missing)}",
                            "add the ranges to cont.dat, or image without --contsub")
        new_vis = []
        for vis in job.tclean["vis"]:
            run = runs.setdefault((vis, job.field), {
                "vis": vis, "outputvis": f"contsub/{Path(vis).name}.{job.field}.contsub", "field": job.field,
                "datacolumn": calibrated_column(vis), "ranges": {}})
            eb = _EB_RE.match(Path(vis).name)
            source = {r["outputvis"]: r["vis"] for r in job.flagtargets}.get(vis, vis)   # a flagged copy keeps its spw ids
            mapping = split_spw_map(member, eb.group(0)) if eb and source.endswith(".ms.split.cal") else None
            run["ranges"].update({remap_spw(s, mapping, vis): r for s, r in spw_ranges.items()})
            job.contsub.append(run)
            new_vis.append(run["outputvis"])
        job.changed["vis"] = [job.tclean["vis"], new_vis]
        job.reads = [{"vis": out, "datacolumn": "data",
                      "delivered": f"uvcontsub of {Path(vis).name} ({calibrated_column(vis).upper()}), cont.dat ranges"}
                     for vis, out in zip(job.tclean["vis"], new_vis)]
        job.tclean["vis"] = new_vis
        job.tclean["datacolumn"] = "data"   # uvcontsub writes the subtracted data to DATA


def _given(line_free: dict[str, list], spw: str) -> list:
    """The --line-free ranges of ``spw`` (its own, else those given for every spw)."""
    return line_free.get(spw) or line_free.get(ALL_SPWS) or []
