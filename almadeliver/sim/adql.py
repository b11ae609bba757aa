"""ADQL -> SQLite for the local archive: a tokenizer and a recursive-descent translator.

Covers what astroquery, pyvo and ALminer send to ALMA's TAP: ``SELECT [ALL|DISTINCT] [TOP n]
cols|*|expr [AS x] FROM table [[AS] t] [WHERE ...] [ORDER BY ...] [OFFSET n]``; comparisons,
``[NOT] LIKE/ILIKE [ESCAPE]``, ``[NOT] IN``, ``[NOT] BETWEEN``, ``IS [NOT] NULL``, AND/OR/NOT,
parentheses, arithmetic, ``||``, LOWER/UPPER/ABS/COUNT/MIN/MAX/SUM/AVG and the geometry
functions POINT, CIRCLE, POLYGON, BOX, RANGE_S2D, INTERSECTS, CONTAINS, DISTANCE (SQLite user
functions on STC-S text, see ``install_functions``). Anything else raises ``AdqlError`` naming it.
"""
from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from functools import lru_cache

from .regions import Circle, Point, Polygon, Range, RegionError, bounding_cap, parse_stcs, separation, to_stcs


class AdqlError(ValueError):
    """The query cannot be run; the message names the construct or the problem."""


# -- tokens ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """One ADQL token: its kind, text and position in the query."""
    kind: str        # num | str | ident | qident | op | end
    text: str
    pos: int

    @property
    def upper(self) -> str:
        """The text in capitals for an identifier (keywords are identifiers), else ""."""
        return self.text.upper() if self.kind == "ident" else ""


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|!=|<=|>=|\|\||[=<>+\-*/(),.;])
""", re.VERBOSE)


def tokenize(text: str) -> list[Token]:
    """The tokens of an ADQL query; AdqlError names the position of a character it cannot read."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise AdqlError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup
        if kind == "str":
            tokens.append(Token("str", m.group()[1:-1].replace("''", "'"), pos))
        elif kind == "qident":
            tokens.append(Token("qident", m.group()[1:-1].replace('""', '"'), pos))
        elif kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    tokens.append(Token("end", "", len(text)))
    return tokens


# -- schema the translator checks against -------------------------------------------------------
@dataclass(frozen=True)
class TableDef:
    """A table the local TAP service answers for: its ADQL name, its SQLite name and its columns."""
    adql_name: str             # e.g. ivoa.obscore
    sqlite_name: str           # e.g. obscore
    columns: tuple[str, ...]   # canonical column names, in table order


@dataclass
class OutputColumn:
    """One column of an answer: its name and the table column it comes from unchanged (for its FIELD)."""
    name: str                  # name in the answer
    source: str | None         # canonical column it comes from unchanged (for FIELD metadata)


@dataclass
class Translation:
    """An ADQL query made SQLite: the SQL, its parameters, the table and the output columns."""
    sql: str
    params: list
    table: TableDef
    columns: list[OutputColumn]
    top: int | None


_RESERVED_UNSUPPORTED = {
    "JOIN": "JOIN", "NATURAL": "JOIN", "INNER": "JOIN", "OUTER": "JOIN", "LEFT": "JOIN", "RIGHT": "JOIN",
    "FULL": "JOIN", "CROSS": "JOIN", "GROUP": "GROUP BY", "HAVING": "HAVING", "UNION": "UNION",
    "INTERSECT": "INTERSECT", "EXCEPT": "EXCEPT", "WITH": "WITH", "EXISTS": "EXISTS", "CASE": "CASE",
    "SELECT": "subquery",
}
_COMPARE = {"=", "<>", "!=", "<", ">", "<=", ">="}
_SCALAR_FUNCS = {"LOWER": "lower", "UPPER": "upper", "ABS": "abs"}
_AGGREGATES = {"COUNT", "MIN", "MAX", "SUM", "AVG"}
_GEOMETRY = {"POINT": 2, "CIRCLE": 3, "BOX": 4, "RANGE_S2D": 4}  # numeric arguments after the frame


