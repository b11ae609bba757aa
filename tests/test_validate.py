"""validate on small synthetic trees laid out like real deliveries (W51 2013.1.00308.S, legus-alma)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from almadeliver.cli import main
from almadeliver.delivery.layout import Flavour, find_members, find_staff_areas
from almadeliver.delivery.report import Severity
from almadeliver.delivery.validate import validate
from almadeliver.errors import TreeError, UsageError
from almadeliver.ids import Uid

PROJECT = "2013.1.00308.S"
SG, GOUS, MOUS = "uid___A001_X196_X91", "uid___A001_X196_X92", "uid___A001_X196_X93"
EBS = ["uid___A002_X9ee74a_X26f0", "uid___A002_Xa8df68_Xb4b"]       # the real W51 12m EBs
ASDM_TABLES = {"Main": 1, "Antenna": 6, "ConfigDescription": 1, "DataDescription": 1, "ExecBlock": 1,
               "Feed": 6, "Field": 1, "Polarization": 1, "Processor": 1, "Receiver": 1, "SBSummary": 1,
               "Scan": 1, "Source": 1, "SpectralWindow": 1, "State": 1, "Station": 6, "Subscan": 1,
               "SwitchCycle": 1, "SysCal": 6, "CalWVR": 0, "Weather": 0}


def touch(path: Path, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_fits(path: Path, beam: bool = True, beams_table: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.zeros((1, 1, 8, 8), dtype=np.float32))
    if beam:
        hdu.header.update(BMAJ=1.6e-4, BMIN=1.4e-4, BPA=-80.0)
    hdus = [hdu]
    if beams_table:
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column(name="BMAJ", format="E", array=[0.5]), fits.Column(name="BMIN", format="E", array=[0.4]),
             fits.Column(name="BPA", format="E", array=[10.0])], name="BEAMS"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_asdm(path: Path) -> Path:
    """An ASDM folder shaped like exportasdm's: ASDM.xml declaring its tables, Main.xml naming its BLOB."""
    tables = "".join(f"<Table> <Name> {t} </Name> <NumberRows> {n} </NumberRows> </Table> "
                     for t, n in ASDM_TABLES.items())
    touch(path / "ASDM.xml", f'<?xml version="1.0"?> <ASDM> <TimeOfCreation> 2015 </TimeOfCreation>{tables}</ASDM>')
    for t, n in ASDM_TABLES.items():
        if n and t != "Main":
            touch(path / f"{t}.xml", f"<{t}Table> <row/> </{t}Table>")
    touch(path / "Main.xml", '<MainTable> <row> <dataUID> <EntityRef entityId="uid://A002/X9ee74a/X26f1" '
          'entityTypeName="ASDM" documentVersion="1"/> </dataUID> </row> </MainTable>')
    touch(path / "ASDMBinary" / "uid___A002_X9ee74a_X26f1", "binary visibilities")
    return path


def member_path(root: Path, mous: str = MOUS) -> Path:
    return root / PROJECT / f"science_goal.{SG}" / f"group.{GOUS}" / f"member.{mous}"


def manual_member(root: Path, real: Path, raw: bool = True, ebs=EBS) -> Path:
    """A manual-calibration member like the real W51 12m delivery (README from the real file)."""
    m = member_path(root)
    shutil.copy(real / "delivery/W51_2013.1.00308.S_12m_README.txt", touch(m / "README"))
    touch(m / "script/scriptForPI.py", "# scriptForPI v1.34\n")
    touch(m / "script/scriptForImaging.py")
    for eb in ebs:
        touch(m / f"script/{eb}.ms.scriptForCalibration.py")
        touch(m / f"calibration/{eb}.calibration.tgz")
        (m / f"calibration/{eb}.calibration.plots").mkdir(parents=True)
        touch(m / f"log/{eb}.log.tgz")
        for part in (1, 2, 3):
            touch(m / f"qa/{eb}__qa2_part{part}.png")
        touch(m / f"qa/{eb}__textfile.txt")
        if raw:
            write_asdm(m / f"raw/{eb}.asdm.sdm")
    write_fits(m / "product/w51_H2CO_303_202_contsub.image.pbcor.fits")
    write_fits(m / "product/w51_H2CO_303_202_contsub.flux.fits", beam=False)
    return m


