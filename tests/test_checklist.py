"""The staff checklist in full (issue 27): every item on a simulated reduction area, one broken variant
per item, the numbers in JSON, the HTML report in headless Chromium, masks and one-member groups.

One restored, re-imaged, staff-filled area is made per session (conftest ``staff_reduction``); each
variant copies it and breaks one thing.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from almadeliver.cli import main
from almadeliver.delivery.report import Severity
from almadeliver.delivery.staff import check_area
from almadeliver.errors import PackagingError
from almadeliver.packaging.group import package_group
from almadeliver.packaging.package import package_mous, parse_size

ITEMS = {"staff.eb.script", "staff.eb.flagversions", "staff.eb.log", "staff.eb.log-warnings", "staff.eb.qa2",
         "staff.eb.split-cal", "staff.eb.flagging", "staff.eb.calibrators", "staff.eb.setjy",
         "staff.combination.log", "staff.combination.log-warnings", "staff.combination.fluxcal-script",
         "staff.combination.fluxscale", "staff.combination.allfluxes", "staff.combination.separation",
         "staff.combination.concat", "staff.imaging.log", "staff.imaging.log-warnings", "staff.readme",
         "staff.imaging.script", "staff.imaging.pbcor", "staff.imaging.flux", "staff.imaging.fits-verify",
         "staff.imaging.masks", "staff.imaging.products", "staff.imaging.sensitivity", "staff.imaging.resolution",
         "staff.casa-version"}


def not_passing(report) -> dict[str, list]:
    """check id -> its warn/FAIL findings (the leap second table warning is about the CASA install)."""
    out: dict[str, list] = {}
    for f in report.findings:
        if f.severity is not Severity.INFO and "leap second table" not in f.message:
            out.setdefault(f.check, []).append(f)
    return out


@pytest.fixture
def area(staff_reduction, tmp_path) -> Path:
    """A private copy of the session's staff area."""
    copy = tmp_path / staff_reduction.area.name
    shutil.copytree(staff_reduction.area, copy, symlinks=True)
    return copy


def _eb_folders(area: Path) -> list[Path]:
    return sorted(area.glob("Calibration_*"))


def _eb(folder: Path) -> str:
    return next(folder.glob("*.ms.scriptForCalibration.py")).name[: -len(".ms.scriptForCalibration.py")]


def _table(path: Path):
    import casatools

    tb = casatools.table()
    assert tb.open(str(path), nomodify=False)
    return tb


@pytest.mark.slow
def test_simulated_area_passes_every_item(staff_reduction):
    report = check_area(staff_reduction.area)
    assert not_passing(report) == {}, [(f.check, f.path, f.message) for fs in not_passing(report).values() for f in fs]
    assert {f.check for f in report.findings} == ITEMS
    by = {f.check: f for f in report.findings}
    assert by["staff.eb.flagging"].numbers["max_fraction"] < 0.3
    stages = by["staff.eb.flagging"].numbers["stages"]
    assert "split.cal" in stages and any(s.endswith(":BeforeApplycal") for s in stages)
    assert set(stages["split.cal"]) == {"0", "1", "2"}                       # per spw
    cal = by["staff.eb.calibrators"].numbers
    assert len(cal) == 6 and all(n["phase_rms_time_deg"] < 10 for n in cal.values())   # 2 calibrators x 3 spws
    assert by["staff.combination.allfluxes"].numbers["lines"] == 6            # 2 EBs x 3 spws
    assert by["staff.combination.concat"].numbers["fields"] == by["staff.combination.concat"].numbers["expected_fields"]
    assert len(set(by["staff.casa-version"].numbers["versions"].values())) == 1
    assert by["staff.imaging.products"].numbers["cubes"] == 3
    assert None not in by["staff.imaging.products"].numbers["sidebands"].values()
    assert len(by["staff.imaging.products"].numbers["sidebands"]) == 2                  # LSB and USB
    assert by["staff.imaging.sensitivity"].numbers["ratio"] <= 1.1
    assert by["staff.imaging.resolution"].numbers["ratio"] <= 1.2


# -- one broken variant per item ----------------------------------------------------------------------
def break_flagversions(area: Path):
    folder = _eb_folders(area)[0]
    script = next(folder.glob("*.ms.scriptForCalibration.py"))
    text = script.read_text()
    assert "rm -rf " + _eb(folder) + ".ms.flagversions" in text
    script.write_text(text.replace(f"os.system('rm -rf {_eb(folder)}.ms.flagversions')\n", ""))
    return {"importasdm_line": int}


def break_log_warnings(area: Path):
    log = next(_eb_folders(area)[1].glob("casa-*.log"))
    log.write_text(log.read_text() + "2026-01-01 00:00:00\tWARN\tapplycal::Calibrater::correct\t"
                   "Found no calibration solutions for spw 2\n")
    return {"other": 1}


def break_qa2(area: Path):
    next(_eb_folders(area)[0].glob("qa2/*qa2_part2.png")).unlink()
    return {"qa2_parts": [1, 3]}


