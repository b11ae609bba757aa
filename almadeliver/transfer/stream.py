"""One HTTP stream of file bytes: keep-alive pools sized to the connection limit, a semaphore per
archive host, the checks of an answer, and the receive loop.

The receive loop reads the body straight into one preallocated buffer (``readinto`` of http.client,
which fills it in C) and writes it with ``os.pwrite``: a few Python operations per buffer of MBs,
and no copy of the bytes besides the kernel's. A body read to its end leaves its connection in the
pool for the next request (keep-alive); a body cut short closes it.
"""
from __future__ import annotations

import http.client
import os
import random
import threading
from contextlib import AbstractContextManager, ExitStack
from typing import Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from ..errors import AuthError, NotATarballError, NotFoundError, TransferError


def looks_like_html(content_type: str | None, head: bytes) -> bool:
    """True for an HTML page (an expired login, an error page) where a file was expected.

    Parameters
    ----------
    content_type : str or None
        The answer's Content-Type header (None: not known or not looked at); ``text/html`` and
        ``application/xhtml+xml`` (with any parameters) mean HTML.
    head : bytes
        The first bytes of the body (only the first 1024 are looked at; empty: not read yet).

    Returns
    -------
    bool
        True when the Content-Type is HTML, or the body starts (after white space, in any case)
        with ``<!doctype html`` or ``<html``, or with ``<?xml`` and has ``<html`` in its first
        1024 bytes.
    """
    if content_type and content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    text = head[:1024].lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html")) or (text.startswith(b"<?xml") and b"<html" in text)


