"""selfcal: continuum self-calibration of a restored delivery, then its line cubes with the solutions.

The last step of ALMA's Cycle 0 processing guide (seed 000, step 5) and of the pipeline re-imaging
guide (seed 003: "for S/N > about 100 ... self-calibration coupled with deeper clean"). The loop is
the standard one on casatasks (it runs in one CASA child: ``selfcal_in_casa``, where the constants
named below live):

1. the target field is split out of every calibrated MS (its calibrated column) into
   ``<out>/<EB>.selfcal.ms``, so the delivered calibrated column is never overwritten (seed 003);
2. round 0 images the continuum (tclean mfs over every spw, Briggs 0.5, the delivered continuum
   image's cell and size; clean mask a circle of MASK_BEAMS beams around the peak of the dirty image,
   for compact sources: auto-multithresh finds no region in the sidelobes of arrays of a few
   antennas), the model saved by tclean into MODEL_DATA;
3. each round (``p:inf``, ``p:30s``, ``p:int``, ``ap:inf`` ...) solves gains against that model
   (phase rounds from the DATA column afresh, amplitude rounds on top of the last phase table kept),
   applies them and images again; a round is kept only if the dynamic range (peak / rms) rises and the
   rms does not (rms within ``RMS_TOLERANCE``). A rejected round's tables are dropped and the best
   model and calibration are put back before the next round;
4. the continuum is imaged once more with the best calibration, cleaned deeper (inside the primary
   beam, to THRESHOLD_SIGMA times the residual rms: "self-calibration coupled with deeper clean", seed 003);
5. the delivered cubes are remade on their own frequency grids from the self-calibrated MSs.

Why not auto_selfcal (PyPI ``auto-selfcal`` 2.1) as the engine: it installs and runs headless in
modular CASA 6.7 here (``weblog=False``), but it pulls casaplotms and casaviewer (about 400 MB of
Qt GUI packages) and pins protobuf <= 3.20.3 into almadeliver's environment, and it chooses its
solution intervals itself, so ``--selfcal-rounds`` and the per-round report could not be honoured.

Peak and rms of the rounds are read from the flat-noise restored image (rms: 1.4826 x median
absolute deviation over the image); the comparison with the delivered image measures both the same
way, on the flat-noise image (``.pbcor`` FITS times the primary beam delivered beside it, ``flat_stats``).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import TreeError, UsageError
from .imaging import Comparison, ImageStats, calibrated_column, image_stats, restored_mss, updated_readme
from .runtime import run_in_casa
from .selfcal_child import ROUND_LINE, selfcal_in_casa

DEFAULT_ROUNDS = "p:inf,p:30s,p:int,ap:inf"
_SOLINT_RE = re.compile(r"^(inf|int|\d+(\.\d+)?(s|min))$")


@dataclass(frozen=True)
class SelfcalRound:
    """One round asked for: ``p`` (phase) or ``ap`` (amplitude and phase), and gaincal's solint."""

    mode: str
    solint: str


def parse_rounds(text: str) -> list[SelfcalRound]:
    """``"p:inf,p:30s,p:int,ap:inf"`` -> rounds. Raises UsageError for a bad mode or solint.

    Parameters
    ----------
    text : str
        The ``--selfcal-rounds`` value.

    Returns
    -------
    list[SelfcalRound]
        The rounds, in order.

    Raises
    ------
    UsageError
        A round is not ``MODE:SOLINT`` (mode p or ap), or the text names none.
    """
    rounds = []
    for part in [p for p in text.replace(" ", "").split(",") if p]:
        mode, _, solint = part.partition(":")
        if mode not in ("p", "ap") or not _SOLINT_RE.match(solint):
            raise UsageError(f"--selfcal-rounds: {part!r} is not MODE:SOLINT",
                             "MODE is p or ap, SOLINT inf, int, or a time such as 30s; e.g. p:inf,p:30s,ap:inf")
        rounds.append(SelfcalRound(mode, solint))
    if not rounds:
        raise UsageError("--selfcal-rounds is empty", f"e.g. {DEFAULT_ROUNDS}")
    return rounds


@dataclass
class CubeGrid:
    """A delivered cube to remake: its FITS, frequency grid (Hz, in ``frame``) and rest frequency."""

    fits: Path
    start_hz: float
    width_hz: float
    nchan: int
    frame: str
    restfreq_hz: float | None


