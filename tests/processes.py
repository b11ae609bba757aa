"""Test helpers that act on processes: run a function as another user, act on the process of a running step.

One home for what several test files need (tests/test_diskspace.py and tests/test_validate_findings.py run
code as ``nobody``; tests/test_scale.py and tests/test_slurm.py kill or cancel the worker of a step).
"""
from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

NOBODY = 65534


def run_as_nobody(function: Callable[[], Any]) -> Any:
    """``function()`` called in a forked child that dropped root's rights (uid and gid 65534, no
    supplementary groups), so a folder without read permission stays unreadable (root reads every
    folder). Returns what it returned (JSON-able); a child that raised fails the calling test."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: drop to nobody, call, send the answer
        code = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            answer = function()
            with os.fdopen(write, "w") as out:
                json.dump(answer, out)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as inp:
        text = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"{function} raised when run as nobody"
    return json.loads(text)


@contextmanager
def act_when_running(dest: Path, step: str, act: Callable[[Any], dict | None],
                     wait_for_child: bool = True) -> Iterator[dict]:
    """Watch the run journal of ``dest`` (a thread); when ``step`` runs for a MOUS (and, with
    ``wait_for_child``, its worker process has a child, i.e. runs CASA), wait 1 s (well inside the step)
    and call ``act(process)`` (a ``psutil.Process``) once. ``act`` returns what to record, or None for
    "not this one, keep watching". Yields a dict that receives ``mous``, ``pid`` and what ``act`` returned."""
    import psutil

    from almadeliver.ids import Uid
    from almadeliver.scale.journal import StepJournal

    acted: dict = {}
    stop = threading.Event()

    def watch() -> None:
        journal = StepJournal(dest)
        while not stop.is_set():
            for marker in sorted(journal.root.glob(f"*/{step}.running")):
                mous = Uid.parse(marker.parent.name).archive
                info = journal.running(mous, step)
                if not info:
                    continue
                try:
                    proc = psutil.Process(info["pid"])
                    if wait_for_child and not proc.children(recursive=True):
                        continue
                    time.sleep(1.0)
                    done = act(proc)
                except (psutil.NoSuchProcess, KeyError):
                    continue
                if done is None:
                    continue
                acted.update(mous=mous, pid=info["pid"], **done)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield acted
    finally:
        stop.set()
        thread.join(5)
