"""The pipeline flavour of simulated deliveries: names, files and formats as the ALMA pipeline writes them."""
import re
import tarfile

import pytest

from almadeliver.casa.commands import render_call
from almadeliver.delivery.calapply import read_calapply
from almadeliver.delivery.calls import iter_calls
from almadeliver.delivery.commandslog import product_tclean_calls, read_commands
from almadeliver.delivery.contdat import parse_contdat
from almadeliver.delivery.flagtemplate import parse_flagtemplate
from almadeliver.delivery.layout import Flavour, find_members
from almadeliver.delivery.report import Severity
from almadeliver.delivery.validate import validate

CODE = "2019.1.00042.S"


@pytest.fixture(scope="module")
def member(simulated, unpack, tmp_path_factory):
    project = simulated(CODE, flavour="pipeline", ebs=2)
    root = unpack(project, tmp_path_factory.mktemp("pipeline"))
    (found,) = find_members(root)
    return found


def test_render_call_wraps_between_arguments_and_parses_back():
    kwargs = {"vis": ["a.ms", "b.ms"], "field": "NGC_253", "spw": ["0:1~9;22~30,1"], "imagename": "x" * 60,
              "niter": 20, "pbcor": True, "threshold": "0.1Jy"}
    text = render_call("tclean", kwargs, width=60)
    assert text.count("\n") >= 2 and all(len(l) <= 80 for l in text.splitlines())
    (call,) = list(iter_calls(text))
    assert call.task == "tclean" and call.kwargs == kwargs


def test_pipeline_member_layout_and_names(member):
    mous = member.mous.disk
    assert member.flavour is Flavour.PIPELINE and len(member.ebs_in_raw) == 2
    assert member.ebs_in_scripts == member.ebs_in_raw
    names = {p.relative_to(member.path).as_posix() for p in member.path.rglob("*") if "raw/" not in p.as_posix()}
    for expected in (f"script/member.{mous}.scriptForPI.py",
                     f"script/member.{mous}.hifa_calimage.casa_pipescript.py",
                     f"script/member.{mous}.hifa_calimage.casa_piperestorescript.py",
                     f"script/member.{mous}.hifa_calimage.pprequest.xml", f"log/member.{mous}.casa_commands.log",
                     f"calibration/member.{mous}.cont.dat", f"calibration/member.{mous}.pipeline_manifest.xml",
                     f"calibration/member.{mous}.session_1.caltables.tgz",
                     f"calibration/member.{mous}.session_2.caltables.tgz", "calibration/flux.csv"):
        assert expected in names
    for eb in member.ebs_in_raw:
        for suffix in (".ms.calapply.txt", ".ms.flagversions.tgz", "_flagtemplate.txt"):
            assert f"calibration/{eb.disk}{suffix}" in names
    products = sorted(n for n in names if n.startswith("product/"))
    assert any(re.fullmatch(rf"product/member\.{mous}\.\w+_sci\.spw0\.cube\.I\.pbcor\.fits", n) for n in products)
    assert any(n.endswith(".spw0.cube.I.pb.fits") for n in products)
    assert any(re.search(r"\.spw0_1_2\.cont\.I\.tt0\.pbcor\.fits$", n) for n in products)
    report = validate(member.path)
    assert not report.of(Severity.ERROR), report.of(Severity.ERROR)


def test_calapply_lines_parse_and_name_tables_in_the_caltables(member):
    cal = member.path / "calibration"
    tables = set()
    for tgz in cal.glob("*.caltables.tgz"):
        with tarfile.open(tgz) as tar:
            tables |= {m.name.split("/", 1)[0] for m in tar.getmembers()}
    intents = set()
    for eb in member.ebs_in_raw:
        calls = read_calapply(cal / f"{eb.disk}.ms.calapply.txt")
        assert len(calls) == 3 and [c.line for c in calls] == [1, 2, 3]
        for call in calls:
            assert call.vis == f"{eb.disk}.ms" and set(call.gaintable) <= tables
            assert call.other["applymode"] == "calflagstrict"
            call.ms_intents()
            intents |= set(call.intent.split(","))
        with tarfile.open(cal / f"{eb.disk}.ms.flagversions.tgz") as tar:
            assert f"{eb.disk}.ms.flagversions/flags.Pipeline_Final/table.dat" in tar.getnames()
    assert intents == {"AMPLITUDE", "BANDPASS", "PHASE", "TARGET"}


def test_casa_commands_log_holds_the_tclean_calls_that_made_the_products(member):
    mous = member.mous.disk
    log = member.path / "log" / f"member.{mous}.casa_commands.log"
    calls = read_commands(log)
    tasks = [c.task for c in calls]
    assert tasks.count("importasdm") == 2 and tasks.count("applycal") == 6 and "flagmanager" in tasks
    assert any("\n" in c.text for c in calls)        # calls wrapped over several lines, as CASA logs them
    products = {p.name for p in (member.path / "product").glob("*.fits")}
    made = product_tclean_calls(calls)
    assert len(made) == 4                             # 3 cubes + 1 continuum
    for call in made:
        base = call.kwargs["imagename"].replace(".s36_0.", ".").replace(".s38_0.", ".")[: -len(".iter1")]
        suffix = ".tt0.pbcor.fits" if call.kwargs["specmode"] == "mfs" else ".pbcor.fits"
        assert f"member.{base}{suffix}" in products
        assert call.kwargs["datacolumn"] == "corrected"


