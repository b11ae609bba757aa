"""restore: the calibrated MSs of a delivery, made by its own scriptForPI.py."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..casa.diskspace import MB
from ..casa.concat import ConcatResult, concat_cycle0
from ..casa.restore import Progress, RestorePlan, casa_description, phase_scatter, restore
from ..delivery.layout import FLUX_SCRIPT, TP_CALIBRATED_SUFFIX, TP_JY_SUFFIX
from ..workflow import RestoreOptions, plan_member_restore
from .app import app, state
from .status import StatusLine
from .options import (CasaOption, CasaVersionMismatch, CasaVersionMismatchOption, DosplitOption, Engine, EngineOption,
                      SpacesavingOption)


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:.1f} MB"


def _show_plan(plan: RestorePlan) -> None:
    m, est = plan.member, plan.estimate
    ebs = [eb.disk for eb in m.ebs_in_scripts] or [eb.disk for eb in m.ebs_in_raw]
    typer.echo(f"member       {plan.path} ({m.flavour.value}, {len(ebs)} EB{'s' if len(ebs) != 1 else ''})")
    if plan.already_calibrated:
        return
    if plan.script:
        typer.echo(f"scriptForPI  {plan.script.path.name} v{plan.script.version or '?'} "
                   f"(Python {2 if plan.script.python2 else 3}); README asks for CASA {plan.readme_casa or '?'}")
    if plan.engine == "native":
        typer.echo("CASA         modular casatools/casatasks, native pipeline restore (hifa_restoredata steps)")
    elif plan.engine == "monolithic" and plan.casa:
        typer.echo(f"CASA         monolithic {plan.casa.executable} (version {plan.casa.version or '?'})")
    else:
        typer.echo("CASA         modular casatools/casatasks, through the legacy shim")
    for warning in plan.warnings:
        typer.echo(f"warning      not run by the native engine: {warning}")
    for gate in plan.gates:
        passes = gate not in plan.mismatched_gates
        verdict = "passes" if passes else ("mismatch: gate passed (--casa-version-mismatch allow)" if plan.passes_gates
                                           else "mismatch: refused")
        typer.echo(f"version gate {gate.script.name} asks for CASA {gate.demands}; "
                   f"{casa_description(plan)} would run: {verdict}")
    for eb in plan.total_power:
        typer.echo(f"total power  {eb}: single-dish; scriptForPI leaves its calibrated data in "
                   f"calibrated/{eb}.calibration/{eb}{TP_CALIBRATED_SUFFIX}")
    if plan.finished:
        typer.echo(f"resume       keeping {len(plan.finished)} finished EB(s): {', '.join(plan.finished)}; "
                   f"calibrating {len(plan.todo)}")
    extra = f" + raw x 3 for {', '.join(est.extra_scripts)}" if est.extra_scripts else ""
    typer.echo(f"disk         raw/ {est.raw_mb} MB{extra}; {est.free_mb} MB free on {est.target}")
    if est.acrenorm:
        typer.echo("  ACreNorm data: scriptForPI v2.x caps SPACESAVING at 1 (levels 2 and 3 keep the *.ms)")
    typer.echo("  SPACESAVING   need (MB)   fits")
    for level in (0, 1, 2, 3, -1):
        need = "no check" if level == -1 else str(est.need_mb(level))
        capped = est.effective_level(level) != level
        fits = "" if level == -1 else ("yes" if est.fits(level) else f"no, {est.shortfall_mb(level)} MB short")
        fits += f" (capped at {est.effective_level(level)}: ACreNorm)" if capped else ""
        chosen = level == plan.spacesaving and plan.level_chosen
        mark = ("  <- chosen (lowest level that fits)" if est.fits(level) else "  <- none fits") if chosen else \
            ("  <- asked" if level == plan.spacesaving else "")
        typer.echo(f"  {level:>11}   {need:>9}   {fits}{mark}")


def _show_amplitudes(r: ConcatResult) -> None:
    """Cycle 0 --concat: the phase calibrator's amplitude per EB and spw, delivered -> calibrated.ms."""
    if not r.amplitudes:
        return
    typer.echo(f"phase calibrator {r.calibrator or '?'}: amplitude (Jy) delivered -> calibrated.ms")
    for eb, spws in sorted(r.amplitudes.items()):
        typer.echo(f"  {eb}  " + "  ".join(f"spw {spw}: {a:.3f} -> {b:.3f} (x{b / a:.3f})"
                                          for spw, (a, b) in sorted(spws.items()) if a))


def _where(p: Progress) -> str:
    """The step a restore is at: ``EB 1/2 uid___A002_X1_X2  step 3 Apply WVR``."""
    where = f"EB {p.eb_index}/{p.eb_total} {p.eb}" if p.phase == "calibration" and p.eb else p.phase
    return where + (f"  step {p.step} {p.title or ''}".rstrip() if p.step is not None else "")


