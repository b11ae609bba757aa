"""One simulated ALMA execution block: casatools.simulator -> MS -> corrupted visibilities -> ASDM.

Runs inside a CASA child (``run_in_casa(observe_ebs_in_casa, ...)``). Each EB
observes a bandpass/flux calibrator, a phase calibrator and a science target with ALMA's scan
intents, in a few spectral windows (one with a spectral line). The visibilities are the sky model
times per-antenna complex gains (slow phase drifts, amplitude errors, a bandpass shape) plus
thermal noise, so that calibration matters. ``exportasdm`` writes the ASDM; its Scan.xml intents
are then rewritten (exportasdm writes every scan as OBSERVE_TARGET) by matching scans by time.
"""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

C_LIGHT = 299_792_458.0

# The scan plan of one EB: (role, ALMA scan intents); roles map to fields. Every scan lasts
# SCAN_S with SCAN_GAP_S between scans, so that exportasdm's subscan windows (SUBSCAN_S) fall on
# scan boundaries (exportasdm writes a whole EB as one scan; observe.py splits it again).
SCAN_PLAN: list[tuple[str, list[str]]] = [
    ("bandpass", ["CALIBRATE_ATMOSPHERE", "CALIBRATE_WVR"]),
    ("bandpass", ["CALIBRATE_BANDPASS", "CALIBRATE_FLUX", "CALIBRATE_WVR"]),
    ("phase", ["CALIBRATE_PHASE", "CALIBRATE_WVR"]),
    ("target", ["OBSERVE_TARGET"]),
    ("phase", ["CALIBRATE_PHASE", "CALIBRATE_WVR"]),
    ("target", ["OBSERVE_TARGET"]),
    ("phase", ["CALIBRATE_PHASE", "CALIBRATE_WVR"]),
    ("target", ["OBSERVE_TARGET"]),
    ("phase", ["CALIBRATE_PHASE", "CALIBRATE_WVR"]),
]
INTEGRATION_S = 10.0
SCAN_S = 30.0
SCAN_GAP_S = 12.0
SUBSCAN_S = SCAN_S + SCAN_GAP_S / 2


def spread_pads(xyz: np.ndarray, count: int) -> list[int]:
    """``count`` pads of a configuration, evenly spaced in their distance from the array centre.

    The subset keeps the configuration's shape: its dense core (many short baselines, so that uv cells
    hold many samples and Briggs weighting acts as on the full array) and its outer pads (the longest
    baselines, the resolution). ``xyz``: (npad, 3) positions in m. Returns pad indices, centre first.
    """
    centre = xyz.mean(axis=0)
    order = np.argsort(np.linalg.norm(xyz - centre, axis=1), kind="stable")
    if count >= len(order):
        return [int(i) for i in order]
    return [int(order[k]) for k in np.round(np.linspace(0, len(order) - 1, count)).astype(int)]


def _antennas(config: str, count: int, array: str) -> dict[str, Any]:
    """``count`` antennas (ITRF positions, pads, ALMA-like names) from a casadata configuration."""
    import casatools
    from casatasks.private.simutil import simutil

    x, y, z, d, pads, _names, _tel, _pos = simutil().readantenna(casatools.ctsys.resolve(f"alma/simmos/{config}"))
    order = sorted(spread_pads(np.array([x, y, z]).T, count))
    if array == "7m":
        names = [f"CM{i + 1:02d}" for i in range(count)]
    else:
        prefixes = ["DA", "DV", "PM"]
        names = [f"{prefixes[i % 3]}{(41 if i % 3 == 0 else 1) + i:02d}" for i in range(count)]
    return {
        "x": [float(x[i]) for i in order], "y": [float(y[i]) for i in order], "z": [float(z[i]) for i in order],
        "diameter": [float(d[i]) for i in order], "pads": [pads[i] for i in order], "names": names,
    }


def _gains(rng: np.random.Generator, nant: int, spws: list[dict], times: np.ndarray) -> dict:
    """Per antenna, polarization and spw: complex gain vs time and a bandpass shape vs channel."""
    t = (times - times.min())
    gains = {}
    for s, spw in enumerate(spws):
        nchan = spw["nchan"]
        chan = np.linspace(-1, 1, nchan)
        for a in range(nant):
            for p in range(2):
                offset = rng.uniform(-math.pi, math.pi) if a else 0.0
                period = rng.uniform(300.0, 900.0)
                drift = np.radians(rng.uniform(20.0, 45.0)) * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
                amp = rng.uniform(0.8, 1.2)
                slope = np.radians(rng.uniform(-25.0, 25.0))
                ripple = 1.0 + 0.05 * np.sin(math.pi * chan * rng.uniform(1.0, 3.0) + rng.uniform(0, math.pi))
                gains[(s, a, p)] = (amp * np.exp(1j * (offset + drift)), ripple * np.exp(1j * slope * chan))
    return gains


