"""run: many MOUS, several steps each, on Dask (or a local process pool without it)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from tqdm import tqdm

from ..archive.client import ARCHIVE_ENV
from ..scale.journal import StepOutcome
from ..scale.run import STEPS, RunConfig, parse_projects, run
from ..scale.steps import find_mous
from .app import app, state


def _cell(o: StepOutcome | None) -> str:
    if o is None:
        return "-"
    if o.skipped:
        return "done" if o.ok else "not run"
    return f"ok {o.seconds:.0f}s" if o.ok else "FAILED"


@app.command("run")
def run_cmd(
    projects: str = typer.Option(..., "--projects", metavar="CODES|FILE",
                                 help="Project codes, comma-separated, or a file with one code per line."),
    steps: str = typer.Option(",".join(STEPS), "--steps", help="Comma-separated: download,validate,restore,image."),
    cluster: str = typer.Option("local", "--cluster", help="local, slurm, pbs, htcondor (dask-jobqueue, "
                                "configured in ~/.config/dask/jobqueue.yaml) or tcp://HOST:8786."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (local) or batch jobs."),
    dest: Path = typer.Option(Path("."), "--dest", help="Folder of the delivery trees and the run journal."),
    archive: Optional[str] = typer.Option(None, "--archive", envvar=ARCHIVE_ENV,
                                          help="Mirror: eso, nrao, naoj or a URL."),
    casa_version_mismatch: str = typer.Option(
        "refuse", "--casa-version-mismatch", help="restore: refuse (default) or allow running calibration scripts "
        "whose version gate asks for another CASA in the installed modular CASA (see `restore --help`)."),
) -> None:
    """Download, validate, restore and image every MOUS of many projects, one task per MOUS and step."""
    config = RunConfig(dest=dest.resolve(), steps=tuple(s.strip() for s in steps.split(",") if s.strip()),
                       cluster=cluster, workers=workers, archive=archive,
                       casa_version_mismatch=casa_version_mismatch)
    mous = find_mous(parse_projects(projects), archive)
    bar = tqdm(total=len(mous) * len(config.steps), unit="task", desc="run", disable=state.quiet or None)

    def on_outcome(o: StepOutcome) -> None:
        bar.update(1)
        if not o.ok and not o.skipped:
            bar.write(f"FAILED {o.step} of {o.mous}: see {o.log}")

    result = run(config, mous, on_outcome)
    bar.close()

    cells = {(o.mous, o.step): o for o in result.outcomes}
    header = ("project", "mous", *config.steps)
    rows = [(p, m, *(_cell(cells.get((m, s))) for s in config.steps)) for p, m in mous]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    ran = [o for o in result.outcomes if not o.skipped]
    typer.echo(f"{len(mous)} MOUS, {len(result.outcomes)} tasks on {result.backend}: {sum(o.ok for o in ran)} ran, "
               f"{sum(o.skipped and o.ok for o in result.outcomes)} done before, {len(result.failed)} failed "
               f"or not run; journal in {config.dest / '.almadeliver' / 'run'}")
    failed = [o for o in result.failed if not o.skipped]
    if failed:
        typer.echo("failures:", err=True)
        for o in failed:
            typer.echo(f"  {o.project} {o.mous} {o.step}: {o.error}\n    log: {o.log}", err=True)
        typer.echo("fix the cause and run the same command again: finished steps are skipped", err=True)
        raise typer.Exit(1)
