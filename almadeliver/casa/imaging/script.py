"""Manual deliveries' scriptForImaging.py: its tclean/clean calls read statically (for the plan and
the selection check), and the CASA child that runs it with tclean wrapped so every call gets the
overrides.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ...errors import UsageError
from ..imaging_legacy import CleanTranslation, Expression, clean_arguments, python3_text, translate_clean
from .child import moment_maps
from .delivered import _product_objects
from .linefree import ALL_SPWS
from .overrides import Overrides, _narrow_spw, apply_overrides, spw_ids


def script_tclean_calls(script: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every tclean/clean call in the script: (line, {arg: literal value, or its source text}), as
    written (a clean() call keeps clean's parameters: ``script_clean_translations`` translates them).
    A Python 2 script is read as converted (``imaging_legacy.python3_text``): the line numbers are
    those of the converted text, which fissix keeps for every line it does not split or join.

    Parameters
    ----------
    script : Path
        The scriptForImaging.py file.

    Returns
    -------
    list[tuple[int, dict[str, Any]]]
        (line, arguments) per call, in script order.
    """
    return [(line, kwargs) for line, _, kwargs in _script_calls(python3_text(script).text)]


def _script_calls(text: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(line, task, arguments) of every tclean/clean call in a Python 3 script text."""
    import ast

    tree = ast.parse(text)
    constants = _script_constants(tree)
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("tclean", "clean"):
            kwargs: dict[str, Any] = {}
            for kw in node.keywords:
                if kw.arg is None:
                    continue
                if isinstance(kw.value, ast.Name) and kw.value.id in constants:
                    kwargs[kw.arg] = constants[kw.value.id]
                    continue
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    kwargs[kw.arg] = Expression(ast.get_source_segment(text, kw.value) or "?")
            if node.func.id == "clean" and node.args:
                positional = clean_arguments(tuple(Expression(ast.get_source_segment(text, a) or "?")
                                                   for a in node.args), {})
                kwargs = {**positional, **kwargs}
            calls.append((node.lineno, node.func.id, kwargs))
    return sorted(calls, key=lambda c: c[0])


def script_clean_translations(script: Path, masks: dict[str, str] | None = None) -> list[tuple[int, CleanTranslation]]:
    """Each clean() call of the script (line in the converted text) with its tclean translation,
    read statically (computed arguments are translated when the script runs).

    Parameters
    ----------
    script : Path
        The scriptForImaging.py file.
    masks : dict[str, str] | None, default None
        imagename -> delivered mask image (``delivered_masks``).

    Returns
    -------
    list[tuple[int, CleanTranslation]]
        (line, translation) per clean() call.
    """
    return [(line, translate_clean(kwargs, masks)) for line, task, kwargs in _script_calls(python3_text(script).text)
            if task == "clean"]


def _script_constants(tree) -> dict[str, Any]:
    """Top-level ``name = literal`` assignments made exactly once (e.g. ``field = 'G008.67'``)."""
    import ast

    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign, ast.For)) else []
        for target in targets:
            for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                seen[name] = seen.get(name, 0) + 1
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return {name: value for name, value in values.items() if seen.get(name) == 1}


def _check_script_selection(member: Path, script: Path, ov: Overrides) -> None:
    """Refuse spws/fields the script's literal tclean arguments (and product headers) do not name."""
    calls = [kw for _, kw in script_tclean_calls(script)]
    spws = [kw.get("spw", "") for kw in calls]
    fields = [kw.get("field", "") for kw in calls]
    literal = lambda v: not isinstance(v, Expression)  # noqa: E731
    if ov.spws and calls and all(literal(v) and v not in ("", []) for v in spws):
        known = sorted({s for v in spws for s in spw_ids(v)}, key=int)
        for spw in ov.spws:
            if spw not in known:
                raise UsageError(f"spw {spw} is not imaged by {script.name} (spws {', '.join(known) or 'all'})",
                                 "pick one of those with --spw")
    known_f = sorted({str(v) for v in fields if literal(v)} | _product_objects(member))
    if ov.fields and calls and (all(literal(v) for v in fields) or _product_objects(member)):
        for name in ov.fields:
            if name not in known_f:
                raise UsageError(f"field {name!r} is not imaged by {script.name} ({', '.join(known_f)})",
                                 "pick one of those with --field")


def script_contsub(tclean: dict[str, Any], spws: list[str], line_free: dict[str, list],
                   done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """CASA child: uvcontsub of each MS a cube's tclean call reads (once per MS and field), fitted on the
    line-free ranges of its spws (the script's spw ids); the runs, each with its ``fitspec``.

    Parameters
    ----------
    tclean : dict[str, Any]
        The cube's tclean arguments (vis, field).
    spws : list[str]
        The cube's spw ids (the script's).
    line_free : dict[str, list]
        spw id -> line-free ranges (low Hz, high Hz, frame).
    done : dict[str, dict[str, Any]]
        Output MS -> its run, for MSs already subtracted (updated).

    Returns
    -------
    list[dict[str, Any]]
        The uvcontsub runs the cube reads from.
    """
    from .child import contsub_in_casa

    field = str(tclean.get("field", ""))
    ranges = {s: line_free.get(s) or line_free.get(ALL_SPWS) or [] for s in spws}
    missing = [s for s, r in ranges.items() if not r]
    if not spws or missing:
        raise RuntimeError(f"--contsub: no line-free range for spw {', '.join(missing) or 'of ' + tclean['imagename']}; "
                           "give them with --line-free")
    runs = []
    for vis in tclean["vis"] if isinstance(tclean["vis"], (list, tuple)) else [tclean["vis"]]:
        outputvis = f"contsub/{Path(str(vis)).name}" + (f".{field}" if field else "") + ".contsub"
        if outputvis not in done:
            run = {"vis": str(vis), "outputvis": outputvis, "field": field, "ranges": dict(ranges)}
            run["result"] = contsub_in_casa(run)
            done[outputvis] = run
        runs.append(done[outputvis])
    return runs


def script_in_casa(script: str, out: str, overrides: dict[str, Any], legacy: bool = False,
                 masks: dict[str, str] | None = None, line_free: dict[str, list] | None = None) -> dict[str, Any]:
    """Exec scriptForImaging.py in the legacy namespace with tclean and exportfits wrapped (see
    run_script_images). ``legacy`` (a clean-era script, already converted to Python 3): ``clean`` runs
    as its tclean translation (``imaging_legacy.translate_clean``, ``masks``: the delivered masks),
    its version gates are passed and the rest of CASA 3.4-4.x's namespace is there
    (``legacy.clean_era_variables``: ``casadef``, ``T``/``F``, display-only tasks skipped).

    Parameters
    ----------
    script : str
        The script's path.
    out : str
        The output folder (exportfits writes there).
    overrides : dict[str, Any]
        The overrides (``Overrides`` as a dict).
    legacy : bool, default False
        The script is a clean-era one, converted.
    masks : dict[str, str] | None, default None
        imagename -> delivered mask image.
    line_free : dict[str, list] | None, default None
        spw id -> line-free ranges (low Hz, high Hz, frame), for --contsub/--moments.

    Returns
    -------
    dict[str, Any]
        ``calls`` (the tclean calls made), ``exports`` and ``skipped``.
    """
    import inspect

    import casatasks

    from ..imaging_legacy import clean_arguments, link_clean_outputs
    from ..legacy import clean_era_variables, run_script_in_casa

    ov = Overrides(**overrides)
    names = list(inspect.signature(casatasks.tclean).parameters)
    calls: list[dict[str, Any]] = []
    exports: list[dict[str, str]] = []
    skipped: list[str] = []
    contsubbed: dict[str, dict[str, Any]] = {}

    def is_skipped(image: str) -> bool:
        return any(image == s or image.startswith(s + ".") for s in skipped if s)

    def run_tclean(kwargs: dict[str, Any], clean: dict[str, Any] | None = None) -> Any:
        spws = spw_ids(kwargs.get("spw", ""))
        kind = "cube" if kwargs.get("specmode") == "cube" else ("mfs" if len(spws) == 1 else "cont")
        excluded = ((ov.fields and str(kwargs.get("field", "")) not in ov.fields)
                    or (ov.spws and spws and not set(spws) & set(ov.spws))
                    or (ov.specmode and (ov.specmode == "cube") != (kind == "cube")))
        if excluded:
            skipped.append(str(kwargs.get("imagename", "")))
            return None
        if ov.spws:
            kwargs["spw"] = _narrow_spw(kwargs["spw"], set(ov.spws)) if spws else ",".join(ov.spws)
        new, changed = apply_overrides(kwargs, kind, ov)
        call = {"tclean": new, "changed": changed, "kind": kind, **({"clean": clean} if clean else {})}
        free = [r for s in spws or [ALL_SPWS] for r in (line_free or {}).get(s) or (line_free or {}).get(ALL_SPWS) or []]
        if kind == "cube" and ov.contsub:
            call["contsub"] = script_contsub(new, spws, line_free or {}, contsubbed)
            changed["vis"] = [new["vis"], [c["outputvis"] for c in call["contsub"]]]
            new["vis"] = [c["outputvis"] for c in call["contsub"]]
            new["datacolumn"] = "data"    # uvcontsub writes the subtracted data to DATA
        calls.append(call)
        result = casatasks.tclean(**new)
        if kind == "cube" and ov.moment_list:
            image = str(new["imagename"])
            cube = image + ".image.pbcor" if Path(image + ".image.pbcor").is_dir() else image + ".image"
            plan = {"moments": ov.moment_list, "line_free": free,
                    "fits": {m: f"{Path(image).name}.mom{m}.fits" for m in ov.moment_list}}
            call["moments"] = {**plan, "made": moment_maps(cube, plan, out)}
        return result

    def tclean(*args: Any, **kwargs: Any) -> Any:
        return run_tclean({**dict(zip(names, args)), **kwargs})

    def clean(*args: Any, **kwargs: Any) -> Any:
        call = clean_arguments(args, kwargs)
        t = translate_clean(call, masks)
        result = run_tclean(dict(t.tclean), clean={"arguments": {k: repr(v) for k, v in call.items()},
                                                    "translation": t.lines()})
        if not is_skipped(str(call.get("imagename", ""))):
            link_clean_outputs(str(call["imagename"]), t.pbcor_in_place)
        return result

    def exportfits(*args: Any, **kwargs: Any) -> Any:
        kwargs = {**dict(zip(list(inspect.signature(casatasks.exportfits).parameters), args)), **kwargs}
        image = str(kwargs.get("imagename", ""))
        if is_skipped(image):
            return None
        kwargs["fitsimage"] = str(Path(out) / Path(str(kwargs["fitsimage"])).name)
        kwargs["overwrite"] = True
        exports.append({"imagename": image, "fits": Path(kwargs["fitsimage"]).name})
        return casatasks.exportfits(**kwargs)

    def guarded(task: Any) -> Callable[..., Any]:
        """An image task that does nothing on an image the selection skipped."""
        params = list(inspect.signature(task).parameters)

        def run_task(*args: Any, **kwargs: Any) -> Any:
            kwargs = {**dict(zip(params, args)), **kwargs}
            if is_skipped(str(kwargs.get("imagename", ""))):
                return None
            return task(**kwargs)
        return run_task

    variables: dict[str, Any] = {"tclean": tclean, "exportfits": exportfits}
    for task in ("impbcor", "immath", "imstat", "imhead", "immoments", "imsmooth", "imsubimage", "imrebin"):
        if hasattr(casatasks, task):
            variables[task] = guarded(getattr(casatasks, task))
    if legacy:
        variables = {**clean_era_variables(), **variables, "clean": clean}
    run_script_in_casa(script, os.getcwd(), variables, pass_version_gates=legacy)
    return {"calls": calls, "exports": exports, "skipped": skipped}
