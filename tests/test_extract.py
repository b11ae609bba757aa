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


# -- crafted tarballs (issue 15): whatever the Python patch level, nothing lands outside the tree -------
def _symlink_chain(path: Path, outside: Path) -> Path:
    """The CVE-2025-4517 kind: symlinks whose expansion passes PATH_MAX, then a link out and a file through it."""
    comp, steps = "d" * 247, "abcdefghijklmnop"
    with tarfile.open(path, "w") as tar:
        here, step = "", ""
        for s in steps:
            d = tarfile.TarInfo(posixpath_join(here, comp))
            d.type = tarfile.DIRTYPE
            tar.addfile(d)
            link = tarfile.TarInfo(posixpath_join(here, s))
            link.type, link.linkname = tarfile.SYMTYPE, comp
            tar.addfile(link)
            here, step = posixpath_join(here, comp), posixpath_join(step, s)
        long_link = posixpath_join(step, "l" * 254)
        up = tarfile.TarInfo(long_link)
        up.type, up.linkname = tarfile.SYMTYPE, "../" * len(steps)
        tar.addfile(up)
        out = tarfile.TarInfo("escape")
        # the long link really resolves to the destination, so this is DEST/../<outside>; a realpath that
        # gives up past PATH_MAX sees only the lexical DEST/a/b/.../<outside>, inside
        out.type, out.linkname = tarfile.SYMTYPE, f"{long_link}/../{outside.name}"
        tar.addfile(out)
        evil = tarfile.TarInfo("escape/pwned.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return path


def posixpath_join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


def _many_members(path: Path, n: int = 6, size: int = 20_000) -> Path:
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"2013.1.00308.S/product/f{i}.fits")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes([i + 1]) * size))
    return path


def test_symlink_chain_past_path_max_cannot_escape(tmp_path):
    outside = tmp_path / "outside"          # a sibling of dest
    outside.mkdir()
    tarball = _symlink_chain(tmp_path / "chain.tar", outside)
    with pytest.raises(UnsafeTarballError, match="symlink|bytes"):
        extract_tarball(tarball, tmp_path / "dest")
    assert not any(outside.iterdir()) and tarball.exists()
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_5000_component_path_is_refused_with_a_reason_not_a_recursion_error(tmp_path):
    tarball = _hostile(tmp_path / "deep.tar", _file("/".join(["a"] * 5000)))
    with pytest.raises(UnsafeTarballError, match="bytes|deep") as err:
        extract_tarball(tarball, tmp_path / "dest")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400
    assert tarball.exists()


def test_corrupt_middle_header_at_the_right_size_is_refused(tmp_path):
    tarball = _many_members(tmp_path / "c.tar")
    data = bytearray(tarball.read_bytes())
    with tarfile.open(tarball) as tar:
        third = tar.getmembers()[3].offset
    data[third + 10: third + 20] = b"XXXXXXXXXX"          # the name field: the header checksum no longer matches
    tarball.write_bytes(bytes(data))
    assert len(data) == tarball.stat().st_size
    with pytest.raises(TransferError, match="damaged|corrupt"):
        read_members(tarball)
    with pytest.raises(TransferError):
        extract_tarball(tarball, tmp_path / "dest")
    assert tarball.exists() and not (tmp_path / "dest" / "2013.1.00308.S").exists()


def test_zero_padded_truncated_tarball_is_refused(tmp_path):
    tarball = _many_members(tmp_path / "z.tar")
    data = tarball.read_bytes()
    cut = len(data) // 3 + 100                            # inside the data of the second member
    tarball.write_bytes(data[:cut] + bytes(len(data) - cut))
    with pytest.raises(TransferError, match="cut short|damaged|corrupt"):
        read_members(tarball)
    assert tarball.exists()


def test_bytes_after_the_end_marker_are_refused_and_genuine_padding_is_not(tmp_path):
    tarball = _many_members(tmp_path / "ok.tar")
    assert len(read_members(tarball)) == 6               # tarfile's own record padding
    tarball.write_bytes(tarball.read_bytes() + b"garbage" + bytes(505))
    with pytest.raises(TransferError):
        read_members(tarball)


