"""Benchmark: simulating days of the platform, tiny and demo sizes, without Spark.

    .venv/bin/python tests/benchmarks/bench_simulate.py [--profiles tiny demo] [--days 2]

Prints a table and writes tests/benchmarks/results/bench_simulate.json: seconds per day,
impressions per second, peak resident memory (of this process) and rows per table.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import pandas as pd

from jobs.settings import load_settings
from simulator import build_world, simulate_day

RESULTS = Path(__file__).parent / "results"


def bench(profile: str, days: int) -> dict:
    cfg = load_settings(profile).simulator
    t0 = time.perf_counter()
    world = build_world(cfg)
    world_s = time.perf_counter() - t0
    prior, per_day, rows = pd.DataFrame(), [], {}
    for day in range(min(days, cfg.days)):
        t0 = time.perf_counter()
        logs = simulate_day(world, cfg, day, prior)
        per_day.append(time.perf_counter() - t0)
        prior = pd.concat([prior, logs.engagements], ignore_index=True)
        rows = {name: len(frame) for name, frame in logs.tables().items()}
    seconds = sum(per_day) / len(per_day)
    return {
        "profile": profile,
        "world_s": round(world_s, 2),
        "s_per_day": round(seconds, 2),
        "impressions_per_day": rows["impressions"],
        "impressions_per_s": round(rows["impressions"] / seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows_last_day": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["tiny", "demo"])
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    results = [bench(p, args.days) for p in args.profiles]
    print(
        f"{'profile':<8} {'world s':>8} {'s/day':>7} {'impr/day':>10} {'impr/s':>9} {'peak MiB':>9}"
    )
    for r in results:
        print(
            f"{r['profile']:<8} {r['world_s']:>8} {r['s_per_day']:>7} "
            f"{r['impressions_per_day']:>10,} {r['impressions_per_s']:>9,} {r['peak_rss_mib']:>9}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_simulate.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
