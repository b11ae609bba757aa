"""The pipeline's cont.dat: continuum frequency ranges per field and spectral window.

The ALMA pipeline has written three generations, and reads all three (pipeline contfilehandler;
ALMA-FACTS.md section 3):

1. earliest: the field name alone on a line, ``SPW<id>`` lines, ranges without a frame
   (``93.1~93.2GHz``; the pipeline reads them as TOPO);
2. middle: ``Field: <name>``, ``SpectralWindow: <id>``, ``<lo>~<hi>GHz LSRK`` lines, ``NONE`` (no
   continuum found) or ``ALL`` (the whole spw is continuum);
3. newest (pipeline 2024 on): ``SpectralWindow: <id> <spw name>``, optional ``Flags:`` lines
   (``ALLCONT``: the whole spw is continuum, ``LOWBANDWIDTH``, ``LOWSPREAD``); a spw line with no
   ranges means the whole spw is continuum (ALLCONT flag or not); ``NONE`` still says none was found.

The spw name is kept but not used: ranges are looked up by spw id. An spw the file omits is one the
pipeline will look for itself (``find it``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError

_FIELD_RE = re.compile(r"^Field\s*:\s*(?P<name>\S.*?)\s*$")
_SPW_RE = re.compile(r"^SpectralWindow\s*:\s*(?P<spw>\d+)(?:\s+(?P<name>\S.*?))?\s*$")
_OLD_SPW_RE = re.compile(r"^SPW\s*(?P<spw>\d+)\s*$")
_FLAGS_RE = re.compile(r"^Flags\s*:(?P<flags>.*)$")
_RANGE_RE = re.compile(
    r"^(?P<low>[0-9.eE+-]+)~(?P<high>[0-9.eE+-]+)\s*(?P<unit>[kMGT]?Hz)(?:\s+(?P<frame>[A-Z]+))?\s*;?$")
_KEYWORDS = {"NONE", "ALL", "ALLCONT"}
_HZ = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "THz": 1e12}
#: Flags the pipeline writes on a ``Flags:`` line (newest generation); others are kept as written.
KNOWN_FLAGS = ("ALLCONT", "LOWBANDWIDTH", "LOWSPREAD")
#: The frame the pipeline assumes for ranges written without one (earliest generation).
FRAMELESS_FRAME = "TOPO"


@dataclass(frozen=True)
class FreqRange:
    """One continuum range as written, e.g. ``93.10~93.15GHz LSRK`` (frame None when not written)."""

    low: float
    high: float
    unit: str
    frame: str | None = None

    @property
    def low_hz(self) -> float:
        """The low edge in Hz."""
        return self.low * _HZ[self.unit]

    @property
    def high_hz(self) -> float:
        """The high edge in Hz."""
        return self.high * _HZ[self.unit]


@dataclass
class SpwRanges:
    """The continuum of one spw of one field: ranges, NONE/ALL keywords, Flags (newest generation)."""

    spw: int
    ranges: list[FreqRange] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)   # NONE, ALL, ALLCONT as the pipeline wrote them
    flags: list[str] = field(default_factory=list)      # ALLCONT, LOWBANDWIDTH, LOWSPREAD ('Flags:' lines)
    name: str | None = None                             # the spw name of the newest generation (not used)
    empty_is_all: bool = False                          # newest generation: no ranges = all continuum

    @property
    def all_continuum(self) -> bool:
        """The whole spw is continuum, as the pipeline's reader decides: ``ALL``, ``ALLCONT``, or (newest
        generation, ALMA-FACTS.md section 3) a spw line with no ranges and no ``NONE``."""
        return ("ALL" in self.keywords or "ALLCONT" in self.keywords or "ALLCONT" in self.flags
                or (self.empty_is_all and not self.ranges and "NONE" not in self.keywords))

    @property
    def no_continuum(self) -> bool:
        """No continuum was found: ``NONE``, or no range at all (and not all continuum)."""
        return not self.all_continuum and not self.ranges


@dataclass
class ContDat:
    """A parsed cont.dat: field name -> spw id -> SpwRanges, and the generation it was written in."""

    path: str
    fields: dict[str, dict[int, SpwRanges]] = field(default_factory=dict)
    generation: int = 2

    def ranges(self, field_name: str, spw: int) -> list[FreqRange]:
        """The continuum ranges of ``field_name`` in ``spw`` (none when cont.dat has no entry).

        Parameters
        ----------
        field_name : str
            The field (source) name as cont.dat writes it.
        spw : int
            The spw id.

        Returns
        -------
        list[FreqRange]
            The continuum frequency ranges (Hz, with their frame).
        """
        return self.fields.get(field_name, {}).get(spw, SpwRanges(spw)).ranges

    @property
    def default_frame(self) -> str:
        """The frame of a range written without one: TOPO (the pipeline reads the earliest generation so);
        LSRK otherwise."""
        return FRAMELESS_FRAME if self.generation == 1 else "LSRK"

    def flagged(self) -> list[tuple[str, int, list[str]]]:
        """(field, spw, flags) for every spw with a ``Flags:`` line, in file order.

        Returns
        -------
        list[tuple[str, int, list[str]]]
            (field, spw, flags) tuples.
        """
        return [(f, s, sr.flags) for f, spws in self.fields.items() for s, sr in spws.items() if sr.flags]


def parse_contdat_text(text: str, path: str = "cont.dat") -> ContDat:
    """Parse cont.dat text in any of the three pipeline generations.

    Parameters
    ----------
    text : str
        The file's text.
    path : str
        The name used in error messages.

    Returns
    -------
    ContDat
        Fields, spws, ranges (frequencies as written, with their unit), keywords and flags.

    Raises
    ------
    ParseError
        Naming the line that fits no generation (a range that is not ``<lo>~<hi><unit> [frame]``, a
        range running backwards, a range before any spw, no field at all).
    """
    result = ContDat(path)
    current_field: str | None = None
    current_spw: SpwRanges | None = None
    bare_fields = old_spws = new_marks = False
    after_blank = True
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            after_blank = True
            continue
        if line.startswith("#"):
            continue
        where = f"{path}: line {number}"
        blank_before, after_blank = after_blank, False
        m = _FIELD_RE.match(line)
        if m:
            current_field, current_spw = m["name"], None
            result.fields.setdefault(current_field, {})
            continue
        m = _SPW_RE.match(line) or _OLD_SPW_RE.match(line)
        if m:
            if current_field is None:
                word = "SPW" if line.startswith("SPW") else "SpectralWindow"
                raise ParseError(f"{where}: '{word}' before any 'Field:' line",
                                 "each block starts with 'Field: <name>' (or the field name alone, in old files)")
            spw = int(m["spw"])
            current_spw = result.fields[current_field].setdefault(spw, SpwRanges(spw))
            if line.startswith("SPW"):
                old_spws = True
            elif m["name"]:
                current_spw.name, new_marks = m["name"], True
            continue
        m = _FLAGS_RE.match(line)
        if m:
            if current_spw is None:
                raise ParseError(f"{where}: 'Flags:' outside a 'SpectralWindow:' block",
                                 "a 'Flags:' line follows its 'SpectralWindow: <id> <name>' line")
            current_spw.flags += m["flags"].split()
            new_marks = True
            continue
        if line.upper() in _KEYWORDS and current_spw is not None:
            current_spw.keywords.append(line.upper())
            continue
        m = _RANGE_RE.match(line)
        if m is None and "~" not in line and blank_before and (current_field is None or bare_fields):
            # earliest generation: the field name alone on a line (after a blank line)
            current_field, current_spw, bare_fields = line.strip('"'), None, True
            result.fields.setdefault(current_field, {})
            continue
        if current_spw is None:
            raise ParseError(f"{where}: '{line}' outside a 'SpectralWindow:' block",
                             "ranges follow a 'SpectralWindow: <id>' line")
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
    result.generation = 1 if (bare_fields or old_spws) else 3 if new_marks else 2
    if result.generation == 3:
        for spws in result.fields.values():
            for sr in spws.values():
                sr.empty_is_all = True
    return result


def parse_contdat(path: str | Path) -> ContDat:
    """Read and parse a cont.dat file (see ``parse_contdat_text``).

    Parameters
    ----------
    path : str | Path
        The cont.dat file.

    Returns
    -------
    ContDat
        The ranges per field and spw.
    """
    return parse_contdat_text(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
