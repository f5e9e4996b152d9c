"""Seeded random streams and time arithmetic shared by the simulator's modules.

Times inside the simulator are int64 microseconds since the Unix epoch (UTC), the unit of the
catalog's timestamps, so comparisons are exact and conversion to the output is lossless.
"""

from __future__ import annotations

import datetime as dt
import enum

import numpy as np
import pandas as pd

from simulator.config import SimulatorSettings

US_PER_S = 1_000_000
DAY_S = 86_400
DAY_US = DAY_S * US_PER_S
SLOT_GAP_S = 3.0  # seconds a user spends per feed position before the next one is served


class Stream(enum.IntEnum):
    """One constant per purpose, so that adding draws to one purpose never shifts another."""

    USERS = 1
    AUTHORS = 2
    FOLLOWS = 3
    CLOSE_FRIENDS = 4
    FOLLOW_TIMES = 5
    POSTS = 10
    HASHTAGS = 11
    SESSIONS = 20
    FEED = 30
    RANKED_FEED = 31
    ACTIONS = 40


def rng(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """The generator of one purpose and one unit of work (a day, a shard, a chunk)."""
    return np.random.default_rng(np.random.SeedSequence([seed, int(stream), *map(int, keys)]))


def day_start_us(cfg: SimulatorSettings, day_index: int) -> int:
    """Midnight UTC of a simulated day (day 0 is `start_date`), in epoch microseconds."""
    day = cfg.start_date + dt.timedelta(days=day_index)
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(midnight.timestamp()) * US_PER_S


def to_timestamps(us: np.ndarray) -> pd.DatetimeIndex:
    """Epoch microseconds as timezone-aware UTC timestamps, microsecond unit like the catalog."""
    return pd.DatetimeIndex(np.asarray(us, dtype=np.int64).astype("datetime64[us]")).tz_localize(
        "UTC"
    )


def rank_in_group(groups: np.ndarray) -> np.ndarray:
    """0-based rank of each row within its run of equal values; `groups` must be sorted."""
    starts = np.searchsorted(groups, groups, side="left")
    return np.arange(len(groups), dtype=np.int64) - starts


def earlier_in_session(session: np.ndarray, position: np.ndarray, key: np.ndarray) -> np.ndarray:
    """For each row, how many rows of the same session at an earlier position share its key
    (the same author, the same topic): 0 for the first, 1 for the second, ..."""
    order = np.lexsort((position, key, session))
    s, k = session[order], key[order]
    new = np.r_[True, (s[1:] != s[:-1]) | (k[1:] != k[:-1])] if len(order) else order
    out = np.empty(len(order), dtype=np.int64)
    out[order] = rank_in_group(np.cumsum(new))  # group numbers, sorted
    return out


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For half-open ranges [lo, hi): (index of the range, value) of every member, in order."""
    counts = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo), dtype=np.int64), counts)
    offsets = np.cumsum(counts) - counts
    values = lo[owner] + (np.arange(len(owner), dtype=np.int64) - offsets[owner])
    return owner, values


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique by sorting: for int keys numpy 2's hash-based unique is several times slower."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def first_occurrences(key: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct key, in their original order."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = order[np.r_[True, k[1:] != k[:-1]]] if len(k) else order
    return np.sort(first)


def pick(probs: np.ndarray, size: int, r: np.random.Generator) -> np.ndarray:
    """`size` draws of indices with the given (unnormalised) probabilities."""
    cdf = np.cumsum(probs, dtype=np.float64)
    return np.searchsorted(cdf, r.random(size) * cdf[-1], side="right").clip(0, len(probs) - 1)
