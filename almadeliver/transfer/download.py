"""The download engine: parallel, resumable, verified; tarballs unpacked while the rest still arrives.

Every file is fetched into ``DEST/<name>.part`` as one or more byte ranges ("segments"), written with
``os.pwrite``. At most ``parallel`` streams per archive host run at once (a semaphore per host),
on kept-alive connections (a pool of ``parallel`` per host); every request asks a bounded range
(ranges.py) and its answer is read to the end (stream.py). A connection with nothing left to start
takes over the second half of the part of the largest running range that nobody asked for yet, so
the last files do not leave connections idle and no byte is fetched twice. Progress is journalled (journal.py), so a killed run resumes.
A range is trusted only from a 206 whose Content-Range matches; anything else restarts the file
from byte 0. Finished tarballs go to one extraction thread (extract.py) while downloads continue.

Bytes are written as they arrive, so every dropped connection makes progress; retries are bounded in
attempts without progress and in bytes (``TransferConfig.budget`` times the file's size), and a
``.part`` is never deleted after a failure. Any exception in a worker is that file's failure. A
tarball that fails its check is set aside in ``DEST/.almadeliver/rejected/`` and fetched once more.
One run at a time per destination (lock.py).
"""
from __future__ import annotations

import errno
import http.client
import logging
import os
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests
import urllib3
from tqdm import tqdm

from ..archive.model import ArchiveFile
from ..errors import (AlmadeliverError, DiskSpaceError, SizeMismatchError, TransferError)
from .journal import DOWNLOADED, EXTRACTED, PARTIAL, FileEntry, Journal
from .lock import DestLock
from .plan import DownloadPlan, check_space, is_tarball
from .ranges import Segment, content_range_end, content_range_matches, next_ask, split_evenly, stealable, steal_point
from .results import FileResult, FileStatus, TransferResult, short_reason
from .stream import HostGates, backoff_delay, body_reader, check_answer, html_error, keep_alive, looks_like_html, \
    size_pools, write_at
from .unpack import Unpacker
from ..units import BAR_DIVISOR, human_size, middle_cut

log = logging.getLogger("almadeliver.transfer")