PIPE_MOUS = "uid___A001_X87c_X69"
PIPE_EBS = ["uid___A002_Xba0af7_X6409", "uid___A002_Xba0af7_X6ac1"]     # the real legus-alma band 4 EBs


def pipeline_member(root: Path, real: Path, raw: bool = True) -> Path:
    """A pipeline member like the real legus-alma band 4 12m tree (files with the member prefix)."""
    m = root / "2016.1.01435.S" / "science_goal.uid___A001_X87c_X67" / "group.uid___A001_X87c_X68" / f"member.{PIPE_MOUS}"
    pre = f"member.{PIPE_MOUS}."
    touch(m / "README", (real / "delivery/W51_2013.1.00308.S_12m_README.txt").read_text()
          .replace("2013.1.00308.S", "2016.1.01435.S"))
    touch(m / f"script/{pre}scriptForPI.py")
    touch(m / f"script/{PIPE_MOUS}.hifa_calimage.casa_pipescript.py")
    touch(m / f"script/{PIPE_MOUS}.hifa_calimage.casa_piperestorescript.py",
          f"hifa_restoredata(vis={[eb for eb in PIPE_EBS]}, session=['session_1', 'session_1'])\n")
    touch(m / f"script/{PIPE_MOUS}.pprequest.xml", "<SciPipeRequest/>")
    cal = m / "calibration"
    touch(cal / f"{PIPE_MOUS}.session_1.caltables.tgz")
    shutil.copy(real / "pipeline/G008.67.B3.12m.cont.dat", cal / f"{PIPE_MOUS}.cont.dat")
    manifest = [f'<piperesults name="{PIPE_MOUS}"><ous name="{PIPE_MOUS}"><casaversion name="4.7.0"/>',
                f'<session name="session_1"><caltables name="{PIPE_MOUS}.session_1.caltables.tgz"/>']
    for eb in PIPE_EBS:
        touch(cal / f"{eb}.ms.calapply.txt",
              f"applycal(vis='{eb}.ms', field='', intent='', spw='', gaintable=['{PIPE_MOUS}.s1.tsyscal.tbl'])\n")
        touch(cal / f"{eb}.ms.flagversions.tgz")
        shutil.copy(real / "pipeline/uid___A002_Xb12f3b_X9ec2_flagtemplate.txt", cal / f"{eb}_flagtemplate.txt")
        manifest.append(f'<asdm name="{eb}"><finalflags name="{eb}.ms.flagversions.tgz"/>'
                        f'<applycmds name="{eb}.ms.calapply.txt"/></asdm>')
        if raw:
            write_asdm(m / f"raw/{eb}.asdm.sdm")
    manifest.append(f'</session><weblog name="{PIPE_MOUS}.weblog.tgz"/></ous></piperesults>')
    touch(cal / f"{pre}pipeline_manifest.xml", "".join(manifest))
    touch(m / f"log/{PIPE_MOUS}.casa_commands.log", "tclean(vis=['a.ms'])\n")
    touch(m / f"qa/{PIPE_MOUS}.weblog.tgz")
    write_fits(m / f"product/{PIPE_MOUS}.NGC_628_sci.spw17.cube.I.pbcor.fits")
    write_fits(m / f"product/{PIPE_MOUS}.NGC_628_sci.spw17.cube.I.pb.fits", beam=False)
    return m


def checks(report, severity=None):
    return sorted(f.check for f in report.findings if severity is None or f.severity.value == severity)


# -- manual deliveries ------------------------------------------------------------------------------
def test_clean_manual_delivery(tmp_path, real):
    m = manual_member(tmp_path, real)
    report = validate(tmp_path / PROJECT)
    assert checks(report, "error") == [] and checks(report, "warning") == []
    assert report.flavour == "manual" and report.ok(strict=True)
    (info,) = report.details["members"]
    assert info["mous"] == "uid://A001/X196/X93" and info["raw"] and not info["restored"]
    assert info["readme"]["casa_version"] == "4.4.0" and info["readme"]["pi"] == "Adam Ginsburg"
    summary = [f for f in report.findings if f.check == "readme.summary"]
    assert summary[0].message.startswith("project 2013.1.00308.S, PI Adam Ginsburg, CASA 4.4.0, QA2 notes")
    notes = int(re.search(r"QA2 notes (\d+) lines$", summary[0].message).group(1))    # plural past one
    assert notes > 1
    # the member folder itself validates the same way
    again = validate(m)
    assert again.flavour == "manual" and again.ok(strict=True) and again.details["members"][0]["path"] == "."


