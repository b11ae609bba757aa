"""Print the rows the benchmarks appended to BENCH_SUMMARY (JSON lines) as one table; exit 1 if a
target was missed. Usage: python benchmarks/summary.py FILE"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    """Print the table; 1 if a target was missed."""
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    rows = [json.loads(line) for line in open(argv[0]) if line.strip()]
    print(f"{'benchmark':18s} {'measure':50s} {'value':>8s}  {'target':12s} result")
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:8.2f}"
        print(f"{r['benchmark']:18s} {r['what']:50s} {value:>8s}  {r['target']:12s} "
              f"{'met' if r['met'] else 'MISSED'} {r['detail']}")
    loads = sorted({r["load_before"].split("load average:")[-1].strip() for r in rows})
    print(f"load averages (1, 5, 15 min) when the benchmarks started: {' | '.join(loads)}")
    missed = [r for r in rows if not r["met"]]
    print(f"{len(rows) - len(missed)} of {len(rows)} targets met" + (", missed: " + "; ".join(
        f"{r['benchmark']}: {r['what']}" for r in missed) if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
