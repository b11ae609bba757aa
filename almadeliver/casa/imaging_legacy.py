"""Clean-era imaging scripts (CASA 3.4-4.x, ALMA Cycles 0-3) re-run in CASA 6.

A manual delivery of Cycles 0-3 ships a ``scriptForImaging.py`` written for CASA 3.4-4.x: Python 2
syntax (``print 'x'``, ``xrange``, ``dict.has_key``...) and the ``clean()`` task, which CASA 6 no
longer has (seed 000: "The imaging script will then work with the calibrated.ms"; seed 002: the
script regenerates the products). Two steps make it run:

1. ``python3_text``: the script's Python 2 syntax converted with fissix (the maintained fork of
   lib2to3, whose fixers are 2to3's), only for the run; the delivered file is never changed. A
   script that already parses as Python 3 is left as it is.
2. ``translate_clean``: each ``clean()`` call becomes a ``tclean()`` call with CASA's documented
   parameter mapping (CASA 5 docs, "Transition from clean to tclean"; CASA Guide "TCLEAN and ALMA"):
   mode -> specmode, imagermode/ftmachine -> gridder, psfmode/multiscale/nterms -> deconvolver,
   minpb -> pblimit, outertaper -> uvtaper, usescratch -> savemodel, modelimage -> startmodel,
   resmooth -> restoringbeam='common', mask boxes -> CASA region strings; clean's own defaults where
   they differ from tclean's (niter 500, psfmode clark, imsize 256, cyclefactor 1.5) are written
   out. ``interactive=True`` becomes ``interactive=False`` with the delivered mask (the call's
   ``mask``, else ``product/<imagename>.mask``) or, without one, a clean of the whole image down to
   the call's threshold; the translation says which. Parameters tclean has no equivalent for are
   listed as not translated. clean's ``<imagename>.flux`` (the primary beam) is linked to tclean's
   ``<imagename>.pb`` so the script's ``impbcor``/``exportfits`` lines find it.

Everything here but ``link_clean_outputs`` runs without CASA.
"""
from __future__ import annotations

import ast
import difflib
import functools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TreeError

# CASA 4.x clean's parameters in signature order (positional calls are matched against it).
CLEAN_PARAMETERS = (
    "vis", "imagename", "outlierfile", "field", "spw", "selectdata", "timerange", "uvrange", "antenna", "scan",
    "observation", "intent", "mode", "resmooth", "gridmode", "wprojplanes", "facets", "cfcache", "rotpainc",
    "painc", "aterm", "psterm", "mterm", "wbawp", "conjbeams", "epjtable", "interpolation", "niter", "gain",
    "threshold", "psfmode", "imagermode", "ftmachine", "mosweight", "scaletype", "multiscale", "negcomponent",
    "smallscalebias", "interactive", "mask", "nchan", "start", "width", "outframe", "veltype", "imsize", "cell",
    "phasecenter", "restfreq", "stokes", "weighting", "robust", "uvtaper", "outertaper", "innertaper",
    "modelimage", "restoringbeam", "pbcor", "minpb", "usescratch", "noise", "npixels", "npercycle",
    "cyclefactor", "cyclespeedup", "nterms", "reffreq", "chaninchunks", "flatnoise", "allowchunk")

# clean parameters tclean takes under the same name and meaning
_SAME = ("vis", "imagename", "field", "spw", "selectdata", "timerange", "uvrange", "antenna", "scan", "observation",
         "intent", "interpolation", "niter", "gain", "threshold", "smallscalebias", "nchan", "start", "width",
         "veltype", "imsize", "cell", "phasecenter", "restfreq", "stokes", "weighting", "robust", "npixels",
         "cyclefactor", "nterms", "reffreq", "wprojplanes", "facets", "mosweight", "restoringbeam", "pbcor",
         "outframe", "cfcache", "conjbeams", "wbawp", "aterm", "psterm", "mterm", "outlierfile")
# clean's defaults (CASA 4.x) where tclean's differ: written out so the translated call cleans the same way
CLEAN_DEFAULTS = {"niter": 500, "imsize": [256, 256], "cyclefactor": 1.5}
# clean parameters with no tclean equivalent: dropped, and said so
_NOT_TRANSLATED = {
    "npercycle": "interactive clean's iterations between mask prompts (no interactive prompt here)",
    "cyclespeedup": "tclean has no cycle speed-up",
    "negcomponent": "tclean has no negative-component stop",
    "innertaper": "tclean has only the outer taper",
    "noise": "used by clean's 'briggsabs' weighting only",
    "scaletype": "tclean normalises by the primary beam itself (normtype)",
    "chaninchunks": "tclean chunks cubes itself",
    "allowchunk": "tclean chunks cubes itself",
    "flatnoise": "tclean always makes a flat-noise .image (pbcor adds .image.pbcor)",
    "rotpainc": "tclean's rotatepastep has other units",
    "painc": "no tclean equivalent",
    "epjtable": "no tclean equivalent",
    "calready": "tclean does not touch the MODEL column unless savemodel says so",
    "async": "tasks are synchronous in CASA 6",
}
_DECONVOLVERS = {"clark": "clark", "hogbom": "hogbom", "clarkstokes": "clarkstokes"}


