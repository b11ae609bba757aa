"""The offline CASA runtime: no network on import, logs where we say, failures name their log."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from almadeliver.casa.runtime import casa_env, configure_offline, find_monolithic_casa, run_in_casa
from almadeliver.casa.selfcheck import measures_check_in_casa
from almadeliver.casa.warm import WARM_ENV
from almadeliver.errors import CasaError, CasaNotFoundError

CHECK = (
    "from almadeliver.casa.selfcheck import measures_check_in_casa; r = measures_check_in_casa(); "
    "assert abs(r['tai_minus_utc_s'] - 37) < 1e-3, r; print('OK', r['el_deg'])"
)


def _no_network_prefix() -> list[str]:
    """Run in a network namespace with no interfaces up when we can (root); else rely on proxies."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        return ["unshare", "-n"]
    return []


def test_site_config_is_offline():
    text = configure_offline().read_text()
    assert "measures_auto_update = False" in text and "data_auto_update = False" in text
    assert casa_env(Path("casa.log"))["CASASITECONFIG"] == os.environ.get("CASASITECONFIG", str(configure_offline()))


def test_casatools_imports_and_converts_with_network_unreachable(tmp_path):
    env = casa_env(tmp_path / "casa.log")
    closed = "http://127.0.0.1:9"  # nothing listens on the discard port
    env.update(http_proxy=closed, https_proxy=closed, HTTP_PROXY=closed, HTTPS_PROXY=closed, ALL_PROXY=closed)
    r = subprocess.run(_no_network_prefix() + [sys.executable, "-c", CHECK], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout
    assert (tmp_path / "casa.log").is_file()
    assert not list(tmp_path.glob("casa-*.log"))


def test_run_in_casa_keeps_logs_in_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    r = run_in_casa(measures_check_in_casa, workdir=work)
    assert r["casa_version"].startswith("6.")
    assert (work / "casa.log").stat().st_size > 0
    assert not list(tmp_path.glob("casa-*.log")) and not list(work.glob("casa-*.log"))


def test_run_in_casa_failure_names_the_log(tmp_path):
    with pytest.raises(CasaError, match=r"check_call.*returned non-zero exit status 1.*casa\.log"):
        run_in_casa(subprocess.check_call, {"args": ["false"]}, workdir=tmp_path)


def test_run_in_casa_takes_a_function_of_a_module(tmp_path):
    with pytest.raises(TypeError, match="top-level function"):
        run_in_casa(lambda: 1, workdir=tmp_path)
    assert not list(tmp_path.iterdir()), "refused before anything runs"


def test_named_casa_must_exist(tmp_path):
    with pytest.raises(CasaNotFoundError):
        find_monolithic_casa(tmp_path / "casa-6.5.4-9-pipeline-2023.1.0.8")
    fake = tmp_path / "casa-6.5.4-9-pipeline-2023.1.0.8" / "bin" / "casa"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    found = find_monolithic_casa(fake.parent.parent)
    assert found.version == "6.5.4-9" and found.has_pipeline
    assert found.command(Path("s.py"), pipeline=True)[-3:] == ["--pipeline", "-c", "s.py"]


@pytest.mark.parametrize("warm", ["1", "0"], ids=["warm-fork", "cold-child"])
def test_casa_child_ends_with_its_parent(tmp_path, warm):
    """A worker killed mid-run must not leave its CASA child writing on (scale retries the step):
    neither a fork of the warm CASA process (nor that process) nor a cold child."""
    import psutil

    code = (
        "import sys; from pathlib import Path; from almadeliver.casa.runtime import run_in_casa; "
        f"import subprocess; run_in_casa(subprocess.run, {{'args': ['sleep', '60']}}, workdir=Path({str(tmp_path)!r}))"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, WARM_ENV: warm})
    deadline = time.monotonic() + 120
    casa: list[psutil.Process] = []
    while not casa and time.monotonic() < deadline:    # the call runs `sleep 60`: its parent is the CASA child
        sleeps = [p for p in psutil.Process(parent.pid).children(recursive=True) if p.name() == "sleep"]
        if sleeps:
            call = sleeps[0].parent()
            casa = [call] + ([call.parent()] if warm == "1" else [])   # a fork, and the warm process it came from
        time.sleep(0.1)
    assert casa, "the CASA child did not start"
    assert ("almadeliver.casa.warm" in " ".join(casa[0].cmdline())) == (warm == "1"), casa[0].cmdline()
    parent.kill()
    parent.wait()
    gone, alive = psutil.wait_procs(casa, timeout=max(1.0, deadline - time.monotonic()))
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"the CASA child outlived its killed parent: {[p.cmdline() for p in alive]}"