MiB = 1 << 20
_READ_SECONDS = 0.25          # a read of the receive buffer should take about this long (bytes on disk, bars)
_READ_MIN = 64 * 1024
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass
class TransferConfig:
    """How to transfer: connections per host, range splitting, retries and byte budget, untar options.

    Attributes
    ----------
    parallel : int
        Streams in flight, and kept-alive connections, per archive host (``--parallel``).
    split : int
        Byte ranges a file of at least ``split_min_size`` is split into from the start (``--split N``);
        1: one range, written in order.
    split_min_size : int
        Smallest file split into ``split`` ranges, in bytes.
    steal_min : int
        An idle connection takes over half of a running range only when more than twice this many
        bytes of it are not asked for yet; bytes.
    retries : int
        Attempts in a row without progress (no new bytes verified on disk) before a file fails.
    budget : float
        A file fails once this run fetched more than ``budget`` times its size (plus
        ``budget_slack``) without completing it; a ratio.
    budget_slack : int
        Bytes allowed on top of the budget, so tiny files survive a few dropped connections.
    refetch : int
        Times a tarball that fails its check (set aside in ``DEST/.almadeliver/rejected/``) is
        fetched again.
    backoff : float
        Seconds before the first retry, doubled each attempt, with jitter (``backoff_delay``).
    backoff_max : float
        The longest wait between retries, in seconds.
    connect_timeout : float
        Seconds to wait for a connection to the archive host.
    read_timeout : float
        Seconds to wait for the next bytes of an answer before the connection counts as broken.
    chunk : int
        The receive buffer of each connection, in bytes; one read fills up to about 0.25 s of it.
    ask_min : int
        Bytes the first request of a connection asks for (``Range: bytes=a-b``).
    ask_max : int
        The most bytes one request asks for; each request asks twice the previous, up to
        ``ask_seconds`` of transfer at the connection's rate (``next_ask``).
    ask_seconds : float
        Transfer time one request should last, in seconds; an idle connection taking over a range
        takes effect at these request bounds.
    untar : bool
        Verify and extract each tarball while the rest still downloads (off: ``--no-untar``, the
        member list is still read to check the tarball).
    keep_tars : bool
        Keep each tarball after it is extracted (``--keep-tars``).
    progress : bool
        Show tqdm bars on stderr (only when it is a terminal).
    journal_every : float
        Seconds between journal writes while bytes arrive (what a killed run resumes from).
    connection_gate : callable or None
        Called with the archive host before each request for file bytes; the request is made, and
        its body read, inside the context it returns. A semaphore shared by several processes
        (``almadeliver run``) keeps the host's connection limit across all of them. None: only
        ``parallel`` applies.
    """
    parallel: int = 5                 # streams (and kept-alive connections) per archive host
    split: int = 1                    # ranges per file of at least split_min_size (--split N)
    split_min_size: int = 32 * MiB
    steal_min: int = 4 * MiB          # an idle connection takes over half of a range with more left than 2x this
    retries: int = 5                  # attempts per range in a row without progress
    budget: float = 3.0               # a file may cost at most this many times its size (plus budget_slack)
    budget_slack: int = 64 * 1024     # bytes allowed on top, so tiny files survive a few drops
    refetch: int = 1                  # times a tarball that fails its check is fetched again
    backoff: float = 0.5              # seconds before the first retry, doubled each time, with jitter
    backoff_max: float = 30.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    chunk: int = 4 * MiB              # the receive buffer of each connection (a read fills up to ~0.25 s of it)
    ask_min: int = 4 * MiB            # a connection's first request asks this many bytes of its range,
    ask_max: int = 256 * MiB          # then twice as many each time, up to what it brings in
    ask_seconds: float = 2.0          # ask_seconds (at most ask_max): steals take effect at these bounds
    untar: bool = True
    keep_tars: bool = False
    progress: bool = True             # tqdm bars on stderr (only when it is a terminal)
    journal_every: float = 0.2        # seconds between journal writes while bytes arrive
    # Called with the archive host before each request for file bytes; the request is made, and its
    # body read, inside the context it returns. A semaphore shared by several processes (almadeliver
    # run) keeps the host's connection limit across all of them. None: only ``parallel`` applies.
    connection_gate: Callable[[str], AbstractContextManager] | None = None


# -- engine state ----------------------------------------------------------------------------------
class _Restart(Exception):
    """The file was restarted from byte 0 by another connection: drop this range."""


class _Fatal(Exception):
    def __init__(self, error: AlmadeliverError):
        super().__init__(str(error))
        self.error = error


@dataclass(eq=False)
class _Job:
    f: ArchiveFile
    part: Path
    final: Path
    host: str
    entry: FileEntry
    result: FileResult
    segments: list[Segment] = field(default_factory=list)
    fd: int | None = None
    generation: int = 0             # bumped when the file restarts from byte 0
    users: int = 0                  # connections working on this file right now
    started: bool = False
    finished: bool = False
    bar: tqdm | None = None
    slot: int = 0
    best: int = 0                   # most bytes ever verified on disk (progress is measured against it)

    @property
    def have(self) -> int:
        return self.f.size - self.remaining

    @property
    def remaining(self) -> int:
        return sum(max(s.end - s.done, 0) for s in self.segments)


