"""A tiny scatter-plot PNG writer for the QA2 plots (matplotlib is not a dependency)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def _png(pixels: np.ndarray) -> bytes:
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def scatter_png(path: Path, series: list[tuple[np.ndarray, np.ndarray]], width: int = 320, height: int = 200,
                ylim: tuple[float, float] | None = None) -> Path:
    """Plot each (x, y) series as coloured dots inside a framed box; write ``path``."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    m = 12
    img[m, m:width - m] = img[height - m, m:width - m] = 0
    img[m:height - m, m] = img[m:height - m, width - m] = 0
    xs = np.concatenate([np.asarray(x, float) for x, _ in series]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(y, float) for _, y in series]) if series else np.zeros(1)
    x0, x1 = float(np.nanmin(xs)), float(np.nanmax(xs))
    y0, y1 = ylim if ylim else (float(np.nanmin(ys)), float(np.nanmax(ys)))
    if ylim is None and y0 < 0 < y1:
        zero = height - m - int((0 - y0) / ((y1 - y0) or 1) * (height - 2 * m))
        img[zero, m:width - m:3] = 128
    for k, (x, y) in enumerate(series):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        px = (m + 2 + (x[ok] - x0) / ((x1 - x0) or 1) * (width - 2 * m - 4)).astype(int)
        py = (height - m - 2 - (np.clip(y[ok], y0, y1) - y0) / ((y1 - y0) or 1) * (height - 2 * m - 4)).astype(int)
        for dx in (0, 1):
            for dy in (0, 1):
                img[np.clip(py + dy, 0, height - 1), np.clip(px + dx, 0, width - 1)] = _COLOURS[k % len(_COLOURS)]
    Path(path).write_bytes(_png(img))
    return Path(path)