@dataclass
class SelfcalPlan:
    """What ``selfcal`` will do; nothing is written by planning."""

    member: Path
    vis: list[Path]                   # calibrated MSs (one per EB, or the combined one)
    columns: list[str]                # their calibrated column
    field: str | None                 # None: the field with intent OBSERVE_TARGET
    rounds: list[SelfcalRound]
    cell_arcsec: float | None         # None: from the longest baseline
    imsize: int | None
    continuum_spw: Any                # tclean spw of the delivered continuum image ("" = every spw)
    delivered_continuum: Path | None
    cubes: list[CubeGrid]
    out: Path


@dataclass
class RoundResult:
    """One imaging round: 0 is before self-calibration."""

    index: int
    mode: str                         # "" for round 0
    solint: str
    kept: bool
    flagged_solutions: float | None   # fraction of gain solutions flagged by gaincal
    peak: float                       # Jy/beam
    rms: float                        # Jy/beam
    dynamic_range: float
    beam: tuple[float, float, float]  # bmaj, bmin (arcsec), bpa (deg)
    seconds: float


@dataclass
class SelfcalResult:
    """Per-round figures, the final continuum against the delivered one, and the remade cubes."""

    out: Path
    field: str
    rounds: list[RoundResult]
    continuum: Path                   # the final .image.pbcor.fits
    final: ImageStats
    delivered: ImageStats | None
    cubes: list[tuple[Path, ImageStats, ImageStats | None]]   # new cube, its stats, the delivered cube's
    selfcal_vis: list[Path]
    tables: list[Path]                # the gain tables kept, in the order applied
    seconds: float
    casa_log: Path
    readme: Path | None = None        # OUT/README: the delivered README with these images' numbers

    @property
    def gain_over_delivered(self) -> float | None:
        """Final dynamic range / delivered continuum's (both from the .pbcor FITS)."""
        if self.delivered is None or not self.delivered.rms or not self.final.rms:
            return None
        return (self.final.peak / self.final.rms) / (self.delivered.peak / self.delivered.rms)

    @property
    def gain_over_start(self) -> float:
        """Dynamic range of the last kept round / round 0's."""
        best = [r for r in self.rounds if r.kept][-1]
        return best.dynamic_range / self.rounds[0].dynamic_range


def primary_beam_of(pbcor: Path) -> Path | None:
    """The primary-beam FITS delivered beside a ``.pbcor.fits`` image: ``<name>.pb.fits`` (pipeline,
    and ours) or ``<name>.flux.fits`` (scriptForImaging's ``.image.pbcor`` / ``.flux`` pair).

    Parameters
    ----------
    pbcor : Path
        The ``.pbcor.fits`` image.

    Returns
    -------
    Path | None
        The primary-beam FITS, or None.
    """
    name = pbcor.name
    for candidate in (name.replace(".image.pbcor.fits", ".pb.fits"), name.replace(".pbcor.fits", ".pb.fits"),
                      name.replace(".image.pbcor.fits", ".flux.fits")):
        if candidate != name and (pbcor.parent / candidate).is_file():
            return pbcor.parent / candidate
    return None


def flat_stats(pbcor: Path) -> ImageStats:
    """``imaging.image_stats`` of the flat-noise image (pbcor x primary beam) when the primary beam is
    beside it: a pbcor image's noise grows toward its edges, which would dominate its rms.

    Parameters
    ----------
    pbcor : Path
        The ``.pbcor.fits`` image.

    Returns
    -------
    ImageStats
        Beam (arcsec), rms and peak (Jy/beam).
    """
    import numpy as np
    from astropy.io import fits

    stats = image_stats(pbcor)
    pb = primary_beam_of(pbcor)
    if pb is None:
        return stats
    flat = np.asarray(fits.getdata(pbcor), dtype=float) * np.asarray(fits.getdata(pb), dtype=float)
    finite = flat[np.isfinite(flat)]
    if finite.size:
        stats.rms = float(1.4826 * np.median(np.abs(finite - np.median(finite))))
        stats.peak = float(finite.max())
    return stats


def _fits_header(path: Path) -> dict:
    from astropy.io import fits

    return dict(fits.getheader(path))


def _is_cube(header: dict) -> bool:
    return header.get("NAXIS", 2) >= 3 and any(str(header.get(f"CTYPE{i}", "")).startswith("FREQ") and
                                                int(header.get(f"NAXIS{i}", 1)) > 1 for i in (3, 4))


