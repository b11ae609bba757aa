"""query: a 200-MOUS project (200 x 3 sources x 4 spw = 2400 ObsCore rows, 200 DataLink calls) on the
local archive; almadeliver's project view against astroquery's query + get_data_info, same project.
Then a catalogue of 1000 target positions (``query --targets``): the TAP queries it makes (batched
ORs of INTERSECTS(CIRCLE, s_region)) against one cone query per target, and the time of each.

Prints the times and the ratios; targets (exit 1 when one is missed): under 3 s for almadeliver's project
view (the median of --repeat runs; astroquery runs as many times), and the 1000 positions in at most 10
TAP queries. Peers' outputs: astroquery's rows name the same MOUS as our view.
Usage: python benchmarks/bench_query.py [--mous 200] [--targets 1000] [--repeat 3]
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from archive_catalogue import write_project  # noqa: E402

from almadeliver.archive.client import ArchiveClient  # noqa: E402
from almadeliver.archive.projectview import query, summary  # noqa: E402
from almadeliver.archive.science import science_query  # noqa: E402
from almadeliver.archive.tap import Selection, build_adql, cone, run_query  # noqa: E402
from almadeliver.archive.targets import Target  # noqa: E402
from almadeliver.sim.archive import LocalArchive  # noqa: E402
from common import Report, Row, Timing, parser, timed  # noqa: E402

PROJECT = "2019.1.00999.S"
TARGET_S = 3.0


def last_of(n: int, fn) -> tuple[Timing, object]:
    """``fn`` run ``n`` times: the timings and the last result."""
    out = []
    timing = timed(lambda: out.append(fn()), n)
    return timing, out[-1]


def astroquery_view(url: str):
    from astroquery.alma import Alma

    alma = Alma()
    alma.archive_url = alma.dataarchive_url = url
    rows = alma.query({"project_code": PROJECT})
    uids = sorted(set(str(u) for u in rows["member_ous_uid"]))
    return rows, alma.get_data_info(uids)


def targets_case(url: str, n: int = 1000) -> int:
    """1000 positions, 1% of them on the project's sources: batched queries vs a cone per target."""
    import random

    rng = random.Random(1000)
    targets = [Target(f"t{i}", 266.4 + 0.01 * (i % 3), -28.9, 2 / 3600) if i % 100 == 0 else
               Target(f"t{i}", rng.uniform(0, 360), rng.uniform(-80, 30), 10 / 3600) for i in range(n)]
    client = ArchiveClient(url)
    calls: list[str] = []
    client.session.hooks["response"].append(lambda r, *a, **k: calls.append(r.url) if "/tap/sync" in r.url else None)
    t0 = time.perf_counter()
    result = science_query(Selection(), client, targets=targets, with_sg=False)
    ours = time.perf_counter() - t0
    tagged = sum(1 for m in result.mous.values() if m.targets)
    batched = len(calls)
    sample = targets[:50]                    # one cone query per target, timed on 50 and scaled
    t0 = time.perf_counter()
    for t in sample:
        run_query(client, build_adql(Selection(cone=cone(str(t.ra), str(t.dec), f"{t.radius}deg"))))
    per_target = (time.perf_counter() - t0) / len(sample) * n
    print(f"--targets {n} positions  {ours:6.2f} s  {batched} TAP queries ({result.tap_calls} counted by "
          f"science_query), {len(result.mous)} MOUS tagged ({tagged} with a target)")
    print(f"one cone per target   {per_target:6.2f} s  {n} TAP queries (50 timed, scaled); "
          f"ratio {per_target / ours:.1f}x, queries {n // max(batched, 1)}x fewer")
    return batched


def main() -> int:
    from astroquery import log as astroquery_log

    ap = parser(__doc__)
    ap.add_argument("--mous", type=int, default=200, help="MOUS of the project (default 200)")
    ap.add_argument("--targets", type=int, default=1000, help="positions of the --targets case (default 1000)")
    args = ap.parse_args()
    report = Report("bench_query")
    astroquery_log.setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        write_project(Path(tmp), PROJECT, n_mous=args.mous, sources=3, spws=4)
        with LocalArchive(Path(tmp)) as archive:
            ours, view = last_of(args.repeat, lambda: query(Selection(projects=[PROJECT]), ArchiveClient(archive.url)))
            theirs, (rows, info) = last_of(args.repeat, lambda: astroquery_view(archive.url))
            batched = targets_case(archive.url, args.targets)
    print(f"almadeliver query   {ours}  {summary(view)}")
    print(f"astroquery          {theirs}  query {len(rows)} rows + get_data_info {len(info)} DataLink rows "
          f"(no MOUS grouping, no dedup, no science goal)")
    print(f"ratio astroquery/almadeliver = {theirs.median / ours.median:.1f}x")
    same = {str(u) for u in rows["member_ous_uid"]} == {m.uid for p in view.projects for m in p.mous}
    report.rows.append(Row("bench_query", "astroquery's MOUS = our view's", None, "identical", same))
    print(f"  astroquery's MOUS = our view's: {'identical' if same else 'DIFFERENT'}")
    report.target(f"project view of {args.mous} MOUS (s)", ours.median, TARGET_S, False)
    report.target(f"--targets {args.targets} positions: TAP queries", batched, 10, False)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
