"""Sky regions for the local archive's ADQL geometry: STC-S text in, point/overlap tests out.

ObsCore ``s_region`` is STC-S text (``Circle ICRS ra dec r``, ``Polygon ICRS ra1 dec1 ...``,
``Union ICRS ( Polygon ... Polygon ... )``, ``Intersection ICRS ( ... Not (Polygon ...) )``).
ADQL ``CIRCLE``/``POINT``/``POLYGON``/``RANGE_S2D`` are written to the same text by the ADQL
translator, so one parser serves both sides. Polygon tests run in the gnomonic (tangent-plane)
projection around the shapes compared, which is exact for great-circle edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


def _unit(ra: float, dec: float) -> tuple[float, float, float]:
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance in degrees (haversine: stable for small angles)."""
    a1, d1, a2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((a2 - a1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def _project(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float] | None:
    """Gnomonic projection of (ra, dec) about (ra0, dec0); None on the far hemisphere."""
    x, y, z = _unit(ra, dec)
    e = _unit(ra0 + 90.0, 0.0)                       # east at the tangent point
    c = _unit(ra0, dec0)
    n = (c[1] * e[2] - c[2] * e[1], c[2] * e[0] - c[0] * e[2], c[0] * e[1] - c[1] * e[0])  # north = c x e
    dot = x * c[0] + y * c[1] + z * c[2]
    if dot <= 1e-9:
        return None
    return ((x * e[0] + y * e[1] + z * e[2]) / dot, (x * n[0] + y * n[1] + z * n[2]) / dot)


def _inside(pt: tuple[float, float], poly: list[tuple[float, float]]) -> bool:
    x, y = pt
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _segment_distance(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def _segments_cross(a, b, c, d) -> bool:
    def orient(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    return (orient(a, b, c) * orient(a, b, d) <= 0) and (orient(c, d, a) * orient(c, d, b) <= 0)


class Shape:
    """A region on the sky."""

    def contains(self, ra: float, dec: float) -> bool:
        """True when the point (degrees) lies in the shape."""
        raise NotImplementedError

    def intersects(self, other: "Shape") -> bool:
        """True when the shapes share a point."""
        raise NotImplementedError

    def covers(self, other: "Shape") -> bool:
        """``other`` lies entirely inside this shape (ADQL CONTAINS(other, self))."""
        raise NotImplementedError


@dataclass(frozen=True)
class Point(Shape):
    """An ADQL/STC-S point (degrees)."""
    ra: float
    dec: float

    def contains(self, ra, dec):
        """True at the point itself."""
        return separation(self.ra, self.dec, ra, dec) < 1e-9

    def intersects(self, other):
        """True when ``other`` contains the point."""
        return other.contains(self.ra, self.dec)

    def covers(self, other):
        """True only for the same point."""
        return isinstance(other, Point) and self.contains(other.ra, other.dec)


@dataclass(frozen=True)
class Circle(Shape):
    """An ADQL/STC-S circle: centre and radius (degrees)."""
    ra: float
    dec: float
    radius: float

    def contains(self, ra, dec):
        """True within ``radius`` of the centre."""
        return separation(self.ra, self.dec, ra, dec) <= self.radius

    def intersects(self, other):
        """True when ``other`` comes within ``radius`` of the centre."""
        if isinstance(other, Circle):
            return separation(self.ra, self.dec, other.ra, other.dec) <= self.radius + other.radius
        if isinstance(other, Polygon):
            return other.near(self.ra, self.dec, self.radius)
        return other.intersects(self)

    def covers(self, other):
        """True when ``other`` lies wholly inside the circle."""
        if isinstance(other, Point):
            return self.contains(other.ra, other.dec)
        if isinstance(other, Circle):
            return separation(self.ra, self.dec, other.ra, other.dec) + other.radius <= self.radius
        if isinstance(other, Polygon):
            return all(self.contains(ra, dec) for ra, dec in other.vertices)
        return False


@dataclass(frozen=True)
class Polygon(Shape):
    """An ADQL/STC-S polygon: its vertices (ra, dec in degrees), great-circle edges."""
    vertices: tuple[tuple[float, float], ...]

    @property
    def centre(self) -> tuple[float, float]:
        """The mean direction of the vertices (ra, dec in degrees)."""
        x = y = z = 0.0
        for ra, dec in self.vertices:
            u = _unit(ra, dec)
            x, y, z = x + u[0], y + u[1], z + u[2]
        return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.atan2(z, math.hypot(x, y)))

    def _plane(self, ra0: float, dec0: float) -> list[tuple[float, float]] | None:
        pts = [_project(ra, dec, ra0, dec0) for ra, dec in self.vertices]
        return None if any(p is None for p in pts) else pts  # type: ignore[return-value]

    def contains(self, ra, dec):
        """True inside the polygon (on a tangent plane at its centre)."""
        ra0, dec0 = self.centre
        pts, p = self._plane(ra0, dec0), _project(ra, dec, ra0, dec0)
        return pts is not None and p is not None and _inside(p, pts)

    def near(self, ra: float, dec: float, radius: float) -> bool:
        """Some point of the polygon lies within ``radius`` degrees of (ra, dec)."""
        if self.contains(ra, dec):
            return True
        pts = self._plane(ra, dec)
        if pts is None:
            return False
        limit = math.tan(math.radians(min(radius, 89.0)))
        return any(_segment_distance((0.0, 0.0), a, b) <= limit for a, b in zip(pts, pts[1:] + pts[:1]))

    def intersects(self, other):
        """True when ``other`` and the polygon overlap."""
        if isinstance(other, Polygon):
            ra0, dec0 = self.centre
            a, b = self._plane(ra0, dec0), other._plane(ra0, dec0)
            if a is None or b is None:
                return False
            if any(_inside(p, b) for p in a) or any(_inside(p, a) for p in b):
                return True
            return any(_segments_cross(p, q, r, s) for p, q in zip(a, a[1:] + a[:1]) for r, s in zip(b, b[1:] + b[:1]))
        return other.intersects(self)

    def covers(self, other):
        """True when ``other`` lies wholly inside the polygon."""
        if isinstance(other, Point):
            return self.contains(other.ra, other.dec)
        if isinstance(other, Polygon):
            return all(self.contains(ra, dec) for ra, dec in other.vertices)
        if isinstance(other, Circle):
            return self.contains(other.ra, other.dec) and not any(
                _segment_distance((0.0, 0.0), a, b) < math.tan(math.radians(other.radius))
                for pts in [self._plane(other.ra, other.dec) or []] for a, b in zip(pts, pts[1:] + pts[:1]))
        return False


@dataclass(frozen=True)
class Range(Shape):
    """ADQL RANGE_S2D(ra_min, ra_max, dec_min, dec_max): a box in coordinates."""

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    def contains(self, ra, dec):
        """True inside the box (ra taken modulo 360)."""
        return self.ra_min <= ra % 360.0 <= self.ra_max and self.dec_min <= dec <= self.dec_max

    def intersects(self, other):
        """True when ``other`` and the box overlap."""
        if isinstance(other, (Point, Circle)):
            return self.contains(other.ra, other.dec) or (
                isinstance(other, Circle) and self._box_overlap(other.ra, other.ra, other.dec, other.dec, other.radius))
        if isinstance(other, Polygon):
            ras, decs = [v[0] for v in other.vertices], [v[1] for v in other.vertices]
            return self._box_overlap(min(ras), max(ras), min(decs), max(decs), 0.0)
        return other.intersects(self)

    def _box_overlap(self, ra1: float, ra2: float, dec1: float, dec2: float, pad: float) -> bool:
        return ra1 - pad <= self.ra_max and ra2 + pad >= self.ra_min and dec1 - pad <= self.dec_max and dec2 + pad >= self.dec_min

    def covers(self, other):
        """True when ``other`` lies wholly inside the box."""
        if isinstance(other, Point):
            return self.contains(other.ra, other.dec)
        if isinstance(other, Polygon):
            return all(self.contains(ra, dec) for ra, dec in other.vertices)
        return False


@dataclass(frozen=True)
class Compound(Shape):
    """STC-S Union / Intersection / Not."""

    op: str                       # union | intersection | not
    parts: tuple[Shape, ...]

    def contains(self, ra, dec):
        """True as the operation says of its parts (any, all, or not the one)."""
        if self.op == "union":
            return any(p.contains(ra, dec) for p in self.parts)
        if self.op == "intersection":
            return all(p.contains(ra, dec) for p in self.parts)
        return not self.parts[0].contains(ra, dec)

    def intersects(self, other):
        """True when ``other`` overlaps the compound shape."""
        if self.op == "not":
            return not self.parts[0].covers(other)
        if self.op == "union":
            return any(p.intersects(other) for p in self.parts)
        # intersection: the positive parts must all meet the other shape (an over-estimate at the edges)
        return all(p.intersects(other) for p in self.parts)

    def covers(self, other):
        """True when ``other`` lies wholly inside the compound shape."""
        if self.op == "union":
            return any(p.covers(other) for p in self.parts)
        if self.op == "intersection":
            return all(p.covers(other) for p in self.parts)
        return not self.parts[0].intersects(other)


@lru_cache(maxsize=65536)
def bounding_cap(shape: Shape) -> tuple[float, float, float] | None:
    """A cap (ra, dec, radius in degrees) holding the whole shape, or None (unbounded or a box).

    A cap of radius < 90 deg is convex on the sphere, so the great-circle edges between vertices
    inside it stay inside it: two shapes whose caps do not meet do not meet either. The local
    archive uses it to reject most INTERSECTS pairs before the exact test (a 1000-target query)."""
    if isinstance(shape, Point):
        return shape.ra, shape.dec, 0.0
    if isinstance(shape, Circle):
        return shape.ra, shape.dec, shape.radius
    if isinstance(shape, Polygon):
        ra0, dec0 = shape.centre
        return ra0, dec0, max(separation(ra0, dec0, ra, dec) for ra, dec in shape.vertices)
    if isinstance(shape, Compound) and shape.op in ("union", "intersection"):
        caps = [bounding_cap(p) for p in shape.parts]
        if not caps or any(c is None for c in caps):
            return None
        ra0, dec0, _ = caps[0]
        return ra0, dec0, max(separation(ra0, dec0, ra, dec) + r for ra, dec, r in caps)
    return None


_FRAMES = {"ICRS", "FK5", "J2000", "UNKNOWNFRAME", "GEOCENTER", "BARYCENTER", "TOPOCENTER"}


class RegionError(ValueError):
    """Text that is not an STC-S region this module understands."""


def _parse(tokens: list[str], i: int) -> tuple[Shape, int]:
    """One shape; ALMA writes a polygon with holes as ``Polygon ... Not (Polygon ...) ...``."""
    shape, i = _parse_one(tokens, i)
    while i < len(tokens) and tokens[i].lower() == "not":
        hole, i = _parse_one(tokens, i)
        shape = Compound("intersection", (shape, hole))
    return shape, i


def _parse_one(tokens: list[str], i: int) -> tuple[Shape, int]:
    word = tokens[i].lower()
    i += 1
    while i < len(tokens) and tokens[i].upper() in _FRAMES:
        i += 1
    if word in ("union", "intersection", "not"):
        if i >= len(tokens) or tokens[i] != "(":
            raise RegionError(f"'(' expected after {word}")
        i += 1
        parts = []
        while i < len(tokens) and tokens[i] != ")":
            shape, i = _parse(tokens, i)
            parts.append(shape)
        if i >= len(tokens):
            raise RegionError("missing ')'")
        return Compound(word, tuple(parts)), i + 1
    nums = []
    while i < len(tokens) and tokens[i] not in "()" and _is_number(tokens[i]):
        nums.append(float(tokens[i]))
        i += 1
    if word == "circle" and len(nums) == 3:
        return Circle(*nums), i
    if word == "position" and len(nums) == 2 or word == "point" and len(nums) == 2:
        return Point(*nums), i
    if word == "polygon" and len(nums) >= 6 and len(nums) % 2 == 0:
        return Polygon(tuple(zip(nums[::2], nums[1::2]))), i
    if word == "box" and len(nums) == 4:
        ra, dec, w, h = nums
        return Polygon(((ra - w / 2, dec - h / 2), (ra + w / 2, dec - h / 2), (ra + w / 2, dec + h / 2), (ra - w / 2, dec + h / 2))), i
    if word == "range" and len(nums) == 4:
        return Range(*nums), i
    raise RegionError(f"cannot read STC-S shape {word!r} with {len(nums)} numbers")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def parse_stcs(text: str) -> Shape:
    """Parse STC-S region text (cached: the same s_region is tested against many queries)."""
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    if not tokens:
        raise RegionError("empty region")
    shape, i = _parse(tokens, 0)
    if i != len(tokens):
        raise RegionError(f"unexpected text after the region: {' '.join(tokens[i:])}")
    return shape


def to_stcs(shape: Shape) -> str:
    """STC-S text for a shape built from ADQL (inverse of parse_stcs for the simple shapes)."""
    if isinstance(shape, Circle):
        return f"Circle ICRS {shape.ra!r} {shape.dec!r} {shape.radius!r}"
    if isinstance(shape, Point):
        return f"Position ICRS {shape.ra!r} {shape.dec!r}"
    if isinstance(shape, Polygon):
        return "Polygon ICRS " + " ".join(f"{ra!r} {dec!r}" for ra, dec in shape.vertices)
    if isinstance(shape, Range):
        return f"Range ICRS {shape.ra_min!r} {shape.ra_max!r} {shape.dec_min!r} {shape.dec_max!r}"
    raise RegionError(f"no STC-S text for {type(shape).__name__}")
