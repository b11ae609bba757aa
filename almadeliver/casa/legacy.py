"""Run an ALMA script (scriptForPI.py, scriptForCalibration.py, ...) as monolithic CASA would.

ALMA's scripts expect monolithic CASA's interactive namespace: every task and tool as a global,
``casalog``, and ``execfile``. ``legacy_globals`` builds that namespace from modular CASA and
``run_script`` execs a script in it (in a CASA child: ``run_in_casa("almadeliver.casa.legacy:run_script",
{"script": ..., "cwd": ..., "variables": {...}}, workdir=..., logfile=...)``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Tool instances monolithic CASA puts in the namespace: name -> casatools class name.
_TOOLS = {
    "msmd": "msmetadata", "tb": "table", "ms": "ms", "ia": "image", "qa": "quanta",
    "me": "measures", "cb": "calibrater", "sm": "simulator", "cl": "componentlist",
    "im": "imager", "af": "agentflagger", "rg": "regionmanager", "at": "atmosphere",
    "mst": "mstransformer", "cs": "coordsys",
}


def legacy_globals(variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """A namespace like monolithic CASA's: tasks, tools, ``casalog``, ``execfile`` and ``variables``."""
    import casatasks
    import casatools

    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    for name in dir(casatasks):
        if not name.startswith("_"):
            namespace[name] = getattr(casatasks, name)
    for name in dir(casatools):
        if not name.startswith("_"):
            namespace.setdefault(name, getattr(casatools, name))
    for name, cls in _TOOLS.items():
        if hasattr(casatools, cls):
            namespace[name] = getattr(casatools, cls)()
    namespace["casalog"] = casatasks.casalog
    namespace["casa"] = {"build": {"version": casatools.version_string()},
                         "version": casatools.version_string()}

    def execfile(path: str, globals: dict | None = None, locals: dict | None = None) -> None:
        """Python 2's execfile, running in the shared CASA namespace unless told otherwise."""
        target = namespace if globals is None else globals
        with open(path) as fh:
            code = compile(fh.read(), str(path), "exec")
        exec(code, target, locals if locals is not None else target)

    namespace["execfile"] = execfile
    namespace.update(variables or {})
    return namespace


def run_script(script: str, cwd: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Exec ``script`` with ``cwd`` as the current directory in a fresh legacy namespace.

    A ``sys.exit('ERROR: ...')`` from the script becomes a ``RuntimeError`` carrying its message
    (the CASA child reports it as the error). Returns the script path and the final directory.
    """
    script_path = Path(script).resolve()
    os.chdir(cwd)
    namespace = legacy_globals(variables)
    try:
        namespace["execfile"](str(script_path))
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(str(exc.code)) from None
    finally:
        sys.stdout.flush()
    return {"script": str(script_path), "cwd": os.getcwd()}
