"""restore with real CASA on simulated manual deliveries (1 and 2 EBs), network unreachable."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from almadeliver.casa.diskspace import MB, estimate
from almadeliver.casa.restore import phase_scatter, plan_restore, restore
from almadeliver.delivery.layout import find_members
from almadeliver.errors import CasaError, CasaNotFoundError, TreeError

pytestmark = pytest.mark.slow
PHASE_TOLERANCE_DEG = 5.0      # calibrated phase rms on the phase calibrator (uncalibrated: ~90 deg)
CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture(scope="module")
def delivered(simulated, unpack):
    """``delivered(ebs, dest, size="small")``: a simulated manual project (cached) untarred into dest;
    the member folder."""
    def get(ebs: int, dest: Path, size: str = "small") -> Path:
        [member] = find_members(unpack(simulated(f"2019.1.0001{ebs}.S", ebs=ebs, size=size), dest))
        return member.path
    return get


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*"))


def _cli(args: list[str], cwd: Path, offline: bool = False, prefix: list[str] | None = None):
    env = dict(os.environ)
    if offline:
        env.update(http_proxy=CLOSED, https_proxy=CLOSED, HTTP_PROXY=CLOSED, HTTPS_PROXY=CLOSED, ALL_PROXY=CLOSED)
    return subprocess.run((prefix or []) + [sys.executable, "-m", "almadeliver", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _no_network() -> list[str]:
    ok = shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0
    return ["unshare", "-n"] if ok else []


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture(scope="module")
def one_eb_level0(delivered, tmp_path_factory):
    """One EB restored at SPACESAVING 0 by the CLI with the network unreachable. The EB is of the
    "medium" size (raw/ about 19 MB) so that the raw data outweighs CASA's fixed table footprint."""
    member = delivered(1, tmp_path_factory.mktemp("one"), size="medium")
    raw_before = _listing(member / "raw")
    r = _cli(["restore", str(member), "--spacesaving", "0", "--casa-version-mismatch", "allow"], member, offline=True,
             prefix=_no_network())
    return member, raw_before, r


def test_one_eb_restored_offline(one_eb_level0):
    member, raw_before, r = one_eb_level0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "step 18 Split out corrected column" in r.stdout           # progress: EB and step
    assert "step 1 Fix of SYSCAL table times" in r.stdout and "step 13 " not in r.stdout   # applyonly
    assert re.search(r"CASA: ran modular CASA 6\.7\.\d+-\d+; the calibration scripts asked for CASA 6\.5\.4 "
                     r"\(version mismatch allowed by --casa-version-mismatch allow\)", r.stdout), r.stdout
    [eb] = [p.name[:-len(".asdm.sdm")] for p in (member / "raw").iterdir()]
    cal = member / "calibrated"
    assert _names(cal) == {f"{eb}.ms.split.cal", f"{eb}.calibration"}
    work = cal / f"{eb}.calibration"
    assert {f"{eb}.ms", f"{eb}.ms.split"} <= _names(work)                 # level 0 keeps everything
    assert _listing(member / "raw") == raw_before                         # raw/ untouched
    scatter = phase_scatter([cal / f"{eb}.ms.split.cal", work / f"{eb}.ms.split"], member / "almadeliver-restore")
    calibrated, uncalibrated = (scatter[str(p)]["rms_deg"] for p in (cal / f"{eb}.ms.split.cal", work / f"{eb}.ms.split"))
    assert calibrated < PHASE_TOLERANCE_DEG < 30 < uncalibrated, scatter
    logs = list((member / "almadeliver-restore").glob("casa-*.log"))
    assert logs and "importasdm" in logs[0].read_text()


def _disk_line(stdout: str) -> tuple[float, float, int]:
    m = re.search(r"peak ([\d.]+) MB, final ([\d.]+) MB; scriptForPI's estimate (\d+) MB", stdout)
    assert m, stdout
    return float(m.group(1)), float(m.group(2)), int(m.group(3))


