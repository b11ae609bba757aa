"""Entry point of a CASA child process (see ``runtime.run_in_casa``); not for direct use."""
from __future__ import annotations

import importlib
import json
import sys
import traceback


def _main(call_file: str) -> int:
    call = json.loads(open(call_file).read())
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
