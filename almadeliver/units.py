"""Sizes as people read them (decimal units, as the ALMA archive shows them)."""
from __future__ import annotations


def human_size(n: float) -> str:
    """``1234567`` -> ``'1.2 MB'``; bytes below 1 kB stay whole."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


#: tqdm's byte bars in the same decimal units (``unit_divisor``) as ``human_size`` and the archive.
BAR_DIVISOR = 1000


def middle_cut(text: str, width: int = 32) -> str:
    """``text`` in at most ``width`` characters, cut in the middle (``'2017.1.00123.S_ui…_001_of_001.tar'``):
    a delivery file name keeps its project code and its kind, which a cut at the start would lose."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"