def test_peak_stays_under_scriptforpi_estimate_one_eb(one_eb_level0):
    """SPACESAVING 0 deletes nothing, so the final size is the peak. With one EB, SPACESAVING 1
    holds the same files until the EB's calibration script ends (*.ms.split goes afterwards), so
    its peak is the same and must also stay under the level-1 estimate (raw x 7)."""
    member, _, r = one_eb_level0
    assert r.returncode == 0, r.stdout + r.stderr
    peak, final, need0 = _disk_line(r.stdout)
    est = estimate(member)
    assert need0 == est.need_mb(0) == 11 * est.raw_mb and est.raw_mb >= 15
    assert peak == final <= need0
    assert peak <= est.need_mb(1)


def test_peak_stays_under_scriptforpi_estimate_two_ebs_level3(delivered, tmp_path):
    """Two EBs and a flux script at SPACESAVING 3: each EB's *.ms and *.ms.split go once its
    .ms.split.cal is made, the .ms.split.cal once calibrated.ms exists; the peak (the last EB's
    working set beside the first EB's .ms.split.cal) stays under raw x (3 + 3). Level 2 deletes
    the same files at the same moments except the final .ms.split.cal, so its peak is the same."""
    member = delivered(2, tmp_path / "two", size="medium")
    plan = plan_restore(member, spacesaving=3, casa_version_mismatch="allow")
    result = restore(plan, interval=0.1)
    assert plan.estimate.extra_scripts == ("scriptForFluxCalibration.py",) and plan.estimate.raw_mb >= 30
    assert result.estimate_mb == plan.estimate.need_mb(2) == 6 * plan.estimate.raw_mb
    assert _names(member / "calibrated") == {"calibrated.ms", "allFluxes.txt"} | {
        f"{eb}.calibration" for eb in result.calibrated_ebs}
    assert result.final_bytes < result.peak_bytes <= result.estimate_mb * MB and result.within_estimate
    assert result.disk_plot == member / "almadeliver-restore" / "restore-disk.png"
    assert result.disk_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_ebs_level1_then_resume_level3(simulated, unpack, tmp_path):
    """SPACESAVING 1 on a 2-EB member with a flux script, then an interrupted run resumed at level 3.
    The member is test_sim's 2-EB project (cached, shared: test_roundtrip, test_slurm)."""
    [found] = find_members(unpack(simulated("2017.1.00123.S", ebs=2), tmp_path / "two"))
    member = found.path
    lines: list[str] = []
    first = plan_restore(member, spacesaving=1, casa_version_mismatch="allow")
    result = restore(first, on_line=lines.append, interval=0.2)
    ebs = sorted(result.calibrated_ebs)
    cal = member / "calibrated"
    assert len(ebs) == 2 and any("Running scriptForFluxCalibration.py" in l for l in lines)
    assert _names(cal) == {"calibrated.ms", "allFluxes.txt"} | {f"{eb}.ms.split.cal" for eb in ebs} | {f"{eb}.calibration" for eb in ebs}
    for eb in ebs:                                                        # level 1: no *.ms.split, *.ms kept
        assert f"{eb}.ms" in _names(cal / f"{eb}.calibration")
        assert f"{eb}.ms.split" not in _names(cal / f"{eb}.calibration")
    assert result.peak_bytes >= result.final_bytes > 0 and result.estimate_mb == first.estimate.need_mb(1)
    scatter = phase_scatter([cal / "calibrated.ms"], tmp_path)
    assert scatter[str(cal / "calibrated.ms")]["rms_deg"] < PHASE_TOLERANCE_DEG, scatter

    # an interrupted run: the last EB and calibrated.ms were not finished
    shutil.rmtree(cal / f"{ebs[-1]}.ms.split.cal")
    shutil.rmtree(cal / "calibrated.ms")
    with pytest.raises(TreeError, match="already exists"):
        plan_restore(member, spacesaving=3, casa_version_mismatch="allow").check()
    plan = plan_restore(member, spacesaving=3, resume=True, casa_version_mismatch="allow")
    assert plan.finished == ebs[:1] and plan.todo == ebs[-1:]
    resumed = restore(plan)
    assert resumed.kept == ebs[:1]
    assert _names(cal) == {"calibrated.ms", "allFluxes.txt"} | {f"{eb}.calibration" for eb in ebs}  # level 3: no split.cal
    assert not {f"{ebs[-1]}.ms", f"{ebs[-1]}.ms.split"} & _names(cal / f"{ebs[-1]}.calibration")
    scatter = phase_scatter([cal / "calibrated.ms"], tmp_path)
    assert scatter[str(cal / "calibrated.ms")]["rms_deg"] < PHASE_TOLERANCE_DEG, scatter
    assert not (member / "almadeliver-restore" / "resume-shadow").exists()



