"""The local archive's TAP service: ObsCore and TAP_SCHEMA in SQLite, ADQL answers and the VOSI pages."""
from __future__ import annotations

import html
import sqlite3
import threading
from dataclasses import replace

from ...archive.obscore import OBSCORE_COLUMNS, Column
from .. import votable
from ..adql import AdqlError, TableDef, install_functions, translate
from ..catalogue import Catalogue

# FIELD metadata ALMA's TAP writes for some columns (alma-shapes.xml); the rest come from obscore.py
_UTYPES = {
    "obs_publisher_did": ("obscore:Curation.PublisherDID", ""),
    "s_ra": ("obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1", "adql:DOUBLE"),
    "s_dec": ("obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2", "adql:DOUBLE"),
    "frequency": ("obscore:Char.SpectralAxis.Coverage.Location.refval", "adql:DOUBLE"),
    "s_region": ("obscore:Char.SpatialAxis.Coverage.Support.Area", "adql:REGION"),
}
_SQL_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "INTEGER", "double": "REAL", "boolean": "INTEGER"}
MAX_QUERY_CHARS = 100_000


def obscore_database(catalogues: list[Catalogue]) -> sqlite3.Connection:
    """ObsCore and TAP_SCHEMA of the catalogues in an in-memory SQLite database."""
    db = sqlite3.connect(":memory:", check_same_thread=False)
    install_functions(db)
    cols = ", ".join(f'"{c.name}" {_SQL_TYPES[c.datatype]}' for c in OBSCORE_COLUMNS)
    db.execute(f"CREATE TABLE obscore ({cols})")
    marks = ", ".join("?" for _ in OBSCORE_COLUMNS)
    for cat in catalogues:
        db.executemany(f"INSERT INTO obscore VALUES ({marks})",
                       [tuple(row.get(c.name) for c in OBSCORE_COLUMNS) for row in cat.obscore])
    for table, (columns, rows) in _tap_schema().items():
        names = ", ".join(f'"{c}"' for c in columns)
        db.execute(f"CREATE TABLE {table} ({names})")
        db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in columns)})", rows)
    db.commit()
    return db


TAP_TABLES = {
    "ivoa.obscore": TableDef("ivoa.obscore", "obscore", tuple(c.name for c in OBSCORE_COLUMNS)),
    "TAP_SCHEMA.schemas": TableDef("TAP_SCHEMA.schemas", "tap_schema_schemas",
                                   ("schema_name", "description", "utype", "schema_index")),
    "TAP_SCHEMA.tables": TableDef("TAP_SCHEMA.tables", "tap_schema_tables",
                                  ("schema_name", "table_name", "table_type", "description", "utype", "table_index")),
    "TAP_SCHEMA.columns": TableDef("TAP_SCHEMA.columns", "tap_schema_columns",
                                   ("table_name", "column_name", "datatype", "arraysize", "xtype", "size",
                                    "description", "utype", "unit", "ucd", "indexed", "principal", "std",
                                    "column_index")),
}
_TABLE_DESCRIPTIONS = {
    "ivoa.obscore": "ALMA observations: one row per member OUS x source x spectral window",
    "TAP_SCHEMA.schemas": "schemas in this service", "TAP_SCHEMA.tables": "tables in this service",
    "TAP_SCHEMA.columns": "columns in this service",
}


def _tap_schema() -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    schemas = [("ivoa", "IVOA data models", None, 0), ("TAP_SCHEMA", "this service's metadata", None, 1)]
    tables = [(name.split(".")[0], name, "table", _TABLE_DESCRIPTIONS[name], None, i)
              for i, name in enumerate(TAP_TABLES)]
    columns = []
    for name, table in TAP_TABLES.items():
        for i, col in enumerate(table.columns):
            meta = _column_field(col) if name == "ivoa.obscore" else votable.Field(col, "char", "*")
            columns.append((name, col, meta.datatype, meta.arraysize, meta.xtype or None, None,
                            meta.description, meta.utype or None, meta.unit or None, meta.ucd or None, 0, 1, 0, i))
    return {
        "tap_schema_schemas": (TAP_TABLES["TAP_SCHEMA.schemas"].columns, schemas),
        "tap_schema_tables": (TAP_TABLES["TAP_SCHEMA.tables"].columns, tables),
        "tap_schema_columns": (TAP_TABLES["TAP_SCHEMA.columns"].columns, columns),
    }


_OBSCORE_BY_NAME: dict[str, Column] = {c.name: c for c in OBSCORE_COLUMNS}


def _column_field(name: str) -> votable.Field:
    """The VOTable FIELD for an ObsCore column."""
    col = _OBSCORE_BY_NAME[name]
    utype, xtype = _UTYPES.get(name, ("", ""))
    return votable.Field(col.name, col.datatype, "*" if col.datatype == "char" else None,
                         ucd=col.ucd, unit=col.unit, utype=utype, xtype=xtype, description=col.description)


def _value_field(name: str, values: list) -> votable.Field:
    """A FIELD for a computed column, typed by its first non-null value."""
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return votable.Field(name, "boolean")
    if isinstance(sample, int):
        return votable.Field(name, "long")
    if isinstance(sample, float):
        return votable.Field(name, "double")
    return votable.Field(name, "char", "*")



