"""run: many MOUS, several steps each, on Dask (or a local process pool without it)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from tqdm import tqdm

from ..archive.client import ARCHIVE_ENV
from ..errors import UsageError
from ..scale.journal import StepOutcome
from ..scale.run import JOBQUEUE, STEPS, RunConfig, parse_projects, run
from ..scale.steps import DEFAULT_STEPS
from ..scale.steps import find_mous
from ..transfer.plan import parse_what
from ..workflow import (RUN_WHAT, FetchOptions, ImageOptions, RecalibrateOptions, RestoreOptions, SelfcalOptions,
                        open_archive)
from .app import app, state
from .options import (CasaOption, CasaVersionMismatch, CasaVersionMismatchOption, DosplitOption, Engine, EngineOption,
                      SelfcalCubesOption, SelfcalRoundsOption, SelectionWords, SkipLackingOption, SpacesavingOption,
                      UserOption, credentials_of, what_option, with_image_options, with_selection_options)


def _cell(o: StepOutcome | None) -> str:
    if o is None:
        return "-"
    if o.skipped:
        return "done" if o.ok else "not run"
    return f"ok {o.seconds:.0f}s" if o.ok else "FAILED"


def _write_config(cluster: str, spec) -> None:
    """``run --cluster slurm --write-config``: the jobqueue section, where it went, the job script."""
    import importlib.util

    if cluster not in JOBQUEUE:
        raise UsageError(f"--write-config needs a batch system, not --cluster {cluster}",
                         "use --cluster slurm, pbs or htcondor")
    if importlib.util.find_spec("dask_jobqueue") is None:
        raise UsageError(f"--cluster {cluster} needs dask-jobqueue", "pip install 'almadeliver[dask]'")
    import yaml

    from ..scale.jobqueue import job_script, write_jobqueue_config

    path, section = write_jobqueue_config(cluster, spec)
    typer.echo(f"wrote jobqueue.{cluster} to {path}:")
    typer.echo(yaml.safe_dump({"jobqueue": {cluster: section}}, sort_keys=False).rstrip())
    import dask.config

    dask.config.refresh()                    # read the file just written
    typer.echo(f"each worker job (--workers N submits N of them) runs:\n{job_script(cluster).rstrip()}")
    typer.echo(f"now: almadeliver run --projects CODES|FILE --cluster {cluster} --workers N --dest DIR")


@app.command("run")
@with_image_options
@with_selection_options
def run_cmd(
    projects: Optional[str] = typer.Option(None, "--projects", metavar="CODES|FILE",
                                           help="Project codes, comma-separated, or a file with one code per line."),
    steps: str = typer.Option(",".join(DEFAULT_STEPS), "--steps", help=f"Comma-separated, of {','.join(STEPS)} "
                              "(recalibrate and selfcal only when named)."),
    cluster: str = typer.Option("local", "--cluster", help="local, slurm, pbs, htcondor (dask-jobqueue, "
                                "configured in ~/.config/dask/jobqueue.yaml: see --write-config) or "
                                "tcp://HOST:8786."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (local) or batch jobs."),
    dest: Path = typer.Option(Path("."), "--dest", help="Folder of the delivery trees and the run journal."),
    archive: Optional[str] = typer.Option(None, "--archive", envvar=ARCHIVE_ENV,
                                          help="Mirror: eso, nrao, naoj or a URL."),
    write_config: bool = typer.Option(False, "--write-config", help="Write the worker jobs of --cluster "
                                      "slurm|pbs|htcondor into the dask configuration (jobqueue.yaml) from the "
                                      "options below, show the job script, and stop."),
    queue: Optional[str] = typer.Option(None, "--queue", "--partition", rich_help_panel="--write-config",
                                        help="Partition (SLURM) or queue (PBS); default: the site's."),
    account: Optional[str] = typer.Option(None, "--account", rich_help_panel="--write-config",
                                          help="Account (project) the jobs are charged to."),
    memory: str = typer.Option("4GB", "--memory", rich_help_panel="--write-config",
                               help="Memory per task (one task per job), e.g. 8GB."),
    walltime: str = typer.Option("04:00:00", "--walltime", rich_help_panel="--write-config",
                                 help="Time limit per job, HH:MM:SS; a worker leaves at 90% and is replaced."),
    cores: int = typer.Option(1, "--cores", rich_help_panel="--write-config",
                              help="Cores per task (CASA's OMP_NUM_THREADS); still one task per job."),
    local_directory: Optional[str] = typer.Option(None, "--local-directory", rich_help_panel="--write-config",
                                                  help="Worker scratch folder on the node, e.g. '$TMPDIR'."),
    log_directory: Optional[str] = typer.Option(None, "--log-directory", rich_help_panel="--write-config",
                                                help="Folder of the jobs' stdout/stderr files."),
    prologue: Optional[list[str]] = typer.Option(None, "--prologue", rich_help_panel="--write-config",
                                                 help="A shell line run before the worker starts "
                                                 "(repeatable), e.g. 'module load gcc'."),
    user: Optional[str] = UserOption,
    what: str = what_option(RUN_WHAT),
    spacesaving: Optional[int] = SpacesavingOption,
    dosplit: bool = DosplitOption,
    casa: Optional[str] = CasaOption,
    engine: Engine = EngineOption,
    casa_version_mismatch: CasaVersionMismatch = CasaVersionMismatchOption,
    recalibrate_steps: Optional[str] = typer.Option(
        None, "--recalibrate-steps", help="recalibrate step: the calibration script's steps to run, e.g. 9-18 "
        "(default: Cycle 0 from the step after the split, later cycles every step)."),
    skip_lacking: bool = SkipLackingOption,
    selfcal_rounds: str = SelfcalRoundsOption,
    selfcal_cubes: bool = SelfcalCubesOption,
    *,
    image: ImageOptions,
    selection: SelectionWords = SelectionWords(),
) -> None:
    """Download, validate, restore and image every MOUS of many projects, one task per MOUS and step.

    The options of ``download`` (--user, --what, --files, --cutout), ``restore`` (--spacesaving, --engine, ...),
    ``image`` (--robust, --niter, ...), ``recalibrate`` (--recalibrate-steps) and ``image --selfcal``
    (--selfcal-rounds) apply to every MOUS.
    """
    if write_config:
        from ..scale.jobqueue import JobSpec

        _write_config(cluster, JobSpec(queue=queue, account=account, memory=memory, walltime=walltime,
                                       cores=cores, local_directory=local_directory,
                                       log_directory=str(Path(log_directory).resolve()) if log_directory else None,
                                       prologue=list(prologue or [])))
        return
    if not projects:
        raise UsageError("--projects is missing", "give codes such as 2013.1.00308.S,2017.1.01185.S or a FILE")
    parse_what(what)                         # an unknown --what is said before the password is asked
    fetch = FetchOptions(what=what, credentials=credentials_of(user), files=selection.files)
    if selection.cutout:                     # --target is looked up once, in the projects' ObsCore rows
        fetch = replace(fetch, cutout=selection.cutout_of(open_archive(replace(fetch, archive=archive)),
                                                          parse_projects(projects)))
    config = RunConfig(dest=dest.resolve(), steps=tuple(s.strip() for s in steps.split(",") if s.strip()),
                       cluster=cluster, workers=workers, archive=archive,
                       casa_version_mismatch=casa_version_mismatch, fetch=fetch,
                       restore=RestoreOptions(spacesaving=spacesaving, dosplit=dosplit, casa=casa, engine=engine),
                       image=image, recalibrate=RecalibrateOptions(steps=recalibrate_steps, skip_lacking=skip_lacking),
                       selfcal=SelfcalOptions(selfcal_rounds, image.overrides.field, selfcal_cubes))
    codes = parse_projects(projects)
    mous = find_mous(codes, client=open_archive(config.fetch) if user else None, archive=archive)
    bar = tqdm(total=len(mous) * len(config.steps), unit="task", desc="run", disable=state.quiet or None)

    def on_outcome(o: StepOutcome) -> None:
        bar.update(1)
        if not o.ok and not o.skipped:
            bar.write(f"FAILED {o.step} of {o.mous}: see {o.log}")

    result = run(config, mous, on_outcome)
    bar.close()

    cells = {(o.mous, o.step): o for o in result.outcomes}
    header = ("project", "mous", *config.steps)
    rows = [(p, m, *(_cell(cells.get((str(m), s))) for s in config.steps)) for p, m in mous]
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
