"""The API reference: every verb documented in numpydoc form, and the Sphinx build has no warning."""
from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import almadeliver
from almadeliver import api

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", api.__all__)
def test_every_verb_has_numpydoc_sections(name):
    doc = inspect.getdoc(getattr(almadeliver, name))
    for section in ("Parameters\n----------", "Returns\n-------", "Raises\n------", "Examples\n--------"):
        assert section in doc, f"{name}: no {section.splitlines()[0]} section"
    documented = doc.split("Parameters\n----------", 1)[1].split("Returns\n-------", 1)[0]
    for parameter in inspect.signature(getattr(api, name)).parameters:
        assert parameter.lstrip("*") in documented, f"{name}: parameter {parameter} undocumented"


def test_api_reference_builds_without_warnings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
                        str(DOCS), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "api.html").read_text()
    for words in ("almadeliver.api.restore", "spacesaving", "CasaVersionMismatchError", "SkyCoord"):
        assert words in page
