import subprocess
import sys

from almadeliver.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "almadeliver", *args], capture_output=True, text=True)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "casa-info" in r.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "almadeliver" in capsys.readouterr().out


def test_error_is_one_line_and_nonzero():
    r = run("casa-info", "--casa", "/no/such/casa")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: no CASA executable at /no/such/casa")
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback():
    r = run("--debug", "casa-info", "--casa", "/no/such/casa")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_unknown_command_is_usage_error():
    r = run("no-such-command")
    assert r.returncode == 2 and "No such command" in r.stderr
