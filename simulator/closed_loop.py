"""The closed loop: the treatment bucket's sessions read the published feed; control's do not.

Buckets. A user's bucket is a salted splitmix64 hash of the user id mapped to [0, 1): below
`serving.control_share` is control. It is the same every day, before the loop too, so the
days before the loop are an A/A period of the same split.

A treatment session, on a loop day, is served by the ranked policy through the read path, as
a client app would use it (`FeedClient` is what `warehouse.feeds.reader.FeedReader` offers):
1. it fetches the first page of the user's feed (`page_size` items) and the next page, by
   the cursor, whenever the session scrolls past what it fetched;
2. it skips posts the user was served earlier that day, and posts the platform no longer
   serves (outside the day's pool: older than `pool_days`);
3. freshness: every `fresh_every`-th slot takes the newest *fresh* network post, a followee's
   post created after the feed was generated and since the user's previous session, when
   there is one left, so that treatment sees what a chronological feed would show minutes
   after it was posted (the cached list cannot hold posts newer than its generation);
4. exploration: any other slot shows the feed's next post (source `ranked`, or `fallback`
   when the user has no feed of their own and the read path returns the version's trending
   feed), or, with probability
   `explore_share`, a uniform draw from the fetched posts not yet served (the rest of the
   page): so the next training sees outcomes of posts the ranker placed lower.

Propensities are exact: a feed slot's post was shown with probability
(1 - explore_share) * [it is the feed's next post] + explore_share / (posts it was drawn
from); fresh slots are deterministic (1). The chronological policy's are in simulator.feed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Protocol

import numpy as np
import pandas as pd

from simulator._common import SLOT_GAP_S, US_PER_S
from simulator.config import ServingSettings, SimulatorSettings
from simulator.feed import Pool, Served, network_posts, session_depths
from simulator.sessions import Sessions
from simulator.world import World
from warehouse.catalog import BUCKETS, CHRONOLOGICAL, IMPRESSION_SOURCES, RANKED, C

CONTROL, TREATMENT = BUCKETS
RANKED_SOURCE, FRESH, EXPLORE, FALLBACK = (
    IMPRESSION_SOURCES.index(s) for s in ("ranked", "fresh", "explore", "fallback")
)
_MASK64 = (1 << 64) - 1


class FeedClient(Protocol):
    """The read path as a client sees it (warehouse.feeds.reader.FeedReader)."""

    def page(self, user_id: int, limit: int | None = None, cursor: str | None = None) -> Any:
        """A page: .items (dicts with rank and post_id), .next_cursor, .version,
        .generated_at (ISO 8601), .model_version, .fallback (the version's trending feed,
        for a user without a feed of their own)."""


def is_treatment(user_id: np.ndarray, serving: ServingSettings) -> np.ndarray:
    """Whether each user is in the treatment bucket (a salted hash of the id, stable)."""
    x = (np.asarray(user_id, dtype=np.uint64) ^ np.uint64(serving.bucket_salt & _MASK64)).copy()
    with np.errstate(over="ignore"):  # splitmix64: uint64 arithmetic wraps by design
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return u >= serving.control_share


def buckets(user_id: np.ndarray, serving: ServingSettings) -> np.ndarray:
    """Each user's bucket name (BUCKETS)."""
    return np.where(is_treatment(user_id, serving), TREATMENT, CONTROL).astype(object)


@dataclasses.dataclass(frozen=True, eq=False)
class Serving:
    """What the policies served a shard's sessions: the impressions and, per impression, the
    policy and the feed store and ranker versions behind it (None for chronological)."""

    served: Served
    policy: np.ndarray  # object: POLICIES
    feed_version: np.ndarray  # object: str or None
    model_version: np.ndarray  # object: str or None

    @classmethod
    def chronological(cls, served: Served) -> Serving:
        n = len(served.post)
        none = np.full(n, None, dtype=object)
        return cls(served, np.full(n, CHRONOLOGICAL, dtype=object), none, none.copy())

    def remap(self, session_index: np.ndarray) -> Serving:
        """The same impressions with session indices mapped through `session_index`."""
        s = dataclasses.replace(self.served, session=session_index[self.served.session])
        return dataclasses.replace(self, served=s)

    @staticmethod
    def merge(parts: list[Serving]) -> Serving:
        """Impressions of several parts, sorted by (session, position)."""
        fields = [f.name for f in dataclasses.fields(Served)]
        served = Served(*(np.concatenate([getattr(p.served, f) for p in parts]) for f in fields))
        order = np.lexsort((served.position, served.session))
        served = Served(*(getattr(served, f)[order] for f in fields))
        return Serving(
            served,
            *(np.concatenate([getattr(p, f) for p in parts])[order] for f in _META),
        )


