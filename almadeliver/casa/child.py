"""Entry point of a CASA child process (see ``runtime.run_in_casa``); not for direct use."""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import traceback

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """End this CASA process when the one that started it dies (a killed worker), on Linux."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's wait() is all we have
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _main(call_file: str) -> int:
    call = json.loads(open(call_file).read())
    _die_with_parent(call["parent"])
    module_name, func_name = call["func"].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        outcome = {"value": func(**call["kwargs"])}
        code = 0
    except BaseException as exc:  # report every failure, SystemExit from ALMA scripts included
        traceback.print_exc()
        message = str(exc) if not isinstance(exc, SystemExit) else f"the script exited: {exc.code}"
        outcome = {"error": message or type(exc).__name__}
        code = 1
    with open(call["result"], "w") as fh:
        json.dump(outcome, fh, default=str)
    return code


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