def _component_vis(dx_arcsec: float, dy_arcsec: float, fwhm_arcsec: float, spectrum: np.ndarray,
                   freqs: np.ndarray, uvw: np.ndarray) -> np.ndarray:
    """Visibilities (nchan, nrow) of a circular Gaussian (``fwhm_arcsec``; 0: a point) at an offset."""
    l, m = math.radians(dx_arcsec / 3600.0), math.radians(dy_arcsec / 3600.0)
    u, v = uvw[0][None, :] * freqs[:, None] / C_LIGHT, uvw[1][None, :] * freqs[:, None] / C_LIGHT   # wavelengths
    vis = spectrum[:, None] * np.exp(-2j * math.pi * (u * l + v * m))
    if fwhm_arcsec:
        theta = math.radians(fwhm_arcsec / 3600.0)
        vis = vis * np.exp(-(math.pi * theta) ** 2 * (u ** 2 + v ** 2) / (4 * math.log(2)))
    return vis


def line_points(comp: dict) -> list[tuple[float, float, float]]:
    """Where a component's line is emitted: (dx arcsec, dy arcsec, line centre Hz) per point.

    A line with a ``gradient`` ({"shift_hz", "extent_arcsec", "pa_deg"}) is LINE_POINTS points along
    position angle ``pa_deg`` (east of north) within ``extent_arcsec`` of the component, whose line
    centre moves linearly from ``freq_hz - shift_hz`` to ``freq_hz + shift_hz``: a velocity gradient,
    as a rotating disk or an outflow shows. Without one: the component's position and ``freq_hz``.
    """
    line = comp["line"]
    grad = line.get("gradient")
    if not grad:
        return [(comp["dx_arcsec"], comp["dy_arcsec"], line["freq_hz"])]
    pa = math.radians(grad["pa_deg"])
    return [(comp["dx_arcsec"] + t * grad["extent_arcsec"] * math.sin(pa),
             comp["dy_arcsec"] + t * grad["extent_arcsec"] * math.cos(pa), line["freq_hz"] + t * grad["shift_hz"])
            for t in np.linspace(-1.0, 1.0, LINE_POINTS)]


LINE_POINTS = 5


def _sky(field: dict, freqs: np.ndarray, uvw: np.ndarray) -> np.ndarray:
    """Model visibilities (nchan, nrow) of a field's components: points or circular Gaussians
    (``fwhm_arcsec``) with a power-law continuum (``spix``), and optionally a Gaussian line (see
    ``line_points``)."""
    vis = np.zeros((len(freqs), uvw.shape[1]), dtype=complex)
    for comp in field["components"]:
        flux = comp["flux_jy"] * (freqs / field["ref_freq_hz"]) ** comp.get("spix", 0.0)
        vis += _component_vis(comp["dx_arcsec"], comp["dy_arcsec"], comp.get("fwhm_arcsec", 0.0), flux, freqs, uvw)
        if comp.get("line"):
            line = comp["line"]
            points = line_points(comp)
            for dx, dy, centre in points:
                profile = line["peak_jy"] / len(points) * np.exp(-0.5 * ((freqs - centre) / line["sigma_hz"]) ** 2)
                vis += _component_vis(dx, dy, 0.0, profile, freqs, uvw)
    return vis


# Thermal noise (radiometer equation): system temperature (K; SYSCAL holds 60-90 K), aperture and
# correlator efficiencies of ALMA in band 3 (ALMA Technical Handbook).
TSYS_K = 75.0
APERTURE_EFFICIENCY = 0.71
CORRELATOR_EFFICIENCY = 0.96
BOLTZMANN = 1.380649e-23


def sefd_jy(diameter_m: float, tsys_k: float = TSYS_K) -> float:
    """System equivalent flux density (Jy) of one antenna: 2 k Tsys / (eta_A pi D^2 / 4)."""
    return 2 * BOLTZMANN * tsys_k / (APERTURE_EFFICIENCY * math.pi * diameter_m ** 2 / 4) / 1e-26


def visibility_sigma_jy(diameter_i_m: float, diameter_j_m: float, width_hz: float, integration_s: float) -> float:
    """Noise (Jy) of the real and of the imaginary part of one visibility (one correlation, one channel):
    sqrt(SEFD_i SEFD_j) / (eta_c sqrt(2 dnu t)) (Thompson, Moran & Swenson, eq. 6.50)."""
    return math.sqrt(sefd_jy(diameter_i_m) * sefd_jy(diameter_j_m)) / (
        CORRELATOR_EFFICIENCY * math.sqrt(2 * abs(width_hz) * integration_s))


# Residual phases of a self-calibration case: a frozen Kolmogorov phase screen (structure function
# ~ baseline^5/3, 3D turbulence below ~1 km) blown over the array at WIND_M_S, minus what the delivered
# calibration takes out of it (the phase calibrator's per-scan solutions, interpolated linearly in time).
WIND_M_S = 10.0                  # a typical wind at Chajnantor (ALMA Memo 582: 5-12 m/s)
SCREEN_CELL_M = 8.0              # screen resolution, under a 12 m dish


