"""Disk need of a restore, computed the way scriptForPI does, and the disk use actually measured.

ALMA's scriptForPI (v1.34 and v2.5 read) changes into raw/ before anything runs and takes
``du -smc $PWD`` (raw/ in MB, rounded up) and the "Available" column of ``df -P -m $PWD`` (MB,
rounded up): need = raw x 11 at SPACESAVING 0, x 7 at 1, x 3 at 2 and 3, plus raw x 3 at every
level when a flux-, polarization- or imaging-prep script is present (ALMA-FACTS.md section 4).
scriptForPI v2.x caps SPACESAVING at 1 for datasets whose calibration used ACreNorm (amplitude
renormalisation): levels 2 and 3 then need, and delete, what level 1 does.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
from typing import Any, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..delivery.layout import FLUX_SCRIPT, plain_name

LEVEL_FACTORS = {0: 11, 1: 7, 2: 3, 3: 3}
EXTRA_FACTOR = 3
EXTRA_SCRIPTS = (FLUX_SCRIPT, "scriptForPolCalibration.py", "scriptForImagingPrep.py")
MB = 1 << 20
ACRENORM_CAP = 1                                   # scriptForPI v2.x: highest level for ACreNorm data
_ACRENORM_RE = re.compile(r"^[^#\n]*\bACreNorm\b", re.M)   # used on a line that is not a comment


def du_bytes(path: Path) -> int:
    """Bytes allocated to ``path`` and below, as ``du -s path/`` counts them: blocks, the folder
    itself included (a symlinked folder is followed), links inside not followed, a file with
    several hard links counted once.

    Parameters
    ----------
    path : Path
        A file or folder.

    Returns
    -------
    int
        Bytes (B) allocated.
    """
    try:
        total = os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = set()
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
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
    return total


def du_mb(path: Path) -> int:
    """``du -sm``: megabytes, rounded up.

    Parameters
    ----------
    path : Path
        A file or folder.

    Returns
    -------
    int
        Megabytes (MB, 2**20 B) allocated, rounded up.
    """
    return -(-du_bytes(path) // MB)


def free_mb(path: Path) -> int:
    """The "Available" column of ``df -P -m``: megabytes, rounded up.

    Parameters
    ----------
    path : Path
        A path on the file system.

    Returns
    -------
    int
        Megabytes (MB, 2**20 B) available, rounded up.
    """
    return -(-shutil.disk_usage(path).free // MB)


@dataclass(frozen=True)
class DiskEstimate:
    """What scriptForPI will ask for at each SPACESAVING level, beside the free space."""

    raw_mb: int
    free_mb: int                       # the smaller of: free where calibrated/ goes, free where raw/ is
    extra_scripts: tuple[str, ...]     # the scripts that add raw x 3
    target: str                        # the folder whose filesystem has that free space
    acrenorm: bool = False             # ACreNorm data: scriptForPI caps SPACESAVING at ACRENORM_CAP

    def effective_level(self, level: int) -> int:
        """The level scriptForPI really applies (ACreNorm data: at most ACRENORM_CAP).

        Parameters
        ----------
        level : int
            The SPACESAVING level asked (0, 1, 2, 3 or -1).

        Returns
        -------
        int
            The level applied.
        """
        return min(level, ACRENORM_CAP) if self.acrenorm and level >= 0 else level

    def need_mb(self, level: int) -> int:
        """MB scriptForPI asks to be free at ``level`` (0 for -1, which skips the check).

        Parameters
        ----------
        level : int
            The SPACESAVING level (0, 1, 2, 3 or -1).

        Returns
        -------
        int
            Megabytes (MB) needed free.
        """
        if level == -1:
            return 0
        level = self.effective_level(level)
        return self.raw_mb * (LEVEL_FACTORS[level] + (EXTRA_FACTOR if self.extra_scripts else 0))

    @property
    def needs(self) -> dict[int, int]:
        """MB needed at each SPACESAVING level 0-3."""
        return {level: self.need_mb(level) for level in LEVEL_FACTORS}

    def fits(self, level: int) -> bool:
        """True when ``level`` fits in the free space (-1 always does).

        Parameters
        ----------
        level : int
            The SPACESAVING level (0, 1, 2, 3 or -1).

        Returns
        -------
        bool
            True when it fits.
        """
        return level == -1 or self.need_mb(level) <= self.free_mb

    def shortfall_mb(self, level: int) -> int:
        """MB missing for ``level`` (0 when it fits).

        Parameters
        ----------
        level : int
            The SPACESAVING level (0, 1, 2, 3 or -1).

        Returns
        -------
        int
            Megabytes (MB) missing.
        """
        return max(0, self.need_mb(level) - self.free_mb)

    def best_level(self) -> int | None:
        """The lowest SPACESAVING level that fits (keeping the most intermediate files), if any.

        Returns
        -------
        int | None
            The level, or None when none fits.
        """
        return next((level for level in LEVEL_FACTORS if self.fits(level)), None)


def estimate(member: Path) -> DiskEstimate:
    """Measure raw/ and the free space: scriptForPI checks it where raw/ is (a link to another disk
    is followed), the MSs are written to calibrated/ in the member; both must suffice.

    Parameters
    ----------
    member : Path
        The member folder.

    Returns
    -------
    DiskEstimate
        raw/ size, free space (MB) and the need at each SPACESAVING level.
    """
    member = Path(member)
    scripts = {plain_name(p.name) for p in (member / "script").glob("*.py")}
    extra = tuple(s for s in EXTRA_SCRIPTS if s in scripts)
    acrenorm = any(_ACRENORM_RE.search(p.read_text(errors="replace"))
                   for p in (member / "script").glob("*.ms.scriptFor*Calibration.py"))
    raw = member / "raw"
    free, target = free_mb(member), member
    if raw.is_dir() and free_mb(raw) < free:
        free, target = free_mb(raw), raw.resolve()
    return DiskEstimate(du_mb(raw), free, extra, str(target), acrenorm)


@dataclass
class DiskSampler:
    """Samples the size of a folder in a background thread; ``peak`` and ``last`` in bytes."""

    path: Path
    interval: float = 1.0
    peak: int = 0
    last: int = 0
    on_sample: Callable[[int], None] | None = None      # called with each sample (bytes), in the thread
    samples: list[tuple[float, int]] = field(default_factory=list, repr=False)   # (s since the first, bytes)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _t0: float | None = field(default=None, repr=False)

    def sample(self) -> int:
        """Measure the folder now (bytes; 0 while it does not exist); updates ``last`` and ``peak``.

        A file removed while the folder is walked (SPACESAVING deletes as it goes) keeps the last value.

        Returns
        -------
        int
            Bytes (B) in the folder now.
        """
        try:
            self.last = du_bytes(self.path)
        except OSError:
            return self.last
        self.peak = max(self.peak, self.last)
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        self.samples.append((now - self._t0, self.last))
        if self.on_sample is not None:
            self.on_sample(self.last)
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


def plot_disk_use(samples: list[tuple[float, int]], estimate: DiskEstimate, spacesaving: int, path: Path,
                  title: str = "") -> Path:
    """Draw a restore's disk use over time against scriptForPI's estimate at each SPACESAVING level.

    Parameters
    ----------
    samples : list of (float, int)
        ``DiskSampler.samples``: seconds since the first sample, bytes of ``calibrated/``.
    estimate : DiskEstimate
        The estimate the restore was planned with (``need_mb`` per level, ``free_mb``).
    spacesaving : int
        The level the restore ran at (drawn solid; the other levels dashed).
    path : Path
        The PNG to write (its folder must exist).
    title : str
        The plot's title (the member, say).

    Returns
    -------
    Path
        ``path``, written.
    """
    fig = disk_use_figure(samples, estimate, spacesaving, title)
    fig.savefig(path)
    return Path(path)


def disk_use_figure(samples: list[tuple[float, int]], estimate: DiskEstimate, spacesaving: int,
                    title: str = "") -> Any:
    """The figure ``plot_disk_use`` writes (a matplotlib Figure, no pyplot): time in minutes, disk use
    in MB (2^20 bytes), one horizontal line per SPACESAVING level (the level run solid, the others
    dashed) and the free space at the start.

    Parameters
    ----------
    samples : list[tuple[float, int]]
        (seconds since the start, bytes in calibrated/) as ``DiskSampler`` took them.
    estimate : DiskEstimate
        scriptForPI's estimate of the member (the lines of each level).
    spacesaving : int
        The SPACESAVING level the restore ran (its line drawn solid).
    title : str, default ""
        The figure's title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not yet saved.
    """
    from matplotlib.figure import Figure     # no pyplot: no display, no global state

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    t = [s / 60 for s, _ in samples] or [0.0]
    ax.plot(t, [b / MB for _, b in samples] or [0.0], color="black", label="calibrated/ (measured)")
    for level in LEVEL_FACTORS:
        ax.axhline(estimate.need_mb(level), linestyle="-" if level == spacesaving else "--",
                   linewidth=1.5 if level == spacesaving else 0.8, color=f"C{level}",
                   label=f"SPACESAVING={level} estimate, {estimate.need_mb(level)} MB")
    ax.axhline(estimate.free_mb, color="red", linestyle=":", label=f"free at start, {estimate.free_mb} MB")
    ax.set_xlabel("time since the restore started (min)")
    ax.set_ylabel("disk use (MB, 2^20 bytes)")
    ax.set_title(title or "restore: disk use against scriptForPI's estimate", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