AMPLITUDE_TOLERANCE = 0.01     # calibrator amplitude against the flux it was scaled to (noise: ~0.2%)


def _amplitude_errors(amplitudes: dict[str, dict[int, float]], means: dict[int, float]) -> dict[str, float]:
    """EB -> worst relative difference of its phase calibrator's amplitude from allFluxes' mean over spws."""
    return {eb: max(abs(amp / means[spw] - 1) for spw, amp in spws.items()) for eb, spws in amplitudes.items()}


def test_cycle0_is_already_calibrated_and_concat_runs_the_flux_calibration_script(simulated, unpack, tmp_path):
    """--concat runs the delivered scriptForFluxCalibration.py (seed 000: it "does the flux calibration,
    then combines"): each EB's phase calibrator in calibrated.ms has allFluxes' weighted mean flux,
    although the delivered EBs carry flux scales 10% off either way (what concat alone would keep)."""
    from almadeliver.casa.concat import calibrator_amplitudes
    from almadeliver.casa.runtime import run_in_casa
    from almadeliver.delivery.checklist import read_allfluxes
    from almadeliver.sim.manual import flux_scale_error
    from almadeliver.sim.plan import REF_FREQ_HZ, make_plan

    [member] = find_members(unpack(simulated("2011.0.00340.S", flavour="cycle0", ebs=2), tmp_path / "c0"))
    cycle0 = member.path
    delivered_ms = sorted((cycle0 / "calibrated").glob("*.ms.split.cal"))
    r = _cli(["restore", str(cycle0)], tmp_path)
    assert r.returncode == 0 and "already calibrated" in r.stdout and "--concat" in r.stdout, r.stdout + r.stderr
    r = _cli(["restore", str(cycle0), "--concat"], tmp_path, offline=True, prefix=_no_network())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ran script/scriptForFluxCalibration.py" in r.stdout, r.stdout
    calibrated_ms = cycle0 / "calibrated" / "calibrated.ms"
    assert (calibrated_ms / "table.dat").is_file()
    assert sorted((cycle0 / "calibrated").glob("*.ms.split.cal")) == delivered_ms   # the delivered EBs untouched
    scatter = phase_scatter([calibrated_ms], tmp_path)
    assert scatter[str(calibrated_ms)]["rms_deg"] < PHASE_TOLERANCE_DEG, scatter

    # allFluxes.txt's lines, as the generator writes them into the script (comments)
    script = (cycle0 / "script" / "scriptForFluxCalibration.py").read_text()
    (tmp_path / "allFluxes.txt").write_text("\n".join(line.lstrip("#") for line in script.splitlines()))
    rows = read_allfluxes(tmp_path / "allFluxes.txt")
    means = {row["spw"]: row["mean_jy"] for row in rows}
    assert len(rows) == 2 * 3 and len(means) == 3, rows                          # 2 EBs x 3 spws

    def measured(ms: Path) -> list[dict]:
        return run_in_casa(calibrator_amplitudes, {"ms": str(ms)}, workdir=tmp_path,
                           logfile=tmp_path / "amplitudes.casa.log")

    before = {ms.name.split(".ms")[0]: measured(ms)[0] for ms in delivered_ms}
    after = {eb: min(measured(calibrated_ms), key=lambda o: abs(o["begin_s"] - obs["begin_s"]))
             for eb, obs in before.items()}
    assert len({o["observation"] for o in after.values()}) == 2                 # one observation per EB
    as_jy = {eb: {int(spw): amp for spw, amp in o["spw_jy"].items()} for eb, o in after.items()}
    assert max(_amplitude_errors(as_jy, means).values()) < AMPLITUDE_TOLERANCE, (as_jy, means)
    # without the scaling (concat alone keeps the delivered data): the same check fails for both EBs
    delivered_jy = {eb: {int(spw): amp for spw, amp in o["spw_jy"].items()} for eb, o in before.items()}
    assert min(_amplitude_errors(delivered_jy, means).values()) > 3 * AMPLITUDE_TOLERANCE, (delivered_jy, means)
    # the delivered EBs are off the truth by the simulated reducer's flux errors; the mean is close to it
    plan = make_plan("2011.0.00340.S", flavour="cycle0", ebs=2)
    mous = plan.mous[0]
    phase = plan.field("phase")["components"][0]
    freqs = {row["spw"]: row["freq_ghz"] * 1e9 for row in rows}
    truth = {spw: phase["flux_jy"] * (f / REF_FREQ_HZ) ** phase["spix"] for spw, f in freqs.items()}
    for j, eb in enumerate(mous.ebs):
        for spw, amp in delivered_jy[eb.disk].items():
            assert amp / truth[spw] == pytest.approx(1 + flux_scale_error(plan, mous, j), abs=0.02), (eb.disk, spw)
    assert all(abs(means[spw] / truth[spw] - 1) < 0.07 for spw in means), (means, truth)


