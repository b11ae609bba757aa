"""README, cont.dat and flag template parsers: every real file parses; bad input names its line."""
from __future__ import annotations

import pytest

from almadeliver.delivery.contdat import parse_contdat, parse_contdat_text
from almadeliver.delivery.flagtemplate import parse_flagtemplate, parse_flagtemplate_text
from almadeliver.delivery.readme import parse_readme, parse_readme_text
from almadeliver.errors import ParseError
from almadeliver.ids import ProjectCode, Uid


def _all(real, pattern):
    files = sorted(real.glob(pattern))
    assert files, f"no real files match {pattern}"
    return files


def test_every_real_readme_parses(real):
    for path in _all(real, "delivery/*README*"):
        r = parse_readme(path)
        assert r.project == ProjectCode("2013.1.00308.S")
        assert r.pi == "Adam Ginsburg"
        assert r.casa_version in ("4.4.0", "4.3.1")
        assert r.qa2_notes and r.tree and r.tree.startswith("2013.1.00308.S")


def test_real_readme_12m_details(real):
    r = parse_readme(real / "delivery/W51_2013.1.00308.S_12m_README.txt")
    assert r.casa_version == "4.4.0" and r.sb_name == "w51_a_06_TE" and r.cycle == "2 (Early science)"
    assert r.qa2_notes.startswith("Data reduction & calibration:")
    assert "beamsize 0.59x0.51 arcsec" in r.qa2_notes and "This file describes" not in r.qa2_notes
    assert r.ebs == [Uid.parse("uid://A002/X9ee74a/X26f0"), Uid.parse("uid://A002/Xa8df68/Xb4b")]
    assert "member.uid___A001_X196_X93" in r.tree
    assert r.fields["proposed rms"].startswith("5.85 mJy/beam")


def test_real_readme_7m(real):
    r = parse_readme(real / "delivery/W51_2013.1.00308.S_7m_README.txt")
    assert r.casa_version == "4.3.1" and r.fields["proposed rms"] == ""
    assert r.qa2_notes.startswith("Phase drifts for antenna CM07")
    assert len(r.ebs) == 4


def test_readme_bad_project_code_names_line():
    with pytest.raises(ParseError, match=r"README: line 3: '2013\.1\.0038\.S' is not an ALMA project code"):
        parse_readme_text("ALMA\n\nProject code: 2013.1.0038.S\nPI name: X\n")


def test_readme_without_project_code():
    with pytest.raises(ParseError, match="no 'Project code:' line"):
        parse_readme_text("<html><body>Please log in</body></html>\n")


@pytest.mark.parametrize("value, problem", [
    ("unknown", "'unknown' is not a CASA version"),
    ("4.x", "'4.x' is a placeholder, not a CASA version"),
    ("5.6.x", "'5.6.x' is a placeholder, not a CASA version"),
    ("X.Y.Z", "'X.Y.Z' is a placeholder, not a CASA version"),
    ("<version>", "'<version>' is a placeholder, not a CASA version"),
    ("4.4.0", None), ("5.1.1-5", None), ("6.5.4.9 (pipeline 2023.1.0.124)", None),
])
def test_readme_casa_version_verdict_is_on_the_model_with_its_line(value, problem):
    r = parse_readme_text(f"Project code: 2017.1.01185.S\nCASA version used for reduction: {value}\n")
    assert (r.casa_version_problem, r.casa_version_line, r.casa_version_text) == (problem, 2, value)
    assert (r.casa_version is None) is (problem is not None)


def test_staff_readme_may_leave_the_project_code_out():
    with pytest.raises(ParseError, match="no 'Project code:' line"):
        parse_readme_text("CASA version used for reduction: 4.4.0\n")
    r = parse_readme_text("CASA version used for reduction: 4.4.0\n", require_project=False)
    assert r.project is None and r.casa_version == "4.4.0"


def test_every_real_contdat_parses(real):
    for path in _all(real, "pipeline/*cont.dat"):
        c = parse_contdat(path)
        assert len(c.fields) == 1
        (spws,) = c.fields.values()
        assert len(spws) == 4 and all(s.ranges for s in spws.values())
        for s in spws.values():
            for r in s.ranges:
                assert r.unit == "GHz" and r.frame == "LSRK" and 80e9 < r.low_hz <= r.high_hz < 120e9