def test_contdat_flagtemplates_and_flux_csv_parse(member, real):
    mous = member.mous.disk
    cont = parse_contdat(member.path / "calibration" / f"member.{mous}.cont.dat")
    ((field, spws),) = cont.fields.items()
    assert sorted(spws) == [0, 1, 2] and all(r.ranges for r in spws.values())
    assert cont.generation == 3 and all(s.name for s in spws.values())   # the pipeline 2024 layout
    assert len(spws[0].ranges) == 2                  # the line cut out of spw 0
    real_header = (real / "pipeline" / "uid___A002_Xc6c0d5_X3f2e.flagtemplate.txt").read_text().splitlines()[:10]
    for eb in member.ebs_in_raw:
        path = member.path / "calibration" / f"{eb.disk}_flagtemplate.txt"
        assert path.read_text().splitlines()[:10] == real_header
        targets = member.path / "calibration" / f"{eb.disk}_flagtargetstemplate.txt"
        assert parse_flagtemplate(targets).commands == []
        (command,) = parse_flagtemplate(path).commands
        assert command.mode == "manual" and command.reason == "amp_loss"
    header = (member.path / "calibration" / "flux.csv").read_text().splitlines()[0]
    assert header == "ms,field,spw,I,Q,U,V,spix,uvmin,uvmax,comment"


def alma_scriptforpi_ppr(script_dir):
    """The PPR as ALMA's scriptForPI (v1.34 to v2.x) finds it, run in script/: ``glob('*PPR*.xml')``, else
    ``glob('*cal*pprequest.xml')``; then the ASDM names from its ``AsdmDiskName`` elements."""
    import glob
    import os
    import xml.etree.ElementTree as ET

    cwd = os.getcwd()
    os.chdir(script_dir)
    try:
        found = glob.glob("*PPR*.xml") or glob.glob("*cal*pprequest.xml")
    finally:
        os.chdir(cwd)
    assert len(found) == 1, found
    tree = ET.parse(script_dir / found[0])
    return found[0], sorted(e.text for e in tree.iter("AsdmDiskName"))


def test_alma_scriptforpi_finds_the_ppr_and_its_asdms(member):
    name, asdms = alma_scriptforpi_ppr(member.path / "script")
    assert name == f"member.{member.mous.disk}.hifa_calimage.pprequest.xml"
    assert asdms == sorted(eb.disk for eb in member.ebs_in_raw)
    restore = list((member.path / "script").glob("*hifa_calimage.casa_piperestorescript.py"))
    assert len(restore) == 1 and "hifa_restoredata" in restore[0].read_text()


def test_asdms_carry_channel_average_spws_the_pipeline_leaves_out(member):
    """The ASDMs carry a 1-channel spw beside each science spw; calibration and imaging use the science spws."""
    import xml.etree.ElementTree as ET

    asdm = member.path / "raw" / f"{member.ebs_in_raw[0].disk}.asdm.sdm" / "SpectralWindow.xml"
    nchans = sorted(int(e.text) for e in ET.parse(asdm).getroot().iter("numChan"))
    assert nchans.count(1) == 3 and len([n for n in nchans if n > 4]) == 3, nchans
    calls = read_commands(next((member.path / "log").glob("*casa_commands.log")))
    assert {c.kwargs["spw"] for c in calls if c.task == "gaincal"} == {"0,1,2"}


def test_cycle_10_layout_images_targets_ms_with_datacolumn_data(pipeline_modern, unpack, tmp_path):
    (member,) = find_members(unpack(pipeline_modern, tmp_path))
    (eb,) = [e.disk for e in member.ebs_in_raw]
    calls = read_commands(next((member.path / "log").glob("*casa_commands.log")))
    made = product_tclean_calls(calls)
    assert len(made) == 4
    by_mode = {(c.kwargs["specmode"], tuple(c.kwargs["vis"]), c.kwargs["datacolumn"]) for c in made}
    assert by_mode == {("cube", (f"{eb}_targets_line.ms",), "data"), ("mfs", (f"{eb}_targets.ms",), "data")}
    (mst,) = [c for c in calls if c.task == "mstransform"]
    assert mst.kwargs["outputvis"] == f"{eb}_targets.ms" and mst.kwargs["reindex"] is False
    (sub,) = [c for c in calls if c.task == "uvcontsub"]
    assert sub.kwargs["vis"] == f"{eb}_targets.ms" and sub.kwargs["outputvis"] == f"{eb}_targets_line.ms"
    assert alma_scriptforpi_ppr(member.path / "script")[1] == [eb]
