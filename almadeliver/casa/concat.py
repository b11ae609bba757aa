"""Cycle 0 deliveries: the delivered calibrated MSs concatenated into ``calibrated/calibrated.ms``.

A Cycle 0 delivery ships its ``*.ms.split.cal`` already calibrated (``RestorePlan.already_calibrated``);
``almadeliver restore --concat`` joins them with casatasks.concat in a CASA child, as the Cycle 0
flux-calibration scripts do.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import CasaError, DiskSpaceError, TreeError, UsageError
from .diskspace import MB, du_bytes
from .restore import RestorePlan, _logs
from .runtime import run_in_casa


# -- Cycle 0 -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConcatResult:
    """Cycle 0: the delivered ``*.ms.split.cal`` concatenated into ``calibrated/calibrated.ms``."""

    inputs: list[Path]
    output: Path
    seconds: float
    casa_log: Path


def concat_cycle0(plan: RestorePlan, on_line: Callable[[str], None] | None = None) -> ConcatResult:
    """Concatenate a Cycle 0 delivery's calibrated MSs with casatasks.concat in a CASA child."""
    if not plan.already_calibrated:
        raise UsageError(f"{plan.path} is not a Cycle 0 delivery", "run `almadeliver restore` without --concat")
    inputs = sorted(plan.calibrated.glob("*.ms.split.cal"))
    output = plan.calibrated / "calibrated.ms"
    if not inputs:
        raise TreeError(f"no *.ms.split.cal in {plan.calibrated}", "fetch the Cycle 0 delivery tarballs again")
    if output.exists():
        raise TreeError(f"{output} already exists", "move it away to concatenate again")
    needed = -(-sum(du_bytes(p) for p in inputs) // MB)
    free = shutil.disk_usage(plan.calibrated).free // MB
    if needed > free:
        raise DiskSpaceError(f"concat needs {needed} MB in {plan.calibrated}, {free} MB free "
                             f"({needed - free} MB missing)", "free some space first")
    work, casa_log, _ = _logs(plan)
    start = time.monotonic()
    run_in_casa(concat_in_casa,
                {"vis": [str(p) for p in inputs], "concatvis": str(output)},
                workdir=work, logfile=casa_log, on_line=on_line)
    return ConcatResult(inputs, output, time.monotonic() - start, casa_log)


def concat_in_casa(vis: list[str], concatvis: str) -> str:
    """(CASA child) ``concat`` as the Cycle 0 flux-calibration scripts call it."""
    from casatasks import concat

    concat(vis=vis, concatvis=concatvis)
    if not os.path.isfile(os.path.join(concatvis, "table.dat")):
        raise CasaError(f"concat did not write {concatvis}")
    return concatvis