def test_real_contdat_values(real):
    c = parse_contdat(real / "pipeline/G008.67.B3.12m.cont.dat")
    first = c.ranges("G008.67", 25)[0]
    assert (first.low, first.high) == (93.100687, 93.152312)
    assert len(c.ranges("G008.67", 31)) == 15
    # the 'SpectralWindow:18' form without a space also parses
    assert len(parse_contdat(real / "pipeline/G338.93.B3.7m.cont.dat").ranges("G338.93", 18)) == 14


def test_contdat_errors_name_lines():
    with pytest.raises(ParseError, match="line 1: 'SpectralWindow' before any 'Field:' line"):
        parse_contdat_text("SpectralWindow: 25\n93.1~93.2GHz LSRK\n")
    with pytest.raises(ParseError, match="line 4: '93.1-93.2 GHz' is not a frequency range"):
        parse_contdat_text("Field: M100\n\nSpectralWindow: 25\n93.1-93.2 GHz\n")
    with pytest.raises(ParseError, match="line 3: range 93.3~93.2 runs backwards"):
        parse_contdat_text("Field: M100\nSpectralWindow: 25\n93.3~93.2GHz LSRK\n")
    with pytest.raises(ParseError, match="no 'Field:' block"):
        parse_contdat_text("\n# nothing\n")


def test_contdat_keywords():
    c = parse_contdat_text("Field: M100\nSpectralWindow: 25\nNONE\nSpectralWindow: 27\n93.1~93.2GHz TOPO\n")
    assert c.fields["M100"][25].keywords == ["NONE"] and c.ranges("M100", 27)[0].frame == "TOPO"


def test_every_real_flagtemplate_parses(real):
    total = 0
    for path in _all(real, "pipeline/*flagtemplate.txt"):
        t = parse_flagtemplate(path)
        total += len(t.commands)
        for c in t.commands:
            assert c.mode == "manual" and c.reason
    assert total == 50


def test_real_flagtemplate_values(real):
    t = parse_flagtemplate(real / "pipeline/uid___A002_Xc6c0d5_X3f2e.flagtemplate.txt")
    assert len(t.commands) == 10 and t.commands[0].line == 11
    assert t.commands[0].params == {"mode": "manual", "spw": "18:1600~2025", "antenna": "CM06",
                                    "correlation": "YY", "reason": "tsysflag_tsys_freq"}
    assert t.commands[1].params["timerange"] == "2017/11/12/16:54:04~2017/11/12/16:54:05"


def test_real_flagtemplate_missing_quote_is_tolerated(real):
    t = parse_flagtemplate(real / "pipeline/uid___A002_Xaf4574_X17bc_flagtemplate.txt")
    assert t.commands[0].reason == "applycal"
    assert len(t.notes) == 1 and "line 10: closing quote missing after reason=" in t.notes[0]


def test_flagtemplate_errors_name_lines():
    with pytest.raises(ParseError, match="line 2: 'manual' is not key=value"):
        parse_flagtemplate_text("# header\nmode=manual manual antenna='DV01'\n")
    with pytest.raises(ParseError, match="line 1: 'antenna' given twice"):
        parse_flagtemplate_text("antenna='DV01' antenna='DV02'\n")
    t = parse_flagtemplate_text("mode='manual' antenna='DV01'  # bad antenna\n")
    assert t.commands[0].params == {"mode": "manual", "antenna": "DV01"}


# -- cont.dat: the three generations the pipeline wrote (ALMA-FACTS.md section 3) ------------------
EARLIEST = """M100

SPW25
93.10~93.15GHz
93.20~93.25GHz

SPW27
NONE

"04287+1801"

SPW25
93.30~93.35GHz
"""
MIDDLE = """Field: M100

SpectralWindow: 25
93.10~93.15GHz LSRK
93.20~93.25GHz LSRK

SpectralWindow: 27
NONE

SpectralWindow: 29
ALL

Field: 04287+1801

SpectralWindow: 25
93.30~93.35GHz LSRK
"""
NEWEST = """Field: M100

SpectralWindow: 25 X38714582#ALMA_RB_03#BB_1#SW-01#FULL_RES
Flags: LOWBANDWIDTH LOWSPREAD
93.1000000000~93.1500000000GHz LSRK
93.2000000000~93.2500000000GHz LSRK

SpectralWindow: 27 X38714582#ALMA_RB_03#BB_2#SW-01#FULL_RES
NONE

SpectralWindow: 29 X38714582#ALMA_RB_03#BB_3#SW-01#FULL_RES
Flags: ALLCONT

Field: 04287+1801

SpectralWindow: 25 X38714582#ALMA_RB_03#BB_1#SW-01#FULL_RES
93.3000000000~93.3500000000GHz LSRK
"""