def break_split_cal(area: Path):
    folder = _eb_folders(area)[1]
    shutil.rmtree(area / "Combination" / "calibrated" / f"{_eb(folder)}.ms.split.cal")
    return {"searched": [folder.name, "Combination/calibrated"]}


def break_flagging(area: Path):
    folder = _eb_folders(area)[0]
    tb = _table(folder / f"{_eb(folder)}.ms.split.flagversions" / "flags.BeforeApplycal")
    for row in range(tb.nrows()):
        cell = tb.getcell("FLAG", row)
        cell[...] = True
        tb.putcell("FLAG", row, cell)
    tb.close()
    return {"max_fraction": 1.0}


def break_calibrators(area: Path):
    folder = _eb_folders(area)[0]
    tb = _table(area / "Combination" / "calibrated" / f"{_eb(folder)}.ms.split.cal")
    sub = tb.query("DATA_DESC_ID==1")
    data = sub.getcol("DATA")
    rng = np.random.default_rng(27)
    sub.putcol("DATA", data * np.exp(1j * rng.uniform(-np.pi, np.pi, data.shape[-1])))
    sub.close()
    tb.close()
    return {}


def break_setjy(area: Path):
    folder = _eb_folders(area)[1]
    script = next(folder.glob("*.ms.scriptForCalibration.py"))
    text = script.read_text()
    m = re.search(r"fluxdensity=\[([0-9.]+)", text)
    script.write_text(text.replace(m.group(0), f"fluxdensity=[{float(m.group(1)) * 2}"))
    return {"max_relative_difference": float}


def break_fluxscale(area: Path):
    next((area / "Combination" / "calibrated").glob("*.ms.split.fluxscale")).unlink()
    return {"missing": list}


def break_allfluxes(area: Path):
    path = area / "Combination" / "calibrated" / "allFluxes.txt"
    lines = path.read_text().splitlines()
    parts = lines[0].split(" ")
    parts[3] = f"{float(parts[3]) * 1.5:.4f}"
    path.write_text("\n".join([" ".join(parts)] + lines[1:]) + "\n")
    return {"max_relative_difference": float}


def break_separation(area: Path):
    folder = _eb_folders(area)[1]
    tb = _table(area / "Combination" / "calibrated" / f"{_eb(folder)}.ms.split.cal")
    tb.putcol("TIME", tb.getcol("TIME") + 5 * 86400.0)
    tb.close()
    return {"span_days": float}


