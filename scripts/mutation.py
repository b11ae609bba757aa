"""Mutation testing of the modules where a wrong answer costs data or science, with cosmic-ray.

Run by hand (not part of `make test`; minutes to hours, one CPU per run):

    VIRTUAL_ENV=.venv uv pip install -e '.[mutation]'      # cosmic-ray
    .venv/bin/python scripts/mutation.py                    # every module below
    .venv/bin/python scripts/mutation.py casa/diskspace.py transfer/extract.py   # some of them
    .venv/bin/python scripts/mutation.py delivery/validate.py --limit 80 --minutes 16   # 80, over all functions
    .venv/bin/python scripts/mutation.py casa/imaging/restored.py::remap_spw,split_spw_map      # only these functions

Each module is mutated in a copy of the work tree (never in place: an interrupted run leaves the sources
as they were) and each mutant runs only that module's fast tests (the TESTS table), stopping at the first
failure. Prints, per module: mutants, killed, survived, the kill rate; and every survivor (file, line,
operator) so it can be killed by a new test or listed in EQUIVALENT below with the reason it cannot be.
``--limit N`` runs a random sample of N of a module's mutants, stratified by function (each function,
method and the module level gets its share of N in proportion to its mutants, at least one each while N
allows: the sample covers the whole file, not its first lines); seeded: the same N give the same sample;
the report says how many of how many. ``MODULE::f,g`` mutates only the functions (or methods) named f
and g, found by name (so the choice survives a move of the code within the file); a module in FUNCTIONS
below is limited to its functions unless named with ``::*``.
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
# the copy of the tree is not beside ../shared: point the tests at the real ALMA files (tests/conftest.py)
_REAL = {"ALMADELIVER_REAL_FIXTURES": os.environ.get("ALMADELIVER_REAL_FIXTURES",
                                                     str(REPO.parent / "shared" / "fixtures" / "real"))}

# the 11 s test that reads /proc of a running download for the password: no mutant of these modules is
# killed by it alone, and it would double every mutant's run
_NO_PASSWORD = "--deselect=tests/test_download_units.py::test_password_never_on_the_command_line"
# the download tests that ask ranges, split, steal and count the archive's streams and bytes
_RANGE_TESTS = [f"tests/test_download.py::{t}" for t in (
    "test_parallel_3_and_split_stay_within_3_streams_and_send_every_byte_once",
    "test_faults_with_parallel_3_send_again_only_what_failed", "test_split_fetches_one_file_as_ranges",
    "test_dropped_connections_resume_byte_identical", "test_range_ignored_restarts_from_zero_not_corrupted",
    "test_a_206_for_another_range_restarts_from_zero_not_spliced", "test_html_page_is_refused_and_nothing_saved",
    "test_proprietary_401_is_not_retried_and_login_fixes_it", "test_404_is_not_retried")]
# test_image_plan's tests of the comparison maths, the CLI and the quick-look plot (8 s): no column or spw choice
_NOT_SPW = [f"--deselect=tests/test_image_plan.py::{t}" for t in (
    "test_comparison_maths_and_record", "test_cli_list_dry_run_and_refusal",
    "test_quicklook_draws_new_beside_delivered_on_one_scale_with_beam_and_numbers")]
# module (under almadeliver/) -> the tests that exercise it without a simulated project or CASA run
TESTS = {
    "casa/diskspace.py": ["tests/test_diskspace.py"],
    "transfer/extract.py": ["tests/test_extract.py"],
    "transfer/journal.py": ["tests/test_journal.py"],
    "transfer/plan.py": ["tests/test_download_units.py", _NO_PASSWORD],
    "transfer/download.py": ["tests/test_download_units.py", _NO_PASSWORD, "tests/test_download.py",
                             "tests/test_faults.py::test_a_tarball_corrupted_in_transit_once_is_fetched_again_and_unpacks"],
    "transfer/ranges.py": ["tests/test_download_units.py", _NO_PASSWORD, *_RANGE_TESTS],
    "transfer/stream.py": ["tests/test_download_units.py", _NO_PASSWORD, *_RANGE_TESTS],
    # (validate's CLI usage test: 10 s of subprocesses for the CLI's own checks; test_library_errors keeps
    # validate()'s errors)
    "delivery/validate.py": ["tests/test_validate_findings.py", "tests/test_validate.py",
                             "--deselect=tests/test_validate.py::test_cli_bad_usage"],
    "packaging/tarballs.py": ["tests/test_tarballs.py", "tests/test_extract.py"],
    "casa/imaging/restored.py": ["tests/test_image_plan.py", *_NOT_SPW],
    "casa/imaging/overrides.py": ["tests/test_image_plan.py", *_NOT_SPW],
    "casa/imaging/jobs.py": ["tests/test_image_plan.py", *_NOT_SPW],
}
# module -> the functions mutated in it (the rest of the module is not where the choice is made):
# the calibrated column and the spw ids tclean reads in a restored MS
FUNCTIONS = {
    "casa/imaging/restored.py": ["calibrated_column", "restore_spw_record", "split_spw_map", "science_spws",
                                 "split_ids", "remap_spw", "rewrite_vis"],
    "casa/imaging/overrides.py": ["spw_ids", "_narrow_spw"],
    "casa/imaging/jobs.py": ["_read_columns"],
}
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_.*_(RShift|LShift|BitOr|BitAnd|BitXor|Pow|Mod|FloorDiv)$",
    r"core/ReplaceBinaryOperator_(RShift|LShift|BitOr|BitAnd|BitXor|Pow|Mod)_.*",
]
# (module, line text, operator) of survivors judged equivalent: the mutant behaves like the original
_NEG1 = "the only level below 0 is -1 (SPACESAVING=-1): min(-1, 1) is -1, -1 is a cached int, need_mb(-1) is 0"
_RACE_SHRINK = ("copy_file_range returns 0 only when the tarball shrinks between the check of its members' "
                "extent and the copy (a race); it never returns a negative count")
_SAME_MAPS = ("maps[-1] for maps[0], mss[-1] for mss[0]: in this branch every MS has the same map, and the MS "
              "is only named in remap_spw's error")
_ENUM_STATE = ("a journal state is always a FileState member (loaded with FileState(value), set with the module's "
               "constants): enum members are singletons, so `is` and `==` agree")
# keys: (module, the line's text stripped, operator) for every mutant of that operator on that line, or with the occurrence
# last for one mutant only (e.g. a number made -1, when the same number made +1 is caught)
EQUIVALENT: dict[tuple, str] = {
    ("casa/diskspace.py", 'continue', "core/ReplaceContinueWithBreak"):
        "a file removed between the listing and its stat (a restore deleting as it goes): only a race reaches it",
    ("casa/diskspace.py", 'except FileNotFoundError:  # removed while we walk (a restore deletes as it goes)', "core/ExceptionReplacer"):
        "a file removed between the listing and its stat (a restore deleting as it goes): only a race reaches it",
    ("casa/diskspace.py", 'if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):', "core/NumberReplacer"): "folders and single-link files never repeat an inode",
    ("casa/diskspace.py", 'if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):', "core/ReplaceAndWithOr"): "folders and single-link files never repeat an inode",
    ("casa/diskspace.py", 'if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):', "core/ReplaceComparisonOperator_Gt_NotEq"): "st_nlink is never 0 for a listed file",
    ("casa/diskspace.py", 'if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):', "core/ReplaceComparisonOperator_Gt_GtE"): "folders and single-link files never repeat an inode",
    ("casa/diskspace.py", 'if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):', "core/ReplaceFalseWithTrue"):
        "is_dir following links differs only for a link, whose own st_nlink is 1: the test before it is false",
    ("casa/diskspace.py", 'return min(level, ACRENORM_CAP) if self.acrenorm and level >= 0 else level', "core/ReplaceComparisonOperator_GtE_Gt"): "min(0, 1) is 0: level 0 is the same either way",
    ("casa/diskspace.py", 'return level == -1 or self.need_mb(level) <= self.free_mb', "core/ReplaceUnaryOperator_USub_Invert"): _NEG1,
    ("casa/diskspace.py", 'if self._thread:', "core/AddNot"):
        "not joining the stopped thread: it ends at its next wait, which returns at once; nothing reads it after",
    ("casa/diskspace.py", '@dataclass(frozen=True)', "core/ReplaceTrueWithFalse"): "frozen=False: nothing assigns to an estimate",
    ("casa/diskspace.py", 'return min(level, ACRENORM_CAP) if self.acrenorm and level >= 0 else level', "core/ReplaceComparisonOperator_GtE_NotEq"): _NEG1,
    ("casa/diskspace.py", 'return min(level, ACRENORM_CAP) if self.acrenorm and level >= 0 else level', "core/NumberReplacer"): _NEG1,
    ("casa/diskspace.py", 'if level == -1:', "core/ReplaceComparisonOperator_Eq_Is"): _NEG1,
    ("casa/diskspace.py", 'if level == -1:', "core/ReplaceComparisonOperator_Eq_LtE"): _NEG1,
    ("casa/diskspace.py", 'return level == -1 or self.need_mb(level) <= self.free_mb', "core/ReplaceComparisonOperator_Eq_Lt"): _NEG1,
    ("casa/diskspace.py", 'return level == -1 or self.need_mb(level) <= self.free_mb', "core/ReplaceComparisonOperator_Eq_LtE"): _NEG1,
    ("casa/diskspace.py", 'return level == -1 or self.need_mb(level) <= self.free_mb', "core/ReplaceComparisonOperator_Eq_Is"): _NEG1,
    ("casa/diskspace.py", 'return level == -1 or self.need_mb(level) <= self.free_mb', "core/NumberReplacer"): _NEG1,
    ("casa/diskspace.py", 'interval: float = 1.0', "core/NumberReplacer"): "the default interval only sets how often the sampler samples",
    ("casa/diskspace.py", 'peak: int = 0', "core/NumberReplacer"): "peak and last are set by the first sample, taken on entry",
    ("casa/diskspace.py", 'last: int = 0', "core/NumberReplacer"): "peak and last are set by the first sample, taken on entry",
    ("casa/diskspace.py", '_stop: threading.Event = field(default_factory=threading.Event, repr=False)', "core/ReplaceFalseWithTrue"): "repr only",
    ("casa/diskspace.py", '_thread: threading.Thread | None = field(default=None, repr=False)', "core/ReplaceFalseWithTrue"): "repr only",
    ("casa/diskspace.py", 'self._thread = threading.Thread(target=self._run, name="disk-sampler", daemon=True)', "core/ReplaceTrueWithFalse"): "daemon=False: the thread is stopped and joined on exit",
    ("packaging/tarballs.py", 'with open(src, "rb", buffering=0) as data:', "core/NumberReplacer"):
        "buffering=+-1: the source is read in chunks of a given size; buffering changes the system calls only",
    ("packaging/tarballs.py", 'self._queue: queue.Queue = queue.Queue(maxsize=8)', "core/NumberReplacer"): "the hashing queue's depth bounds memory only",
    ("packaging/tarballs.py", '_CHUNK = 4 << 20', "core/NumberReplacer"):
        "the read size (4 MiB; 5 << 20, 3 << 20, 4 << 21 alike) only sets how many reads a file takes (0 is caught)",
    ("packaging/tarballs.py", 'with open(part, "wb", buffering=0) as fh:', "core/NumberReplacer"):
        "buffering=+-1: the tarball is written through a buffer instead of straight; same bytes, same hash",
    ("packaging/tarballs.py", 'compresslevel=6) as gz:', "core/NumberReplacer"):
        "the gzip level trades size for time; the bytes stay deterministic and gunzip to the same tar (tested)",
    ("delivery/validate.py", 'f"delivery {kind} tarball inside the tree ({size / 1e6:.1f} MB)",', "core/NumberReplacer"):
        "1e6 +- 1: one byte per MB, below the 0.1 MB the message shows (but at an exact half-way size)",
    ("delivery/validate.py", 'if files.get(f"{t}.xml", 0) <= 0 and files.get(f"{t}.bin", 0) <= 0)', "core/NumberReplacer", 16):
        "an ASDM table XML of 1 byte counted as missing: it is as unusable as an empty one (no XML fits in 1 byte)",
    ("delivery/validate.py", 'if files.get(f"{t}.xml", 0) <= 0 and files.get(f"{t}.bin", 0) <= 0)', "core/NumberReplacer", 20):
        "an ASDM table .bin of 1 byte counted as missing: as unusable as an empty one",
    ("delivery/validate.py", 'if m.ebs_in_scripts and m.flavour is not Flavour.CYCLE0:', "core/ReplaceComparisonOperator_IsNot_NotEq"):
        "Flavour is an Enum: its members are singletons, identity and equality agree",
    ("delivery/validate.py", 'with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:', "core/ReplaceTrueWithFalse"):
        "lazy_load_hdus=False reads every HDU header at open instead of on demand; the BEAMS search reads them all anyway",
    ("delivery/validate.py", 'for i in range(1, header.get("NAXIS", 0) + 1):', "core/NumberReplacer"):
        "the NAXIS default (0 made 1) is used only without NAXIS, which FITS requires (astropy refuses such a file)",
    ("delivery/validate.py", 'if files.get(f"{t}.xml", 0) <= 0 and files.get(f"{t}.bin", 0) <= 0)', "core/ReplaceComparisonOperator_LtE_Eq"):
        "file sizes are never negative: <= 0 and == 0 agree",
    ("delivery/validate.py", 'if n.endswith((".ms.split.cal", ".ms")) or n == "calibrated.ms"}', "core/ReplaceComparisonOperator_Eq_Is"):
        "calibrated.ms ends with .ms: the test before the or already takes it",
    ("delivery/validate.py", 'naming_severity = I if m.flavour is Flavour.CYCLE0 else W', "core/ReplaceComparisonOperator_Is_LtE"):
        "Flavour is a str Enum and no flavour's value sorts before 'cycle0': <= and is agree",
    ("delivery/validate.py", 'if m.flavour is Flavour.UNKNOWN:', "core/ReplaceComparisonOperator_Is_GtE"):
        "Flavour is a str Enum and no flavour's value sorts after 'unknown': >= and is agree",
    ("delivery/validate.py", 'need = abs(header.get("BITPIX", 8)) // 8 if header.get("NAXIS", 0) else 0', "core/NumberReplacer", 46):
        "the NAXIS default (0 made 1) is used only without NAXIS, which FITS requires (astropy refuses such a file)",
    ("delivery/validate.py", 'if files.get(f"{t}.xml", 0) <= 0 and files.get(f"{t}.bin", 0) <= 0)', "core/NumberReplacer", 15):
        "a missing .xml counted as size -1 instead of 0: missing and empty alike either way",
    ("transfer/download.py", 'if s.done > 0 or s.end < j.f.size:       # a Range will be asked: no thieves until it is proven', "core/ReplaceComparisonOperator_Lt_NotEq"):
        "a segment never ends past its file: s.end < size and s.end != size agree",
    ("transfer/download.py", "result.status, result.extracted = FileStatus.ALREADY, state == EXTRACTED", "core/ReplaceComparisonOperator_Eq_Is"):
        _ENUM_STATE,
    ("transfer/download.py", "if state == EXTRACTED or (state == DOWNLOADED and final.is_file() and final.stat().st_size == f.size):",
     "core/ReplaceComparisonOperator_Eq_Is"): _ENUM_STATE,
    ("transfer/ranges.py", "step = max(-(-size // max(n, 1)), 1)", "core/NumberReplacer", 7):
        "max(n, 0) for max(n, 1): every caller asks at least one range (1, or --split N of 2 or more)",
    ("transfer/journal.py", 'if state != PARTIAL:', "core/ReplaceComparisonOperator_NotEq_Lt"):
        "FileState is a str Enum: 'downloaded' and 'extracted' both sort before 'partial', so != and < agree",
    ("transfer/journal.py", 'if state != PARTIAL:', "core/ReplaceComparisonOperator_NotEq_IsNot"):
        "callers pass FileState members (singletons): identity and equality agree",
    ("transfer/journal.py", 'for _attempt in range(2):', "core/NumberReplacer"):
        "range(3): a third attempt finds the reserve gone and returns False, as the loop's end does "
        "(range(1) is caught: the save after giving up the reserve)",
    ("transfer/journal.py", 'return False', "core/ReplaceFalseWithTrue", 3):
        "the save's last line is not reached: the second full-disk failure finds the reserve gone and returns "
        "False in the loop (only another process making a new reserve between the two could reach it)",
    ("casa/imaging/restored.py", 'return mss, ([remap_spw(s, maps[0], mss[0]) for s in spw] if isinstance(spw, (list, tuple))', "core/NumberReplacer"): _SAME_MAPS,
    ("casa/imaging/restored.py", 'else remap_spw(spw, maps[0], mss[0]))', "core/NumberReplacer"): _SAME_MAPS,
    ("transfer/extract.py", '_CHUNK = 1 << 26          # bytes per copy_file_range call', "core/NumberReplacer", 2): "the chunk only sets how many bytes one copy_file_range moves",
    ("transfer/extract.py", '_CHUNK = 1 << 26          # bytes per copy_file_range call', "core/NumberReplacer", 3): "the chunk only sets how many bytes one copy_file_range moves",
    ("transfer/extract.py", 'end = max((m.offset_data + m.size for m in members if m.isreg()), default=0)', "core/NumberReplacer"):
        "default=+-1 (a tarball of folders only): never above the tarball's size, at least the 1024-byte end marker",
    ("transfer/extract.py", 'if end > size:', "core/ReplaceComparisonOperator_Gt_Is"):
        "tarfile itself raises 'unexpected end of data' for a member whose data passes the end of the file "
        "(Python 3.10-3.12): the check is a second line, refused either way",
    ("transfer/extract.py", 'real = os.path.realpath(path, strict=True)', "core/ReplaceTrueWithFalse"):
        "strict=False: a path that does not resolve (a dangling or looping link left in the destination) is "
        "refused either way: OSError with strict, outside or not a folder without",
    ("transfer/extract.py", 'fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)', "core/NumberReplacer"):
        "the getattr default is used only where os has no O_CLOEXEC (not Linux); the creation mode is replaced "
        "by fchmod before the file is closed",
    ("transfer/extract.py", 'if n == 0:', "core/ReplaceComparisonOperator_Eq_Lt"): _RACE_SHRINK,
    ("transfer/extract.py", 'if n == 0:', "core/ReplaceComparisonOperator_Eq_LtE"): _RACE_SHRINK,
    ("transfer/extract.py", 'if rest.count(0) != len(rest):', "core/ReplaceComparisonOperator_NotEq_Lt"):
        "a count of zero bytes is never above the number of bytes: != and < agree",
    ("transfer/extract.py", 'data = os.pread(src, min(left, 1 << 22), offset)', "core/NumberReplacer"):
        "the pread piece size (4 MiB; 2 << 22 is 8, 1 << 21 is 2) only sets how many reads a copy takes "
        "(0 << 22 reads nothing and is caught)",
    ("transfer/extract.py", 'with open(tarball, "rb", buffering=0) as raw:', "core/NumberReplacer"):
        "buffering=+-1: only the file's descriptor is used (copy_file_range, pread), never its buffer",
}


def equivalent(module: str, line: int, operator: str, occurrence: int) -> str | None:
    """The reason a mutant is equivalent, or None (looked up by the text of its line, which edits elsewhere
    in the module do not move)."""
    lines = (REPO / "almadeliver" / module).read_text().splitlines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return EQUIVALENT.get((module, text, operator, occurrence)) or EQUIVALENT.get((module, text, operator))


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


def function_lines(source: str, names: list[str]) -> list[tuple[int, int]]:
    """First and last line of each function or method of ``source`` called one of ``names`` (decorators
    included). Raises SystemExit naming those it does not find."""
    import ast

    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found.setdefault(node.name, []).append((first, node.end_lineno))
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"error: no function {', '.join(missing)} in the module (moved? update FUNCTIONS)")
    return [r for n in names for r in found[n]]


def enclosing(source: str) -> dict[int, str]:
    """Line -> the name of the innermost function (``Class.method`` for a method) holding it; lines
    outside every function are absent (module level: constants, imports, class bodies)."""
    import ast

    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                for line in range(first, child.end_lineno + 1):
                    names[line] = name                  # inner functions overwrite below
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def stratified_sample(items: list, strata: list[str], limit: int, seed: int) -> list:
    """A seeded random sample of ``limit`` of ``items`` spread over their ``strata`` (one per item: the
    function it mutates): each stratum gets its share of ``limit`` in proportion to its size (largest
    remainders first, then at least one each while the limit allows), drawn at random within it. So a
    sample covers every function of the module, not the first N mutants nor one crowded function."""
    import random

    rng = random.Random(seed)
    groups: dict[str, list] = {}
    for item, stratum in zip(items, strata):
        groups.setdefault(stratum, []).append(item)
    shares = {g: limit * len(v) / len(items) for g, v in groups.items()}
    take = {g: int(x) for g, x in shares.items()}
    order = sorted(groups, key=lambda g: (-(shares[g] - take[g]), rng.random()))
    for g in order:                                    # the rest of the limit: largest remainders first
        if sum(take.values()) >= limit:
            break
        take[g] += 1
    for g in sorted(groups, key=lambda g: rng.random()):  # every function at least once, if room is left
        if take[g] == 0 and sum(take.values()) < limit:
            take[g] = 1
    while sum(take.values()) > limit:                   # the minimum of one pushed it over: trim the biggest
        biggest = max(take, key=lambda g: take[g])
        take[biggest] -= 1
    return [item for g, v in groups.items() for item in rng.sample(v, min(take[g], len(v)))]


def _select(session: Path, work: Path, module: str, functions: list[str] | None, limit: int | None) -> tuple[int, int]:
    """Mark as skipped, in the cosmic-ray session, the mutants outside ``functions`` and those beyond a
    seeded random sample of ``limit`` stratified by function (``stratified_sample``). Returns (mutants in
    scope, mutants to run)."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    source = (work / "almadeliver" / module).read_text()
    ranges = function_lines(source, functions) if functions else None
    where = enclosing(source)
    with use_db(str(session)) as db:
        # job ids are random uuids: order by the mutation itself, so the same limit gives the same sample
        pending = sorted(db.pending_work_items, key=lambda w: (w.mutations[0].start_pos, w.mutations[0].operator_name,
                                                               w.mutations[0].occurrence))
        inside = [w for w in pending if ranges is None or any(
            a <= w.mutations[0].start_pos[0] <= b for a, b in ranges)]
        keep = inside if limit is None or limit >= len(inside) else stratified_sample(
            inside, [where.get(w.mutations[0].start_pos[0], "<module>") for w in inside], limit, seed=limit)
        keep_ids = {w.job_id for w in keep}
        skip = [w.job_id for w in pending if w.job_id not in keep_ids]
        if skip:
            db.set_multiple_results(skip, WorkResult(output="not in the functions or the sample",
                                                     worker_outcome=WorkerOutcome.SKIPPED))
    return len(inside), len(keep)


