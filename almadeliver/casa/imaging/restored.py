"""The restored MSs a re-imaging reads: which MS holds an EB's calibrated data, in which column, and
how the pipeline's spw ids map onto it (``<EB>.ms.split.cal`` renumbers them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import TreeError
from ...ids import UID_DISK_PATTERN
from .overrides import spw_ids


_EB_RE = re.compile(UID_DISK_PATTERN)


@dataclass(frozen=True)
class Restored:
    """The restored MSs of a member: one per EB, and the combined manual calibrated.ms if present."""

    by_eb: dict[str, Path]
    combined: Path | None


def restored_mss(member: Path) -> Restored:
    """Restored MSs under calibrated/: working/<EB>.ms (pipeline ids) first, else calibrated/<EB>.ms (the
    link scriptForPI v2.x makes to it), else <EB>.ms.split.cal. Only these exact names count: an
    ``<EB>_targets.ms`` a pipeline run left in working/ is not a restored MS.

    Parameters
    ----------
    member : Path
        The member folder.

    Returns
    -------
    Restored
        The restored MSs, by EB uid, and where they were found.
    """
    cal = Path(member) / "calibrated"
    by_eb: dict[str, Path] = {}
    for pattern, suffix in (("*.ms.split.cal", ".ms.split.cal"), ("*.ms", ".ms"), ("working/*.ms", ".ms")):
        for ms in sorted(cal.glob(pattern)):  # later patterns win
            m = _EB_RE.match(ms.name)
            if m and ms.name == m.group(0) + suffix and ms.is_dir():
                by_eb[m.group(0)] = ms
    combined = next((p for p in (cal / "calibrated_final.ms", cal / "calibrated.ms") if p.is_dir()), None)
    return Restored(by_eb, combined)


def calibrated_column(ms: str | Path) -> str:
    """The column of ``ms`` that holds the calibrated visibilities: ``corrected`` in the MSs that
    hifa_restoredata calibrates in place (``working/<EB>.ms``, and ``calibrated/<EB>.ms``, scriptForPI's
    link to it); ``data`` in split MSs (``<EB>.ms.split.cal``, ``calibrated.ms``, ``calibrated_final.ms``,
    ``<EB>_targets.ms``, continuum-subtracted copies). Decided from the name; the CASA child checks the
    column is there before tclean reads it.

    Parameters
    ----------
    ms : str | Path
        The MS path.

    Returns
    -------
    str
        ``corrected`` or ``data`` (tclean's datacolumn).
    """
    name = Path(str(ms).rstrip("/")).name
    m = _EB_RE.match(name)
    return "corrected" if m and name == m.group(0) + ".ms" else "data"


def restore_spw_record(member: Path, eb: str) -> dict[str, str] | None:
    """Pipeline spw id -> spw id in ``<EB>.ms.split.cal`` as the restore made it, from the split or
    mstransform call that wrote it in ``calibrated/working/casa_commands.log`` (native restore): its spw
    selection, renumbered from 0 when it re-indexed (split always does; mstransform with reindex=True).
    None when no such call is recorded.

    Parameters
    ----------
    member : Path
        The member folder.
    eb : str
        The EB (``uid___...``).

    Returns
    -------
    dict[str, str] | None
        Pipeline spw id -> split spw id, or None.
    """
    from ...delivery.calls import iter_calls

    log = Path(member) / "calibrated" / "working" / "casa_commands.log"
    if not log.is_file():
        return None
    found = None
    for call in iter_calls(log.read_text(), source=str(log)):
        out = Path(str(call.kwargs.get("outputvis", "")).rstrip("/")).name
        if call.task in ("split", "mstransform") and out == f"{eb}.ms.split.cal":
            found = call
    if found is None:
        return None
    ids = spw_ids(found.kwargs.get("spw", ""))
    reindex = found.task == "split" or bool(found.kwargs.get("reindex", True))
    return {old: (str(new) if reindex else old) for new, old in enumerate(sorted(ids, key=int))}


def split_spw_map(member: Path, eb: str) -> dict[str, str]:
    """Pipeline spw id -> spw id in ``<EB>.ms.split.cal``: as the restore recorded it
    (``restore_spw_record``), else from the science spws (``science_spws``) and the number of rows of
    the split MS's SPECTRAL_WINDOW table, read in CASA (``split_ids``).

    Parameters
    ----------
    member : Path
        The member folder.
    eb : str
        The EB (``uid___...``).

    Returns
    -------
    dict[str, str]
        Pipeline spw id -> split spw id.

    Raises
    ------
    TreeError
        Without a record, the calapply.txt has no TARGET applycal line to tell the science spws.
    """
    recorded = restore_spw_record(member, eb)
    if recorded is not None:
        return recorded
    science = science_spws(member, eb)
    if not science:
        raise TreeError(f"cannot map the pipeline's spw ids onto {eb}.ms.split.cal: no TARGET applycal line "
                        f"with spws in calibration/{eb}.ms.calapply.txt",
                        f"restore with SPACESAVING below 2 to keep calibrated/working/{eb}.ms")
    return split_ids(science, _spw_rows(Path(member) / "calibrated" / f"{eb}.ms.split.cal"))


def science_spws(member: Path, eb: str) -> list[str]:
    """The science spw ids of an EB in the pipeline's numbering: the spws of the applycal lines with
    the TARGET intent in ``calibration/*<EB>.ms.calapply.txt`` (the spws the split of scriptForPI keeps).

    Parameters
    ----------
    member : Path
        The member folder.
    eb : str
        The EB's uid in its disk form (``uid___A002_Xab_X12``).

    Returns
    -------
    list of str
        The spw ids in increasing numerical order; empty when there is no such file or line.
    """
    from ...delivery.calapply import read_calapply

    found = sorted((Path(member) / "calibration").glob(f"*{eb}.ms.calapply.txt"))
    return sorted({s for c in (read_calapply(found[0]) if found else []) if "TARGET" in c.intent.split(",")
                   for s in spw_ids(c.spw)}, key=int)


def split_ids(science: list[str], spw_rows: int) -> dict[str, str]:
    """Pipeline spw id -> spw id in a split MS, from the spws it kept and its SPECTRAL_WINDOW rows.

    A split that did not re-index keeps every row of the ASDM (scriptForPI v2.x, EBs with the same
    spws): the table then has a row past the highest science id, and the ids are kept. A split that
    re-indexed holds only the science spws, renumbered from 0 in increasing order: fewer rows than
    the highest science id + 1.

    Parameters
    ----------
    science : list of str
        The science spw ids the split kept (``science_spws``), increasing, not empty.
    spw_rows : int
        The number of rows of the split MS's SPECTRAL_WINDOW table.

    Returns
    -------
    dict of str to str
        Pipeline spw id -> spw id in the split MS.
    """
    if spw_rows > max(int(s) for s in science):
        return {old: old for old in science}
    return {old: str(new) for new, old in enumerate(science)}


def _spw_rows(ms: Path) -> int:
    """The number of rows of an MS's SPECTRAL_WINDOW table (read in a CASA child)."""
    from ...errors import CasaError
    from ..runtime import run_in_casa

    if not (ms / "SPECTRAL_WINDOW" / "table.dat").is_file():
        raise TreeError(f"cannot tell which spw ids {ms.name} carries: {ms}/SPECTRAL_WINDOW is not a table",
                        "restore the data again (almadeliver restore)")
    try:
        return int(run_in_casa(spw_rows_in_casa, {"ms": str(ms)}, workdir=ms.parent))
    except CasaError as exc:
        raise TreeError(f"cannot read the spw table of {ms.name} ({exc.message})",
                        "restore the data again (almadeliver restore)") from None


def spw_rows_in_casa(ms: str) -> int:
    """CASA child: rows of ``ms``/SPECTRAL_WINDOW.

    Parameters
    ----------
    ms : str
        The MS path.

    Returns
    -------
    int
        The row count.
    """
    from casatools import table

    tb = table()
    tb.open(f"{ms}/SPECTRAL_WINDOW")
    try:
        return int(tb.nrows())
    finally:
        tb.close()


def remap_spw(spw: str, mapping: dict[str, str] | None, ms: str) -> str:
    """A spw selection ('17:1~9;20~30,19', '') with its spw ids renumbered by ``mapping`` (None: as is).

    Parameters
    ----------
    spw : str
        The spw selection.
    mapping : dict[str, str] | None
        Old spw id -> new spw id (None: keep the ids).
    ms : str
        The MS it selects in (for the error message).

    Returns
    -------
    str
        The selection with new ids.

    Raises
    ------
    TreeError
        A spw of the selection is not in ``mapping`` (not in the MS).
    """
    if mapping is None:
        return spw
    parts = []
    for part in str(spw).split(","):
        m = re.match(r"(\s*)(\d+)(.*)$", part, flags=re.S)
        if m is None:
            parts.append(part)
        elif m.group(2) not in mapping:
            raise TreeError(f"spw {m.group(2)} of a delivered tclean call is not in {Path(ms).name} "
                            f"(science spws {', '.join(mapping)})", "restore the data again with SPACESAVING 0 or 1")
        else:
            parts.append(m.group(1) + mapping[m.group(2)] + m.group(3))
    return ",".join(parts)


def rewrite_vis(vis: Any, spw: Any, restored: Restored, member: Path) -> tuple[list[str], Any]:
    """The pipeline's vis names pointed at the restored MSs (matched by EB uid), and its spw selection
    renumbered for each MS that is an ``<EB>.ms.split.cal`` (``split_spw_map``). A spw list with one
    entry per vis stays one entry per MS; a single selection becomes one per MS when the MSs need
    different numbers.

    Parameters
    ----------
    vis : Any
        The call's vis (a name or a list).
    spw : Any
        The call's spw selection (text or a list).
    restored : Restored
        The restored MSs (``restored_mss``).
    member : Path
        The member folder.

    Returns
    -------
    tuple[list[str], Any]
        (the restored MS paths, the spw selection for them).

    Raises
    ------
    TreeError
        A vis has no restored MS under calibrated/.
    """
    names = list(vis) if isinstance(vis, (list, tuple)) else [vis]
    per_vis = isinstance(spw, (list, tuple)) and len(spw) == len(names)
    mss: list[str] = []
    spws: list[str] = []
    maps: list[dict[str, str] | None] = []
    for i, v in enumerate(names):
        m = _EB_RE.search(str(v))
        mapping = None
        if m and m.group(0) in restored.by_eb:
            ms = str(restored.by_eb[m.group(0)])
            if ms.endswith(".ms.split.cal"):
                mapping = split_spw_map(member, m.group(0))
        elif m is None and restored.combined is not None:
            ms = str(restored.combined)
        else:
            raise TreeError(f"no restored MS for {v} under {Path(member) / 'calibrated'}",
                            f"restore the data first: almadeliver restore {member}")
        if ms in mss:
            continue
        mss.append(ms)
        maps.append(mapping)
        if per_vis:
            spws.append(remap_spw(spw[i], mapping, ms))
    if per_vis:
        return mss, spws
    if all(mp == maps[0] for mp in maps):
        return mss, ([remap_spw(s, maps[0], mss[0]) for s in spw] if isinstance(spw, (list, tuple))
                     else remap_spw(spw, maps[0], mss[0]))
    one = ",".join(spw) if isinstance(spw, (list, tuple)) else spw
    return mss, [remap_spw(one, mp, ms) for mp, ms in zip(maps, mss)]
