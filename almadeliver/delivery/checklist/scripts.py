"""Checklist figures read from the calibration scripts: step 0's flag-version removal, the setjy fluxes."""
from __future__ import annotations

import re

from ...ids import Uid


# -- scripts -------------------------------------------------------------------------------------------
def _step_block(text: str, k: int) -> str | None:
    """The text of ``mystep = k``'s block (up to the next ``mystep =``)."""
    m = re.search(rf"^\s*mystep\s*=\s*{k}\s*$", text, re.MULTILINE)
    if not m:
        return None
    nxt = re.search(r"^\s*mystep\s*=\s*\d+\s*$", text[m.end():], re.MULTILINE)
    return text[m.end(): m.end() + nxt.start()] if nxt else text[m.end():]


def _string_vars(text: str) -> dict[str, str]:
    """Simple ``name = 'literal'`` assignments of a script (vis, bpcal, phasecal, ...)."""
    return {m.group(1): m.group(3) for m in re.finditer(r"^\s*(\w+)\s*=\s*(['\"])([^'\"]*)\2\s*$", text, re.MULTILINE)}


def _resolve(expr: str, names: dict[str, str]) -> str:
    """A string expression of literals, names and ``+`` (``vis + '.flagversions'``) as text."""
    out = []
    for part in expr.split("+"):
        part = part.strip()
        m = re.fullmatch(r"(['\"])(.*)\1", part)
        out.append(m.group(2) if m else names.get(part, "{" + part + "}"))
    return "".join(out)


def flagversions_removal(text: str, eb: Uid) -> tuple[bool, int | None, int | None]:
    """(whether step 0 removes ``<EB>.ms.flagversions`` before its importasdm call, the line of the
    removal, the line of importasdm). Removal forms: ``os.system('rm -rf <EB>.ms.flagversions')``
    (the manual's), with the name built from variables (``'rm -rf ' + vis + '.flagversions'``), or
    ``shutil.rmtree(...)``; a glob ``<EB>.ms*`` counts too.

    Parameters
    ----------
    text : str
        The calibration script's text.
    eb : Uid
        The EB the script calibrates.

    Returns
    -------
    tuple[bool, int | None, int | None]
        (removed before importasdm, line of the removal or None, line of importasdm or None); lines are
        1-based.
    """
    block_start = re.search(r"^\s*mystep\s*=\s*0\s*$", text, re.MULTILINE)
    block = _step_block(text, 0)
    if block is None or block_start is None:
        return False, None, None
    offset = text.count("\n", 0, block_start.end()) + 1
    names = _string_vars(text)
    target = f"{eb.disk}.ms.flagversions"
    removal = importing = None
    for i, line in enumerate(block.splitlines()):
        code = line.split("#", 1)[0]
        if importing is None and re.search(r"\bimportasdm\s*\(", code):
            importing = offset + i
        m = re.search(r"os\.system\((?P<e>.*)\)|shutil\.rmtree\((?P<r>[^,)]*)", code)
        if m and removal is None and importing is None:
            named = _resolve(m.group("e") or m.group("r"), names)
            if "rm " in named or m.group("r"):
                words = named.replace("rm -rf", " ").replace("rm -r", " ").split()
                if any(w == target or w in (f"{eb.disk}.ms*", f"{eb.disk}*") for w in words):
                    removal = offset + i
    return removal is not None and importing is not None, removal, importing


def setjy_fluxes(text: str) -> list[dict]:
    """The setjy calls of a script that set a flux density: ``[{field, flux_jy, line}]``.

    Parameters
    ----------
    text : str
        The calibration script's text.

    Returns
    -------
    list[dict]
        One dict per call: field, flux_jy (Jy) and line (1-based).
    """
    names = _string_vars(text)
    out = []
    for m in re.finditer(r"\bsetjy\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        call = text[m.end(): i - 1]
        flux = re.search(r"fluxdensity\s*=\s*\[\s*([-0-9.eE+]+)", call)
        fld = re.search(r"\bfield\s*=\s*([^,\n]+)", call)
        if flux and not text[:m.start()].rsplit("\n", 1)[-1].lstrip().startswith("#"):
            out.append({"field": _resolve(fld.group(1), names) if fld else "", "flux_jy": float(flux.group(1)),
                        "line": text.count("\n", 0, m.start()) + 1})
    return out
