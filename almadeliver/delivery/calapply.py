"""``<EB>.ms.calapply.txt``: the applycal calls the pipeline used, one per line (never eval'd)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParseError
from .calls import parse_call

#: Pipeline intent names (calapply.txt) -> the scan intents they select in an ALMA MS.
PIPELINE_INTENTS = {
    "TARGET": "OBSERVE_TARGET#ON_SOURCE",
    "PHASE": "CALIBRATE_PHASE#ON_SOURCE",
    "BANDPASS": "CALIBRATE_BANDPASS#ON_SOURCE",
    "AMPLITUDE": "CALIBRATE_FLUX#ON_SOURCE",
    "CHECK": "OBSERVE_CHECK_SOURCE#ON_SOURCE",
    "POLARIZATION": "CALIBRATE_POLARIZATION#ON_SOURCE",
    "POLANGLE": "CALIBRATE_POLARIZATION#ON_SOURCE",
    "POLLEAKAGE": "CALIBRATE_POLARIZATION#ON_SOURCE",
    "DIFFGAINREF": "CALIBRATE_DIFFGAIN#REFERENCE",
    "DIFFGAINSRC": "CALIBRATE_DIFFGAIN#ON_SOURCE",
}


@dataclass
class ApplyCal:
    """One applycal line: the selection, the tables and how they are applied."""

    line: int
    vis: str
    gaintable: list[str]
    field: str = ""
    intent: str = ""
    spw: str = ""
    antenna: str = ""
    gainfield: list[str] = dataclasses.field(default_factory=list)
    spwmap: list[Any] = dataclasses.field(default_factory=list)
    interp: list[str] = dataclasses.field(default_factory=list)
    calwt: list[bool] = dataclasses.field(default_factory=list)
    other: dict[str, Any] = dataclasses.field(default_factory=dict)   # e.g. parang, applymode, flagbackup

    def ms_intents(self) -> str:
        """The ``intent`` selection rewritten from pipeline names to the MS's scan intents.

        Returns
        -------
        str
            The intent selection in the MS's words (``CALIBRATE_PHASE#ON_SOURCE``, ...).

        Raises
        ------
        ParseError
            An intent is not one the pipeline writes (the message names the line).
        """
        names = [n.strip() for n in self.intent.split(",") if n.strip()]
        unknown = [n for n in names if n not in PIPELINE_INTENTS and "#" not in n]
        if unknown:
            raise ParseError(f"calapply line {self.line}: unknown pipeline intent {unknown[0]!r}",
                             f"known intents: {', '.join(PIPELINE_INTENTS)}")
        return ",".join(PIPELINE_INTENTS.get(n, n) for n in names)


_LISTS = ("gaintable", "gainfield", "spwmap", "interp", "calwt")
_STRINGS = ("vis", "field", "intent", "spw", "antenna")


def parse_calapply(text: str, source: str = "calapply.txt") -> list[ApplyCal]:
    """Every applycal line of a calapply.txt; a malformed line raises ParseError with its number.

    Parameters
    ----------
    text : str
        The text of a calapply.txt file.
    source : str, default "calapply.txt"
        Its name, for the error messages.

    Returns
    -------
    list[ApplyCal]
        The applycal calls, in file order.

    Raises
    ------
    ParseError
        A line is not an applycal call with string vis= and gaintable= (the message names it).
    """
    calls = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        call = parse_call(raw, number, source)
        if call.task != "applycal":
            raise ParseError(f"{source}:{number}: expected applycal(...), found {call.task}(...)")
        kw = dict(call.kwargs)
        if "vis" not in kw or "gaintable" not in kw:
            raise ParseError(f"{source}:{number}: applycal without vis= or gaintable=")
        for name in _LISTS:
            if name in kw and not isinstance(kw[name], (list, tuple)):
                kw[name] = [kw[name]]
            if name in kw:
                kw[name] = list(kw[name])
        for name in _STRINGS:
            if name in kw and not isinstance(kw[name], str):
                raise ParseError(f"{source}:{number}: {name}= must be a string")
        known = {k: kw.pop(k) for k in (*_STRINGS, *_LISTS) if k in kw}
        calls.append(ApplyCal(line=number, other=kw, **known))
    return calls


def read_calapply(path: Path) -> list[ApplyCal]:
    """The applycal calls of a pipeline ``calapply.txt`` file.

    Parameters
    ----------
    path : Path
        The calapply.txt file.

    Returns
    -------
    list[ApplyCal]
        The applycal calls, in file order.
    """
    path = Path(path)
    return parse_calapply(path.read_text(), source=path.name)
