"""A manual Total Power member: simulated by CASA (one PM antenna, autocorrelations, ON/OFF subscans),
its <EB>.ms.scriptForSDCalibration.py as ALMA's generator writes it, validated and restored in modular
CASA through the delivery's scriptForPI (real CASA, network unreachable)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from almadeliver.casa.runtime import run_in_casa
from almadeliver.delivery.layout import find_members, total_power_calibrated
from almadeliver.sim.totalpower import line_peak_jy

pytestmark = pytest.mark.slow
CLOSED = "http://127.0.0.1:9"


def _cli(args: list[str], cwd: Path):
    env = dict(os.environ, http_proxy=CLOSED, https_proxy=CLOSED, HTTP_PROXY=CLOSED, HTTPS_PROXY=CLOSED)
    return subprocess.run([sys.executable, "-m", "almadeliver", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def tp_member(simulated, unpack, tmp_path_factory) -> Path:
    """The simulated TP member (cached project), untarred once for this module."""
    [member] = find_members(unpack(simulated("2019.1.00061.S", total_power=True),
                                   tmp_path_factory.mktemp("tp")))
    return member.path


def test_total_power_member_validates_and_restores_in_modular_casa(tp_member, tmp_path):
    """The SD script carries the generator's header and gate; validate counts it; the dry run names
    the gate; the restore runs every step in modular CASA and ends with the calibrated TP data where
    scriptForPI v2.x leaves them (calibrated/<EB>.calibration/<EB>.ms.cal), in Jy as the reducer's."""
    member = tp_member
    [script] = (member / "script").glob("uid___*.ms.scriptForSDCalibration.py")
    assert not list((member / "script").glob("*.ms.scriptForCalibration.py"))
    eb = script.name.split(".")[0]
    text = script.read_text()
    assert "import casalith\n" in text and "if applyonly != True: es = aU.stuffForScienceDataReduction()" in text
    assert "re.search('^6.5.4', '.'.join([str(i) for i in casalith.version()[:-1]])) == None" in text
    assert re.search(r"sdcal\(infile = '[^']+',\s+calmode = 'ps'", text) and "sdbaseline(" in text
    assert "Configuration: Total Power array (ACA)" in (member / "README").read_text()

    r = _cli(["validate", str(member)], tmp_path)
    assert r.returncode == 0 and "raw 1/1" in r.stdout, r.stdout + r.stderr
    r = _cli(["restore", str(member), "--dry-run"], tmp_path)
    assert r.returncode == 1 and re.search(rf"version gate {re.escape(script.name)} asks for CASA 6\.5\.4; modular "
                                           r"CASA \S+ would run: mismatch: refused", r.stdout), r.stdout
    assert f"total power  {eb}: single-dish; scriptForPI leaves its calibrated data in calibrated/{eb}.calibration/" \
        f"{eb}.ms.cal" in r.stdout, r.stdout
    r = _cli(["restore", str(member), "--casa-version-mismatch", "allow", "--spacesaving", "1"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    product = total_power_calibrated(member / "calibrated", eb)
    assert (product / "table.dat").is_file()
    assert f"{product}  (Total Power, baseline subtracted)" in r.stdout, r.stdout
    assert re.search(r"CASA: ran modular CASA \S+; the calibration scripts asked for CASA 6\.5\.4", r.stdout)
    [out] = (member / "almadeliver-restore").glob("scriptForPI-*.out")
    assert f"almadeliver: {eb} is a Total Power EB: its calibrated data are calibrated/{eb}.calibration/" in \
        out.read_text()
    # the restore reproduces the reducer's calibration: the line peak (Jy) of its QA2 text
    reducer = float(re.search(r"Calibrated line peak \(spw 0\): ([\d.]+) Jy",
                              (member / "qa" / f"{eb}__textfile.txt").read_text()).group(1))
    peak = run_in_casa(line_peak_jy, {"ms": str(product)}, workdir=tmp_path,
                       logfile=tmp_path / "peak.log")
    assert peak == pytest.approx(reducer, abs=0.1) and peak > 20.0

    r = _cli(["validate", str(member)], tmp_path)
    assert r.returncode == 0 and "calibrated" not in r.stdout.split("flavour")[0], r.stdout
    shutil.rmtree(product)
    r = _cli(["validate", str(member)], tmp_path)
    assert "no calibrated data for Total Power EB uid://" in r.stdout and f"{eb}.ms.cal" in r.stdout, r.stdout
