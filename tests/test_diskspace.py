import os
import subprocess

from almadeliver.casa.diskspace import MB, DiskSampler, du_mb, estimate, free_mb


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
