"""Mutation testing of the modules where a wrong answer costs data or science, with cosmic-ray.

Run by hand (not part of `make test`; minutes to hours, one CPU per run):

    VIRTUAL_ENV=.venv uv pip install -e '.[mutation]'      # cosmic-ray
    .venv/bin/python scripts/mutation.py                    # every module below
    .venv/bin/python scripts/mutation.py casa/diskspace.py transfer/extract.py   # some of them

Each module is mutated in a copy of the work tree (never in place: an interrupted run leaves the sources
as they were) and each mutant runs only that module's fast tests (the TESTS table), stopping at the first
failure. Prints, per module: mutants, killed, survived, the kill rate; and every survivor (file, line,
operator) so it can be killed by a new test or listed in EQUIVALENT below with the reason it cannot be.
``--report FILE`` also writes that text to FILE; ``--recheck FILE`` runs again only the mutants that
report lists as SURVIVED (each applied to a fresh copy), after tests were added to kill them.

Operators: cosmic-ray's core set without the bit-shift, bitwise, power, modulo and floor-division
replacements of arithmetic operators (no module here uses them; they only multiply the mutants of every
``+``). Timeouts count as killed (a mutant that hangs is caught by the suite's timeout).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module (under almadeliver/) -> the tests that exercise it without a simulated project or CASA run
TESTS = {
    "casa/diskspace.py": ["tests/test_diskspace.py"],
    "transfer/extract.py": ["tests/test_extract.py"],
    "transfer/journal.py": ["tests/test_download_units.py", "tests/test_download.py"],
    "transfer/plan.py": ["tests/test_download_units.py", "tests/test_download.py"],
    "transfer/download.py": ["tests/test_download_units.py", "tests/test_download.py", "tests/test_faults.py"],
    "delivery/validate.py": ["tests/test_validate.py", "tests/test_validate_findings.py"],
    "packaging/tarballs.py": ["tests/test_tarballs.py", "tests/test_extract.py"],
}
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_.*_(RShift|LShift|BitOr|BitAnd|BitXor|Pow|Mod|FloorDiv)$",
    r"core/ReplaceBinaryOperator_(RShift|LShift|BitOr|BitAnd|BitXor|Pow|Mod)_.*",
]
# (module, line, operator) of survivors judged equivalent: the mutant behaves like the original
_NEG1 = "the only level below 0 is -1 (SPACESAVING=-1): min(-1, 1) is -1, -1 is a cached int, need_mb(-1) is 0"
EQUIVALENT: dict[tuple[str, int, str], str] = {
    ("casa/diskspace.py", 49, "core/ReplaceContinueWithBreak"):
        "a file removed between the listing and its stat (a restore deleting as it goes): only a race reaches it",
    ("casa/diskspace.py", 48, "core/ExceptionReplacer"):
        "a file removed between the listing and its stat (a restore deleting as it goes): only a race reaches it",
    ("casa/diskspace.py", 50, "core/NumberReplacer"): "folders and single-link files never repeat an inode",
    ("casa/diskspace.py", 50, "core/ReplaceAndWithOr"): "folders and single-link files never repeat an inode",
    ("casa/diskspace.py", 50, "core/ReplaceComparisonOperator_Gt_NotEq"): "st_nlink is never 0 for a listed file",
    ("casa/diskspace.py", 50, "core/ReplaceComparisonOperator_Gt_GtE"): "folders and single-link files never repeat an inode",
    ("casa/diskspace.py", 50, "core/ReplaceFalseWithTrue"):
        "is_dir following links differs only for a link, whose own st_nlink is 1: the test before it is false",
    ("casa/diskspace.py", 82, "core/ReplaceComparisonOperator_GtE_Gt"): "min(0, 1) is 0: level 0 is the same either way",
    ("casa/diskspace.py", 95, "core/ReplaceUnaryOperator_USub_Invert"): _NEG1,
    ("casa/diskspace.py", 148, "core/AddNot"):
        "not joining the stopped thread: it ends at its next wait, which returns at once; nothing reads it after",
    ("casa/diskspace.py", 70, "core/ReplaceTrueWithFalse"): "frozen=False: nothing assigns to an estimate",
    ("casa/diskspace.py", 82, "core/ReplaceComparisonOperator_GtE_NotEq"): _NEG1,
    ("casa/diskspace.py", 82, "core/NumberReplacer"): _NEG1,
    ("casa/diskspace.py", 85, "core/ReplaceComparisonOperator_Eq_Is"): _NEG1,
    ("casa/diskspace.py", 85, "core/ReplaceComparisonOperator_Eq_LtE"): _NEG1,
    ("casa/diskspace.py", 95, "core/ReplaceComparisonOperator_Eq_Lt"): _NEG1,
    ("casa/diskspace.py", 95, "core/ReplaceComparisonOperator_Eq_LtE"): _NEG1,
    ("casa/diskspace.py", 95, "core/ReplaceComparisonOperator_Eq_Is"): _NEG1,
    ("casa/diskspace.py", 95, "core/NumberReplacer"): _NEG1,
    ("casa/diskspace.py", 125, "core/NumberReplacer"): "the default interval only sets how often the sampler samples",
    ("casa/diskspace.py", 126, "core/NumberReplacer"): "peak and last are set by the first sample, taken on entry",
    ("casa/diskspace.py", 127, "core/NumberReplacer"): "peak and last are set by the first sample, taken on entry",
    ("casa/diskspace.py", 128, "core/ReplaceFalseWithTrue"): "repr only",
    ("casa/diskspace.py", 129, "core/ReplaceFalseWithTrue"): "repr only",
    ("casa/diskspace.py", 142, "core/ReplaceTrueWithFalse"): "daemon=False: the thread is stopped and joined on exit",
}


def _copy_tree(dest: Path) -> None:
    """The work tree as it is now (tracked and new files, not ignored ones) into ``dest``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _config(module: str, tests: list[str], timeout: float) -> str:
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider --timeout={int(timeout)} {' '.join(tests)}"
    excluded = ", ".join(json.dumps(o) for o in EXCLUDED_OPERATORS)
    return (f'[cosmic-ray]\nmodule-path = "almadeliver/{module}"\ntimeout = {timeout}\nexcluded-modules = []\n'
            f'test-command = "{command}"\n\n[cosmic-ray.distributor]\nname = "local"\n\n'
            f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n")


def run_module(module: str, work: Path, timeout: float) -> dict:
    """Mutate ``module`` in ``work`` (a copy of the tree) and run its tests against every mutant."""
    bin_dir = Path(sys.executable).parent
    cfg, session = work / "cr.toml", work / f"{module.replace('/', '_')}.sqlite"
    cfg.write_text(_config(module, TESTS[module], timeout))
    # no .pyc: a mutant of the same size written within the second of the last one would run the old bytecode
    env = {**os.environ, "PYTHONPATH": str(work), "ALMADELIVER_HOME": str(work / ".home"), "PYTHONDONTWRITEBYTECODE": "1"}
    run = dict(cwd=work, env=env, check=True, capture_output=True, text=True)
    subprocess.run([bin_dir / "cosmic-ray", "init", cfg, session], **run)
    subprocess.run([bin_dir / "cr-filter-operators", session, cfg], **run)
    baseline = subprocess.run([bin_dir / "cosmic-ray", "baseline", cfg], cwd=work, env=env, capture_output=True,
                              text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{module}: the tests fail without any mutation:\n{baseline.stdout[-2000:]}")
    began = time.monotonic()
    subprocess.run([bin_dir / "cosmic-ray", "exec", cfg, session], **run)
    dump = subprocess.run([bin_dir / "cosmic-ray", "dump", session], **run).stdout
    killed, survived, skipped = 0, [], 0
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None or result.get("worker_outcome") == "skipped":
            skipped += 1
            continue
        if result["test_outcome"] == "survived":
            m = item["mutations"][0]
            survived.append((module, m["start_pos"][0], m["operator_name"], m["occurrence"]))
        else:                                            # killed, incompetent (the mutant cannot even import)
            killed += 1
    return {"module": module, "killed": killed, "survived": survived, "skipped": skipped,
            "seconds": time.monotonic() - began}


def recheck(report_file: Path, timeout: float) -> list[str]:
    """Run again only the mutants a report lists as SURVIVED (after new tests): each applied with
    ``cosmic-ray apply`` to a fresh copy of the tree, then its module's tests. Returns one line per mutant."""
    bin_dir = Path(sys.executable).parent
    lines = []
    for m in re.finditer(r"^  SURVIVED (\S+):(\d+) (\S+)#(\d+): (.*)$", report_file.read_text(), re.M):
        module, line, operator, occurrence, source = m.groups()
        why = EQUIVALENT.get((module, int(line), operator))
        if why:
            lines.append(f"  equivalent {module}:{line} {operator}#{occurrence}: {source}  -- {why}")
            print(lines[-1], flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix="almadeliver-mutation-") as tmp:
            work = Path(tmp)
            _copy_tree(work)
            env = {**os.environ, "PYTHONPATH": str(work), "ALMADELIVER_HOME": str(work / ".home"),
                   "PYTHONDONTWRITEBYTECODE": "1"}
            subprocess.run([bin_dir / "cosmic-ray", "apply", f"almadeliver/{module}", operator, occurrence],
                           cwd=work, env=env, check=True, capture_output=True)
            tests = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                    f"--timeout={int(timeout)}", *TESTS[module]], cwd=work, env=env,
                                   capture_output=True, text=True)
        outcome = "killed" if tests.returncode != 0 else "SURVIVED"
        lines.append(f"  {outcome} {module}:{line} {operator}#{occurrence}: {source}")
        print(lines[-1], flush=True)
    return lines


