"""What every checklist item shares: the checker it adds its verdict to, and the thresholds of warn and FAIL."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol


class _Checker(Protocol):
    """What an item adds its verdict to (staff.py's checker): pass, warn or FAIL, with its numbers."""

    def ok(self, check: str, path: Path | str, message: str, numbers: dict | None = None) -> None: ...

    def warn(self, check: str, path: Path | str, message: str, hint: str, numbers: dict | None = None) -> None: ...

    def fail(self, check: str, path: Path | str, message: str, hint: str, numbers: dict | None = None) -> None: ...


# thresholds of the verdicts (warn, FAIL)
FLAG_WARN, FLAG_FAIL = 0.3, 0.5                 # flagged fraction of a spw at a stage
PHASE_WARN_DEG, PHASE_FAIL_DEG = 10.0, 20.0     # phase rms of a calibrator (time or frequency)
AMP_WARN, AMP_FAIL = 0.1, 0.2                   # amplitude scatter / mean of a calibrator
SETJY_WARN, SETJY_FAIL = 0.1, 0.2               # setjy flux against other EBs / flux.csv
ALLFLUXES_FAIL = 0.05                           # allFluxes.txt against the .fluxscale value
# EBs further apart may see another phase calibrator flux: seed 002 does the combined flux calibration for
# EBs "within one day from each other", seed 001 warns of EBs "more than a few days" apart; EBs on
# consecutive days (up to 2 days between their starts) pass
SEPARATION_WARN_DAYS = 2.0
# achieved / requested rms and resolution: a warning, never a failure (the manual: note on the ticket
# whether the requests are reached; a multi-array SG's MOUS cannot reach them alone; QA2 semipass data
# are delivered too)
RMS_WARN = 1.1
BEAM_WARN = 1.2
