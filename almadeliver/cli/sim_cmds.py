"""simulate."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from ..sim.deliveries import FLAVOURS, simulate_project
from ..sim.plan import DELIVERY_CASA_VERSION, SIZES
from ..errors import UsageError
from .app import app, state


@app.command("simulate")
def simulate_cmd(
    project_code: str = typer.Argument(..., help="The project code to simulate, e.g. 2017.1.00123.S."),
    out: Path = typer.Option(..., "--out", help="The local archive folder: the project goes to OUT/<project>/."),
    flavour: Literal[FLAVOURS] = typer.Option("manual", "--flavour", help=f"Delivery flavour: {' | '.join(FLAVOURS)}."),
    mous: int = typer.Option(1, "--mous", help="Number of member OUSs (12m) in the group."),
    ebs: int = typer.Option(1, "--ebs", help="Execution blocks per MOUS."),
    group_12m_7m: bool = typer.Option(False, "--group-12m-7m", help="One 12m and one 7m MOUS in the group."),
    proprietary: bool = typer.Option(False, "--proprietary", help="Mark the data proprietary (not yet released)."),
    size: Literal[tuple(SIZES)] = typer.Option("small", "--size", help=f"EB size: {' | '.join(SIZES)} (medium: ~19 MB of ASDM per "
                             "EB, for measuring restore's disk use)."),
    contdat_generation: int = typer.Option(3, "--contdat-generation", help="cont.dat layout of pipeline members: "
                                           "1 (field name, SPW<id>), 2 (Field:, SpectralWindow:, NONE/ALL), "
                                           "3 (pipeline 2024: spw names, Flags: lines)."),
    external: Optional[str] = typer.Option(None, "--external", help="Also ship an external product per member with this "
                                 "label, e.g. ari_l: <project>_<MOUS>_external_ari_l_001_of_001.tar."),
    casa_version: str = typer.Option(DELIVERY_CASA_VERSION, "--casa-version", help="The CASA that made the "
                                     "delivery: named in the README and demanded by the calibration scripts' "
                                     "version gate (ALMA's generator writes the exact version)."),
    residual_phase_deg: float = typer.Option(0.0, "--residual-phase-deg", help="A self-calibration case: per-antenna "
                                             "phase errors of this rms (deg) left on the target after calibration, "
                                             "and a target bright enough (S/N > 100) to self-calibrate them."),
    total_power: bool = typer.Option(False, "--total-power", help="Manual Total Power members: single-dish "
                                     "(PM antenna, autocorrelations) EBs calibrated by "
                                     "<EB>.ms.scriptForSDCalibration.py."),
) -> None:
    """Make a realistic ALMA project with CASA and write it as the archive ships it."""
    if flavour not in FLAVOURS:
        raise UsageError(f"unknown flavour '{flavour}'", f"choose one of {', '.join(FLAVOURS)}")
    progress = None if state.quiet else (lambda line: typer.echo(line, err=True))
    project = simulate_project(project_code, out, flavour=flavour, mous=mous, ebs=ebs,
                               group_12m_7m=group_12m_7m, proprietary=proprietary, on_line=progress, size=size,
                               contdat_generation=contdat_generation, external=external,
                               casa_version=casa_version, residual_phase_deg=residual_phase_deg,
                               total_power=total_power)
    cat = project.catalogue
    typer.echo(f"simulated {cat.project} ({flavour}, {'proprietary' if cat.proprietary else 'public'}) "
               f"in {project.seconds:.0f} s")
    typer.echo(f"  MOUS       {', '.join(project.mous_uids)}")
    typer.echo(f"  EBs        {', '.join(project.eb_uids)}")
    typer.echo(f"  ObsCore    {len(cat.obscore)} rows")
    typer.echo(f"  files      {len(cat.files)} in {project.folder / 'files'}")
    for f in cat.files:
        typer.echo(f"    {f.name:<70} {f.size:>10} B  {f.semantics}")
    typer.echo(f"  catalogue  {project.folder / 'catalogue.json'}")
