"""Benchmark: the feed precompute's throughput per stage, at 1x and 2x the (user, generation)
pairs, with peak memory.

    .venv/bin/python tests/benchmarks/bench_precompute.py [--profile demo] [--ds 2026-01-17]

Needs a data root where the precompute can run for ds (what `make demo` leaves): logs and
features up to ds, a champion ranker and the day's retrieval index. Stages:
  candidates  jobs.precompute_feeds.candidates (reads logs, the index; writes the table)
  features    serving-time features of every candidate
  scoring     the champion ranker per Spark worker
  rerank      the re-ranker per user
  write       the feeds as Parquet
Each stage's input is persisted on local disk first, so each is computed once and timed
alone (the cache's own writes count in the stage that fills it). 2x doubles
the candidate rows by generating every feed twice (generated_at and 1 us later: the same
as_of), which doubles the per-pair work; per-user work is shared; candidate selection is
timed at 1x only (2x copies its output). Peak memory is the largest
resident size of this process, the JVM and the Python workers together, sampled every 0.2 s
(Spark's own page cache of the persisted stages is not resident memory).
The moonshot (issue 13): 1,000 users/s with 500 candidates each on 2 cores.
Prints a table; writes tests/benchmarks/results/bench_precompute.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path

import psutil
from pyspark import StorageLevel
from pyspark.sql import functions as F

import jobs.precompute_feeds as job
from jobs.common import configure_logging, use_tracking
from jobs.settings import load_settings
from jobs.spark import get_spark
from models.feed.scoring import rerank_feeds, score_candidates
from models.registry import versions as reg
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import FEED_CANDIDATES, IMPRESSION_FEATURES, C
from warehouse.store import Warehouse

RESULTS = Path(__file__).parent / "results"


class PeakMemory:
    """Largest summed RSS of this process and its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every_s)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(settings, ds: str, copies: int) -> dict:
    """Each stage once, its input cached on disk, so that a stage's time is its own."""
    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    t0 = time.perf_counter()
    cands = job.candidates(settings, ds)
    t_cand = time.perf_counter() - t0
    at = dt.datetime.fromisoformat(cands.generated_at)
    table = store.read_spark(spark, FEED_CANDIDATES, ds).drop(C.DS)
    copies_df = [
        table.withColumn(C.GENERATED_AT, F.lit(at + dt.timedelta(microseconds=i)).cast("timestamp"))
        for i in range(copies)
    ]
    table = copies_df[0]
    for extra in copies_df[1:]:
        table = table.unionByName(extra)
    table = table.persist(StorageLevel.DISK_ONLY)
    rows = table.count()
    feats = job.serving_frame(
        spark, store, settings.first_day, settings.features, ds, table, at
    ).persist(StorageLevel.DISK_ONLY)
    p = settings.precompute
    with (
        job.shipped_champion(spark, settings) as (_, ranker_file),
        settings.root.scratch("bench") as out,
    ):
        t_feat = _timed(feats.count)
        scored = score_candidates(feats, ranker_file).persist(StorageLevel.DISK_ONLY)
        t_score = _timed(scored.count)
        sources = table.select(C.USER_ID, C.POST_ID, C.SOURCES)
        feeds = rerank_feeds(scored, sources, p.rerank, p.feed_size)
        feeds = feeds.persist(StorageLevel.DISK_ONLY)
        t_rerank = _timed(feeds.count)
        t_write = _timed(lambda: feeds.write.parquet(str(out.path / "feeds")))
        for df in (feeds, scored, feats, table):
            df.unpersist()
    stages = {
        # 2x copies one generation's candidates, selected once: not a 2x selection.
        "candidates": t_cand if copies == 1 else float("nan"),
        "features": t_feat,
        "scoring": t_score,
        "rerank": t_rerank,
        "write": t_write,
    }
    return {"copies": copies, "users": cands.users * copies, "rows": rows, "stages_s": stages}


def prerequisites(settings, ds: str) -> str | None:
    """What the data root lacks for a precompute of ds, or None."""
    store = Warehouse(settings.root.warehouse)
    if not store.is_committed(IMPRESSION_FEATURES, ds):
        return f"no {IMPRESSION_FEATURES.qualified} ds={ds} under {settings.home}"
    if ArtifactStore(settings.root.artifacts).latest(RETRIEVAL_INDEX, upto=ds) != ds:
        return f"no {RETRIEVAL_INDEX.name} for ds={ds}"
    use_tracking(settings)
    if reg.champion_version(settings.mlflow.registered_model) is None:
        return "no champion ranker"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--ds", help="default: the day before the profile's last")
    args = parser.parse_args(argv)
    configure_logging()
    settings = load_settings(args.profile)
    ds = args.ds or settings.dates()[-2]
    missing = prerequisites(settings, ds)
    if missing:  # a benchmark that cannot run says why; `make bench` goes on with the others
        print(f"bench_precompute: not run, {missing}: run `make demo PROFILE={args.profile}` first")
        return 0
    results = []
    for copies in (1, 2):
        with PeakMemory() as mem:
            r = measure(settings, ds, copies)
        r["peak_rss_gib"] = mem.peak / 2**30
        results.append(r)
    header = f"{'x':>3} {'users':>8} {'rows':>10} " + " ".join(
        f"{s:>12}" for s in (*results[0]["stages_s"], "total")
    )
    lines = [header + f" {'peak GiB':>9}"]
    for r in results:
        known = [v for v in r["stages_s"].values() if v == v]
        total = sum(known)
        cells = [
            f"{r['users'] / v:10.0f}/s" if v == v and v > 0 else f"{'-':>12}"
            for v in r["stages_s"].values()
        ]
        cells.append(f"{r['users'] / total:10.0f}/s")
        lines.append(
            f"{r['copies']:>3} {r['users']:>8} {r['rows']:>10} "
            + " ".join(cells)
            + f" {r['peak_rss_gib']:9.2f}"
        )
        r["users_per_s"] = {
            k: (r["users"] / v if v == v and v > 0 else None) for k, v in r["stages_s"].items()
        }
        r["users_per_s_total"] = r["users"] / total
    print(f"precompute on {args.profile} ds={ds} (users per second per stage; seconds in JSON)")
    print("\n".join(lines))
    one = results[0]
    slowest = min((v, k) for k, v in one["users_per_s"].items() if v)[1]
    print(
        f"moonshot 1,000 users/s: {one['users_per_s_total']:.0f} users/s at 1x; "
        f"slowest stage: {slowest}"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_precompute.json"
    out.write_text(json.dumps({"profile": args.profile, "ds": ds, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
