"""When users open the app: sessions per user-day around their preferred hour.

A day's sessions depend only on (seed, day_index) and are drawn for every user at once, so
any user's sessions of an earlier day (for "posts since the last session") are recomputed
exactly, whatever shard asks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator._common import DAY_S, DAY_US, SLOT_GAP_S, US_PER_S, Stream, day_start_us, rng
from simulator.config import SimulatorSettings
from simulator.world import World

_HOUR_SD = 3.0  # sessions scatter this many hours around the preferred hour
_PRIMARY_DEVICE_P = 0.8  # sessions on the user's primary device


@dataclasses.dataclass(frozen=True, eq=False)
class Sessions:
    """Sessions sorted by (user, ts)."""

    user: np.ndarray  # (n,) user id
    ts_us: np.ndarray  # (n,) session start
    device: np.ndarray  # (n,) index into DEVICES

    def take(self, mask: np.ndarray) -> Sessions:
        return Sessions(self.user[mask], self.ts_us[mask], self.device[mask])


def sessions_for_day(world: World, cfg: SimulatorSettings, day_index: int) -> Sessions:
    r = rng(cfg.seed, Stream.SESSIONS, day_index)
    u = world.users_latent
    counts = r.poisson(cfg.sessions_per_day * u.activity)
    user = np.repeat(np.arange(world.n_users, dtype=np.int64), counts)
    hour = u.pref_hour[user] + _HOUR_SD * r.standard_normal(len(user))
    # Start early enough that even the deepest feed is served before midnight.
    latest = DAY_S - (cfg.max_depth + 1) * SLOT_GAP_S
    seconds = np.minimum(hour * 3600.0 % DAY_S, latest)
    ts = day_start_us(cfg, day_index) + (seconds * US_PER_S).astype(np.int64)
    other = 1 - u.device[user]  # DEVICES has two entries
    device = np.where(r.random(len(user)) < _PRIMARY_DEVICE_P, u.device[user], other)
    order = np.lexsort((ts, user))
    return Sessions(user[order], ts[order], device[order])


def previous_session_us(
    world: World, cfg: SimulatorSettings, day_index: int, today: Sessions
) -> np.ndarray:
    """Start of each of today's sessions' previous session of the same user.

    Looks back `pool_days` days (older posts are not served anyway); where there is none, the
    pool's horizon: `pool_days` before the session, but never before day 0 (no posts exist).
    """
    last = np.full(world.n_users, np.iinfo(np.int64).min, dtype=np.int64)
    for d in range(max(0, day_index - cfg.pool_days), day_index):
        s = sessions_for_day(world, cfg, d)
        is_last = np.r_[s.user[1:] != s.user[:-1], True]  # sorted by (user, ts)
        last[s.user[is_last]] = s.ts_us[is_last]
    prev = last[today.user]
    same_user = np.r_[False, today.user[1:] == today.user[:-1]]
    prev[same_user] = today.ts_us[:-1][same_user[1:]]
    horizon = np.maximum(today.ts_us - cfg.pool_days * DAY_US, day_start_us(cfg, 0))
    return np.maximum(prev, horizon)
