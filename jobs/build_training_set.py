"""Build the training set a day at a time: each day's features with what each viewer then did.

    spark-submit jobs/build_training_set.py --ds 2026-01-08 --profile demo   # the days up to ds

`run` builds one day; `run_up_to` (the command line, and the first task of the train_rankers
DAG) every day up to ds with features and no up-to-date examples. For one day:

1. read silver.impression_features ds and the raw impressions and engagements of ds;
2. labels (features.labels): one 0/1 column per action within the attribution window, the
   click's dwell, the position and source of the impression, and the seeded sampling draw;
3. contract: gold.training_examples' Great Expectations suite on the staged partition;
4. publish gold.training_examples ds.

Every impression is kept: validation and test need the full days, and the training split
downsamples negatives when it reads (models.ranking.dataset), from the stored sample_u.
"""

from __future__ import annotations

import logging
import sys
import time

from features.labels import attach_labels
from jobs.common import log_settings, run_job
from jobs.settings import Settings
from jobs.spark import get_spark
from warehouse import contracts
from warehouse.catalog import (
    ENGAGEMENTS,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    TRAINING_EXAMPLES,
    C,
    Layer,
)
from warehouse.contracts.gold import check_training_partition
from warehouse.store import Warehouse

log = logging.getLogger(__name__)


def run(settings: Settings, ds: str) -> int:
    """Build and publish the training examples of ds; returns the number of rows."""
    log_settings("build_training_set", settings, ds)
    started = time.perf_counter()
    spark = get_spark(settings.spark)
    store = settings.open_warehouse()
    window, seed = settings.training.attribution_window_s, settings.training.seed
    with store.lock(Layer.GOLD, ds, job="build_training_set"):
        examples = attach_labels(
            store.read_spark(spark, IMPRESSION_FEATURES, ds).drop(C.DS),
            store.read_spark(spark, IMPRESSIONS, ds).drop(C.DS),
            store.read_spark(spark, ENGAGEMENTS, ds).drop(C.DS),
            attribution_window_s=window,
            seed=seed,
        )
        built = {C.ATTRIBUTION_WINDOW_S: window, C.SAMPLE_SEED: seed}  # what staleness compares
        store.write_spark(TRAINING_EXAMPLES, ds, examples, publish=False, meta=built)
        staged = store.read_spark(spark, TRAINING_EXAMPLES, ds, staged=True).drop(C.DS)
        # A real log may lack dwell on clicks (MIND has none): its examples may too.
        lacks_dwell = settings.log.format is not None
        contracts.enforce(check_training_partition(ds, staged, clicks_without_dwell=lacks_dwell))
        store.accept(TRAINING_EXAMPLES, ds, by=f"{TRAINING_EXAMPLES.qualified}'s contract")
        rows = store.publish(TRAINING_EXAMPLES, ds).rows
    log.info("training examples ds=%s: %d rows in %.1fs", ds, rows, time.perf_counter() - started)
    return rows


def missing_days(settings: Settings, days: list[str]) -> list[str]:
    """The days with features and no up-to-date training examples: none yet, built with
    another attribution window or seed, or built before the day's features were last
    published. (A day's labels are final once its engagements are published, so a day
    built after its features, with the same settings, is not rebuilt.)"""
    store = settings.open_warehouse()
    have = set(store.partitions(TRAINING_EXAMPLES))
    want = (settings.training.attribution_window_s, settings.training.seed)
    todo = []
    for ds in days:
        if not store.is_committed(IMPRESSION_FEATURES, ds):
            continue
        if ds in have:
            features_at = store.info(IMPRESSION_FEATURES, ds).written_at
            if store.info(TRAINING_EXAMPLES, ds).written_at < features_at:
                log.info("training examples ds=%s predate its features: rebuilding", ds)
            elif built_with(store, ds) != want:
                log.info("training examples ds=%s were built with other settings: rebuilding", ds)
            else:
                continue
        todo.append(ds)
    return todo


def built_with(store: Warehouse, ds: str) -> tuple[int, int] | None:
    """(attribution window, seed) a committed day was built with, as its commit recorded
    them; None if it does not say (built before commits recorded them)."""
    meta = store.info(TRAINING_EXAMPLES, ds).meta
    if C.ATTRIBUTION_WINDOW_S not in meta or C.SAMPLE_SEED not in meta:
        return None
    return meta[C.ATTRIBUTION_WINDOW_S], meta[C.SAMPLE_SEED]


def run_days(settings: Settings, days: list[str]) -> list[str]:
    """Build the given days that are not built yet; returns the days it built."""
    todo = missing_days(settings, sorted(days))
    for ds in todo:
        run(settings, ds)
    return todo


def run_up_to(settings: Settings, ds: str) -> list[str]:
    """Build the missing days of training examples up to ds (every day with features);
    the days with examples up to ds, oldest first (what train_rankers splits)."""
    store = settings.open_warehouse()
    days = [d for d in store.partitions(IMPRESSION_FEATURES) if d <= ds]
    built = run_days(settings, days)
    log.info("training examples: built %s, %d days up to %s", built or "nothing", len(days), ds)
    return [d for d in store.partitions(TRAINING_EXAMPLES) if d <= ds]


def main(argv: list[str] | None = None) -> int:
    return run_job(run_up_to, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