def _fake_monolithic_casa(root: Path) -> Path:
    """Stands in for monolithic CASA (not installable here): runs ``-c FILE`` in the legacy namespace."""
    exe = root / "casa-6.5.4-9-pipeline-2023.1.0.8" / "bin" / "casa"
    exe.parent.mkdir(parents=True)
    exe.write_text(
        f"#!{sys.executable}\n"
        "import sys, json, os\n"
        "open(os.environ['FAKE_CASA_ARGV'], 'w').write(json.dumps(sys.argv[1:]))\n"
        "import almadeliver\n"
        "from almadeliver.casa.legacy import legacy_globals\n"
        "ns = legacy_globals(casa_version='6.5.4-9')   # its casalith: the CASA in its folder name\n"
        "ns['execfile'](sys.argv[sys.argv.index('-c') + 1])\n")
    exe.chmod(0o755)
    return exe


def test_level2_through_monolithic_casa_command(delivered, tmp_path, monkeypatch):
    member = delivered(1, tmp_path / "mono")
    exe = _fake_monolithic_casa(tmp_path)
    monkeypatch.setenv("FAKE_CASA_ARGV", str(tmp_path / "argv.json"))
    plan = plan_restore(member, spacesaving=2, casa=str(exe.parent.parent))
    assert plan.engine == "monolithic" and plan.casa.version == "6.5.4-9"
    result = restore(plan)
    argv = (tmp_path / "argv.json").read_text()
    assert '"--nologger", "--nogui"' in argv and '"-c"' in argv
    [eb] = result.calibrated_ebs
    cal = member / "calibrated"
    assert _names(cal) == {f"{eb}.ms.split.cal", f"{eb}.calibration"}
    assert not {f"{eb}.ms", f"{eb}.ms.split"} & _names(cal / f"{eb}.calibration")   # level 2
    assert result.casa_log.stat().st_size > 0