def test_a_link_already_in_the_destination_is_never_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    (dest / "2013.1.00308.S").mkdir(parents=True)
    (dest / "2013.1.00308.S" / "product").symlink_to(outside)      # e.g. left by a user
    with pytest.raises(UnsafeTarballError, match="not a folder inside the destination"):
        extract_tarball(_many_members(tmp_path / "m.tar"), dest)
    assert not any(outside.iterdir())
    (dest / "2013.1.00308.S" / "product").unlink()
    (dest / "2013.1.00308.S" / "product").mkdir()
    (dest / "2013.1.00308.S" / "product" / "f0.fits").symlink_to(outside / "victim")   # a link at a file's name
    extract_tarball(_many_members(tmp_path / "m.tar"), dest)
    assert not (outside / "victim").exists()
    assert (dest / "2013.1.00308.S" / "product" / "f0.fits").read_bytes() == b"\x01" * 20_000


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar"])
def test_gnu_tar_tarballs_pass_the_end_of_archive_check(tmp_path, fmt):
    import subprocess
    folder = "long_" * (15 if fmt == "ustar" else 30)        # ustar: at most 100 bytes per name part
    src = tmp_path / "2013.1.00308.S" / folder / "product"
    src.mkdir(parents=True)
    (src / "cube.fits").write_bytes(bytes(range(256)) * 300)
    (src / "empty.txt").write_bytes(b"")
    tarball = tmp_path / "gnu.tar"
    subprocess.run(["tar", "cf", str(tarball), f"--format={fmt}", "-C", str(tmp_path), "2013.1.00308.S"],
                   check=True, capture_output=True)
    assert tarball.stat().st_size % 10240 == 0
    result = extract_tarball(tarball, tmp_path / "dest")
    assert (tmp_path / "dest" / "2013.1.00308.S" / folder / "product" / "cube.fits").read_bytes() == \
        bytes(range(256)) * 300
    assert result.bytes == 256 * 300


def test_a_file_short_after_extraction_is_an_error_and_the_tarball_is_kept(tmp_path, real, monkeypatch):
    """The last line of defence: a file whose size on disk differs from its tar header after the copy
    (a filesystem that loses a write silently; no real part here does that on demand, so the copy is
    made to drop the member's last byte)."""
    import os

    from almadeliver.transfer import extract

    products, _ = _delivery(tmp_path, real)
    real_copy = extract._copy

    def lossy_copy(src, dst, offset, size):
        real_copy(src, dst, offset, size)
        if size:
            os.ftruncate(dst, size - 1)
    monkeypatch.setattr(extract, "_copy", lossy_copy)
    with pytest.raises(TransferError, match="has the wrong size after extraction") as err:
        extract_tarball(products, tmp_path / "dest")
    assert "\n" not in str(err.value) and products.exists()


# -- the survivors of the mutation run on transfer/extract.py (scripts/mutation.py) -----------------------
def _one_file(path: Path, name: str, data: bytes, mode: int = 0o644, mtime: int = 1_500_000_000) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo(name.rsplit("/", 1)[0])
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, mtime - 100
        tar.addfile(folder)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, mtime
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("mode, written", [(0o644, 0o644), (0o700, 0o700), (0o755, 0o755), (0o777, 0o755),
                                           (0o641, 0o640), (0o000, 0o600), (0o4755, 0o755)])
def test_modes_keep_the_owner_exec_bit_drop_group_and_other_write_and_special_bits(tmp_path, mode, written):
    """Read-write for the owner always; execute only when the owner could; never setuid, never o+w."""
    tarball = _one_file(tmp_path / "m.tar", "2013.1.00308.S/script/x.py", b"print(1)\n", mode)
    extract_tarball(tarball, tmp_path / "dest")
    assert (tmp_path / "dest" / "2013.1.00308.S/script/x.py").stat().st_mode & 0o7777 == written


def test_files_and_folders_keep_their_mtimes(tmp_path):
    tarball = _one_file(tmp_path / "t.tar", "2013.1.00308.S/product/x.fits", b"SIMPLE", mtime=1_400_000_000)
    extract_tarball(tarball, tmp_path / "dest")
    assert (tmp_path / "dest/2013.1.00308.S/product/x.fits").stat().st_mtime == 1_400_000_000
    assert (tmp_path / "dest/2013.1.00308.S/product").stat().st_mtime == 1_400_000_000 - 100, "set after its files"


def test_a_file_onto_another_filesystem_is_copied_whole(tmp_path):
    """A tmpfs destination: copy_file_range across filesystems answers EXDEV and the copy goes through
    pread/write, in 4 MiB pieces; the bytes must be the same."""
    import os
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        data = os.urandom(9 * 2**20 + 12345)
        tarball = _one_file(tmp_path / "big.tar", "2013.1.00308.S/raw/big.bin", data)
        extract_tarball(tarball, small / "dest")
        assert (small / "dest/2013.1.00308.S/raw/big.bin").read_bytes() == data
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_one_zero_block_is_not_an_end_marker(tmp_path):
    tarball = _one_file(tmp_path / "t.tar", "2013.1.00308.S/README", b"readme\n")
    with tarfile.open(tarball) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + 512
    tarball.write_bytes(tarball.read_bytes()[:end + 512])
    with pytest.raises(TransferError, match="no end-of-archive marker"):
        read_members(tarball)


