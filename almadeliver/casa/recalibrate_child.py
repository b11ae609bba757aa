"""The CASA side of ``recalibrate``: a calibration script's steps run one by one in a CASA child.

``recalibrate_in_casa`` runs in the working copy (``run_in_casa``); before step N it saves the flags
of the MS the step works on as flag version ``FLAG_PREFIX + N`` (or restores them when N runs again)
and prints ``START_LINE`` / ``DONE_LINE`` / ``RESTORED_LINE``, which the parent reads as they come.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

FLAG_PREFIX = "almadeliver_before_step_"
START_LINE = re.compile(r"^almadeliver: step (\d+) start\t(.*)$")
DONE_LINE = re.compile(r"^almadeliver: step (\d+) done in ([\d.]+) s$")
RESTORED_LINE = re.compile(r"^almadeliver: step (\d+): flags restored to (\S+)$")


def _flag_versions(ms: str) -> list[str]:
    """The flag versions of ``ms`` (its ``.flagversions/FLAG_VERSION_LIST``, as flagmanager keeps it)."""
    path = os.path.join(ms + ".flagversions", "FLAG_VERSION_LIST")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return [line.split(" : ")[0].strip() for line in fh if line.strip()]


def _analysis_utils():
    """analysisUtils when importable, else a stand-in whose use says so (steps that need it were refused
    or skipped by the plan; the generator's header makes ``es`` with it when applyonly is false)."""
    try:
        import analysisUtils  # type: ignore[import-not-found]

        return analysisUtils
    except ImportError:
        pass

    class Missing:
        def __init__(self, name: str):
            self._name = name

        def __getattr__(self, attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)
            if self._name == "aU" and attr == "stuffForScienceDataReduction":
                return lambda *a, **k: Missing("es")
            raise RuntimeError(f"analysisUtils is not installed: {self._name}.{attr} cannot run in modular CASA")

    return Missing("aU")


def file_stamp(path: str | Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another: (inode, mtime in ns, size), None when missing.

    A file (re)written by a run has another stamp after it than before; comparing times instead
    would take a file written just before the run (within the clock's or the filesystem's
    resolution) for one the run wrote.

    Parameters
    ----------
    path : str | Path
        A file.

    Returns
    -------
    tuple[int, int, int] | None
        Its inode, modification time (ns since 1970) and size in bytes; None when it does not exist.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _columns_by_spw(tb: Any, columns: list[str]) -> Iterator[list[Any]]:
    """The ``columns`` of an open table, one data description (spw) at a time, rows in table order: the
    spws of one MS may have different channel counts, which one getcol over the whole table refuses."""
    import numpy as np

    for ddid in np.unique(tb.getcol("DATA_DESC_ID")):
        sub = tb.query(f"DATA_DESC_ID=={int(ddid)}")
        try:
            yield [sub.getcol(c) for c in columns]
        finally:
            sub.close()


def _flagged_fraction(ms: str) -> float | None:
    import casatools
    import numpy as np

    if not os.path.isfile(os.path.join(ms, "table.dat")):
        return None
    tb = casatools.table()
    tb.open(ms)
    flagged = total = 0
    for (f,) in _columns_by_spw(tb, ["FLAG"]):
        flagged += int(np.count_nonzero(f))
        total += f.size
    tb.close()
    return flagged / total if total else None


def compare_calibrated(new: str, delivered: str) -> dict[str, Any]:
    """(CASA child) Flags and DATA of two calibrated MSs (same shape), and their phase rms.

    ``max_relative_difference`` is max |new - delivered| over the visibilities unflagged in both,
    divided by the rms of |delivered| over them.

    Parameters
    ----------
    new : str
        The recalibrated MS.
    delivered : str
        The delivered calibrated MS.

    Returns
    -------
    dict[str, Any]
        ``flags_equal``, ``flags_differing``, ``max_relative_difference``, ``phase_rms_deg`` and
        ``delivered_phase_rms_deg`` (degrees).
    """
    import casatools
    import numpy as np

    from .restore import phase_scatter_in_casa

    cols = {}
    for name, ms in (("new", new), ("old", delivered)):
        tb = casatools.table()
        tb.open(ms)
        parts = list(_columns_by_spw(tb, ["DATA", "FLAG"]))
        tb.close()
        cols[name] = ([d.shape for d, _ in parts], np.concatenate([d.ravel() for d, _ in parts]),
                      np.concatenate([f.ravel() for _, f in parts]))
    (shape_n, dn, fn), (shape_o, do, fo) = cols["new"], cols["old"]
    out: dict[str, Any] = {}
    if shape_n != shape_o:
        out.update(flags_equal=False, flags_differing=None, max_relative_difference=None)
    else:
        ok = ~(fn | fo)
        scale = float(np.sqrt(np.mean(np.abs(do[ok]) ** 2))) if ok.any() else 0.0
        out.update(flags_equal=bool((fn == fo).all()), flags_differing=int(np.count_nonzero(fn != fo)),
                   max_relative_difference=float(np.max(np.abs(dn[ok] - do[ok])) / scale) if scale else None)
    scatter = phase_scatter_in_casa([new, delivered])
    out.update(phase_rms_deg=scatter[new]["rms_deg"], delivered_phase_rms_deg=scatter[delivered]["rms_deg"])
    return out


def recalibrate_in_casa(script: str, eb: str, steps: list[int], split_step: int | None, titles: dict[str, str],
                        pass_version_gates: bool = False, delivered_calibrated: str | None = None) -> dict[str, Any]:
    """(CASA child, run in the working copy) Run ``steps`` of ``script`` one by one, with applyonly
    false, saving (first run) or restoring (a rerun) the flags before each step; then compare.

    Parameters
    ----------
    script : str
        The EB's calibration script (the working copy's).
    eb : str
        The EB (``uid___...``).
    steps : list[int]
        The step numbers to run, in order.
    split_step : int | None
        The step that splits out the science spws (None: none run).
    titles : dict[str, str]
        Step number (text) -> title.
    pass_version_gates : bool, default False
        Let the exact-version gates pass.
    delivered_calibrated : str | None, default None
        The delivered ``.ms.split.cal`` to compare with (None: no comparison).

    Returns
    -------
    dict[str, Any]
        ``times`` ((step, seconds) pairs), ``flagged_fraction`` and ``comparison`` (when the run
        (re)made the ``.split.cal``).
    """
    from casatasks import flagmanager

    from .legacy import legacy_globals

    vis = f"{eb}.ms"
    namespace = legacy_globals({"applyonly": False, "aU": _analysis_utils(), "mysteps": []},
                               pass_version_gates=pass_version_gates)
    times: list[tuple[int, float]] = []
    last_target = vis
    cal = vis + ".split.cal"
    before = file_stamp(os.path.join(cal, "table.dat"))
    for n in steps:
        target = vis + ".split" if split_step is not None and n > split_step else vis
        last_target = target
        version = f"{FLAG_PREFIX}{n}"
        if os.path.isfile(os.path.join(target, "table.dat")):
            if version in _flag_versions(target):
                flagmanager(vis=target, mode="restore", versionname=version)
                print(f"almadeliver: step {n}: flags restored to {version}", flush=True)
            else:
                flagmanager(vis=target, mode="save", versionname=version,
                            comment=f"flags before step {n} (almadeliver recalibrate)")
        title = titles.get(str(n), "")
        print(f"almadeliver: step {n} start\t{title}", flush=True)
        start = time.monotonic()
        namespace["mysteps"] = [n]
        try:
            namespace["execfile"](script)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise RuntimeError(f"step {n} ({title}) exited: {exc.code}") from None
        except Exception as exc:
            raise RuntimeError(f"step {n} ({title}) failed: {type(exc).__name__}: {exc}") from None
        seconds = time.monotonic() - start
        times.append((n, round(seconds, 3)))
        print(f"almadeliver: step {n} done in {seconds:.1f} s", flush=True)
        for ms in {vis, vis + ".split"}:          # what later steps saved is stale now
            for stale in _flag_versions(ms):
                if stale.startswith(FLAG_PREFIX) and int(stale[len(FLAG_PREFIX):]) > n:
                    flagmanager(vis=ms, mode="delete", versionname=stale)
    out: dict[str, Any] = {"times": times, "flagged_fraction": _flagged_fraction(last_target)}
    # compared only when this run (re)made it: an older one would not show the steps just run
    if delivered_calibrated and file_stamp(os.path.join(cal, "table.dat")) not in (None, before):
        out["comparison"] = compare_calibrated(os.path.abspath(cal), delivered_calibrated)
    return out