class _Translator:
    def __init__(self, text: str, tables: dict[str, TableDef]):
        self.tokens = tokenize(text)
        self.i = 0
        self.tables = tables
        self.params: list = []
        self.table: TableDef | None = None
        self.qualifiers: set[str] = set()
        self.lower_cols: dict[str, str] = {}

    # token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_kw(self, *words: str) -> bool:
        return self.tok.upper in words

    def accept_kw(self, word: str) -> bool:
        if self.tok.upper == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.accept_kw(word):
            self.fail(f"expected {word}")

    def accept_op(self, op: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == op:
            self.i += 1
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            self.fail(f"expected '{op}'")

    def fail(self, what: str):
        tok = self.tok
        near = f"near '{tok.text}'" if tok.kind != "end" else "at the end of the query"
        raise AdqlError(f"ADQL syntax error: {what} {near} (position {tok.pos})")

    def check_unsupported(self) -> None:
        word = self.tok.upper
        if word in _RESERVED_UNSUPPORTED:
            raise AdqlError(f"ADQL construct not supported by this archive: {_RESERVED_UNSUPPORTED[word]}")

    # grammar
    def query(self) -> Translation:
        if self.tok.upper != "SELECT":
            self.check_unsupported()
        self.expect_kw("SELECT")
        distinct = False
        if self.accept_kw("DISTINCT"):
            distinct = True
        else:
            self.accept_kw("ALL")
        top = None
        if self.accept_kw("TOP"):
            if self.tok.kind != "num" or not self.tok.text.isdigit():
                self.fail("TOP needs a whole number")
            top = int(self.advance().text)
        # the select list names columns, so read FROM first and come back
        start = self.i
        depth = 0
        while not (depth == 0 and self.tok.upper == "FROM"):
            if self.tok.kind == "end":
                self.fail("expected FROM")
            if self.tok.text == "(":
                depth += 1
            elif self.tok.text == ")":
                depth -= 1
            self.i += 1
        self.i += 1
        self.from_clause()
        after_from = self.i
        self.i = start
        items, columns = self.select_list()
        if self.tok.upper != "FROM":
            self.check_unsupported()
            self.fail("expected ',' or FROM")
        self.i = after_from
        where_sql = ""
        if self.accept_kw("WHERE"):
            where_sql = " WHERE " + self.condition()
        order_sql = ""
        if self.at_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order_sql = " ORDER BY " + self.order_list(columns)
        offset = None
        if self.accept_kw("OFFSET"):
            if self.tok.kind != "num" or not self.tok.text.isdigit():
                self.fail("OFFSET needs a whole number")
            offset = int(self.advance().text)
        if self.tok.kind != "end":
            self.check_unsupported()
            self.fail("unexpected text")
        sql = f"SELECT {'DISTINCT ' if distinct else ''}{items} FROM {self.table.sqlite_name}{where_sql}{order_sql}"
        if offset is not None:
            sql += f" LIMIT -1 OFFSET {offset}"
        return Translation(sql, self.params, self.table, columns, top)

    def from_clause(self) -> None:
        self.check_unsupported()
        name = self.dotted_name()
        table = self.tables.get(name.lower())
        if table is None:
            raise AdqlError(f"table not found: {name} (this archive has {', '.join(t.adql_name for t in self.tables.values())})")
        self.table = table
        self.lower_cols = {c.lower(): c for c in table.columns}
        self.qualifiers = {table.adql_name.lower(), table.adql_name.split(".")[-1].lower()}
        if self.accept_kw("AS"):
            self.qualifiers.add(self.identifier().lower())
        elif self.tok.kind in ("ident", "qident") and self.tok.upper not in ("WHERE", "ORDER", "OFFSET") \
                and self.tok.upper not in _RESERVED_UNSUPPORTED:
            self.qualifiers.add(self.identifier().lower())
        if self.tok.text == ",":
            raise AdqlError("ADQL construct not supported by this archive: several tables in FROM (join)")
        self.check_unsupported()

    def identifier(self) -> str:
        if self.tok.kind not in ("ident", "qident"):
            self.fail("expected a name")
        return self.advance().text

    def dotted_name(self) -> str:
        parts = [self.identifier()]
        while self.tok.text == "." and self.peek().kind in ("ident", "qident"):
            self.advance()
            parts.append(self.identifier())
        return ".".join(parts)

    def select_list(self) -> tuple[str, list[OutputColumn]]:
        if self.accept_op("*"):
            cols = [OutputColumn(c, c) for c in self.table.columns]
            return ", ".join(f'"{c}"' for c in self.table.columns), cols
        items, cols = [], []
        while True:
            start = self.i
            sql = self.expression()
            source = sql[1:-1] if re.fullmatch(r'"[^"]+"', sql) else None  # a plain column reference
            name = source or (self.tokens[start].text.lower() if self.tokens[start].kind == "ident" else f"col{len(cols) + 1}")
            if self.accept_kw("AS"):
                name = self.identifier()
            elif self.tok.kind in ("ident", "qident") and self.tok.upper not in ("FROM",):
                name = self.identifier()
            items.append(f'{sql} AS "{name}"')
            cols.append(OutputColumn(name, source))
            if not self.accept_op(","):
                break
        return ", ".join(items), cols

    def order_list(self, columns: list[OutputColumn]) -> str:
        parts = []
        names = {c.name.lower(): c.name for c in columns}
        while True:
            if self.tok.kind == "num" and self.tok.text.isdigit():
                n = int(self.advance().text)
                if not 1 <= n <= len(columns):
                    raise AdqlError(f"ORDER BY {n}: the query has {len(columns)} columns")
                sql = str(n)
            elif self.tok.kind in ("ident", "qident") and self.peek().text not in (".", "(") \
                    and self.tok.text.lower() in names and self.tok.text.lower() not in self.lower_cols:
                sql = f'"{names[self.advance().text.lower()]}"'
            else:
                sql = self.expression()
            if self.accept_kw("DESC"):
                sql += " DESC"
            else:
                self.accept_kw("ASC")
            parts.append(sql)
            if not self.accept_op(","):
                return ", ".join(parts)

    # conditions
    def condition(self) -> str:
        parts = [self.conjunction()]
        while self.accept_kw("OR"):
            parts.append(self.conjunction())
        return " OR ".join(parts)

    def conjunction(self) -> str:
        parts = [self.negation()]
        while self.accept_kw("AND"):
            parts.append(self.negation())
        return " AND ".join(parts)

    def negation(self) -> str:
        if self.accept_kw("NOT"):
            return f"NOT ({self.negation()})"
        return self.predicate()

    def predicate(self) -> str:
        self.check_unsupported()
        if self.tok.text == "(":
            start = self.i
            self.advance()
            try:
                inner = self.condition()
                self.expect_op(")")
                if not (self.tok.kind == "op" and self.tok.text in _COMPARE | {"+", "-", "*", "/", "||"}) \
                        and not self.at_kw("LIKE", "ILIKE", "IN", "BETWEEN", "IS", "NOT"):
                    return f"({inner})"
            except AdqlError:
                pass
            self.i = start  # a parenthesised expression, e.g. (s_ra + 1) > 2
        left = self.expression()
        negate = self.accept_kw("NOT")
        if self.tok.kind == "op" and self.tok.text in _COMPARE and not negate:
            op = self.advance().text
            return f"{left} {'<>' if op == '!=' else op} {self.expression()}"
        if self.at_kw("LIKE", "ILIKE"):
            insensitive = self.advance().upper == "ILIKE"
            pattern = self.expression()
            escape = "'\\'"  # ALMA's TAP (PostgreSQL) treats backslash as the escape; astroquery relies on it
            if self.accept_kw("ESCAPE"):
                if self.tok.kind != "str" or len(self.tok.text) != 1:
                    self.fail("ESCAPE needs a one-character string")
                escape = self.literal(self.advance().text)
            if insensitive:
                left, pattern = f"lower({left})", f"lower({pattern})"
            return f"{left} {'NOT ' if negate else ''}LIKE {pattern} ESCAPE {escape}"
        if self.accept_kw("IN"):
            self.expect_op("(")
            if self.at_kw("SELECT"):
                self.check_unsupported()
            values = [self.expression()]
            while self.accept_op(","):
                values.append(self.expression())
            self.expect_op(")")
            return f"{left} {'NOT ' if negate else ''}IN ({', '.join(values)})"
        if self.accept_kw("BETWEEN"):
            low = self.expression()
            self.expect_kw("AND")
            high = self.expression()
            return f"{left} {'NOT ' if negate else ''}BETWEEN {low} AND {high}"
        if not negate and self.accept_kw("IS"):
            neg = self.accept_kw("NOT")
            self.expect_kw("NULL")
            return f"{left} IS {'NOT ' if neg else ''}NULL"
        self.fail("expected a comparison (=, <>, <, >, <=, >=, LIKE, IN, BETWEEN, IS NULL)")

    # expressions
    def expression(self) -> str:
        sql = self.term()
        while self.tok.kind == "op" and self.tok.text in ("+", "-", "||"):
            sql = f"{sql} {self.advance().text} {self.term()}"
        return sql

    def term(self) -> str:
        sql = self.factor()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            sql = f"{sql} {self.advance().text} {self.factor()}"
        return sql

    def factor(self) -> str:
        if self.tok.kind == "op" and self.tok.text in ("-", "+"):
            sign = self.advance().text
            return f"{sign}{self.factor()}"
        return self.primary()

    def literal(self, value) -> str:
        self.params.append(value)
        return "?"

    def primary(self) -> str:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return tok.text
        if tok.kind == "str":
            self.advance()
            return self.literal(tok.text)
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            if self.at_kw("SELECT"):
                self.check_unsupported()
            inner = self.expression()
            self.expect_op(")")
            return f"({inner})"
        if tok.kind == "ident" and self.peek().text == "(":
            return self.function()
        if tok.kind in ("ident", "qident"):
            self.check_unsupported()
            if tok.upper == "NULL":
                self.advance()
                return "NULL"
            return self.column()
        self.fail("expected a value, column or function")

    def column(self) -> str:
        name = self.dotted_name()
        parts = name.split(".")
        column = parts[-1]
        qualifier = ".".join(parts[:-1]).lower()
        if qualifier and qualifier not in self.qualifiers:
            raise AdqlError(f"unknown table or alias '{'.'.join(parts[:-1])}' in column {name}")
        canonical = self.lower_cols.get(column.lower())
        if canonical is None:
            raise AdqlError(f"column not found: {column} (not in {self.table.adql_name})")
        return f'"{canonical}"'

    def arguments(self) -> list[str]:
        self.expect_op("(")
        args = []
        if not self.accept_op(")"):
            args.append(self.expression())
            while self.accept_op(","):
                args.append(self.expression())
            self.expect_op(")")
        return args

    def function(self) -> str:
        name = self.advance().text.upper()
        if name in _AGGREGATES:
            self.expect_op("(")
            distinct = "DISTINCT " if self.accept_kw("DISTINCT") else ""
            arg = "*" if name == "COUNT" and self.accept_op("*") else self.expression()
            self.expect_op(")")
            return f"{name.lower()}({distinct}{arg})"
        if name in _SCALAR_FUNCS:
            args = self.arguments()
            if len(args) != 1:
                raise AdqlError(f"{name} takes one argument")
            return f"{_SCALAR_FUNCS[name]}({args[0]})"
        if name in _GEOMETRY or name == "POLYGON":
            self.expect_op("(")
            if self.tok.kind == "str" and self.peek().text == ",":  # the optional coordinate system
                frame = self.advance().text.strip().upper()
                if frame not in ("", "ICRS", "J2000", "FK5"):
                    raise AdqlError(f"coordinate system not supported by this archive: {frame!r} (use 'ICRS')")
                self.expect_op(",")
            args = [self.expression()]
            while self.accept_op(","):
                args.append(self.expression())
            self.expect_op(")")
            want = _GEOMETRY.get(name)
            if (want is not None and len(args) != want) or (name == "POLYGON" and (len(args) < 6 or len(args) % 2)):
                raise AdqlError(f"{name} has the wrong number of arguments ({len(args)})")
            return f"adql_shape('{name.lower()}', {', '.join(args)})"
        if name in ("INTERSECTS", "CONTAINS", "DISTANCE"):
            args = self.arguments()
            if len(args) != 2:
                raise AdqlError(f"{name} takes two arguments")
            return f"adql_{name.lower()}({args[0]}, {args[1]})"
        raise AdqlError(f"ADQL function not supported by this archive: {name}")


def translate(text: str, tables: dict[str, TableDef]) -> Translation:
    """Translate one ADQL query to SQLite SQL with parameters; raise AdqlError when it cannot."""
    if not text or not text.strip():
        raise AdqlError("empty query")
    return _Translator(text, {k.lower(): v for k, v in tables.items()}).query()


# -- SQLite user functions ----------------------------------------------------------------------
@lru_cache(maxsize=65536)
def _shape(kind: str, *args) -> str | None:
    if any(a is None for a in args):
        return None
    nums = [float(a) for a in args]
    if kind == "point":
        return to_stcs(Point(*nums))
    if kind == "circle":
        return to_stcs(Circle(*nums))
    if kind == "polygon":
        return to_stcs(Polygon(tuple(zip(nums[::2], nums[1::2]))))
    if kind == "box":
        ra, dec, w, h = nums
        return to_stcs(Polygon(((ra - w / 2, dec - h / 2), (ra + w / 2, dec - h / 2),
                                (ra + w / 2, dec + h / 2), (ra - w / 2, dec + h / 2))))
    return to_stcs(Range(*nums))


def _shapes(a: str | None, b: str | None):
    if a is None or b is None:
        return None
    try:
        return parse_stcs(a), parse_stcs(b)
    except RegionError:
        return None


@lru_cache(maxsize=65536)
def _cap(text: str) -> tuple[float, float, float, float, float] | None:
    """The bounding cap of a region as (x, y, z, cos r, sin r), r widened by 1e-9 deg."""
    try:
        cap = bounding_cap(parse_stcs(text))
    except RegionError:
        return None
    if cap is None or cap[2] >= 45.0:
        return None
    a, d, r = math.radians(cap[0]), math.radians(cap[1]), math.radians(cap[2] + 1e-9)
    return math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d), math.cos(r), math.sin(r)


