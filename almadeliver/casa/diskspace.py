"""Disk need of a restore, computed the way scriptForPI does, and the disk use actually measured.

scriptForPI measures raw/ with ``du`` (MB) and the free space with ``df`` before anything runs:
need = raw x 11 at SPACESAVING 0, x 7 at 1, x 3 at 2 and 3, plus raw x 3 at every level when a
flux-, polarization- or imaging-prep script is present (ALMA-FACTS.md section 4).
"""
from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

LEVEL_FACTORS = {0: 11, 1: 7, 2: 3, 3: 3}
EXTRA_FACTOR = 3
EXTRA_SCRIPTS = ("scriptForFluxCalibration.py", "scriptForPolCalibration.py", "scriptForImagingPrep.py")
MB = 1 << 20


def du_bytes(path: Path) -> int:
    """Bytes allocated below ``path``, as ``du`` counts them (blocks, links not followed)."""
    total = 0
    stack = [Path(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while we walk (a restore deletes as it goes)
                    continue
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
    return total


def du_mb(path: Path) -> int:
    """``du -sm``: megabytes, rounded up."""
    return -(-du_bytes(path) // MB)


@dataclass(frozen=True)
class DiskEstimate:
    """What scriptForPI will ask for at each SPACESAVING level, beside the free space."""

    raw_mb: int
    free_mb: int
    extra_scripts: tuple[str, ...]     # the scripts that add raw x 3
    target: str                        # the filesystem the MSs are written to

    def need_mb(self, level: int) -> int:
        if level == -1:
            return 0
        return self.raw_mb * (LEVEL_FACTORS[level] + (EXTRA_FACTOR if self.extra_scripts else 0))

    @property
    def needs(self) -> dict[int, int]:
        return {level: self.need_mb(level) for level in LEVEL_FACTORS}

    def fits(self, level: int) -> bool:
        return level == -1 or self.need_mb(level) <= self.free_mb

    def shortfall_mb(self, level: int) -> int:
        return max(0, self.need_mb(level) - self.free_mb)

    def best_level(self) -> int | None:
        """The lowest SPACESAVING level that fits (keeping the most intermediate files), if any."""
        return next((level for level in LEVEL_FACTORS if self.fits(level)), None)


def estimate(member: Path) -> DiskEstimate:
    """Measure raw/ and the free space where calibrated/ will be written."""
    member = Path(member)
    scripts = {p.name.split(".", 1)[-1] if p.name.startswith("member.") else p.name
               for p in (member / "script").glob("*.py")}
    extra = tuple(s for s in EXTRA_SCRIPTS if s in scripts)
    return DiskEstimate(du_mb(member / "raw"), shutil.disk_usage(member).free // MB, extra, str(member))


@dataclass
class DiskSampler:
    """Samples the size of a folder in a background thread; ``peak`` and ``last`` in bytes."""

    path: Path
    interval: float = 1.0
    peak: int = 0
    last: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def sample(self) -> int:
        self.last = du_bytes(self.path)
        self.peak = max(self.peak, self.last)
        return self.last

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "DiskSampler":
        self.sample()
        self._thread = threading.Thread(target=self._run, name="disk-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()
