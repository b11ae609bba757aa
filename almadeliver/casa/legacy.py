"""Run an ALMA script (scriptForPI.py, scriptForCalibration.py, ...) as monolithic CASA would.

ALMA's scripts expect monolithic CASA's interactive namespace: every task and tool as a global,
``casalog``, and ``execfile``. ``legacy_globals`` builds that namespace from modular CASA and
``run_script_in_casa`` execs a script in it (in a CASA child: ``run_in_casa(legacy.run_script_in_casa,
{"script": ..., "cwd": ..., "variables": {...}}, workdir=..., logfile=...)``).
"""
from __future__ import annotations

import ast
import os
import sys
import types
from pathlib import Path
from typing import Any

# Tool instances monolithic CASA puts in the namespace: name -> casatools class name.
_TOOLS = {
    "msmd": "msmetadata", "tb": "table", "ms": "ms", "ia": "image", "qa": "quanta",
    "me": "measures", "cb": "calibrater", "sm": "simulator", "cl": "componentlist",
    "im": "imager", "af": "agentflagger", "rg": "regionmanager", "at": "atmosphere",
    "mst": "mstransformer", "cs": "coordsys",
}


def casalith_module(casa_version: str | None = None) -> types.ModuleType:
    """A ``casalith`` module for modular CASA (monolithic CASA's ``casalith`` holds its version).

    ``version()`` answers ``[major, minor, patch, build]`` and ``version_string()`` ``"6.7.0-31"``, as
    monolithic CASA 6's do (ALMA's CASA 6 calibration scripts gate on the first three numbers). They
    answer the CASA that runs (``casatools``), unless ``casa_version`` (e.g. ``"6.5.4-9"``) names the
    CASA a simulated reducer ran (almadeliver's simulator only).

    Parameters
    ----------
    casa_version : str | None, default None
        The version to answer (None: the CASA that runs).

    Returns
    -------
    types.ModuleType
        The module.
    """
    import re

    if casa_version is None:
        import casatools

    text = casa_version or casatools.version_string()
    numbers = [int(n) for n in re.split(r"[.-]", text) if n.isdigit()]
    numbers = (numbers + [0, 0, 0, 0])[:4]
    module = types.ModuleType("casalith", "almadeliver's casalith for modular CASA: version() and version_string()")
    module.version = lambda: list(numbers)                       # type: ignore[attr-defined]
    module.version_string = lambda: f"{numbers[0]}.{numbers[1]}.{numbers[2]}-{numbers[3]}"  # type: ignore[attr-defined]
    module.__file__ = __file__
    return module


def is_version_gate(node: ast.stmt) -> bool:
    """True for the generator's version gate: ``if re.search('^X.Y.Z', <CASA version>) == None:``
    (or ``is None``) whose body is one ``sys.exit(...)`` call (ALMA-FACTS.md section 4).

    Parameters
    ----------
    node : ast.stmt
        A statement of the script.

    Returns
    -------
    bool
        True for a version gate.
    """
    if not isinstance(node, ast.If) or len(node.body) != 1 or node.orelse:
        return False
    test, body = node.test, node.body[0]
    call = test.left if isinstance(test, ast.Compare) else None
    exits = (isinstance(body, ast.Expr) and isinstance(body.value, ast.Call)
             and isinstance(body.value.func, ast.Attribute) and body.value.func.attr == "exit"
             and isinstance(body.value.func.value, ast.Name) and body.value.func.value.id == "sys")
    return bool(exits and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "search" and isinstance(call.func.value, ast.Name) and call.func.value.id == "re"
                and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
                and call.args[0].value.startswith("^"))


def _pass_gates(tree: ast.Module, path: str) -> ast.Module:
    """Replace each version gate by a print saying it was passed (``--casa-version-mismatch allow``);
    the delivered file is not touched, only the code compiled from it."""
    class Gates(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST:
            if not is_version_gate(node):
                return self.generic_visit(node)
            asked = node.test.left.args[0].value.lstrip("^")   # type: ignore[attr-defined]
            message = (f"almadeliver: {os.path.basename(path)} asks for CASA {asked}; running in this CASA "
                       f"anyway (--casa-version-mismatch allow)")
            return ast.copy_location(ast.Expr(ast.Call(ast.Name("print", ast.Load()), [ast.Constant(message)], [])),
                                     node)
    return ast.fix_missing_locations(Gates().visit(tree))


def legacy_globals(variables: dict[str, Any] | None = None, casa_version: str | None = None,
                   pass_version_gates: bool = False) -> dict[str, Any]:
    """A namespace like monolithic CASA's: tasks, tools, ``casalog``, ``sys``, ``execfile`` and
    ``variables``; ``import casalith`` gives ``casalith_module(casa_version)``. With
    ``pass_version_gates`` the scripts' exact-version gates print instead of exiting.

    Parameters
    ----------
    variables : dict[str, Any] | None, default None
        Extra globals (``SPACESAVING``, ``applyonly``, ...).
    casa_version : str | None, default None
        The version casalith answers (None: the CASA that runs).
    pass_version_gates : bool, default False
        Let the exact-version gates pass.

    Returns
    -------
    dict[str, Any]
        The namespace.
    """
    import casatasks
    import casatools

    sys.modules["casalith"] = casalith_module(casa_version)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__, "sys": sys}
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
            tree = ast.parse(fh.read(), str(path))
        if pass_version_gates:
            tree = _pass_gates(tree, str(path))
        code = compile(tree, str(path), "exec")
        exec(code, target, locals if locals is not None else target)

    namespace["execfile"] = execfile
    namespace.update(variables or {})
    return namespace


