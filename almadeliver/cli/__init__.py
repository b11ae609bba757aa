"""The command line: a thin typer app. Each stage registers its commands from its own module."""
from __future__ import annotations

from .app import app, main
from . import casa_cmds  # noqa: F401  (registers casa-info)
from . import validate_cmds  # noqa: F401  (registers validate)
from . import sim_cmds  # noqa: F401  (registers simulate)

__all__ = ["app", "main"]
from . import restore_cmds  # noqa: F401  (registers restore)
