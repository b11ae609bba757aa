"""The plan of a re-imaging (no CASA): the pipeline's jobs with everything attached, or a manual
delivery's scriptForImaging.py with its conversion and clean() translations; and the delivered
images as a list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...delivery.commandslog import read_commands
from ...errors import TreeError, UsageError
from ..imaging_legacy import CleanTranslation, ConvertedScript, Expression, delivered_masks, python3_text, translate_clean
from .delivered import commands_log, imaging_script, member_source, user_contdat
from .jobs import ImagingJob, continuum_subtracted, jobs_from_calls
from .linefree import ALL_SPWS, find_line_free
from .overrides import Overrides, spw_ids
from .prepare import _attach_cont_ranges, _attach_contsub, _attach_moments, _attach_target_flags
from .restored import restored_mss
from .script import _check_script_selection, _script_calls, script_clean_translations


def plan_images(member: Path, overrides: Overrides | None = None, source: str = "auto") -> list[ImagingJob]:
    """The images a pipeline re-run will make (one job per product tclean call). No CASA runs.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    overrides : Overrides | None, default None
        The user's overrides of the delivered tclean calls.
    source : str, default "auto"
        ``auto``, ``pipeline`` or ``script``.

    Returns
    -------
    list[ImagingJob]
        One job per image.

    Raises
    ------
    UsageError
        The member was imaged by scriptForImaging.py (use ``plan``).
    """
    member = Path(member)
    ov = overrides or Overrides()
    if member_source(member, source) != "pipeline":
        raise UsageError(f"{member} was imaged by scriptForImaging.py, not the pipeline",
                         "use plan() (almadeliver image picks the script for you)")
    log = commands_log(member)
    assert log is not None
    calls = read_commands(log)
    jobs = jobs_from_calls(calls, member, log.name, ov)
    by_line = {c.line: c for c in calls}
    line_data = [j for j in jobs if continuum_subtracted(by_line[int(j.source.rsplit(":", 1)[1])])]
    _attach_target_flags(jobs, member)
    given = {(ALL_SPWS if s is None else s): r for s, r in ov.per_spw("line_free").items()}   # --line-free
    if ov.contsub or line_data:
        # cubes imaged from <EB>_targets_line.ms were continuum subtracted by the pipeline: do the same
        _attach_contsub([j for j in jobs if j in line_data or (ov.contsub and j.kind == "cube")], member, given)
    if ov.moment_list:
        _attach_moments([j for j in jobs if j.kind == "cube"], member, ov.moment_list, given)
    user = user_contdat(member)
    if user is not None and ov.cont != "all":
        _attach_cont_ranges([j for j in jobs if j.kind in ("cont", "mfs")], member, user)
    return jobs


@dataclass
class ImagingPlan:
    """What ``almadeliver image`` will do: pipeline jobs, or scriptForImaging.py with the overrides."""

    member: Path
    source: str                     # pipeline or script
    overrides: Overrides
    jobs: list[ImagingJob] = field(default_factory=list)   # pipeline: the images, planned in full
    script: Path | None = None                             # script: run with tclean wrapped
    converted: ConvertedScript | None = None               # script: the text that runs (Python 2 converted)
    translations: list[tuple[int, CleanTranslation]] = field(default_factory=list)  # script: clean() -> tclean()
    line_free: dict[str, list] = field(default_factory=dict)    # script: spw -> line-free ranges (--contsub/--moments)
    line_free_notes: list[str] = field(default_factory=list)    # script: where those ranges come from

    def script_notes(self) -> list[str]:
        """What running the script involves beyond the overrides: its conversion and each clean()
        call's translation (shown by ``image --dry-run`` and kept in image_record.json).

        Returns
        -------
        list[str]
            The notes, one line each.
        """
        if self.converted is None:
            return []
        notes = [self.converted.describe(), *self.line_free_notes]
        if self.converted.python2:
            notes.append("its CASA version gates are passed (the script runs in this CASA); viewer/imview/plotms "
                         "calls are skipped (no display)")
        for line, t in self.translations:
            notes.append(f"clean() at line {line} runs as tclean(" +
                         ", ".join(f"{k}={v if isinstance(v, Expression) else repr(v)}" for k, v in t.tclean.items())
                         + "):")
            notes += t.lines()
        return notes


def plan(member: Path, overrides: Overrides | None = None, source: str = "auto") -> ImagingPlan:
    """Check the request against the delivery (no CASA) and say what will run.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    overrides : Overrides | None, default None
        The user's overrides of the delivered tclean calls.
    source : str, default "auto"
        ``auto``, ``pipeline`` or ``script``.

    Returns
    -------
    ImagingPlan
        The jobs (or the script) to run and the checks made.

    Raises
    ------
    TreeError
        No restored MS is under calibrated/ (restore first).
    """
    member = Path(member).resolve()
    ov = overrides or Overrides()
    kind = member_source(member, source)
    if kind == "pipeline":
        return ImagingPlan(member, kind, ov, jobs=plan_images(member, ov, "pipeline"))
    script = imaging_script(member)
    assert script is not None
    if not restored_mss(member).by_eb and restored_mss(member).combined is None:
        raise TreeError(f"no restored MS under {member / 'calibrated'}",
                        f"restore the data first: almadeliver restore {member}")
    _check_script_selection(member, script, ov)
    line_free, notes = script_line_free(member, script, ov) if (ov.contsub or ov.moment_list) else ({}, [])
    return ImagingPlan(member, kind, ov, script=script, converted=python3_text(script),
                       translations=script_clean_translations(script, delivered_masks(member)),
                       line_free=line_free, line_free_notes=notes)


def script_line_free(member: Path, script: Path, ov: Overrides) -> tuple[dict[str, list], list[str]]:
    """The line-free ranges of a manual delivery's cubes for --contsub/--moments, per spw id of the
    script's MS (``ALL_SPWS``: every spw), and what they come from: ``--line-free``, else the channels
    ``find_line_free`` finds in each delivered cube (``product/<imagename>.*pbcor*.fits`` of the script's
    literal cube calls). Raises UsageError when --contsub has no range for a cube.

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    script : Path
        The delivery's scriptForImaging.py.
    ov : Overrides
        The user's overrides of the delivered tclean calls.

    Returns
    -------
    tuple[dict[str, list], list[str]]
        (spw id -> [(low Hz, high Hz, frame)], where each range comes from).

    Raises
    ------
    UsageError
        --contsub is asked and a cube's spw has no line-free range.
    """
    if ov.line_free:
        ranges = {(ALL_SPWS if s is None else s): r for s, r in ov.per_spw("line_free").items()}
        return ranges, [f"line-free ranges from --line-free {ov.line_free}"]
    found: dict[str, list] = {}
    notes: list[str] = []
    cubes = [(kw, spw_ids(kw.get("spw", ""))) for _, task, kw in _script_calls(python3_text(script).text)
             if (translate_clean(kw).tclean if task == "clean" else kw).get("specmode") == "cube"]
    for kw, spws in cubes:
        name = kw.get("imagename")
        if isinstance(name, Expression) or not spws or (ov.spws and not set(spws) & set(ov.spws)):
            continue
        products = sorted(p for p in (member / "product").glob(f"{Path(str(name)).name}.*pbcor*.fits*"))
        if not products:
            notes.append(f"no delivered cube of {name} to find its line-free channels in (moments over every channel)")
            continue
        try:
            result = find_line_free(products[0])
        except ValueError as exc:
            notes.append(f"no line-free channels found for {name}: {exc}")
            continue
        for spw in spws:
            found[spw] = result.ranges
        notes.append(result.describe())
    missing = [s for _, spws in cubes for s in spws if s not in found and (not ov.spws or s in ov.spws)]
    if ov.contsub and missing:
        raise UsageError(f"--contsub has no line-free range for spw {', '.join(sorted(set(missing), key=int))} "
                         f"(no delivered cube to find them in)",
                         "give them: --line-free 'SPW:LO~HI[;LO~HI]GHz' (frequencies, LSRK)")
    return found, notes


def list_images(member: Path, source: str = "auto") -> list[ImagingJob]:
    """The delivered images as jobs (pipeline: the product tclean calls; script: its literal tclean calls).

    Parameters
    ----------
    member : Path
        The member folder (restored, for the imaging functions).
    source : str, default "auto"
        ``auto``, ``pipeline`` or ``script``.

    Returns
    -------
    list[ImagingJob]
        One job per delivered image.
    """
    member = Path(member).resolve()
    if member_source(member, source) == "pipeline":
        log = commands_log(member)
        assert log is not None
        return jobs_from_calls(read_commands(log), member, log.name, Overrides(), check_vis=False)
    script = imaging_script(member)
    assert script is not None
    jobs = []
    masks = delivered_masks(member)
    for line, task, kwargs in _script_calls(python3_text(script).text):
        name = str(kwargs.get("imagename", "?"))
        tclean = translate_clean(kwargs, masks).tclean if task == "clean" else kwargs
        jobs.append(ImagingJob(name=name, source=f"{script.name}:{line}" + (" clean()" if task == "clean" else ""),
                               field=str(kwargs.get("field", "?")), spws=spw_ids(kwargs.get("spw", "")) or ["?"],
                               kind="cube" if tclean.get("specmode") == "cube" else "mfs",
                               tclean=tclean, exports={}))
    return jobs