_META = ("policy", "feed_version", "model_version")


def serve_ranked(
    world: World,
    cfg: SimulatorSettings,
    sessions: Sessions,
    prev_us: np.ndarray,
    pool: Pool,
    client: FeedClient,
    r: np.random.Generator,
) -> Serving:
    """The treatment sessions (sorted by user, ts) served from their published feeds."""
    s_cfg = cfg.serving
    n = len(sessions.user)
    depth = session_depths(cfg, n, r)
    fresh_s, fresh_p = network_posts(world, cfg, sessions, prev_us, pool, depth)
    bounds = np.searchsorted(fresh_s, np.arange(n + 1))
    in_pool = pd.Index(pool.post_id)
    seen: dict[int, set[int]] = {}  # user -> pool indices served today
    rows: list[tuple] = []  # (session, post, position, source, propensity, version, model)
    for s in range(n):
        user = int(sessions.user[s])
        served_today = seen.setdefault(user, set())
        feed = _Feed(client, user, s_cfg.page_size, in_pool, served_today)
        generated_us = feed.generated_us
        fresh = [
            p
            for p in fresh_p[bounds[s] : bounds[s + 1]]
            if pool.created_us[p] >= generated_us and p not in served_today
        ]
        for position in range(int(depth[s])):
            fresh_slot = s_cfg.fresh_every and position % s_cfg.fresh_every == s_cfg.fresh_every - 1
            if fresh_slot and fresh:
                post, source, propensity = fresh.pop(0), FRESH, 1.0
            else:
                eligible = feed.eligible()
                if not eligible:
                    if not fresh:
                        break
                    post, source, propensity = fresh.pop(0), FRESH, 1.0
                else:
                    explore = r.random() < s_cfg.explore_share
                    pick = int(r.integers(len(eligible))) if explore else 0
                    post = eligible[pick]
                    source = EXPLORE if explore and pick else feed.next_source
                    propensity = (1.0 - s_cfg.explore_share) * (pick == 0)
                    propensity += s_cfg.explore_share / len(eligible)
            served_today.add(post)
            rows.append((s, post, position, source, propensity, feed.version, feed.model))
    return _serving(sessions, rows, r)


def _serving(sessions: Sessions, rows: list[tuple], r: np.random.Generator) -> Serving:
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    session, post, position, source = (np.asarray(c, dtype=np.int64) for c in cols[:4])
    gap = (position + r.random(len(position))) * SLOT_GAP_S * US_PER_S
    served = Served(
        session=session,
        post=post,
        position=position,
        served_us=sessions.ts_us[session] + gap.astype(np.int64),
        source=source,
        propensity=np.asarray(cols[4], dtype=np.float64),
    )
    policy = np.full(len(session), RANKED, dtype=object)
    return Serving(
        served, policy, np.asarray(cols[5], dtype=object), np.asarray(cols[6], dtype=object)
    )


class _Feed:
    """One session's view of the user's published feed, fetched page by page as it scrolls:
    the posts still servable (in the pool, not served today), in the feed's order."""

    def __init__(self, client: FeedClient, user: int, page_size: int, pool: pd.Index, served):
        self._client, self._user, self._size = client, user, page_size
        self._pool, self._served = pool, served
        self._pending: list[int] = []  # pool indices fetched and not yet served, by rank
        self._cursor: str | None = None
        self._more = True
        first = self._fetch()
        self.version: str = first.version
        self.model: str | None = first.model_version
        self.generated_us = _epoch_us(first.generated_at)
        # A user without a feed of their own reads the version's fallback (trending) feed:
        # its next post is recorded as such, so that no one mistakes it for a ranked one.
        self.next_source = FALLBACK if first.fallback else RANKED_SOURCE

    def eligible(self) -> list[int]:
        """The fetched, unserved posts in feed order; fetches the next page when none is left."""
        self._pending = [p for p in self._pending if p not in self._served]
        while not self._pending and self._more:
            self._fetch()
            self._pending = [p for p in self._pending if p not in self._served]
        return self._pending

    def _fetch(self):
        page = self._client.page(self._user, self._size, self._cursor)
        ids = [item[C.POST_ID] for item in page.items]
        found = self._pool.get_indexer(ids)
        self._pending += [int(i) for i in found if i >= 0]
        self._cursor = page.next_cursor
        self._more = page.next_cursor is not None
        return page


def _epoch_us(iso: str | None) -> int:
    """Epoch microseconds of an ISO 8601 time (a feed without one: fresh from the epoch)."""
    if not iso:
        return 0
    t = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds
