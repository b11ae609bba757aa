"""The local archive's TAP service: ADQL the clients send, answered from SQLite."""
from __future__ import annotations

import io

import pytest
import requests
from astropy.io.votable import parse as parse_votable

from almadeliver.archive.obscore import COLUMN_NAMES
from almadeliver.sim.adql import AdqlError, translate
from almadeliver.sim.regions import Circle, Compound, Point, parse_stcs
from almadeliver.sim.archive import TAP_TABLES
from tiny_archive import CYCLE0, MOUS_7M, MOUS_12M, PROPRIETARY, PUBLIC, archive, tiny_root  # noqa: F401


def tap(archive, query: str, maxrec: int | None = None, method: str = "POST"):
    """(status, QUERY_STATUS, rows as dicts, raw text) for one query."""
    params = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}
    if maxrec is not None:
        params["MAXREC"] = str(maxrec)
    if method == "POST":
        r = requests.post(f"{archive.url}/tap/sync", data=params, timeout=30)
    else:
        r = requests.get(f"{archive.url}/tap/sync", params=params, timeout=30)
    vot = parse_votable(io.BytesIO(r.content))
    resource = vot.resources[0]
    status = [i for i in resource.infos if i.name == "QUERY_STATUS"]
    rows = []
    if resource.tables:
        table = resource.tables[0].to_table()
        rows = [{c: (None if row[c] is None or getattr(row[c], "mask", False) is True else row[c]) for c in table.colnames}
                for row in table]
    return r.status_code, status[-1].value, rows, r.text


def test_select_star_has_every_obscore_column_and_row(archive):
    status, qs, rows, _ = tap(archive, "select * from ivoa.obscore")
    assert (status, qs) == (200, "OK")
    assert len(rows) == 12 + 4 + 2
    assert list(rows[0]) == list(COLUMN_NAMES)


def test_project_query_gives_one_row_per_mous_source_spw(archive):
    _, _, rows, _ = tap(archive, f"SELECT obs_id, member_ous_uid, asdm_uid FROM ivoa.obscore WHERE proposal_id = '{PUBLIC}'",
                        method="GET")
    assert len(rows) == 12
    assert len({r["obs_id"] for r in rows}) == 12
    assert {r["member_ous_uid"] for r in rows} == {MOUS_12M, MOUS_7M}
    assert all(r["obs_id"].startswith(r["member_ous_uid"] + ".source.") for r in rows)


def test_distinct_top_and_order_by(archive):
    _, _, rows, _ = tap(archive, "select distinct proposal_id from ivoa.obscore order by proposal_id desc")
    assert [r["proposal_id"] for r in rows] == [PROPRIETARY, PUBLIC, CYCLE0]
    _, _, rows, _ = tap(archive, "SELECT TOP 3 obs_id, frequency FROM ivoa.obscore ORDER BY frequency DESC, obs_id")
    assert len(rows) == 3 and rows[0]["frequency"] >= rows[1]["frequency"] >= rows[2]["frequency"]
    _, _, rows, _ = tap(archive, "SELECT TOP 2 obs_id AS id, s_ra FROM ivoa.obscore ORDER BY 1")
    assert list(rows[0]) == ["id", "s_ra"] and rows[0]["id"] < rows[1]["id"]


@pytest.mark.parametrize("where, expected", [
    ("frequency >= 345", 2),
    ("frequency > 345", 0),
    ("frequency < 101", 2),
    ("frequency <= 101", 4),
    ("band_list <> '6'", 6),
    ("band_list != '6'", 6),
    ("calib_level = 2 AND data_rights = 'Public'", 16),
    ("data_rights = 'Proprietary' OR band_list = '3'", 6),
    ("NOT (data_rights = 'Public')", 2),
    ("(band_list = '3' OR band_list = '7') AND NOT science_observation = 'F'", 6),
    ("proposal_id IN ('2011.0.00340.S', '2019.1.00099.S')", 6),
    ("proposal_id NOT IN ('2011.0.00340.S')", 14),
    ("frequency BETWEEN 100 AND 101", 4),
    ("pub_title IS NULL", 18),
    ("(s_ra + 1) > 84", 14),
    ("(s_ra - 1) * 2 > 170", 2),
])
def test_comparisons_and_logic(archive, where, expected):
    status, qs, rows, _ = tap(archive, f"SELECT obs_id FROM ivoa.obscore WHERE {where}")
    assert (status, qs) == (200, "OK")
    assert len(rows) == expected


@pytest.mark.parametrize("where, expected", [
    ("target_name LIKE 'Orion%'", 8),
    ("target_name LIKE 'orion%'", 0),                    # LIKE is case-sensitive in ADQL
    ("LOWER(target_name) LIKE '%orion%'", 8),
    ("target_name ILIKE 'ORION%'", 8),
    ("target_name LIKE 'Orion_KL'", 8),                  # _ is one character
    ("target_name LIKE 'Orion\\_KL'", 8),                # astroquery escapes _ with a backslash
    ("target_name LIKE 'Orion\\%'", 0),
    ("target_name LIKE 'Orion!_K%' ESCAPE '!'", 8),
    ("obs_creator_name LIKE '%Jane%'", 12),
    ("band_list LIKE '%3%' OR band_list LIKE '%7%'", 6),
    ("target_name NOT LIKE 'Orion%'", 10),
    ("UPPER(target_name) = 'NGC253'", 4),
])
def test_like_with_wildcards_and_escapes(archive, where, expected):
    _, qs, rows, _ = tap(archive, f"SELECT target_name FROM ivoa.obscore WHERE {where}")
    assert qs == "OK"
    assert len(rows) == expected


@pytest.mark.parametrize("where, expected", [
    # astroquery's query_region: a 0.05 deg circle on Orion KL meets the 12m circles and the 7m polygons
    ("INTERSECTS(CIRCLE('ICRS',83.81,-5.37,0.05), s_region) = 1", 8),
    ("(INTERSECTS(CIRCLE('ICRS',83.81,-5.37,0.05), s_region) = 1)", 8),
    # just outside the 7m square (half side 0.01 deg) but touching it with the radius
    ("INTERSECTS(CIRCLE('ICRS',83.80917,-5.38539,0.0035), s_region) = 1", 4),
    ("INTERSECTS(CIRCLE('ICRS',83.80917,-5.38539,0.002), s_region) = 1", 0),
    ("CONTAINS(POINT('ICRS',83.80917,-5.37239), s_region) = 1", 8),
    ("CONTAINS(POINT('ICRS',83.80917,-5.37239), s_region) = 0", 10),
    ("CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 11.9, -25.3, 0.1)) = 1", 4),
    ("INTERSECTS(s_region, POLYGON('ICRS', 266.4, -29.02, 266.43, -29.02, 266.43, -29.0, 266.4, -29.0)) = 1", 2),
    ("INTERSECTS(RANGE_S2D(80, 90, -10, 0), s_region) = 1", 12),
    ("DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', 83.8625, -5.166)) < 0.01", 4),
    ("INTERSECTS(CIRCLE('ICRS',0,0,1), s_region) = 1", 0),
])
def test_geometry(archive, where, expected):
    _, qs, rows, _ = tap(archive, f"SELECT obs_id FROM ivoa.obscore WHERE {where}")
    assert qs == "OK"
    assert len(rows) == expected


def test_maxrec_overflow_is_reported_after_the_table(archive):
    status, qs, rows, text = tap(archive, "SELECT obs_id FROM ivoa.obscore", maxrec=5)
    assert (status, qs, len(rows)) == (200, "OVERFLOW", 5)
    assert text.index("</TABLE>") < text.index('value="OVERFLOW"')
    _, qs, rows, _ = tap(archive, "SELECT obs_id FROM ivoa.obscore", maxrec=18)
    assert (qs, len(rows)) == ("OK", 18)
    _, qs, rows, _ = tap(archive, "SELECT TOP 3 obs_id FROM ivoa.obscore", maxrec=5)
    assert (qs, len(rows)) == ("OK", 3)
    _, qs, rows, _ = tap(archive, "SELECT obs_id FROM ivoa.obscore", maxrec=0)
    assert (qs, len(rows)) == ("OVERFLOW", 0)