def _enu(itrf: np.ndarray) -> np.ndarray:
    """(nant, 2) east and north (m) of ITRF positions (nant, 3), on the tangent plane at their centre."""
    centre = itrf.mean(axis=0)
    lon = math.atan2(centre[1], centre[0])
    lat = math.atan2(centre[2], math.hypot(centre[0], centre[1]))
    east = np.array([-math.sin(lon), math.cos(lon), 0.0])
    north = np.array([-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)])
    d = itrf - centre
    return np.stack([d @ east, d @ north], axis=1)


def _kolmogorov_screen(rng: np.random.Generator, nx: int, ny: int) -> np.ndarray:
    """A (ny, nx) random phase screen (arbitrary scale) of power spectrum k^-11/3 (Kolmogorov), by FFT."""
    kx, ky = np.fft.fftfreq(nx), np.fft.fftfreq(ny)
    k = np.hypot(kx[None, :], ky[:, None])
    k[0, 0] = np.inf                                  # no piston
    amplitude = k ** (-11.0 / 6.0)
    noise = rng.normal(size=(ny, nx)) + 1j * rng.normal(size=(ny, nx))
    return np.real(np.fft.ifft2(noise * amplitude))


def residual_phases(seed: int, enu: np.ndarray, times: np.ndarray, calibrator_scans: list[tuple[float, float]],
                    on_target: np.ndarray, rms_deg: float) -> np.ndarray:
    """(nant, ntime) phase errors (rad) the delivered calibration leaves on the target.

    A Kolmogorov screen moves over the antennas (``enu``, m) at WIND_M_S from a random direction; the
    calibration removes, per antenna, its mean over each phase-calibrator scan (``calibrator_scans``,
    (start, stop) in the units of ``times``), interpolated linearly in time between scans, as
    ``gaincal(solint='inf')`` on the phase calibrator applied with linear interpolation does. What
    is left (common phase across antennas dropped: it cancels in every baseline) is scaled to
    ``rms_deg`` over the ``on_target`` times. Near antennas get near errors (short baselines suffer
    less), and the errors vary within a target scan, where the calibrator cannot follow them. Drawn
    from a generator of its own: the other corruptions do not change.
    """
    rng = np.random.default_rng(seed + 1)
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    xy = enu @ rot.T                                   # x along the wind
    t = times - times.min()
    span_x = np.ptp(xy[:, 0]) + WIND_M_S * float(t.max()) + 4 * SCREEN_CELL_M
    span_y = np.ptp(xy[:, 1]) + 4 * SCREEN_CELL_M
    nx = int(2 ** math.ceil(math.log2(span_x / SCREEN_CELL_M)))
    ny = int(2 ** math.ceil(math.log2(max(span_y, span_x / 4) / SCREEN_CELL_M)))
    screen = _kolmogorov_screen(rng, nx, ny)
    px = (xy[:, 0] - xy[:, 0].min())[:, None] / SCREEN_CELL_M + WIND_M_S * t[None, :] / SCREEN_CELL_M + 1
    py = (xy[:, 1] - xy[:, 1].min())[:, None] / SCREEN_CELL_M + 1 + 0 * t[None, :]
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    fx, fy = px - x0, py - y0
    phase = (screen[y0, x0] * (1 - fx) * (1 - fy) + screen[y0, x0 + 1] * fx * (1 - fy)
             + screen[y0 + 1, x0] * (1 - fx) * fy + screen[y0 + 1, x0 + 1] * fx * fy)
    if calibrator_scans:
        mids = np.array([(a + b) / 2 for a, b in calibrator_scans])
        means = np.array([[phase[k][(times >= a) & (times <= b)].mean() for a, b in calibrator_scans]
                          for k in range(len(enu))])
        phase = phase - np.array([np.interp(times, mids, means[k]) for k in range(len(enu))])
    phase = phase - phase.mean(axis=0)[None, :]
    rms = float(np.sqrt(np.mean(phase[:, on_target] ** 2))) if on_target.any() else 0.0
    return phase * (math.radians(rms_deg) / rms if rms > 0 else 0.0)


def _scan_spans(times: np.ndarray, rows: np.ndarray, gap_s: float = 5.0) -> list[tuple[float, float]]:
    """(start, stop) of each run of ``rows`` (a mask over ``times``) separated by more than ``gap_s``."""
    t = np.unique(times[rows])
    if not len(t):
        return []
    breaks = np.flatnonzero(np.diff(t) > gap_s)
    starts, stops = np.r_[t[0], t[breaks + 1]], np.r_[t[breaks], t[-1]]
    return [(float(a), float(b)) for a, b in zip(starts, stops)]


