"""The tutorial notebook (docs/tutorial.ipynb) executed against the local archive, as a reader runs it.

It reuses the demo's simulated project (test_roundtrip's and test_api's, cached once per session); its
CASA part is a dry run of restore and image (a real restore of this project is covered by
test_roundtrip), so the notebook adds no CASA time to the suite.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient


NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"
PROJECT = "2017.1.00123.S"


def _text(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def test_tutorial_notebook_runs(local_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("ALMADELIVER_ARCHIVE", local_archive.url)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "tutorial.ipynb")           # the executed copy, outputs and all
    out = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "error" not in [o.get("output_type") for c in nb.cells for o in c.get("outputs", [])]
    assert PROJECT in out and "arcsec" in out                 # the science table, with its units
    assert "True" in out and "ok: True" in out                # downloaded and valid
    assert "SPACESAVING" in out and "TreeError -> restore the data first" in out
    assert (tmp_path / "data" / PROJECT).is_dir()