def break_concat(area: Path):
    ms = area / "Combination" / "calibrated" / "calibrated.ms"
    tb = _table(ms / "FIELD")
    tb.copyrows(str(ms / "FIELD"), startrowin=tb.nrows() - 1, nrow=1)
    new = tb.nrows() - 1
    tb.close()
    tb = _table(ms)
    field = tb.getcol("FIELD_ID")
    rows = np.flatnonzero(field == field.max())
    field[rows[: len(rows) // 2]] = new
    tb.putcol("FIELD_ID", field)
    tb.close()
    return {"fields": int}


def break_casa_version(area: Path):
    log = next((area / "Imaging").glob("casa-*.log"))
    text = log.read_text()
    m = re.search(r"CASA Version (?:[A-Z]+ )?(\d+\.\d+\.\d+)", text)
    log.write_text(text.replace(m.group(0), m.group(0).replace(m.group(1), "4.4.0")))
    return {"versions": dict}


def break_products(area: Path):
    for p in (area / "Imaging").glob("*_spw2.*fits"):
        p.unlink()
    return {"cubes": 2}


def break_fits_verify(area: Path):
    path = next((area / "Imaging").glob("*_spw1.image.pbcor.fits"))
    data = bytearray(path.read_bytes())
    at = data.index(b"BUNIT   ")
    data[at:at + 8] = b"bunit   "                       # a keyword FITS does not allow
    path.write_bytes(bytes(data))
    return {"files": int}


def break_masks(area: Path):
    script = area / "Imaging" / "scriptForImaging.py"
    script.write_text(script.read_text().replace("niter=200,", "niter=200, mask='cont_hand.mask',", 1))
    return {"missing": ["cont_hand.mask"]}


def break_sensitivity(area: Path):
    readme = area / "README"
    readme.write_text(re.sub(r"Proposed rms: [0-9.]+ mJy", "Proposed rms: 0.01 mJy", readme.read_text()))
    return {"ratio": float}


def break_resolution(area: Path):
    readme = area / "README"
    readme.write_text(re.sub(r"Requested angular resolution [0-9.]+ arcsec", "Requested angular resolution 0.1 arcsec",
                             readme.read_text()))
    return {"ratio": float}


VARIANTS = {
    "staff.eb.flagversions": (break_flagversions, Severity.ERROR),
    "staff.eb.log-warnings": (break_log_warnings, Severity.WARNING),
    "staff.eb.qa2": (break_qa2, Severity.ERROR),
    "staff.eb.split-cal": (break_split_cal, Severity.ERROR),
    "staff.eb.flagging": (break_flagging, Severity.ERROR),
    "staff.eb.calibrators": (break_calibrators, Severity.ERROR),
    "staff.eb.setjy": (break_setjy, Severity.ERROR),
    "staff.combination.fluxscale": (break_fluxscale, Severity.ERROR),
    "staff.combination.allfluxes": (break_allfluxes, Severity.ERROR),
    "staff.combination.separation": (break_separation, Severity.WARNING),
    "staff.combination.concat": (break_concat, Severity.ERROR),
    "staff.casa-version": (break_casa_version, Severity.ERROR),
    "staff.imaging.products": (break_products, Severity.ERROR),
    "staff.imaging.fits-verify": (break_fits_verify, Severity.ERROR),
    "staff.imaging.masks": (break_masks, Severity.ERROR),
    "staff.imaging.sensitivity": (break_sensitivity, Severity.WARNING),
    "staff.imaging.resolution": (break_resolution, Severity.WARNING),
}


@pytest.mark.slow
@pytest.mark.parametrize("item", sorted(VARIANTS))
def test_each_broken_variant_fails_exactly_its_item(item, area):
    breaker, severity = VARIANTS[item]
    expected = breaker(area)
    report = check_area(area)
    bad = not_passing(report)
    assert set(bad) == {item}, [(f.check, f.path, f.message) for fs in bad.values() for f in fs]
    for finding in bad[item]:
        assert finding.severity is severity and finding.numbers is not None
        for key, value in expected.items():
            if isinstance(value, type):
                assert isinstance(finding.numbers[key], value), (key, finding.numbers)
            else:
                assert finding.numbers[key] == value, (key, finding.numbers)


@pytest.mark.slow
def test_requested_values_from_the_command_line(staff_reduction, capsys):
    area = str(staff_reduction.area)
    assert main(["check", area, "--format", "json", "--requested-rms", "0.001mJy", "--requested-beam", "0.01arcsec"]) == 0
    report = json.loads(capsys.readouterr().out)
    by = {f["check"]: f for f in report["findings"]}
    assert by["staff.imaging.sensitivity"]["severity"] == "warning"
    assert by["staff.imaging.sensitivity"]["numbers"]["source"] == "--requested-rms/--requested-beam"
    assert by["staff.imaging.sensitivity"]["numbers"]["requested_rms_jy"] == pytest.approx(1e-6)
    assert by["staff.imaging.resolution"]["numbers"]["requested_beam_arcsec"] == pytest.approx(0.01)
    assert main(["check", area, "--requested-rms", "lots"]) == 2
    assert "--requested-rms 'lots' is not understood" in capsys.readouterr().err


@pytest.mark.slow
def test_json_holds_the_numbers(staff_reduction, capsys):
    assert main(["check", str(staff_reduction.area), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    numbers = {f["check"]: f["numbers"] for f in report["findings"] if f["numbers"]}
    assert {"staff.eb.flagging", "staff.eb.calibrators", "staff.eb.setjy", "staff.combination.allfluxes",
            "staff.combination.separation", "staff.combination.concat", "staff.casa-version",
            "staff.imaging.products", "staff.imaging.sensitivity", "staff.imaging.resolution",
            "staff.imaging.fits-verify"} <= set(numbers)
    assert numbers["staff.combination.separation"]["span_days"] < 1


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (make test installs it: scripts/system-deps.d/chromium.sh)")
    return path


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(staff_reduction, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["check", str(staff_reduction.area), "--format", "html", "-o", str(out)]) == 0
    assert f"{out}:" in capsys.readouterr().out
    page = out.read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    # per EB: calibrators and flagging; one quick-look per product image
    products = len(list((staff_reduction.area / "Imaging").glob("*.pbcor.fits")))
    assert len(sources) == 2 * 2 + products
    assert all((tmp_path / s).is_file() and (tmp_path / s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        dom = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", out.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Final checklist of MOUS" in dom.stdout
    assert f"images loaded {len(sources)} of {len(sources)}" in dom.stdout, dom.stdout[-1500:]


@pytest.mark.slow
def test_package_ships_the_masks_the_script_names(area, tmp_path):
    import casatools

    script = area / "Imaging" / "scriptForImaging.py"
    script.write_text(script.read_text().replace("niter=200,", "niter=200, mask='cont_hand.mask',", 1))
    ia = casatools.image()
    ia.fromshape(str(area / "Imaging" / "cont_hand.mask"), [8, 8, 1, 1])
    ia.close()
    result = package_mous(area, "2017.1.00123.S", "uid://A001/X1/X1", "uid://A001/X1/X2", tmp_path / "out",
                          parse_size("10GB"))
    product_tar = tmp_path / "out" / result.files[0].name
    with tarfile.open(product_tar) as tar:
        masks = [n for n in tar.getnames() if "/product/cont_hand.mask/" in n]
    assert any(n.endswith("/product/cont_hand.mask/table.dat") for n in masks)
    shutil.rmtree(area / "Imaging" / "cont_hand.mask")
    with pytest.raises(PackagingError, match="cont_hand.mask"):
        package_mous(area, "2017.1.00123.S", "uid://A001/X1/X1", "uid://A001/X1/X2", tmp_path / "out2",
                     parse_size("10GB"))