def clean_era_variables(casa_version: str | None = None) -> dict[str, Any]:
    """What a CASA 3.4-4.x script (ALMA Cycles 0-3) finds in monolithic CASA's namespace besides the
    tasks and tools (CASA side).

    ``casadef.casa_version`` (the scripts' version gates read it: ``casa_version``, e.g. ``"3.4.0"``,
    by default this CASA's ``X.Y.Z``), ``T`` and ``F`` (``calwt = F``), ``os`` (``os.system('rm -rf
    ...')`` with no import), the display-only tasks
    (viewer, imview, plotms, plotxy, plotcal) as no-ops that say so, ``input`` answered with '', and
    ``setjy`` as CASA 3.4-4.1 took it: a ``fluxdensity`` with no ``standard`` set the flux (the
    flux-calibration scripts' ``setjy(vis=..., field=..., spw=..., fluxdensity=[S, 0, 0, 0])``),
    which CASA 6 ignores unless ``standard='manual'``; it is run so and said so.

    Parameters
    ----------
    casa_version : str, optional
        The version ``casadef.casa_version`` answers.

    Returns
    -------
    dict
        Globals to pass to ``run_script_in_casa`` (``variables``).
    """
    import casatasks
    import casatools

    version = casa_version or ".".join(str(n) for n in casatools.version()[:3])
    variables: dict[str, Any] = {"casadef": types.SimpleNamespace(casa_version=version, subversion_revision="0"),
                                 "T": True, "F": False, "os": os}
    for task in ("viewer", "imview", "plotms", "plotxy", "plotcal"):
        variables[task] = lambda *a, _task=task, **k: print(f"almadeliver: {_task}() skipped (no display)")
    variables["input"] = lambda *a: print("almadeliver: a prompt for input answered with ''") or ""

    def setjy(*args: Any, **kwargs: Any) -> Any:
        flux = kwargs.get("fluxdensity", -1)
        if "standard" not in kwargs and isinstance(flux, (list, tuple)) and flux and flux[0] > 0:
            kwargs["standard"] = "manual"
            print(f"almadeliver: setjy(field={kwargs.get('field', '')!r}, spw={kwargs.get('spw', '')!r}, "
                  f"fluxdensity={list(flux)}) with no standard (CASA 3.4-4.1 form) runs with standard='manual'")
        return casatasks.setjy(*args, **kwargs)

    variables["setjy"] = setjy
    return variables


def run_clean_era_script_in_casa(script: str, cwd: str, variables: dict[str, Any] | None = None,
                                 casa_version: str | None = None, converted: str | None = None) -> dict[str, Any]:
    """Run a CASA 3.4-4.x script (Python 2) in CASA 6 (CASA side): its Python 2 converted for the run
    (``imaging_legacy.python3_text``; the Python 3 text goes to ``converted``, by default
    ``<cwd>/<name>.py3.py``, and the delivered file is not changed), in the legacy namespace with
    ``clean_era_variables(casa_version)`` and ``variables``. Without ``casa_version`` the script's
    version gates are passed (a line says so); with it, ``casadef`` answers that version (the
    simulated reducer's CASA).

    Parameters
    ----------
    script : str
        The delivered script's path.
    cwd : str
        The folder it runs in.
    variables : dict[str, Any] | None, default None
        More names for its namespace.
    casa_version : str | None, default None
        The CASA version ``casadef`` answers, e.g. ``"4.2.2"``; None passes the version gates.
    converted : str | None, default None
        Where the Python 3 text of a Python 2 script goes.

    Returns
    -------
    dict[str, Any]
        What ``run_script_in_casa`` returns.

    Raises
    ------
    TreeError
        The script is neither Python 3 nor convertible Python 2.
    RuntimeError
        The script exited with an error (``sys.exit('ERROR: ...')``).
    """
    from .imaging_legacy import python3_text

    text = python3_text(Path(script))
    run = Path(script)
    if text.python2:
        run = Path(converted or Path(cwd) / (run.stem + ".py3.py"))
        run.write_text(text.text)
        print(f"almadeliver: {text.describe()}", flush=True)
    return run_script_in_casa(str(run), cwd, {**clean_era_variables(casa_version), **(variables or {})},
                              pass_version_gates=casa_version is None)


def run_script_in_casa(script: str, cwd: str, variables: dict[str, Any] | None = None, casa_version: str | None = None,
               pass_version_gates: bool = False) -> dict[str, Any]:
    """Exec ``script`` with ``cwd`` as the current directory in a fresh legacy namespace
    (``casa_version`` and ``pass_version_gates``: see ``legacy_globals``).

    A ``sys.exit('ERROR: ...')`` from the script becomes a ``RuntimeError`` carrying its message
    (the CASA child reports it as the error). Returns the script path and the final directory.

    Parameters
    ----------
    script : str
        The script's path.
    cwd : str
        The folder to run it in.
    variables : dict[str, Any] | None, default None
        Extra globals (``SPACESAVING``, ``applyonly``, ...).
    casa_version : str | None, default None
        The version casalith answers (None: the CASA that runs).
    pass_version_gates : bool, default False
        Let the exact-version gates pass.

    Returns
    -------
    dict[str, Any]
        ``script`` and ``cwd`` (the directory at the end).
    """
    script_path = Path(script).resolve()
    os.chdir(cwd)
    namespace = legacy_globals(variables, casa_version, pass_version_gates)
    try:
        namespace["execfile"](str(script_path))
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(str(exc.code)) from None
    finally:
        sys.stdout.flush()
    return {"script": str(script_path), "cwd": os.getcwd()}