def run_query(db: sqlite3.Connection, db_lock: threading.Lock, query: str,
              maxrec: int | None = None) -> tuple[int, str]:
    """(HTTP status, VOTable) for one ADQL query on the ObsCore database ``db`` (used under ``db_lock``)."""
    if len(query) > MAX_QUERY_CHARS:
        return 400, votable.error(f"the query has {len(query)} characters (at most {MAX_QUERY_CHARS})")
    try:
        tr = translate(query, TAP_TABLES)
    except AdqlError as exc:
        return 400, votable.error(str(exc))
    except RecursionError:
        return 400, votable.error("the query is nested too deeply")
    caps = [n for n in (tr.top, maxrec) if n is not None]
    limit = min(caps) if caps else None
    # one row more than the cap tells an overflow from an answer that fits exactly
    sql = tr.sql if limit is None else f"SELECT * FROM ({tr.sql}) LIMIT {limit + 1}"
    try:
        with db_lock:
            rows = db.execute(sql, tr.params).fetchall()
    except sqlite3.Error as exc:
        return 400, votable.error(f"query failed: {exc}")
    overflow = maxrec is not None and len(rows) > maxrec and (tr.top is None or tr.top > maxrec)
    if limit is not None:
        rows = rows[:limit]
    fields = []
    for i, c in enumerate(tr.columns):
        if c.source and tr.table.adql_name == "ivoa.obscore":
            fields.append(replace(_column_field(c.source), name=c.name))
        else:
            fields.append(_value_field(c.name, [r[i] for r in rows]))
    before = votable.info("QUERY_STATUS", "OK") + votable.info("QUERY", query)
    after = votable.info("QUERY_STATUS", "OVERFLOW") if overflow else ""
    return 200, votable.document(votable.results(fields, rows, before, after))


class TapPages:
    """The TAP endpoints of the HTTP handler (``/tap/sync`` and the VOSI pages); mixed into its class."""

    def _tap_sync(self, params: list[tuple[str, str]], method: str) -> None:
        p = {k.upper(): v for k, v in params}
        request = p.get("REQUEST", "doQuery")
        if request != "doQuery":
            return self._tap_error(f"REQUEST={request} is not supported (use doQuery)")
        if p.get("LANG", "ADQL").upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
            return self._tap_error(f"LANG={p['LANG']} is not supported (use ADQL)")
        fmt = p.get("RESPONSEFORMAT", p.get("FORMAT", "votable")).lower()
        if fmt not in ("votable", "application/x-votable+xml", "text/xml", "votable/td"):
            return self._tap_error(f"RESPONSEFORMAT={fmt} is not supported (use votable)")
        if "QUERY" not in p:
            return self._tap_error("QUERY is missing")
        try:
            maxrec = int(p["MAXREC"]) if p.get("MAXREC", "") != "" else None
        except ValueError:
            return self._tap_error(f"MAXREC={p['MAXREC']} is not a whole number")
        limit = self.archive.faults.tap_limit
        if limit is not None:
            maxrec = limit if maxrec is None else min(maxrec, limit)
        self._send(*self.archive.run_query(p["QUERY"], maxrec), votable.CONTENT_TYPE, method)

    def _tap_error(self, message: str) -> None:
        self._send(400, votable.error(message), votable.CONTENT_TYPE)

    def _tables(self) -> str:
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
               'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n']
        for schema in ("ivoa", "TAP_SCHEMA"):
            out.append(f"  <schema>\n    <name>{schema}</name>\n")
            for name, table in TAP_TABLES.items():
                if not name.startswith(schema + "."):
                    continue
                out.append(f'    <table type="table">\n      <name>{name}</name>\n'
                           f"      <description>{html.escape(_TABLE_DESCRIPTIONS[name])}</description>\n")
                for col in table.columns:
                    f = _column_field(col) if schema == "ivoa" else votable.Field(col, "char", "*")
                    size = f' arraysize="{f.arraysize}"' if f.arraysize else ""
                    out.append(f"      <column>\n        <name>{html.escape(col)}</name>\n"
                               f"        <description>{html.escape(f.description)}</description>\n"
                               + (f"        <unit>{html.escape(f.unit)}</unit>\n" if f.unit else "")
                               + (f"        <ucd>{html.escape(f.ucd)}</ucd>\n" if f.ucd else "")
                               + (f"        <utype>{html.escape(f.utype)}</utype>\n" if f.utype else "")
                               + f'        <dataType xsi:type="vs:VOTableType"{size}>{f.datatype}</dataType>\n'
                               "      </column>\n")
                out.append("    </table>\n")
            out.append("  </schema>\n")
        out.append("</vosi:tableset>\n")
        return "".join(out)

    def _capabilities(self) -> str:
        url = self.archive.url
        features = "".join(f"<feature><form>{f}</form></feature>" for f in
                           ("POINT", "CIRCLE", "POLYGON", "BOX", "INTERSECTS", "CONTAINS", "DISTANCE"))
        vosi = "".join(
            f'  <capability standardID="ivo://ivoa.net/std/VOSI#{name}">\n'
            f'    <interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="full">{url}/tap/{name}</accessURL></interface>\n'
            "  </capability>\n" for name in ("capabilities", "availability", "tables"))
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
                'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n'
                '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n'
                f'    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1"><accessURL use="base">{url}/tap</accessURL></interface>\n'
                '    <language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
                "<description>ADQL 2.0 (subset: one table, no JOIN/GROUP BY)</description>"
                f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{features}</languageFeatures></language>\n'
                '    <outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">'
                "<mime>application/x-votable+xml</mime><alias>votable</alias></outputFormat>\n"
                "  </capability>\n" + vosi + "</vosi:capabilities>\n")

    def _availability(self) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
                "  <vosi:available>true</vosi:available>\n"
                f"  <vosi:note>local ALMA archive serving {len(self.archive.content.projects)} project(s)</vosi:note>\n"
                "</vosi:availability>\n")
