"""A restore's progress: scriptForPI's output lines read as which EB and step it is at, and its CASA log cut per script."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...delivery.layout import plain_name
from ...ids import UID_DISK_PATTERN

# -- progress -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """Where the restore is: which EB (n of total) and which step of its calibration script."""

    eb: str | None
    eb_index: int
    eb_total: int
    step: int | None
    title: str | None
    phase: str                   # "checks", "calibration", a flux/imaging-prep script name, "done"


_EB_RE = re.compile(rf"^(?:>>> )?Processing ASDM ({UID_DISK_PATTERN})")
_STEP_RE = re.compile(r"^\s*Step\s+(\d+)\s+(.*?)\s*$")
_EXTRA_RE = re.compile(r"^(?:Executing|Running) (\S*scriptFor(?:Flux|Pol)Calibration\.py|\S*scriptForImagingPrep\.py)")
_PIPE_RE = re.compile(r"^now running (\S+)|^Processing the ASDMs .* using pipeline restore")
_TP_NO_SPLIT_RE = re.compile(rf"^ERROR: ({UID_DISK_PATTERN})\.ms\.split\.cal was not created\.")
_DONE_RE = re.compile(r"^Done\. Please find results in directory|^scriptForPI\.py done")


class ProgressParser:
    """Turns scriptForPI's output lines into ``Progress`` (None when a line changes nothing).

    Parameters
    ----------
    ebs : list[str]
        The EBs (``uid___...``) the run will calibrate, in order.
    """

    def __init__(self, ebs: list[str]):
        self.ebs = list(ebs)
        self.state = Progress(None, 0, len(self.ebs), None, None, "checks")

    def feed(self, line: str) -> Progress | None:
        """Read one output line; the new progress when it changes the phase, EB or step, else None.

        Parameters
        ----------
        line : str
            One line of scriptForPI's output.

        Returns
        -------
        Progress | None
            The new progress, or None.
        """
        s = self.state
        if m := _EB_RE.match(line):
            eb = m.group(1)
            if eb not in self.ebs:
                self.ebs.append(eb)
            new = Progress(eb, self.ebs.index(eb) + 1, len(self.ebs), None, None, "calibration")
        elif (m := _STEP_RE.match(line)) and s.phase != "checks":
            new = Progress(s.eb, s.eb_index, s.eb_total, int(m.group(1)), m.group(2) or None, s.phase)
        elif m := _EXTRA_RE.match(line):
            new = Progress(None, s.eb_index, s.eb_total, None, None, plain_name(m.group(1)))
        elif _PIPE_RE.match(line):
            new = Progress(None, 0, s.eb_total, None, None, "pipeline restore")
        elif _DONE_RE.match(line):
            new = Progress(None, s.eb_index, s.eb_total, None, None, "done")
        else:
            return None
        self.state = new
        return new


def script_logs(casa_log: Path) -> dict[str, str]:
    """A restore's CASA log cut where scriptForPI starts each script: EB uid -> the log of its
    calibration script, ``scriptForFluxCalibration.py`` (and the other combining scripts) -> theirs.
    Lines before the first script and after scriptForPI's last message are left out.

    Parameters
    ----------
    casa_log : Path
        The restore's CASA log.

    Returns
    -------
    dict[str, str]
        EB uid or script name -> its part of the log.
    """
    parser = ProgressParser([])
    parts: dict[str, list[str]] = {}
    current: str | None = None
    for line in Path(casa_log).read_text(errors="replace").splitlines(keepends=True):
        progress = parser.feed(line.rstrip("\n").split("\t", 3)[-1])   # date time, priority, origin, message
        if progress is not None and progress.step is None:              # a script starts, or the run ends
            current = progress.eb if progress.phase == "calibration" else (
                progress.phase if progress.phase.startswith("scriptFor") else None)
        if current:
            parts.setdefault(current, []).append(line)
    return {key: "".join(lines) for key, lines in parts.items()}