def report(results: list[dict]) -> str:
    lines = [f"{'module':28} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'kill rate':>9}"]
    for r in results:
        equivalent = [s for s in r["survived"] if s[:3] in EQUIVALENT]
        live = [s for s in r["survived"] if s[:3] not in EQUIVALENT]
        total = r["killed"] + len(r["survived"])
        rate = (r["killed"] + len(equivalent)) / total if total else 1.0
        lines.append(f"{r['module']:28} {total:7d} {r['killed']:6d} {len(equivalent):5d} {len(live):8d} {rate:9.1%}"
                     f"   ({r['seconds'] / 60:.0f} min)")
    for r in results:
        for module, line, operator, occurrence in r["survived"]:
            why = EQUIVALENT.get((module, line, operator))
            source = (REPO / "almadeliver" / module).read_text().splitlines()[line - 1].strip()
            lines.append(f"  {'equivalent' if why else 'SURVIVED'} {module}:{line} {operator}#{occurrence}: {source}"
                         + (f"  -- {why}" if why else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules under almadeliver/ (default: {', '.join(TESTS)})")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    parser.add_argument("--recheck", type=Path, metavar="REPORT",
                        help="only run again the mutants REPORT lists as SURVIVED (after adding tests)")
    args = parser.parse_args()
    if args.recheck:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        lines = recheck(args.recheck, args.timeout)
        killed = sum(line.startswith("  killed") for line in lines)
        equivalent = sum(line.startswith("  equivalent") for line in lines)
        print(f"of {len(lines)} survivors: {killed} now killed, {equivalent} equivalent, "
              f"{len(lines) - killed - equivalent} still surviving")
        return
    unknown = [m for m in args.modules if m not in TESTS]
    if unknown:
        raise SystemExit(f"error: no tests listed for {', '.join(unknown)}; known: {', '.join(TESTS)}")
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("error: cosmic-ray is not installed: VIRTUAL_ENV=.venv uv pip install -e '.[mutation]'")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # so the copy of the tree is removed
    results = []
    for module in args.modules or list(TESTS):
        with tempfile.TemporaryDirectory(prefix="almadeliver-mutation-") as tmp:
            work = Path(tmp)
            _copy_tree(work)
            results.append(run_module(module, work, args.timeout))
        print(report(results[-1:]).splitlines()[1], flush=True)
    text = report(results)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