@pytest.mark.parametrize("query, named", [
    ("SELECT proposal_id, COUNT(*) FROM ivoa.obscore GROUP BY proposal_id", "GROUP BY"),
    ("SELECT * FROM ivoa.obscore AS a JOIN ivoa.obscore AS b ON a.obs_id = b.obs_id", "JOIN"),
    ("SELECT * FROM ivoa.obscore, TAP_SCHEMA.columns", "join"),
    ("SELECT obs_id FROM ivoa.obscore UNION SELECT obs_id FROM ivoa.obscore", "UNION"),
    ("SELECT * FROM ivoa.obscore WHERE obs_id IN (SELECT obs_id FROM ivoa.obscore)", "subquery"),
    ("SELECT SIN(s_ra) FROM ivoa.obscore", "SIN"),
    ("SELECT nonsense FROM ivoa.obscore", "nonsense"),
    ("SELECT * FROM ivoa.nothere", "ivoa.nothere"),
    ("SELECT * FROM ivoa.obscore WHERE INTERSECTS(CIRCLE('GALACTIC', 1, 2, 3), s_region) = 1", "GALACTIC"),
    ("SELECT * FROM ivoa.obscore WHERE", "end of the query"),
    ("SELECT * FROM ivoa.obscore WHERE s_ra @ 3", "'@'"),
])
def test_unsupported_adql_answers_an_error_naming_it(archive, query, named):
    status, qs, rows, text = tap(archive, query)
    assert (status, qs, rows) == (400, "ERROR", [])
    assert named in text


def test_tap_schema_columns_lists_the_obscore_columns(archive):
    _, _, rows, _ = tap(archive, "SELECT column_name, datatype, unit, ucd, utype, description FROM TAP_SCHEMA.columns "
                                 "WHERE table_name = 'ivoa.obscore'")
    assert [r["column_name"] for r in rows] == list(COLUMN_NAMES)
    by_name = {r["column_name"]: r for r in rows}
    assert by_name["s_ra"]["datatype"] == "double" and by_name["s_ra"]["unit"] == "deg"
    assert by_name["s_region"]["ucd"] == "pos.outline;obs.field"


def test_translator_keeps_literals_out_of_the_sql():
    tr = translate("SELECT obs_id FROM ivoa.obscore WHERE obs_id = 'x''; DROP TABLE obscore; --'", TAP_TABLES)
    assert tr.params == ["x'; DROP TABLE obscore; --"]
    assert "DROP" not in tr.sql
    with pytest.raises(AdqlError, match="column not found: secret"):
        translate('SELECT "secret" FROM ivoa.obscore', TAP_TABLES)


def test_real_alma_regions_parse(real):
    """Every s_region of ALMA's recorded TAP answer (Circle, Polygon, Union, holes) reads and is placed right."""
    table = parse_votable(str(real / "archive" / "alma-shapes.xml")).get_first_table().to_table()
    assert len(table) >= 4
    holes = 0
    for row in table:
        ra, dec = float(row["s_ra"]), float(row["s_dec"])
        shape = parse_stcs(str(row["s_region"]))
        assert shape.intersects(Circle(ra, dec, 10.0)), row["s_region"]
        assert not shape.intersects(Circle((ra + 180) % 360, -dec, 1.0))
        parts = shape.parts if isinstance(shape, Compound) and shape.op == "union" else (shape,)
        for part in parts:
            if isinstance(part, Compound) and part.op == "intersection":   # "Polygon ... Not (Polygon ...)"
                outer, hole = part.parts[0], part.parts[1].parts[0]
                inside_hole = hole.centre
                assert outer.contains(*inside_hole) and not part.contains(*inside_hole)
                holes += 1
    assert holes >= 2
    circle = parse_stcs("Circle ICRS 337.250736 -69.175076 0.008223")
    assert circle.contains(337.25, -69.175) and not circle.contains(337.25, -69.19)
    assert Point(1, 2).intersects(parse_stcs("Polygon ICRS 0.5 1.5 1.5 1.5 1.5 2.5 0.5 2.5"))