class Expression(str):
    """An argument whose value the script computes (a variable, an expression): its source text."""


@dataclass(frozen=True)
class ConvertedScript:
    """A delivered script made runnable in CASA 6's Python 3.

    ``text`` is what runs; ``python2`` says whether it had to be converted, and ``changed_lines``
    lists the delivered line numbers that the conversion rewrote."""

    path: Path
    text: str
    python2: bool
    changed_lines: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the plan and the record.

        Returns
        -------
        str
            The line.
        """
        if not self.python2:
            return f"{self.path.name} is Python 3: runs as delivered"
        return (f"{self.path.name} is Python 2 (CASA 3.4-4.x): converted for the run with fissix's 2to3 fixers "
                f"({len(self.changed_lines)} line(s) rewritten); the delivered file is not changed")


def python3_text(script: Path) -> ConvertedScript:
    """The script as Python 3: as delivered when it parses, else converted from Python 2 with fissix.

    Parameters
    ----------
    script : Path
        The script file.

    Returns
    -------
    ConvertedScript
        The Python 3 text and what the conversion changed.

    Raises
    ------
    TreeError
        When the script is neither valid Python 3 nor Python 2 that fissix can convert (the line and
        the parser's message are in the error).
    """
    script = Path(script)
    text = script.read_text(errors="replace")
    try:
        ast.parse(text)
        return ConvertedScript(script, text, python2=False)
    except SyntaxError:
        pass
    converted, changed = _convert(script.name, text)
    return ConvertedScript(script, converted, python2=True, changed_lines=list(changed))


@functools.lru_cache(maxsize=8)
def _convert(name: str, text: str) -> tuple[str, tuple[int, ...]]:
    """fissix's 2to3 conversion of a Python 2 script text, and the lines it rewrote (see python3_text)."""
    script = Path(name)
    from fissix.pgen2.parse import ParseError
    from fissix.refactor import RefactoringTool, get_fixers_from_package

    tool = RefactoringTool(get_fixers_from_package("fissix.fixes"))
    source = text if text.endswith("\n") else text + "\n"
    try:
        converted = str(tool.refactor_string(source, script.name))
    except (ParseError, SyntaxError, IndentationError) as exc:
        context = getattr(exc, "context", None)
        line = getattr(exc, "lineno", None) or (context[1][0] if context else None)
        raise TreeError(f"{script.name}: neither Python 3 nor Python 2 that can be converted ({exc})"
                        + (f" near line {line}" if line else ""),
                        "fix the script's syntax (a copy) and re-image with it") from None
    try:
        ast.parse(converted)
    except SyntaxError as exc:
        raise TreeError(f"{script.name}:{exc.lineno}: still not valid Python 3 after converting from Python 2 "
                        f"({exc.msg})", "fix that line in a copy of the script") from None
    changed = sorted({i1 + k + 1 for tag, i1, i2, _, _ in
                      difflib.SequenceMatcher(None, source.splitlines(), converted.splitlines()).get_opcodes()
                      if tag != "equal" for k in range(max(i2 - i1, 1)) if i1 + k < len(source.splitlines())})
    return converted, tuple(changed)


# -- clean -> tclean -------------------------------------------------------------------------------
@dataclass
class CleanTranslation:
    """One clean() call as tclean: the arguments, what was translated, what was not.

    ``translated``: one ``clean ... -> tclean ...`` line per rule applied; ``not_translated``: the
    clean parameters dropped, each with why; ``interactive``: how an interactive clean runs here
    (None when it was not interactive)."""

    tclean: dict[str, Any]
    translated: list[str] = field(default_factory=list)
    not_translated: list[str] = field(default_factory=list)
    interactive: str | None = None
    pbcor_in_place: bool = False     # clean's pbcor=True corrected <imagename>.image itself

    def lines(self) -> list[str]:
        """The translation as lines for ``--dry-run`` and the image record: what was mapped, what was not.

        Returns
        -------
        list[str]
            The lines.
        """
        out = [f"  {t}" for t in self.translated]
        out += [f"  not translated: {n}" for n in self.not_translated]
        if self.interactive:
            out.append(f"  {self.interactive}")
        return out


def clean_arguments(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A clean() call's arguments by name (positional ones matched against CASA 4.x's signature).

    Parameters
    ----------
    args : tuple
        The call's positional arguments.
    kwargs : dict[str, Any]
        Its keyword arguments.

    Returns
    -------
    dict[str, Any]
        Argument name -> value.
    """
    return {**dict(zip(CLEAN_PARAMETERS, args)), **kwargs}


def mask_region(mask: Any) -> Any:
    """clean's mask as tclean takes it: a box ``[blcx, blcy, trcx, trcy]`` (pixels) -> the CASA region
    ``'box[[blcxpix,blcypix],[trcxpix,trcypix]]'``; a list of boxes or names -> a list; a name (mask
    image or region file) as it is; '' or [] -> ''.

    Parameters
    ----------
    mask : Any
        clean's mask value.

    Returns
    -------
    Any
        tclean's mask value.
    """
    def is_box(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(x, (int, float)) for x in v)

    def box(v: Any) -> str:
        x1, y1, x2, y2 = (int(round(float(x))) for x in v)
        return f"box[[{x1}pix,{y1}pix],[{x2}pix,{y2}pix]]"

    if mask in (None, "", [], ()):
        return ""
    if is_box(mask):
        return box(mask)
    if isinstance(mask, (list, tuple)):
        items = [box(m) if is_box(m) else str(m) for m in mask if m not in ("", [], None)]
        return items[0] if len(items) == 1 else items
    return str(mask)


def translate_clean(call: dict[str, Any], delivered_masks: dict[str, str] | None = None) -> CleanTranslation:
    """The tclean call equivalent to a clean() call (see the module doc for the rules).

    Parameters
    ----------
    call
        clean's arguments by name (``clean_arguments``); values may be ``Expression`` when read
        statically (then the rule that needs the value says it is decided at run time).
    delivered_masks
        imagename -> path of a mask the delivery ships (``product/<imagename>.mask``), used when an
        interactive clean names no mask.

    Returns
    -------
    CleanTranslation
    """
    t = CleanTranslation(tclean={})
    out = t.tclean
    for name in _SAME:
        if name in call:
            out[name] = call[name]

    def note(text: str) -> None:
        t.translated.append(text)

    mode = call.get("mode", "mfs")
    if isinstance(mode, Expression):
        note(f"mode={mode} -> specmode decided at run time")
    elif str(mode) in ("channel", "velocity", "frequency"):
        out["specmode"] = "cube"
        note(f"mode={mode!r} -> specmode='cube' (start/width/nchan kept, in {mode} units)")
    else:
        out["specmode"] = "mfs"
        note(f"mode={mode!r} -> specmode='mfs'" if "mode" in call else "mode (clean default 'mfs') -> specmode='mfs'")

    nterms = call.get("nterms", 1)
    scales = call.get("multiscale", [])
    psfmode = call.get("psfmode", "clark")
    if isinstance(nterms, int) and nterms > 1:
        out["deconvolver"] = "mtmfs"
        note(f"nterms={nterms} -> deconvolver='mtmfs', nterms={nterms}")
        if scales:
            out["scales"] = list(scales)
            note(f"multiscale={list(scales)} -> scales={list(scales)}")
    elif isinstance(scales, (list, tuple)) and len(scales) > 0:
        out["deconvolver"] = "multiscale"
        out["scales"] = list(scales)
        note(f"multiscale={list(scales)} -> deconvolver='multiscale', scales={list(scales)}")
    else:
        out["deconvolver"] = _DECONVOLVERS.get(str(psfmode), "hogbom")
        src = f"psfmode={psfmode!r}" if "psfmode" in call else "psfmode (clean default 'clark')"
        note(f"{src} -> deconvolver={out['deconvolver']!r}")

    imagermode, ftmachine = str(call.get("imagermode", "csclean")), str(call.get("ftmachine", "ft"))
    gridmode = str(call.get("gridmode", ""))
    if imagermode == "mosaic" or ftmachine == "mosaic":
        out["gridder"] = "mosaic"
    elif ftmachine == "wproject" or gridmode == "widefield":
        out["gridder"] = "widefield" if gridmode == "widefield" else "wproject"
    elif gridmode == "aprojection":
        out["gridder"] = "awproject"
    else:
        out["gridder"] = "standard"
    src = ", ".join(f"{k}={call[k]!r}" for k in ("imagermode", "ftmachine", "gridmode") if k in call) \
        or "imagermode (clean default 'csclean')"
    note(f"{src} -> gridder={out['gridder']!r}")

    for name, default in CLEAN_DEFAULTS.items():
        if name not in call:
            out[name] = default
            note(f"{name} (clean default {default!r}, tclean's differs) -> {name}={default!r}")
    if "minpb" in call:
        out["pblimit"] = call["minpb"]
        note(f"minpb={call['minpb']!r} -> pblimit={call['minpb']!r}")
    if call.get("uvtaper") and call.get("outertaper") not in (None, "", []):
        taper = call["outertaper"]
        out["uvtaper"] = list(taper) if isinstance(taper, (list, tuple)) else [taper]
        note(f"uvtaper=True, outertaper={taper!r} -> uvtaper={out['uvtaper']!r}")
    if "innertaper" in call and call.get("innertaper") not in (None, "", []):
        t.not_translated.append(f"innertaper={call['innertaper']!r}: {_NOT_TRANSLATED['innertaper']}")
    if "usescratch" in call:
        out["savemodel"] = "modelcolumn" if call["usescratch"] else "none"
        note(f"usescratch={call['usescratch']!r} -> savemodel={out['savemodel']!r}")
    if call.get("modelimage") not in (None, "", []):
        out["startmodel"] = call["modelimage"]
        note(f"modelimage={call['modelimage']!r} -> startmodel={call['modelimage']!r}")
    if call.get("resmooth") is True:
        out["restoringbeam"] = "common"
        note("resmooth=True -> restoringbeam='common'")
    if call.get("outframe", None) in ("", None):
        out.pop("outframe", None)
        if out.get("specmode") == "cube":
            note("outframe='' (clean: the frame CASA chose) -> tclean's default outframe='LSRK'")
    if call.get("pbcor") is True:
        t.pbcor_in_place = True
        note("pbcor=True (clean corrected <imagename>.image itself) -> pbcor=True; <imagename>.image is "
             "then tclean's .image.pbcor (the flat-noise image kept as .image.flat)")

    mask = mask_region(call.get("mask", ""))
    if mask:
        out["mask"] = mask
        out["usemask"] = "user"
        if mask != call.get("mask"):
            note(f"mask={call.get('mask')!r} -> mask={mask!r}, usemask='user'")
    interactive = call.get("interactive", False)
    if interactive and not isinstance(interactive, Expression):
        out["interactive"] = False
        image = Path(str(call.get("imagename", ""))).name
        found = (delivered_masks or {}).get(image)
        if not mask and found:
            out["mask"], out["usemask"] = found, "user"
            t.interactive = (f"interactive=True -> interactive=False, cleaned inside the delivered mask {found}")
        elif mask:
            t.interactive = f"interactive=True -> interactive=False, cleaned inside the call's mask {mask!r}"
        else:
            t.interactive = (f"interactive=True -> interactive=False: no mask delivered, so the whole image is "
                             f"cleaned down to threshold={call.get('threshold', '0.0mJy')!r} "
                             f"(at most niter={out.get('niter')})")
    elif isinstance(interactive, Expression):
        t.interactive = f"interactive={interactive} is computed: forced to False at run time"
        out["interactive"] = False
    else:
        out["interactive"] = False

    for name, value in call.items():
        if name in _NOT_TRANSLATED and value not in (None, "", [], False, 0):
            t.not_translated.append(f"{name}={value!r}: {_NOT_TRANSLATED[name]}")
        elif name not in _SAME and name not in CLEAN_PARAMETERS:
            t.not_translated.append(f"{name}={value!r}: not a clean parameter")
    return t


def delivered_masks(member: Path) -> dict[str, str]:
    """imagename -> path of each mask image the delivery ships in product/ (``<imagename>.mask``, a
    CASA image folder: Cycle 0 deliveries list e.g. ``TWHya.continuum.mask``).

    Parameters
    ----------
    member : Path
        The member folder.

    Returns
    -------
    dict[str, str]
        imagename -> mask image path.
    """
    product = Path(member) / "product"
    return {p.name[: -len(".mask")]: str(p.resolve()) for p in sorted(product.glob("*.mask"))
            if p.is_dir()} if product.is_dir() else {}


def link_clean_outputs(imagename: str, pbcor_in_place: bool) -> list[str]:
    """After the translated tclean: the image names clean wrote that the script goes on to use.

    ``<imagename>.flux`` (clean's primary beam) links to tclean's ``.pb``; with clean's
    ``pbcor=True``, ``<imagename>.image`` becomes the primary-beam-corrected image (the flat-noise
    one is kept as ``.image.flat``). Returns the names made.

    Parameters
    ----------
    imagename : str
        The image name of the clean call.
    pbcor_in_place : bool
        clean's ``pbcor=True`` (the .image is the corrected one).

    Returns
    -------
    list[str]
        The names made.
    """
    made = []
    flux, pb = Path(imagename + ".flux"), Path(imagename + ".pb")
    if pb.is_dir() and not flux.exists():
        os.symlink(pb.name, flux)
        made.append(str(flux))
    image, pbcor = Path(imagename + ".image"), Path(imagename + ".image.pbcor")
    if pbcor_in_place and pbcor.is_dir() and image.is_dir() and not image.is_symlink():
        flat = Path(imagename + ".image.flat")
        if flat.exists():
            shutil.rmtree(flat)
        image.rename(flat)
        os.symlink(pbcor.name, image)
        made.append(str(image))
    return made
