"""What a delivery's calibration scripts demand of the CASA that runs them, read before CASA starts.

ALMA's script generator writes into every calibration script an exact-version gate: the first three
numbers of the running CASA's version are matched with ``re.search`` against the version that
generated the script (``casalith.version()`` in CASA 6, ``cu.version()`` in 5.1-5.8,
``casadef.casa_version`` in 4.x-5.0), and a mismatch ends the script with ``sys.exit`` (ALMA-FACTS.md
section 4). ``read_gates`` finds them; ``lacking`` lists what modular CASA cannot give a script
(modules it imports, tasks it calls) so that restore can refuse before it starts.
"""
from __future__ import annotations

import ast
import builtins
import importlib.util
import re
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import CasaError

# module -> what provides it when a script runs in modular CASA through almadeliver's legacy shim
PROVIDED_MODULES = {"casalith": "almadeliver's casalith (version of the CASA that runs)"}
# modules only monolithic CASA has, and what to install for the others
_MONOLITHIC_ONLY = {"casadef", "taskinit", "casa", "casashell", "pipeline", "recipes", "analysisUtils", "almatasks"}
_PIP_NAMES = {"casarecipes": "casarecipes", "casaplotms": "casaplotms", "casaviewer": "casaviewer",
              "matplotlib": "matplotlib", "pylab": "matplotlib", "scipy": "scipy"}
# names the legacy shim puts in a script's namespace besides casatasks and casatools (legacy.py)
_SHIM_NAMES = {"casalog", "casa", "execfile", "sys", "msmd", "tb", "ms", "ia", "qa", "me", "cb", "sm", "cl", "im",
               "af", "rg", "at", "mst", "cs", "applyonly", "mysteps", "SPACESAVING", "DOSPLIT", "USEMS"}

_GATE_RE = re.compile(r"^[ \t]*if\s+re\.search\(\s*(['\"])(?P<pattern>.*?)\1\s*,\s*(?P<subject>.+?)\)\s*"
                      r"(?:==|is)\s*None\s*:", re.M)
_GATE_EXIT_RE = re.compile(r"sys\.exit\(\s*['\"][^'\"]*SAME VERSION OF CASA", re.I)
_VERSION_RE = re.compile(r"^\^?(\d+)\\?\.(\d+)\\?\.(\d+)$")


class ScriptCheckError(CasaError):
    """A delivered script cannot run in the CASA chosen (unreadable gate, missing module or task)."""


@dataclass(frozen=True)
class VersionGate:
    """One script's exact-version gate: the CASA version it demands (first three numbers)."""

    script: Path
    demands: str           # "6.5.4"
    line: int              # 1-based line of the ``if re.search(...)``
    source: str            # what it reads the version from: casalith, cu, casadef, casaVersion


def _active_lines(text: str) -> str:
    """The text with comment lines blanked (a commented-out gate demands nothing)."""
    return "\n".join("" if line.lstrip().startswith("#") else line for line in text.splitlines())