def test_refusals_before_anything_runs(delivered, tmp_path, monkeypatch):
    member = delivered(1, tmp_path / "refuse")
    (member / "calibrated").mkdir()
    r = _cli(["restore", str(member)], tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr and "--resume" in r.stderr
    assert not (member / "almadeliver-restore").exists() and not any((member / "calibrated").iterdir())
    (member / "calibrated").rmdir()

    # a Python 2 scriptForPI (v1.25): the message names the CASA version the README asks for
    script = member / "script" / "scriptForPI.py"
    text = script.read_text()
    script.write_text("# $Id: scriptForPI.py,v 1.25 2018/05/23 07:09:43 dpetry Exp $\nprint 'hello'\n")
    readme = member / "README"
    readme.write_text(re.sub(r"CASA version used for reduction: .*", "CASA version used for reduction: 5.1.1",
                             readme.read_text()))
    monkeypatch.delenv("ALMADELIVER_CASA", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(CasaNotFoundError, match=r"Python 2.*CASA 5\.1\.1"):
        plan_restore(member).check()
    # a README naming a CASA 6 beside a Python 2 script: one consistent sentence, no "install CASA 6"
    readme.write_text(re.sub(r"CASA version used for reduction: .*", "CASA version used for reduction: 6.5.4-9",
                             readme.read_text()))
    r = _cli(["restore", str(member)], tmp_path, prefix=["env", "-u", "ALMADELIVER_CASA", "PATH=/usr/bin:/bin"])
    [line] = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "running" not in r.stdout, r.stdout
    assert re.match(r"error: scriptForPI\.py v1\.25 is Python 2 \(CASA 4/5 era\); it cannot run in CASA 6; install "
                    r"a CASA 5 or earlier \(monolithic, from casa\.nrao\.edu; the README names CASA 6\.5\.4-9, which "
                    r"cannot run a Python 2 script\) and give it with --casa PATH$", line), line
    script.write_text(text)

    # a failing calibration script: the error names the script output and the CASA log
    [calscript] = (member / "script").glob("*.ms.scriptForCalibration.py")
    calscript.write_text("raise RuntimeError('calibration table missing')\n" + calscript.read_text())
    with pytest.raises(CasaError, match=r"calibration table missing.*calibrated is left as it is.*"
                                        r"scriptForPI-.*\.out.*casa-.*\.log"):
        restore(plan_restore(member, casa_version_mismatch="allow"))


def test_too_small_disk_is_refused_before_anything_runs(delivered, tmp_path):
    """A real small filesystem (tmpfs in a private mount namespace) when we may mount; else skip."""
    if subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("cannot make a mount namespace here (needs root)")
    member = delivered(1, tmp_path / "small")
    top = member.parents[3]
    size_mb = sum(p.lstat().st_blocks * 512 for p in top.rglob("*")) // MB + 4      # 4 MB free, level 3 needs 6
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rel = member.relative_to(top.parent)
    script = (f"mount -t tmpfs -o size={size_mb}m tmpfs {mnt} && cp -a {top} {mnt}/ && "
              f"{sys.executable} -m almadeliver restore {mnt / rel} --casa-version-mismatch allow; echo rc=$?; "
              f"ls {mnt / rel}; {sys.executable} -m almadeliver restore {mnt / rel} --spacesaving -1 --dry-run "
              "--casa-version-mismatch allow")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=300)
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    assert re.search(r"not enough free disk space .* SPACESAVING 3 needs \d+ MB, \d+ MB free \(\d+ MB missing\)",
                     r.stderr), r.stderr
    assert "calibrated" not in r.stdout and "almadeliver-restore" not in r.stdout
    assert "dry run: would run scriptForPI.py with SPACESAVING=-1" in r.stdout


def test_version_gate_is_a_decision_and_bad_scripts_refuse_in_one_line(delivered, tmp_path):
    """The generator's exact-version gate (the simulated delivery asks for CASA 6.5.4): the dry run
    names it, a plain restore refuses before CASA starts in one line naming both ways on, and a gate
    we cannot read, a missing module or an unknown import refuse the same way (raw/ untouched,
    nothing written)."""
    member = delivered(1, tmp_path / "gate")
    raw_before = _listing(member / "raw")
    r = _cli(["restore", str(member), "--dry-run"], tmp_path)
    assert r.returncode == 1
    assert re.search(r"version gate uid___\w+\.ms\.scriptForCalibration\.py asks for CASA 6\.5\.4; modular CASA "
                     r"6\.7\.\d+-\d+ would run: mismatch: refused", r.stdout), r.stdout
    r = _cli(["restore", str(member)], tmp_path)
    assert r.returncode == 1 and "running" not in r.stdout
    [line] = r.stderr.strip().splitlines()
    assert re.match(r"error: the calibration scripts ask for CASA 6\.5\.4 exactly \(uid___\w+\.ms\.scriptFor"
                    r"Calibration\.py: version gate\); this restore would run modular CASA 6\.7\.\d+-\d+; give a "
                    r"monolithic CASA 6\.5\.4 with --casa PATH, or add --casa-version-mismatch allow", line), line
    r = _cli(["restore", str(member), "--casa-version-mismatch", "allow", "--dry-run"], tmp_path)
    assert r.returncode == 0 and "mismatch: gate passed (--casa-version-mismatch allow)" in r.stdout, r.stderr

    [calscript] = (member / "script").glob("*.ms.scriptForCalibration.py")
    text = calscript.read_text()
    for broken, expected in (
            (text.replace("re.search('^6.5.4'", "re.search('^6.5'"),
             rf"{calscript.name} line \d+: cannot read the CASA version its gate demands \('\^6\.5'\)"),
            (text.replace("import casalith\n", "import casalith\nimport casadef\n"),
             rf"{calscript.name} line \d+ needs module casadef, which modular CASA in \S+ does not have; it ships "
             r"only with monolithic CASA"),
            (text.replace("from casarecipes.almahelpers import tsysspwmap", "from recipes.almahelpers import tsysspwmap"),
             rf"{calscript.name} line \d+ needs module recipes.almahelpers, which modular CASA")):
        calscript.write_text(broken)
        r = _cli(["restore", str(member), "--casa-version-mismatch", "allow"], tmp_path)
        [line] = r.stderr.strip().splitlines()
        assert r.returncode == 1 and re.match("error: " + expected, line), line
        assert not (member / "calibrated").exists() and not (member / "almadeliver-restore").exists()
    calscript.write_text(text)

    # a Total Power EB: its <EB>.ms.scriptForSDCalibration.py is the EB's calibration script
    sd = calscript.with_name(calscript.name.replace("scriptForCalibration", "scriptForSDCalibration"))
    calscript.rename(sd)
    assert _cli(["validate", str(member)], tmp_path).returncode == 0
    r = _cli(["restore", str(member), "--dry-run", "--casa-version-mismatch", "allow"], tmp_path)
    assert r.returncode == 0 and f"version gate {sd.name} asks for CASA 6.5.4" in r.stdout, r.stdout + r.stderr
    sd.write_text(text.replace("# Split out corrected column", "plotms(vis=vis, xaxis='time')\n\n"
                                                               "# Split out corrected column"))
    r = _cli(["restore", str(member), "--casa-version-mismatch", "allow"], tmp_path)
    [line] = r.stderr.strip().splitlines()
    assert r.returncode == 1 and re.match(rf"error: {sd.name} line \d+ needs task plotms, which modular CASA does "
                                          r"not have", line), line
    sd.unlink()
    calscript.write_text(text)
    assert not (member / "calibrated").exists() and not (member / "almadeliver-restore").exists()
    assert _listing(member / "raw") == raw_before


def test_relative_casa_path_and_matching_monolithic_casa_runs_without_asking(delivered, tmp_path, monkeypatch):
    """A monolithic CASA whose version matches the gates is used as named (a relative path too)."""
    member = delivered(1, tmp_path / "rel")
    _fake_monolithic_casa(tmp_path)
    monkeypatch.chdir(tmp_path)
    plan = plan_restore(member, casa="casa-6.5.4-9-pipeline-2023.1.0.8")
    plan.check()
    assert plan.engine == "monolithic" and plan.casa.executable.is_absolute() and not plan.mismatched_gates
    assert plan.casa_asked == ["6.5.4"]
