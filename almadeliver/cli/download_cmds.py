"""download."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

import typer

from ..archive.client import ARCHIVE_ENV, mirror_list
from ..archive.model import ProjectView
from ..delivery.validate import validate
from ..errors import DiskSpaceError, IdentifierError, UsageError
from ..ids import DeliveryFileName
from ..transfer.auth import archive_hosts
from ..transfer.download import FileStatus, TransferConfig, download
from ..transfer.plan import DEFAULT_WHAT, DownloadPlan, check_space, parse_what
from ..units import human_size
from ..transfer.select import SelectedPlan
from ..workflow import FetchOptions, fetch_selected, open_archive, plan_fetch, plan_selected
from .app import app, state
from .options import SelectionWords, UserOption, credentials_of, what_option, with_selection_options
from .validate_cmds import format_text


def _view_file(path: Path) -> ProjectView:
    if not path.is_file():
        raise UsageError(f"plan file {path} not found", "write one with `almadeliver query ... --format json`")
    try:
        return ProjectView.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a project view ({exc})",
                         "write one with `almadeliver query ... --format json`") from None


@app.command("download")
@with_selection_options
def download_cmd(
    targets: List[str] = typer.Argument(..., metavar="PROJECT|MOUS...|PLAN.json",
                                        help="Project codes or MOUS uids, or a plan written by `query --format json`."),
    dest: Path = typer.Option(..., "--dest", help="Folder that receives the delivery tree."),
    archive: Optional[str] = typer.Option(None, "--archive", envvar=ARCHIVE_ENV,
                                          help="Mirror: eso, nrao, naoj or a URL."),
    what: str = what_option(DEFAULT_WHAT),
    parallel: int = typer.Option(5, "--parallel", min=1, max=32, help="Connections per archive host."),
    split: int = typer.Option(1, "--split", min=1, max=32, help="Fetch each large file as N ranges in parallel."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, counts and totals, and exit."),
    keep_tars: bool = typer.Option(False, "--keep-tars", help="Keep each tarball after a verified extraction."),
    no_untar: bool = typer.Option(False, "--no-untar", help="Download and verify the tarballs, do not unpack."),
    user: Optional[str] = UserOption,
    selection: SelectionWords = SelectionWords(),
) -> None:
    """Fetch what the project view lists and leave the standard delivery tree in DEST.

    With --files or --cutout, only those files (or SODA cutouts) are fetched from inside the tarballs.
    """
    parse_what(what)                             # an unknown --what is said before the password is asked
    options = FetchOptions(archive=archive, what=what, parallel=parallel, split=split, files=selection.files,
                           credentials=None if dry_run else credentials_of(user))
    plan_file = len(targets) == 1 and targets[0].endswith(".json")
    view = _view_file(Path(targets[0])) if plan_file else None
    client = open_archive(options)               # logged in before the query: DataLink answers for this identity
    from ..archive.tap import Selection        # pyvo and astropy: not before the options are checked

    selected: SelectedPlan | None = None
    if selection.files or selection.cutout:
        projects = [p.code for p in view.projects] if view else [t for t in targets if not t.startswith("uid")]
        options = replace(options, cutout=selection.cutout_of(client, projects))
        selected = plan_selected(view or Selection.from_ids(targets), client, options)
        plan = selected.plan
    else:
        plan = plan_fetch(view or Selection.from_ids(targets), client, options)
    session, credentials = client.session, options.credentials
    mirrors = mirror_list(archive)               # the configured archive: the only hosts credentials go to
    hosts = archive_hosts(archive)
    foreign = sorted({urlsplit(f.url).netloc for f in plan.files} - hosts)
    if foreign and credentials:
        typer.echo(f"warning: {sum(urlsplit(f.url).netloc in foreign for f in plan.files)} files of the plan are on "
                   f"{', '.join(foreign)}, not on the configured archive ({mirrors[0]}): they are fetched without "
                   "credentials (name that archive with --archive URL if it is one)", err=True)
    if not plan.files:
        typer.echo(f"nothing to download ({what} of the given projects lists no file)")
        return
    if dry_run:
        for f in plan.files:
            typer.echo(f"{f.kind.value:<10} {human_size(f.size):>9}  {f.name}")
        kinds = {}
        for f in plan.files:
            kinds[f.kind.value] = kinds.get(f.kind.value, 0) + 1
        typer.echo(f"{len(plan.files)} files ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
                   f"{human_size(plan.total_bytes)} from {plan.archive}; {plan.duplicates_dropped} duplicate listings dropped")
        if selected is not None:
            typer.echo(selection_line(selected))
        try:
            space = check_space(plan, dest, untar=not no_untar)
            typer.echo(f"space: {human_size(space.needed)} still to write in {dest} "
                       f"({human_size(space.download_bytes)} download + {human_size(space.unpack_bytes)} unpacked), "
                       f"{human_size(space.free_bytes)} free")
        except DiskSpaceError as exc:
            typer.echo(f"space: {exc}")
        return
    if plan.skipped_unreadable and not user:
        typer.echo(f"note: {len(plan.skipped_unreadable)} files are proprietary; without --user they will fail",
                   err=True)
    config = TransferConfig(parallel=parallel, split=split, untar=not no_untar, keep_tars=keep_tars,
                            progress=not state.quiet)
    result = fetch_selected(selected, dest, config, session) if selected else download(plan, dest, config, session)
    fetched = [f for f in result.files if f.status is FileStatus.FETCHED]
    already = [f for f in result.files if f.status is FileStatus.ALREADY]
    extracted = sum(f.extracted for f in result.files if f.status is not FileStatus.FAILED)
    rate = result.fetched_bytes / result.seconds / 1e6 if result.seconds else 0.0
    unpacked_now = sum(f.unpacked_now for f in result.files)
    if not fetched and not result.failed and not unpacked_now:
        typer.echo(f"nothing to do: all {len(already)} files are already in {dest}")
        return
    typer.echo(f"fetched {len(fetched)} files, {human_size(result.fetched_bytes)} in {result.seconds:.1f} s "
               f"({rate:.0f} MB/s); {len(already)} already there; "
               + (f"single files placed in the tree under {dest}" if selected else
                  "tarballs kept, not unpacked" if no_untar else f"{extracted} tarballs unpacked into {dest}"))
    if selected is not None:
        typer.echo(selection_line(selected))
    for f in result.files:
        if f.rejected and f.status is not FileStatus.FAILED:
            typer.echo(f"warning: {f.rejected[0]}; fetched again and it passed", err=True)
    for f in result.failed:
        typer.echo(f"failed  {f.error}", err=True)
    if result.failed:
        typer.echo(f"{len(result.failed)} of {len(result.files)} files failed; what was fetched is kept: "
                   "run the same command again to resume", err=True)
    if not no_untar:
        _validate_trees(plan, dest)
    if result.failed:
        raise typer.Exit(1)


def selection_line(selected: SelectedPlan) -> str:
    """One line: the bytes a --files/--cutout plan fetches against the whole tarballs it reads from."""
    whole = selected.tarball_bytes
    saved = f", {100 * (1 - selected.selected_bytes / whole):.1f} % saved" if whole else ""
    what = "cutouts" if selected.selection.cutout else "files"
    return (f"selection: {len(selected.plan.files)} {what}, {human_size(selected.selected_bytes)} instead of "
            f"{human_size(whole)} in {len(selected.tarballs_searched)} whole tarballs{saved}"
            + (f"; not searched: {len(selected.tarballs_left)} tarballs without a file listing (raw ASDMs)"
               if selected.tarballs_left else "")
            + (f"; {len(selected.missed)} products the cutout misses" if selected.missed else ""))


def _validate_trees(plan: DownloadPlan, dest: Path) -> None:
    """Validate every project tree the download unpacked; errors and warnings are shown.

    The exit code stays the transfer's: `almadeliver validate` is the command that fails on findings.
    """
    for code in sorted({p for p in (_project_of(f.name) for f in plan.files) if p}):
        if (dest / code).is_dir():
            typer.echo(format_text(validate(dest / code), info=False))


def _project_of(name: str) -> str | None:
    if "/" in name:                              # a single file, named by its path in the tree
        return name.split("/", 1)[0]
    try:
        project = DeliveryFileName.parse(name).project
    except IdentifierError:
        return None
    return str(project) if project else None
