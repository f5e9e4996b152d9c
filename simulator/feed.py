"""The logging policy: which posts a session is shown, in which order, and when.

Reverse-chronological network posts (followees' posts since the previous session), with a
few out-of-network popular posts mixed in, and the top slots shuffled for exploration. Built
with sorts and range expansions over all sessions of a shard at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator._common import (
    DAY_US,
    SLOT_GAP_S,
    US_PER_S,
    expand_ranges,
    first_occurrences,
    rank_in_group,
)
from simulator.config import SimulatorSettings
from simulator.posts import DayPosts
from simulator.sessions import Sessions
from simulator.world import World
from warehouse.catalog import IMPRESSION_SOURCES, C

NETWORK, POPULAR = IMPRESSION_SOURCES.index("network"), IMPRESSION_SOURCES.index("popular")
_TIME_BITS = 42  # pool key = author index << 42 | microseconds since the pool's first midnight
_POPULAR_DRAWS = 4  # draws per popular slot, so that filtered-out draws rarely leave it empty


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
    """The posts servable on a day (the last `pool_days` days and today), sorted by key."""

    post_id: np.ndarray
    author: np.ndarray  # author index
    created_us: np.ndarray
    topic: np.ndarray
    media: np.ndarray
    length: np.ndarray
    clickbait: np.ndarray
    base_us: int  # midnight of the pool's first day
    key: np.ndarray  # author << _TIME_BITS | created_us - base_us, ascending

    @classmethod
    def from_days(cls, days: list[DayPosts], base_us: int) -> Pool:
        def cat(get):
            return np.concatenate([get(d) for d in days])

        author = cat(lambda d: d.author).astype(np.int64)
        created = cat(lambda d: d.created_us)
        if len(created) and not 0 <= (created - base_us).max() < 1 << _TIME_BITS:
            raise ValueError("pool spans too many days for its key; lower pool_days")
        key = (author << _TIME_BITS) | (created - base_us)
        order = np.argsort(key, kind="stable")
        return cls(
            post_id=cat(lambda d: d.frame[C.POST_ID].to_numpy())[order],
            author=author[order],
            created_us=created[order],
            topic=cat(lambda d: d.frame[C.TOPIC].to_numpy())[order].astype(np.int64),
            media=cat(lambda d: d.media)[order],
            length=cat(lambda d: d.frame[C.LENGTH].to_numpy())[order].astype(np.float64),
            clickbait=cat(lambda d: d.clickbait)[order],
            base_us=base_us,
            key=key[order],
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Served:
    """Impressions of a shard, sorted by (session, position)."""

    session: np.ndarray  # index into the shard's sessions
    post: np.ndarray  # index into the pool
    position: np.ndarray  # 0-based
    served_us: np.ndarray
    source: np.ndarray  # index into IMPRESSION_SOURCES
    # P(this post at this position | the session's list) under the policy's randomisation
    propensity: np.ndarray


def pool_start_day(cfg: SimulatorSettings, day_index: int) -> int:
    return max(0, day_index - cfg.pool_days)


def popular_posts(world: World, cfg: SimulatorSettings, pool: Pool, counts: np.ndarray):
    """Pool indices of the `popular_pool` most-engaged posts; author popularity breaks ties
    (so on the first day, with no engagement yet, the most popular authors' posts)."""
    pop = world.authors_latent.popularity[pool.author]
    order = np.lexsort((-pop, -counts))
    return order[: cfg.popular_pool]


def serve(
    world: World,
    cfg: SimulatorSettings,
    sessions: Sessions,
    prev_us: np.ndarray,
    pool: Pool,
    popular: np.ndarray,
    r: np.random.Generator,
) -> Served:
    n = len(sessions.user)
    depth = session_depths(cfg, n, r)
    need = np.maximum(depth, cfg.explore_top_k)  # the list must cover what the shuffle reaches
    net_s, net_p = network_posts(world, cfg, sessions, prev_us, pool, need)
    pop_s, pop_p, pop_j = _popular(world, cfg, sessions, pool, popular, r)
    session = np.concatenate([net_s, pop_s])
    post = np.concatenate([net_p, pop_p])
    source = np.r_[np.full(len(net_s), NETWORK), np.full(len(pop_s), POPULAR)]
    # Popular post j goes after the (j+1)*spacing-th network post.
    slot = np.r_[rank_in_group(net_s), (pop_j + 1) * cfg.popular_spacing - 0.5]
    order = np.lexsort((slot, session))
    session, post, source = session[order], post[order], source[order]
    rank = rank_in_group(session)
    # Exploration: the top slots in random order, the rest as they were.
    shuffle = np.where(rank < cfg.explore_top_k, r.random(len(rank)), rank.astype(np.float64))
    order = np.lexsort((shuffle, session))
    session, post, source = session[order], post[order], source[order]
    position = rank_in_group(session)
    # A uniform shuffle of the list's first min(k, length) posts: each lands on each of those
    # positions with probability 1 / min(k, length); the later positions are fixed.
    length = np.bincount(session, minlength=n)[session]
    shuffled = np.minimum(cfg.explore_top_k, length)
    propensity = np.where(position < shuffled, 1.0 / np.maximum(shuffled, 1), 1.0)
    keep = position < depth[session]
    session, post, source, position = session[keep], post[keep], source[keep], position[keep]
    gap = (position + r.random(len(position))) * SLOT_GAP_S * US_PER_S
    served = sessions.ts_us[session] + gap.astype(np.int64)
    return Served(session, post, position, served, source, propensity[keep])


def session_depths(cfg: SimulatorSettings, n: int, r: np.random.Generator) -> np.ndarray:
    """How many posts each of `n` sessions looks at before it ends: geometric, capped."""
    return np.minimum(r.geometric(min(1.0, 1.0 / cfg.feed_depth), n), cfg.max_depth)


def network_posts(world, cfg, sessions: Sessions, prev_us, pool: Pool, need):
    """(session, pool index) of followees' posts created in [prev_us, session), newest
    first, at most `need` per session; sorted by session."""
    g = world.graph
    owner, row = expand_ranges(g.user_start[sessions.user], g.user_start[sessions.user + 1])
    ok = g.created_us[row] < sessions.ts_us[owner]  # followed before the session
    owner, author = owner[ok], g.followee[row[ok]].astype(np.int64)
    lo = (author << _TIME_BITS) | np.maximum(prev_us[owner] - pool.base_us, 0)
    hi = (author << _TIME_BITS) | (sessions.ts_us[owner] - pool.base_us)
    which, post = expand_ranges(np.searchsorted(pool.key, lo), np.searchsorted(pool.key, hi))
    session = owner[which]
    order = np.lexsort((-pool.created_us[post], session))
    session, post = session[order], post[order]
    keep = rank_in_group(session) < need[session]
    return session[keep], post[keep]


def _popular(world, cfg, sessions: Sessions, pool: Pool, popular, r):
    """(session, pool index, slot j) of up to `popular_slots` out-of-network popular posts."""
    k = cfg.popular_slots * _POPULAR_DRAWS
    if len(popular) == 0 or k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    session = np.repeat(np.arange(len(sessions.user), dtype=np.int64), k)
    post = popular[r.integers(0, len(popular), len(session))]
    user, author, ts = sessions.user[session], pool.author[post], sessions.ts_us[session]
    created = pool.created_us[post]
    ok = (created < ts) & (created >= ts - cfg.pool_days * DAY_US)
    own = (author < world.n_person_authors) & (author == user)
    # Any follow, even a later one: a popular slot must never show a followee's post.
    follows = world.graph.lookup(user, author, world.n_authors) >= 0
    ok &= ~own & ~follows
    session, post = session[ok], post[ok]
    # First draw of each (session, post), in draw order.
    first = first_occurrences(session * len(pool.post_id) + post)
    session, post = session[first], post[first]
    j = rank_in_group(session)
    keep = j < cfg.popular_slots
    return session[keep], post[keep], j[keep]
