"""serve: a local ALMA archive over simulated projects."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from ..sim.archive import Faults, LocalArchive
from .app import app


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _users(values: list[str]) -> dict[str, str]:
    users = {}
    for value in values:
        name, sep, password = value.partition(":")
        if not sep or not name or not password:
            raise UsageError("--user needs NAME:PASSWORD", "e.g. --user pi:secret (or set ALMADELIVER_SERVE_USER)")
        users[name] = password
    return users


@app.command("serve")
def serve_cmd(
    folder: Path = typer.Argument(..., metavar="DIR", help="What `almadeliver simulate` wrote (one or several projects)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port)."),
    throttle: Optional[float] = typer.Option(None, "--throttle", metavar="MB_PER_S",
                                             help="Cap each download stream at this many MB/s (1 MB = 10^6 bytes)."),
    latency: float = typer.Option(0.0, "--latency", metavar="MS", help="Add this many milliseconds before each answer."),
    drop_after: Optional[int] = typer.Option(None, "--drop-after", metavar="BYTES",
                                             help="Close the connection after this many body bytes of each file answer."),
    ignore_range: bool = typer.Option(False, "--ignore-range", help="Answer 200 with the whole file even when a Range is asked."),
    html_instead: bool = typer.Option(False, "--html-instead", help="Answer an HTML login page (status 200) instead of files."),
    fail_503: int = typer.Option(0, "--fail-503", metavar="N", help="Answer 503 to the next N file requests, then recover."),
    user: list[str] = typer.Option([], "--user", metavar="NAME:PASSWORD", envvar="ALMADELIVER_SERVE_USER",
                                   help="An account for proprietary data (repeatable; or set ALMADELIVER_SERVE_USER)."),
) -> None:
    """Serve simulated projects on HOST:PORT the way the ALMA archive does (TAP, DataLink, dataPortal)."""
    faults = Faults(throttle=throttle * 1e6 if throttle else None, latency=latency / 1000.0,
                    drop_after=drop_after, ignore_range=ignore_range, html_instead=html_instead, fail_503=fail_503)
    archive = LocalArchive(folder, host=host, port=port, faults=faults, users=_users(user))
    archive.start()
    typer.echo(f"local ALMA archive at {archive.url}  (TAP {archive.url}/tap, DataLink {archive.url}/datalink/sync)")
    for cat in archive.content.catalogues:
        mous = {row.get("member_ous_uid") for row in cat.obscore}
        typer.echo(f"  {cat.project}  {'proprietary' if cat.proprietary else 'public':11s}  "
                   f"{len(mous)} MOUS, {len(cat.obscore)} ObsCore rows, {len(cat.files)} files")
    active = [f"{k}={v}" for k, v in vars(faults).items() if v not in (None, 0, 0.0, False)]
    if active:
        typer.echo(f"faults: {', '.join(active)}")
    if archive.users:
        typer.echo(f"accounts: {', '.join(sorted(archive.users))}")
    typer.echo("press Ctrl-C to stop")
    signal.signal(signal.SIGTERM, _interrupt)   # stop as cleanly on `kill` as on Ctrl-C
    try:
        archive.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