@pytest.mark.parametrize("text, generation, frame", [(EARLIEST, 1, None), (MIDDLE, 2, "LSRK"), (NEWEST, 3, "LSRK")])
def test_contdat_every_generation_reads_into_one_model(text, generation, frame):
    c = parse_contdat_text(text)
    assert c.generation == generation
    assert list(c.fields) == ["M100", "04287+1801"]
    assert [(r.low, r.high, r.frame) for r in c.ranges("M100", 25)] == [(93.1, 93.15, frame), (93.2, 93.25, frame)]
    assert c.fields["M100"][27].no_continuum and not c.fields["M100"][27].all_continuum
    assert c.ranges("04287+1801", 25)[0].low_hz == pytest.approx(93.3e9)
    assert c.default_frame == ("TOPO" if generation == 1 else "LSRK")
    if generation > 1:
        assert c.fields["M100"][29].all_continuum


def test_contdat_newest_spw_line_without_ranges_is_all_continuum():
    """ALMA-FACTS.md section 3: in the newest generation a spw line with no ranges means all continuum,
    flag or not; NONE still says no continuum; an omitted spw is not in the file at all ("find it")."""
    c = parse_contdat_text("Field: M100\n\nSpectralWindow: 25 X1#ALMA_RB_03#BB_1#SW-01#FULL_RES\n\n"
                           "SpectralWindow: 27 X1#ALMA_RB_03#BB_2#SW-01#FULL_RES\nNONE\n")
    assert c.generation == 3
    assert c.fields["M100"][25].all_continuum and not c.fields["M100"][25].no_continuum
    assert c.fields["M100"][27].no_continuum and not c.fields["M100"][27].all_continuum
    assert 29 not in c.fields["M100"]
    middle = parse_contdat_text("Field: M100\n\nSpectralWindow: 25\n\nSpectralWindow: 27\n93.1~93.2GHz LSRK\n")
    assert middle.generation == 2 and middle.fields["M100"][25].no_continuum   # the middle one said ALL


def test_contdat_newest_keeps_flags_and_spw_names():
    c = parse_contdat_text(NEWEST)
    spw25 = c.fields["M100"][25]
    assert spw25.flags == ["LOWBANDWIDTH", "LOWSPREAD"] and spw25.name.endswith("#BB_1#SW-01#FULL_RES")
    assert c.fields["M100"][29].flags == ["ALLCONT"] and c.fields["M100"][29].ranges == []
    assert c.flagged() == [("M100", 25, ["LOWBANDWIDTH", "LOWSPREAD"]), ("M100", 29, ["ALLCONT"])]


def test_contdat_flags_outside_a_spw_block_names_the_line():
    with pytest.raises(ParseError, match="line 2: 'Flags:' outside"):
        parse_contdat_text("Field: M100\nFlags: ALLCONT\n")
    with pytest.raises(ParseError, match="line 1: 'SPW' before any 'Field:' line"):
        parse_contdat_text("SPW25\n93.1~93.2GHz\n")


@pytest.mark.parametrize("generation", [1, 2, 3])
def test_simulator_writes_each_generation_and_it_reads_back(generation):
    from almadeliver.sim.pipeline import contdat_text

    ranges = {17: [(230.0e9, 230.1e9), (230.2e9, 230.3e9)], 19: [], 21: [(232.0e9, 233.9e9)]}
    text = contdat_text("src", ranges, generation, flags={21: ["ALLCONT"], 17: ["LOWBANDWIDTH"]})
    c = parse_contdat_text(text)
    assert c.generation == generation and list(c.fields) == ["src"]
    assert [(r.low_hz, r.high_hz) for r in c.ranges("src", 17)] == [pytest.approx((230.0e9, 230.1e9)),
                                                                      pytest.approx((230.2e9, 230.3e9))]
    assert c.fields["src"][19].no_continuum
    assert c.fields["src"][21].all_continuum is (generation > 1)   # the earliest had no ALL keyword nor flags
    assert c.fields["src"][17].flags == (["LOWBANDWIDTH"] if generation == 3 else [])
