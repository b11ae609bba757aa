"""restore: run a delivery's own scriptForPI.py and report what it cost.

``plan_restore`` looks before it leaps: it validates the member, measures the disk need the way
scriptForPI does (``diskspace.estimate``), picks the CASA that can run the script (modular CASA
through the legacy shim, or an external monolithic ``casa``) and lists every reason to refuse.
``restore`` runs the script in a child process, follows its progress (EB, step), streams its
output and CASA's log to files, samples the disk use of ``calibrated/`` and checks the result.

Files written besides ``calibrated/``: ``<member>/almadeliver-restore/`` (logs, the monolithic
driver, and on ``--resume`` the finished EBs held aside and a shadow ``script/``). raw/ is only read.

The package, by concern: ``plan`` (scriptForPI.py read, the disk estimate, the engine and every
reason to refuse; nothing written), ``progress`` (scriptForPI's output read as EB and step, its
CASA log cut per script), ``run`` (running the script as planned, --resume), ``eb`` (scriptForPI's per-EB stage
while other EBs download) and ``phasecheck`` (the phase scatter of the restored MSs). Cycle 0's concat is in ``almadeliver.casa.concat``. The names
below are the public API, importable from ``almadeliver.casa.restore`` as before the split.
"""
from __future__ import annotations

from .eb import eb_ready, plan_eb_restore, restore_eb
from .phasecheck import phase_scatter, phase_scatter_in_casa
from .plan import (ENGINES, LEVELS, MISMATCH_CHOICES, RestorePlan, ScriptInfo, calibration_scripts, check_options,
                   finished_ebs, inspect_script, plan_restore)
from .progress import Progress, ProgressParser, script_logs
from .run import WORK, RestoreResult, casa_description, restore, run_script
from .run import _logs  # noqa: F401  (casa/concat.py names its logs with it)

__all__ = [
    "phase_scatter", "phase_scatter_in_casa", "ENGINES", "LEVELS", "MISMATCH_CHOICES", "RestorePlan", "ScriptInfo",
    "calibration_scripts", "check_options", "finished_ebs", "inspect_script", "plan_restore", "Progress",
    "ProgressParser", "script_logs", "WORK", "RestoreResult", "casa_description", "restore", "run_script",
    "eb_ready", "plan_eb_restore", "restore_eb",
]
