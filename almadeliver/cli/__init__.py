"""The command line: a thin typer app. Each stage registers its commands from its own module.

The modules (``app.COMMAND_MODULES``, in the order of ``almadeliver --help``) are imported only when
their command runs: ``almadeliver --help`` reads the commands' names and help from their source.
"""
from __future__ import annotations

import os
import sys

try:  # Ctrl-C while the command line loads is the same one line, no traceback
    from .app import app, main
except KeyboardInterrupt:
    sys.stderr.write("interrupted; run the same command again to resume\n")
    sys.stderr.flush()
    os._exit(130)

__all__ = ["app", "main"]
