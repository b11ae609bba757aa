"""image --selfcal: continuum self-calibration of a restored delivery (``almadeliver.casa.selfcal``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..casa.imaging import ImageStats
from ..casa.selfcal import RoundResult, plan_selfcal, selfcal
from ..errors import UsageError
from .app import state

ROUND_COLUMNS = ("round", "mode:solint", "kept", "flagged sol.", "peak (Jy/b)", "rms (Jy/b)", "DR", "beam (arcsec, deg)", "s")


def _row(r: RoundResult) -> tuple[str, ...]:
    return (str(r.index), f"{r.mode}:{r.solint}" if r.mode else "(before)", "yes" if r.kept else "REJECTED",
            "-" if r.flagged_solutions is None else f"{100 * r.flagged_solutions:.1f}%", f"{r.peak:.4g}",
            f"{r.rms:.3g}", f"{r.dynamic_range:.1f}", f"{r.beam[0]:.2f} x {r.beam[1]:.2f}, {r.beam[2]:.0f}",
            f"{r.seconds:.1f}")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def selfcal_cmd(member: Path, rounds: str, field: Optional[str], out: Optional[Path], dry_run: bool,
                cubes: bool = True) -> None:
    """What ``almadeliver image MEMBER --selfcal`` does."""
    if field and "," in field:
        raise UsageError(f"--field {field}: self-calibration takes one field", "give one field name")
    plan = plan_selfcal(member, rounds, field=field, out=out, cubes=cubes)
    typer.echo(f"self-calibration of {plan.field or 'the OBSERVE_TARGET field'} in {len(plan.vis)} MS(s): "
               + ", ".join(f"{v.name} ({c})" for v, c in zip(plan.vis, plan.columns)))
    typer.echo("rounds: " + ", ".join(f"{r.mode}:{r.solint}" for r in plan.rounds)
               + (f"; cell {plan.cell_arcsec:.3g} arcsec, {plan.imsize} px as {plan.delivered_continuum.name}"
                  if plan.delivered_continuum else "; no delivered continuum image: cell from the longest baseline"))
    for cube in plan.cubes:
        typer.echo(f"cube: {cube.nchan} channels of {cube.width_hz / 1e3:.1f} kHz from {cube.start_hz / 1e9:.6f} GHz "
                   f"({cube.frame}) as {cube.fits.name}")
    typer.echo(f"into {plan.out} (the calibrated MSs are only read: the target is split out first)")
    if dry_run:
        return

    def shown(r: RoundResult) -> None:
        if not state.quiet:
            typer.echo(f"  round {r.index} {r.mode + ':' + r.solint if r.mode else '(before)'}: DR {r.dynamic_range:.1f}, "
                       f"rms {r.rms:.3g} Jy/beam -> {'kept' if r.kept else 'rejected'}", err=True)

    r = selfcal(plan, on_round=shown)
    _table([ROUND_COLUMNS, *(_row(x) for x in r.rounds)])
    d = r.delivered
    typer.echo(f"continuum {r.continuum.name}: peak {r.final.peak:.4g}, rms {r.final.rms:.3g}, "
               f"DR {r.final.peak / r.final.rms:.1f}{_beam(r.final)}"
               + (f"; delivered {plan.delivered_continuum.name}: DR {d.peak / d.rms:.1f}{_beam(d)} "
                  f"(gain {r.gain_over_delivered:.2f}x)" if d and r.gain_over_delivered else "")
               + f"; gain over round 0 {r.gain_over_start:.2f}x")
    for fits, new, old in r.cubes:
        typer.echo(f"cube {fits.name}: rms {new.rms:.3g}, peak {new.peak:.4g}{_beam(new)}"
                   + (f" (delivered: rms {old.rms:.3g}, peak {old.peak:.4g}{_beam(old)})" if old else ""))
    typer.echo(f"in {r.out} ({r.seconds:.0f} s); record selfcal_record.json, CASA log {r.casa_log.name}"
               + (f"; README with the new beams and rms (delivered beside) in {r.readme.name}" if r.readme else ""))


def _beam(stats: ImageStats) -> str:
    """``, beam 9.69 x 7.30 arcsec`` of an image (empty without a beam)."""
    return f", beam {stats.bmaj_arcsec:.2f} x {stats.bmin_arcsec:.2f} arcsec" if stats.bmaj_arcsec else ""
