"""recalibrate: redo a manual delivery's calibration step by step in a working copy (seed 004)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..casa.recalibrate import (MISMATCH_CHOICES, RecalibrationPlan, StepEvent, plan_recalibration,
                                recalibrate)
from .app import app, state
from .options import CasaVersionMismatch, SkipLackingOption


def _show_plan(plan: RecalibrationPlan) -> None:
    typer.echo(f"member       {plan.member.path} ({plan.member.flavour.value}, {len(plan.ebs)} EB(s) to recalibrate)")
    gate = (f"; the scripts ask for CASA {', '.join(plan.casa_asked)}" if plan.casa_asked else "")
    verdict = (" (mismatch: gates passed, --casa-version-mismatch allow)" if plan.passes_gates else
               " (mismatch: refused)" if plan.mismatched else "")
    typer.echo(f"CASA         modular CASA {plan.casa_version or '?'}, applyonly=False{gate}{verdict}")
    for item in plan.ebs:
        script = f"{item.script} (from {item.edited_from})" if item.edited_from else item.script
        typer.echo(f"EB           {item.eb}: working copy {item.workdir}")
        typer.echo(f"  script     {script}")
        typer.echo(f"  starts     from {item.start or '-'}")
        for step in item.steps:
            if step.number in item.run:
                mark = "run"
            elif step.number in item.skipped:
                mark = f"SKIPPED: {item.skipped[step.number]}"
            else:
                mark = "-"
            lacks = f"  (needs {'; '.join(step.lacks)})" if step.lacks and step.number not in item.skipped else ""
            typer.echo(f"  {step.number:>3} {mark:<4} {step.title}{lacks}")


def _event(e: StepEvent) -> None:
    if state.quiet:
        return
    if e.kind == "restored":
        typer.echo(f"  {e.eb} step {e.step}: flags restored to {e.flag_version} (saved before its first run)")
    elif e.kind == "start":
        typer.echo(f"  {e.eb} step {e.step} {e.title} ...")
    else:
        typer.echo(f"  {e.eb} step {e.step} done in {e.seconds:.1f} s")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@app.command("recalibrate")
def recalibrate_cmd(
    member_dir: Path = typer.Argument(..., help="The member folder (member.uid___...) of a manually calibrated "
                                      "delivery (Cycle 0 included)."),
    eb: Optional[List[str]] = typer.Option(None, "--eb", help="Only this EB (uid; repeat for several)."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Steps to run, e.g. 9-18 or 10,12-14. Default: "
                                        "Cycle 0 from the step after the split, later cycles every step."),
    from_step: Optional[int] = typer.Option(None, "--from-step", help="Run from this step to the last."),
    script: Optional[Path] = typer.Option(None, "--script", help="An edited <EB>.ms.scriptForCalibration.py "
                                          "to run instead (one EB); it becomes the working copy's script."),
    casa_version_mismatch: CasaVersionMismatch = typer.Option(
        "refuse", "--casa-version-mismatch", help=f"{' | '.join(MISMATCH_CHOICES)}: when the script's exact-version "
        "gate asks for another CASA than the installed modular one, refuse (default) or run anyway (recorded)."),
    skip_lacking: bool = SkipLackingOption,
    concat: bool = typer.Option(False, "--concat", help="Then concatenate the EBs' recalibrated *.ms.split.cal "
                                "into recalibration/calibrated.ms."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the steps and where each EB starts; run nothing."),
) -> None:
    """Redo the calibration of a manual delivery step by step, in a working copy, and compare with the delivered one."""
    plan = plan_recalibration(member_dir, ebs=eb, steps=steps, from_step=from_step, script=script,
                              casa_version_mismatch=casa_version_mismatch, skip_lacking=skip_lacking)
    _show_plan(plan)
    plan.check()
    if dry_run:
        typer.echo("dry run: nothing was run")
        return
    r = recalibrate(plan, on_event=_event, concat=concat)
    typer.echo("EB                      steps  time (s)  flagged  phase rms (deg) new/delivered  flags  max rel. diff")
    for e in r.ebs:
        c = e.comparison
        flags = "-" if c.flags_equal is None else ("same" if c.flags_equal else f"{c.flags_differing} differ")
        typer.echo(f"{e.eb:<24}{len(e.steps):>5}  {sum(t.seconds for t in e.steps):>8.1f}  "
                   f"{_fmt(None if e.flagged_fraction is None else 100 * e.flagged_fraction, '.1f'):>6}%  "
                   f"{_fmt(c.phase_rms_deg, '.2f'):>8} / {_fmt(c.delivered_phase_rms_deg, '.2f'):<14}  {flags:<5}  "
                   f"{_fmt(c.max_relative_difference, '.1e')}")
        for name, (new, old) in c.fluxes.items():
            typer.echo(f"  flux {name}: {_fmt(new, '.4f')} Jy (delivered {_fmt(old, '.4f')} Jy)")
        for n, why in e.skipped.items():
            typer.echo(f"  step {n} skipped: {why}")
        typer.echo(f"  working copy {e.workdir}; CASA log {e.casa_log.name}")
    typer.echo(f"CASA: ran {r.casa_ran}" + (f"; the scripts asked for CASA {', '.join(r.casa_asked)}" if r.casa_asked else "")
               + (" (version mismatch allowed by --casa-version-mismatch allow)" if r.mismatch_allowed else ""))
    if r.concatenated:
        typer.echo(f"concatenated into {r.concatenated}")
