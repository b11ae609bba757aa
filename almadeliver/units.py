"""Sizes as people read them (decimal units, as the ALMA archive shows them)."""
from __future__ import annotations


def human_size(n: float) -> str:
    """``1234567`` -> ``'1.2 MB'``; bytes below 1 kB stay whole."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
