"""image: re-run a restored delivery's imaging with the user's changes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..casa import imaging
from ..errors import UsageError
from ..workflow import ImageOptions, plan_member_images
from .app import app, state
from .options import SelfcalCubesOption, SelfcalRoundsOption, with_image_options
from .selfcal_cmds import selfcal_cmd
from .status import StatusLine


@app.command("image")
@with_image_options
def image_cmd(
    member: Path = typer.Argument(..., help="The member.uid___... folder of a restored delivery."),
    list_: bool = typer.Option(False, "--list", help="List the delivered images (the tclean calls) and stop."),
    out: Optional[Path] = typer.Option(None, "--out", help="A new folder for the images (default MEMBER_DIR/reimage)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the tclean calls that would run; run nothing."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Images made at once (default: number of CPUs)."),
    selfcal: bool = typer.Option(False, "--selfcal", help="Self-calibrate the continuum of the target (split out "
                                 "first: calibrated/ is only read), then remake the delivered cubes with the solutions."),
    selfcal_rounds: str = SelfcalRoundsOption,
    selfcal_cubes: bool = SelfcalCubesOption,
    *,
    image: ImageOptions,
) -> None:
    """Remake the images of a restored delivery, with the changes asked for, beside the delivered ones."""
    ov, source = image.overrides, image.source
    if selfcal:
        others = {"--list": list_, "--from": source != "auto", "--robust": ov.robust is not None,
                  "--uvtaper": ov.uvtaper, "--niter": ov.niter is not None, "--threshold": ov.threshold,
                  "--nbin": ov.nbin is not None, "--width": ov.width, "--start": ov.start, "--nchan": ov.nchan,
                  "--restfreq": ov.restfreq, "--range": ov.spectral_range, "--spw": ov.spw, "--specmode": ov.specmode,
                  "--cell": ov.cell, "--imsize": ov.imsize is not None, "--contsub": ov.contsub, "--line-free": ov.line_free, "--cont": ov.cont,
                  "--moments": ov.moments, "--workers": workers is not None}
        given = [name for name, value in others.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with --selfcal",
                             "--selfcal takes --selfcal-rounds, --no-selfcal-cubes, --field, --out and --dry-run")
        return selfcal_cmd(member, selfcal_rounds, ov.field, out, dry_run, selfcal_cubes)
    if list_:
        for job in imaging.list_images(member, source):
            typer.echo(f"{job.name}  field={job.field} spw={','.join(job.spws)} {job.kind}  ({job.source})")
        return
    plan = plan_member_images(member, image)
    if dry_run:
        typer.echo(f"would run {len(plan.jobs)} image(s) from {plan.source}:" if plan.jobs else
                   f"would run {plan.script} with these overrides on every tclean: {ov.changes() or 'none'}")
        for line in plan.script_notes():
            typer.echo(line)
        for job in plan.jobs:
            for c in job.flagtargets:
                typer.echo(f"split(vis={c['vis']!r}, outputvis={c['outputvis']!r}, intent='*OBSERVE_TARGET*', "
                           f"datacolumn={c['datacolumn']!r}); flagdata(vis={c['outputvis']!r}, mode='list', "
                           f"inpfile={c['commands']!r})  # {Path(c['template']).name}")
            for c in job.contsub:
                typer.echo(f"uvcontsub(vis={c['vis']!r}, outputvis={c['outputvis']!r}, field={c['field']!r}, "
                           f"datacolumn={c.get('datacolumn', 'data')!r})")
            for r in job.reads:
                typer.echo(f"# {job.name} reads {r['vis']} datacolumn={r['datacolumn']!r} (delivered: {r['delivered']})")
            typer.echo("tclean(" + ", ".join(f"{k}={v!r}" for k, v in job.tclean.items()) + ")")
            if job.moments:
                free = job.moments["line_free"]
                typer.echo(f"immoments(moments={job.moments['moments']}) of {job.name}: line channels outside "
                           + (f"{len(free)} line-free range(s) of {job.moments['contdat']}" if free
                              else "no line-free range (every channel; rms from the whole cube)")
                           + " -> " + ", ".join(job.moments["fits"].values()))
        return

    folder = imaging.new_out_folder(member, out)
    finished: list[str] = []

    def done(name: str, error: str | None) -> None:
        finished.append(name)
        status.where = f"{len(finished)}/{len(plan.jobs) or '?'} images made"     # the terminal's status line
        if not state.quiet:
            typer.echo(f"{'FAILED' if error else 'made  '}  {name}" + (f": {error}" if error else ""), err=True)

    with StatusLine(folder, quiet=state.quiet) as status:
        status.where = f"imaging into {folder.name}/"
        result = imaging.run(plan, out=folder, workers=workers, on_done=done)
    rows = imaging.comparison_rows(result.comparisons)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(imaging.COMPARISON_COLUMNS)]
    for r in [imaging.COMPARISON_COLUMNS, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    typer.echo(f"images in {result.out}; parameters in {result.record.name}, table in {result.table.name}"
               + (f", README with the new beams and rms in {result.readme.name}" if result.readme else "")
               + (f"; quick-looks (new beside delivered): {sum(bool(c.quicklook) for c in result.comparisons)} "
                  "<image>.png" if result.comparisons else ""))
    if result.failures:
        raise typer.Exit(1)
