"""Benchmark: the incremental features job (jobs/build_features.py) at growing sizes.

    .venv/bin/python tests/benchmarks/bench_features.py [--sizes tiny demo demo2x] [--days 2]

For each size: simulates `days` days into a temporary data root (published without the raw
contracts, which bench_contracts.py times), builds the features of every day in order, and
reports the last day: wall time (state + features + contract + publish), impressions per
second, and the peak resident memory of this process and its children (the Spark JVM),
sampled every 0.2 s. `demo2x` is the demo profile with twice the users, authors and posts:
a sampled step towards `large`. Prints a table; writes results/bench_features.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil

from jobs import build_features, simulate_platform
from jobs.common import configure_logging
from jobs.settings import load_settings

RESULTS = Path(__file__).parent / "results"
SIZES = {
    "tiny": ("tiny", {}),
    "demo": ("demo", {}),
    "demo2x": (
        "demo",
        {
            "n_users": 20_000,
            "n_person_authors": 16_000,
            "n_authors": 100_000,
            "posts_per_day": 14_400,
        },
    ),
}


class PeakMemory:
    """Peak RSS of this process plus its children, sampled in a thread."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            procs = [me, *me.children(recursive=True)]
            rss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):  # a child may exit between the two calls
                    rss += p.memory_info().rss
            self.peak = max(self.peak, rss)
            time.sleep(self.every_s)


def bench(size: str, days: int) -> dict:
    profile, sim = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="feedrank-bench-") as home:
        settings = load_settings(profile, {"home": home, "simulator": sim})
        dates = settings.dates()[:days]
        for ds in dates:
            simulate_platform.run(settings, ds)  # publish refuses a day not validated
        per_day = []
        with PeakMemory() as mem:
            for ds in dates:
                started = time.perf_counter()
                rows = build_features.run(settings, ds)
                per_day.append((time.perf_counter() - started, rows))
    seconds, rows = per_day[-1]
    return {
        "size": size,
        "days_built": len(dates),
        "impressions_last_day": rows,
        "seconds_last_day": round(seconds, 1),
        "impressions_per_s": round(rows / seconds),
        "seconds_per_day": [round(s, 1) for s, _ in per_day],
        "peak_rss_mib": round(mem.peak / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    configure_logging()
    results = [bench(size, args.days) for size in args.sizes]
    print(f"{'size':<8} {'impr/day':>9} {'s (last day)':>13} {'impr/s':>8} {'peak MiB':>9}")
    for r in results:
        print(
            f"{r['size']:<8} {r['impressions_last_day']:>9,} {r['seconds_last_day']:>13} "
            f"{r['impressions_per_s']:>8,} {r['peak_rss_mib']:>9}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_features.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