def _fill_visibilities(ms: str, spws: list[dict], fields: list[dict], seed: int,
                       diameters: list[float], integration_s: float, residual_phase_deg: float = 0.0) -> None:
    """Write corrupted model visibilities, sigma and weight into the MS simulator made: the thermal
    noise of each visibility follows the radiometer equation for its two dishes, its channel width
    and the integration time (``visibility_sigma_jy``); SIGMA and WEIGHT (1/SIGMA^2) say the same. With
    ``residual_phase_deg``, the target also gets ``residual_phases``."""
    import casatools

    rng = np.random.default_rng(seed)
    tb = casatools.table()
    tb.open(ms)
    times = tb.getcol("TIME")
    nant = int(max(tb.getcol("ANTENNA1").max(), tb.getcol("ANTENNA2").max())) + 1
    tb.close()
    diam = np.array(diameters, dtype=float)
    gains = _gains(rng, nant, spws, np.unique(times))
    target = next((i for i, f in enumerate(fields) if f.get("role") == "target"), None)
    residual = None
    if residual_phase_deg and target is not None:
        tb.open(ms)
        fid_all = tb.getcol("FIELD_ID")
        tb.close()
        tb.open(f"{ms}/ANTENNA")
        enu = _enu(tb.getcol("POSITION").T)
        tb.close()
        phasecal = next(i for i, f in enumerate(fields) if f.get("role") == "phase")
        unique = np.unique(times)
        residual = residual_phases(seed, enu, unique, _scan_spans(times, fid_all == phasecal, 1.5 * integration_s),
                                   np.isin(unique, times[fid_all == target]), residual_phase_deg)
    t_index = {t: i for i, t in enumerate(np.unique(times))}
    tb.open(ms, nomodify=False)
    for s, spw, sub, freqs in spw_rows(tb, spws):
        a1, a2 = sub.getcol("ANTENNA1"), sub.getcol("ANTENNA2")
        fid, uvw = sub.getcol("FIELD_ID"), sub.getcol("UVW")
        ti = np.array([t_index[t] for t in sub.getcol("TIME")])
        model = np.zeros((spw["nchan"], len(a1)), dtype=complex)
        for f, field in enumerate(fields):
            rows = fid == f
            if rows.any():
                model[:, rows] = _sky(field, freqs, uvw[:, rows])
        sigma = np.array([visibility_sigma_jy(diam[i], diam[j], spw["width_hz"], integration_s)
                          for i, j in zip(a1, a2)])
        data = np.zeros((2, spw["nchan"], len(a1)), dtype=complex)
        for p in range(2):
            g = np.array([gains[(s, a, p)][0] for a in range(nant)])         # (antenna, time)
            b = np.array([gains[(s, a, p)][1] for a in range(nant)]).T       # (channel, antenna)
            gi, gj = g[a1, ti], g[a2, ti]
            if residual is not None:
                on = fid == target
                gi[on] *= np.exp(1j * residual[a1[on], ti[on]])
                gj[on] *= np.exp(1j * residual[a2[on], ti[on]])
            noise = sigma[None, :] * (rng.normal(0, 1, model.shape) + 1j * rng.normal(0, 1, model.shape))
            data[p] = (gi * np.conj(gj))[None, :] * b[:, a1] * np.conj(b[:, a2]) * model + noise
        sub.putcol("DATA", data)
        sub.putcol("FLAG", np.zeros(data.shape, dtype=bool))
        sub.putcol("SIGMA", np.vstack([sigma, sigma]))
        sub.putcol("WEIGHT", np.vstack([sigma, sigma]) ** -2)
    tb.close()