def test_headers_nested_too_deeply_are_corrupt_not_a_recursion_error(tmp_path):
    """Thousands of GNU long-name headers in a row make tarfile recurse once per header."""
    block = tarfile.TarInfo("././@LongLink")
    block.type, block.size = tarfile.GNUTYPE_LONGNAME, 512
    chain = (block.tobuf(tarfile.GNU_FORMAT) + b"a" * 512) * 5000
    last = tarfile.TarInfo("2013.1.00308.S/README")
    (tmp_path / "deep.tar").write_bytes(chain + last.tobuf(tarfile.GNU_FORMAT) + bytes(1024))
    with pytest.raises(TransferError, match="nested too deeply"):
        read_members(tmp_path / "deep.tar")


@pytest.mark.parametrize("length", [60, 120, 121, 300])
def test_a_long_member_name_is_shortened_in_the_error_keeping_both_ends(tmp_path, length):
    name = "2013.1.00308.S/" + "x" * (length - len("2013.1.00308.S/") - 5) + "/../f"
    assert len(name) == length
    tarball = _hostile(tmp_path / "n.tar", _file(name))
    with pytest.raises(UnsafeTarballError) as err:
        extract_tarball(tarball, tmp_path / "dest")
    shown = name if length <= 120 else name[:60] + "..." + name[-40:]
    assert f"member '{shown}'" in str(err.value)


def test_the_destination_plus_the_longest_member_must_stay_below_path_max(tmp_path):
    """root + '/' + member of exactly PATH_MAX bytes has no room for the NUL: refused; one byte less extracts."""
    import os

    PATH_MAX = os.pathconf(tmp_path, "PC_PATH_MAX")               # the system's, not the module's (4096)

    member = "2013.1.00308.S/README"
    tarball = _one_file(tmp_path / "t.tar", member, b"readme\n")
    base = os.path.realpath(tmp_path)
    for room, refused in ((0, True), (1, False)):
        want = PATH_MAX - 1 - len(member) - room                  # the length of the destination folder
        dest = base + f"/d{room}"
        while len(dest) < want:
            dest += "/" + "p" * min(200, want - len(dest) - 1)
        assert len(dest) == want
        os.makedirs(dest)
        if refused:
            with pytest.raises(TransferError, match="path limit"):
                extract_tarball(tarball, Path(dest), keep=True)
        else:
            extract_tarball(tarball, Path(dest), keep=True)
            assert (Path(dest) / member).read_bytes() == b"readme\n"


def test_a_name_of_1024_bytes_with_a_255_byte_component_extracts_and_one_byte_more_does_not(tmp_path):
    import os

    # the limits as documented (1024 bytes a member path) and as the system has them (NAME_MAX), not
    # imported from the module under test
    MAX_NAME, MAX_COMPONENT = 1024, os.pathconf(tmp_path, "PC_NAME_MAX")
    assert MAX_COMPONENT == 255
    top = "2013.1.00308.S/" + "c" * MAX_COMPONENT + "/"
    name = top + "/".join(["d" * 99] * 7) + "/"
    name += "f" * (MAX_NAME - len(name))
    assert len(name) == MAX_NAME and max(len(p) for p in name.split("/")) == MAX_COMPONENT
    dest = tmp_path / "not" / "yet" / "there"                     # made with its parents
    extract_tarball(_hostile(tmp_path / "ok.tar", _file(name)), dest)
    assert (dest / name).read_bytes() == b"evil"
    with pytest.raises(UnsafeTarballError, match=f"path of {MAX_NAME + 1} bytes"):
        extract_tarball(_hostile(tmp_path / "long.tar", _file(name + "g")), tmp_path / "d2")
    wide = "2013.1.00308.S/" + "c" * (MAX_COMPONENT + 1) + "/f"
    with pytest.raises(UnsafeTarballError, match="longer than 255"):
        extract_tarball(_hostile(tmp_path / "wide.tar", _file(wide)), tmp_path / "d3")


