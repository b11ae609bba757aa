"""What every benchmark shares: its command line (``--help``, ``--repeat``), the same repetitions for
every side (the median of N is compared, the range is printed), the load it ran under (``uptime``
before and after), byte-identical checks of every peer's output, busy processes started and stopped
by the benchmark itself, and its targets: a benchmark exits 1 when one is missed.

``make bench`` sets BENCH_SUMMARY to a file; each benchmark appends its target rows to it (JSON
lines) and ``benchmarks/summary.py`` prints them as one table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` prints the benchmark's docstring (and runs nothing), with
    ``--repeat N`` (runs of every side; default 3)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, metavar="N",
                   help="runs of every side, the same for all; the median is compared (default 3)")
    return p


def load() -> str:
    """The ``uptime`` line (load averages of 1, 5, 15 minutes) and the number of cores."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        line = "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{line} ({os.cpu_count()} cores)"


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Timing:
    """The wall seconds (and CPU seconds) of N runs of one side."""

    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median wall seconds."""
        return statistics.median(self.runs)

    @property
    def cpu_median(self) -> float:
        """The median CPU seconds (user + system, children included)."""
        return statistics.median(self.cpu)

    def __str__(self) -> str:
        return (f"median {self.median:7.2f} s  (range {min(self.runs):.2f}-{max(self.runs):.2f}, "
                f"N={len(self.runs)})")


def timed(fn: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> Timing:
    """Run ``fn`` ``repeat`` times (``before`` untimed before each run); wall and CPU seconds of each."""
    t = Timing()
    for _ in range(repeat):
        if before is not None:
            before()
        c0, t0 = cpu_seconds(), time.perf_counter()
        fn()
        t.runs.append(time.perf_counter() - t0)
        t.cpu.append(cpu_seconds() - c0)
    return t


def sha256(path: Path) -> str:
    """The sha256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _spin() -> None:                      # a busy process (module level: picklable for spawn)
    while True:
        pass


@contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` busy processes (one core each) for the time of the block, stopped afterwards."""
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


@dataclass
class Row:
    """One line of the summary: a measure against its target, or a peer's identical-output check."""

    benchmark: str
    what: str
    value: float | None
    target: str
    met: bool
    detail: str = ""


class Report:
    """The rows of one benchmark: its targets and its peers' byte-identical checks."""

    def __init__(self, name: str):
        self.name, self.rows = name, []
        self.load_before = load()
        print(f"{name}: load before: {self.load_before}", flush=True)

    def target(self, what: str, value: float, limit: float, higher_is_better: bool, detail: str = "") -> bool:
        """Record ``value`` against ``limit`` (>= when ``higher_is_better``, else <=); returns met."""
        met = value >= limit if higher_is_better else value <= limit
        self.rows.append(Row(self.name, what, value, f"{'>=' if higher_is_better else '<='} {limit:g}", met, detail))
        print(f"  {what:48s} {value:8.2f}  target {'>=' if higher_is_better else '<='} {limit:g}  "
              f"{'met' if met else 'MISSED'}  {detail}", flush=True)
        return met

    def identical(self, what: str, ours: list[Path], theirs: list[Path]) -> bool:
        """Every file of a peer holds the same bytes as ours (pairwise, same order)."""
        bad = [str(b) for a, b in zip(ours, theirs) if not b.is_file() or sha256(a) != sha256(b)]
        met = len(ours) == len(theirs) and not bad
        self.rows.append(Row(self.name, what, None, "identical", met, ", ".join(bad[:3])))
        print(f"  {what:48s} {'identical' if met else 'DIFFERENT: ' + ', '.join(bad[:3])}", flush=True)
        return met

    def finish(self) -> int:
        """Print the load after; append the rows to $BENCH_SUMMARY; 1 if a target was missed, else 0."""
        after = load()
        print(f"{self.name}: load after: {after}", flush=True)
        summary = os.environ.get("BENCH_SUMMARY")
        if summary:
            with open(summary, "a") as fh:
                for r in self.rows:
                    fh.write(json.dumps({**r.__dict__, "load_before": self.load_before, "load_after": after}) + "\n")
        missed = [r.what for r in self.rows if not r.met]
        if missed:
            print(f"{self.name}: {len(missed)} target(s) missed: {'; '.join(missed)}", flush=True)
        return 1 if missed else 0
