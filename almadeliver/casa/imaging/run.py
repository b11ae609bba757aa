"""Making the planned images: a new output folder, the CASA children (target flags and uvcontsub
first, then one tclean per image, ``workers`` at a time; or the imaging script in one child), then
the comparison, the record and the README.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ...errors import UsageError
from ..imaging_legacy import delivered_masks, python3_text
from .child import contsub_in_casa, flagtargets_in_casa, tclean_in_casa
from .compare import ImagingResult, compare, updated_readme, write_record
from .delivered import delivered_product
from .jobs import ImagingJob
from .overrides import Overrides, spw_ids
from .plan import ImagingPlan
from .script import script_in_casa


def run(plan_: ImagingPlan, out: Path | None = None, workers: int | None = None,
        on_done: Callable[[str, str | None], None] | None = None) -> "ImagingResult":
    """Make the planned images in a new folder (product/ is never written).

    Parameters
    ----------
    plan_ : ImagingPlan
        The imaging plan (``plan``).
    out : Path | None, default None
        The output folder (None: member/reimage[.N]).
    workers : int | None, default None
        CASA children at a time (None: as many as the CPUs allow).
    on_done : Callable[[str, str | None], None] | None, default None
        Called with each image's name and its error (None when it succeeded).

    Returns
    -------
    ImagingResult
        The images made, their comparison with the delivered ones, and the failures.
    """
    from ..runtime import preload

    folder = new_out_folder(plan_.member, out)
    # what the comparison and the quick-looks need afterwards, imported while CASA images
    preload("astropy.io.fits", "matplotlib.figure", "matplotlib.patches", "matplotlib.backends.backend_agg")
    if plan_.source == "pipeline":
        return run_images(plan_.jobs, folder, workers, on_done, plan_.overrides)
    return run_script_images(plan_, folder, on_done)


def run_script_images(plan_: ImagingPlan, out: Path,
                      on_done: Callable[[str, str | None], None] | None = None) -> "ImagingResult":
    """Run scriptForImaging.py through the legacy shim in out/work (the restored MSs linked there).

    The shim's ``tclean`` is wrapped: each call the script makes gets the overrides applied and is
    skipped when --spw/--field/--specmode exclude it; ``exportfits`` writes into ``out``. This works
    whatever the script computes its arguments from (real scripts use variables, so rewriting literal
    call text would miss most of them). One CASA process: the script's steps depend on each other.

    Parameters
    ----------
    plan_ : ImagingPlan
        The imaging plan of a manual delivery (``plan``).
    out : Path
        The output folder.
    on_done : Callable[[str, str | None], None] | None, default None
        Called with each image's name and its error (None when it succeeded).

    Returns
    -------
    ImagingResult
        The images made, their comparison with the delivered ones, and the failures.
    """
    from ..runtime import run_in_casa

    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    for ms in sorted((plan_.member / "calibrated").glob("*.ms*")):
        if ms.is_dir() and not (work / ms.name).exists():
            (work / ms.name).symlink_to(ms.resolve())
    failures: dict[str, str] = {}
    jobs: list[ImagingJob] = []
    converted = plan_.converted or python3_text(plan_.script)
    script = plan_.script
    if converted.python2:   # the converted copy runs; the delivered script stays as it is
        script = work / plan_.script.name
        script.write_text(converted.text)
    try:
        made = run_in_casa(script_in_casa,
                           {"script": str(script), "out": str(out),
                            "overrides": asdict(plan_.overrides), "legacy": converted.python2,
                            "masks": delivered_masks(plan_.member), "line_free": plan_.line_free},
                           workdir=work, logfile=out / "logs" / f"{plan_.script.name}.casa.log")
    except Exception as exc:  # noqa: BLE001  (reported like a failed image)
        failures[plan_.script.name] = str(exc)
        made = {"calls": [], "exports": []}
    for call in made["calls"]:
        image = call["tclean"]["imagename"]
        exports = {e["imagename"][len(image):]: e["fits"] for e in made["exports"]
                   if e["imagename"].startswith(image + ".")}
        jobs.append(ImagingJob(
            name=Path(image).name, source=f"{plan_.script.name}", field=str(call["tclean"].get("field", "")),
            spws=spw_ids(call["tclean"].get("spw", "")), kind=call["kind"], tclean=call["tclean"],
            exports=exports, changed=call["changed"], translated_from=call.get("clean"),
            contsub=call.get("contsub", []), moments=call.get("moments", {}),
            delivered={f: (str(p) if (p := delivered_product(plan_.member, f)) else None) for f in exports.values()}))
        if on_done:
            on_done(Path(image).name, None)
    if not failures and not jobs:
        failures[plan_.script.name] = "the selection matched no tclean call of the script"
    if failures and on_done:
        on_done(plan_.script.name, failures[plan_.script.name])
    comparisons = compare(out, jobs)
    record, table = write_record(out, jobs, comparisons, failures, plan_.overrides,
                                 script_notes=plan_.script_notes())
    readme = updated_readme(plan_.member, out, comparisons, plan_.overrides)
    return ImagingResult(out, record, table, jobs, comparisons, failures, readme)


def new_out_folder(member: Path, out: Path | None) -> Path:
    """A new folder for the images: ``--out`` (must not hold anything yet) or member/reimage[.N].

    Parameters
    ----------
    member : Path
        The member folder.
    out : Path | None
        The ``--out`` folder (None: member/reimage[.N]).

    Returns
    -------
    Path
        The folder, made (new or empty).

    Raises
    ------
    UsageError
        ``out`` is inside product/ or already holds files.
    """
    member = Path(member).resolve()
    if out is None:
        out = member / "reimage"
        n = 1
        while out.exists():
            n += 1
            out = member / f"reimage.{n}"
    out = Path(out).resolve()
    if out == member / "product" or member / "product" in out.parents:
        raise UsageError(f"--out {out} is inside product/", "product/ is never written; choose another folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} already holds files", "give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_images(jobs: list[ImagingJob], out: Path, workers: int | None = None,
               on_done: Callable[[str, str | None], None] | None = None,
               overrides: Overrides | None = None) -> ImagingResult:
    """Run every job (one CASA child per image, ``workers`` at a time), export FITS, compare, record.

    Continuum subtraction runs first (once per output MS). A failed job does not stop the others;
    its error is in ``failures``.

    Parameters
    ----------
    jobs : list[ImagingJob]
        The imaging jobs.
    out : Path
        The output folder.
    workers : int | None, default None
        CASA children at a time (None: as many as the CPUs allow).
    on_done : Callable[[str, str | None], None] | None, default None
        Called with each image's name and its error (None when it succeeded).
    overrides : Overrides | None, default None
        The user's overrides (for the record and README).

    Returns
    -------
    ImagingResult
        The images made, their comparison with the delivered ones, and the failures.
    """
    from ..runtime import run_in_casa

    out = Path(out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    workers = max(1, workers or min(len(jobs), os.cpu_count() or 1))
    failures: dict[str, str] = {}

    # before tclean, once per output MS: hifa_flagtargets' copies, then uvcontsub (which may read a copy)
    _run_each(flagtargets_in_casa, {c["outputvis"]: c for j in jobs for c in j.flagtargets}, out, workers, failures)
    _run_each(contsub_in_casa, {c["outputvis"]: c for j in jobs for c in j.contsub}, out, workers, failures)

    def one(job: ImagingJob) -> str | None:
        bad = [c["outputvis"] for c in job.flagtargets if c["outputvis"] in failures]
        if bad:
            return f"target flagging failed: {failures[bad[0]]}"
        bad = [c["outputvis"] for c in job.contsub if c["outputvis"] in failures or c["vis"] in failures]
        if bad:
            c = next(c for c in job.contsub if c["outputvis"] in bad)
            return f"continuum subtraction failed: {failures.get(c['outputvis']) or failures[c['vis']]}"
        try:
            made = run_in_casa(tclean_in_casa,
                        {"tclean": job.tclean, "exports": job.exports, "out": str(out), "reads": job.reads,
                         "cont_ranges": job.cont_ranges, "field": job.field, "moments": job.moments},
                        workdir=out / "work", logfile=out / "logs" / f"{job.name}.casa.log")
        except Exception as exc:  # noqa: BLE001  (one image failing must not stop the others)
            return str(exc)
        if job.moments and isinstance(made, dict):
            job.moments["made"] = made.get("moments")
        if job.cont_ranges and isinstance(made, dict) and "spw" in made:   # the channels cont.dat selected
            job.changed["spw"] = [job.changed.get("spw", [None])[0], made["spw"]]
        return None

    with ThreadPoolExecutor(workers) as pool:
        for job, error in zip(jobs, pool.map(one, jobs)):
            if error:
                failures[job.name] = error
            if on_done:
                on_done(job.name, error)
    comparisons = compare(out, [j for j in jobs if j.name not in failures])
    record, table = write_record(out, jobs, comparisons, failures, overrides)
    member = _member_of(jobs)
    readme = updated_readme(member, out, comparisons, overrides) if member else None
    return ImagingResult(out, record, table, jobs, comparisons, failures, readme)


def _run_each(child: Callable[..., Any], runs: dict[str, dict[str, Any]], out: Path, workers: int,
              failures: dict[str, str]) -> None:
    """Run ``child`` once per output MS (``runs``: outputvis -> its run, given as ``run=``), ``workers`` at
    a time; each run gets its child's answer as ``result``, a failure goes to ``failures[outputvis]``."""
    from ..runtime import run_in_casa

    if not runs:
        return
    with ThreadPoolExecutor(workers) as pool:
        done = {vis: pool.submit(run_in_casa, child, {"run": c}, workdir=out / "work",
                                 logfile=out / "logs" / f"{Path(vis).name}.casa.log") for vis, c in runs.items()}
        for vis, fut in done.items():
            try:
                runs[vis]["result"] = fut.result()
            except Exception as exc:  # noqa: BLE001  (reported per image)
                failures[vis] = str(exc)


def _member_of(jobs: list[ImagingJob]) -> Path | None:
    """The member folder of the jobs' delivered products (None when nothing was delivered to compare)."""
    for job in jobs:
        for path in job.delivered.values():
            if path:
                return Path(path).parent.parent
    return None
