import hashlib
import tarfile

from almadeliver.packaging.tarballs import FIXED_MTIME, tree_entries, write_tar


def _tree(root):
    (root / "member" / "script").mkdir(parents=True)
    (root / "member" / "script" / "scriptForPI.py").write_text("print('hi')\n")
    (root / "member" / "README").write_text("readme\n")
    (root / "member" / "script" / "scriptForPI.py").chmod(0o700)


def test_same_input_same_bytes(tmp_path):
    _tree(tmp_path / "a")
    one = write_tar(tmp_path / "one.tar", tree_entries(tmp_path / "a" / "member", "p/sg/g/member"))
    (tmp_path / "a" / "member" / "README").touch()  # a new mtime must not change the bytes
    two = write_tar(tmp_path / "two.tar", reversed(tree_entries(tmp_path / "a" / "member", "p/sg/g/member")))
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    with tarfile.open(one) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[:3] == ["p", "p/sg", "p/sg/g"]
    assert all(m.mtime == FIXED_MTIME and m.uid == 0 for m in members)
    script = next(m for m in members if m.name.endswith("scriptForPI.py"))
    assert script.mode == 0o755
    assert not (tmp_path / "one.tar.part").exists()


# -- sizes, parts, gzip: what the staff packaging relies on (tests/test_package.py runs them in CASA) ------
import gzip  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from almadeliver.errors import PackagingError  # noqa: E402
from almadeliver.transfer.extract import read_members  # noqa: E402
from almadeliver.packaging.tarballs import (plan_parts, tar_size, write_parts, write_tar_record,  # noqa: E402
                                            write_tgz)

RECORD = tarfile.RECORDSIZE


def _sizes_tree(root):
    """Files on and around the 512-byte block edges, an executable, an empty file and a symlink."""
    for rel, size in [("a/empty", 0), ("a/one", 1), ("a/block", 512), ("a/b/over", 513), ("a/b/c/big", 70_000),
                      ("z/last", 1023)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(size))
    (root / "a" / "b" / "run.sh").write_text("#!/bin/sh\n")
    (root / "a" / "b" / "run.sh").chmod(0o755)
    (root / "z" / "link").symlink_to("../a/one")
    return tree_entries(root, "p/member")


def test_tar_size_is_the_written_size_and_gnu_tar_reads_what_was_written(tmp_path):
    entries = _sizes_tree(tmp_path / "tree")
    record = write_tar_record(tmp_path / "t.tar", entries)
    data = (tmp_path / "t.tar").read_bytes()
    assert tar_size(entries) == record.size == len(data) and len(data) % RECORD == 0
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    files = {arc: p.stat().st_size for arc, p in entries if p.is_file() and not p.is_symlink()}
    assert {m.path: m.size for m in record.members} == files
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "t.tar")], capture_output=True, text=True, check=True)
    lines = {(line.split()[-1] if "->" not in line else line.split()[-3]).rstrip("/"): line
             for line in listing.stdout.splitlines()}
    assert lines["p/member/z/link"].startswith("lrwxrwxrwx") and lines["p/member/z/link"].endswith("-> ../a/one")
    assert lines["p/member/a/b/run.sh"].startswith("-rwxr-xr-x")
    assert lines["p/member/a/one"].startswith("-rw-r--r--") and lines["p/member/a/b"].startswith("drwxr-xr-x")
    assert lines["p"].startswith("drwxr-xr-x"), "a parent folder added without a source"
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "t.tar"), "-C", str(out)], check=True)
    for arc, size in files.items():
        assert (out / arc).read_bytes() == (tmp_path / "tree" / arc.removeprefix("p/member/")).read_bytes()


def test_tree_entries_name_the_root_by_its_folder_without_a_prefix(tmp_path):
    _tree(tmp_path)
    assert sorted(a for a, _ in tree_entries(tmp_path / "member")) == [
        "member", "member/README", "member/script", "member/script/scriptForPI.py"]
    assert sorted(a for a, _ in tree_entries(tmp_path / "member", "x/y/")) == [
        "x/y", "x/y/README", "x/y/script", "x/y/script/scriptForPI.py"]


