"""casa-info."""
from __future__ import annotations

from typing import Optional

import typer

import tempfile
from pathlib import Path

from ..casa.runtime import casa_info, run_in_casa
from ..casa.selfcheck import measures_check_in_casa
from .app import app
from .options import CasaOption


@app.command("casa-info")
def casa_info_cmd(
    casa: Optional[str] = CasaOption,
    check: bool = typer.Option(False, "--check", help="Also run a measures conversion in a CASA child process."),
) -> None:
    """Show the CASA version, its data path and any monolithic CASA found."""
    info = casa_info(casa)
    typer.echo(f"modular CASA     casatools {info.casatools_version or 'not installed'}, "
               f"casatasks {info.casatasks_version or 'not installed'}")
    typer.echo(f"data path        {info.data_path or 'casadata not installed'} (auto-update off)")
    typer.echo(f"site config      {info.site_config}")
    mono = info.monolithic
    if mono is None:
        typer.echo("monolithic CASA  not found (name one with --casa or ALMADELIVER_CASA)")
    else:
        typer.echo(f"monolithic CASA  {mono.executable} (version {mono.version or 'unknown'}, "
                   f"pipeline {'yes' if mono.has_pipeline else 'no'})")
    if check:
        with tempfile.TemporaryDirectory(prefix="almadeliver-check-") as tmp:
            r = run_in_casa(measures_check_in_casa, workdir=Path(tmp))
        typer.echo(f"measures check   ok: CASA {r['casa_version']}, TAI-UTC = {r['tai_minus_utc_s']:.0f} s, "
                   f"Orion KL from ALMA at az {r['az_deg']:.1f} deg, el {r['el_deg']:.1f} deg")
