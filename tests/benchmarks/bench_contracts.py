"""Benchmark: the raw data contracts (Great Expectations on Spark) on a real day of a profile.

    .venv/bin/python tests/benchmarks/bench_contracts.py [--profile demo] [--days 2]

Simulates the first days of the profile into a temporary data root, then times `validate`
(all six raw tables) on the last one, twice: the first run includes building the GX context.
Prints a table and writes tests/benchmarks/results/bench_contracts.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from jobs import simulate_platform as job
from jobs.common import configure_logging
from jobs.settings import load_settings

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    configure_logging()
    with tempfile.TemporaryDirectory(prefix="feedrank-bench-") as home:
        settings = load_settings(args.profile, {"home": home})
        days = settings.dates()[: args.days]
        for ds in days[:-1]:
            job.run(settings, ds)
        job.simulate(settings, days[-1])
        timings = []
        for attempt in ("first", "second"):
            started = time.perf_counter()
            reports = job.validate(settings, days[-1])
            timings.append({"run": attempt, "seconds": round(time.perf_counter() - started, 1)})
    rows = {r.table: {"rows": r.n_rows, "checks": r.n_checks} for r in reports}
    print(f"profile {args.profile}, ds={days[-1]}")
    print(f"{'table':<14} {'rows':>10} {'checks':>7}")
    for name, r in rows.items():
        print(f"{name:<14} {r['rows']:>10,} {r['checks']:>7}")
    for t in timings:
        print(f"{t['run']} validate of the staged day: {t['seconds']} s")
    RESULTS.mkdir(exist_ok=True)
    out = {"profile": args.profile, "ds": days[-1], "tables": rows, "timings": timings}
    (RESULTS / "bench_contracts.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
