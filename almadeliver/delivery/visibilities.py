"""Figures the staff checklist reads from measurement sets and flag versions (casatools tables only).

Everything here opens tables read-only with ``casatools.table``: no task runs, nothing is written.
The quantities are those the ALMA staff manual (seed 001) asks reducers to look at:

- the flagging rate at each stage of the calibration (``amc.getFlagStatistics``): the flag versions
  ``flagmanager`` saved in ``<vis>.flagversions/flags.<name>``, plus the flags of ``.ms.split.cal``;
- corrected amplitude and phase flat in time and frequency on the calibrators (``plotms`` on
  ``<EB>.ms.split.cal``);
- the fields and spws of ``calibrated.ms`` after concat, and when each EB was observed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TreeError

MJD_S_TO_UNIX = 3506716800.0          # seconds from MJD 0 (1858-11-17) to 1970-01-01
CALIBRATOR_INTENTS = ("CALIBRATE_BANDPASS", "CALIBRATE_PHASE", "CALIBRATE_FLUX", "CALIBRATE_AMPLI")


def _table(path: Path | str):
    from ..casa.runtime import offline_environment

    offline_environment()              # this process reads MSs itself: the offline site config first
    import casatools

    tb = casatools.table()
    if not tb.open(str(path), nomodify=True):
        raise TreeError(f"{path} is not a readable CASA table", "make it again with CASA")
    return tb


@dataclass
class SpwInfo:
    """One spectral window of an MS: id, name, channel frequencies (Hz, as in the MS) and sideband."""

    spw: int
    name: str
    freqs_hz: np.ndarray
    width_hz: float                  # one channel (absolute)
    net_sideband: int

    @property
    def low_hz(self) -> float:
        """The spw's lower edge (Hz)."""
        return float(self.freqs_hz.min() - self.width_hz / 2)

    @property
    def high_hz(self) -> float:
        """The spw's upper edge (Hz)."""
        return float(self.freqs_hz.max() + self.width_hz / 2)

    @property
    def centre_hz(self) -> float:
        """The spw's centre frequency (Hz)."""
        return (self.low_hz + self.high_hz) / 2


@dataclass
class MsSummary:
    """What the checklist needs of one MS (from its subtables and main table columns)."""

    path: Path
    nrows: int
    fields: list[str]
    spws: list[SpwInfo]
    start_s: float                    # MJD seconds of the first and last integration
    end_s: float
    calibrators: dict[int, str] = field(default_factory=dict)   # field id -> name, calibrator intents

    @property
    def start_iso(self) -> str:
        """The first integration's time, UTC, ISO 8601."""
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.start_s - MJD_S_TO_UNIX, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def ms_summary(ms: Path | str) -> MsSummary:
    """Fields, spws, time range and calibrator fields of ``ms`` (TreeError when it is not an MS).

    Parameters
    ----------
    ms : Path | str
        The measurement set.

    Returns
    -------
    MsSummary
        Its fields, spws (Hz), time range (s) and calibrator fields.
    """
    ms = Path(ms)
    tb = _table(ms)
    try:
        nrows = tb.nrows()
        times = tb.getcol("TIME") if nrows else np.array([0.0])
        ddid = tb.getcol("DATA_DESC_ID") if nrows else np.array([], int)
        state = tb.getcol("STATE_ID") if nrows else np.array([], int)
        field_id = tb.getcol("FIELD_ID") if nrows else np.array([], int)
    finally:
        tb.close()
    tb = _table(ms / "FIELD")
    fields = list(tb.getcol("NAME"))
    tb.close()
    tb = _table(ms / "DATA_DESCRIPTION")
    dd_spw = tb.getcol("SPECTRAL_WINDOW_ID")
    tb.close()
    tb = _table(ms / "SPECTRAL_WINDOW")
    spws = []
    for i in range(tb.nrows()):
        freqs = np.atleast_1d(tb.getcell("CHAN_FREQ", i))
        widths = np.abs(np.atleast_1d(tb.getcell("CHAN_WIDTH", i)))
        spws.append(SpwInfo(i, str(tb.getcell("NAME", i)), freqs, float(widths.mean()),
                            int(tb.getcell("NET_SIDEBAND", i))))
    tb.close()
    used = sorted({int(dd_spw[d]) for d in np.unique(ddid)})
    spws = [s for s in spws if s.spw in used] if used else spws
    calibrators: dict[int, str] = {}
    try:
        tb = _table(ms / "STATE")
        modes = list(tb.getcol("OBS_MODE")) if tb.nrows() else []
        tb.close()
    except TreeError:
        modes = []
    for sid, fid in set(zip(state.tolist(), field_id.tolist())):
        if 0 <= sid < len(modes) and any(intent in modes[sid] for intent in CALIBRATOR_INTENTS):
            calibrators[fid] = fields[fid]
    return MsSummary(ms, nrows, fields, spws, float(times.min()), float(times.max()), dict(sorted(calibrators.items())))