def _products(member: Path) -> tuple[Path | None, list[CubeGrid]]:
    """The delivered continuum image (``*.pbcor.fits`` with one channel, ``cont`` preferred) and cubes."""
    fits_files = sorted(p for p in (member / "product").glob("*.fits") if ".pbcor" in p.name
                        and ("image" in p.name or ".I." in p.name or p.name.endswith(".pbcor.fits")))
    continuum, cubes = [], []
    for p in fits_files:
        h = _fits_header(p)
        if _is_cube(h):
            axis = next(i for i in (3, 4) if str(h.get(f"CTYPE{i}", "")).startswith("FREQ"))
            start = float(h[f"CRVAL{axis}"]) + (1 - float(h.get(f"CRPIX{axis}", 1))) * float(h[f"CDELT{axis}"])
            cubes.append(CubeGrid(p, start, float(h[f"CDELT{axis}"]), int(h[f"NAXIS{axis}"]),
                                  str(h.get("SPECSYS", "LSRK")), float(h["RESTFRQ"]) if "RESTFRQ" in h else None))
        else:
            continuum.append(p)
    continuum.sort(key=lambda p: ("cont" not in p.name, p.name))
    return (continuum[0] if continuum else None), cubes


def new_selfcal_folder(member: Path, out: Path | None) -> Path:
    """``--out`` (new or empty, not in product/), else member/selfcal[.N].

    Parameters
    ----------
    member : Path
        The member folder.
    out : Path | None
        The ``--out`` folder (None: member/selfcal[.N]).

    Returns
    -------
    Path
        The folder, made (new or empty).
    """
    from .imaging import new_out_folder

    member = Path(member).resolve()
    if out is None:
        out, n = member / "selfcal", 1
        while out.exists():
            n += 1
            out = member / f"selfcal.{n}"
    return new_out_folder(member, out)


def plan_selfcal(member: str | Path, rounds: str = DEFAULT_ROUNDS, field: str | None = None,
                 out: str | Path | None = None, cubes: bool = True) -> SelfcalPlan:
    """Decide what to self-calibrate; nothing is written (the out folder is chosen, not made).

    Parameters
    ----------
    member : a member folder whose calibrated/ holds the restored (or Cycle 0 delivered) MSs.
    rounds : ``MODE:SOLINT`` list, MODE ``p`` or ``ap``; see ``parse_rounds``.
    field : the field to self-calibrate (default: the field observed with intent OBSERVE_TARGET).
    out : a new or empty folder (default member/selfcal, selfcal.2, ...).
    cubes : also remake the delivered cubes with the solutions (False: the continuum only).

    Returns
    -------
    SelfcalPlan
        The MSs, field, rounds, image size and cubes to remake.

    Raises
    ------
    UsageError
        Bad rounds.
    TreeError
        No calibrated MS in calibrated/ (restore first).
    """
    member = Path(member).resolve()
    parsed = parse_rounds(rounds)
    restored = restored_mss(member)
    vis = list(restored.by_eb.values()) or ([restored.combined] if restored.combined else [])
    if not vis:
        raise TreeError(f"no calibrated MS in {member / 'calibrated'}",
                        f"restore the data first: almadeliver restore {member}")
    continuum, grids = _products(member)
    cell = imsize = None
    if continuum is not None:
        h = _fits_header(continuum)
        cell, imsize = abs(float(h["CDELT2"])) * 3600.0, int(h["NAXIS1"])
    if out is None:
        n, chosen = 1, member / "selfcal"
        while chosen.exists():
            n += 1
            chosen = member / f"selfcal.{n}"
    else:
        chosen = Path(out).resolve()
    return SelfcalPlan(member, vis, [calibrated_column(v) for v in vis], field, parsed, cell, imsize,
                       continuum_spw(member), continuum, grids if cubes else [], chosen)


def continuum_spw(member: Path) -> Any:
    """The spw selection of the delivered continuum image on the calibrated MSs (so that line spws
    stay out of the continuum model): the literal ``spw`` of scriptForImaging.py's mfs tclean, or the
    pipeline's cont/mfs product call rewritten for the restored MSs; ``""`` (every spw) when unknown.

    Parameters
    ----------
    member : Path
        The member folder.

    Returns
    -------
    Any
        The spw selection (text, or a list per MS).
    """
    from ..errors import AlmadeliverError
    from . import imaging

    try:
        if imaging.member_source(member) == "pipeline":
            jobs = [j for j in imaging.plan_images(member) if j.kind in ("cont", "mfs")]
        else:
            jobs = [j for j in imaging.list_images(member) if j.kind == "mfs"]
    except (AlmadeliverError, AssertionError):
        return ""
    spw = jobs[0].tclean.get("spw", "") if jobs else ""
    return spw if isinstance(spw, (str, list)) and not isinstance(spw, imaging.Expression) else ""


