import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from almadeliver.casa.diskspace import (MB, DiskEstimate, DiskSampler, disk_use_figure, du_bytes, du_mb, estimate,
                                        free_mb, plot_disk_use)
from processes import run_as_nobody


def _member(tmp_path, raw_bytes, extra=False):
    member = tmp_path / "member.uid___A001_X1_X2"
    (member / "raw" / "uid___A002_X1_X3.asdm.sdm").mkdir(parents=True)
    (member / "script").mkdir()
    with open(member / "raw" / "uid___A002_X1_X3.asdm.sdm" / "ASDM.xml", "wb") as fh:
        fh.write(os.urandom(raw_bytes))
    (member / "script" / "scriptForPI.py").write_text("")
    if extra:
        (member / "script" / "scriptForFluxCalibration.py").write_text("")
    return member


def test_levels_follow_scriptforpi(tmp_path):
    est = estimate(_member(tmp_path, 3 * MB))
    assert est.raw_mb == du_mb(tmp_path / "member.uid___A001_X1_X2" / "raw") >= 3
    assert est.needs == {0: 11 * est.raw_mb, 1: 7 * est.raw_mb, 2: 3 * est.raw_mb, 3: 3 * est.raw_mb}
    assert est.fits(-1) and est.need_mb(-1) == 0
    assert est.best_level() == 0 and est.free_mb > 0


def test_flux_script_adds_three_times_raw(tmp_path):
    est = estimate(_member(tmp_path, MB, extra=True))
    assert est.extra_scripts == ("scriptForFluxCalibration.py",)
    assert est.need_mb(1) == 10 * est.raw_mb


def test_sampler_sees_the_peak(tmp_path):
    work = tmp_path / "calibrated"
    work.mkdir()
    with DiskSampler(work, interval=0.01) as sampler:
        (work / "big").write_bytes(os.urandom(2 * MB))
        sampler.sample()
        (work / "big").unlink()
    assert sampler.peak >= 2 * MB and sampler.last < MB


def _du_sm(path) -> int:
    return int(subprocess.run(["du", "-sm", f"{path}/"], capture_output=True, text=True, check=True).stdout.split()[0])


def test_raw_is_measured_as_scriptforpi_does(tmp_path):
    """ALMA's scriptForPI runs `du -smc $PWD` and `df -P -m $PWD` inside raw/: MB rounded up,
    the folder itself counted, a hard-linked file once, a linked raw/ followed."""
    member = _member(tmp_path, MB - 4096)          # just under 1 MB of data: the folders tip it over
    asdm = member / "raw" / "uid___A002_X1_X3.asdm.sdm"
    os.link(asdm / "ASDM.xml", asdm / "ASDM.link")
    assert du_mb(member / "raw") == _du_sm(member / "raw")
    elsewhere = tmp_path / "bigdisk" / "raw"
    elsewhere.parent.mkdir()
    (member / "raw").rename(elsewhere)
    (member / "raw").symlink_to(elsewhere)
    est = estimate(member)
    assert est.raw_mb == _du_sm(member / "raw") == du_mb(elsewhere)
    df = subprocess.run(["df", "-P", "-m", str(elsewhere)], capture_output=True, text=True, check=True)
    assert abs(free_mb(elsewhere) - int(df.stdout.splitlines()[-1].split()[3])) <= 2
    assert abs(est.free_mb - min(free_mb(member), free_mb(elsewhere))) <= 2   # other writers move free space


def test_exactly_enough_space_fits_and_one_mb_less_does_not():
    """scriptForPI refuses only when the need passes the free space: need == free runs."""
    from almadeliver.casa.diskspace import DiskEstimate

    est = DiskEstimate(raw_mb=10, free_mb=30, extra_scripts=(), target="/x")   # level 2 and 3 need 3 x 10
    assert est.fits(2) and est.fits(3) and not est.fits(1) and est.shortfall_mb(2) == 0
    assert est.best_level() == 2
    short = DiskEstimate(raw_mb=10, free_mb=29, extra_scripts=(), target="/x")
    assert not short.fits(3) and short.shortfall_mb(3) == 1 and short.best_level() is None
    assert short.fits(-1)                       # SPACESAVING=-1 skips the check
    roomy = DiskEstimate(raw_mb=10, free_mb=31, extra_scripts=(), target="/x")
    assert roomy.shortfall_mb(2) == 0 and roomy.shortfall_mb(1) == 39


