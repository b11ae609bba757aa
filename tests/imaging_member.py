"""A restored pipeline member folder for the imaging tests that run no CASA (empty MS folders)."""
from __future__ import annotations

from pathlib import Path

MOUS = "uid___A001_X1_X3"
EB = "uid___A002_Xab_X12"


def pipeline_member(root: Path, commands_log: str, contdat: str, split_cal: bool = False) -> Path:
    """``root/member.<MOUS>`` as restore leaves it: ``log/<MOUS>.casa_commands.log`` and
    ``calibration/<MOUS>.cont.dat`` holding the given texts, the restored ``calibrated/working/<EB>.ms``
    (and ``calibrated/<EB>.ms.split.cal`` with ``split_cal``) as empty folders, and empty product/ and
    script/."""
    m = Path(root) / f"member.{MOUS}"
    for sub in ("log", "product", "calibration", "calibrated/working", "script"):
        (m / sub).mkdir(parents=True)
    (m / "log" / f"{MOUS}.casa_commands.log").write_text(commands_log)
    (m / "calibration" / f"{MOUS}.cont.dat").write_text(contdat)
    if split_cal:
        (m / "calibrated" / f"{EB}.ms.split.cal").mkdir()
    (m / "calibrated" / "working" / f"{EB}.ms").mkdir()
    return m