def html_error(name: str) -> NotATarballError:
    """The error for an HTML page sent instead of the file ``name``.

    Parameters
    ----------
    name : str
        The file asked for (a tarball or README name, for the message).

    Returns
    -------
    NotATarballError
        The error, not raised: its hint says the login may have expired or the data be proprietary.
    """
    return NotATarballError(f"{name}: the archive sent an HTML page instead of the file",
                            "the login may have expired or the data is proprietary: rerun with --user NAME")


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped (seconds).

    Parameters
    ----------
    attempt : int
        Attempts without progress so far (0 before the first retry).
    base : float
        The delay before the first retry, in seconds (``TransferConfig.backoff``); doubled each attempt.
    cap : float
        The largest delay, in seconds (``TransferConfig.backoff_max``).

    Returns
    -------
    float
        Seconds to wait: with ``d = min(cap, base * 2**attempt)``, between ``d / 2`` and ``d``.
    """
    d = min(cap, base * 2 ** attempt)
    return d / 2 + random.uniform(0, d / 2)


def check_answer(name: str, host: str, r: requests.Response) -> None:
    """Refuse an answer that is not file bytes.

    Parameters
    ----------
    name : str
        The file asked for (for the message).
    host : str
        The archive host (for the message).
    r : requests.Response
        The answer, body not read yet.

    Raises
    ------
    AuthError
        HTTP 401 or 403 (proprietary data without a login): never retried.
    NotFoundError
        HTTP 404: never retried.
    requests.HTTPError
        HTTP 5xx, 408 or 429: the caller retries.
    TransferError
        Any other status but 200, 206 and 416.
    NotATarballError
        An HTML page (Content-Type text/html).
    """
    code = r.status_code
    if code in (401, 403):
        raise AuthError(f"{name}: the archive refused access (HTTP {code})",
                        "proprietary data needs a login: rerun with --user NAME")
    if code == 404:
        raise NotFoundError(f"{name}: not found on {host} (HTTP 404)",
                            "the plan may be stale: run the query again, or try another --archive")
    if code >= 500 or code in (408, 429):
        raise requests.HTTPError(f"HTTP {code}")
    if code not in (200, 206, 416):
        raise TransferError(f"{name}: the archive answered HTTP {code}", "check the plan and the mirror")
    if looks_like_html(r.headers.get("Content-Type"), b""):
        raise html_error(name)


def size_pools(session: requests.Session, urls: list[str], parallel: int) -> None:
    """Keep up to ``parallel`` kept-alive connections per archive host in ``session`` (requests keeps
    10 by default: with more, connections were opened and thrown away). An adapter mounted by the
    caller (its own retries or TLS) is left alone.

    Parameters
    ----------
    session : requests.Session
        The HTTP session of the download; changed in place (an ``HTTPAdapter`` mounted per host).
    urls : list of str
        The URLs to be fetched (only their scheme and host are used).
    parallel : int
        Kept-alive connections per host (``TransferConfig.parallel``).
    """
    for url in urls:
        parts = urlsplit(url)
        prefix = f"{parts.scheme}://{parts.netloc}/"
        if type(session.get_adapter(url)) is HTTPAdapter and prefix not in session.adapters:
            session.mount(prefix, HTTPAdapter(pool_connections=1, pool_maxsize=parallel))


class HostGates:
    """At most ``parallel`` streams in flight per archive host in this process (a semaphore each),
    then the caller's gate shared with other processes (``TransferConfig.connection_gate``).

    Called with a host, it returns a context that holds one lease of that host.

    Parameters
    ----------
    parallel : int
        Streams in flight per archive host in this process (``TransferConfig.parallel``).
    shared : callable, optional
        Called with the host, returns a context manager holding a lease shared with other
        processes (``almadeliver run``); None: only ``parallel`` applies.
    """

    def __init__(self, parallel: int, shared: Callable[[str], AbstractContextManager] | None = None):
        self.parallel, self.shared = parallel, shared
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def __call__(self, host: str) -> ExitStack:
        """A context that holds one of ``host``'s leases (this process's first, then the shared one)."""
        with self._lock:
            semaphore = self._semaphores.setdefault(host, threading.BoundedSemaphore(self.parallel))
        stack = ExitStack()
        stack.enter_context(semaphore)
        if self.shared is not None:
            try:
                stack.enter_context(self.shared(host))
            except BaseException:
                stack.close()
                raise
        return stack


def body_reader(r: requests.Response) -> Callable[[memoryview], int]:
    """``readinto`` for the body of ``r``: from http.client itself when urllib3 exposes it (the
    buffer is filled in C, no copy), else through urllib3. A read error is a ``requests.ConnectionError``.

    Parameters
    ----------
    r : requests.Response
        An answer opened with ``stream=True``, body not read yet.

    Returns
    -------
    callable
        ``read(view) -> int``: fills the memoryview with the next bytes of the body and returns
        how many bytes it read (0 at the end of the body). It raises ``requests.ConnectionError``
        when the connection breaks (reset, timeout, TLS); the bytes read before are kept.
    """
    fp = getattr(r.raw, "_fp", None)
    readinto = fp.readinto if isinstance(fp, http.client.HTTPResponse) else r.raw.readinto

    def read(view: memoryview) -> int:
        try:
            return readinto(view)
        except OSError as exc:           # reset, timeout, TLS: the connection broke, the bytes so far are kept
            raise requests.ConnectionError(f"the connection broke ({type(exc).__name__})") from exc
    return read


def keep_alive(r: requests.Response) -> None:
    """Give the connection of ``r`` back to the pool if its body was read to the end (otherwise
    closing the answer closes the connection).

    Parameters
    ----------
    r : requests.Response
        An answer opened with ``stream=True`` whose body was read with ``body_reader``.
    """
    fp = getattr(r.raw, "_fp", None)
    if isinstance(fp, http.client.HTTPResponse) and fp.isclosed():
        r.raw.release_conn()


def write_at(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset`` of ``fd`` (a full disk may write part of it, then raise).

    Parameters
    ----------
    fd : int
        An open file descriptor of the ``.part`` file, opened for writing.
    view : memoryview
        The bytes to write.
    offset : int
        Where the first byte goes, in bytes from the start of the file.

    Raises
    ------
    OSError
        From ``os.pwrite``: ENOSPC, EDQUOT or EFBIG when the disk or quota is full (the caller
        turns it into DiskSpaceError), any other write error as is.
    """
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