def _renumber_scans(ms: str, nspw: int, integration_s: float = INTEGRATION_S) -> list[tuple[float, float]]:
    """One scan number per scan of the plan (the simulator counts one per observe call, and each
    scan is observed once per spw); returns each scan's (start, stop) in MS time."""
    import casatools

    tb = casatools.table()
    tb.open(ms, nomodify=False)
    calls = tb.getcol("SCAN_NUMBER")
    scans = ((calls - 1) // nspw + 1).astype(np.int32)
    tb.putcol("SCAN_NUMBER", scans)
    times = tb.getcol("TIME")
    tb.close()
    half = integration_s / 2
    return [(float(times[scans == n].min() - half), float(times[scans == n].max() + half))
            for n in range(1, int(scans.max()) + 1)]


def _one_observation(ms: str, project: str, integration_s: float = INTEGRATION_S) -> None:
    """One OBSERVATION row spanning every scan. exportasdm closes an ExecBlock once it spans the
    observation's time range and opens another for any row after that; the simulator's range
    covers the first scan only, so the range is set a little longer than the data."""
    import casatools

    tb = casatools.table()
    tb.open(ms)
    times = tb.getcol("TIME")
    tb.close()
    half = integration_s / 2
    tb.open(f"{ms}/OBSERVATION", nomodify=False)
    tb.putcol("TIME_RANGE", np.array([[times.min() - half], [times.max() + 3 * half]]))
    tb.putcell("PROJECT", 0, project)
    tb.close()


def spw_rows(tb, spws: list[dict]):
    """Per spw of the plan that has rows in the open table ``tb``: ``(index, spw, rows, freqs)``, the
    rows a TaQL selection (closed after the caller's step) and ``freqs`` the channel frequencies (Hz, nchan)."""
    for s, spw in enumerate(spws):
        sub = tb.query(f"DATA_DESC_ID=={s}")
        try:
            if sub.nrows():
                yield s, spw, sub, spw["freq_hz"] + spw["width_hz"] * np.arange(spw["nchan"])
        finally:
            sub.close()


def rewrite_rows(ms: str, where: str, sortlist: str) -> None:
    """Rewrite the MS in place keeping the rows ``where`` selects (TaQL, "" for all) in ``sortlist`` order.

    The simulator writes one block per observe call and spw; exportasdm reads scans off the row order
    (``TIME, DATA_DESC_ID, ANTENNA1, ANTENNA2``), and Total Power EBs keep ``ANTENNA1==ANTENNA2``."""
    import casatools

    tb = casatools.table()
    tb.open(ms)
    kept = tb.query(where, sortlist=sortlist)
    kept.copy(f"{ms}.rewritten", deep=True, valuecopy=True)
    kept.close()
    tb.close()
    shutil.rmtree(ms)
    Path(f"{ms}.rewritten").rename(ms)


def _single_polarization(ms: str) -> None:
    """One POLARIZATION row shared by every spw (the simulator writes one per spw; exportasdm
    rejects the duplicates)."""
    import casatools

    tb = casatools.table()
    tb.open(f"{ms}/DATA_DESCRIPTION", nomodify=False)
    tb.putcol("POLARIZATION_ID", np.zeros(tb.nrows(), dtype=np.int32))
    tb.close()
    tb.open(f"{ms}/POLARIZATION", nomodify=False)
    if tb.nrows() > 1:
        tb.removerows(list(range(1, tb.nrows())))
    tb.close()


def _syscal_column(value_type: str, ndim: int = 0, unit: str | None = None, meas: dict | None = None) -> dict:
    column: dict = {"valueType": value_type, "dataManagerType": "StandardStMan", "dataManagerGroup": "StandardStMan",
                    "option": 0, "maxlen": 0, "comment": "", "keywords": {}}
    if ndim:
        column["ndim"] = ndim
    if unit:
        column["keywords"]["QuantumUnits"] = [unit]
    if meas:
        column["keywords"]["MEASINFO"] = meas
    return column


def _add_syscal(ms: str, spws: list[dict], scans: list[dict], seed: int) -> int:
    """A SYSCAL subtable as ALMA's correlator writes it: one Tsys spectrum (K, per polarization and
    channel) per antenna and multi-channel spw at every CALIBRATE_ATMOSPHERE scan (none for the
    one-channel channel-average spws nor the WVR spw). exportasdm writes it to SysCal.xml/.bin, importasdm reads it
    back, and the calibration scripts' ``gencal(caltype='tsys')`` makes the Tsys table from it.
    Returns the number of rows."""
    import casatools

    rng = np.random.default_rng(seed + 1)
    tb = casatools.table()
    desc = {"ANTENNA_ID": _syscal_column("int"), "FEED_ID": _syscal_column("int"),
            "SPECTRAL_WINDOW_ID": _syscal_column("int"),
            "TIME": _syscal_column("double", unit="s", meas={"type": "epoch", "Ref": "UTC"}),
            "INTERVAL": _syscal_column("double", unit="s"),
            "TSYS_SPECTRUM": _syscal_column("float", ndim=2, unit="K"), "TSYS_FLAG": _syscal_column("boolean")}
    tb.create(f"{ms}/SYSCAL", desc)
    tb.close()
    tb.open(f"{ms}/ANTENNA")
    nant = tb.nrows()
    tb.close()
    atmosphere = [s for s in scans if "CALIBRATE_ATMOSPHERE" in s["intents"]]
    rows = [(0.5 * (scan["start_s"] + scan["stop_s"]), a, i, spw) for scan in atmosphere for a in range(nant)
            for i, spw in enumerate(spws) if spw["nchan"] > 1 and "asdm_freq_hz" not in spw]
    tb.open(f"{ms}/SYSCAL", nomodify=False)
    tb.addrows(len(rows))
    for row, (time, antenna, spw_id, spw) in enumerate(rows):
        tsys = rng.uniform(60.0, 90.0) * (1.0 + 0.05 * np.linspace(-1.0, 1.0, spw["nchan"]) ** 2)
        tb.putcell("ANTENNA_ID", row, antenna)
        tb.putcell("FEED_ID", row, 0)
        tb.putcell("SPECTRAL_WINDOW_ID", row, spw_id)
        tb.putcell("TIME", row, time)
        tb.putcell("INTERVAL", row, SCAN_S)
        tb.putcell("TSYS_SPECTRUM", row, np.vstack([tsys, tsys]).astype(np.float32))
        tb.putcell("TSYS_FLAG", row, True)
    tb.close()
    tb.open(ms, nomodify=False)
    tb.putkeyword("SYSCAL", f"Table: {ms}/SYSCAL")
    tb.close()
    return len(rows)


def set_up_simulator(sm: Any, me: Any, ms: str, ant: dict, spws: list[dict], autocorr_weight: float) -> None:
    """Open ``ms`` in CASA's simulator ``sm`` for ALMA: the antennas ``ant`` (x, y, z, diameter, names,
    pads), one spw per entry of ``spws`` (name, freq_hz, width_hz, nchan; TOPO, XX YY), perfect X/Y feeds,
    the 5 deg elevation limit, and autocorrelations weighted ``autocorr_weight`` (0: interferometric
    data, 1: Total Power)."""
    sm.open(ms)
    sm.setconfig(telescopename="ALMA", x=ant["x"], y=ant["y"], z=ant["z"], dishdiameter=ant["diameter"],
                 mount=["ALT-AZ"] * len(ant["x"]), antname=ant["names"], padname=ant["pads"],
                 coordsystem="global", referencelocation=me.observatory("ALMA"))
    for spw in spws:
        sm.setspwindow(spwname=spw["name"], freq=f"{spw['freq_hz']}Hz", deltafreq=f"{spw['width_hz']}Hz",
                       freqresolution=f"{spw['width_hz']}Hz", refcode="TOPO", nchannels=spw["nchan"],
                       stokes="XX YY")
    sm.setfeed(mode="perfect X Y", pol=[""])
    sm.setlimits(shadowlimit=0.01, elevationlimit="5deg")
    sm.setauto(autocorrwt=autocorr_weight)


def simulate_ms(ms: str, eb: dict) -> dict:
    """Make the MS of one EB (see ``observe_ebs_in_casa`` for the keys of ``eb``); returns its scan list."""
    import casatools

    integration_s = float(eb.get("integration_s", INTEGRATION_S))
    sm, me, qa = casatools.simulator(), casatools.measures(), casatools.quanta()
    ant = _antennas(eb["config"], eb["antennas"], eb["array"])
    set_up_simulator(sm, me, ms, ant, eb["spws"], autocorr_weight=0.0)
    for field in eb["fields"]:
        sm.setfield(sourcename=field["name"], sourcedirection=me.direction(
            "J2000", qa.quantity(field["ra_deg"], "deg"), qa.quantity(field["dec_deg"], "deg")))
    sm.settimes(integrationtime=f"{integration_s}s", usehourangle=False,
                referencetime=me.epoch("utc", qa.quantity(eb["start_mjd"], "d")))
    by_role = {f["role"]: f for f in eb["fields"]}
    scans, start = [], 0.0
    for role, intents in SCAN_PLAN:
        for spw in eb["spws"]:
            sm.observe(sourcename=by_role[role]["name"], spwname=spw["name"], starttime=f"{start}s",
                       stoptime=f"{start + SCAN_S}s",
                       state_obs_mode=",".join(f"{i}#ON_SOURCE" for i in intents),
                       observer=eb.get("observer", "alma"), project=eb.get("project", ""))
        scans.append({"field": by_role[role]["name"], "intents": intents})
        start += SCAN_S + SCAN_GAP_S
    sm.close()
    _single_polarization(ms)
    _one_observation(ms, eb.get("project", ""), integration_s)
    for scan, (begin, end) in zip(scans, _renumber_scans(ms, len(eb["spws"]), integration_s)):
        scan.update(start_s=begin, stop_s=end)
    _fill_visibilities(ms, eb["spws"], eb["fields"], eb["seed"], ant["diameter"], integration_s,
                       eb.get("residual_phase_deg", 0.0))
    rewrite_rows(ms, "", "TIME, DATA_DESC_ID, ANTENNA1, ANTENNA2")
    _add_syscal(ms, eb["spws"], scans, eb["seed"])
    return {"scans": scans, "antennas": ant}


def _rows(text: str) -> list[str]:
    return re.findall(r"<row>.*?</row>", text, flags=re.S)


def _set(row: str, tag: str, value: str) -> str:
    return re.sub(rf"<{tag}>.*?</{tag}>", f"<{tag}> {value} </{tag}>", row, count=1, flags=re.S)


def _get_time(row: str, tag: str) -> float:
    return int(re.search(rf"<{tag}>\s*(\d+)", row).group(1)) / 1e9


def _split_scans(asdm: Path, scans: list[dict]) -> None:
    """Give the ASDM one Scan row per simulated scan, with its real intents.

    exportasdm writes the whole EB as one OBSERVE_TARGET scan; its subscans fall inside our
    scans (see SUBSCAN_S). Subscans are matched to scans by time (not by order), renumbered in
    Subscan.xml and Main.xml, and Scan.xml is rewritten with one row per scan.
    """
    def scan_of(start: float, stop: float) -> int:
        mid = 0.5 * (start + stop)
        for n, scan in enumerate(scans, start=1):
            if scan["start_s"] - 1 <= mid <= scan["stop_s"] + 1:
                return n
        raise RuntimeError(f"{asdm.name}: no simulated scan at {mid:.1f} s")

    sub_text = (asdm / "Subscan.xml").read_text()
    renumber: dict[int, tuple[int, int]] = {}
    counts: dict[int, int] = {}
    spans: dict[int, list[float]] = {}
    new_rows = []
    for row in _rows(sub_text):
        old = int(re.search(r"<subscanNumber>\s*(\d+)", row).group(1))
        start, stop = _get_time(row, "startTime"), _get_time(row, "endTime")
        n = scan_of(start, stop)
        counts[n] = counts.get(n, 0) + 1
        renumber[old] = (n, counts[n])
        spans.setdefault(n, []).extend([start, stop])
        new_rows.append(_set(_set(row, "scanNumber", str(n)), "subscanNumber", str(counts[n])))
    for old, new in zip(_rows(sub_text), new_rows):
        sub_text = sub_text.replace(old, new, 1)
    (asdm / "Subscan.xml").write_text(sub_text)

    main_text = (asdm / "Main.xml").read_text()
    for row in _rows(main_text):
        n, k = renumber[int(re.search(r"<subscanNumber>\s*(\d+)", row).group(1))]
        main_text = main_text.replace(row, _set(_set(row, "scanNumber", str(n)), "subscanNumber", str(k)), 1)
    (asdm / "Main.xml").write_text(main_text)

    scan_text = (asdm / "Scan.xml").read_text()
    template = _rows(scan_text)[0]
    rows = []
    for n, scan in enumerate(scans, start=1):
        intents = scan["intents"]
        caltypes = ["NONE" if i in ("OBSERVE_TARGET", "CALIBRATE_WVR") else "FULL_RESOLUTION_CROSS" for i in intents]
        k = len(intents)
        row = _set(template, "scanNumber", str(n))
        row = _set(row, "startTime", str(int(round(min(spans[n]) * 1e9))))
        row = _set(row, "endTime", str(int(round(max(spans[n]) * 1e9))))
        row = _set(row, "numIntent", str(k))
        row = _set(row, "numSubscan", str(counts[n]))
        row = _set(row, "scanIntent", f"1 {k} {' '.join(intents)}")
        row = _set(row, "calDataType", f"1 {k} {' '.join(caltypes)}")
        row = _set(row, "calibrationOnLine", f"1 {k} {' '.join(['false'] * k)}")
        rows.append(row)
    head, tail = scan_text[:scan_text.index("<row>")], scan_text[scan_text.rindex("</row>") + len("</row>"):]
    (asdm / "Scan.xml").write_text(head + "\n".join(rows) + tail)
    asdm_xml = (asdm / "ASDM.xml").read_text()
    asdm_xml = re.sub(r"(<Name> Scan </Name>\s*<NumberRows> )\d+", rf"\g<1>{len(scans)}", asdm_xml)
    (asdm / "ASDM.xml").write_text(asdm_xml)


def _associate_spws(asdm: Path, spws: list[dict]) -> None:
    """Pair each science spw with its channel-average spw in SpectralWindow.xml, as real ASDMs do
    (``assocNature`` CHANNEL_AVERAGE one way, FULL_RESOLUTION the other); importasdm fills the MS's
    ASSOC_SPW_ID/ASSOC_NATURE from them, which casarecipes' tsysspwmap reads. A spw without a
    partner (the WVR spw) is associated with itself, so that both columns are defined on every row."""
    path = asdm / "SpectralWindow.xml"
    text = path.read_text()
    names = [s["name"] for s in spws]
    partner: dict[int, tuple[int, str]] = {}
    for i, name in enumerate(names):
        if f"{name}#CH_AVG" in names:
            j = names.index(f"{name}#CH_AVG")
            partner[i], partner[j] = (j, "CHANNEL_AVERAGE"), (i, "FULL_RESOLUTION")
    for row in _rows(text):
        i = int(re.search(r"<spectralWindowId>\s*SpectralWindow_(\d+)", row).group(1))
        if i in partner:
            j, nature = partner[i]
            extra = (f"<numAssocValues> 1 </numAssocValues> <assocNature> 1 1 {nature} </assocNature> "
                     f"<assocSpectralWindowId> 1 1 SpectralWindow_{j} </assocSpectralWindowId> ")
        else:   # itself: importasdm leaves ASSOC_SPW_ID undefined for an empty list (tsysspwmap reads every row)
            extra = (f"<numAssocValues> 1 </numAssocValues> <assocNature> 1 1 FULL_RESOLUTION </assocNature> "
                     f"<assocSpectralWindowId> 1 1 SpectralWindow_{i} </assocSpectralWindowId> ")
        text = text.replace(row, row.replace("</row>", extra + "</row>"), 1)
    path.write_text(text)


def _array(values: list[float]) -> str:
    return f"1 {len(values)} " + " ".join(f"{v:.1f}".rstrip("0").rstrip(".") for v in values)


def _relabel_spws(asdm: Path, spws: list[dict]) -> None:
    """Give spws simulated at a stand-in frequency (``asdm_freq_hz``, the WVR spw) their real
    frequencies and name in SpectralWindow.xml (exportasdm refuses two receiver bands)."""
    path = asdm / "SpectralWindow.xml"
    text = path.read_text()
    for i, spw in enumerate(spws):
        if "asdm_freq_hz" not in spw:
            continue
        row = next(r for r in _rows(text) if re.search(rf"<spectralWindowId>\s*SpectralWindow_{i}\s*<", r))
        width, n = spw["asdm_width_hz"], spw["nchan"]
        freqs = [spw["asdm_freq_hz"] + k * width for k in range(n)]
        new = _set(row, "refFreq", f"{freqs[0]:.1f}")
        new = _set(new, "totBandwidth", f"{n * width:.1f}")
        new = _set(new, "chanFreqArray", _array(freqs))
        for tag in ("chanWidthArray", "effectiveBwArray", "resolutionArray"):
            new = _set(new, tag, _array([width] * n))
        new = new.replace("</row>", f"<name> {spw['name']} </name> </row>")
        text = text.replace(row, new, 1)
    path.write_text(text)


def _flag_table(asdm: Path, uid: str) -> None:
    """Flag.xml, the online flags every real ALMA ASDM carries (here none: the simulated array has no
    online flags). exportasdm writes no Flag.xml, and importasdm then warns "There is no Flag.xml in
    ASDM"; with it, importasdm reports "No valid flags found in Flag.xml"."""
    container = uid.rsplit("/", 1)[0]
    (asdm / "Flag.xml").write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<FlagTable xmlns:flag="http://Alma/XASDM/FlagTable" xmlns="http://Alma/XASDM/FlagTable" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'schemaVersion="3" schemaRevision="-1">\n'
        f'<Entity entityId="{container}/Xf1a9" entityIdEncrypted="na" entityTypeName="FlagTable" '
        'schemaVersion="1" documentVersion="1"/>\n'
        f'<ContainerEntity entityId="{uid}" entityIdEncrypted="na" entityTypeName="ASDM" schemaVersion="1" '
        'documentVersion="1"/>\n</FlagTable>\n')


