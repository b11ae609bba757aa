"""The run journal: one JSON record and one marker file per MOUS and step.

``DEST/.almadeliver/run/<mous>/<step>.json`` holds the last outcome; ``<step>.done`` exists once the
step succeeded, so a rerun skips it and a failed step can be retried alone. ``<step>.running`` says
which host and process run the step now (written by the worker, removed with the outcome), and
``<step>.log`` is the step's own log (every attempt appended).
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import write_atomic
from ..ids import Uid


@dataclass
class StepOutcome:
    """The result of one step of one MOUS, as the run journal records it (``<step>.json``)."""
    project: str
    mous: str                   # uid://...
    step: str
    ok: bool
    skipped: bool = False       # done in an earlier run, or not run because an earlier step failed
    seconds: float = 0.0
    log: str | None = None      # where to look when it failed
    error: str | None = None
    output: dict = field(default_factory=dict)


class StepJournal:
    """The run journal under ``DEST/.almadeliver/run/`` (see the module docstring)."""
    def __init__(self, dest: Path):
        self.root = Path(dest) / ".almadeliver" / "run"

    def _base(self, mous: Uid | str, step: str) -> Path:
        return self.folder(mous) / str(step)

    def folder(self, mous: Uid | str) -> Path:
        """The MOUS's folder: journal records, markers, step logs and the download staging area."""
        return self.root / Uid.of(mous).disk

    def log(self, mous: Uid | str, step: str) -> Path:
        """The step's log file."""
        return self._base(mous, step).with_suffix(".log")

    def start(self, mous: Uid | str, step: str, worker: str) -> None:
        """Say where the step runs now (``<step>.running``: host, pid, worker)."""
        base = self._base(mous, step)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".running").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker, "started": time.time()}))

    def running(self, mous: Uid | str, step: str) -> dict | None:
        """Where the step runs now (host, pid, worker), or None when it does not run."""
        path = self._base(mous, step).with_suffix(".running")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def is_done(self, mous: Uid | str, step: str) -> bool:
        """True when the step succeeded in an earlier run."""
        return self._base(mous, step).with_suffix(".done").is_file()

    def load(self, mous: Uid | str, step: str) -> StepOutcome | None:
        """The last recorded outcome of the step, if any."""
        path = self._base(mous, step).with_suffix(".json")
        return StepOutcome(**json.loads(path.read_text())) if path.is_file() else None

    def record(self, outcome: StepOutcome) -> None:
        """Record an outcome (atomically); a success marks the step done, a failure unmarks it."""
        base = self._base(outcome.mous, outcome.step)
        base.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(base.with_suffix(".json"), json.dumps(asdict(outcome), indent=1, default=str))
        base.with_suffix(".running").unlink(missing_ok=True)
        marker = base.with_suffix(".done")
        if outcome.ok and not outcome.skipped:
            marker.touch()
        elif not outcome.ok:
            marker.unlink(missing_ok=True)
