"""package and package-group: from a checked staff area to the archive's delivery files."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_staff import EBS, MOUS, image, make_area

from almadeliver.cli import main
from almadeliver.errors import PackagingError, UsageError
from almadeliver.ids import DeliveryFileName, TarballKind
from almadeliver.packaging.group import package_group
from almadeliver.packaging.package import package_mous, parse_size
from almadeliver.packaging.tarballs import FIXED_MTIME

PROJECT, SG, GROUP = "2013.1.00308.S", "uid://A001/X196/X91", "uid://A001/X196/X92"
PREFIX = f"{PROJECT}/science_goal.uid___A001_X196_X91/group.uid___A001_X196_X92/member.uid___A001_X196_X93"
MOUS_FILES = [f"{PROJECT}_uid___A001_X196_X93_001_of_001.tar", f"{PROJECT}_uid___A001_X196_X93_auxiliary.tar",
              f"{PROJECT}_uid___A002_X9ee74a_X26f0.asdm.sdm.tar", f"{PROJECT}_uid___A002_Xa8df68_Xb4b.asdm.sdm.tar",
              "member.uid___A001_X196_X93.README.txt"]


def raw_folder(root: Path) -> Path:
    raw = root / "raw"
    for eb in EBS:
        (raw / f"{eb.disk}.asdm.sdm").mkdir(parents=True)
        (raw / f"{eb.disk}.asdm.sdm" / "ASDM.xml").write_text(f"<ASDM>{eb.archive}</ASDM>\n")
    return raw


def names(tar: Path) -> list[str]:
    with tarfile.open(tar) as t:
        return t.getnames()


def test_package_writes_the_delivery(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    out = tmp_path / "out"
    result = package_mous(area, PROJECT, SG, GROUP, out, parse_size("10GB"), raw_folder(tmp_path))
    assert [f.name for f in result.files] == MOUS_FILES and not result.warnings
    assert sorted(p.name for p in out.iterdir()) == sorted(MOUS_FILES + [f"{PROJECT}_uid___A001_X196_X93.manifest.json"])
    kinds = [DeliveryFileName.parse(f.name).kind for f in result.files]
    assert kinds == [TarballKind.PRODUCTS, TarballKind.AUXILIARY, TarballKind.RAW, TarballKind.RAW, TarballKind.README]

    manifest = json.loads(result.manifest.read_text())
    assert manifest["project"] == PROJECT and manifest["ous"] == MOUS.archive
    for entry in manifest["files"]:           # size and sha256 computed while writing match the bytes
        data = (out / entry["name"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    semantics = {e["name"]: e["semantics"] for e in manifest["files"]}
    assert list(semantics.values()) == ["#this", "#auxiliary", "#progenitor", "#progenitor", "#documentation"]

    products = names(out / MOUS_FILES[0])
    assert f"{PREFIX}/README" in products
    images = sorted(p.name for p in (area / "Imaging").glob("*.fits"))
    assert "w51_CO.flux.fits" in images and len(images) == 12          # ours + the simulated cubes and continua
    assert [n for n in products if "/product/" in n] == [f"{PREFIX}/product/{name}" for name in images]
    aux = names(out / MOUS_FILES[1])
    files = sorted(n[len(PREFIX) + 1:] for n in aux if n.startswith(PREFIX + "/") and "." in n.rsplit("/", 1)[1])
    e0, e1 = (eb.disk for eb in EBS)
    assert files == sorted([
        f"calibration/{e0}.calibration.plots.tgz", f"calibration/{e0}.calibration.tgz",
        f"calibration/{e1}.calibration.plots.tgz", f"calibration/{e1}.calibration.tgz", "calibration/allFluxes.txt",
        "log/Imaging.log.tgz", "log/calibrated.log.tgz", f"log/{e0}.log.tgz", f"log/{e1}.log.tgz",
        *[f"qa/{e}__qa2_part{k}.png" for e in (e0, e1) for k in (1, 2, 3)], f"qa/{e0}__textfile.txt", f"qa/{e1}__textfile.txt",
        "script/scriptForFluxCalibration.py", "script/scriptForImaging.py", "script/scriptForPI.py",
        f"script/{e0}.ms.scriptForCalibration.py", f"script/{e1}.ms.scriptForCalibration.py"])
    assert names(out / MOUS_FILES[2])[-1] == f"{PREFIX}/raw/{e0}.asdm.sdm/ASDM.xml"
    member_paths = {m["path"] for m in manifest["files"][1]["members"]}
    assert member_paths == {n for n in aux if n.count("/") > 4}

    with tarfile.open(out / MOUS_FILES[1]) as t:
        cal = t.extractfile(f"{PREFIX}/calibration/{e0}.calibration.tgz").read()
        plots = t.extractfile(f"{PREFIX}/calibration/{e0}.calibration.plots.tgz").read()
        assert all(m.mtime == FIXED_MTIME and m.uname == "alma" for m in t.getmembers())
    with tarfile.open(fileobj=io.BytesIO(cal)) as t:      # tables only: no ASDM, MS, logs, script, qa2
        cal_names = t.getnames()
    # the split flag versions are kept (the applyonly restore restores the reducer's flags from them);
    # <EB>.ms.flagversions is not (importasdm would refuse to overwrite it)
    flagversions = f"{e0}.calibration/{e0}.ms.split.flagversions"
    assert [n for n in cal_names if not n.startswith(flagversions + "/")] == [
        f"{e0}.calibration", f"{e0}.calibration/{e0}.ms.split.bandpass",
        f"{e0}.calibration/{e0}.ms.split.bandpass/table.dat", flagversions, f"{e0}.calibration/{e0}.ms.wvrgcal"]
    assert f"{flagversions}/FLAG_VERSION_LIST" in cal_names
    assert not any(".ms.flagversions" in n for n in cal_names)
    with tarfile.open(fileobj=io.BytesIO(plots)) as t:
        assert f"{e0}.calibration.plots/{e0}.ms.split.bandpass.plots/bp.png" in t.getnames()

    readme = (out / MOUS_FILES[4]).read_text()
    with tarfile.open(out / MOUS_FILES[0]) as t:
        assert t.extractfile(f"{PREFIX}/README").read().decode() == readme
    assert readme.startswith("Atacama Large Millimeter/submillimeter Array (ALMA)\n\n#####\n\nCycle: 2")
    assert "Project code: 2013.1.00308.S" in readme and "CASA version used for reduction: 4.4.0" in readme
    assert "            |-- README\n" in readme and f"`-- {e1}.ms.scriptForCalibration.py" in readme
    assert readme.endswith(f"8 directories, {19 + 4 + len(images)} files\n")   # 4 more qa2 parts than before


def test_gnu_tar_unpacks_the_standard_tree(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    out = tmp_path / "out"
    package_mous(area, PROJECT, SG, GROUP, out, parse_size("10GB"), raw_folder(tmp_path))
    tree = tmp_path / "tree"
    tree.mkdir()
    for tar in sorted(out.glob("*.tar")):
        subprocess.run(["tar", "xf", str(tar), "-C", str(tree)], check=True)
    member = tree / PREFIX
    assert sorted(p.name for p in member.iterdir()) == ["README", "calibration", "log", "product", "qa", "raw", "script"]
    assert (member / "product" / "w51_CO.image.pbcor.fits").read_bytes() == \
        (area / "Imaging" / "w51_CO.image.pbcor.fits").read_bytes()
    assert (member / "script" / "scriptForPI.py").read_text() == "# scriptForPI (staff copy)\n"


def test_packaging_twice_gives_identical_bytes(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    raw = raw_folder(tmp_path)
    one = package_mous(area, PROJECT, SG, GROUP, tmp_path / "one", parse_size("10GB"), raw)
    for p in area.rglob("*"):                           # new mtimes must not change a byte
        p.touch()
    two = package_mous(area, PROJECT, SG, GROUP, tmp_path / "two", parse_size("10GB"), raw)
    assert [f.sha256 for f in one.files] == [f.sha256 for f in two.files]
    assert one.manifest.read_bytes() == two.manifest.read_bytes()
    assert not list((tmp_path / "one").glob(".*"))      # no staging or .part left behind


def test_refuses_a_failing_checklist(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    (area / "Imaging" / "scriptForImaging.py").unlink()
    for p in (area / "Calibration_Xb4b" / "qa2").iterdir():
        p.unlink()
    with pytest.raises(PackagingError) as err:
        package_mous(area, PROJECT, SG, GROUP, tmp_path / "out", parse_size("1GB"))
    assert "2 items" in str(err.value)
    assert "Imaging/scriptForImaging.py: missing or empty" in str(err.value)
    assert "Calibration_Xb4b/qa2: missing qa2_part1.png, qa2_part2.png, qa2_part3.png, textfile.txt" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_script_for_pi_and_raw_are_required_as_given(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    (area / "script" / "scriptForPI.py").unlink()
    with pytest.raises(PackagingError, match="--script-for-pi"):
        package_mous(area, PROJECT, SG, GROUP, tmp_path / "out", parse_size("1GB"))
    ours = tmp_path / "scriptForPI.py"
    ours.write_text("# ours\n")
    with pytest.raises(PackagingError, match="uid___A002_Xa8df68_Xb4b.asdm.sdm"):
        package_mous(area, PROJECT, SG, GROUP, tmp_path / "out", parse_size("1GB"), tmp_path, ours)
    result = package_mous(area, PROJECT, SG, GROUP, tmp_path / "out", parse_size("1GB"), script_for_pi=ours)
    assert [f.semantics for f in result.files] == ["#this", "#auxiliary", "#documentation"]
    with pytest.raises(PackagingError, match="names project 2013.1.00308.S, not 2019.1.00001.S"):
        package_mous(area, "2019.1.00001.S", SG, GROUP, tmp_path / "out", parse_size("1GB"), script_for_pi=ours)


def test_split_at_max_size(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    for k in range(6):
        image(area / "Imaging" / f"line{k}.image.pbcor.fits", k)
        image(area / "Imaging" / f"line{k}.flux.fits", k)
    images = sorted((area / "Imaging").glob("*.fits"))
    max_size = max(p.stat().st_size for p in images) + 30_720     # a part holds the largest image
    out = tmp_path / "out"
    result = package_mous(area, PROJECT, SG, GROUP, out, max_size)
    parts = [f for f in result.files if f.semantics == "#this"]
    assert len(parts) > 1 and all(f.size <= max_size for f in parts) and not result.warnings
    n = len(parts)
    assert [f.name for f in parts] == [f"{PROJECT}_uid___A001_X196_X93_{m:03d}_of_{n:03d}.tar" for m in range(1, n + 1)]
    members = [m["path"] for f in json.loads(result.manifest.read_text())["files"][:n] for m in f["members"]]
    assert len(members) == len(images) + 1 and members == sorted(members)        # the images and README
    for f in parts:                                    # each part unpacks on its own
        assert names(out / f.name)[:4] == PREFIX.split("/")[:1] + ["/".join(PREFIX.split("/")[:i]) for i in (2, 3, 4)]
    # repackaging in one part removes the stale m_of_n parts
    package_mous(area, PROJECT, SG, GROUP, out, parse_size("1GB"))
    assert sorted(p.name for p in out.glob("*_of_*.tar")) == [f"{PROJECT}_uid___A001_X196_X93_001_of_001.tar"]


def test_a_file_larger_than_a_part_goes_alone_with_a_warning(tmp_path, real, staff_reduction):
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    max_size = max(p.stat().st_size for p in (area / "Imaging").glob("*.fits")) + 30_720
    (area / "Imaging" / "big.fits.gz").write_bytes(b"\x1f\x8b" + bytes(max_size + 20_000))
    result = package_mous(area, PROJECT, SG, GROUP, tmp_path / "out", max_size)
    parts = [f for f in result.files if f.semantics == "#this"]
    big = [f for f in parts if f.size > max_size]
    assert len(big) == 1 and [m.path.rsplit("/", 1)[1] for m in big[0].members] == ["big.fits.gz"]
    assert len(result.warnings) == 1 and big[0].name in result.warnings[0]


@pytest.mark.parametrize("text,size", [("10GB", 10 * 10**9), ("500MB", 500 * 10**6), ("1.5G", 1_500_000_000),
                                       ("2GiB", 2 * 2**30), ("4096", 4096), ("64 kb", 64_000)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["ten", "10XB", "", "-1GB"])
def test_parse_size_refuses(text):
    with pytest.raises(UsageError, match="is not a size"):
        parse_size(text)


def test_package_group(tmp_path, real):
    area = make_area(tmp_path / "staff", real, ebs=EBS[:1])
    gous = tmp_path / "staff" / "uid___A001_X196_X92"
    (gous / "Imaging").mkdir(parents=True)
    for name in ("scriptForImaging.py", "casa-20150703-120000.log", "w51_CO.image.pbcor.fits", "w51_CO.flux.fits"):
        (gous / "Imaging" / name).write_bytes((area / "Imaging" / name).read_bytes())
    (gous / "README").write_text((area / "README").read_text())
    members = [MOUS.archive, "uid://A001/X196/X94"]              # the 12m and the 7m member
    result = package_group(gous, PROJECT, SG, tmp_path / "out", parse_size("10GB"), members)
    assert [f.name for f in result.files] == [f"{PROJECT}_uid___A001_X196_X92_001_of_001.tar"]
    assert result.ous == GROUP
    group_prefix = PREFIX.rsplit("/", 1)[0]
    assert [m.path for m in result.files[0].members] == [
        f"{group_prefix}/README", f"{group_prefix}/log/Imaging.log.tgz", f"{group_prefix}/product/w51_CO.flux.fits",
        f"{group_prefix}/product/w51_CO.image.pbcor.fits", f"{group_prefix}/script/scriptForImaging.py"]
    # seed 002: group deliveries only when the group has more than one member
    with pytest.raises(PackagingError, match="has 1 member .*more than one member") as err:
        package_group(gous, PROJECT, SG, tmp_path / "one", parse_size("10GB"), [MOUS.archive, MOUS.disk])
    assert "\n" not in str(err.value) and not (tmp_path / "one").exists()
    (gous / "README").unlink()
    with pytest.raises(PackagingError, match="README: missing or empty"):
        package_group(gous, PROJECT, SG, tmp_path / "out", parse_size("10GB"), members)


def test_cli_package_group_refuses_one_member(tmp_path, capsys):
    gous = tmp_path / "uid___A001_X196_X92"
    (gous / "Imaging").mkdir(parents=True)
    assert main(["package-group", str(gous), "--project", PROJECT, "--sg", SG, "--member", MOUS.archive,
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: group uid://A001/X196/X92 has 1 member (uid://A001/X196/X93)")


def test_cli_prepare_check_package(tmp_path, real, capsys, staff_reduction):
    assert main(["prepare", "uid://A001/X196/X93", "--eb", EBS[0].archive, "--eb", EBS[1].archive,
                 "--root", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "Calibration_X26f0/" in out and "Combination/calibrated/" in out
    assert main(["check", str(tmp_path / "new" / "uid___A001_X196_X93")]) == 1
    assert "FAIL  staff.eb.script" in capsys.readouterr().out
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    assert main(["check", str(area)]) == 0
    out = capsys.readouterr().out
    assert "pass  staff.imaging.pbcor" in out and out.rstrip().endswith("0 failed: ready to package")
    assert main(["package", str(area), "--project", PROJECT, "--sg", SG, "--group", GROUP,
                 "--max-size", "1.5G", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert MOUS_FILES[0] in out and "manifest 2013.1.00308.S_uid___A001_X196_X93.manifest.json" in out
    assert main(["package", str(area), "--project", PROJECT, "--sg", SG, "--group", GROUP,
                 "--max-size", "lots"]) == 2
    assert "error: 'lots' is not a size" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["4.x", "unknown"])
def test_readme_placeholder_has_one_verdict_in_check_validate_and_package(tmp_path, real, capsys, value,
                                                                          staff_reduction):
    """'CASA version used for reduction: 4.x' (a template left unfilled): check fails, validate of the
    area reports the same error, package refuses; one README reader (readme.py) gives every verdict
    (the area's MSs and images are real, so that the README is the one item that fails)."""
    area = make_area(tmp_path / "staff", real, measurements=staff_reduction.area)
    text = (area / "README").read_text()
    assert "CASA version used for reduction: 4.4.0" in text
    (area / "README").write_text(text.replace("CASA version used for reduction: 4.4.0",
                                              f"CASA version used for reduction: {value}"))
    kind = "a placeholder, not a CASA version" if value == "4.x" else "not a CASA version"
    assert main(["check", str(area)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  staff.readme" in out and f"'{value}' is {kind}" in out
    assert main(["validate", str(area)]) == 1
    out = capsys.readouterr().out
    assert f"error README: line 8: '{value}' is {kind}" in out
    assert main(["package", str(area), "--project", PROJECT, "--sg", SG, "--group", GROUP,
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "the final checklist fails (1 item): README: line" in err and f"'{value}' is {kind}" in err
    assert not (tmp_path / "out").exists()


def test_package_reads_the_project_code_with_the_readme_reader(tmp_path, real):
    area = make_area(tmp_path / "staff", real)
    text = (area / "README").read_text()
    (area / "README").write_text(text.replace("Project code: 2013.1.00308.S", "Project code: 2013.1.308.S"))
    with pytest.raises(PackagingError, match="'2013.1.308.S' is not an ALMA project code"):
        package_mous(area, PROJECT, SG, GROUP, tmp_path / "out", parse_size("1GB"), raw_folder(tmp_path))