def test_the_damaged_byte_is_named(tmp_path):
    tarball = _one_file(tmp_path / "t.tar", "2013.1.00308.S/README", b"readme\n")
    with tarfile.open(tarball) as tar:
        tar.getmembers()
        stopped = tar.offset
    data = bytearray(tarball.read_bytes())
    data[stopped + 700] = 1                                # inside the end marker
    tarball.write_bytes(bytes(data))
    with pytest.raises(TransferError, match=f"header at byte {stopped} is damaged \\(data at byte {stopped + 700} "):
        read_members(tarball)


def test_a_tarball_of_dot_made_by_gnu_tar_extracts_every_member(tmp_path):
    """``tar -cf x.tar -C folder .`` starts with a './' member (no path component): skipped, not the end."""
    import subprocess

    src = tmp_path / "src" / "2013.1.00308.S" / "product"
    src.mkdir(parents=True)
    (src / "a.fits").write_bytes(b"SIMPLE")
    subprocess.run(["tar", "-cf", str(tmp_path / "x.tar"), "-C", str(tmp_path / "src"), "."], check=True)
    assert read_members(tmp_path / "x.tar")[0].name in (".", "./")
    extract_tarball(tmp_path / "x.tar", tmp_path / "dest")
    assert (tmp_path / "dest/2013.1.00308.S/product/a.fits").read_bytes() == b"SIMPLE"


def test_a_tarball_ending_right_after_its_end_marker_is_complete(tmp_path):
    """The two zero blocks and no record padding (a tar writer with a 1-block record): complete."""
    tarball = _one_file(tmp_path / "t.tar", "2013.1.00308.S/README", b"readme\n")
    with tarfile.open(tarball) as tar:
        tar.getmembers()
        stopped = tar.offset
    tarball.write_bytes(tarball.read_bytes()[:stopped + 1024])
    assert [m.name for m in read_members(tarball)] == ["2013.1.00308.S", "2013.1.00308.S/README"]
    extract_tarball(tarball, tmp_path / "dest")
    assert (tmp_path / "dest/2013.1.00308.S/README").read_bytes() == b"readme\n"


def test_a_path_64_folders_deep_extracts_and_65_does_not(tmp_path):
    name = "/".join(["d"] * 63) + "/f"
    assert len(name.split("/")) == 64
    extract_tarball(_hostile(tmp_path / "ok.tar", _file(name)), tmp_path / "dest")
    assert (tmp_path / "dest" / name).read_bytes() == b"evil"
    with pytest.raises(UnsafeTarballError, match="is 65 folders deep"):
        extract_tarball(_hostile(tmp_path / "deep.tar", _file("d/" + name)), tmp_path / "d2")


@pytest.mark.parametrize("kind, what", [(tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hard link")])
def test_a_refused_links_target_is_named_up_to_80_characters(tmp_path, kind, what):
    target = "../" * 26 + "XY" + "z" * 100              # 78 characters, then X (the 80th is Y)
    with pytest.raises(UnsafeTarballError) as err:
        extract_tarball(_hostile(tmp_path / "l.tar", _link("2013.1.00308.S/l", target, kind)), tmp_path / "dest")
    assert f"is a {what} (to '{target[:80]}')" in str(err.value) and target[:80].endswith("XY")


def test_folders_are_made_rwx_for_the_owner_rx_for_others(tmp_path):
    """Folders the tarball names and those it only implies: 0755 under the usual umask 022."""
    import os

    old = os.umask(0o022)
    try:
        extract_tarball(_hostile(tmp_path / "f.tar", _file("2013.1.00308.S/product/x.fits")), tmp_path / "dest")
        extract_tarball(_one_file(tmp_path / "g.tar", "2013.1.00308.S/script/x.py", b"1\n"), tmp_path / "dest")
    finally:
        os.umask(old)
    for folder in ("2013.1.00308.S", "2013.1.00308.S/product", "2013.1.00308.S/script"):
        assert (tmp_path / "dest" / folder).stat().st_mode & 0o7777 == 0o755, folder


def test_a_file_larger_than_one_copy_call_is_copied_whole(tmp_path):
    """Past 64 MiB the kernel copy takes several calls, each from where the last stopped (ALMA ASDM
    binaries and FITS cubes are often larger)."""
    import hashlib
    import os

    data = os.urandom((1 << 26) + 3 * 4096 + 7)
    tarball = _one_file(tmp_path / "big.tar", "2013.1.00308.S/raw/big.bin", data)
    extract_tarball(tarball, tmp_path / "dest")
    got = (tmp_path / "dest/2013.1.00308.S/raw/big.bin").read_bytes()
    assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
