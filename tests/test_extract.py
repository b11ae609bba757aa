"""Safe untar: genuine delivery tarballs unpack and merge; hostile ones are refused before any write."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from almadeliver.errors import TransferError, UnsafeTarballError
from almadeliver.packaging.tarballs import tree_entries, write_tar
from almadeliver.transfer.extract import extract_tarball, read_members

MEMBER = "2013.1.00308.S/science_goal.uid___A001_X13e_X1fc/group.uid___A001_X13e_X1fd/member.uid___A001_X13e_X1fe"


def _delivery(tmp: Path, real: Path) -> tuple[Path, Path]:
    """A products tarball and a raw tarball for the same member, built with the project's tar writer."""
    src = tmp / "src"
    member = src / MEMBER
    (member / "product").mkdir(parents=True)
    (member / "product" / "W51.cont.I.pbcor.fits").write_bytes(bytes(range(256)) * 4096)
    (member / "README").write_bytes((real / "delivery" / "W51_2013.1.00308.S_12m_README.txt").read_bytes())
    (member / "script").mkdir()
    (member / "script" / "scriptForPI.py").write_text("print('scriptForPI')\n")
    products = write_tar(tmp / "2013.1.00308.S_uid___A001_X13e_X1fe_001_of_001.tar",
                         tree_entries(src / "2013.1.00308.S", "2013.1.00308.S"))
    raw_src = tmp / "rawsrc" / MEMBER / "raw" / "uid___A002_X1_X2.asdm.sdm"
    raw_src.mkdir(parents=True)
    (raw_src / "ASDM.xml").write_text("<ASDM/>\n")
    raw = write_tar(tmp / "2013.1.00308.S_uid___A002_X1_X2.asdm.sdm.tar",
                    tree_entries(tmp / "rawsrc" / "2013.1.00308.S", "2013.1.00308.S"))
    return products, raw


def test_products_and_raw_merge_in_one_member_folder(tmp_path, real):
    products, raw = _delivery(tmp_path, real)
    dest = tmp_path / "dest"
    r1 = extract_tarball(products, dest)
    r2 = extract_tarball(raw, dest, keep=True)
    member = dest / MEMBER
    assert sorted(p.name for p in member.iterdir()) == ["README", "product", "raw", "script"]
    assert (member / "raw" / "uid___A002_X1_X2.asdm.sdm" / "ASDM.xml").read_text() == "<ASDM/>\n"
    assert (member / "README").read_bytes() == (real / "delivery" / "W51_2013.1.00308.S_12m_README.txt").read_bytes()
    assert r1.removed and not products.exists()
    assert not r2.removed and raw.exists()
    assert r1.bytes == 256 * 4096 + len((member / "README").read_bytes()) + len("print('scriptForPI')\n")


def _hostile(path: Path, add) -> Path:
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("2013.1.00308.S/fine.txt")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        add(tar)
    return path


def _file(name: str):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return add


def _link(name: str, target: str, kind: bytes):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


def _device(tar):
    info = tarfile.TarInfo("2013.1.00308.S/null")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    tar.addfile(info)


@pytest.mark.parametrize("label, add, why", [
    ("dotdot", _file("2013.1.00308.S/../../escaped.txt"), "contains '..'"),
    ("absolute", _file("/tmp/almadeliver-absolute-escape.txt"), "absolute path"),
    ("symlink", _link("2013.1.00308.S/out", "../../../etc", tarfile.SYMTYPE), "is a symlink"),
    ("abs-symlink", _link("2013.1.00308.S/passwd", "/etc/passwd", tarfile.SYMTYPE), "is a symlink"),
    ("inside-symlink", _link("2013.1.00308.S/a/b/link", "../../fine.txt", tarfile.SYMTYPE), "is a symlink"),
    ("hardlink", _link("2013.1.00308.S/shadow", "../etc/shadow", tarfile.LNKTYPE), "is a hard link"),
    ("inside-hardlink", _link("2013.1.00308.S/again", "2013.1.00308.S/fine.txt", tarfile.LNKTYPE), "is a hard link"),
    ("device", _device, "device"),
    ("fifo", _link("2013.1.00308.S/pipe", "", tarfile.FIFOTYPE), "FIFO"),
    ("deep", _file("2013.1.00308.S/" + "d/" * 5000 + "x.txt"), "bytes|folders deep"),
    ("many-folders", _file("2013.1.00308.S/" + "d/" * 100 + "x.txt"), "folders deep"),
    ("long-component", _file("2013.1.00308.S/" + "n" * 300), "longer than 255"),
])
def test_hostile_tarballs_are_refused_before_any_write(tmp_path, label, add, why):
    tarball = _hostile(tmp_path / f"{label}.tar", add)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeTarballError, match=why):
        extract_tarball(tarball, dest)
    assert not dest.exists() or not any(dest.rglob("*")), "nothing may be written from a refused tarball"
    assert tarball.exists()
    assert not Path("/tmp/almadeliver-absolute-escape.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_truncated_tarball_is_incomplete(tmp_path, real):
    products, _raw = _delivery(tmp_path, real)
    data = products.read_bytes()
    products.write_bytes(data[: len(data) // 2])
    with pytest.raises(TransferError, match="incomplete"):
        read_members(products)
    with pytest.raises(TransferError, match="incomplete"):
        extract_tarball(products, tmp_path / "dest")


def test_html_page_is_not_a_tarball(tmp_path):
    page = tmp_path / "x.tar"
    page.write_text("<!DOCTYPE html><html><body>Please log in</body></html>\n")
    with pytest.raises(TransferError, match="not a tar file|incomplete"):
        read_members(page)
