"""What several jobs read: a day's raw inputs and feature state, the simulated world and
its prior engagements, and the closed loop's read path.

Jobs import this module, never each other: build_features and precompute_feeds read raw days
and state through it; simulate_platform, ab_report, gap and evaluate_feeds rebuild the
simulated world (built once per process) and read the engagements it needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Iterator

import pandas as pd

from features import registry as R
from features.tiles import TILES, lookback_days
from jobs.common import days_before, shift_ds
from jobs.settings import Settings
from simulator import build_world
from simulator.config import SimulatorSettings
from simulator.day import is_loop_day
from warehouse.catalog import (
    AUTHORS,
    ENGAGEMENTS,
    FOLLOWS,
    IMPRESSIONS,
    POSTS,
    USERS,
    C,
    Table,
    feature_state_table,
)
from warehouse.feeds.open import open_store
from warehouse.feeds.reader import FeedReader
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


def read_raw(spark, store: Warehouse, first_day: dt.date, ds: str) -> RawDay:
    """The raw inputs of ds's features (posts back to the history bound, from `first_day`)."""

    def day(tbl: Table):
        return store.read_spark(spark, tbl, ds).drop(C.DS)

    posts_days = [*days_before(first_day, ds, R.HISTORY_BOUND_D), ds]
    return RawDay(
        impressions=day(IMPRESSIONS),
        engagements=day(ENGAGEMENTS),
        posts=store.read_spark(spark, POSTS, posts_days).drop(C.DS),
        follows=day(FOLLOWS),
        users=day(USERS),
        authors=day(AUTHORS),
    )


def read_state(
    spark, store: Warehouse, first_day: dt.date, name: str, ds: str, *, staged: bool = True
):
    """A tile's lookback: ds's staged (or, `staged=False`, committed) state and the committed
    state of the days before."""
    days = [*days_before(first_day, ds, lookback_days(name)), ds]
    try:
        today = [ds] if staged else []
        return store.read_spark(spark, state_table(name), days, staged=today).drop(C.DS)
    except WarehouseError as err:
        raise WarehouseError(f"features of ds={ds} need earlier days' state first: {err}") from None


def state_table(name: str) -> Table:
    """The catalog entry of a feature-state tile's table (silver.state_<name>)."""
    return feature_state_table(name, TILES[name].keys, TILES[name].doc)


def day_index(cfg: SimulatorSettings, ds: str) -> int:
    index = (dt.date.fromisoformat(ds) - cfg.start_date).days
    if index < 0:
        raise ValueError(f"ds={ds} is before the simulation starts ({cfg.start_date})")
    return index


@functools.lru_cache(maxsize=2)
def world(cfg: SimulatorSettings):
    """The simulated world of the settings (built once per process for the last two)."""
    return build_world(cfg)


@contextlib.contextmanager
def read_path(settings: Settings, ds: str) -> Iterator[FeedReader | None]:
    """The feed store's read path for a closed-loop day (None for any other day); refuses a
    store whose current version is not the feeds of the day before."""
    if not is_loop_day(settings.simulator, day_index(settings.simulator, ds)):
        yield None
        return
    want = shift_ds(ds, -1)
    feed_store = open_store(settings.feeds, settings.root)
    try:
        current = feed_store.status().current
        if current is None or current.ds != want:
            raise WarehouseError(stale_feeds(ds, current))
        log.info("closed loop: treatment reads feed version %s (ds=%s)", current.version, want)
        # The impressions are the record of what was served: no second log in the store.
        yield FeedReader(feed_store, settings.feeds.model_copy(update={"log_served": False}))
    finally:
        feed_store.close()


def stale_feeds(ds: str, current) -> str:
    """Why a closed-loop day cannot be simulated with the store's `current` version."""
    want = shift_ds(ds, -1)
    found = f"version {current.version} of ds={current.ds}" if current else "nothing"
    return (
        f"ds={ds} is a closed-loop day: the feed store must serve the feeds of {want}, "
        f"but its current version is {found}; run precompute_feeds and publish_feeds "
        f"for ds={want} first"
    )


def prior_engagements(store: Warehouse, cfg: SimulatorSettings, ds: str) -> pd.DataFrame:
    days = days_before(cfg.start_date, ds, cfg.pool_days)
    try:
        return store.read_pandas(ENGAGEMENTS, days).drop(columns="ds")
    except WarehouseError as err:
        raise WarehouseError(
            f"cannot simulate ds={ds}: run the days before it first ({err})"
        ) from None
