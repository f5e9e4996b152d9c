"""The oracle: the simulator's true action probabilities for any (user, post) pair at a time.

The logging policy shows each user a few posts; offline evaluation of another ranking needs
the true value of posts it never served. The behaviour model is a pure function of the world,
the post, the moment and the social proof at the start of the day, so the truth of any pair
is recomputed exactly as `simulate_day` would have computed it had the post been served then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from simulator._common import DAY_US, day_start_us, earlier_in_session, to_timestamps
from simulator.behaviour import Exposure, Truth, true_model
from simulator.config import SimulatorSettings
from simulator.day import DayPool, day_pool, exposure, social_state
from simulator.world import World
from warehouse.catalog import ACTIONS, DEVICES, TRUTH_IMPRESSIONS, C, truth_column

# The truth table's columns without its key: what the oracle returns per pair.
ORACLE_COLUMNS = tuple(c for c in TRUTH_IMPRESSIONS.columns if c != C.IMPRESSION_ID)
PAIR_COLUMNS = (C.USER_ID, C.POST_ID, C.SERVED_AT, C.DEVICE)


def oracle_truth(
    world: World,
    cfg: SimulatorSettings,
    pairs: pd.DataFrame,
    prior_engagements: pd.DataFrame | None,
    *,
    position: int | np.ndarray = 0,
    session: np.ndarray | None = None,
) -> pd.DataFrame:
    """True probability of every action (`p_click`, ...) and expected dwell given a click
    (`e_dwell_s`) of each row of `pairs` (user_id, post_id, served_at, device), as if the post
    were served to the user then, on that device, at feed `position` (0: fully examined).
    `session` (aligned with `pairs`) groups the rows that are one session's list, so that
    the session's fatigue counts the earlier positions' authors and topics (a logged request
    is a session: pass its request_id and every impression of it); None: each row alone.

    Every served_at must fall on one simulated day; `prior_engagements` are the ENGAGEMENTS
    of the `pool_days` days before it (None or empty on the first day), exactly what
    `simulate_day` is given. Posts must be servable then: created in the day's pool window
    and before served_at. Returns a frame aligned with `pairs` (same index)."""
    if len(pairs) == 0:
        _check_pairs(pairs, position)
        return pd.DataFrame({c: np.zeros(0) for c in ORACLE_COLUMNS}, index=pairs.index)
    x = oracle_exposure(world, cfg, pairs, prior_engagements, position=position, session=session)
    return truth_frame(true_model(world, cfg, x), pairs.index)


def oracle_exposure(
    world: World,
    cfg: SimulatorSettings,
    pairs: pd.DataFrame,
    prior_engagements: pd.DataFrame | None,
    *,
    position: int | np.ndarray = 0,
    session: np.ndarray | None = None,
) -> Exposure:
    """What the true model reads about each row of `pairs` (non-empty; the same arguments and
    checks as `oracle_truth`), for callers that score it more than once (simulator.ablation)."""
    pos = _check_pairs(pairs, position)
    if len(pairs) == 0:
        raise ValueError("no pairs")
    served_us = _epoch_us(pairs[C.SERVED_AT])
    day = _day_of(cfg, served_us)
    day_start = to_timestamps([day_start_us(cfg, day)])[0]
    state = social_state(prior_engagements, world.follows_as_of(day_start), before=day_start)
    pool = day_pool(world, cfg, day, state)
    user = _users(world, pairs[C.USER_ID])
    post = _pool_index(pool, pairs[C.POST_ID].to_numpy(dtype=np.int64), served_us)
    if session is not None:
        session = np.asarray(session)
        if session.shape != (len(pairs),):
            raise ValueError(f"session has {session.shape} values for {len(pairs)} pairs")
    device = _devices(pairs[C.DEVICE])
    return exposure(world, pool, user, post, served_us, device, pos, session=session)


def as_lists(x: Exposure, rows: np.ndarray, slot: np.ndarray, session: np.ndarray) -> Exposure:
    """The exposures `rows` of x (each computed alone, at position 0) as ranked lists: each at
    its `slot`, after the rows of its `session` (a list per key) at the slots before it."""
    sub = x.take(rows)
    slot = np.asarray(slot, dtype=np.int64)
    return dataclasses.replace(
        sub,
        position=slot,
        seen_author=earlier_in_session(session, slot, sub.author),
        seen_topic=earlier_in_session(session, slot, sub.topic),
    )


def best_lists(
    world: World,
    cfg: SimulatorSettings,
    x: Exposure,
    session: np.ndarray,
    k: int,
    value: Callable[[Truth], np.ndarray],
) -> np.ndarray:
    """The oracle's ranked list of each session's rows of x (computed alone, at position 0):
    greedily, slot by slot, the row with the most true `value` there, given the rows already
    above it (its examination, the session's fatigue). Returns each row's slot, -1 for the
    rows not in the top k. Exact without fatigue, when a slot's order is the value order; with
    it, a lower bound of the best list (the slots' assignment is not searched)."""
    session = np.asarray(session)
    group = pd.factorize(session)[0].astype(np.int64)
    key_author = group * world.n_authors + x.author
    key_topic = group * cfg.n_topics + x.topic
    slot = np.full(len(group), -1, dtype=np.int64)
    seen_author = np.zeros(len(group), dtype=np.int64)
    seen_topic = np.zeros(len(group), dtype=np.int64)
    for position in range(k):
        free = np.flatnonzero(slot < 0)
        if not len(free):
            break
        here = dataclasses.replace(
            x.take(free),
            position=np.full(len(free), position, dtype=np.int64),
            seen_author=seen_author[free],
            seen_topic=seen_topic[free],
        )
        v = value(true_model(world, cfg, here))
        order = np.lexsort((free, -v, group[free]))  # the best per session, ties by row
        g = group[free][order]
        pick = free[order[np.r_[True, g[1:] != g[:-1]]]]
        slot[pick] = position
        seen_author += np.isin(key_author, key_author[pick])
        seen_topic += np.isin(key_topic, key_topic[pick])
    return slot


def truth_frame(truth: Truth, index: pd.Index) -> pd.DataFrame:
    """ORACLE_COLUMNS of a Truth: each action's probability and the expected dwell."""
    columns = {truth_column(a): truth.p[a] for a in ACTIONS}
    columns[C.E_DWELL_S] = truth.e_dwell_s
    return pd.DataFrame(columns, columns=list(ORACLE_COLUMNS), index=index)


def _check_pairs(pairs: pd.DataFrame, position: int | np.ndarray) -> np.ndarray:
    """The position of every pair; raises for missing columns or a negative position."""
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lack columns {missing}")
    pos = np.broadcast_to(np.asarray(position, dtype=np.int64), (len(pairs),))
    if (pos < 0).any():
        raise ValueError("position must be >= 0")
    return pos


def _epoch_us(served_at: pd.Series) -> np.ndarray:
    ts = pd.DatetimeIndex(served_at)
    if ts.tz is None:
        raise ValueError("served_at must be timezone-aware (UTC)")
    if ts.hasnans:
        raise ValueError("served_at has missing values")
    return ts.as_unit("us").asi8


def _day_of(cfg: SimulatorSettings, served_us: np.ndarray) -> int:
    """The one simulated day all rows fall on (a day past `cfg.days` is fine: its posts and
    follows are as well defined as those of the simulated days)."""
    days = np.unique((served_us - day_start_us(cfg, 0)) // DAY_US)
    if len(days) != 1:
        raise ValueError(f"served_at spans {len(days)} simulated days; pass one day at a time")
    if days[0] < 0:
        raise ValueError(f"served_at is before the simulation starts ({cfg.start_date})")
    return int(days[0])


def _users(world: World, user_id: pd.Series) -> np.ndarray:
    user = user_id.to_numpy(dtype=np.int64)
    bad = (user < 0) | (user >= world.n_users)
    if bad.any():
        raise ValueError(f"unknown user_id {user[bad][0]}")
    return user


def _devices(device: pd.Series) -> np.ndarray:
    codes = pd.Categorical(device, categories=DEVICES).codes.astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"unknown device {device[codes < 0].iloc[0]!r}; one of {DEVICES}")
    return codes


def _pool_index(day: DayPool, post_id: np.ndarray, served_us: np.ndarray) -> np.ndarray:
    """Index into day.pool of each post; raises for posts that could not be served then."""
    index = pd.Index(day.pool.post_id).get_indexer(post_id)  # post ids are unique
    if (index < 0).any():
        raise ValueError(
            f"post_id {post_id[index < 0][0]} is not servable on day {day.index}: it was not "
            "created on that day nor in the pool_days before it"
        )
    late = day.pool.created_us[index] > served_us
    if late.any():
        raise ValueError(f"post_id {post_id[late][0]} is created after its served_at")
    return index
