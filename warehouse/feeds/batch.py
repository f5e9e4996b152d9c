"""A day's gold.user_news_feed as the batch a feed-store publish takes: checked, kept
columnar by user and rank, with the version's trending fallback."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.catalog import ACTIONS, TRENDING, USER_NEWS_FEED, C, truth_column
from warehouse.feeds.base import (
    ITEM_FIELDS,
    SOURCE_SEP,
    FeedBatch,
    FeedStoreError,
    UserFeed,
    now_iso,
)


def prepare_batch(
    feeds: pa.Table,
    ds: str,
    known_users: Iterable[int] | None,
    trending_size: int,
    built_from: dict[str, str] | None = None,
) -> FeedBatch:
    """Check a day's gold.user_news_feed and split it into per-user feeds plus the fallback.

    Ranks must run 1..n within each user (a page starts at a rank); a bad table raises naming
    the table and column.
    """
    feeds = _conform(feeds)
    users, ranks, starts, ok = _rank_layout(feeds)
    if not ok:  # not in (user, rank) order yet: sort, then check again
        feeds = feeds.sort_by([(C.USER_ID, "ascending"), (C.RANK, "ascending")])
        users, ranks, starts, ok = _rank_layout(feeds)
    if not ok:
        expected = _expected_ranks(len(users), starts)
        bad = int(users[np.flatnonzero(ranks != expected)[0]])
        raise FeedStoreError(
            f"{USER_NEWS_FEED.qualified}: column {C.RANK} must run 1..n without gaps or "
            f"repeats within each user; user_id={bad} does not"
        )
    firsts = pa.array(starts, pa.int64())
    generated = [t.isoformat() for t in feeds.column(C.GENERATED_AT).take(firsts).to_pylist()]
    models = feeds.column(C.MODEL_VERSION).take(firsts).to_pylist()
    table = feeds.select([C.USER_ID, *ITEM_FIELDS[:-1]]).append_column(
        C.SOURCES, pc.binary_join(feeds.column(C.SOURCES), SOURCE_SEP)
    )
    known = set(int(u) for u in known_users) if known_users is not None else set()
    known.update(users[starts].tolist())
    trending = trending_feed(feeds, trending_size)
    lineage = dict(built_from or {})
    return FeedBatch(ds, table, starts, generated, models, sorted(known), trending, lineage)


def _rank_layout(feeds: pa.Table):
    """(users, ranks, first row of each user, whether rows run by user with ranks 1..n)."""
    users = feeds.column(C.USER_ID).to_numpy()
    ranks = feeds.column(C.RANK).to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else users[:0]
    grouped = bool(np.all(np.diff(users[starts]) > 0)) if len(starts) > 1 else True
    ok = grouped and np.array_equal(ranks, _expected_ranks(len(users), starts))
    return users, ranks, starts, ok


def _expected_ranks(n: int, starts: np.ndarray) -> np.ndarray:
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) + 1


def trending_feed(feeds: pa.Table, size: int) -> UserFeed:
    """The version's most frequent posts, most feeds first (ties: lower post_id first).

    A post appears once in a feed, so its row count is the number of feeds holding it; score
    is that count over the number of feeds, and the model columns are means over those feeds,
    so that a fallback item reads like any other. Its user_id is -1.
    """
    n_users = max(1, pc.count_distinct(feeds.column(C.USER_ID)).as_py())
    # Counted by sorting (np.unique): many times faster than a hash group-by over millions
    # of rows with as many distinct posts.
    posts, counts = np.unique(feeds.column(C.POST_ID).to_numpy(), return_counts=True)
    order = np.lexsort((posts, -counts))[:size]  # most feeds first, then lower post_id
    top_posts, top_counts = posts[order], counts[order]
    means = [truth_column(a) for a in ACTIONS]
    means = [C.VALUE, *means, C.E_DWELL_S]
    held = feeds.filter(pc.is_in(feeds.column(C.POST_ID), pa.array(top_posts)))
    stats = held.group_by(C.POST_ID).aggregate([(c, "mean") for c in means])
    by_post = {row[C.POST_ID]: tuple(row[f"{c}_mean"] for c in means) for row in stats.to_pylist()}
    rows = [
        (-1, rank, post, count / n_users, *by_post[post], TRENDING)
        for rank, (post, count) in enumerate(
            zip(top_posts.tolist(), top_counts.tolist(), strict=True), 1
        )
    ]
    models = feeds.column(C.MODEL_VERSION).unique().to_pylist()
    return UserFeed(-1, rows, now_iso(), ",".join(sorted(models)))


def _conform(feeds: pa.Table) -> pa.Table:
    schema = USER_NEWS_FEED.schema
    if C.DS in feeds.column_names:
        feeds = feeds.drop_columns([C.DS])
    missing = [c for c in schema.names if c not in feeds.column_names]
    if missing:
        raise FeedStoreError(f"{USER_NEWS_FEED.qualified}: missing columns {missing}")
    try:
        feeds = feeds.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as err:
        raise FeedStoreError(f"{USER_NEWS_FEED.qualified}: {err}") from None
    for field in schema:
        if not field.nullable and feeds.column(field.name).null_count:
            raise FeedStoreError(f"{USER_NEWS_FEED.qualified}: column {field.name} has nulls")
    return feeds