def test_find_members_api(tmp_path, real):
    manual_member(tmp_path, real)
    (member,) = find_members(tmp_path)
    assert member.flavour is Flavour.MANUAL and str(member.project) == PROJECT
    assert member.sg == Uid.parse(SG) and member.gous == Uid.parse(GOUS) and member.mous == Uid.parse(MOUS)
    assert member.ebs_in_raw == member.ebs_in_scripts == sorted(Uid.parse(e) for e in EBS)
    assert member.script_for_pi.endswith("script/scriptForPI.py") and member.has_raw and not member.restored
    assert member.raw_tarball(Uid.parse(EBS[1])) == f"{PROJECT}_{EBS[1]}.asdm.sdm.tar"


def test_missing_asdm_names_the_tarball_to_fetch(tmp_path, real):
    m = manual_member(tmp_path, real)
    shutil.rmtree(m / f"raw/{EBS[1]}.asdm.sdm")
    report = validate(tmp_path)
    (err,) = report.of(Severity.ERROR)
    assert err.check == "raw.missing-asdm" and "uid://A002/Xa8df68/Xb4b" in err.message
    assert f"fetch 2013.1.00308.S_{EBS[1]}.asdm.sdm.tar" in err.hint
    assert main(["validate", str(tmp_path)]) == 1


def test_asdm_without_script_is_semipass_info(tmp_path, real):
    m = manual_member(tmp_path, real)
    write_asdm(m / "raw/uid___A002_Xa8df68_X1234.asdm.sdm")
    report = validate(tmp_path)
    semi = [f for f in report.findings if f.check == "raw.semipass"]
    assert len(semi) == 1 and semi[0].severity.value == "info" and "QA semipass" in semi[0].message
    assert report.ok()


def test_products_only_lists_raw_tarballs(tmp_path, real):
    manual_member(tmp_path, real, raw=False)
    report = validate(tmp_path)
    assert report.ok(strict=True)
    (absent,) = [f for f in report.findings if f.check == "raw.absent"]
    assert all(f"{PROJECT}_{eb}.asdm.sdm.tar" in absent.hint for eb in EBS)


def test_truncated_asdm(tmp_path, real):
    m = manual_member(tmp_path, real)
    (m / f"raw/{EBS[0]}.asdm.sdm/Scan.xml").unlink()
    (m / f"raw/{EBS[0]}.asdm.sdm/SysCal.xml").write_text("")
    (m / f"raw/{EBS[1]}.asdm.sdm/ASDMBinary/uid___A002_X9ee74a_X26f1").unlink()
    report = validate(tmp_path)
    errors = report.of(Severity.ERROR)
    assert [f.check for f in errors] == ["raw.truncated-asdm"] * 2
    assert "2 table(s) missing or empty (Scan.xml, SysCal.xml)" in errors[0].message
    assert "visibility file(s) named in Main.xml missing" in errors[1].message
    assert f"fetch {PROJECT}_{EBS[0]}.asdm.sdm.tar again" in errors[0].hint
    (m / f"raw/{EBS[0]}.asdm.sdm/ASDM.xml").unlink()
    assert "ASDM.xml is missing" in [f for f in validate(tmp_path).findings if f.check == "raw.truncated-asdm"][0].message