@pytest.mark.parametrize("max_size", [4 * RECORD, 6 * RECORD, 9 * RECORD])
def test_parts_fit_unpack_alone_and_are_as_full_as_they_can_be(tmp_path, max_size):
    entries = _sizes_tree(tmp_path / "tree")
    parts = plan_parts(entries, max_size)
    records = write_parts(lambda m, n: tmp_path / f"x_{m:03d}_of_{n:03d}.tar", entries, max_size)
    assert [r.path.name for r in records] == [f"x_{m:03d}_of_{len(parts):03d}.tar" for m in range(1, len(parts) + 1)]
    every = [e for part in parts for e in part]
    assert every == sorted(dict(entries).items()), "each entry once, in order"
    for part, record, nxt in zip(parts, records, parts[1:] + [None]):
        assert record.size == tar_size(part) == record.path.stat().st_size
        assert record.oversized == (record.size > max_size)
        if record.oversized:
            assert len([e for e in part if e[1] is not None and e[1].is_file()]) == 1, "a large file goes alone"
        if nxt is not None:
            assert tar_size(part + nxt[:1]) > max_size, "the next entry would have fitted"
        members = read_members(record.path)           # the download side's check: end marker, padding
        names = [m.name for m in members]
        last = max(m.offset_data + (-(-m.size // 512) * 512 if m.isreg() else 0) for m in members)
        assert record.size - last >= 1024, "two zero blocks end the archive"
        for name in names:                       # each part carries its own parent folders
            assert all("/".join(name.split("/")[:i]) in names for i in range(1, name.count("/") + 1))
    assert any(r.oversized for r in records) == (max_size < 70_000 + 3 * 512)


def test_a_part_size_below_four_records_is_refused(tmp_path):
    with pytest.raises(PackagingError, match=f"use at least {4 * RECORD} bytes"):
        plan_parts(_sizes_tree(tmp_path / "tree"), 4 * RECORD - 1)
    assert len(plan_parts(_sizes_tree(tmp_path / "tree2"), 4 * RECORD)) > 1


def test_tgz_is_deterministic_and_holds_the_tar(tmp_path):
    entries = _sizes_tree(tmp_path / "tree")
    one = write_tgz(tmp_path / "one.tgz", entries)
    (tmp_path / "tree" / "a" / "one").touch()
    two = write_tgz(tmp_path / "two.tgz", list(reversed(entries)))
    assert one.read_bytes() == two.read_bytes() and not (tmp_path / "one.tgz.part").exists()
    head = one.read_bytes()[:10]
    assert head[3] & 0x08 == 0 and head[4:8] == b"\0\0\0\0", "no file name, mtime 0 in the gzip header"
    assert gzip.decompress(one.read_bytes()) == write_tar(tmp_path / "t.tar", entries).read_bytes()


def test_a_fifo_is_refused_and_no_part_is_left(tmp_path):
    entries = _sizes_tree(tmp_path / "tree")
    os.mkfifo(tmp_path / "tree" / "a" / "pipe")
    with pytest.raises(PackagingError, match="only files, folders and symlinks"):
        write_tar(tmp_path / "t.tar", tree_entries(tmp_path / "tree", "p/member"))
    assert not (tmp_path / "t.tar").exists() and not (tmp_path / "t.tar.part").exists()
    assert write_tar(tmp_path / "t.tar", entries).exists()


def test_members_carry_2020_01_01_utc_as_their_time(tmp_path):
    """The fixed time from the calendar, not from the module under test."""
    from datetime import datetime, timezone

    _tree(tmp_path / "a")
    tarball = write_tar(tmp_path / "t.tar", tree_entries(tmp_path / "a" / "member", "member"))
    with tarfile.open(tarball) as tar:
        times = {m.mtime for m in tar.getmembers()}
    assert times == {int(datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp())}


def test_a_tarball_of_exactly_one_record_is_sized_exactly(tmp_path):
    """A folder header, a file header and 8192 bytes of data, then the end marker: 10240 bytes, one record
    with no padding (an extra byte counted anywhere would add a whole record)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(os.urandom(8192))
    entries = tree_entries(tmp_path / "a", "a")
    record = write_tar_record(tmp_path / "t.tar", entries)
    assert tar_size(entries) == record.size == (tmp_path / "t.tar").stat().st_size == RECORD
    (part,) = plan_parts(entries, 4 * RECORD)
    assert part == sorted(entries)


def test_parts_are_as_full_as_they_can_be_at_every_part_size(tmp_path):
    """Every part size from 4 records up in steps of a record (the sizes a tarball can have, so parts land
    exactly on their limit):
    each part fits, and the next part's first entry would not have fitted into it."""
    entries = _sizes_tree(tmp_path / "tree")
    for name in ("a/b/c/d/deep", "b/x", "b/y", "c/z"):              # folders opened anew, different depths
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_bytes(os.urandom(3000 + 700 * len(name)))
    entries = tree_entries(tmp_path / "tree", "p/member")
    exact = 0
    for max_size in range(4 * RECORD, tar_size(entries) + RECORD, RECORD):   # every size a tarball can have
        parts = plan_parts(entries, max_size)
        for part, nxt in zip(parts, parts[1:] + [None]):
            size = tar_size(part)
            files = [e for e in part if e[1] is not None and e[1].is_file()]
            assert size <= max_size or len(files) == 1, (max_size, part)
            exact += size == max_size
            if nxt is not None:
                assert tar_size(part + nxt[:1]) > max_size, (max_size, part, nxt[0])
    assert exact > 0, "some part lands exactly on its limit"


def test_a_part_exactly_at_its_limit_is_not_oversized(tmp_path):
    entries = _sizes_tree(tmp_path / "tree")
    size = tar_size(entries)
    (record,) = write_parts(lambda m, n: tmp_path / f"x_{m}_of_{n}.tar", entries, size)
    assert record.size == size and record.oversized is False


def test_the_size_of_a_tarball_of_many_folders_counts_each_folder_header_exactly(tmp_path):
    """520 folders (a header each, no data) and one file of 9216 bytes: the archive's body plus end
    marker is 27 records and one block, so the tarball takes 28 records; a count off by even one byte
    per folder would land on 27."""
    root = tmp_path / "t"
    for i in range(519):
        (root / f"d{i:03d}").mkdir(parents=True)
    (root / "f").write_bytes(os.urandom(9216))
    entries = tree_entries(root, "t")
    assert sum(1 for _, p in entries if p.is_dir()) == 520
    body = 512 * len(entries) + 9216
    assert body + 1024 == 27 * RECORD + 512
    record = write_tar_record(tmp_path / "t.tar", entries)
    assert tar_size(entries) == record.size == (tmp_path / "t.tar").stat().st_size == 28 * RECORD