class _Engine:
    def __init__(self, plan: DownloadPlan, dest: Path, config: TransferConfig, session: requests.Session):
        self.plan, self.dest, self.config, self.session = plan, Path(dest), config, session
        self.journal = Journal(self.dest)
        self.cond = threading.Condition(self.journal.lock)
        self.stop: AlmadeliverError | None = None
        self.active: dict[str, int] = {}
        self.ranges_ok: dict[str, bool | str] = {}     # per host: True, False, or "probe" (one range asked)
        self.results: list[FileResult] = []
        self.jobs: list[_Job] = []
        self.unpacker = Unpacker(self.dest, config, self.journal)
        self.free_slots: list[int] = list(range(config.parallel * 2, 0, -1))
        self.bar_disable = None if config.progress else True
        self.total: tqdm | None = None
        self.done_event = threading.Event()
        self.stop_event = threading.Event()            # set with self.stop: wakes sleeping retries
        self.gates = HostGates(config.parallel, config.connection_gate)
        self.buffers = threading.local()                # one receive buffer per connection thread

    # ---- setup
    def prepare(self) -> None:
        """Skip what the journal says is done; resume .part files from their journalled ranges."""
        for f in self.plan.files:
            final = self.dest / f.name
            state = self.journal.state(f.name, f.size)
            result = FileResult(f.name, final, f.size, FileStatus.FETCHED)
            self.results.append(result)
            if state == EXTRACTED or (state == DOWNLOADED and final.is_file() and final.stat().st_size == f.size):
                result.status, result.extracted = FileStatus.ALREADY, state == EXTRACTED
                result.path = final if final.exists() else None
                if state == DOWNLOADED and is_tarball(f):
                    self.unpacker.queue.put((f, result))
                continue
            entry = self.journal.entry(f.name, f.size)
            entry.state = PARTIAL
            job = _Job(f, self.dest / (f.name + ".part"), final, urlsplit(f.url).netloc, entry, result)
            part_size = job.part.stat().st_size if job.part.exists() else None
            if part_size is None:
                entry.segments, entry.preallocated = [], False
            elif len(entry.segments) == 1 and entry.segments[0][0] == 0 and not entry.preallocated:
                entry.segments[0][2] = min(part_size, f.size)    # written in order: the size is the progress
            elif not entry.segments and not entry.preallocated:
                entry.segments = [[0, f.size, min(part_size, f.size)]]   # a .part without journal (curl -C -)
            job.segments = [Segment(s, e, d) for s, e, d in entry.segments]
            self.jobs.append(job)
        size_pools(self.session, [j.f.url for j in self.jobs], self.config.parallel)

    # ---- scheduling (callers hold self.cond)
    def _open(self, job: _Job) -> None:
        """Open the .part the first time a connection takes the file; split it when asked."""
        cfg, size = self.config, job.f.size
        job.part.parent.mkdir(parents=True, exist_ok=True)     # a single file goes to its folder of the tree
        job.fd = os.open(job.part, os.O_RDWR | os.O_CREAT, 0o644)
        job.started = True
        if not job.segments:
            n = cfg.split if (cfg.split > 1 and size >= cfg.split_min_size
                              and self.ranges_ok.get(job.host) is not False) else 1
            if n > 1:
                job.entry.preallocated = True
                try:
                    os.posix_fallocate(job.fd, 0, size)
                except OSError as exc:
                    if exc.errno in _DISK_FULL:
                        raise
                    os.ftruncate(job.fd, size)
            job.segments = split_evenly(size, n)
            if n > 1:
                self._journal_segments(job)
                if not self.journal.save():
                    raise OSError(errno.ENOSPC, "no space left for the journal")
        job.best = job.have
        job.slot = self.free_slots.pop() if self.free_slots else 0
        job.bar = tqdm(total=size, initial=size - job.remaining, unit="B", unit_scale=True, unit_divisor=BAR_DIVISOR,
                       desc=middle_cut(job.f.name), position=job.slot, leave=False, disable=self.bar_disable)

    def _next(self) -> tuple[_Job, Segment] | None:
        """The next range for an idle connection, or None when there is nothing left to do."""
        cfg = self.config
        while True:
            live = [j for j in self.jobs if not j.finished]
            if self.stop is not None or not live:
                return None
            free = {j.host for j in live if self.active.get(j.host, 0) < cfg.parallel}
            pick = None
            for j in sorted(live, key=lambda j: not j.started):         # started files first, then plan order
                if j.host in free and not (j.started and j.users == 0 and j.remaining == 0):
                    if not j.started:
                        self._open(j)
                        if j.remaining == 0:                            # every range was in before a kill
                            self._finish(j)
                            continue
                    seg = next((s for s in j.segments if not s.busy and s.done < s.end), None)
                    if seg is not None:
                        pick = (j, seg)
                        break
            if pick is None:                      # take over half of the largest range nobody asked for yet
                best, left = None, 2 * cfg.steal_min
                for j in live:
                    if j.host in free and self.ranges_ok.get(j.host, "unknown") in (True, "unknown"):
                        for s in j.segments:
                            if s.busy and stealable(s) > left:
                                best, left = (j, s), stealable(s)
                if best is not None:
                    j, s = best
                    mid = steal_point(max(s.done, s.asked), s.end, cfg.steal_min)
                    new = Segment(mid, s.end, mid)
                    s.end = mid
                    j.segments.append(new)
                    was, j.entry.preallocated = j.entry.preallocated, True   # written out of order from now on
                    self._journal_segments(j)
                    if self.journal.save():            # before any byte lands out of order
                        pick = (j, new)
                        self.ranges_ok.setdefault(j.host, "probe")   # no more thieves until a 206 is right
                    else:
                        j.segments.remove(new)
                        s.end, j.entry.preallocated = new.end, was
            if pick is not None:
                j, s = pick
                if s.done > 0 or s.end < j.f.size:       # a Range will be asked: no thieves until it is proven
                    self.ranges_ok.setdefault(j.host, "probe")
                s.busy, j.users = True, j.users + 1
                self.active[j.host] = self.active.get(j.host, 0) + 1
                return pick
            if not any(j.users for j in live):
                return None
            self.cond.wait(0.5)

    def _release(self, job: _Job, seg: Segment) -> None:
        """A connection is done with a range: finish or close the file once nobody works on it."""
        with self.cond:
            seg.busy = False
            job.users -= 1
            self.active[job.host] -= 1
            if job.users == 0 and not job.finished:
                if job.result.error is not None or self.stop is not None:
                    self._close(job, failed=True)
                elif job.remaining == 0:
                    self._finish(job)
            self.cond.notify_all()

    def _close(self, job: _Job, failed: bool = False) -> None:
        if job.fd is not None:
            os.close(job.fd)
            job.fd = None
        if job.bar is not None:
            job.bar.close()
            job.bar = None
            if job.slot:
                self.free_slots.append(job.slot)
        if failed:
            job.finished = job.result.error is not None
            # a .part is kept after a failure, unless this run created it and nothing ever landed in it
            if job.remaining == job.f.size and job.part.exists() and job.part.stat().st_size == 0:
                job.part.unlink()
                job.entry.segments = []
            else:
                self._journal_segments(job)

    def _finish(self, job: _Job) -> None:
        """Every range is in: check the size, rename the .part, hand tarballs to the extractor."""
        on_disk = os.fstat(job.fd).st_size
        self._close(job)
        job.finished = True
        if on_disk != job.f.size:
            job.result.status = FileStatus.FAILED
            job.result.error = SizeMismatchError(
                f"{job.f.name}: {on_disk} bytes on disk, the archive announced {job.f.size}",
                "run the download again; if it persists the archive listing is stale")
            return
        os.replace(job.part, job.final)
        self.journal.set_state(job.f.name, job.f.size, DOWNLOADED)
        if is_tarball(job.f):
            self.unpacker.queue.put((job.f, job.result))

    def _journal_segments(self, job: _Job) -> None:
        job.entry.segments = [[s.start, s.end, min(s.done, s.end)] for s in job.segments]

    def _restart(self, job: _Job, seg: Segment, gen: int) -> Segment:
        """The server did not honour a range: drop every range and fetch the file again from byte 0."""
        with self.cond:
            if job.generation != gen:          # another connection restarted it already
                raise _Restart()
            self.ranges_ok[job.host] = False
            job.generation += 1
            fresh = Segment(0, job.f.size, 0, busy=True, asked=job.f.size)
            job.segments = [fresh]
            job.entry.preallocated = True      # old bytes stay in the .part: only the journal tells progress
            self._journal_segments(job)
            self.journal.save()
            if job.bar is not None:
                job.bar.reset(total=job.f.size)
            self.cond.notify_all()
        log.info("%s: the server did not honour a byte range; fetching it again from the start", job.f.name)
        return fresh

    # ---- one range
    def _budget(self, job: _Job) -> int:
        """The most bytes this run may fetch for ``job`` before it gives up (bounded cost, whatever the faults)."""
        return int(self.config.budget * job.f.size) + self.config.budget_slack

    def _check_budget(self, job: _Job) -> None:
        if job.result.fetched > self._budget(job):
            raise self._give_up(job, f"fetching {self.config.budget:g}x its size without completing it "
                                     "(the archive keeps dropping the connection" +
                                     (" and ignores Range)" if self.ranges_ok.get(job.host) is False else ")"))

    def _give_up(self, job: _Job, why: str) -> _Fatal:
        kept = job.part.exists() and job.have > 0
        return _Fatal(TransferError(
            f"{job.f.name}: gave up after {why}; {human_size(job.result.fetched)} fetched for a "
            f"{human_size(job.f.size)} file" + (f", {human_size(job.have)} kept in {job.part.name}" if kept else ""),
            "run the same command again later to resume, or try another --archive"))

    def _fetch(self, job: _Job, seg: Segment, holder: list[Segment]) -> None:
        """Fetch ``seg`` to its end in bounded requests, resuming after drops and retrying with backoff.

        The host's lease (``HostGates``) is held while requests follow each other on one kept-alive
        connection, and let go while waiting to retry. Bytes are written as they arrive, so every
        dropped connection keeps what it brought. An attempt counts as progress only when the bytes
        verified on disk pass their previous best; ``config.retries`` attempts in a row without
        progress, or more than ``config.budget`` times the file's size fetched, give up (the .part is kept).
        """
        cfg = self.config
        attempt, gen, ask, rate = 0, job.generation, 0, 0.0
        while seg.done < seg.end:
            if self.stop is not None or job.result.error is not None:
                return
            if job.generation != gen:
                raise _Restart()
            self._check_budget(job)
            try:
                with self.gates(job.host):
                    while seg.done < seg.end and self.stop is None and job.result.error is None:
                        ask = next_ask(ask, rate, cfg.ask_seconds, cfg.ask_min, cfg.ask_max)
                        t0, before = time.monotonic(), seg.done
                        seg, gen = self._request(job, seg, holder, gen, ask)
                        rate = max(seg.done - before, 0) / max(time.monotonic() - t0, 1e-3)
                        job.best = max(job.best, job.have)
                        attempt = 0
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                    ConnectionError, TimeoutError) as exc:
                have = job.have
                if have > job.best:                 # the bytes on disk passed their best: progress
                    job.best, attempt = have, 0
                    continue
                if attempt >= cfg.retries:
                    raise self._give_up(job, f"{attempt + 1} attempts without progress ({short_reason(exc)})") from None
                delay = backoff_delay(attempt, cfg.backoff, cfg.backoff_max)
                log.info("%s: %s; retrying in %.1f s", job.f.name, short_reason(exc), delay)
                attempt += 1
                if self.stop_event.wait(delay):
                    return
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    kept = "; the .part is kept" if job.part.exists() and job.have > 0 else ""
                    raise _Fatal(DiskSpaceError(f"{self.dest} is full while writing {job.part.name}",
                                                f"free some space and run the same command again{kept}")) from None
                raise

    def _request(self, job: _Job, seg: Segment, holder: list[Segment], gen: int, ask: int) -> tuple[Segment, int]:
        """One request for the next ``ask`` bytes of ``seg``, its answer read to the end (or to a failure).

        A Range is asked unless the host is known to ignore it (then the whole file, from byte 0). A
        206 is trusted only when its Content-Range starts where asked and ends within the ask; any
        other answer to a Range restarts the file from byte 0. Returns the segment and generation
        to go on with (both new after a restart).
        """
        with self.cond:                      # a thief may shorten seg.end, never below seg.asked
            if job.generation != gen:
                raise _Restart()
            start, bounded = seg.done, self.ranges_ok.get(job.host) is not False
            ranged = bounded or start > 0 or seg.end < job.f.size
            seg.asked = min(seg.end, start + ask) if bounded else seg.end
            stop_at = seg.asked
            if ranged:
                self.ranges_ok.setdefault(job.host, "probe")
        headers = {"Accept-Encoding": "identity"}
        if ranged:
            headers["Range"] = f"bytes={start}-{stop_at - 1}"
        cfg = self.config
        with self.session.get(job.f.url, headers=headers, stream=True,
                              timeout=(cfg.connect_timeout, cfg.read_timeout)) as r:
            check_answer(job.f.name, job.host, r)
            content_range = r.headers.get("Content-Range")
            good = r.status_code == 206 and content_range_matches(content_range, start, stop_at, job.f.size)
            if good:
                with self.cond:
                    seg.asked = content_range_end(content_range)     # a shorter answer: the rest is asked next
                    if self.ranges_ok.get(job.host) == "probe":
                        self.ranges_ok[job.host] = True
                        self.cond.notify_all()                        # idle connections may take over ranges now
            elif ranged:
                seg = holder[0] = self._restart(job, seg, gen)
                gen = job.generation
                if r.status_code != 200:
                    return seg, gen                                   # ask again for the whole file, without Range
            elif r.status_code != 200:
                raise _Fatal(TransferError(f"{job.f.name}: HTTP {r.status_code} to a plain GET",
                                           "try another --archive"))
            if r.status_code == 200:
                length = r.headers.get("Content-Length")
                if length is not None and length.strip().isdigit() and int(length) != job.f.size:
                    raise _Fatal(SizeMismatchError(
                        f"{job.f.name}: the archive sends {length} bytes, DataLink announced {job.f.size}",
                        "the plan is stale: run the query again"))
            self._receive(job, seg, gen, r)
            if seg.done >= seg.asked:
                keep_alive(r)                # read to the end: the connection serves the next request
        return seg, gen

    def _receive(self, job: _Job, seg: Segment, gen: int, r: requests.Response) -> None:
        """Write the body of ``r`` into ``seg`` up to ``seg.asked``, one large buffer at a time."""
        mine = self.buffers
        if getattr(mine, "view", None) is None or len(mine.view) != self.config.chunk:
            mine.view, mine.size = memoryview(bytearray(self.config.chunk)), min(MiB, self.config.chunk)
        view, read, first = mine.view, body_reader(r), seg.done == 0
        while seg.done < seg.asked:
            want = min(mine.size, seg.asked - seg.done)
            t0 = time.monotonic()
            n = read(view[:want])        # returns when ``want`` bytes are in (or at the end of the body)
            took = time.monotonic() - t0
            if took > _READ_SECONDS and mine.size > _READ_MIN:     # a slow link: land bytes on disk sooner
                mine.size //= 2
            elif took < _READ_SECONDS / 4 and n == mine.size < len(view):   # a fast one: fewer, larger reads
                mine.size *= 2
            if not n:
                raise requests.ConnectionError("the connection closed before the end of the range")
            if first:
                first = False
                if looks_like_html(None, bytes(view[:min(n, 1024)])):
                    raise _Fatal(html_error(job.f.name))
            if job.generation != gen:
                raise _Restart()
            write_at(job.fd, view[:n], seg.done)
            seg.done += n
            job.result.fetched += n
            job.bar.update(n)
            self.total.update(n)
            if self.stop is not None:
                return
            self._check_budget(job)

    # ---- threads
    def worker(self) -> None:
        """One connection: take ranges until none is left. Nothing escapes this thread: an unexpected
        error is the failure of the file it was working on, or (outside any file) stops the run."""
        try:
            self._work()
        except BaseException as exc:          # noqa: BLE001 (a thread must never die with a traceback)
            with self.cond:
                if self.stop is None:
                    self.stop = TransferError(f"a download thread failed: {type(exc).__name__}: {short_reason(exc)}",
                                              "run the same command again to resume (with --debug for details)")
                self.stop_event.set()
                self.cond.notify_all()

    def _work(self) -> None:
        while True:
            with self.cond:
                try:
                    task = self._next()
                except OSError as exc:       # creating or preallocating a .part
                    if exc.errno not in _DISK_FULL:
                        raise
                    self.stop = DiskSpaceError(f"{self.dest} is full", "free some space and run the same command again")
                    self.stop_event.set()
                    self.cond.notify_all()
                    return
            if task is None:
                return
            job, seg = task
            holder = [seg]
            try:
                self._fetch(job, seg, holder)
            except _Restart:
                pass
            except _Fatal as exc:
                self._fail(job, exc.error)
            except AlmadeliverError as exc:   # refused by the archive (check_answer): never retried
                self._fail(job, exc)
            except Exception as exc:  # an unexpected failure belongs to this file, not to the whole run
                self._fail(job, TransferError(f"{job.f.name}: {type(exc).__name__}: {short_reason(exc)}",
                                              "run the same command again (with --debug for details)"))
            finally:
                self._release(job, holder[0])

    def _fail(self, job: _Job, error: AlmadeliverError) -> None:
        with self.cond:
            if job.result.error is None:
                job.result.status, job.result.error = FileStatus.FAILED, error
            if isinstance(error, DiskSpaceError):
                self.stop = error
                self.stop_event.set()
            self.cond.notify_all()

    def flusher(self) -> None:
        while not self.done_event.wait(self.config.journal_every):
            self.flush()

    def flush(self) -> None:
        with self.cond:
            for j in self.jobs:
                if j.started and not j.finished:
                    self._journal_segments(j)
            self.journal.save()

    def close_bars(self) -> None:
        with self.cond:
            for j in self.jobs:
                if j.bar is not None:
                    j.bar.close()
                    j.bar = None
        if self.total is not None:
            self.total.close()


