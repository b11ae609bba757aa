"""The command line: a thin typer app. Each stage registers its commands from its own module.

The import order is the order of ``almadeliver --help``: the mission first, then the tools.
"""
from __future__ import annotations

import os
import sys

try:  # Ctrl-C while the commands load (astropy, pyvo: a second or two) is the same one line, no traceback
    from .app import app, main
    from . import query_cmds  # noqa: F401  (query)
    from . import download_cmds  # noqa: F401  (download)
    from . import validate_cmds  # noqa: F401  (validate)
    from . import restore_cmds  # noqa: F401  (restore)
    from . import image_cmds  # noqa: F401  (image)
    from . import recalibrate_cmds  # noqa: F401  (recalibrate)
    from . import package_cmds  # noqa: F401  (prepare, check, package, package-group)
    from . import scale_cmds  # noqa: F401  (run)
    from . import sim_cmds  # noqa: F401  (simulate)
    from . import serve_cmds  # noqa: F401  (serve)
    from . import casa_cmds  # noqa: F401  (casa-info)
except KeyboardInterrupt:
    sys.stderr.write("interrupted; run the same command again to resume\n")
    sys.stderr.flush()
    os._exit(130)

__all__ = ["app", "main"]