def selfcal(plan: SelfcalPlan, on_line: Callable[[str], None] | None = None,
            on_round: Callable[[RoundResult], None] | None = None) -> SelfcalResult:
    """Run the self-calibration loop of ``plan`` in one CASA child (see the module doc).

    Parameters
    ----------
    plan : SelfcalPlan
        The self-calibration plan (``plan_selfcal``).
    on_line : Callable[[str], None] | None, default None
        Called with each line the CASA child prints.
    on_round : Callable[[RoundResult], None] | None, default None
        Called with each round's result.

    Returns
    -------
    SelfcalResult
        Each round's peak, rms (Jy/beam) and beam, the final and delivered images' figures, and the tables.

    Raises
    ------
    UsageError
        The out folder holds files already.
    CasaError
        CASA failed (the message names the log).
    """
    out = new_selfcal_folder(plan.member, plan.out)
    casa_log = out / "selfcal.casa.log"

    def seen(line: str) -> None:
        if on_line:
            on_line(line)
        m = ROUND_LINE.match(line)
        if m and on_round:
            on_round(RoundResult(**json.loads(m.group(5))))

    start = time.monotonic()
    outcome = run_in_casa(
        selfcal_in_casa,
        {"vis": [str(v) for v in plan.vis], "columns": plan.columns, "field": plan.field,
         "rounds": [asdict(r) for r in plan.rounds], "cell_arcsec": plan.cell_arcsec, "imsize": plan.imsize,
         "spw": plan.continuum_spw,
         "cubes": [{**asdict(c), "fits": str(c.fits)} for c in plan.cubes], "out": str(out)},
        workdir=out, logfile=casa_log, on_line=seen)
    rounds = [RoundResult(**{**r, "beam": tuple(r["beam"])}) for r in outcome["rounds"]]
    final = Path(outcome["continuum"])
    cubes = [(Path(c["fits"]), flat_stats(Path(c["fits"])), flat_stats(Path(c["delivered"])))
             for c in outcome["cubes"]]
    result = SelfcalResult(out, outcome["field"], rounds, final, flat_stats(final),
                           flat_stats(plan.delivered_continuum) if plan.delivered_continuum else None, cubes,
                           [Path(v) for v in outcome["vis"]], [Path(t) for t in outcome["tables"]],
                           time.monotonic() - start, casa_log)
    rows = comparisons(result, plan.delivered_continuum, [Path(c["delivered"]) for c in outcome["cubes"]])
    (out / "selfcal_record.json").write_text(json.dumps({
        "rounds_asked": [asdict(r) for r in plan.rounds], "field": result.field,
        "rounds": [asdict(r) for r in rounds], "tables": [str(t) for t in result.tables],
        "final": asdict(result.final), "delivered": asdict(result.delivered) if result.delivered else None,
        "delivered_continuum": str(plan.delivered_continuum) if plan.delivered_continuum else None,
        "gain_over_delivered": result.gain_over_delivered, "gain_over_start": result.gain_over_start,
        "cubes": [{"fits": str(c[0]), "new": asdict(c[1]), "delivered": asdict(c[2]) if c[2] else None}
                  for c in cubes], "seconds": result.seconds,
        "comparison": [asdict(c) for c in rows]}, indent=2, default=str) + "\n")
    result.readme = updated_readme(plan.member, out, rows, how=f"self-calibration of {result.field or 'the target'}",
                                   measure=SELFCAL_MEASURE)
    return result


SELFCAL_MEASURE = "rms: MAD over the flat-noise image, pbcor x pb"


def comparisons(result: SelfcalResult, delivered_continuum: Path | None, delivered_cubes: list[Path]
                ) -> list[Comparison]:
    """The self-calibrated continuum and cubes beside the delivered products they re-make
    (``delivered_cubes`` in the order of ``result.cubes``), as the README and the staff README list
    them (``imaging.updated_readme``; flat-noise figures).

    Parameters
    ----------
    result : SelfcalResult
        The self-calibration run.
    delivered_continuum : Path | None
        The delivered continuum FITS it re-makes, if any.
    delivered_cubes : list[Path]
        The delivered cube FITS, in the order of ``result.cubes``.

    Returns
    -------
    list[Comparison]
        The continuum first, then the cubes.
    """
    rows = [Comparison(result.continuum.name, result.final, result.delivered, None,
                       delivered_fits=delivered_continuum.name if delivered_continuum else None)]
    rows += [Comparison(fits.name, new, old, None, delivered_fits=d.name)
             for (fits, new, old), d in zip(result.cubes, delivered_cubes)]
    return rows
