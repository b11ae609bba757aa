"""Calibration scripts as ALMA's generator writes them: version gates, what modular CASA lacks,
casalith, gates passed in memory (no CASA started: these read and compile scripts only)."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from almadeliver.casa.diskspace import estimate
from almadeliver.casa.legacy import _pass_gates, casalith_module
from almadeliver.casa.scriptcheck import ScriptCheckError, first_three, lacking, read_gate
from almadeliver.sim.manual import calibration_values, casa_gate, fill, template
from almadeliver.sim.plan import make_plan

# the CASA 4 form (a real Cycle 2 script's header, see ALMA-FACTS.md section 4)
CASA4_GATE = """import re

if applyonly != True: es = aU.stuffForScienceDataReduction() 


if re.search('^4.2.2', casadef.casa_version) == None:
 sys.exit('ERROR: PLEASE USE THE SAME VERSION OF CASA THAT YOU USED FOR GENERATING THE SCRIPT: 4.2.2')
"""


def _generated(tmp_path: Path, casa_version: str = "6.5.4-9") -> Path:
    plan = make_plan("2019.1.00011.S", casa_version=casa_version)
    eb = plan.mous[0].ebs[0].disk
    path = tmp_path / f"{eb}.ms.scriptForCalibration.py"
    path.write_text(fill(template("scriptForCalibration.py.in"), calibration_values(plan, plan.mous[0], eb)))
    return path


def test_simulated_script_has_the_generators_header(tmp_path):
    text = _generated(tmp_path).read_text()
    assert "\nimport casalith\n" in text
    assert "if applyonly != True: es = aU.stuffForScienceDataReduction()" in text
    assert ("if re.search('^6.5.4', '.'.join([str(i) for i in casalith.version()[:-1]])) == None:\n"
            " sys.exit('ERROR: PLEASE USE THE SAME VERSION OF CASA THAT YOU USED FOR GENERATING THE SCRIPT: 6.5.4')"
            in text)
    assert "from casarecipes.almahelpers import fixsyscaltimes" in text
    assert "from casarecipes.almahelpers import tsysspwmap" in text
    assert re.search(r"gaintable=\[vis \+ '\.tsys', vis \+ '\.wvr', vis \+ '\.antpos'\]", text)
    assert text.index("import casalith") > text.index("thesteps = mysteps")


def test_gates_are_read(tmp_path):
    gate = read_gate(_generated(tmp_path, "6.4.1-12"))
    assert (gate.demands, gate.source) == ("6.4.1", "casalith") and casa_gate("6.4.1-12") == "6.4.1"
    old = tmp_path / "old.py"
    old.write_text(CASA4_GATE)
    assert (read_gate(old).demands, read_gate(old).source, read_gate(old).line) == ("4.2.2", "casadef", 6)
    old.write_text(CASA4_GATE.replace("if re.search", "#if re.search").replace(" sys.exit", "# sys.exit"))
    assert read_gate(old) is None                                  # commented out: no gate
    assert first_three("6.7.0-31") == "6.7.0" and first_three("6.5") is None


def test_a_gate_that_cannot_be_read_names_the_script(tmp_path):
    bad = tmp_path / "uid___A002_X1_X2.ms.scriptForCalibration.py"
    bad.write_text(CASA4_GATE.replace("'^4.2.2'", "'^4.2'"))
    with pytest.raises(ScriptCheckError, match=r"uid___A002_X1_X2\.ms\.scriptForCalibration\.py line 6: cannot "
                                               r"read the CASA version its gate demands \('\^4\.2'\)"):
        read_gate(bad)
    bad.write_text("import sys\nv = '6.5.4'\nif not ok(v):\n sys.exit('ERROR: PLEASE USE THE SAME VERSION OF CASA')\n")
    with pytest.raises(ScriptCheckError, match=r"line 4: exits asking for the same version of CASA"):
        read_gate(bad)


def test_what_modular_casa_lacks(tmp_path):
    ok = _generated(tmp_path)
    assert lacking([ok]) == []                       # casalith provided, casarecipes installed, tasks in casatasks
    sd = tmp_path / "uid___A002_X1_X2.ms.scriptForSDCalibration.py"
    sd.write_text("import casalith\nimport casadef\nfrom pipeline.extern.almarenorm import ACreNorm\n"
                  "sdcal(infile='a.ms', calmode='ps,tsys,apply')\nplotms(vis='a.ms')\n"
                  "if applyonly != True: aU.plotWeather(vis='a.ms')\nhelper = lambda: 1\nhelper()\n")
    lacks = lacking([sd])
    assert [(l.what, l.line) for l in lacks] == [("module casadef", 2), ("module pipeline.extern.almarenorm", 3),
                                                  ("task plotms", 5)]
    assert "monolithic CASA" in lacks[0].hint


def test_missing_casarecipes_is_named(tmp_path, monkeypatch):
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "casarecipes":
                raise ModuleNotFoundError(name)

    monkeypatch.setattr(sys, "meta_path", [Hide(), *sys.meta_path])
    for name in [m for m in sys.modules if m.split(".")[0] == "casarecipes"]:
        monkeypatch.delitem(sys.modules, name)
    [lack] = lacking([_generated(tmp_path)])
    assert lack.what == "module casarecipes.almahelpers" and "pip install casarecipes" in lack.hint


def test_casalith_answers_the_version_and_gates_pass_in_memory(tmp_path, capsys):
    lith = casalith_module("6.7.0-31")
    assert lith.version() == [6, 7, 0, 31] and lith.version_string() == "6.7.0-31"
    script = _generated(tmp_path)
    text = script.read_text()
    header = text[:text.index("vis = '")]
    namespace = {"sys": sys, "applyonly": True, "mysteps": [99]}
    sys.modules["casalith"] = lith
    try:
        with pytest.raises(SystemExit, match="SAME VERSION OF CASA THAT YOU USED FOR GENERATING THE SCRIPT: 6.5.4"):
            exec(compile(header, str(script), "exec"), dict(namespace))
        exec(compile(_pass_gates(ast.parse(header), str(script)), str(script), "exec"), dict(namespace))
    finally:
        sys.modules.pop("casalith", None)
    assert f"{script.name} asks for CASA 6.5.4; running in this CASA anyway" in capsys.readouterr().out
    assert script.read_text() == text                                   # the delivered file is not touched


def test_acrenorm_caps_spacesaving_at_one(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.bin").write_bytes(b"x" * (3 << 20))
    (tmp_path / "script").mkdir()
    cal = tmp_path / "script" / "uid___A002_X1_X2.ms.scriptForCalibration.py"
    cal.write_text("# ACreNorm would be used here\n")
    est = estimate(tmp_path)
    assert not est.acrenorm and est.need_mb(3) == 3 * est.raw_mb
    cal.write_text("from pipeline.extern.almarenorm import ACreNorm\nrn = ACreNorm('x.ms')\n")
    est = estimate(tmp_path)
    assert est.acrenorm and est.need_mb(3) == est.need_mb(2) == est.need_mb(1) == 7 * est.raw_mb
    assert est.effective_level(3) == 1 and est.effective_level(-1) == -1 and est.need_mb(0) == 11 * est.raw_mb


def test_total_power_script_as_simulated_needs_nothing_modular_casa_lacks(tmp_path):
    """The simulated <EB>.ms.scriptForSDCalibration.py (sdcal, gencal jyperk, sdbaseline) runs in modular
    CASA; an ASAP-era single-dish task it would call is named before CASA starts."""
    from almadeliver.sim.plan import make_plan
    from almadeliver.sim.totalpower import tp_plan, write_sd_scripts

    plan = tp_plan(make_plan("2019.1.00061.S"))
    write_sd_scripts(plan, plan.mous[0], tmp_path)
    [sd] = (tmp_path / "script").glob("*.ms.scriptForSDCalibration.py")
    assert lacking([sd], context=[tmp_path / "script" / "scriptForPI.py"]) == []
    assert read_gate(sd).demands == "6.5.4"
    sd.write_text(sd.read_text().replace("# Split and concatenation\nmystep = 9",
                                         "sdsave(infile='a.asap', outform='MS2')\n\n# Split and concatenation\nmystep = 9"))
    [lack] = lacking([sd])
    assert lack.what == "task sdsave" and "monolithic CASA" in lack.hint


def test_a_function_argument_called_is_not_a_task(tmp_path):
    """SD scripts generated before CASA 6.4.3 carry analysisUtils' createCasaTool(mytool), which calls
    its argument: that is no task modular CASA lacks."""
    sd = tmp_path / "uid___A002_X1_X2.ms.scriptForSDCalibration.py"
    sd.write_text("def createCasaTool(mytool):\n    return mytool()\n\nmytb = createCasaTool(table)\n"
                  "lam = lambda tool: tool()\n")
    assert lacking([sd]) == []
