"""What several jobs read: a day's raw inputs and feature state, the simulated world and
its prior engagements, and the closed loop's read path.

Jobs import this module, never each other: build_features and precompute_feeds read raw days
and state through it; simulate_platform, ab_report, gap and evaluate_feeds rebuild the
simulated world (built once per process) and read the engagements it needs; evaluate_feeds
and tune_rerank read a day's published feeds and value them with the oracle (FeedOracle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from features import registry as R
from features.tiles import TILES, lookback_days
from jobs.common import days_before, shift_ds
from jobs.settings import Settings
from models.registry.handoff import ACTIVE_USERS, INDEX_DS, PublishedFeeds
from models.value import value_score
from simulator import build_world
from simulator.behaviour import Truth, true_model
from simulator.config import SimulatorSettings
from simulator.day import is_loop_day
from simulator.oracle import as_lists, best_lists, oracle_exposure
from warehouse.catalog import (
    ACTIONS,
    AUTHORS,
    ENGAGEMENTS,
    FEED_CANDIDATES,
    FOLLOWS,
    IMPRESSIONS,
    POSTS,
    USER_NEWS_FEED,
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


def published_feeds(settings: Settings, ds: str) -> PublishedFeeds:
    """The hand-off of ds's committed feeds, rebuilt from the warehouse (for an evaluation
    that runs after the DAG run that published them: the closed loop's)."""
    store = settings.open_warehouse()
    cands_info, feed_info = store.info(FEED_CANDIDATES, ds), store.info(USER_NEWS_FEED, ds)
    at = feed_info.meta["generated_at"]
    cands = store.read_pandas(FEED_CANDIDATES, ds, columns=[C.USER_ID, C.SOURCES, C.GENERATED_AT])
    cands = cands[cands[C.GENERATED_AT] == pd.Timestamp(at)]
    by_source = cands[C.SOURCES].explode().value_counts().sort_index()
    return PublishedFeeds(
        ds=ds,
        generated_at=at,
        active_users=int(cands_info.meta.get(ACTIVE_USERS, cands[C.USER_ID].nunique())),
        users=int(cands[C.USER_ID].nunique()),
        candidates=len(cands),
        by_source={str(k): int(v) for k, v in by_source.items()},
        index_ds=cands_info.meta.get(INDEX_DS),
        model_version=str(feed_info.meta[C.MODEL_VERSION]),
        items=feed_info.rows,
        checks=0,  # not recorded with the partition
    )


class FeedOracle:
    """The simulator's truth about ds's candidates for the next day's readers: each served at
    the generation time `at` on its user's primary device, valued under the value weights."""

    def __init__(self, store: Warehouse, settings: Settings, ds: str, at, cands: pd.DataFrame):
        sim = settings.simulator
        users = store.read_pandas(USERS, ds, columns=[C.USER_ID, C.PRIMARY_DEVICE])
        device = users.drop_duplicates(C.USER_ID).set_index(C.USER_ID)[C.PRIMARY_DEVICE]
        pairs = pd.DataFrame(
            {
                C.USER_ID: cands[C.USER_ID].to_numpy(),
                C.POST_ID: cands[C.POST_ID].to_numpy(),
                C.SERVED_AT: pd.Timestamp(at),
                C.DEVICE: cands[C.USER_ID].map(device).to_numpy(),
            }
        )
        day = shift_ds(ds, 1)
        prior = store.read_pandas(ENGAGEMENTS, days_before(sim.start_date, day, sim.pool_days))
        self.world, self.sim, self.weights = world(sim), sim, settings.training.value
        self.cands = cands
        self.x = oracle_exposure(self.world, sim, pairs, prior.drop(columns=C.DS))  # each alone

    def value(self, truth: Truth) -> np.ndarray:
        probs = {a: truth.p[a] for a in ACTIONS}
        return value_score(probs, truth.e_dwell_s, self.weights, dwell_given_click=True)

    def alone(self) -> np.ndarray:
        """Each candidate's value alone, at the top of the feed (position 0)."""
        return self.value(true_model(self.world, self.sim, self.x))

    def list_values(self, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """The value of each of `rows` (of the candidates) at its slot of its user's list,
        read after the rows of the same user at the slots before it."""
        user = self.cands[C.USER_ID].to_numpy()[rows]
        x = as_lists(self.x, rows, slots, user)
        return self.value(true_model(self.world, self.sim, x))

    def best_slots(self, k: int) -> np.ndarray:
        """Each candidate's slot in its user's greedy best list of k (-1: not in it)."""
        user = self.cands[C.USER_ID].to_numpy()
        return best_lists(self.world, self.sim, self.x, user, k, self.value)

    def lists(self, k: int) -> pd.DataFrame:
        """models.feed.quality's table of each ranking's top k valued as lists: every post at
        its slot after those above it; the oracle's list the greedy best (best_lists)."""
        from models.feed import quality as fq

        user = self.cands[C.USER_ID].to_numpy()
        slots = fq.top_k(self.cands, k, [r for r in fq.RANKINGS if r != fq.ORACLE])
        slots = {name: (s.index.to_numpy(), s.to_numpy()) for name, s in slots.items()}
        best = self.best_slots(k)
        slots[fq.ORACLE] = (np.flatnonzero(best >= 0), best[best >= 0])
        values = {
            name: pd.DataFrame({C.USER_ID: user[rows], fq.TRUE_VALUE: self.list_values(rows, slot)})
            for name, (rows, slot) in slots.items()
        }
        return fq.value_table(values, np.unique(user), f"list_value_at_{k}")
