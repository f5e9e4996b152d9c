"""Build the point-in-time features of one day, incrementally from per-day state.

    spark-submit jobs/build_features.py --ds 2026-01-08 --profile demo
    spark-submit jobs/build_features.py --from 2026-01-02 --to 2026-01-15 --profile demo

A range builds its days in order in one Spark application (one session, one contract
context), each day exactly as a one-day run: its own contract and atomic publish.

1. state: the day's aggregate tiles (features.tiles) from that day's raw partitions only,
   published as silver.state_<tile> ds. Earlier days' state is reused, never recomputed.
2. features: the day's impressions joined, point in time, to the tiles of each family's
   lookback (ds - lookback .. ds) and to the dimension snapshots of ds.
3. contract: the feature table's Great Expectations suite on the staged partition; a day that
   fails it is not published, and neither is its state.
4. publish the day's state and features in one commit of the silver layer.

State is staged, not published, until the features built from it pass their contract: a
day's outputs are visible together or not at all. The run holds the silver lock of ds.

Days must be built in order: the state of every earlier day in a lookback must exist.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

from features import registry as R
from features.pit import graph_cutoff
from features.tiles import TILES, build_tiles, features_from_tiles
from jobs.common import check_day, log_settings, run_range_job
from jobs.reading import RawDay, read_raw, read_state, state_table
from jobs.settings import Settings
from jobs.spark import get_spark
from warehouse import contracts, lineage
from warehouse.catalog import (
    IMPRESSION_FEATURES,
    C,
    Layer,
)
from warehouse.contracts.silver import check_feature_partition
from warehouse.store import Warehouse

log = logging.getLogger(__name__)


def run(settings: Settings, ds: str) -> int:
    """Build and publish the features of ds; returns the number of impressions featurized."""
    check_day(settings, ds)
    log_settings("build_features", settings, ds)
    started = time.perf_counter()
    spark = get_spark(settings.spark)
    store = settings.open_warehouse()
    with store.lock(Layer.SILVER, ds, job="build_features"):
        with step(spark, "read_raw", ds):
            raw = read_raw(spark, store, settings.first_day, ds)
        with step(spark, "state", ds):
            build_state(store, raw, ds)
        with step(spark, "features", ds):
            tiles = {name: read_state(spark, store, settings.first_day, name, ds) for name in TILES}
            feats = features_from_tiles(
                raw.impressions,
                tiles,
                raw.posts,
                raw.follows,
                raw.users,
                raw.authors,
                graph_cutoff(ds),
                **settings.features.model_dump(),
            )
            written = store.write_spark(IMPRESSION_FEATURES, ds, feats, publish=False)
        with step(spark, "contract", ds):
            staged = store.read_spark(spark, IMPRESSION_FEATURES, ds, staged=True).drop(C.DS)
            engine = "pandas" if written.rows <= CONTRACT_PANDAS_MAX_ROWS else "spark"
            report = check_feature_partition(ds, staged, R.feature_rules(), engine=engine)
            contracts.enforce(report)
        with step(spark, "publish", ds):
            outputs = [*(state_table(name) for name in TILES), IMPRESSION_FEATURES]
            for t in outputs:
                store.accept(t, ds, by=f"{IMPRESSION_FEATURES.qualified}'s contract")
            rows = store.publish_day(outputs, ds)[IMPRESSION_FEATURES.name].rows
    log.info("features ds=%s: %d impressions in %.1fs", ds, rows, time.perf_counter() - started)
    return rows


# A day with at most this many impressions has its contract run by GX on pandas: the columns
# the contract reads collected in one Spark job (~100 numbers a row: ~0.4 GB at the bound)
# instead of GX's Spark jobs per expectation (15 a day, a second or more each).
CONTRACT_PANDAS_MAX_ROWS = 500_000

STEPS = ("read_raw", "state", "features", "contract", "publish")  # the job groups of a run


@contextlib.contextmanager
def step(spark, name: str, ds: str):
    """Tag the Spark jobs of one step with the job group `build_features.<name>` (the UI and
    the event log attribute stages to it) and log its wall time."""
    sc = spark.sparkContext
    sc.setJobGroup(f"build_features.{name}", f"build_features ds={ds}: {name}")
    started = time.perf_counter()
    try:
        yield
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
        log.info("features ds=%s step %s: %.1fs", ds, name, time.perf_counter() - started)


def run_days(settings: Settings, days: list[str]) -> int:
    """Build several days, oldest first (each reads the state of the ones before), in this
    process's Spark session; returns the impressions featurized.

    Then the later days that the rebuild made stale (warehouse.lineage: their features read
    the state of a day rebuilt here), oldest first, until none is: a day re-simulated and
    rebuilt, by hand or by the raw Asset's run, carries forward through the days built on
    it, as `feedrank demo` rebuilding in order does."""
    built = sorted(days)
    impressions = sum(run(settings, ds) for ds in built)
    store = settings.open_warehouse()

    def stale_after(ds: str) -> list[str]:  # only the days after ds are read: none nightly
        after = [d for d in store.manifest_days(Layer.SILVER) if d > ds]
        return sorted({s.ds for s in lineage.stale_partitions(store, [Layer.SILVER], after)})

    while later := stale_after(built[-1]):
        log.info("ds=%s: its features are stale after rebuilding %s; rebuilding", later[0], built)
        impressions += run(settings, later[0])
        built.append(later[0])
    return impressions


def build_state(store: Warehouse, raw: RawDay, ds: str) -> None:
    """Stage the day's tiles, from the day's events only (published with the features)."""
    for name, tile in build_tiles(raw.impressions, raw.engagements, raw.posts).items():
        store.write_spark(state_table(name), ds, tile, publish=False)


def main(argv: list[str] | None = None) -> int:
    return run_range_job(run_days, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
