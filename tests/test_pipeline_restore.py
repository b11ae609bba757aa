"""``almadeliver run --steps download,restore``: each EB of a manual delivery is calibrated (scriptForPI's
per-EB stage) while the later EBs download, and the result is the serial restore's.

One CASA test: the 2-EB manual project of ``staff_reduction`` (restored serially there, at SPACESAVING 1)
is fetched from the local archive and restored in one run; the overlap is read from the run's recorded
event times, and the calibrated MSs are compared column by column with the serial ones.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from almadeliver.delivery.layout import find_members
from almadeliver.scale.run import RunConfig, run
from almadeliver.scale.steps import find_mous
from almadeliver.sim.archive import Faults, LocalArchive
from almadeliver.workflow import RestoreOptions

from conftest import STAFF_PROJECT


def _columns(ms: Path) -> dict[str, np.ndarray]:
    import casatools

    tb = casatools.table()
    tb.open(str(ms))
    try:
        names = [c for c in ("DATA", "CORRECTED_DATA", "FLAG", "WEIGHT", "TIME", "ANTENNA1", "ANTENNA2",
                             "DATA_DESC_ID", "FIELD_ID") if c in tb.colnames()]
        return {c: tb.getcol(c) for c in names}
    finally:
        tb.close()


def test_run_download_restore_overlaps_and_equals_the_serial_restore(staff_reduction, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)        # the process pool: no Dask cluster to start
    serial = staff_reduction.member.path / "calibrated"
    root = tmp_path / "archive"
    root.mkdir()
    (root / STAFF_PROJECT).symlink_to(staff_reduction.project)
    dest = tmp_path / "dest"
    # a slow link (per connection), so that the second raw tarball is still arriving when the first EB starts
    with LocalArchive(root, faults=Faults(throttle=2e6)) as archive:
        [(project, mous)] = find_mous([STAFF_PROJECT], archive=archive.url)
        config = RunConfig(dest=dest, steps=("download", "restore"), archive=archive.url, workers=1,
                           restore=RestoreOptions(spacesaving=1))
        result = run(config, [(project, mous)])
    assert not result.failed, [o.error for o in result.failed]
    download, restore = result.outcomes
    assert restore.output["during_download"] is True
    out = download.output
    assert out["serial_reason"] is None and len(out["early_ebs"]) == 2, out
    events = out["events"]
    last = max(e["seconds"] for e in events if e["what"] == "last download")
    first_eb = min(e["seconds"] for e in events if e["what"] == "eb restore started")
    assert first_eb < last, events                                   # the overlap, from the recorded times
    combine = next(e["seconds"] for e in events if e["what"] == "restore started")
    assert combine >= max(e["seconds"] for e in events if e["what"] == "eb restore finished")

    [member] = find_members(dest / STAFF_PROJECT)
    ours = member.path / "calibrated"
    names = sorted(p.name for p in ours.glob("*.ms*"))
    assert names == sorted(p.name for p in serial.glob("*.ms*")) and "calibrated.ms" in names, names
    for name in names:
        a, b = _columns(ours / name), _columns(serial / name)
        assert a.keys() == b.keys(), name
        for column in a:
            np.testing.assert_array_equal(a[column], b[column], err_msg=f"{name} {column}")
