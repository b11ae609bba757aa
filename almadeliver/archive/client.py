"""The ALMA archive mirrors, one shared HTTP session, and falling back to the next mirror."""
from __future__ import annotations

import http.client
import logging
import os
import random
import time
from typing import Callable, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .. import __version__
from ..errors import ArchiveUnreachable, UsageError

log = logging.getLogger("almadeliver.archive")

MIRRORS = {
    "eso": "https://almascience.eso.org",
    "nrao": "https://almascience.nrao.edu",
    "naoj": "https://almascience.nao.ac.jp",
}
DEFAULT_ARCHIVE = "https://almascience.org"   # redirects to one of the mirrors
ARCHIVE_ENV = "ALMADELIVER_ARCHIVE"
TIMEOUT = (10, 120)                            # seconds: connect, read
RETRIES = 2                                    # more attempts on the same mirror before the next one
BACKOFF = 0.5                                  # seconds before the first retry, doubled each time, with jitter

# Every way a transfer can break before the mirror has answered in full: requests' own errors and
# the urllib3 / http.client / socket ones that escape from streamed reads (response.raw).
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError, urllib3.exceptions.HTTPError,
                    http.client.HTTPException, ConnectionError, TimeoutError)

T = TypeVar("T")


class MirrorDown(Exception):
    """A mirror did not answer (no connection, timeout, 5xx without a service answer)."""


def mirror_list(archive: str | None = None) -> list[str]:
    """The mirror URLs to try, in order, for ``--archive`` (or $ALMADELIVER_ARCHIVE).

    A mirror name (eso, nrao, naoj) or the default puts the other ALMA mirrors behind it as
    fallbacks; any other URL (a local archive) is used alone.
    """
    choice = (archive or os.environ.get(ARCHIVE_ENV) or DEFAULT_ARCHIVE).strip()
    known = [DEFAULT_ARCHIVE, *MIRRORS.values()]
    if choice.lower() in MIRRORS:
        first = MIRRORS[choice.lower()]
    elif choice.startswith(("http://", "https://")):
        first = choice.rstrip("/")
        if first not in known:
            return [first]
    else:
        raise UsageError(f"unknown archive '{choice}'",
                         "use --archive eso, nrao, naoj or a URL such as http://127.0.0.1:8080")
    return [first] + [m for m in known if m != first]


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout (pyvo passes none)."""

    def __init__(self, timeout, **kwargs):
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def make_session(workers: int = 8, timeout=TIMEOUT) -> requests.Session:
    """A requests session with enough pooled connections for ``workers`` threads."""
    session = requests.Session()
    adapter = _TimeoutAdapter(timeout, pool_connections=4, pool_maxsize=max(10, workers))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"almadeliver/{__version__}"
    return session


class ArchiveClient:
    """Where to ask (the mirrors, in order) and how (one injected requests session)."""

    def __init__(self, archive: str | None = None, session: requests.Session | None = None, workers: int = 8,
                 mirrors: list[str] | None = None, retries: int = RETRIES, backoff: float = BACKOFF):
        self.mirrors = [m.rstrip("/") for m in mirrors] if mirrors else mirror_list(archive)
        self.session = session or make_session(workers)
        self.workers = workers
        self.retries, self.backoff = retries, backoff
        self.url: str | None = None    # the mirror that answered; later calls stay on it

    def call(self, what: str, fn: Callable[[str], T]) -> T:
        """``fn(mirror_url)`` on the mirror that answered before, else on each mirror in turn.

        ``fn`` raises MirrorDown when a mirror does not answer; every other error passes through.
        """
        candidates = [self.url] if self.url else self.mirrors
        tried = []
        for i, base in enumerate(candidates):
            try:
                result = self._retried(what, base, fn)
            except MirrorDown as exc:
                tried.append(base)
                if i + 1 < len(candidates):
                    log.warning("%s did not answer %s (%s); trying %s", base, what, exc, candidates[i + 1])
                else:
                    log.debug("%s did not answer %s: %s", base, what, exc)
                last = exc
                continue
            self.url = base
            return result
        raise ArchiveUnreachable(
            f"no ALMA archive answered {what} (tried {', '.join(tried)}: {last})",
            "check the network, or choose another mirror with --archive eso|nrao|naoj|URL",
        )


    def _retried(self, what: str, base: str, fn: Callable[[str], T]) -> T:
        """``fn(base)``, tried ``1 + self.retries`` times with exponential backoff and jitter."""
        for attempt in range(self.retries + 1):
            try:
                return fn(base)
            except MirrorDown as exc:
                if attempt >= self.retries:
                    raise
                delay = min(30.0, self.backoff * 2 ** attempt)
                delay = delay / 2 + random.uniform(0, delay / 2)
                log.info("%s did not answer %s (%s); asking again in %.1f s", base, what, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def down_reason(exc: BaseException) -> str | None:
    """Why a request failed because the mirror is not answering, or None if it did answer."""
    cause = exc
    while cause is not None:
        if isinstance(cause, requests.Timeout):
            return "timed out"
        if isinstance(cause, requests.ConnectionError):
            return "no connection"
        if isinstance(cause, TRANSPORT_ERRORS):
            return f"the connection broke ({type(cause).__name__})"
        if isinstance(cause, requests.HTTPError) and cause.response is not None and cause.response.status_code >= 500:
            return f"HTTP {cause.response.status_code}"
        nested = getattr(cause, "cause", None)
        cause = nested if isinstance(nested, BaseException) else (cause.__cause__ or cause.__context__)
    return None
