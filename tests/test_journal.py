"""The download journal (transfer/journal.py) on its own: what a resumed run believes is on disk.

A wrong journal costs data: a file marked done that is not is never fetched; ranges kept for a file whose
size changed splice old bytes into a new file. The full-disk cases use a real small tmpfs.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from almadeliver.transfer.journal import DOWNLOADED, EXTRACTED, PARTIAL, FileEntry, FileState, Journal

MIB = 1 << 20


def _journal_file(dest: Path) -> dict:
    return json.loads((dest / ".almadeliver" / "journal.json").read_text())


def test_a_new_file_has_an_empty_partial_entry_and_a_known_one_keeps_its_ranges(tmp_path):
    j = Journal(tmp_path)
    e = j.entry("a.tar", 100)
    assert (e.size, e.state, e.segments, e.preallocated, e.fetched()) == (100, PARTIAL, [], False, 0)
    e.segments = [[0, 50, 20], [50, 100, 100]]
    assert j.entry("a.tar", 100) is e and e.fetched() == 70


def test_a_size_change_means_a_different_file_its_ranges_are_forgotten(tmp_path):
    """The archive re-generated a tarball: its old ranges must not be spliced into the new one."""
    j = Journal(tmp_path)
    j.entry("a.tar", 100).segments = [[0, 100, 60]]
    j.set_state("a.tar", 100, PARTIAL)
    e = j.entry("a.tar", 101)
    assert (e.size, e.segments, e.fetched()) == (101, [], 0)
    assert j.state("a.tar", 100) is None and j.state("a.tar", 101) == PARTIAL


def test_state_is_none_for_an_unknown_file_or_another_size(tmp_path):
    j = Journal(tmp_path)
    assert j.state("a.tar", 5) is None
    j.set_state("a.tar", 5, DOWNLOADED)
    assert j.state("a.tar", 5) == DOWNLOADED
    assert j.state("a.tar", 4) is None and j.state("a.tar", 6) is None
    assert j.state("b.tar", 5) is None


def test_a_finished_file_forgets_its_ranges_a_partial_one_keeps_them(tmp_path):
    j = Journal(tmp_path)
    e = j.entry("a.tar", 10)
    e.segments, e.preallocated = [[0, 10, 4]], True
    j.set_state("a.tar", 10, PARTIAL)
    assert (e.segments, e.preallocated) == ([[0, 10, 4]], True)
    assert _journal_file(tmp_path)["files"]["a.tar"] == {"size": 10, "state": "partial",
                                                         "segments": [[0, 10, 4]], "preallocated": True}
    j.set_state("a.tar", 10, DOWNLOADED)
    assert (e.state, e.segments, e.preallocated) == (DOWNLOADED, [], False)
    assert _journal_file(tmp_path)["files"]["a.tar"] == {"size": 10, "state": "downloaded",
                                                         "segments": [], "preallocated": False}


def test_set_state_of_an_unknown_file_or_a_new_size_records_that_size(tmp_path):
    j = Journal(tmp_path)
    j.set_state("a.tar", 7, EXTRACTED)
    j.set_state("a.tar", 8, DOWNLOADED)
    again = Journal(tmp_path)
    assert (again.files["a.tar"].size, again.state("a.tar", 8), again.state("a.tar", 7)) == (8, DOWNLOADED, None)


def test_a_reloaded_journal_has_states_not_strings_and_the_same_ranges(tmp_path):
    j = Journal(tmp_path)
    j.entry("a.tar", 10).segments = [[0, 5, 3], [5, 10, 10]]
    j.entry("a.tar", 10).preallocated = True
    j.set_state("b.tar", 7, EXTRACTED)
    assert j.save() is True
    again = Journal(tmp_path)
    a, b = again.files["a.tar"], again.files["b.tar"]
    assert isinstance(b.state, FileState) and b.state is EXTRACTED and str(b.state) == "extracted"
    assert (a.state, a.segments, a.preallocated, a.fetched()) == (PARTIAL, [[0, 5, 3], [5, 10, 10]], True, 8)
    assert [p.name for p in (tmp_path / ".almadeliver").iterdir()] == ["journal.json"]


def test_a_journal_of_another_schema_is_not_trusted(tmp_path):
    """A journal written by another (older or newer) layout: start afresh rather than misread it."""
    folder = tmp_path / ".almadeliver"
    folder.mkdir()
    (folder / "journal.json").write_text(json.dumps({"schema": "almadeliver.journal/0", "files": {
        "a.tar": {"size": 5, "state": "downloaded", "segments": [], "preallocated": False}}}))
    assert Journal(tmp_path).files == {} and Journal(tmp_path).state("a.tar", 5) is None
    (folder / "journal.json").write_text(json.dumps({"schema": "almadeliver.journal/2", "files": {
        "a.tar": {"size": 5, "state": "downloaded", "segments": [], "preallocated": False}}}))
    assert Journal(tmp_path).files == {}, "nor a newer one"


def test_fetched_counts_each_ranges_progress_from_its_start():
    assert FileEntry(size=30, segments=[[0, 10, 10], [10, 20, 15], [20, 30, 20]]).fetched() == 15


def test_the_reserve_is_one_mib_made_once_and_kept(tmp_path):
    j = Journal(tmp_path)
    j.reserve()
    reserve = tmp_path / ".almadeliver" / "journal.reserve"
    st = reserve.stat()
    assert st.st_size == MIB and st.st_blocks * 512 >= MIB, "allocated, not a sparse file"
    reserve.write_bytes(b"x")                  # a second call leaves an existing reserve alone
    j.reserve()
    assert reserve.read_bytes() == b"x"


def test_an_error_other_than_a_full_disk_is_raised_not_swallowed(tmp_path):
    (tmp_path / ".almadeliver").write_text("not a folder")
    j = Journal(tmp_path)
    j.entry("a.tar", 1)
    with pytest.raises(OSError) as err:
        j.save()
    assert err.value.errno not in (errno.ENOSPC, errno.EDQUOT)


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs (root only)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    """Write until the filesystem is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_on_a_full_disk_the_reserve_is_given_up_so_progress_is_still_recorded(small_disk):
    j = Journal(small_disk)
    j.reserve()
    assert (small_disk / ".almadeliver" / "journal.reserve").stat().st_size == MIB
    _fill(small_disk)
    j.entry("a.tar", 10).segments = [[0, 10, 6]]
    assert j.save() is True
    assert not (small_disk / ".almadeliver" / "journal.reserve").exists()
    assert Journal(small_disk).files["a.tar"].fetched() == 6