def download(plan: DownloadPlan, dest: Path, config: TransferConfig | None = None,
             session: requests.Session | None = None, wait_lock: bool = True) -> TransferResult:
    """Fetch every file of ``plan`` into ``dest`` and (unless ``config.untar`` is off) unpack the tarballs.

    Each file is written to ``DEST/<name>.part`` (in byte ranges asked with ``Range``, trusted only
    from a 206 whose Content-Range matches) and renamed to its name when its size is verified; a
    rerun resumes the ``.part`` files from the ranges recorded in the journal
    (``DEST/.almadeliver/journal.json``). A tarball that fails its check is set aside and fetched again
    ``config.refetch`` times.

    Parameters
    ----------
    plan : DownloadPlan
        What to fetch (from ``make_plan``).
    dest : Path
        The folder that receives the files and the delivery tree (created if missing).
    config : TransferConfig, optional
        Connections, retries, byte budget, untar options (default: ``TransferConfig()``).
    session : requests.Session, optional
        The HTTP session (carries the login); default: a new session, closed on return.
    wait_lock : bool
        When another process holds ``dest``, wait for it (True) or raise BusyError (False).

    Returns
    -------
    TransferResult
        One FileResult per plan file, in plan order, with the bytes fetched and the run's duration
        in seconds; failures are per file (``TransferResult.failed``, each with its error: an
        AuthError, NotFoundError, NotATarballError, SizeMismatchError or TransferError).

    Raises
    ------
    DiskSpaceError
        Before starting if ``dest`` lacks room for the download plus its unpacked tree, or when the
        disk fills while writing (the .part files are kept).
    BusyError
        ``dest`` is locked by another run and ``wait_lock`` is False (the message names its pid).
    KeyboardInterrupt
        Re-raised within about a second of Ctrl-C, after the journal is saved and the bars closed.
    """
    config = config or TransferConfig()
    own_session = session is None
    session = session or requests.Session()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with DestLock(dest, wait=wait_lock), (session if own_session else nullcontext()):
        results = _run(plan, dest, config, session)
        by_name = {r.name: r for r in results}
        for _round in range(config.refetch):
            again = [f for f in plan.files if f.name in by_name and by_name[f.name].rejected
                     and by_name[f.name].status is not FileStatus.FAILED and not by_name[f.name].extracted]
            if not again:
                break
            for f in again:
                log.warning("%s; fetching it once more", by_name[f.name].rejected[-1])
            sub = DownloadPlan(plan.archive, again, 0, [])
            for r in _run(sub, dest, config, session, previous=by_name):
                by_name[r.name] = r
        for r in by_name.values():
            if r.rejected and r.status is not FileStatus.FAILED and not (r.extracted or not config.untar):
                r.status = FileStatus.FAILED
                r.error = TransferError(f"{r.name} failed its check: {r.rejected[-1]}",
                                        "run the same command again; if it persists, report it to the ALMA helpdesk")
        return TransferResult(dest, [by_name[r.name] for r in results], time.monotonic() - t0)


