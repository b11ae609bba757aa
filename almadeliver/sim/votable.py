"""VOTable 1.4 text the way ALMA's TAP and DataLink services write it.

A small writer rather than astropy's: the answers must keep ALMA's element order (an INFO after
the TABLE, ``RESOURCE type="meta"`` service blocks after the results), which astropy's writer
reorders. Every answer is read back with astropy/pyvo in the tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence
from xml.sax.saxutils import escape, quoteattr

HEADER = ('<?xml version="1.0" encoding="UTF-8"?>\n'
          '<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.4">\n')
FOOTER = "</VOTABLE>\n"
CONTENT_TYPE = "application/x-votable+xml"


@dataclass(frozen=True)
class Field:
    """One FIELD of a VOTable table: name, datatype, arraysize, unit, UCD, utype, description."""
    name: str
    datatype: str                 # char | double | float | int | long | boolean
    arraysize: str | None = None  # "*" for strings
    ucd: str = ""
    unit: str = ""
    utype: str = ""
    xtype: str = ""
    description: str = ""

    def xml(self) -> str:
        """The FIELD element."""
        attrs = f'name={quoteattr(self.name)} datatype="{self.datatype}"'
        if self.arraysize:
            attrs += f' arraysize="{self.arraysize}"'
        for key in ("ucd", "unit", "utype", "xtype"):
            if getattr(self, key):
                attrs += f" {key}={quoteattr(getattr(self, key))}"
        if self.description:
            return f"      <FIELD {attrs}>\n        <DESCRIPTION>{escape(self.description)}</DESCRIPTION>\n      </FIELD>\n"
        return f"      <FIELD {attrs} />\n"


def cell(value) -> str:
    """One TD; None (and NaN) as an empty cell, booleans as true/false."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<TD />"
    if isinstance(value, bool):
        return f"<TD>{'true' if value else 'false'}</TD>"
    if isinstance(value, float):
        return f"<TD>{value!r}</TD>"
    return f"<TD>{escape(str(value))}</TD>"


def info(name: str, value: str, text: str = "", indent: str = "    ") -> str:
    """An INFO element (``name``, ``value``, optional text)."""
    if text:
        return f"{indent}<INFO name={quoteattr(name)} value={quoteattr(value)}>{escape(text)}</INFO>\n"
    return f"{indent}<INFO name={quoteattr(name)} value={quoteattr(value)} />\n"


def table(fields: Sequence[Field], rows: Iterable[Sequence]) -> str:
    """A TABLE element with its FIELDs and TABLEDATA rows (None cells are empty)."""
    out = ["    <TABLE>\n", *(f.xml() for f in fields), "      <DATA>\n        <TABLEDATA>\n"]
    for row in rows:
        out.append("          <TR>\n")
        out.extend(f"            {cell(v)}\n" for v in row)
        out.append("          </TR>\n")
    out.append("        </TABLEDATA>\n      </DATA>\n    </TABLE>\n")
    return "".join(out)


def results(fields: Sequence[Field], rows: Iterable[Sequence], before: str = "", after: str = "") -> str:
    """A ``RESOURCE type="results"`` holding one table, with INFO text before and after it."""
    return f'  <RESOURCE type="results">\n{before}{table(fields, rows)}{after}  </RESOURCE>\n'


def service(resource_id: str, params: Sequence[tuple[str, str]]) -> str:
    """A ``RESOURCE type="meta" utype="adhoc:service"`` block (DataLink service descriptor)."""
    out = [f'  <RESOURCE type="meta" ID={quoteattr(resource_id)} utype="adhoc:service">\n']
    for name, value in params:
        out.append(f'    <PARAM name={quoteattr(name)} datatype="char" arraysize="{len(value)}" value={quoteattr(value)} />\n')
    out.append('    <GROUP name="inputParams" />\n  </RESOURCE>\n')
    return "".join(out)


def document(*resources: str) -> str:
    """A whole VOTable document holding ``resources``."""
    return HEADER + "".join(resources) + FOOTER


def error(message: str) -> str:
    """A DALI error document: QUERY_STATUS=ERROR with the message."""
    return document(f'  <RESOURCE type="results">\n{info("QUERY_STATUS", "ERROR", message)}  </RESOURCE>\n')
