"""The feed store: published versions of `gold.user_news_feed`, read a page at a time.

A version is one publish of a day's feeds. Publishing writes the new version's rows (SQLite)
or keys (Redis) under a new version id, invisible to readers, then flips one `current`
pointer: a reader sees the old version or the new one, never a mix, for one user and across
users. One read (`read`) resolves the pointer and the page in one snapshot (a SQLite read
transaction; a Redis Lua script). The version before the current one is kept for `rollback`;
older ones are collected after each publish. One user's feed can be replaced inside the
current version (`replace_user`) in one transaction (SQLite) or one RENAME (Redis).

Besides the feeds, each version holds the users it knows (from raw.users when the publisher
has it) and a fallback feed for known users without a feed of their own: the posts that most
feeds of the version hold (the version's trending posts; no upstream computes trending yet).

One writer at a time, any number of readers: a publish, a rollback and the collection of old
versions hold the store's writer lock (SQLite: an exclusive lock on a file beside the store,
released by the OS when its process dies; Redis: a lease with a token and an expiry, renewed
while the publish writes and checked again at the flip). A second writer fails at once with
`StoreBusy`, naming the holder. The flip is a compare-and-set on the version it replaces, and
a publish that fails or is refused removes what it wrote before it raises.
Backends: warehouse.feed_sqlite (default, one file under the data root, WAL) and
warehouse.feed_redis. `open_store` picks one from the `feeds` settings.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import itertools
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.catalog import ACTIONS, USER_NEWS_FEED, C, truth_column
from warehouse.config import FeedSettings
from warehouse.layout import DataRoot

TRENDING = "trending"  # the source name of fallback items
SOURCE_SEP = ","  # stores keep an item's sources as one joined string
# The fields of one served item, in the order the stores keep them.
ITEM_FIELDS = (
    C.RANK,
    C.POST_ID,
    C.SCORE,
    C.VALUE,
    *(truth_column(a) for a in ACTIONS),
    C.E_DWELL_S,
    C.SOURCES,
)


class FeedStoreError(RuntimeError):
    """A publish, rollback or read the store refuses, saying why."""


class NoVersion(FeedStoreError):
    """Nothing is published yet."""


class StoreBusy(FeedStoreError):
    """Another process holds the store's writer lock (a publish or rollback is running)."""


def holder(operation: str) -> str:
    """Who takes a writer lock, as a busy store names them: operation, process, host, time."""
    return (
        f"{operation} by pid {os.getpid()} on {socket.gethostname()} since {now_iso()} "
        f"(token {uuid.uuid4().hex[:12]})"
    )


def busy(store: str, held_by: str | None) -> StoreBusy:
    return StoreBusy(
        f"the {store} feed store is locked by another writer: {held_by or 'unknown holder'}; "
        "one publish or rollback at a time: wait for it to finish and retry"
    )


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One published version."""

    version: str
    ds: str
    users: int  # users with a feed
    items: int
    published_at: str  # ISO 8601, UTC
    # the warehouse versions it was built from: catalog table name -> version (lineage)
    built_from: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StoreStatus:
    backend: str
    current: VersionInfo | None
    previous: VersionInfo | None


@dataclasses.dataclass(frozen=True)
class Anchor:
    """The last item a client saw: where the next page starts."""

    rank: int
    post_id: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one atomic read returns: up to limit + 1 items (the extra one says there is more)."""

    version: str
    items: list[dict]
    anchor: str  # how the Anchor was found: none | rank | post | lost (then from the top)
    fallback: bool  # the items are the version's trending posts, not the user's own feed
    generated_at: str | None  # when the feed was generated (lastGenerated)
    model_version: str | None


@dataclasses.dataclass(frozen=True)
class UserFeed:
    """One user's rows, ready for a store: tuples (user_id, *ITEM_FIELDS), by rank."""

    user_id: int
    rows: list[tuple]
    generated_at: str
    model_version: str