def test_a_prefixed_flux_script_adds_three_times_raw(tmp_path):
    """Pipeline-era names carry the member prefix: member.<MOUS>.scriptForFluxCalibration.py counts too."""
    member = _member(tmp_path, MB)
    (member / "script" / "member.uid___A001_X1_X2.scriptForFluxCalibration.py").write_text("")
    est = estimate(member)
    assert est.extra_scripts == ("scriptForFluxCalibration.py",) and est.need_mb(1) == 10 * est.raw_mb


def test_unreadable_folders_in_raw_are_skipped_as_du_skips_them(tmp_path):
    """du -s reports what it can read; so does du_bytes, byte for byte (both run as another user than the
    tree's owner), whichever order the locked and readable folders are walked in."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="almadeliver-du-"))
    try:
        top.chmod(0o755)
        for i in range(4):
            (top / "raw" / f"locked{i}").mkdir(parents=True)
            (top / "raw" / f"locked{i}" / "hidden").write_bytes(os.urandom(MB))
            (top / "raw" / f"open{i}").mkdir()
            (top / "raw" / f"open{i}" / "data").write_bytes(os.urandom(300_000))
            (top / "raw" / f"locked{i}").chmod(0)

        def measure() -> list[int]:                # du_bytes and du -s, both run as nobody
            du = subprocess.run(["du", "-s", "-B1", str(top / "raw")], capture_output=True, text=True)
            return [du_bytes(top / "raw"), int(du.stdout.split()[0])]

        ours, theirs = run_as_nobody(measure)
        assert ours == theirs and 4 * 300_000 <= ours < 4 * MB     # the readable data counted, the locked not
    finally:
        for i in range(4):
            (top / "raw" / f"locked{i}").chmod(0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_du_bytes_equals_du_byte_for_byte_with_hard_links_among_other_files(tmp_path):
    """Allocated bytes exactly as `du -s -B1` counts them: each hard-linked file once, every other file of
    the folder still counted whichever order the folder lists them in."""
    raw = tmp_path / "raw"
    for d in range(5):
        folder = raw / f"uid___A002_X1_X{d}.asdm.sdm"
        folder.mkdir(parents=True)
        (folder / "a.bin").write_bytes(os.urandom(100_000))
        os.link(folder / "a.bin", folder / "b.bin")
        for name in ("c.xml", "d.xml", "e.xml", "f.xml"):
            (folder / name).write_bytes(os.urandom(20_000))
    (tmp_path / "elsewhere.bin").write_bytes(os.urandom(MB))
    (raw / "link.bin").symlink_to(tmp_path / "elsewhere.bin")      # a link is counted, not what it points to
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "big.bin").write_bytes(os.urandom(MB))
    (raw / "linked.asdm.sdm").symlink_to(tmp_path / "elsewhere")    # a linked folder inside raw/ is not walked
    du = subprocess.run(["du", "-s", "-B1", str(raw)], capture_output=True, text=True, check=True)
    assert du_bytes(raw) == int(du.stdout.split()[0])


def test_acrenorm_caps_spacesaving_at_1(tmp_path):
    """scriptForPI v2.x applies at most SPACESAVING=1 to ACreNorm data: levels 2 and 3 need what 1 needs."""
    from almadeliver.casa.diskspace import DiskEstimate

    est = DiskEstimate(raw_mb=10, free_mb=1000, extra_scripts=(), target="/x", acrenorm=True)
    assert [est.effective_level(level) for level in (-1, 0, 1, 2, 3)] == [-1, 0, 1, 1, 1]
    assert est.needs == {0: 110, 1: 70, 2: 70, 3: 70}
    member = _member(tmp_path, MB)
    (member / "script" / "uid___A002_X1_X3.ms.scriptForCalibration.py").write_text(
        "# ACreNorm is not used here\nes.ACreNorm(vis='x.ms')\n")
    assert estimate(member).acrenorm
    (member / "script" / "uid___A002_X1_X3.ms.scriptForCalibration.py").write_text("# ACreNorm in a comment only\n")
    assert not estimate(member).acrenorm


def test_free_space_is_taken_where_calibrated_goes_when_raw_shares_its_disk(tmp_path):
    member = _member(tmp_path, MB)
    est = estimate(member)
    assert est.target == str(member)            # raw/ on the same filesystem: the member folder is named


def test_du_of_a_missing_folder_is_zero_and_megabytes_round_up_like_du(tmp_path):
    assert du_bytes(tmp_path / "nothing") == 0 and du_mb(tmp_path / "nothing") == 0
    one = tmp_path / "one"
    one.write_bytes(os.urandom(MB))                 # exactly 1 MiB allocated: 1, not 2
    du = subprocess.run(["du", "-sm", str(one)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert du_bytes(one) == MB and du_mb(one) == int(du) == 1
    assert isinstance(free_mb(tmp_path), int)       # df -m: whole megabytes


def test_the_sampler_samples_in_the_background(tmp_path):
    work = tmp_path / "calibrated"
    work.mkdir()
    with DiskSampler(work, interval=0.01) as sampler:
        (work / "big").write_bytes(os.urandom(2 * MB))
        for _ in range(3000):                       # no sample() here: the sampler's thread must see it
            if sampler.peak >= 2 * MB:
                break
            threading.Event().wait(0.01)
        assert sampler.peak >= 2 * MB, "the background thread never sampled"


def test_raw_on_a_fuller_disk_sets_the_free_space(tmp_path):
    """raw/ linked to another filesystem with less room: scriptForPI checks there (df in raw/)."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        assert free_mb(small) == 8                  # an empty 8 MiB tmpfs: exactly 8, not 9
        member = _member(tmp_path, MB)
        shutil.move(str(member / "raw"), str(small / "raw"))
        (member / "raw").symlink_to(small / "raw")
        est = estimate(member)
        assert est.target == str((small / "raw").resolve()) and 5 <= est.free_mb <= 8
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_member_on_a_fuller_disk_than_its_raw_keeps_its_own_free_space(tmp_path):
    """calibrated/ is written in the member: when raw/ (linked elsewhere) has more room, the member's counts."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        member = _member(small, MB)
        shutil.move(str(member / "raw"), str(tmp_path / "raw"))
        (member / "raw").symlink_to(tmp_path / "raw")
        est = estimate(member)
        assert est.target == str(member) and est.free_mb <= 8
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_the_sampler_keeps_the_disk_use_over_time_and_the_plot_draws_it_against_each_level(tmp_path):
    """restore-disk.png: the samples are (seconds since the first, bytes), in time order, and the
    plot is a PNG of the figure size with the measured curve and one line per SPACESAVING level."""
    from matplotlib.image import imread

    folder = tmp_path / "calibrated"
    folder.mkdir()
    with DiskSampler(folder, interval=0.02) as sampler:
        for i in range(3):
            (folder / f"f{i}").write_bytes(b"x" * (1 << 20))
            threading.Event().wait(0.1)
    times = [t for t, _ in sampler.samples]
    assert times[0] == 0.0 and times == sorted(times) and len(times) >= 4
    assert sampler.samples[-1][1] == sampler.last >= 3 * (1 << 20) > sampler.samples[0][1]
    png = plot_disk_use(sampler.samples, DiskEstimate(raw_mb=1, free_mb=100, extra_scripts=(), target=str(tmp_path)), 2, tmp_path / "restore-disk.png")
    image = imread(png)
    assert image.shape[:2] == (400, 700)
    assert (image[..., :3].std(axis=(0, 1)) > 0).all()     # something is drawn, in colour


def test_the_disk_plot_draws_minutes_mb_and_the_level_run_solid(tmp_path):
    """What restore-disk.png shows, read back from the figure: the measured curve in minutes and MiB,
    one line per level at its estimate (the level run solid and thicker), the free space in red."""
    est = estimate(_member(tmp_path, MB))
    ax = disk_use_figure([(0.0, 0), (60.0, 2 * MB), (150.0, 5 * MB)], est, 1).axes[0]
    measured, *levels, free = ax.lines
    assert list(measured.get_xdata()) == [0.0, 1.0, 2.5] and list(measured.get_ydata()) == [0.0, 2.0, 5.0]
    assert [(line.get_ydata()[0], line.get_linestyle(), line.get_linewidth(), line.get_color()) for line in levels] \
        == [(est.need_mb(0), "--", 0.8, "C0"), (est.need_mb(1), "-", 1.5, "C1"), (est.need_mb(2), "--", 0.8, "C2"),
            (est.need_mb(3), "--", 0.8, "C3")]
    assert (free.get_ydata()[0], free.get_color(), free.get_linestyle()) == (est.free_mb, "red", ":")
    empty = disk_use_figure([], est, 0).axes[0].lines[0]
    assert list(empty.get_xdata()) == [0.0] and list(empty.get_ydata()) == [0.0]
