"""Build the point-in-time features of one day, incrementally from per-day state.

    spark-submit jobs/build_features.py --ds 2026-01-08 --profile demo

1. state: the day's aggregate tiles (features.tiles) from that day's raw partitions only,
   published as silver.state_<tile> ds. Earlier days' state is reused, never recomputed.
2. features: the day's impressions joined, point in time, to the tiles of each family's
   lookback (ds - lookback .. ds) and to the dimension snapshots of ds.
3. contract: the feature table's Great Expectations suite on the staged partition; a day that
   fails it is not published.
4. publish silver.impression_features ds.

Days must be built in order: the state of every earlier day in a lookback must exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sys
import time

from features import registry as R
from features.tiles import TILES, build_tiles, features_from_tiles, lookback_days
from jobs.common import check_day, days_before, log_settings, run_job
from jobs.settings import Settings
from jobs.spark import get_spark
from warehouse import contracts
from warehouse.catalog import (
    AUTHORS,
    ENGAGEMENTS,
    FOLLOWS,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    POSTS,
    USERS,
    C,
    Table,
    feature_state_table,
)
from warehouse.contracts.silver import FeatureRules, check_feature_partition
from warehouse.store import Warehouse, WarehouseError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RawDay:
    """The raw inputs of one day's features."""

    impressions: object  # ds's impressions
    engagements: object  # engagements of ds's impressions
    posts: object  # posts created in the history bound up to ds
    follows: object  # snapshot at the end of ds
    users: object
    authors: object


def run(settings: Settings, ds: str) -> int:
    """Build and publish the features of ds; returns the number of impressions featurized."""
    check_day(settings, ds)
    log_settings("build_features", settings, ds)
    started = time.perf_counter()
    spark = get_spark(settings.spark)
    store = Warehouse(settings.root.warehouse)
    raw = read_raw(spark, store, settings, ds)
    build_state(store, raw, ds)
    tiles = {name: read_state(spark, store, settings, name, ds) for name in TILES}
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
    store.write_spark(IMPRESSION_FEATURES, ds, feats, publish=False)
    staged = store.read_spark(spark, IMPRESSION_FEATURES, ds, staged=True).drop(C.DS)
    contracts.enforce(check_feature_partition(ds, staged, feature_rules()))
    rows = store.publish(IMPRESSION_FEATURES, ds).rows
    log.info("features ds=%s: %d impressions in %.1fs", ds, rows, time.perf_counter() - started)
    return rows


def run_days(settings: Settings, days: list[str]) -> None:
    """Build several days, oldest first (each reads the state of the ones before)."""
    for ds in sorted(days):
        run(settings, ds)


def read_raw(spark, store: Warehouse, settings: Settings, ds: str) -> RawDay:
    def day(tbl: Table):
        return store.read_spark(spark, tbl, ds).drop(C.DS)

    posts_days = [*days_before(settings.simulator.start_date, ds, R.HISTORY_BOUND_D), ds]
    return RawDay(
        impressions=day(IMPRESSIONS),
        engagements=day(ENGAGEMENTS),
        posts=store.read_spark(spark, POSTS, posts_days).drop(C.DS),
        follows=day(FOLLOWS),
        users=day(USERS),
        authors=day(AUTHORS),
    )


def build_state(store: Warehouse, raw: RawDay, ds: str) -> None:
    """The day's tiles, from the day's events only (idempotent: a re-run replaces them)."""
    for name, tile in build_tiles(raw.impressions, raw.engagements, raw.posts).items():
        store.write_spark(state_table(name), ds, tile)


def read_state(spark, store: Warehouse, settings: Settings, name: str, ds: str):
    days = [*days_before(settings.simulator.start_date, ds, lookback_days(name)), ds]
    try:
        return store.read_spark(spark, state_table(name), days).drop(C.DS)
    except WarehouseError as err:
        raise WarehouseError(f"features of ds={ds} need earlier days' state first: {err}") from None


def state_table(name: str) -> Table:
    return feature_state_table(name, TILES[name].keys, TILES[name].doc)


def graph_cutoff(ds: str) -> dt.datetime:
    """PageRank and IDF use what was known an hour before ds began: an impression at
    00:00:00 has its features as of 23:00 the day before."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    return start - dt.timedelta(hours=1)


def feature_rules() -> FeatureRules:
    """The feature table's contract, by kind of column, from the feature registry."""
    windows = [R.post_count(k, w) for k in R.POST_KINDS for w in R.WINDOWS_H]
    windows += [R.net_count(k, w) for k in R.COUNTED_ACTIONS for w in R.WINDOWS_H]
    decayed = [R.post_decayed(k) for k in R.POST_KINDS]
    counts = [
        R.AUTHOR_FOLLOWERS,
        R.AUTHOR_FOLLOWEES,
        R.USER_IMPRESSIONS_7D,
        R.USER_REQUESTS_7D,
        R.UA_COMMON_FOLLOWEES,
        R.HASHTAG_COUNT,
    ]
    rates = [R.author_rate(d) for d in R.AUTHOR_WINDOWS_D]
    rates += [R.author_topic_rate(d) for d in R.AUTHOR_WINDOWS_D]
    rates += [R.user_rate(d) for d in R.USER_RATE_WINDOWS_D]
    rates += [R.ua_share(d) for d in R.USER_AUTHOR_WINDOWS_D]
    rates += [R.ua_norm(d) for d in R.USER_AUTHOR_WINDOWS_D]
    return FeatureRules(
        not_null=(C.IMPRESSION_ID, *windows, *decayed, R.POST_AGE_H, R.CTX_HOUR, R.CTX_DOW),
        nonnegative=(
            *windows,
            *decayed,
            *counts,
            *rates,
            R.POST_AGE_H,
            R.POST_SMOOTHED_RATE,
            R.AUTHOR_FOLLOW_RATIO,
            R.CTX_HOURS_SINCE_PREV_REQUEST,
        ),
        unit_interval=(R.SIM_TOPIC_SHARE, R.AUTHOR_PAGERANK),
        ranges={R.CTX_HOUR: (0, 23), R.CTX_DOW: (1, 7), R.SIM_HASHTAG_TFIDF: (0.0, 1.0 + 1e-9)},
    )


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
