"""The command line: a thin typer app. Each stage registers its commands from its own module."""
from __future__ import annotations

from .app import app, main
from . import casa_cmds  # noqa: F401  (registers casa-info)
from . import query_cmds  # noqa: F401  (registers query)
from . import serve_cmds  # noqa: F401  (registers serve)
from . import package_cmds  # noqa: F401  (registers prepare, check, package, package-group)
from . import validate_cmds  # noqa: F401  (registers validate)
from . import image_cmds  # noqa: F401  (registers image)
from . import sim_cmds  # noqa: F401  (registers simulate)

__all__ = ["app", "main"]
from . import restore_cmds  # noqa: F401  (registers restore)