def asdm_uid(asdm: Path) -> str:
    """The ASDM's own uid (the container entity of ASDM.xml), e.g. ``uid://A002/Xd28a9e/X1``."""
    text = (Path(asdm) / "ASDM.xml").read_text()
    return re.search(r'<Entity[^>]*entityId="(uid://[^"]+)"', text).group(1)


def observe_ebs_in_casa(ebs: list[dict]) -> list[dict]:
    """Simulate every EB: ``eb`` holds ms, asdm (paths), config, antennas, array, spws, fields,
    start_mjd, seed, archiveid/rangeid (the ASDM uid prefix), and optionally integration_s (default
    INTEGRATION_S). Returns per EB the scans, antennas and the uid inside the ASDM."""
    from casatasks import exportasdm

    results = []
    for eb in ebs:
        for path in (eb["ms"], eb["asdm"]):
            shutil.rmtree(path, ignore_errors=True)
        info = simulate_ms(eb["ms"], eb)
        print(f"simulated {Path(eb['ms']).name}: {len(info['scans'])} scans, "
              f"{len(info['antennas']['names'])} antennas, {len(eb['spws'])} spws", flush=True)
        exportasdm(vis=eb["ms"], asdm=eb["asdm"], archiveid=eb["archiveid"], rangeid=eb["rangeid"],
                   subscanduration=f"{SUBSCAN_S}s", sbduration="86400s", verbose=False)
        _split_scans(Path(eb["asdm"]), info["scans"])
        _associate_spws(Path(eb["asdm"]), eb["spws"])
        _relabel_spws(Path(eb["asdm"]), eb["spws"])
        info["uid"] = asdm_uid(Path(eb["asdm"]))
        _flag_table(Path(eb["asdm"]), info["uid"])
        print(f"exported {Path(eb['asdm']).name} ({info['uid']})", flush=True)
        results.append(info)
    return results