def _apart(a: str | None, b: str | None) -> bool:
    """The bounding caps of two regions (keyed by their text) do not meet: a quick 0 without
    trigonometry (cos of the separation below cos of the summed radii)."""
    if a is None or b is None:
        return False
    ca, cb = _cap(a), _cap(b)
    if ca is None or cb is None:
        return False
    return ca[0] * cb[0] + ca[1] * cb[1] + ca[2] * cb[2] < ca[3] * cb[3] - ca[4] * cb[4]


def _intersects(a, b) -> int | None:
    if _apart(a, b):
        return 0
    shapes = _shapes(a, b)
    return None if shapes is None else int(shapes[0].intersects(shapes[1]))


def _contains(a, b) -> int | None:
    if _apart(a, b):
        return 0
    shapes = _shapes(a, b)
    return None if shapes is None else int(shapes[1].covers(shapes[0]))


def _distance(a, b) -> float | None:
    shapes = _shapes(a, b)
    if shapes is None or not all(isinstance(s, (Point, Circle)) for s in shapes):
        return None
    (p, q) = shapes
    return separation(p.ra, p.dec, q.ra, q.dec)


def install_functions(db: sqlite3.Connection) -> None:
    """Register the geometry functions the translated SQL calls, and ADQL's case-sensitive LIKE."""
    db.create_function("adql_shape", -1, _shape, deterministic=True)
    db.create_function("adql_intersects", 2, _intersects, deterministic=True)
    db.create_function("adql_contains", 2, _contains, deterministic=True)
    db.create_function("adql_distance", 2, _distance, deterministic=True)
    db.execute("PRAGMA case_sensitive_like = ON")
