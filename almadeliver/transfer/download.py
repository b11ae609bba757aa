"""The download engine: parallel, resumable, verified; tarballs unpacked while the rest still arrives.

Every file is fetched into ``DEST/<name>.part`` as one or more byte ranges ("segments"), written with
``os.pwrite``. At most ``parallel`` connections per archive host run at once; a connection with
nothing left to start takes over the second half of the largest range still running, so the last
files do not leave connections idle. Progress is journalled (journal.py), so a killed run resumes.
A range is trusted only from a 206 whose Content-Range matches; anything else restarts the file
from byte 0. Finished tarballs go to one extraction thread (extract.py) while downloads continue.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import random
import re
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from ..archive.model import ArchiveFile
from ..errors import (AlmadeliverError, AuthError, DiskSpaceError, NotATarballError, NotFoundError,
                      SizeMismatchError, TransferError, UnsafeTarballError)
from .extract import extract_tarball, read_members
from .journal import DOWNLOADED, EXTRACTED, PARTIAL, FileEntry, Journal
from .plan import DownloadPlan, check_space, is_tarball

log = logging.getLogger("almadeliver.transfer")

MiB = 1 << 20
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass
class TransferConfig:
    parallel: int = 5                 # connections per archive host
    split: int = 1                    # ranges per file of at least split_min_size (--split N)
    split_min_size: int = 32 * MiB
    steal_min: int = 4 * MiB          # an idle connection takes over half of a range with more left than 2x this
    retries: int = 5                  # attempts per range in a row without progress
    backoff: float = 0.5              # seconds before the first retry, doubled each time, with jitter
    backoff_max: float = 30.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    chunk: int = MiB
    untar: bool = True
    keep_tars: bool = False
    progress: bool = True             # tqdm bars on stderr (only when it is a terminal)
    journal_every: float = 0.2        # seconds between journal writes while bytes arrive
    # Called with the archive host before each request for file bytes; the request is made, and its
    # body read, inside the context it returns. A semaphore shared by several processes (almadeliver
    # run) keeps the host's connection limit across all of them. None: only ``parallel`` applies.
    connection_gate: Callable[[str], AbstractContextManager] | None = None


@dataclass
class FileResult:
    """One file of the plan after the run. ``error`` is set when ``status`` is ``failed``."""

    name: str
    path: Path | None                 # the tarball (or README) on disk, None once extracted and removed
    size: int
    status: str                       # fetched | already | failed
    fetched: int = 0                  # bytes fetched by this run
    extracted: bool = False
    error: AlmadeliverError | None = None


@dataclass
class TransferResult:
    dest: Path
    files: list[FileResult]
    seconds: float

    @property
    def fetched_bytes(self) -> int:
        return sum(f.fetched for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


# -- helpers (pure) ---------------------------------------------------------------------------------
def looks_like_html(content_type: str | None, head: bytes) -> bool:
    """True for an HTML page (an expired login, an error page) where a file was expected."""
    if content_type and content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    text = head[:1024].lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html")) or (text.startswith(b"<?xml") and b"<html" in text)


def content_range_matches(header: str | None, start: int, end: int, total: int) -> bool:
    """True if a 206's Content-Range starts at ``start``, stays before ``end`` and names ``total``."""
    m = _CONTENT_RANGE.match(header or "")
    if not m:
        return False
    first, last, size = int(m[1]), int(m[2]), m[3]
    return first == start and start <= last < end and (size == "*" or int(size) == total)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    d = min(cap, base * 2 ** attempt)
    return d / 2 + random.uniform(0, d / 2)


# -- engine state ----------------------------------------------------------------------------------
class _Restart(Exception):
    """The file was restarted from byte 0 by another connection: drop this range."""


class _Fatal(Exception):
    def __init__(self, error: AlmadeliverError):
        super().__init__(str(error))
        self.error = error


@dataclass(eq=False)
class _Segment:
    start: int
    end: int
    done: int
    busy: bool = False


