"""Byte ranges of a file being downloaded: splitting a file, how much one request asks, and stealing.

A file is fetched as one or more ranges ("segments"). The connection working on a segment asks for
it in bounded requests (``Range: bytes=a-b``) and reads each answer to its end, so a keep-alive
connection is reused and no answer is ever cut short while the server still sends. ``Segment.asked``
is where the request in flight ends: an idle connection may take over the part of a running
segment past ``asked`` (it shortens what the segment's connection will ask for next, never what it
is receiving), so no byte is fetched twice when nothing fails.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MiB = 1 << 20
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


@dataclass(eq=False)
class Segment:
    """The bytes ``[start, end)`` of a file; ``[start, done)`` are on disk; ``[done, asked)`` are asked."""

    start: int
    end: int                 # a thief may lower it, never below ``asked``
    done: int
    busy: bool = False
    asked: int = 0           # end of the request in flight (0: none); the server sends up to here


def split_evenly(size: int, n: int) -> list[Segment]:
    """``n`` segments of about equal size covering ``[0, size)``.

    Parameters
    ----------
    size : int
        File size in bytes.
    n : int
        Number of ranges wanted (at least 1).

    Returns
    -------
    list of Segment
        Contiguous, in order, nothing on disk yet; none for an empty file.
    """
    step = max(-(-size // max(n, 1)), 1)
    return [Segment(a, min(a + step, size), a) for a in range(0, size, step)]


def content_range_matches(header: str | None, start: int, end: int, total: int) -> bool:
    """True if a 206's Content-Range (RFC 9110 section 14.4) starts at ``start``, stays before ``end``
    and names ``total`` (or ``*``).

    A 206 is trusted only when this holds: the caller writes the body at ``start`` of the ``.part``,
    so an answer for other bytes (a server or proxy that ignored or changed the Range) would corrupt
    the file; it restarts the file from byte 0 instead.

    Parameters
    ----------
    header : str or None
        The Content-Range header of the answer, ``bytes FIRST-LAST/TOTAL`` (None: the answer had none).
    start : int
        First byte asked for (the ``a`` of ``Range: bytes=a-b``), in bytes from the file's start.
    end : int
        End (exclusive) of the bytes asked for (``b + 1``), in bytes from the file's start; a shorter
        answer (LAST below ``end - 1``) is accepted, one past it is not.
    total : int
        The file's size in bytes (as DataLink announced it).

    Returns
    -------
    bool
        True when the header parses, FIRST is ``start``, ``start <= LAST < end`` and TOTAL is
        ``total`` or ``*``; False otherwise (also for a missing or malformed header).
    """
    m = _CONTENT_RANGE.match(header or "")
    if not m:
        return False
    first, last, size = int(m[1]), int(m[2]), m[3]
    return first == start and start <= last < end and (size == "*" or int(size) == total)


def content_range_end(header: str) -> int:
    """The end (exclusive) of a Content-Range already checked by ``content_range_matches``.

    A server may send fewer bytes than asked (LAST before the end of the Range); the request then
    ends here and the rest of the segment is asked by the next request.

    Parameters
    ----------
    header : str
        A Content-Range header, ``bytes FIRST-LAST/TOTAL``, that ``content_range_matches`` accepted.

    Returns
    -------
    int
        ``LAST + 1``: the first byte past the answer's body, in bytes from the file's start.
    """
    m = _CONTENT_RANGE.match(header)
    assert m is not None
    return int(m[2]) + 1


def steal_point(done: int, end: int, steal_min: int) -> int:
    """Where a thief splits the part ``[done, end)`` of a range that nobody asked for yet: about half
    way, on a MiB boundary when one leaves both halves at least ``steal_min``, else on a 4 KiB
    boundary. Always strictly inside, so the victim keeps what it has and asked for, and the thief
    never fetches those bytes again.

    Parameters
    ----------
    done : int
        First byte not yet asked for (the victim's ``max(done, asked)``), in bytes from the file's start.
    end : int
        End (exclusive) of the victim's range, in bytes from the file's start.
    steal_min : int
        Smallest half worth a connection, in bytes.

    Returns
    -------
    int
        The first byte of the thief's range.
    """
    mid = done + (end - done) // 2
    for unit in (MiB, 4096):
        aligned = mid - mid % unit
        if aligned - done >= steal_min:      # then end - aligned >= end - mid >= mid - done >= steal_min too
            return aligned
    return mid


def stealable(seg: Segment) -> int:
    """Bytes of a running segment that no request has asked for yet (what a thief may split).

    Parameters
    ----------
    seg : Segment
        A segment, usually one a connection is working on (``busy``).

    Returns
    -------
    int
        ``seg.end - max(seg.done, seg.asked)``, in bytes: the part past what is on disk and past the
        request in flight (0 or less: nothing to take over).
    """
    return seg.end - max(seg.done, seg.asked)


def next_ask(previous: int, rate: float, seconds: float, smallest: int, largest: int) -> int:
    """Bytes the next request of a connection asks for: double the previous ask (from ``smallest``),
    up to what the connection brings in ``seconds`` at ``rate``, within ``[smallest, largest]``.

    Small first asks let idle connections take over most of a range early; growing asks keep the
    request round trips (a pause of one round-trip time each) a small part of the transfer.

    Parameters
    ----------
    previous : int
        The previous ask of this connection in bytes (0: none yet).
    rate : float
        The connection's measured rate in bytes/s (0: not known).
    seconds : float
        Transfer time one request should last, in seconds.
    smallest, largest : int
        Bounds of an ask in bytes.

    Returns
    -------
    int
        The ask in bytes.
    """
    return max(smallest, min(2 * previous, max(int(rate * seconds), smallest), largest))
