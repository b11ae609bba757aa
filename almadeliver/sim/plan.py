"""What a simulated project is made of: uids, arrays, EBs, fields, spws (deterministic per code).

Everything derives from a hash of the project code and the options, so reruns give the same
names. The plan travels to the CASA child as JSON (``asdict``).
"""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field

from ..ids import ProjectCode, Uid

LINE_NAME = "CS_2-1"
LINE_REST_HZ = 97.980953e9
REF_FREQ_HZ = 100.0e9
CHAN_LINE_HZ = 1.953125e6
CHAN_CONT_HZ = 31.25e6
SIDEREAL_DAY = 0.99726957
# array -> (casadata alma/simmos configuration, antennas observe.py takes from it, spread over the
# configuration from its centre to its longest baselines). 12m: 12 pads of C43-2 (baselines 15-279 m,
# a 3.6 x 1.7 arcsec beam at 100 GHz): enough baselines share uv cells that Briggs weighting acts on
# them as on real ALMA data (robust 2 vs -2 beam area ratio 1.43; the 5 antennas of old gave 1.04).
# 7m: the whole 7m array of aca.cycle7.cfg (10 antennas, baselines 9-45 m).
ARRAYS = {"12m": ("alma.cycle10.2.cfg", 12), "7m": ("aca.cycle7.cfg", 10)}
# size -> (integration time in s, channels of each continuum spw over its 500 MHz). "small" keeps
# the tests fast (3 integrations per 30 s scan: the 66 baselines of the 12m array cost what 10 did at
# 6 s); "medium" makes the raw ASDM (~25 MB per EB) dominate CASA's fixed table footprint the way real
# (GB-sized) ALMA data does, for measuring disk use against scriptForPI's estimate.
SIZES = {"small": (10.0, 16), "medium": (5.0, 128)}
CASA_VERSION = "6.7.0"
# The CASA that made a simulated delivery (README, calibration scripts' version gate). Real deliveries
# name the CASA of their cycle, usually older than the one a user installs today (ALMA-FACTS.md s.4).
DELIVERY_CASA_VERSION = "6.5.4-9"
SELFCAL_TARGET_JY = 1.0   # the target continuum of a self-calibration case (make_plan's residual_phase_deg)
_CASA_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:-\d+)?$")
ALMA_LONGITUDE_DEG = -67.755

_PIS = ["Ginsburg, Adam", "Qi, Chunhua", "Leroy, Adam", "Molinari, Sergio", "Turner, Jordan", "Motte, Frederique"]
_TARGETS = ["NGC_253", "W51_e2", "TW_Hya", "G008.67", "NGC_3627", "Orion_KL"]
_CATEGORIES = [("Active galaxies", "Galaxy structure & evolution"),
               ("ISM and star formation", "Intermediate-mass star formation"),
               ("Disks and planet formation", "Disks around low-mass stars")]


def refant(array: str) -> str:
    """The reference antenna of an array (the first antenna observe.py names)."""
    return "CM01" if array == "7m" else "DA41"


