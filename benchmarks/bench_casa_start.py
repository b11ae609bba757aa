"""What a CASA call costs almadeliver before CASA works: N calls of ``run_in_casa`` against one bare
Python that imports casatasks and makes the same N calls in-process (the floor: CASA imported once).

Each call imports casatasks and returns ``casatasks.version_string()`` (no task runs), so that
only the start-up is measured. Sides, --repeat runs each (median compared, range printed):
- bare: ``python -c "import casatasks; ..."`` doing the N calls in one process;
- warm: N ``run_in_casa`` calls from one process, each a fork of almadeliver's warm CASA process
  (``casa/warm.py``: casatasks imported once per almadeliver process);
- cold: the same with ``ALMADELIVER_CASA_WARM=0``: a new Python per call, importing casatasks.
The peers' answers are checked to be the same (the CASA version string). Targets (exit 1 when
missed): warm <= 1.5x bare in CPU seconds for N calls, and cold / warm >= 2 in CPU seconds.
Usage: python benchmarks/bench_casa_start.py [--calls 6] [--repeat 3]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Report, parser, timed

CALLER = """
import json, sys
from pathlib import Path
from almadeliver.casa.runtime import run_in_casa, task_in_casa
n, work = int(sys.argv[1]), Path(sys.argv[2])
print(json.dumps([run_in_casa(task_in_casa, {"task": "version_string"}, workdir=work) for _ in range(n)]))
"""
BARE = """
import json, sys
from almadeliver.casa.runtime import offline_environment
offline_environment()
import casatasks
print(json.dumps([casatasks.version_string() for _ in range(int(sys.argv[1]))]))
"""


def main() -> int:
    """Run the three sides, print their times and the targets; 1 when a target is missed, else 0."""
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=6, help="CASA calls per run (default 6)")
    args = p.parse_args()
    report = Report("bench_casa_start")
    answers: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-casa-start-") as tmp:
        def side(name: str, code: str, env: dict[str, str]):
            def run() -> None:
                r = subprocess.run([sys.executable, "-c", code, str(args.calls), tmp], env=env,
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
                    raise SystemExit(f"bench_casa_start: the {name} side failed: {last}")
                answers[name] = json.loads(r.stdout.strip().splitlines()[-1])
            return run

        env = dict(os.environ)
        bare = timed(side("bare", BARE, env), args.repeat)
        warm = timed(side("warm", CALLER, {**env, "ALMADELIVER_CASA_WARM": "1"}), args.repeat)
        cold = timed(side("cold", CALLER, {**env, "ALMADELIVER_CASA_WARM": "0"}), args.repeat)
    for name, t in (("bare", bare), ("warm", warm), ("cold", cold)):
        print(f"  {name:5s} {args.calls} calls: {t}; CPU median {t.cpu_median:.2f} s", flush=True)
    same = len({json.dumps(a) for a in answers.values()}) == 1 and len(answers["bare"]) == args.calls
    report.target("every side answers the same CASA version", 1.0 if same else 0.0, 1.0, True,
                  ", ".join(f"{k}: {v[0] if v else None}" for k, v in answers.items()))
    report.target(f"warm / bare CPU, {args.calls} CASA calls", warm.cpu_median / bare.cpu_median, 1.5, False)
    report.target(f"cold / warm CPU, {args.calls} CASA calls", cold.cpu_median / warm.cpu_median, 2.0, True,
                  f"wall {cold.median / warm.median:.2f}x")
    return report.finish()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
