"""The pipeline's cont.dat: continuum frequency ranges per field and spectral window."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError

_FIELD_RE = re.compile(r"^Field\s*:\s*(?P<name>\S.*?)\s*$")
_SPW_RE = re.compile(r"^SpectralWindow\s*:\s*(?P<spw>\d+)(?:\s+(?P<rest>.*))?$")
_RANGE_RE = re.compile(
    r"^(?P<low>[0-9.eE+-]+)~(?P<high>[0-9.eE+-]+)\s*(?P<unit>[kMGT]?Hz)(?:\s+(?P<frame>[A-Z]+))?$")
_KEYWORDS = {"NONE", "ALL", "ALLCONT"}
_HZ = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "THz": 1e12}


@dataclass(frozen=True)
class FreqRange:
    low: float
    high: float
    unit: str
    frame: str | None = None

    @property
    def low_hz(self) -> float:
        return self.low * _HZ[self.unit]

    @property
    def high_hz(self) -> float:
        return self.high * _HZ[self.unit]


@dataclass
class SpwRanges:
    spw: int
    ranges: list[FreqRange] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)   # NONE, ALL, ALLCONT as the pipeline wrote them


@dataclass
class ContDat:
    path: str
    fields: dict[str, dict[int, SpwRanges]] = field(default_factory=dict)

    def ranges(self, field_name: str, spw: int) -> list[FreqRange]:
        return self.fields.get(field_name, {}).get(spw, SpwRanges(spw)).ranges


def parse_contdat_text(text: str, path: str = "cont.dat") -> ContDat:
    """Parse cont.dat text; ParseError names the line that does not fit."""
    result = ContDat(path)
    current_field: str | None = None
    current_spw: SpwRanges | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}: line {number}"
        m = _FIELD_RE.match(line)
        if m:
            current_field, current_spw = m["name"], None
            result.fields.setdefault(current_field, {})
            continue
        m = _SPW_RE.match(line)
        if m:
            if current_field is None:
                raise ParseError(f"{where}: 'SpectralWindow' before any 'Field:' line",
                                 "each block starts with 'Field: <name>'")
            current_spw = result.fields[current_field].setdefault(int(m["spw"]), SpwRanges(int(m["spw"])))
            continue
        if current_spw is None:
            raise ParseError(f"{where}: '{line}' outside a 'SpectralWindow:' block",
                             "ranges follow a 'SpectralWindow: <id>' line")
        if line.upper() in _KEYWORDS:
            current_spw.keywords.append(line.upper())
            continue
        m = _RANGE_RE.match(line)
        if not m:
            raise ParseError(f"{where}: '{line}' is not a frequency range",
                             "expected e.g. '93.10~93.15GHz LSRK'")
        try:
            low, high = float(m["low"]), float(m["high"])
        except ValueError:
            raise ParseError(f"{where}: '{line}' has a malformed number", "expected e.g. '93.10~93.15GHz LSRK'") from None
        if low > high:
            raise ParseError(f"{where}: range {low}~{high} runs backwards", "write the lower frequency first")
        current_spw.ranges.append(FreqRange(low, high, m["unit"], m["frame"]))
    if not result.fields:
        raise ParseError(f"{path}: no 'Field:' block", "a cont.dat lists 'Field: <name>' then 'SpectralWindow: <id>'")
    return result


def parse_contdat(path: str | Path) -> ContDat:
    return parse_contdat_text(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