def test_on_a_full_disk_without_a_reserve_save_says_so_and_keeps_the_old_journal(small_disk):
    j = Journal(small_disk)
    j.set_state("a.tar", 10, DOWNLOADED)
    _fill(small_disk)
    j.set_state("b.tar", 10, DOWNLOADED)       # its save fails quietly: the download loop sees save()'s False
    assert j.save() is False
    assert Journal(small_disk).state("a.tar", 10) == DOWNLOADED and Journal(small_disk).state("b.tar", 10) is None
    assert sorted(p.name for p in (small_disk / ".almadeliver").iterdir()) == ["journal.json"], "no .tmp left"


def test_a_reserve_on_a_disk_too_full_for_it_is_not_left_half_made(small_disk):
    _fill(small_disk)
    os.truncate(small_disk / "filler", os.path.getsize(small_disk / "filler") - 256 * 1024)   # room, but < 1 MiB
    j = Journal(small_disk)
    j.reserve()
    assert not (small_disk / ".almadeliver" / "journal.reserve").exists()
    j.entry("a.tar", 3)
    assert j.save() is True


def test_the_reserve_and_the_journal_are_made_with_a_destination_not_yet_there(tmp_path):
    dest = tmp_path / "not" / "yet"
    Journal(dest).reserve()
    assert (dest / ".almadeliver" / "journal.reserve").stat().st_size == MIB
    j = Journal(tmp_path / "other" / "dest")
    j.entry("a.tar", 1)
    assert j.save() is True and (tmp_path / "other" / "dest" / ".almadeliver" / "journal.json").is_file()


def test_a_file_that_shrank_is_a_different_file_too(tmp_path):
    j = Journal(tmp_path)
    j.entry("a.tar", 100).segments = [[0, 100, 60]]
    e = j.entry("a.tar", 99)
    assert (e.size, e.segments) == (99, [])


def test_sizes_of_many_gib_are_compared_by_value(tmp_path):
    """Sizes read back from JSON are new int objects: a 5 GB tarball's state survives a reload."""
    size = 5_000_000_000
    Journal(tmp_path).set_state("big.tar", size, DOWNLOADED)
    again = Journal(tmp_path)
    assert again.state("big.tar", int(str(size))) == DOWNLOADED
    assert again.entry("big.tar", int(str(size))).state == DOWNLOADED


def test_the_reserve_is_made_in_a_journal_folder_that_exists(tmp_path):
    j = Journal(tmp_path)
    j.entry("a.tar", 1)
    j.save()
    j.reserve()
    assert (tmp_path / ".almadeliver" / "journal.reserve").stat().st_size == MIB


def test_no_inode_left_for_the_reserve_is_no_error(tmp_path):
    """A filesystem out of inodes (not of bytes): the reserve cannot even be created; reserve() says nothing."""
    mnt = tmp_path / "few"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=6", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (mnt / ".almadeliver").mkdir()
        with pytest.raises(OSError) as full:
            for i in range(100):
                (mnt / f"f{i}").write_bytes(b"")
        assert full.value.errno == errno.ENOSPC
        Journal(mnt).reserve()
        assert not (mnt / ".almadeliver" / "journal.reserve").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