def test_product_fits_checks(tmp_path, real):
    m = manual_member(tmp_path, real)
    write_fits(m / "product/nobeam.image.pbcor.fits", beam=False)
    write_fits(m / "product/perplane.image.pbcor.fits", beam=False, beams_table=True)
    good = (m / "product/w51_H2CO_303_202_contsub.image.pbcor.fits").read_bytes()
    (m / "product/cut.image.pbcor.fits").write_bytes(good[:3000])
    (m / "product/login.image.pbcor.fits").write_text("<html>please log in</html>\n")
    by_path = {Path(f.path).name: f for f in validate(tmp_path).findings if f.check.startswith("product.")}
    assert by_path["nobeam.image.pbcor.fits"].check == "product.no-beam"
    assert "perplane.image.pbcor.fits" not in by_path
    assert by_path["cut.image.pbcor.fits"].check == "product.truncated"
    # in whole bytes: where the data starts plus |BITPIX|/8 bytes per pixel, read here with astropy
    with fits.open(m / "product/w51_H2CO_303_202_contsub.image.pbcor.fits") as hdul:
        end = hdul.fileinfo(0)["datLoc"] + abs(hdul[0].header["BITPIX"]) // 8 * hdul[0].data.size
    assert by_path["cut.image.pbcor.fits"].message == f"FITS data cut short (3000 of {end} bytes)"
    assert by_path["login.image.pbcor.fits"].check == "product.unreadable"
    assert set(by_path) == {"nobeam.image.pbcor.fits", "cut.image.pbcor.fits", "login.image.pbcor.fits"}


def test_leftovers_empty_files_and_broken_links(tmp_path, real):
    m = manual_member(tmp_path, real)
    touch(tmp_path / PROJECT / f"{PROJECT}_{EBS[0]}.asdm.sdm.tar.part")
    touch(tmp_path / f"{PROJECT}_uid___A001_X196_X93_001_of_001.tar")
    (m / "log/empty.log").write_text("")
    touch(m / "qa/uid___A001_X196_X93.weblog.tar")          # a weblog tar is a product, not a leftover
    os.symlink("../no/such/file", m / "calibration/dangling")
    report = validate(tmp_path)
    got = {(f.check, f.severity.value) for f in report.findings if f.check.startswith("tree.")}
    assert got == {("tree.partial-download", "error"), ("tree.leftover-tarball", "warning"),
                   ("tree.zero-size", "warning"), ("tree.broken-symlink", "error")}
    tar = [f for f in report.findings if f.check == "tree.leftover-tarball"][0]
    assert tar.path == f"{PROJECT}_uid___A001_X196_X93_001_of_001.tar" and "delivery products" in tar.message


def test_missing_scripts_and_folders(tmp_path, real):
    m = manual_member(tmp_path, real)
    (m / "script/scriptForPI.py").unlink()
    shutil.rmtree(m / "qa")
    (m / "README").write_text("<html>expired login</html>\n")
    report = validate(tmp_path)
    assert checks(report, "error") == ["script.no-scriptforpi"]
    assert checks(report, "warning") == ["layout.missing-folder", "readme.unparsed"]


def test_restored_but_empty_calibrated(tmp_path, real):
    m = manual_member(tmp_path, real)
    (m / "calibrated").mkdir()
    report = validate(tmp_path)
    assert report.details["members"][0]["restored"] and checks(report, "warning") == ["calibrated.empty"]
    (m / "calibrated" / "working").mkdir()                 # a folder that is not an MS: still no calibrated MS
    (m / "calibrated" / "casa-20260101.log").write_text("x\n")
    assert checks(validate(tmp_path), "warning") == ["calibrated.empty"]
    (m / f"calibrated/{EBS[0]}.ms.split.cal").mkdir()
    assert validate(tmp_path).ok(strict=True)


def test_bad_naming_is_a_warning(tmp_path, real):
    m = manual_member(tmp_path, real)
    m.rename(m.parent / "my_member")
    report = validate(tmp_path)
    naming = [f for f in report.findings if f.check == "layout.naming"]
    assert len(naming) == 1 and "'my_member' is not a member.uid___A001" in naming[0].message
    assert report.ok() and not report.ok(strict=True)


# -- pipeline deliveries ----------------------------------------------------------------------------
def test_clean_pipeline_delivery(tmp_path, real):
    pipeline_member(tmp_path, real)
    report = validate(tmp_path)
    assert report.flavour == "pipeline" and checks(report, "error") == [] and checks(report, "warning") == []
    (member,) = find_members(tmp_path)
    assert member.ebs_in_scripts == member.ebs_in_raw == [Uid.parse(e) for e in PIPE_EBS]
    assert member.restore_script.endswith("casa_piperestorescript.py")
    assert member.script_for_pi.endswith(f"member.{PIPE_MOUS}.scriptForPI.py")