def sidebands(spws: list[SpwInfo]) -> list[list[SpwInfo]]:
    """The spws grouped by sideband: by NET_SIDEBAND when the MS tells them apart, else by frequency
    (an ALMA sideband spans at most 4 GHz of IF, and two sidebands lie at least 8 GHz apart).

    Parameters
    ----------
    spws : list[SpwInfo]
        The spws of an MS.

    Returns
    -------
    list[list[SpwInfo]]
        The spws of each sideband, lowest frequency first.
    """
    if len({s.net_sideband for s in spws}) > 1:
        groups: dict[int, list[SpwInfo]] = {}
        for s in spws:
            groups.setdefault(s.net_sideband, []).append(s)
        return sorted(groups.values(), key=lambda g: min(s.low_hz for s in g))
    out: list[list[SpwInfo]] = []
    for s in sorted(spws, key=lambda s: s.low_hz):
        if out and s.low_hz - max(x.high_hz for x in out[-1]) < 4e9:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def flag_fractions(flagversions: Path, ms: MsSummary | None = None) -> dict[str, dict[str, float]]:
    """Flagged fraction of the visibilities at each saved stage: ``{version: {spw: fraction}}``.

    ``flagversions`` is ``<vis>.flagversions``; each ``flags.<name>`` table holds the FLAG column of
    ``<vis>`` as flagmanager saved it. When ``ms`` has the same rows (``.ms.split.cal`` split from
    ``.ms.split`` with keepflags=True), fractions are per spw over the cross-correlations; otherwise
    one fraction over all rows (key ``"all"``).

    Parameters
    ----------
    flagversions : Path
        The ``<vis>.flagversions`` folder.
    ms : MsSummary | None, default None
        The summary of an MS with the same rows (per-spw fractions); None for one overall fraction.

    Returns
    -------
    dict[str, dict[str, float]]
        Version -> spw (or ``all``) -> flagged fraction (0-1).
    """
    ddid = cross = None
    if ms is not None:
        ddid, cross = _spw_and_cross(ms.path)
    out: dict[str, dict[str, float]] = {}
    for table in sorted(flagversions.glob("flags.*"), key=_version_order(flagversions)):
        tb = _table(table)
        try:
            out[table.name[len("flags."):]] = _fractions(tb, ddid if ms is not None and tb.nrows() == ms.nrows else None,
                                                         cross)
        finally:
            tb.close()
    return out


def ms_flag_fractions(ms: MsSummary) -> dict[str, float]:
    """Flagged fraction per spw of the cross-correlations in ``ms`` itself (the final flags).

    Parameters
    ----------
    ms : MsSummary
        The MS's summary.

    Returns
    -------
    dict[str, float]
        Spw -> flagged fraction (0-1).
    """
    spw_of_row, cross = _spw_and_cross(ms.path)
    tb = _table(ms.path)
    try:
        return _fractions(tb, spw_of_row, cross)
    finally:
        tb.close()


def _spw_and_cross(path: Path):
    """Per row of the MS at ``path``: its spw (through DATA_DESCRIPTION) and whether it is a cross-correlation."""
    tb = _table(path)
    ddid, a1, a2 = tb.getcol("DATA_DESC_ID"), tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
    tb.close()
    tb = _table(path / "DATA_DESCRIPTION")
    dd_spw = tb.getcol("SPECTRAL_WINDOW_ID")
    tb.close()
    return dd_spw[ddid], a1 != a2


def _version_order(flagversions: Path):
    """Order of the versions as FLAG_VERSION_LIST lists them (the order they were saved)."""
    listing = flagversions / "FLAG_VERSION_LIST"
    names = [line.split(" : ")[0].strip() for line in listing.read_text().splitlines()] if listing.is_file() else []
    return lambda p: (names.index(p.name[6:]) if p.name[6:] in names else len(names), p.name)


