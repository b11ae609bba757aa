"""scriptForPI's per-EB stage for one EB while the other EBs still download (``run --steps download,restore``).

The combining scripts run later, once, in ``restore`` with ``resume`` (which keeps the EBs finished here).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from ...delivery.layout import CALIBRATION_SCRIPT_SUFFIXES, Flavour, Member, one_member, plain_name, total_power_calibrated
from ...errors import CasaError, TreeError, UsageError
from ..diskspace import EXTRA_SCRIPTS, estimate
from .plan import RestorePlan, _check_scripts, _choose_engine, _readme_casa, check_options, inspect_script
from .run import _logs, _shadow_tree, _variables, run_script


def eb_ready(member: Member, eb: str) -> bool:
    """True when scriptForPI's per-EB stage can run for ``eb`` of a manual delivery: scriptForPI.py and
    the EB's calibration script are in script/, calibration/ is there and the EB's ASDM is in raw/.

    Parameters
    ----------
    member : Member
        The member as found on disk (``delivery.layout``).
    eb : str
        The EB, as on disk (``uid___A002_Xabc_X1``).

    Returns
    -------
    bool
        Whether ``restore_eb`` may run for it now.
    """
    return (member.flavour is Flavour.MANUAL and member.script_for_pi is not None
            and any(u.disk == eb for u in member.calibration_scripts)
            and any(u.disk == eb for u in member.ebs_in_raw) and (member.path / "calibration").is_dir())


def plan_eb_restore(member_dir: str | Path, eb: str, spacesaving: int, dosplit: bool = False,
                    casa: str | Path | None = None, engine: str = "auto",
                    casa_version_mismatch: str = "refuse") -> RestorePlan:
    """Plan scriptForPI's per-EB stage for one EB of a manual delivery whose other EBs may still be
    downloading (nothing is written; the whole delivery is validated later, by the combining restore).

    Parameters
    ----------
    member_dir : str or Path
        The member folder (its script/, calibration/ and the EB's ASDM in raw/ must be there).
    eb : str
        The EB, as on disk (``uid___A002_Xabc_X1``).
    spacesaving : int
        The SPACESAVING level of the whole restore (fixed: the combining restore uses the same).
    dosplit, casa, engine, casa_version_mismatch
        As for ``plan_restore``.

    Returns
    -------
    RestorePlan
        ``todo`` is ``[eb]``; ``refusal`` the first reason not to run (engine, version gates, modules).

    Raises
    ------
    UsageError
        A bad option, or a delivery that is not manual.
    TreeError
        The EB is not ready (``eb_ready``).
    """
    check_options(spacesaving, engine, casa_version_mismatch)
    member = one_member(Path(member_dir).resolve())
    if member.flavour is not Flavour.MANUAL:
        raise UsageError(f"{member.path} is a {member.flavour.value} delivery: scriptForPI's per-EB stage is "
                         "for manual deliveries", "restore it whole, after the download")
    if not eb_ready(member, eb):
        raise TreeError(f"{eb} of {member.path} is not ready (scriptForPI.py, its calibration script, "
                        "calibration/ and its ASDM are needed)", "wait for its files, or restore after the download")
    plan = RestorePlan(member=member, estimate=estimate(member.path), spacesaving=spacesaving, level_chosen=False,
                       dosplit=dosplit, script=inspect_script(member.file(member.script_for_pi)),
                       readme_casa=_readme_casa(member), engine="modular", casa=None, resume=False, todo=[eb],
                       casa_version_mismatch=casa_version_mismatch)
    plan.refusal = _choose_engine(plan, casa, engine) or _check_scripts(plan)
    return plan


def restore_eb(plan: RestorePlan, on_line: Callable[[str], None] | None = None) -> list[Path]:
    """Run scriptForPI's per-EB stage for the plan's one EB, while the other EBs may still download.

    The delivery's own scriptForPI.py runs in a shadow tree (``<member>/almadeliver-restore/eb-<EB>/``)
    whose script/ holds this EB's calibration script and none of the combining scripts, and whose raw/
    holds this EB's ASDM only; what it leaves in the shadow's calibrated/ (``<EB>.calibration/``,
    ``<EB>.ms.split.cal``, the extracted tables) then moves into the member's calibrated/. The combining
    scripts run later, once, in ``restore`` with ``resume`` (which keeps the EBs finished here).

    Parameters
    ----------
    plan : RestorePlan
        From ``plan_eb_restore``.
    on_line : callable, optional
        Receives every output line of scriptForPI.

    Returns
    -------
    list of Path
        What moved into calibrated/.

    Raises
    ------
    CasaError, CasaNotFoundError, CasaVersionMismatchError, ScriptCheckError
        The plan's refusal, or scriptForPI failed or left no ``<EB>.ms.split.cal`` (the shadow is kept).
    TreeError
        What it made is already in calibrated/ (another restore of the EB).
    """
    plan.check()
    eb = plan.todo[0]
    work, _, _ = _logs(plan)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    casa_log, out_log = work / f"casa-{stamp}-{eb}.log", work / f"scriptForPI-{stamp}-{eb}.out"
    shadow = work / f"eb-{eb}"
    if shadow.exists():
        shutil.rmtree(shadow)
    script_dir = plan.script.path.parent
    hidden = {p.name for p in script_dir.iterdir()
              if plain_name(p.name) in EXTRA_SCRIPTS
              or (p.name.endswith(CALIBRATION_SCRIPT_SUFFIXES) and not plain_name(p.name).startswith(eb + "."))}
    _shadow_tree(plan, shadow, hidden, raw_ebs=[eb])
    with open(out_log, "w") as out:
        def line_seen(line: str) -> None:
            out.write(line + "\n")
            if on_line:
                on_line(line)
        try:
            run_script(plan, shadow / "script" / plan.script.path.name, shadow / "script", _variables(plan),
                       casa_log, line_seen)
        except CasaError as exc:
            raise CasaError(f"{eb}: {exc.message}", f"see {out_log} and the CASA log {casa_log}") from None
    made = shadow / "calibrated"
    if not _eb_left(made, eb, plan):
        raise CasaError(f"scriptForPI ended without a calibrated MS for {eb}", f"see {out_log} and {casa_log}")
    plan.calibrated.mkdir(exist_ok=True)
    moved = []
    for p in sorted(made.iterdir()):
        target = plan.calibrated / p.name
        if target.exists() or target.is_symlink():
            raise TreeError(f"{target} is already there (another restore of {eb}?)", f"move {plan.calibrated} away")
        p.rename(target)
        moved.append(target)
    shutil.rmtree(shadow)
    return moved


def _eb_left(calibrated: Path, eb: str, plan: RestorePlan) -> bool:
    """scriptForPI's per-EB stage left the EB's result in ``calibrated``."""
    if eb in plan.total_power:
        return (total_power_calibrated(calibrated, eb) / "table.dat").is_file()
    return (calibrated / f"{eb}.ms.split.cal" / "table.dat").is_file()
