"""Hand-made feeds for the feed store tests (nothing produces gold.user_news_feed yet).

Every item tells which version wrote it: post_id = tag * 1_000_000 + user * 1_000 + k, and
model_version is f"m{tag}", so a reader can check a page against the version it claims.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa

from warehouse.catalog import ACTIONS, USER_NEWS_FEED, C, truth_column
from warehouse.config import FeedSettings
from warehouse.feeds.base import FeedStore
from warehouse.feeds.batch import prepare_batch
from warehouse.feeds.open import open_store
from warehouse.layout import DataRoot

DS = "2026-01-05"
GENERATED = dt.datetime(2026, 1, 5, 3, tzinfo=dt.UTC)


def post_of(tag: int, user: int, k: int) -> int:
    return tag * 1_000_000 + user * 1_000 + k


def tag_of(post_id: int) -> int:
    return post_id // 1_000_000


def make_feeds(tag: int, users, n_items, posts=None) -> pa.Table:
    """One feed per user: n_items (an int, or a function of the user) ranked from 1.

    posts(user, rank) picks the post ids; by default post_of(tag, user, rank).
    """
    posts = posts or (lambda user, rank: post_of(tag, user, rank))
    data: dict[str, list] = {c: [] for c in USER_NEWS_FEED.columns}
    for user in users:
        n = n_items(user) if callable(n_items) else n_items
        for rank in range(1, n + 1):
            data[C.USER_ID].append(user)
            data[C.RANK].append(rank)
            data[C.POST_ID].append(posts(user, rank))
            data[C.SCORE].append(1.0 / rank)
            data[C.VALUE].append(2.0 / rank)
            for action in ACTIONS:
                data[truth_column(action)].append(0.01 * tag)
            data[C.E_DWELL_S].append(10.0)
            data[C.SOURCES].append(["network", "popular"] if rank % 2 else ["network"])
            data[C.MODEL_VERSION].append(f"m{tag}")
            data[C.GENERATED_AT].append(GENERATED + dt.timedelta(hours=tag))
    return pa.Table.from_pydict(data, schema=USER_NEWS_FEED.schema)


def batch(tag: int, users, n_items, known=None, ds: str = DS, posts=None):
    return prepare_batch(make_feeds(tag, users, n_items, posts), ds, known, trending_size=10)


def settings_for(url: str | None = None, **fields) -> FeedSettings:
    prefix = f"t{uuid.uuid4().hex[:10]}"  # every Redis test in its own namespace
    return FeedSettings(store_url=url, redis_prefix=prefix, **fields)


def open_test_store(kind: str, home, redis_url: str | None, **fields) -> FeedStore:
    """A fresh store of a kind ("sqlite" or "redis") for one test."""
    url = redis_url if kind == "redis" else None
    return open_store(settings_for(url, **fields), DataRoot(home))