def test_pipeline_missing_files_and_bad_contdat(tmp_path, real):
    m = pipeline_member(tmp_path, real)
    cal = m / "calibration"
    (cal / f"{PIPE_EBS[1]}.ms.calapply.txt").unlink()
    (cal / f"{PIPE_MOUS}.cont.dat").write_text("Field: NGC_628\nSpectralWindow: 17\n104.5 to 104.6 GHz\n")
    shutil.copy(real / "pipeline/uid___A002_Xaf4574_X17bc_flagtemplate.txt", cal / f"{PIPE_EBS[0]}_flagtemplate.txt")
    report = validate(tmp_path)
    by_check = {f.check: f for f in report.findings}
    assert by_check["pipeline.missing-eb-file"].path.endswith(f"{PIPE_EBS[1]}.ms.calapply.txt")
    assert by_check["pipeline.unparsed"].message == "line 3: '104.5 to 104.6 GHz' is not a frequency range"
    assert by_check["pipeline.unparsed"].hint == "expected e.g. '93.10~93.15GHz LSRK'", "the parser's own hint"
    assert by_check["pipeline.manifest-missing"].message.startswith(f"manifest lists {PIPE_EBS[1]}.ms.calapply.txt")
    assert "closing quote missing" in by_check["pipeline.flagtemplate-note"].message
    assert sorted(checks(report, "error")) == ["pipeline.manifest-missing", "pipeline.missing-eb-file",
                                               "pipeline.unparsed"]


def test_pipeline_missing_raw_asdm(tmp_path, real):
    m = pipeline_member(tmp_path, real)
    shutil.rmtree(m / f"raw/{PIPE_EBS[0]}.asdm.sdm")
    (err,) = [f for f in validate(tmp_path).findings if f.severity.value == "error"]
    assert err.check == "raw.missing-asdm" and f"fetch 2016.1.01435.S_{PIPE_EBS[0]}.asdm.sdm.tar" in err.hint


# -- Cycle 0 and the staff area ----------------------------------------------------------------------
def test_cycle0_delivery(tmp_path):
    eb = "uid___A002_X554543_X207"
    m = tmp_path / "2011.0.00340.S/sg_ouss_id/group_ouss_id/member_ouss_2012-12-05_id"
    touch(m / "README", "Project code: 2011.0.00340.S\nPI name: Someone\nCASA version used for reduction: 3.4\n")
    touch(m / f"script/{eb}.ms.scriptForCalibration.py")
    touch(m / "script/scriptForImaging.py")
    touch(m / f"raw/{eb}.ms.split/table.dat")
    touch(m / f"calibrated/{eb}.ms.split.cal/table.dat")
    (m / f"calibration/{eb}.calibration").mkdir(parents=True)
    touch(m / f"log/{eb}.calibration.log")
    touch(m / f"qa/{eb}__textfile.txt")
    write_fits(m / "product/TWHya.continuum.fits")
    report = validate(tmp_path)
    assert report.flavour == "cycle0" and report.ok(strict=True), report.findings
    (member,) = find_members(tmp_path)
    assert member.ebs_in_raw == [Uid.parse(eb)] and member.restored and member.mous is None
    [summary] = [f for f in report.findings if f.check == "readme.summary"]
    assert summary.message.endswith("QA2 notes 0 lines")

    # a Cycle 0 tree's folder names are its own: a name the archive's layout would flag is info only
    m.rename(m.parent / "my_member")
    report = validate(tmp_path)
    naming = [f for f in report.findings if f.check == "layout.naming"]
    assert naming and {f.severity.value for f in naming} == {"info"}, naming
    assert report.flavour == "cycle0" and report.ok(strict=True), report.findings


def test_one_line_of_qa2_notes_is_singular(tmp_path):
    eb = "uid___A002_X554543_X207"
    m = tmp_path / "2011.0.00340.S/sg_ouss_id/group_ouss_id/member_ouss_2012-12-05_id"
    touch(m / "README", "Project code: 2011.0.00340.S\nPI name: Someone\nCASA version used for reduction: 3.4\n"
                        "Comments from Reducer: the phase calibrator was weak in spw 2\n")
    touch(m / f"script/{eb}.ms.scriptForCalibration.py")
    [summary] = [f for f in validate(tmp_path).findings if f.check == "readme.summary"]
    assert summary.message.endswith("QA2 notes 1 line"), summary.message