def _hash(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _hexnum(h: str, digits: int) -> str:
    """A uid component: X followed by hex digits without a leading zero."""
    text = h[:digits].lstrip("0") or "1"
    return f"X{text}"


def ous_uid(code: str, *path: object) -> Uid:
    """A deterministic OUS uid (``uid://A001/...``) for ``code`` and a path of names under it."""
    h = _hash(code, "ous")
    return Uid(f"uid://A001/{_hexnum(h, 4)}/{_hexnum(_hash(code, *path), 3)}")


@dataclass
class EbPlan:
    """One simulated execution block: its uid, the range id of its tables, its start (MJD) and noise seed."""
    uid: str            # uid://A002/<rangeid>/X1 (what exportasdm names the ASDM)
    rangeid: str
    start_mjd: float
    seed: int

    @property
    def disk(self) -> str:
        """The uid in its disk form (``uid___A002_...``)."""
        return Uid(self.uid).disk


@dataclass
class MousPlan:
    """One simulated member OUS: its array (12m or 7m), antenna configuration, scheduling block and EBs."""
    uid: str
    array: str          # 12m | 7m
    config: str         # casadata alma/simmos configuration file
    antennas: int
    sb_name: str
    ebs: list[EbPlan]

    @property
    def disk(self) -> str:
        """The uid in its disk form (``uid___A001_...``)."""
        return Uid(self.uid).disk


@dataclass
class ProjectPlan:
    """Everything a simulated project is made from: its identity, its OUS tree, fields, spws and CASA version."""
    code: str
    flavour: str
    proprietary: bool
    pi: str
    title: str
    category: str
    keyword: str
    sg_uid: str
    gous_uid: str
    mous: list[MousPlan]
    fields: list[dict] = field(default_factory=list)
    spws: list[dict] = field(default_factory=list)          # science spws
    casa_version: str = DELIVERY_CASA_VERSION
    size: str = "small"
    integration_s: float = SIZES["small"][0]
    aux_spws: list[dict] = field(default_factory=list)      # non-science spws the ASDMs also carry
    residual_phase_deg: float = 0.0     # rms of per-antenna phase errors on the target left by calibration

    def field(self, role: str) -> dict:
        """The field of ``role`` (bandpass, phase, target)."""
        return next(f for f in self.fields if f["role"] == role)


def _field_name(ra_deg: float, dec_deg: float) -> str:
    ra_h = (ra_deg % 360.0) / 15.0
    sign = "-" if dec_deg < 0 else "+"
    d = abs(dec_deg)
    return f"J{int(ra_h):02d}{int((ra_h % 1) * 60):02d}{sign}{int(d):02d}{int((d % 1) * 60):02d}"


def _start_mjd(code: ProjectCode, h: str) -> float:
    """A night in the project's cycle: October of its year plus up to 200 days."""
    from astropy.time import Time

    year = int(code.code[:4])
    return float(Time(f"{year}-10-01T00:00:00", scale="utc").mjd) + int(h[:4], 16) % 200 + 0.1


def make_plan(code: str, flavour: str = "manual", mous: int = 1, ebs: int = 1,
              group_12m_7m: bool = False, proprietary: bool = False, size: str = "small",
              casa_version: str = DELIVERY_CASA_VERSION, residual_phase_deg: float = 0.0) -> ProjectPlan:
    """The deterministic plan of a simulated project (``size``: a key of SIZES; ``casa_version``: the
    CASA that made the delivery, e.g. ``6.5.4-9``, written into the README and the version gate of the
    calibration scripts). Raises ValueError for a version not of the form ``6.5.4`` or ``6.5.4-9``.

    ``residual_phase_deg`` > 0 makes a self-calibration case: per-antenna phase errors of that rms
    (deg) on the target only, varying within its scans (the phase calibrator cannot follow them), and
    a target of SELFCAL_TARGET_JY, bright enough (S/N > 100 per integration and antenna) to fix them."""
    if not _CASA_VERSION_RE.match(casa_version):
        raise ValueError(f"CASA version {casa_version!r} is not of the form 6.5.4 or 6.5.4-9")
    project = ProjectCode.parse(code)
    integration_s, cont_nchan = SIZES[size]
    h = _hash(code, flavour)
    start = _start_mjd(project, h)
    arrays = ["12m", "7m"] if group_12m_7m else ["12m"] * mous
    sb_base = _TARGETS[int(h[4:6], 16) % len(_TARGETS)].split("_")[0].lower()
    mous_plans = []
    for i, array in enumerate(arrays):
        eb_plans = []
        for j in range(ebs):
            rangeid = _hexnum(_hash(code, "eb", i, j), 6)
            eb_plans.append(EbPlan(uid=f"uid://A002/{rangeid}/X1", rangeid=rangeid,
                                   start_mjd=round(start + (i * ebs + j) * SIDEREAL_DAY, 6),
                                   seed=int(_hash(code, "seed", i, j)[:8], 16)))
        suffix = "7m" if array == "7m" else ("TC" if i % 2 == 0 else "TE")
        config, antennas = ARRAYS[array]
        mous_plans.append(MousPlan(
            uid=ous_uid(code, "mous", i).archive, array=array, config=config, antennas=antennas,
            sb_name=f"{sb_base}_a_{i + 6:02d}_{suffix}", ebs=eb_plans))
    category, keyword = _CATEGORIES[int(h[6:8], 16) % len(_CATEGORIES)]
    target = _TARGETS[int(h[4:6], 16) % len(_TARGETS)]
    plan = ProjectPlan(
        code=code, flavour=flavour, proprietary=proprietary, pi=_PIS[int(h[8:10], 16) % len(_PIS)],
        title=f"Dense gas kinematics in {target.replace('_', ' ')} (simulated)", category=category,
        keyword=keyword, sg_uid=ous_uid(code, "sg").archive, gous_uid=ous_uid(code, "gous").archive,
        mous=mous_plans, size=size, integration_s=integration_s, casa_version=casa_version)
    place_fields(plan)
    if residual_phase_deg > 0:
        plan.residual_phase_deg = float(residual_phase_deg)
        plan.field("target")["components"][0]["flux_jy"] = SELFCAL_TARGET_JY
    cont_width = CHAN_CONT_HZ * 16 / cont_nchan
    plan.spws = [
        {"name": "spw0", "freq_hz": LINE_REST_HZ - 16 * CHAN_LINE_HZ, "width_hz": CHAN_LINE_HZ, "nchan": 32},
        {"name": "spw1", "freq_hz": 99.5e9, "width_hz": cont_width, "nchan": cont_nchan},
        {"name": "spw2", "freq_hz": 111.5e9, "width_hz": cont_width, "nchan": cont_nchan},
    ]
    plan.aux_spws = aux_spws(plan.spws)       # every flavour: real ASDMs carry them
    return plan


# The water vapour radiometer's spw as real ALMA ASDMs carry it: 4 channels near the 183.31 GHz
# water line. exportasdm refuses two receiver bands in one observation, so observe.py simulates it
# in band 3 (``freq_hz``) and writes its real frequencies (``asdm_freq_hz``) into the ASDM.
WVR_SPW = {"name": "WVR#NOMINAL", "freq_hz": 104.0e9, "width_hz": 31.25e6, "nchan": 4,
           "asdm_freq_hz": 184.55e9, "asdm_width_hz": 1.5e9}


def aux_spws(science: list[dict]) -> list[dict]:
    """The non-science spws a real ALMA ASDM carries: the channel-averaged spw (one channel) beside
    each science spw, then the 4-channel WVR spw (``WVR_SPW``); calibration scripts split them off."""
    return [{"name": f"{s['name']}#CH_AVG", "freq_hz": s["freq_hz"] + (s["nchan"] - 1) * s["width_hz"] / 2,
             "width_hz": s["nchan"] * s["width_hz"], "nchan": 1} for s in science] + [dict(WVR_SPW)]


def _lst_deg(mjd: float) -> float:
    """Local mean sidereal time at ALMA (longitude -67.755 deg), in degrees."""
    return (280.46061837 + 360.98564736629 * (mjd - 51544.5) + ALMA_LONGITUDE_DEG) % 360.0


def place_fields(plan: ProjectPlan) -> None:
    """Put the target near transit at the first EB's start and the calibrators near it."""
    h = _hash(plan.code, "fields")
    ra = (_lst_deg(plan.mous[0].ebs[0].start_mjd) + 5.0) % 360.0
    dec = -50.0 + int(h[:2], 16) / 255.0 * 40.0
    bp_ra, bp_dec = (ra + 12.0) % 360.0, max(-80.0, dec - 6.0)
    ph_ra, ph_dec = (ra + 2.5) % 360.0, dec + 1.5
    target = _TARGETS[int(_hash(plan.code, plan.flavour)[4:6], 16) % len(_TARGETS)]
    plan.fields = [
        {"role": "bandpass", "name": _field_name(bp_ra, bp_dec), "ra_deg": bp_ra, "dec_deg": bp_dec,
         "ref_freq_hz": REF_FREQ_HZ, "components": [{"dx_arcsec": 0.0, "dy_arcsec": 0.0, "flux_jy": 2.5, "spix": -0.7}]},
        {"role": "phase", "name": _field_name(ph_ra, ph_dec), "ra_deg": ph_ra, "dec_deg": ph_dec,
         "ref_freq_hz": REF_FREQ_HZ, "components": [{"dx_arcsec": 0.0, "dy_arcsec": 0.0, "flux_jy": 2.0, "spix": -0.5}]},
        {"role": "target", "name": target, "ra_deg": ra, "dec_deg": dec, "ref_freq_hz": REF_FREQ_HZ,
         "components": copy.deepcopy(TARGET_COMPONENTS)},
    ]


# The science target: a compact source (a point: dust continuum rising with frequency, and the CS line
# with a velocity gradient of +-2 channels, +-12 km/s, across 2 arcsec, as a rotating disk) and extended
# emission (a 4 arcsec Gaussian the longest baselines resolve out, so that uvtaper and masks matter).
TARGET_COMPONENTS = [
    {"dx_arcsec": 0.6, "dy_arcsec": -0.4, "flux_jy": 0.25, "spix": 2.0,
     "line": {"freq_hz": LINE_REST_HZ, "peak_jy": 1.2, "sigma_hz": 3 * CHAN_LINE_HZ,
              "gradient": {"shift_hz": 2 * CHAN_LINE_HZ, "extent_arcsec": 1.0, "pa_deg": 45.0}}},
    {"dx_arcsec": -2.5, "dy_arcsec": 2.0, "flux_jy": 0.3, "spix": 2.5, "fwhm_arcsec": 4.0},
]


def line_halfwidth_hz(line: dict) -> float:
    """Half the frequency range a line covers (Hz): 3 sigma beyond its centre, plus its gradient's shift;
    channels farther than this from ``freq_hz`` are line-free (cont.dat)."""
    return 3 * line["sigma_hz"] + abs(line.get("gradient", {}).get("shift_hz", 0.0))