def run_module(module: str, work: Path, timeout: float, functions: list[str] | None = None,
               limit: int | None = None, minutes: float | None = None) -> dict:
    """Mutate ``module`` in ``work`` (a copy of the tree) and run its tests against every mutant (of
    ``functions`` only, when given; a seeded sample of ``limit`` of them, when given; those run within
    ``minutes``, when given)."""
    bin_dir = Path(sys.executable).parent
    cfg, session = work / "cr.toml", work / f"{module.replace('/', '_')}.sqlite"
    cfg.write_text(_config(module, TESTS[module], timeout))
    # no .pyc: a mutant of the same size written within the second of the last one would run the old bytecode
    env = {**os.environ, "PYTHONPATH": str(work), "ALMADELIVER_HOME": str(work / ".home"), "PYTHONDONTWRITEBYTECODE": "1", **_REAL}
    run = dict(cwd=work, env=env, check=True, capture_output=True, text=True)
    subprocess.run([bin_dir / "cosmic-ray", "init", cfg, session], **run)
    subprocess.run([bin_dir / "cr-filter-operators", session, cfg], **run)
    in_scope, _ = _select(session, work, module, functions, limit)
    baseline = subprocess.run([bin_dir / "cosmic-ray", "baseline", cfg], cwd=work, env=env, capture_output=True,
                              text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{module}: the tests fail without any mutation:\n{baseline.stdout[-2000:]}")
    began = time.monotonic()
    # cosmic-ray runs the mutants in random order: stopped at the time budget, those it ran are a random sample
    exec_ = subprocess.Popen([bin_dir / "cosmic-ray", "exec", cfg, session], cwd=work, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        exec_.wait(timeout=minutes * 60 if minutes else None)
    except subprocess.TimeoutExpired:
        os.killpg(exec_.pid, signal.SIGKILL)
        exec_.wait()
    except BaseException:
        os.killpg(exec_.pid, signal.SIGKILL)
        raise
    dump = subprocess.run([bin_dir / "cosmic-ray", "dump", session], **run).stdout
    killed, survived, skipped = 0, [], 0
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None or result.get("worker_outcome") == "skipped":     # not run (filtered, sampled out)
            skipped += 1
            continue
        if result["test_outcome"] == "survived":
            m = item["mutations"][0]
            survived.append((module, m["start_pos"][0], m["operator_name"], m["occurrence"]))
        else:                                            # killed, incompetent (the mutant cannot even import)
            killed += 1
    name = module + (f"::{','.join(functions)}" if functions and functions != FUNCTIONS.get(module) else "")
    return {"module": name, "killed": killed, "survived": survived, "skipped": skipped, "in_scope": in_scope,
            "sampled": killed + len(survived), "seconds": time.monotonic() - began}


def recheck(report_file: Path, timeout: float) -> list[str]:
    """Run again only the mutants a report lists as SURVIVED (after new tests): each applied with
    ``cosmic-ray apply`` to a fresh copy of the tree, then its module's tests. Returns one line per mutant."""
    bin_dir = Path(sys.executable).parent
    lines = []
    for m in re.finditer(r"^  SURVIVED (\S+):(\d+) (\S+)#(\d+): (.*)$", report_file.read_text(), re.M):
        module, line, operator, occurrence, source = m.groups()
        why = equivalent(module, int(line), operator, int(occurrence))
        if why:
            lines.append(f"  equivalent {module}:{line} {operator}#{occurrence}: {source}  -- {why}")
            print(lines[-1], flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix="almadeliver-mutation-") as tmp:
            work = Path(tmp)
            _copy_tree(work)
            env = {**os.environ, "PYTHONPATH": str(work), "ALMADELIVER_HOME": str(work / ".home"),
                   "PYTHONDONTWRITEBYTECODE": "1", **_REAL}
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
    lines = [f"{'module':28} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'kill rate':>9}"
             "   (killed or equivalent)"]
    for r in results:
        same = [s for s in r["survived"] if equivalent(*s)]
        live = [s for s in r["survived"] if not equivalent(*s)]
        total = r["killed"] + len(r["survived"])
        rate = (r["killed"] + len(same)) / total if total else 1.0
        sample = f", a sample of {r['sampled']} of {r['in_scope']}" if r["sampled"] < r["in_scope"] else ""
        lines.append(f"{r['module']:28} {total:7d} {r['killed']:6d} {len(same):5d} {len(live):8d} {rate:9.1%}"
                     f"   ({r['seconds'] / 60:.0f} min{sample})")
    for r in results:
        for module, line, operator, occurrence in r["survived"]:
            why = equivalent(module, line, operator, occurrence)
            source = (REPO / "almadeliver" / module).read_text().splitlines()[line - 1].strip()
            lines.append(f"  {'equivalent' if why else 'SURVIVED'} {module}:{line} {operator}#{occurrence}: {source}"
                         + (f"  -- {why}" if why else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules under almadeliver/ (default: {', '.join(TESTS)})")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    parser.add_argument("--limit", type=int, help="run a seeded random sample of this many mutants per module")
    parser.add_argument("--minutes", type=float,
                        help="stop each module's run after this many minutes (the mutants run are a random sample)")
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
    unknown = [m for m in args.modules if m.partition("::")[0] not in TESTS]
    if unknown:
        raise SystemExit(f"error: no tests listed for {', '.join(unknown)}; known: {', '.join(TESTS)}")
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("error: cosmic-ray is not installed: VIRTUAL_ENV=.venv uv pip install -e '.[mutation]'")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # so the copy of the tree is removed
    results = []
    for spec in args.modules or list(TESTS):
        module, _, names = spec.partition("::")
        functions = None if names == "*" else names.split(",") if names else FUNCTIONS.get(module)
        with tempfile.TemporaryDirectory(prefix="almadeliver-mutation-") as tmp:
            work = Path(tmp)
            _copy_tree(work)
            results.append(run_module(module, work, args.timeout, functions, args.limit, args.minutes))
        print(report(results[-1:]).splitlines()[1], flush=True)
    text = report(results)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