def test_staff_area(tmp_path):
    area = tmp_path / "uid___A001_X13e_X1fe"
    write_asdm(area / "Calibration_X26f0/uid___A002_X9ee74a_X26f0")
    touch(area / "Calibration_X26f0/uid___A002_X9ee74a_X26f0.ms.scriptForCalibration.py")
    (area / "Calibration_X26f0/qa2").mkdir()
    write_asdm(area / "Calibration_Xb4c/uid___A002_Xa8df68_Xb4b")
    report = validate(area)
    assert report.flavour == "staff-area"
    got = checks(report)
    assert "staff.tail-mismatch" in got                       # layout: the EB sits in the wrong folder
    failed = {f.check for f in report.of(Severity.ERROR)}     # the final checklist of `check`, under this root
    assert {"staff.combination.log", "staff.imaging.pbcor", "staff.eb.log"} <= failed
    assert any(f.path.startswith("Calibration_X26f0") for f in report.findings if f.check == "staff.eb.log")
    (a,) = find_staff_areas(tmp_path)
    assert a.ous == Uid.parse("uid://A001/X13e/X1fe") and sorted(eb.tail for eb in a.ebs) == ["X26f0", "Xb4c"]


# -- the command ------------------------------------------------------------------------------------
def test_cli_text_json_and_exit_codes(tmp_path, real, capsys):
    m = manual_member(tmp_path, real)
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("info 2013.1.00308.S/science_goal.uid___A001_X196_X91/group.uid___A001_X196_X92/"
                             "member.uid___A001_X196_X93/README: project 2013.1.00308.S, PI Adam Ginsburg")
    assert out[-1].endswith("flavour manual (1 member, raw 1/1, restored 0/1); 0 errors, 0 warnings, 1 info; "
                            f"{sum(len(f) for _, _, f in os.walk(tmp_path))} files")
    (m / "log/empty.log").write_text("")
    assert main(["validate", str(tmp_path)]) == 0
    assert main(["validate", "--strict", str(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["validate", "--format", "json", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flavour"] == "manual" and data["findings"][0]["severity"] == "warning"


def test_cli_bad_usage(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "almadeliver", "validate", *args], capture_output=True, text=True)
    r = run(str(tmp_path / "nowhere"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert run("--format", "yaml", str(tmp_path)).returncode == 2
    r = run(str(tmp_path))
    assert r.returncode == 1 and r.stderr.startswith("error: no member folder or staff reduction area")


def test_library_errors(tmp_path):
    with pytest.raises(UsageError):
        validate(tmp_path / "nowhere")
    with pytest.raises(TreeError):
        validate(tmp_path)


@pytest.mark.parametrize("generation", [1, 2, 3])
def test_pipeline_contdat_of_every_generation_validates(tmp_path, real, generation):
    from almadeliver.sim.pipeline import contdat_text

    m = pipeline_member(tmp_path, real)
    text = contdat_text("NGC_628", {17: [(104.5e9, 104.6e9)], 19: [], 21: [(106.0e9, 107.8e9)]}, generation,
                        flags={17: ["LOWBANDWIDTH", "LOWSPREAD"], 21: ["ALLCONT"]})
    (m / "calibration" / f"{PIPE_MOUS}.cont.dat").write_text(text)
    report = validate(tmp_path)
    assert checks(report, "error") == []
    (note,) = [f for f in report.findings if f.check == "pipeline.contdat"]
    assert note.message.startswith(f"cont.dat generation {generation}: 1 field(s), 3 spw block(s)")
    assert "no continuum found: NGC_628 spw 19" in note.message
    assert ("all continuum: NGC_628 spw 21" in note.message) is (generation > 1)
    flags = [f.message for f in report.findings if f.check == "pipeline.contdat-flags"]
    assert flags == (["field NGC_628 spw 17: Flags LOWBANDWIDTH LOWSPREAD", "field NGC_628 spw 21: Flags ALLCONT"]
                     if generation == 3 else [])


def test_delivered_readme_with_a_placeholder_casa_version(tmp_path, real):
    m = manual_member(tmp_path, real)
    readme = m / "README"
    readme.write_text(readme.read_text().replace("CASA version used for reduction: 4.4.0",
                                                 "CASA version used for reduction: 4.x"))
    report = validate(tmp_path / PROJECT)
    (f,) = [f for f in report.findings if f.check == "readme.casa-version"]
    assert f.severity is Severity.WARNING and f.message == "line 12: '4.x' is a placeholder, not a CASA version"
    assert "readme.unparsed" not in checks(report)      # the rest of the README is still read
    assert report.details["members"][0]["readme"]["pi"] == "Adam Ginsburg"


def test_asdm_tables_named_up_to_six_then_dots_and_a_missing_main_xml(tmp_path, real):
    m = manual_member(tmp_path, real)
    asdm = m / f"raw/{EBS[0]}.asdm.sdm"
    six = ["Antenna", "ConfigDescription", "DataDescription", "ExecBlock", "Field", "Polarization"]
    for t in six:
        (asdm / f"{t}.xml").unlink()
    (msg,) = [f.message for f in validate(tmp_path).findings if f.check == "raw.truncated-asdm"]
    assert msg.endswith("6 table(s) missing or empty (" + ", ".join(f"{t}.xml" for t in six) + ")")
    (asdm / "Main.xml").unlink()                          # the 7th: named as missing, not read
    (msg,) = [f.message for f in validate(tmp_path).findings if f.check == "raw.truncated-asdm"]
    assert "7 table(s) missing or empty (" in msg and msg.endswith("Field.xml, Main.xml ...)")   # sorted, 6 shown


def test_a_leftover_tarballs_size_is_given_in_mb(tmp_path, real):
    manual_member(tmp_path, real)
    (tmp_path / f"{PROJECT}_uid___A001_X196_X93_001_of_001.tar").write_bytes(bytes(2_500_000))
    (tar,) = [f for f in validate(tmp_path).findings if f.check == "tree.leftover-tarball"]
    assert "(2.5 MB)" in tar.message


def test_each_members_readme_goes_with_that_member(tmp_path, real):
    m = manual_member(tmp_path, real)
    other = m.parent / "member.uid___A001_X196_X95"
    shutil.copytree(m, other)
    readme = (other / "README").read_text()
    assert "PI name: Adam Ginsburg" in readme
    (other / "README").write_text(readme.replace("PI name: Adam Ginsburg", "PI name: Someone Else"))
    members = validate(tmp_path).details["members"]
    assert [(x["mous"], x["readme"]["pi"]) for x in members] == [
        ("uid://A001/X196/X93", "Adam Ginsburg"), ("uid://A001/X196/X95", "Someone Else")]


def test_fits_of_8_byte_pixels_and_a_header_only_primary(tmp_path, real):
    """A float64 cube cut short is named with 8 bytes a pixel; a primary HDU without data (NAXIS = 0,
    the beams in a table after it) is not truncated."""
    m = manual_member(tmp_path, real)
    path = m / "product/f64.image.pbcor.fits"
    fits.PrimaryHDU(np.zeros((1, 4, 8, 8), dtype=np.float64)).writeto(path)     # 4 channels: every axis counts
    with fits.open(path) as hdul:
        end = hdul.fileinfo(0)["datLoc"] + 8 * 4 * 64
    path.write_bytes(path.read_bytes()[:3000])
    beams = fits.BinTableHDU.from_columns([fits.Column(name="BMAJ", format="E", array=np.ones(1))], name="BEAMS")
    fits.HDUList([fits.PrimaryHDU(), beams]).writeto(m / "product/headeronly.image.pbcor.fits")
    fits.PrimaryHDU().writeto(m / "product/alone.pb.fits")         # one header block, nothing after it
    assert (m / "product/alone.pb.fits").stat().st_size == 2880
    by_path = {Path(f.path).name: f for f in validate(tmp_path).findings if f.check.startswith("product.")}
    assert by_path["f64.image.pbcor.fits"].message == f"FITS data cut short (3000 of {end} bytes)"
    assert "headeronly.image.pbcor.fits" not in by_path and "alone.pb.fits" not in by_path


def test_an_empty_file_of_a_pipeline_run_is_not_a_zero_size_warning(tmp_path, real):
    """CASA output outside calibrated/ (a pipeline-<date> working folder) may hold empty files."""
    m = manual_member(tmp_path, real)
    (m / "pipeline-20260101T000000" / "empty.txt").parent.mkdir()
    (m / "pipeline-20260101T000000" / "empty.txt").write_text("")
    assert "tree.zero-size" not in checks(validate(tmp_path), "warning")