def _run(plan: DownloadPlan, dest: Path, config: TransferConfig, session: requests.Session,
         previous: dict[str, FileResult] | None = None) -> list[FileResult]:
    """One pass over ``plan``: fetch, verify, unpack. ``previous`` results are carried on (refetch)."""
    engine = _Engine(plan, dest, config, session)
    check_space(plan, dest, config.untar, engine.journal)
    engine.prepare()
    for r in engine.results:
        if previous and r.name in previous:
            r.rejected, r.fetched = previous[r.name].rejected, previous[r.name].fetched
    engine.journal.reserve()
    engine.journal.save()
    todo = sum(j.remaining if j.segments else j.f.size for j in engine.jobs)
    engine.total = tqdm(total=todo, unit="B", unit_scale=True, unit_divisor=BAR_DIVISOR, desc="total", position=0,
                        disable=engine.bar_disable)
    hosts = {j.host for j in engine.jobs} or {""}
    workers = [threading.Thread(target=engine.worker, name=f"download-{i}", daemon=True)
               for i in range(config.parallel * len(hosts))]
    extractor = threading.Thread(target=engine.unpacker.run, name="extract", daemon=True)
    flusher = threading.Thread(target=engine.flusher, name="journal", daemon=True)
    for t in (*workers, extractor, flusher):
        t.start()
    try:
        for t in workers:
            while t.is_alive():
                t.join(0.2)
        engine.unpacker.queue.put(None)
        while extractor.is_alive():
            extractor.join(0.2)
    except KeyboardInterrupt:
        # stop within a second: threads are told to stop and given a moment; the journal only ever
        # records bytes already written, so whatever they were doing is resumed by the next run
        with engine.cond:
            engine.stop = TransferError("interrupted", "run the same command again to resume")
            engine.stop_event.set()
            engine.cond.notify_all()
        deadline = time.monotonic() + 0.5
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        raise
    finally:
        engine.done_event.set()
        flusher.join(1.0)         # nothing writes the journal once download() has returned
        engine.flush()
        engine.close_bars()
    if isinstance(engine.stop, DiskSpaceError):
        raise engine.stop
    for j in engine.jobs:
        if not j.finished and j.result.error is None:   # a safety net: never report an unfinished file as fetched
            j.result.status = FileStatus.FAILED
            j.result.error = engine.stop or TransferError(f"{j.f.name}: incomplete", "run the same command again to resume")
    if config.untar:
        for r, f in zip(engine.results, plan.files):      # a safety net: a tarball left packed is a failure
            if is_tarball(f) and r.status is not FileStatus.FAILED and not r.extracted and all(r is not x for _f, x in engine.unpacker.refetch):
                r.status = FileStatus.FAILED
                r.error = engine.stop or TransferError(f"{r.name}: fetched but not unpacked",
                                                       "run the same command again to unpack it")
    return engine.results