@app.command("restore")
def restore_cmd(
    member_dir: Path = typer.Argument(..., help="The member folder (member.uid___...) holding script/ and raw/."),
    spacesaving: Optional[int] = SpacesavingOption,
    dosplit: bool = DosplitOption,
    casa: Optional[str] = CasaOption,
    engine: Engine = EngineOption,
    casa_version_mismatch: CasaVersionMismatch = CasaVersionMismatchOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate, show the version gates and the disk need; "
                                 "run nothing."),
    resume: bool = typer.Option(False, "--resume", help="Keep the EBs an earlier run finished in calibrated/."),
    concat: bool = typer.Option(False, "--concat", help="Cycle 0: run the delivered scriptForFluxCalibration.py "
                                "(flux scaling of each EB, then concat) into calibrated/calibrated.ms."),
    flux_scaling: bool = typer.Option(True, "--flux-scaling/--no-flux-scaling",
                                      help="With --concat: --no-flux-scaling only concatenates (keeps each EB's "
                                      "own flux scale, e.g. EBs days apart)."),
) -> None:
    """Restore the calibrated measurement sets of a delivery with its own scriptForPI.py."""
    options = RestoreOptions(spacesaving=spacesaving, dosplit=dosplit, casa=casa, engine=engine,
                             casa_version_mismatch=casa_version_mismatch, resume=resume)
    plan = plan_member_restore(member_dir, options)
    _show_plan(plan)
    if plan.already_calibrated:
        n = len(list(plan.calibrated.glob("*.ms.split.cal")))
        typer.echo(f"Cycle 0 delivery: already calibrated ({n} *.ms.split.cal in {plan.calibrated}); "
                   "nothing to restore.")
        if dry_run:
            return
        if not concat and sys.stdin.isatty() and n > 1:
            concat = typer.confirm("Concatenate them into calibrated/calibrated.ms?", default=False)
        if not concat:
            flux = plan.path / "script" / FLUX_SCRIPT
            typer.echo(f"To combine them into calibrated/calibrated.ms: almadeliver restore {member_dir} --concat"
                       + (f" (runs script/{FLUX_SCRIPT}: flux scaling, then concat)"
                          if flux.is_file() and n > 1 else ""))
            return
        r = concat_cycle0(plan, scaling=flux_scaling)
        how = (f"ran script/{r.script.name} (each EB's phase calibrator scaled to allFluxes' weighted mean, "
               f"then concat)" if r.script else "concatenated (no flux scaling)")
        typer.echo(f"{how}: {len(r.inputs)} MSs into {r.output} in {r.seconds:.1f} s (CASA log {r.casa_log})")
        _show_amplitudes(r)
        return
    if dry_run:
        plan.check()
        if plan.engine == "native":
            typer.echo(f"dry run: would run the native pipeline restore with SPACESAVING={plan.spacesaving}"
                       + (" DOSPLIT=True" if dosplit else "") + f" in {plan.calibrated / 'working'}"
                       + (f", without the {len(plan.warnings)} statement(s) warned about" if plan.warnings else ""))
            return
        typer.echo(f"dry run: would run {plan.script.path.name} with SPACESAVING={plan.spacesaving}"
                   + (" DOSPLIT=True" if dosplit else "") + f" in {plan.script.path.parent}")
        return
    plan.check()   # a refusal is one line, before anything is said to run
    what = "the native pipeline restore" if plan.engine == "native" else \
        (plan.script.path.name if plan.script else "scriptForPI.py")
    typer.echo(f"running {what} (SPACESAVING={plan.spacesaving}) ...")
    with StatusLine(plan.calibrated, quiet=state.quiet) as status:
        r = restore(plan, on_progress=lambda p: status.step(_where(p)))
    typer.echo(f"restored in {r.seconds:.1f} s (SPACESAVING {r.spacesaving}, {r.engine} CASA)"
               + (f"; kept {len(r.kept)} EB(s) from the earlier run" if r.kept else ""))
    share = f" ({100 * r.peak_bytes / (r.estimate_mb * MB):.0f}% of it)" if r.estimate_mb else ""
    typer.echo(f"disk use of calibrated/: peak {_mb(r.peak_bytes)}, final {_mb(r.final_bytes)}; "
               f"scriptForPI's estimate {r.estimate_mb} MB{share}"
               + (f"; over time: {r.disk_plot}" if r.disk_plot else ""))
    typer.echo("measurement sets (phase rms on the phase calibrator):")
    # Total Power data (autocorrelations, no phase calibrator) are listed without a phase rms
    interferometric = [ms for ms in r.measurement_sets if not ms.name.endswith((TP_CALIBRATED_SUFFIX, TP_JY_SUFFIX))]
    if r.phase_scatter is not None and all(str(ms) in r.phase_scatter for ms in interferometric):
        scatter = r.phase_scatter              # measured by the restore's own CASA
    else:
        scatter = phase_scatter(interferometric, r.casa_log.parent) if interferometric else {}
    for ms in r.measurement_sets:
        s = scatter.get(str(ms))
        tp = "  (Total Power, baseline subtracted)" if ms not in interferometric else ""
        typer.echo(f"  {ms}" + (f"  ({', '.join(s['fields'])}: {s['rms_deg']:.2f} deg)" if s else tp))
    if r.casa_asked:
        typer.echo(f"CASA: ran {r.casa_ran}; the calibration scripts asked for CASA {', '.join(r.casa_asked)}"
                   + (" (version mismatch allowed by --casa-version-mismatch allow)" if r.mismatch_allowed else ""))
    else:
        typer.echo(f"CASA: ran {r.casa_ran}")
    typer.echo(f"logs: {r.output_log} (script output), {r.casa_log} (CASA)")
    for warning in plan.warnings:
        typer.echo(f"warning: the native engine did not run {warning}", err=True)
