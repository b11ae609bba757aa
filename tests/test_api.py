"""The Python API (almadeliver.query/download/validate/restore/...): what it promises a notebook user."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord

import almadeliver as ad
from almadeliver.archive.model import ProjectView
from almadeliver.archive.tap import Cone, Selection
from almadeliver.casa.restore import RestorePlan
from almadeliver.delivery.layout import find_members
from almadeliver.errors import UsageError
from almadeliver.transfer.download import TransferResult

PROJECT = "2017.1.00123.S"     # the demo's project (test_roundtrip's: one MOUS, 2 EBs)

IMPORT_CHECK = """
import json, os, sys
before = dict(os.environ)
import almadeliver
verbs = [almadeliver.query, almadeliver.download, almadeliver.validate, almadeliver.restore,
         almadeliver.image, almadeliver.package, almadeliver.run]
after = dict(os.environ)
print(json.dumps({"casa": sorted(m for m in sys.modules if m.split(".")[0] in ("casatools", "casatasks")),
                  "changed": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
                  "site": os.environ.get("CASASITECONFIG")}))
"""


def _run_import_check(env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-c", IMPORT_CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_import_changes_no_environment_and_loads_no_casa(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CASASITECONFIG", "ALMADELIVER_CASA_LOGFILE")}
    env["ALMADELIVER_HOME"] = str(tmp_path)
    out = _run_import_check(env)
    assert out == {"casa": [], "changed": [], "site": None}
    mine = tmp_path / "my-site.py"
    out = _run_import_check({**env, "CASASITECONFIG": str(mine)})
    assert out == {"casa": [], "changed": [], "site": str(mine)}


def test_a_casa_child_keeps_the_users_site_config(tmp_path, monkeypatch):
    from almadeliver.casa.runtime import casa_env, configure_offline, offline_environment

    mine = tmp_path / "my-site.py"
    monkeypatch.setenv("CASASITECONFIG", str(mine))
    assert casa_env(tmp_path / "casa.log")["CASASITECONFIG"] == str(mine)
    assert offline_environment() == mine and os.environ["CASASITECONFIG"] == str(mine)
    monkeypatch.delenv("CASASITECONFIG")
    assert casa_env(tmp_path / "casa.log")["CASASITECONFIG"] == str(configure_offline())
    assert "measures_auto_update = False" in configure_offline().read_text()


def test_dir_lists_the_verbs():
    assert {"query", "download", "validate", "restore", "image", "package", "run"} <= set(dir(ad))
    with pytest.raises(AttributeError):
        ad.no_such_verb


def test_a_skycoord_and_a_quantity_make_a_cone():
    c = SkyCoord(83.82, -5.39, unit="deg")
    sel = Selection(cone=c)
    assert sel.cone == Cone(ra=pytest.approx(83.82), dec=pytest.approx(-5.39), radius=pytest.approx(1 / 60))
    galactic = SkyCoord(l=0, b=0, unit="deg", frame="galactic")
    from almadeliver.archive.tap import cone_of

    near = cone_of(galactic, 30 * u.arcsec)
    assert near.ra == pytest.approx(266.405, abs=1e-3) and near.radius == pytest.approx(30 / 3600)
    with pytest.raises(UsageError, match="not an angle"):
        cone_of(c, 3 * u.GHz)


def test_query_download_validate_restore_plan(local_archive, tmp_path):
    view = ad.query(PROJECT, archive=local_archive.url)
    assert isinstance(view, ProjectView) and [p.code for p in view.projects] == [PROJECT]
    table = view.to_table()
    assert list(table["proposal_id"]) == [PROJECT] and str(table["spatial_resolution"].unit) == "arcsec"
    plan = tmp_path / "plan.json"
    plan.write_text(view.to_json())
    result = ad.download(plan, tmp_path / "data", what="products,auxiliary,raw", archive=local_archive.url)
    assert isinstance(result, TransferResult) and result.ok and result.fetched_bytes > 0
    report = ad.validate(tmp_path / "data" / PROJECT)
    assert report.ok(), report.to_json()
    [member] = find_members(tmp_path / "data" / PROJECT)
    restore_plan = ad.restore(member.path, dry_run=True, spacesaving=1, casa_version_mismatch="allow")
    assert isinstance(restore_plan, RestorePlan) and restore_plan.spacesaving == 1
    with pytest.raises(UsageError, match="engine"):
        ad.restore(member.path, engine="fast", dry_run=True)


def test_help_shows_parameters_units_and_errors():
    doc = ad.restore.__doc__
    for words in ("spacesaving : int", "Returns", "Raises", "DiskSpaceError", "MB"):
        assert words in doc