def observe_mous(plan: dict, index: int, raw: Path, work: Path) -> list[dict]:
    """Simulate every EB of MOUS ``index`` of ``plan`` (a ProjectPlan as a dict): the MSs in
    ``work``, the ASDMs in ``raw/<EB>.asdm.sdm``. Checks each ASDM carries the planned uid.

    The ASDMs carry the science spws (``plan["spws"]``) followed by the plan's non-science spws
    (``plan["aux_spws"]``: channel-averaged; none unless the plan has them), observed with
    the plan's ``integration_s`` (default INTEGRATION_S)."""
    mous = plan["mous"][index]
    raw.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    ebs = []
    for eb in mous["ebs"]:
        disk = eb["uid"].replace("uid://", "uid___").replace("/", "_")
        ebs.append({"ms": str(work / f"{disk}.sim.ms"), "asdm": str(raw / f"{disk}.asdm.sdm"),
                    "config": mous["config"], "antennas": mous["antennas"], "array": mous["array"],
                    "spws": plan["spws"] + plan.get("aux_spws", []), "fields": plan["fields"],
                    "integration_s": plan.get("integration_s", INTEGRATION_S), "start_mjd": eb["start_mjd"],
                    "seed": eb["seed"], "archiveid": "A002", "rangeid": eb["rangeid"], "project": plan["code"],
                    "residual_phase_deg": plan.get("residual_phase_deg", 0.0)})
    results = observe_ebs_in_casa(ebs)
    for eb, result in zip(mous["ebs"], results):
        if result["uid"] != eb["uid"]:
            raise RuntimeError(f"exportasdm named the ASDM {result['uid']}, expected {eb['uid']}")
    return results
