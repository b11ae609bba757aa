"""The life signs of long CASA work: the step, the elapsed time and the disk use of a folder.

On a terminal a tqdm status line is refreshed every second while a step runs (hours on real data);
every step line printed also carries the elapsed time and the disk use, so a log shows them too.
"""
from __future__ import annotations

import time
from pathlib import Path

import typer

from ..units import human_size


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class StatusLine:
    """A status line for ``folder`` (measured with ``casa.diskspace.du_bytes`` every ``interval`` s).

    Use as a context manager; ``step(text)`` prints a step line and shows it in the status line.
    """

    def __init__(self, folder: Path, quiet: bool = False, interval: float = 1.0) -> None:
        from ..casa.diskspace import DiskSampler

        self.folder, self.quiet = Path(folder), quiet
        self.started = time.monotonic()
        self.where = "starting"
        self._bar = None
        self._sampler = DiskSampler(self.folder, interval, on_sample=self._refresh)

    @property
    def bytes(self) -> int:
        """The folder's disk use at the last sample (bytes)."""
        return self._sampler.last

    def text(self) -> str:
        """``elapsed 0:12:03, calibrated/ 1.2 GB``."""
        return f"elapsed {_clock(time.monotonic() - self.started)}, {self.folder.name}/ {human_size(self.bytes)}"

    def _refresh(self, _bytes: int) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"{self.where}  [{self.text()}]")

    def step(self, where: str) -> None:
        """Say that ``where`` starts (one line, with elapsed time and disk use)."""
        self.where = where
        self._sampler.sample()
        if self.quiet:
            return
        line = f"  {where}  [{self.text()}]"
        if self._bar is not None:
            self._bar.write(line)
            self._bar.set_description_str(line.strip())
        else:
            typer.echo(line)

    def __enter__(self) -> "StatusLine":
        if not self.quiet:
            from tqdm import tqdm

            bar = tqdm(total=None, bar_format="{desc}", leave=False, disable=None)   # None: off unless a terminal
            self._bar = None if bar.disable else bar
        self._sampler.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._sampler.__exit__(*exc)
        if self._bar is not None:
            self._bar.close()