@dataclasses.dataclass(frozen=True)
class FeedBatch:
    """A version to publish: every user's feed, the known users and the fallback feed.

    The feeds stay columnar (`table`: user_id and ITEM_FIELDS, sources joined, by user and
    rank; `starts`: each user's first row) so that a store writes them column-wise; `feeds`
    builds per-user UserFeeds (Python tuples) only when something asks for them.
    """

    ds: str
    table: pa.Table
    starts: np.ndarray  # first row of each user in `table`
    generated: list[str]  # per user with a feed: lastGenerated (ISO 8601)
    models: list[str]  # per user with a feed: model version
    known_users: list[int]  # includes every user with a feed
    trending: UserFeed
    built_from: dict[str, str] = dataclasses.field(default_factory=dict)  # table -> version

    @property
    def n_items(self) -> int:
        return self.table.num_rows

    @property
    def n_users(self) -> int:
        return len(self.starts)

    @property
    def user_ids(self) -> np.ndarray:
        return self.table.column(C.USER_ID).to_numpy()[self.starts]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.r_[self.starts, self.table.num_rows])

    def chunks(self, size: int) -> Iterator[pa.Table]:
        """The table about `size` rows at a time, each chunk whole users' feeds."""
        begin, n = 0, self.table.num_rows
        while begin < n:
            after = int(np.searchsorted(self.starts, begin + size))
            end = int(self.starts[after]) if after < len(self.starts) else n
            yield self.table.slice(begin, end - begin)
            begin = end

    @functools.cached_property
    def feeds(self) -> list[UserFeed]:
        columns = [_python_column(self.table, name) for name in (C.USER_ID, *ITEM_FIELDS)]
        with _no_gc():  # millions of new tuples: the cyclic GC would rescan them over and over
            rows = list(zip(*columns, strict=True))
        bounds = [*self.starts.tolist(), len(rows)]
        users = self.user_ids.tolist()
        return [
            UserFeed(users[i], rows[a:b], self.generated[i], self.models[i])
            for i, (a, b) in enumerate(itertools.pairwise(bounds))
        ]


class FeedStore(abc.ABC):
    """The interface both backends implement."""

    backend: str

    @abc.abstractmethod
    def publish(self, batch: FeedBatch) -> VersionInfo:
        """Write a new version, flip the current pointer to it, collect old versions."""

    @abc.abstractmethod
    def replace_user(self, feed: UserFeed) -> str:
        """Replace one user's feed in the current version; returns the version."""

    @abc.abstractmethod
    def rollback(self) -> VersionInfo:
        """Make the previous version current again and drop the current one."""

    @abc.abstractmethod
    def status(self) -> StoreStatus: ...

    @abc.abstractmethod
    def read(self, user_id: int, limit: int, after: Anchor | None = None) -> Snapshot | None:
        """One page (limit + 1 items) of the current version; None for an unknown user."""

    @abc.abstractmethod
    def last_generated(self, user_id: int) -> str | None:
        """When the user's feed in the current version was generated; None without one."""

    @abc.abstractmethod
    def record_served(self, rows: list[tuple[int, int, int, str, str]]) -> None:
        """Append (user_id, post_id, rank, version, served_at) rows to the served log."""

    @abc.abstractmethod
    def served_log(self) -> pa.Table:
        """The served log as a table (user_id, post_id, rank, version, served_at)."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Release connections."""


SERVED_SCHEMA = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64()),
        pa.field(C.POST_ID, pa.int64()),
        pa.field(C.RANK, pa.int32()),
        pa.field("version", pa.string()),
        pa.field(C.SERVED_AT, pa.string()),
    ]
)


def open_store(settings: FeedSettings, root: DataRoot) -> FeedStore:
    """The store the settings name: Redis for redis:// URLs, else SQLite."""
    url = settings.store_url or f"sqlite:///{root.feed_store.resolve()}"
    if url.startswith(("redis://", "rediss://")):
        from warehouse.feed_redis import RedisFeedStore

        return RedisFeedStore(url, settings)
    from warehouse.feed_sqlite import SqliteFeedStore

    return SqliteFeedStore(Path(url.removeprefix("sqlite:///")), settings)


def cursor_key(settings: FeedSettings, root: DataRoot) -> bytes:
    """The key that signs cursors: `feeds.cursor_key` when set, else the data root's own
    (generated at first use, owner-only), so that no key is shared through the repository."""
    if settings.cursor_key is not None:
        return settings.cursor_key.get_secret_value().encode()
    return root.secret("cursor_key")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


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


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


def item_dict(row: tuple) -> dict:
    """A stored row (user_id, *ITEM_FIELDS) as the read path returns it: sources as a list."""
    item = dict(zip(ITEM_FIELDS, row[1:], strict=True))
    sources = item[C.SOURCES]
    if sources is not None:
        item[C.SOURCES] = sources.split(SOURCE_SEP) if sources else []
    return item


def _python_column(feeds: pa.Table, name: str) -> list:
    """Python values of a column of a batch's table (sources already joined)."""
    column = feeds.column(name)
    if column.null_count == 0 and pa.types.is_primitive(column.type):
        return column.to_numpy().tolist()  # many times faster than to_pylist
    return column.to_pylist()


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
