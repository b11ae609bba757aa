"""restore without CASA: script dialect, progress lines, the monolithic driver."""
from __future__ import annotations

import pytest

from almadeliver.casa.restore import ProgressParser, inspect_script
from almadeliver.errors import CasaError

from conftest import FIXTURES

# The openings of scriptForPI.py v1.25 (Python 2, CASA 5) and v1.34 (Python 3, CASA 6), as ALMA ships them.
PY2_SCRIPT = (FIXTURES / "scriptForPI-v1.25-py2.py").read_text()
PY3_SCRIPT = (FIXTURES / "scriptForPI-v1.34-py3.py").read_text()


def test_python2_script_is_recognised(tmp_path):
    (tmp_path / "scriptForPI.py").write_text(PY2_SCRIPT)
    info = inspect_script(tmp_path / "scriptForPI.py")
    assert info.python2 and info.version == "1.25"


def test_python3_script_is_recognised(tmp_path):
    (tmp_path / "scriptForPI.py").write_text(PY3_SCRIPT)
    info = inspect_script(tmp_path / "scriptForPI.py")
    assert not info.python2 and info.version == "1.34"


def test_broken_script_is_not_called_python2(tmp_path):
    (tmp_path / "scriptForPI.py").write_text("import os\nif True\n    pass\n")
    with pytest.raises(CasaError, match="line 2"):
        inspect_script(tmp_path / "scriptForPI.py")


# Output lines as scriptForPI v1.34 and an ALMA calibration script print them (Python 3 print).
LINES = """*** ALMA scriptForPI ***
SPACESAVING = 1
Will delete intermediate MSs named *.ms.split to save disk space.
Found  76652  MB of available free disk space.
Expect to need up to  7.0  MB of free disk space.
Found the following ASDMs: ['uid___A002_Xb_X2.asdm.sdm', 'uid___A002_Xa_X1.asdm.sdm']
Creating destination directory for calibrated data.
>>> Processing ASDM uid___A002_Xa_X1
Running ../../script/uid___A002_Xa_X1.ms.scriptForCalibration.py
Step  0 Import of the ASDM
Step  1 Fix of SYSCAL table times
Step  12 Split out science SPWs and time average
uid___A002_Xa_X1.ms.split.cal was produced successfully, moving it to "calibrated" directory.
>>> Processing ASDM uid___A002_Xb_X2
Step  0 Import of the ASDM
Executing scriptForFluxCalibration.py ...
Step  0 Concatenate the calibrated MSs
Done. Please find results in directory "calibrated".""".splitlines()


def test_progress_follows_ebs_and_steps():
    parser = ProgressParser(["uid___A002_Xa_X1", "uid___A002_Xb_X2"])
    seen = [p for p in map(parser.feed, LINES) if p]
    assert [(p.eb_index, p.step, p.title) for p in seen[:4]] == [
        (1, None, None), (1, 0, "Import of the ASDM"), (1, 1, "Fix of SYSCAL table times"),
        (1, 12, "Split out science SPWs and time average")]
    assert (seen[4].eb, seen[4].eb_index, seen[4].eb_total) == ("uid___A002_Xb_X2", 2, 2)
    assert seen[6].phase == "scriptForFluxCalibration.py" and seen[6].eb is None
    assert seen[7].phase == "scriptForFluxCalibration.py" and seen[7].step == 0
    assert seen[-1].phase == "done"
    assert parser.feed("Found  76652  MB of available free disk space.") is None