def read_gate(script: Path) -> VersionGate | None:
    """The version gate of ``script``, or None when it has none (or it is commented out).

    Raises ScriptCheckError when a line exits asking for "the same version of CASA" but no gate
    with a plain ``X.Y.Z`` version can be read before it.

    Parameters
    ----------
    script : Path
        A calibration script.

    Returns
    -------
    VersionGate | None
        The gate (script, line, version asked), or None.
    """
    text = _active_lines(Path(script).read_text(errors="replace"))
    for m in _GATE_RE.finditer(text):
        after = text[m.end():].lstrip()
        if not after.startswith("sys.exit"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        v = _VERSION_RE.match(m.group("pattern"))
        if not v:
            raise ScriptCheckError(
                f"{Path(script).name} line {line}: cannot read the CASA version its gate demands "
                f"({m.group('pattern')!r})", "open the script, read the version it asks for and give that CASA "
                "with --casa PATH, or add --casa-version-mismatch allow")
        subject = m.group("subject")
        source = next((s for s in ("casalith", "casadef", "cu", "casaVersion") if s in subject), "other")
        return VersionGate(Path(script), ".".join(v.groups()), line, source)
    exit_m = _GATE_EXIT_RE.search(text)
    if exit_m:
        line = text.count("\n", 0, exit_m.start()) + 1
        raise ScriptCheckError(f"{Path(script).name} line {line}: exits asking for the same version of CASA, "
                               "but its version gate cannot be read",
                               "open the script, read the version it asks for and give that CASA with --casa PATH, "
                               "or add --casa-version-mismatch allow")
    return None


def read_gates(scripts: list[Path]) -> list[VersionGate]:
    """The version gates of ``scripts`` (those without a gate are left out); see ``read_gate``.

    Parameters
    ----------
    scripts : list[Path]
        The calibration scripts.

    Returns
    -------
    list[VersionGate]
        The gates, in script order.
    """
    return [g for g in (read_gate(s) for s in scripts) if g is not None]


def modular_casa_version() -> str | None:
    """The installed modular CASA (casatools) as ``6.7.0-31``, read without importing CASA.

    Returns
    -------
    str | None
        The version, or None when casatools is not installed.
    """
    try:
        numbers = version("casatools").split(".")
    except PackageNotFoundError:
        return None
    return ".".join(numbers[:3]) + (f"-{numbers[3]}" if len(numbers) > 3 else "")


def first_three(casa_version: str | None) -> str | None:
    """``6.5.4`` of ``6.5.4-9`` or ``6.5.4.9`` (what the gates compare); None when not a version.

    Parameters
    ----------
    casa_version : str | None
        A CASA version.

    Returns
    -------
    str | None
        ``X.Y.Z``, or None.
    """
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", casa_version or "")
    return ".".join(m.groups()) if m else None


# -- what modular CASA lacks ------------------------------------------------------------------------
def _not_applyonly_guard(node: ast.AST) -> bool:
    """``if applyonly != True:`` (the generator's guard for reducer-only lines)."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "applyonly"
            and len(node.test.ops) == 1 and isinstance(node.test.ops[0], (ast.NotEq, ast.IsNot))
            and isinstance(node.test.comparators[0], ast.Constant) and node.test.comparators[0].value is True)


def _walk(tree: ast.AST):
    """Every node, skipping the bodies of ``if applyonly != True:`` (not run by scriptForPI)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if _not_applyonly_guard(child):
                stack.extend(child.orelse)
                stack.append(child.test)
            else:
                stack.append(child)


def _casa_names() -> set[str]:
    """Public names of casatasks and casatools (read from their package folders, not imported)."""
    names: set[str] = set()
    for package in ("casatasks", "casatools"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            names |= {p.stem for p in Path(folder).glob("*.py") if not p.stem.startswith("_")}
    return names


@dataclass(frozen=True)
class Lack:
    """Something a script needs that modular CASA does not have."""

    script: Path
    what: str              # "module casadef", "task sdimaging"
    line: int
    hint: str


def _module_lack(script: Path, module: str, line: int) -> Lack | None:
    top = module.split(".")[0]
    if top in PROVIDED_MODULES:
        return None
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    if top in _PIP_NAMES:
        hint = f"install it into almadeliver's Python: pip install {_PIP_NAMES[top]}"
    elif top in _MONOLITHIC_ONLY:
        hint = "it ships only with monolithic CASA: give one with --casa PATH"
    else:
        hint = "modular CASA does not have it: give a monolithic CASA with --casa PATH"
    return Lack(script, f"module {module}", line, hint)


def lacking(scripts: list[Path], context: list[Path] | None = None) -> list[Lack]:
    """What ``scripts`` import or call that modular CASA (with the legacy shim) does not have.

    Imports must be findable in this Python (casalith is provided). Called names must be builtins,
    casatasks/casatools names, shim globals, or bound in one of ``scripts`` or ``context`` (scriptForPI,
    whose namespace the calibration scripts share).
    Lines under ``if applyonly != True:`` are skipped (scriptForPI sets applyonly). Python 2
    scripts are skipped (restore refuses them on their own).

    Parameters
    ----------
    scripts : list[Path]
        The scripts to check.
    context : list[Path] | None, default None
        Scripts whose names they may use (scriptForPI).

    Returns
    -------
    list[Lack]
        What is lacking (script, line, what, hint), in script order.
    """
    trees = {}
    for script in [*scripts, *(context or [])]:
        try:
            trees[Path(script)] = ast.parse(Path(script).read_text(errors="replace"))
        except SyntaxError:
            continue
    bound = set(dir(builtins)) | _SHIM_NAMES | _casa_names()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.arg):       # e.g. the tool class analysisUtils' createCasaTool(mytool) calls
                bound.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    lacks: list[Lack] = []
    for script, tree in trees.items():
        if script not in {Path(p) for p in scripts}:
            continue
        seen: set[str] = set()
        for node in _walk(tree):
            lack = None
            if isinstance(node, ast.Import):
                for alias in node.names:
                    lack = lack or _module_lack(script, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                lack = _module_lack(script, node.module, node.lineno)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in bound:
                lack = Lack(script, f"task {node.func.id}", node.lineno,
                            "it is neither in casatasks nor defined by the delivery's scripts: give a monolithic "
                            "CASA with --casa PATH")
            if lack and lack.what not in seen:
                seen.add(lack.what)
                lacks.append(lack)
    order = {Path(p): i for i, p in enumerate(scripts)}
    return sorted(lacks, key=lambda l: (order[l.script], l.line))


def python_executable() -> str:
    """The Python that runs modular CASA (named in messages about missing modules).

    Returns
    -------
    str
        The path of its Python.
    """
    return sys.executable