def _fractions(tb, spw_of_row, cross) -> dict[str, float]:
    """Fraction of flagged cells per spw (or "all"), reading FLAG cell by cell shape group."""
    counts: dict[str, list[int]] = {}
    n = tb.nrows()
    step = 20000
    for start in range(0, n, step):
        nrow = min(step, n - start)
        try:
            flags = [tb.getcol("FLAG", start, nrow)]
            shapes = None
        except RuntimeError:        # cells of different shapes (spws with other channel counts)
            flags, shapes = [tb.getcell("FLAG", r) for r in range(start, start + nrow)], True
        for i in range(nrow):
            row = start + i
            if cross is not None and spw_of_row is not None and not cross[row]:
                continue
            key = str(int(spw_of_row[row])) if spw_of_row is not None else "all"
            cell = flags[i] if shapes else flags[0][..., i]
            c = counts.setdefault(key, [0, 0])
            c[0] += int(np.count_nonzero(cell))
            c[1] += int(cell.size)
    return {k: (v[0] / v[1] if v[1] else 0.0) for k, v in sorted(counts.items(), key=lambda kv: kv[0])}


@dataclass
class CalibratorSeries:
    """Calibrated visibilities of one calibrator in one spw, averaged over baselines, correlations
    and channels (vs time) or over baselines, correlations and time (vs frequency)."""

    field: str
    spw: int
    times_s: np.ndarray
    amp_t: np.ndarray
    phase_t_deg: np.ndarray
    freqs_hz: np.ndarray
    amp_f: np.ndarray
    phase_f_deg: np.ndarray

    def numbers(self) -> dict[str, float]:
        """Scatter in time and frequency: amplitude as a fraction of its mean, phase rms in degrees.

        Returns
        -------
        dict[str, float]
            ``amp_scatter_time``, ``amp_scatter_freq`` (fractions), ``phase_rms_time_deg``,
            ``phase_rms_freq_deg`` (degrees).
        """
        return {"amp_scatter_time": _rel_std(self.amp_t), "phase_rms_time_deg": _std(self.phase_t_deg),
                "amp_scatter_freq": _rel_std(self.amp_f), "phase_rms_freq_deg": _std(self.phase_f_deg),
                "mean_amp_jy": float(np.nanmean(self.amp_t)) if self.amp_t.size else float("nan")}


def _std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x)) if x.size > 1 else 0.0


def _rel_std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x) / np.mean(x)) if x.size > 1 and np.mean(x) else 0.0


def calibrator_series(ms: MsSummary, column: str = "DATA") -> list[CalibratorSeries]:
    """Per calibrator field and spw of ``ms`` (a ``.ms.split.cal``, whose DATA is the corrected data):
    amplitude and phase against time and frequency, unflagged cross-correlations only.

    Parameters
    ----------
    ms : MsSummary
        The summary of a ``.ms.split.cal``.
    column : str, default "DATA"
        The data column to read.

    Returns
    -------
    list[CalibratorSeries]
        One series per calibrator field and spw.
    """
    tb = _table(ms.path / "DATA_DESCRIPTION")
    dd_spw = tb.getcol("SPECTRAL_WINDOW_ID")
    tb.close()
    freqs = {s.spw: s.freqs_hz for s in ms.spws}
    out = []
    tb = _table(ms.path)
    try:
        for fid, name in ms.calibrators.items():
            for dd, spw in enumerate(dd_spw):
                sub = tb.query(f"FIELD_ID=={fid} && DATA_DESC_ID=={dd} && ANTENNA1!=ANTENNA2")
                try:
                    if not sub.nrows():
                        continue
                    data = sub.getcol(column)            # (corr, chan, row)
                    flag = sub.getcol("FLAG")
                    time = sub.getcol("TIME")
                finally:
                    sub.close()
                vis = np.where(flag, np.nan, data)
                # the phase reference of each spw: its mean over everything, so phases scatter around 0
                ref = np.nanmean(vis)
                vis = vis / (ref / abs(ref)) if ref and np.isfinite(ref) else vis
                utimes = np.unique(time)
                with warnings.catch_warnings():     # all-flagged integrations and channels average to NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    per_t = np.array([np.nanmean(vis[:, :, time == t]) for t in utimes])
                    per_f = np.nanmean(vis, axis=(0, 2))
                out.append(CalibratorSeries(name, int(spw), utimes, np.abs(per_t), np.degrees(np.angle(per_t)),
                                            freqs.get(int(spw), np.arange(per_f.size, dtype=float)),
                                            np.abs(per_f), np.degrees(np.angle(per_f))))
    finally:
        tb.close()
    return out
