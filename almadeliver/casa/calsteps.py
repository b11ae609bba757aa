"""The steps of an ALMA calibration script (``<EB>.ms.scriptForCalibration.py``), read without running it.

The script generator's form (seed 004): a ``step_title`` dict and, per step, ``mystep = N`` followed by
an ``if (mystep in thesteps):`` block. ``read_steps`` lists them with what modular CASA lacks for each
(``scriptcheck.lacking``, analysisUtils calls); ``parse_steps`` reads ``--steps 9-18``.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CasaNotFoundError, UsageError
from .scriptcheck import lacking

_AU_NAMES = ("aU", "es")                # analysisUtils and its stuffForScienceDataReduction object


@dataclass(frozen=True)
class CalibrationStep:
    """One step of a calibration script: its number, title, lines and what modular CASA lacks for it."""

    number: int
    title: str
    first_line: int
    last_line: int
    lacks: tuple[str, ...] = ()          # "analysisUtils (es.getFieldsForSetjy)", "task wvrgcal"


def _step_titles(tree: ast.Module) -> dict[int, str]:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "step_title" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            try:
                return {int(ast.literal_eval(k)): str(ast.literal_eval(v)) for k, v in zip(node.value.keys, node.value.values)}
            except (ValueError, TypeError):
                break
    return {}


def _au_uses(node: ast.AST) -> list[str]:
    """``aU.x`` / ``es.x`` attribute uses under ``node`` (analysisUtils, not installable in modular CASA)."""
    uses = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in _AU_NAMES:
            uses.append(f"{sub.value.id}.{sub.attr}")
    return list(dict.fromkeys(uses))


def analysis_utils_available() -> bool:
    """True when ``import analysisUtils`` works (it is not on PyPI; some sites put it on PYTHONPATH).

    Returns
    -------
    bool
        True when analysisUtils imports.
    """
    import importlib.util

    return importlib.util.find_spec("analysisUtils") is not None


def read_steps(script: Path) -> list[CalibrationStep]:
    """The steps of an ALMA calibration script, in order, with what each lacks in modular CASA.

    A step is the ``if (mystep in thesteps):`` block after ``mystep = N`` (the script generator's form,
    seed 004); its title is ``step_title[N]``. Lacks: modules and tasks ``scriptcheck.lacking`` finds
    on the step's lines, and analysisUtils calls (``aU.x``, ``es.x``) when analysisUtils is not importable.

    Parameters
    ----------
    script : Path
        The EB's calibration script (scriptForCalibration.py).

    Returns
    -------
    list[CalibrationStep]
        The steps, in script order.

    Raises
    ------
    CasaNotFoundError
        The script does not parse as Python 3 (a CASA 3/4/5 script: run it in monolithic CASA).
    UsageError
        The script has no ``step_title`` or no ``mystep`` blocks (not a generator's calibration script).
    """
    text = Path(script).read_text(errors="replace")
    try:
        tree = ast.parse(text, str(script))
    except SyntaxError as exc:
        raise CasaNotFoundError(f"{Path(script).name} is not Python 3 (line {exc.lineno}: {exc.msg}): a CASA 3-5 "
                                "script, which modular CASA cannot run",
                                "recalibrate runs in modular CASA 6; port the script to Python 3 and give it with "
                                "--script EDITED.py") from None
    titles = _step_titles(tree)
    blocks: list[tuple[int, ast.If]] = []
    body = tree.body
    for i, node in enumerate(body[:-1]):
        nxt = body[i + 1]
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "mystep" and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, int) and isinstance(nxt, ast.If)):
            blocks.append((node.value.value, nxt))
    if not titles or not blocks:
        raise UsageError(f"{Path(script).name} has no step_title and mystep blocks",
                         "give the <EB>.ms.scriptForCalibration.py of a manually calibrated delivery")
    lacks_by_line = lacking([Path(script)])
    with_au = not analysis_utils_available()
    steps = []
    for number, block in blocks:
        first, last = block.lineno, block.end_lineno or block.lineno
        lacks = [lk.what for lk in lacks_by_line if first <= lk.line <= last]
        if with_au:
            lacks += [f"analysisUtils ({use})" for use in _au_uses(block)]
        steps.append(CalibrationStep(number, titles.get(number, f"step {number}"), first, last, tuple(lacks)))
    return steps


def parse_steps(spec: str, known: list[int]) -> list[int]:
    """``"9-18"``, ``"9,11,13-15"`` -> step numbers, in the script's order.

    Raises UsageError for a malformed spec or a step the script does not have.

    Parameters
    ----------
    spec : str
        The ``--steps`` value.
    known : list[int]
        The step numbers the script has, in its order.

    Returns
    -------
    list[int]
        The step numbers, in the script's order.

    Raises
    ------
    UsageError
        A part is not a step or a range, a range runs backwards, or the script has no such step.
    """
    chosen: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UsageError(f"--steps {spec}: {part!r} is not a step or a range", "use e.g. --steps 9-18 or 10,12-14")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UsageError(f"--steps {spec}: {part} runs backwards", f"write it {hi}-{lo}")
        missing = [n for n in range(lo, hi + 1) if n not in known]
        if missing:
            raise UsageError(f"--steps {spec}: the script has no step {missing[0]}",
                             f"its steps are {known[0]}-{known[-1]}")
        chosen |= set(range(lo, hi + 1))
    return [n for n in known if n in chosen]