@dataclass(eq=False)
class _Job:
    f: ArchiveFile
    part: Path
    final: Path
    host: str
    entry: FileEntry
    result: FileResult
    segments: list[_Segment] = field(default_factory=list)
    fd: int | None = None
    generation: int = 0             # bumped when the file restarts from byte 0
    users: int = 0                  # connections working on this file right now
    started: bool = False
    finished: bool = False
    bar: tqdm | None = None
    slot: int = 0

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
        self.to_extract: queue.Queue = queue.Queue()
        self.free_slots: list[int] = list(range(config.parallel * 2, 0, -1))
        self.bar_disable = None if config.progress else True
        self.total: tqdm | None = None
        self.done_event = threading.Event()

    # ---- setup
    def prepare(self) -> None:
        """Skip what the journal says is done; resume .part files from their journalled ranges."""
        for f in self.plan.files:
            final = self.dest / f.name
            state = self.journal.state(f.name, f.size)
            result = FileResult(f.name, final, f.size, "fetched")
            self.results.append(result)
            if state == EXTRACTED or (state == DOWNLOADED and final.is_file() and final.stat().st_size == f.size):
                result.status, result.extracted = "already", state == EXTRACTED
                result.path = final if final.exists() else None
                if state == DOWNLOADED and is_tarball(f):
                    self.to_extract.put((f, result))
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
            job.segments = [_Segment(s, e, d) for s, e, d in entry.segments]
            self.jobs.append(job)
        for host in {j.host for j in self.jobs}:
            if self.config.parallel > 10:
                scheme = urlsplit(next(j.f.url for j in self.jobs if j.host == host)).scheme
                self.session.mount(f"{scheme}://{host}/", HTTPAdapter(pool_maxsize=self.config.parallel))

    # ---- scheduling (callers hold self.cond)
    def _open(self, job: _Job) -> None:
        """Open the .part the first time a connection takes the file; split it when asked."""
        cfg, size = self.config, job.f.size
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
            step = max(-(-size // n), 1)
            job.segments = [_Segment(a, min(a + step, size), a) for a in range(0, size, step)]
            if n > 1:
                self._journal_segments(job)
                if not self.journal.save():
                    raise OSError(errno.ENOSPC, "no space left for the journal")
        job.slot = self.free_slots.pop() if self.free_slots else 0
        job.bar = tqdm(total=size, initial=size - job.remaining, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=job.f.name[-32:], position=job.slot, leave=False, disable=self.bar_disable)

    def _next(self) -> tuple[_Job, _Segment] | None:
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
            if pick is None:                                             # take over half of the largest range
                best, left = None, 2 * cfg.steal_min
                for j in live:
                    if j.host in free and self.ranges_ok.get(j.host, "unknown") in (True, "unknown"):
                        for s in j.segments:
                            if s.busy and s.end - s.done > left:
                                best, left = (j, s), s.end - s.done
                if best is not None:
                    j, s = best
                    mid = s.done + left // 2
                    mid -= mid % MiB
                    new = _Segment(mid, s.end, mid)
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

    def _release(self, job: _Job, seg: _Segment) -> None:
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
            if job.remaining == job.f.size and job.part.exists():   # nothing useful in it (e.g. an HTML page)
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
            job.result.status = "failed"
            job.result.error = SizeMismatchError(
                f"{job.f.name}: {on_disk} bytes on disk, the archive announced {job.f.size}",
                "run the download again; if it persists the archive listing is stale")
            return
        os.replace(job.part, job.final)
        self.journal.set_state(job.f.name, job.f.size, DOWNLOADED)
        if is_tarball(job.f):
            self.to_extract.put((job.f, job.result))

    def _journal_segments(self, job: _Job) -> None:
        job.entry.segments = [[s.start, s.end, min(s.done, s.end)] for s in job.segments]

    def _restart(self, job: _Job, seg: _Segment, gen: int) -> _Segment:
        """The server did not honour a range: drop every range and fetch the file again from byte 0."""
        with self.cond:
            if job.generation != gen:          # another connection restarted it already
                raise _Restart()
            self.ranges_ok[job.host] = False
            job.generation += 1
            fresh = _Segment(0, job.f.size, 0, busy=True)
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
    def _check_status(self, job: _Job, r: requests.Response) -> None:
        name, code = job.f.name, r.status_code
        if code in (401, 403):
            raise _Fatal(AuthError(f"{name}: the archive refused access (HTTP {code})",
                                   "proprietary data needs a login: rerun with --user NAME"))
        if code == 404:
            raise _Fatal(NotFoundError(f"{name}: not found on {job.host} (HTTP 404)",
                                       "the plan may be stale: run the query again, or try another --archive"))
        if code >= 500 or code in (408, 429):
            raise requests.HTTPError(f"HTTP {code}")
        if code not in (200, 206, 416):
            raise _Fatal(TransferError(f"{name}: the archive answered HTTP {code}", "check the plan and the mirror"))
        if looks_like_html(r.headers.get("Content-Type"), b""):
            raise _Fatal(NotATarballError(
                f"{name}: the archive sent an HTML page instead of the file",
                "the login may have expired or the data is proprietary: rerun with --user NAME"))

    def _fetch(self, job: _Job, seg: _Segment, holder: list[_Segment]) -> None:
        """Fetch ``seg`` to its end, resuming after drops and retrying with backoff."""
        cfg = self.config
        attempt, gen = 0, job.generation
        while seg.done < seg.end:
            if self.stop is not None or job.result.error is not None:
                return
            if job.generation != gen:
                raise _Restart()
            progressed = False
            headers = {"Accept-Encoding": "identity"}
            start, end = seg.done, seg.end        # a thief may shorten seg.end while we wait for the answer
            ranged = start > 0 or end < job.f.size
            if ranged:
                headers["Range"] = f"bytes={start}-{end - 1}"
                with self.cond:
                    self.ranges_ok.setdefault(job.host, "probe")
            gate = cfg.connection_gate(job.host) if cfg.connection_gate else nullcontext()
            try:
                with gate, self.session.get(job.f.url, headers=headers, stream=True,
                                            timeout=(cfg.connect_timeout, cfg.read_timeout)) as r:
                    self._check_status(job, r)
                    good = r.status_code == 206 and content_range_matches(
                        r.headers.get("Content-Range"), start, end, job.f.size)
                    if good and self.ranges_ok.get(job.host) == "probe":
                        with self.cond:
                            self.ranges_ok[job.host] = True
                            self.cond.notify_all()             # idle connections may take over ranges now
                    if ranged and not good:
                        seg = holder[0] = self._restart(job, seg, gen)
                        gen = job.generation
                        if r.status_code != 200:
                            continue                     # ask again for the whole file, without Range
                    elif not ranged and r.status_code != 200:
                        raise _Fatal(TransferError(f"{job.f.name}: HTTP {r.status_code} to a plain GET",
                                                   "try another --archive"))
                    if r.status_code == 200:
                        length = r.headers.get("Content-Length")
                        if length is not None and int(length) != job.f.size:
                            raise _Fatal(SizeMismatchError(
                                f"{job.f.name}: the archive sends {length} bytes, DataLink announced {job.f.size}",
                                "the plan is stale: run the query again"))
                    first = seg.done == 0
                    for chunk in r.iter_content(cfg.chunk):
                        if first:
                            first = False
                            if looks_like_html(None, chunk):
                                raise _Fatal(NotATarballError(
                                    f"{job.f.name}: the archive sent an HTML page instead of the file",
                                    "the login may have expired or the data is proprietary: rerun with --user NAME"))
                        if job.generation != gen:
                            raise _Restart()
                        n = min(len(chunk), seg.end - seg.done)
                        if n <= 0:
                            break
                        view = memoryview(chunk)[:n]
                        while view:                       # a full disk may write part of a chunk
                            view = view[os.pwrite(job.fd, view, seg.done + n - len(view)):]
                        seg.done += n
                        job.result.fetched += n
                        progressed = True
                        job.bar.update(n)
                        self.total.update(n)
                        if seg.done >= seg.end:
                            break
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.HTTPError) as exc:
                if progressed:
                    attempt = 0
                    continue
                if attempt >= cfg.retries:
                    raise _Fatal(TransferError(f"{job.f.name}: gave up after {attempt + 1} attempts ({_short(exc)})",
                                               "run the same command again later to resume")) from None
                delay = backoff_delay(attempt, cfg.backoff, cfg.backoff_max)
                log.info("%s: %s; retrying in %.1f s", job.f.name, _short(exc), delay)
                attempt += 1
                time.sleep(delay)
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise _Fatal(DiskSpaceError(f"{self.dest} is full while writing {job.part.name}",
                                                "free some space and run the same command again; the .part is kept")) from None
                raise

    # ---- threads
    def worker(self) -> None:
        while True:
            with self.cond:
                try:
                    task = self._next()
                except OSError as exc:       # creating or preallocating a .part
                    if exc.errno not in _DISK_FULL:
                        raise
                    self.stop = DiskSpaceError(f"{self.dest} is full", "free some space and run the same command again")
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
            except Exception as exc:  # an unexpected failure belongs to this file, not to the whole run
                self._fail(job, TransferError(f"{job.f.name}: {type(exc).__name__}: {exc}", "rerun with --debug"))
            finally:
                self._release(job, holder[0])

    def _fail(self, job: _Job, error: AlmadeliverError) -> None:
        with self.cond:
            if job.result.error is None:
                job.result.status, job.result.error = "failed", error
            if isinstance(error, DiskSpaceError):
                self.stop = error
            self.cond.notify_all()

    def extractor(self) -> None:
        """Verify (and unless --no-untar, extract) each finished tarball while downloads go on."""
        while True:
            item = self.to_extract.get()
            if item is None:
                return
            f, result = item
            path = self.dest / f.name
            try:
                if self.config.untar:
                    extract_tarball(path, self.dest, keep=self.config.keep_tars)
                    self.journal.set_state(f.name, f.size, EXTRACTED)
                    result.extracted = True
                    result.path = path if self.config.keep_tars else None
                else:
                    read_members(path)
            except AlmadeliverError as exc:
                result.status, result.error = "failed", exc
                if not isinstance(exc, UnsafeTarballError):     # a bad download is not kept for next time
                    path.unlink(missing_ok=True)
                    with self.journal.lock:
                        self.journal.files.pop(f.name, None)
                    self.journal.save()
            except OSError as exc:                                # e.g. the disk filled while unpacking
                error = DiskSpaceError if exc.errno in _DISK_FULL else TransferError
                result.status = "failed"
                result.error = error(f"{f.name}: extraction failed ({exc.strerror})",
                                     "free some space and run the same command again; the tarball is kept")

    def flusher(self) -> None:
        while not self.done_event.wait(self.config.journal_every):
            self.flush()

    def flush(self) -> None:
        with self.cond:
            for j in self.jobs:
                if j.started and not j.finished:
                    self._journal_segments(j)
            self.journal.save()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."


def download(plan: DownloadPlan, dest: Path, config: TransferConfig | None = None,
             session: requests.Session | None = None) -> TransferResult:
    """Fetch every file of ``plan`` into ``dest`` and (unless ``config.untar`` is off) unpack the tarballs.

    Raises DiskSpaceError before starting if ``dest`` lacks room, or when the disk fills (the .part
    files are kept). Other failures are per file: see ``TransferResult.failed``.
    """
    config = config or TransferConfig()
    session = session or requests.Session()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    engine = _Engine(plan, dest, config, session)
    check_space(plan, dest, config.untar, engine.journal)
    engine.prepare()
    engine.journal.reserve()
    engine.journal.save()
    todo = sum(j.remaining if j.segments else j.f.size for j in engine.jobs)
    engine.total = tqdm(total=todo, unit="B", unit_scale=True, unit_divisor=1024, desc="total", position=0,
                        disable=engine.bar_disable)
    hosts = {j.host for j in engine.jobs} or {""}
    workers = [threading.Thread(target=engine.worker, name=f"download-{i}", daemon=True)
               for i in range(config.parallel * len(hosts))]
    extractor = threading.Thread(target=engine.extractor, name="extract", daemon=True)
    flusher = threading.Thread(target=engine.flusher, name="journal", daemon=True)
    for t in (*workers, extractor, flusher):
        t.start()
    try:
        for t in workers:
            while t.is_alive():
                t.join(0.2)
        engine.to_extract.put(None)
        while extractor.is_alive():
            extractor.join(0.2)
    except KeyboardInterrupt:
        with engine.cond:
            engine.stop = TransferError("interrupted", "run the same command again to resume")
            engine.cond.notify_all()
        for t in workers:
            t.join(5)
        raise
    finally:
        engine.done_event.set()
        engine.flush()
        engine.total.close()
    if isinstance(engine.stop, DiskSpaceError):
        raise engine.stop
    for j in engine.jobs:
        if not j.finished and j.result.error is None:   # a safety net: never report an unfinished file as fetched
            j.result.status = "failed"
            j.result.error = TransferError(f"{j.f.name}: incomplete", "run the same command again to resume")
    return TransferResult(dest, engine.results, time.monotonic() - t0)
