"""Options shared by several commands (one definition each)."""
from __future__ import annotations

import typer

CasaOption = typer.Option(
    None, "--casa", envvar="ALMADELIVER_CASA", help="An external monolithic CASA (folder or bin/casa)."
)
