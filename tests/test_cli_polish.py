"""The command line's finish: start-up, global options anywhere, one line for bad input, -o formats,
choices in --help, one size convention, life signs of long work."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from astropy.table import Table
from tqdm import tqdm

from almadeliver.cli import main
from almadeliver.cli.status import StatusLine
from almadeliver.sim import archive as server
from almadeliver.units import BAR_DIVISOR, human_size, middle_cut

from archive_catalogue import write_project  # noqa: E402

CLOSED = "http://127.0.0.1:9"      # nothing listens: a command that asked the archive would say so


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "almadeliver", *args], capture_output=True, text=True, timeout=300)


def one_line(r: subprocess.CompletedProcess) -> str:
    """The error a command printed, checked to be one line without a traceback."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


LOADED = """
import sys
from almadeliver.cli import main
code = main(sys.argv[1:])
print(code, sorted(m for m in ("astropy", "pyvo", "numpy", "casatools", "rich.markdown") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["query", "--help"], ["query", "--view", "bogus"],
                                  ["download", "x", "--parallel", "99"], ["restore", "--help"]])
def test_help_and_option_errors_load_no_astropy(args):
    r = subprocess.run([sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=300)
    code, _, loaded = r.stdout.strip().splitlines()[-1].partition(" ")
    assert code in ("0", "2") and loaded == "[]", r.stdout + r.stderr


def test_help_start_up_as_a_ratio_to_bare_python():
    """Printed, not asserted (the machine's load decides the seconds): README shows the figure."""
    def best(cmd: list[str]) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, timeout=300)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    bare = best([sys.executable, "-c", "pass"])
    helped = best([sys.executable, "-m", "almadeliver", "--help"])
    print(f"\nalmadeliver --help: {helped:.2f} s, python -c pass: {bare:.2f} s, ratio {helped / bare:.1f}")


def test_global_options_after_the_command(tmp_path):
    r = run("validate", str(tmp_path / "nothing"), "-q")
    assert r.returncode == 2 and "No such option" not in r.stderr
    assert one_line(r).startswith("error: ")
    r = run("validate", str(tmp_path / "nothing"), "--debug")
    assert r.returncode == 2 and one_line(r).startswith("error: ")


def test_debug_never_turns_a_usage_error_into_a_traceback():
    r = run("query", "2017.1.00123.S", "--debug", "--band", "12", "--archive", CLOSED)
    assert r.returncode == 2 and one_line(r) == "error: band 12 is not an ALMA band; ALMA bands are 1 to 10"
    r = run("--debug", "restore", "x", "--engine", "fast")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "'fast' is not one of" in r.stderr


def test_ra_outside_the_sky_is_refused():
    r = run("query", "--ra", "400", "--dec", "0", "--archive", CLOSED)
    assert r.returncode == 2 and "--ra 400 is 400 deg, outside 0..360 deg" in one_line(r)
    r = run("query", "--ra", "10", "--dec", "-91", "--archive", CLOSED)
    assert r.returncode == 2 and "outside -90..90" in one_line(r)


@pytest.mark.parametrize("output, fmt, words", [
    ("/nonexistent/x.json", None, "folder /nonexistent does not exist"),
    ("answer.bogus", None, "names no format"),
    ("answer.csv", "json", "names csv but --format is json"),
    (None, "fits", "--format fits writes a binary file"),
])
def test_bad_output_is_one_line_before_the_archive_is_asked(tmp_path, output, fmt, words):
    args = ["query", "2017.1.00123.S", "--archive", CLOSED]
    if output:
        args += ["-o", output if output.startswith("/") else str(tmp_path / output)]
    if fmt:
        args += ["--format", fmt]
    r = run(*args)
    assert r.returncode == 2 and words in one_line(r)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_project(root, "2019.1.00458.S", n_mous=2, sources=1, spws=2)
    with server.LocalArchive(root) as a:
        yield a


@pytest.mark.parametrize("suffix, reader", [(".fits", "fits"), (".ecsv", "ascii.ecsv"), (".xml", "votable"),
                                            (".csv", "ascii.csv")])
def test_output_suffix_picks_the_format(archive, tmp_path, capsys, suffix, reader):
    out = tmp_path / f"answer{suffix}"
    assert main(["query", "2019.1.00458.S", "--archive", archive.url, "-o", str(out)]) == 0
    table = Table.read(out, format=reader)
    assert list(table["member_ous_uid"]) and set(table["proposal_id"]) == {"2019.1.00458.S"}
    if suffix == ".fits":
        assert out.read_bytes()[:6] == b"SIMPLE"


def test_choices_show_in_help():
    assert "--engine <auto|native|casa>" in run("restore", "--help").stdout
    assert "--casa-version-mismatch <refuse|allow>" in run("run", "--help").stdout
    assert "<radio|optical|relativistic>" in run("query", "--help").stdout
    assert "--from <auto|pipeline|script>" in run("image", "--help").stdout


def test_one_size_convention():
    """The bars count in the decimal units every other line uses (and the archive shows)."""
    assert human_size(1_500_000) == "1.5 MB"
    assert tqdm.format_sizeof(1_500_000, "B", divisor=BAR_DIVISOR) == "1.50MB"
    name = "2017.1.00123.S_uid___A001_X1296_X1d3_001_of_001.tar"
    cut = middle_cut(name)
    assert len(cut) == 32 and cut.startswith("2017.1.00123.S") and cut.endswith("001_of_001.tar")
    assert middle_cut("short.tar") == "short.tar"


def test_status_line_shows_elapsed_time_and_disk_use(tmp_path, capsys):
    folder = tmp_path / "calibrated"
    folder.mkdir()
    (folder / "x.ms").write_bytes(b"\0" * 50_000)
    with StatusLine(folder, interval=0.05) as status:
        status.step("EB 1/2 uid___A002_X1_X2  step 3 Apply WVR")
    out = capsys.readouterr().out
    assert "EB 1/2 uid___A002_X1_X2  step 3 Apply WVR  [elapsed 0:00:0" in out
    assert "calibrated/ 5" in out and " kB]" in out          # 50 kB and its blocks, in decimal kB
    with StatusLine(folder, quiet=True) as status:
        status.step("quiet")
    assert capsys.readouterr().out == ""


def test_the_lazy_command_list_matches_the_commands():
    """--help lists the commands from their source; it must say what each command's own help says."""
    import importlib
    import inspect

    app_module = sys.modules["almadeliver.cli.app"]
    index = app_module.command_index()
    for module in app_module.COMMAND_MODULES:
        importlib.import_module(f"almadeliver.cli.{module}")
    registered = {info.name: info for info in app_module.app.registered_commands}
    assert set(index) == set(registered)
    for name, info in registered.items():
        first = " ".join(inspect.getdoc(info.callback).split("\n\n")[0].split())
        assert index[name][1] == first, name


def test_global_first_moves_only_the_root_flags():
    from almadeliver.cli.app import global_first

    assert global_first(["validate", "x", "-q", "--strict"]) == ["-q", "validate", "x", "--strict"]
    assert global_first(["-v", "query", "X", "--debug", "-vv"]) == ["--debug", "-vv", "-v", "query", "X"]
    assert global_first(["query", "--", "-q"]) == ["query", "--", "-q"]
