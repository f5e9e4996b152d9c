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
Backends: warehouse.feeds.sqlite (default, one file under the data root, WAL) and
warehouse.feeds.redis, each importing only this interface; warehouse.feeds.open.open_store
picks one from the `feeds` settings (and cursor_key the key that signs cursors), and
warehouse.feeds.batch.prepare_batch turns a day's gold.user_news_feed into the FeedBatch a
publish takes.
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
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from warehouse.catalog import ACTIONS, C, truth_column

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


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _python_column(feeds: pa.Table, name: str) -> list:
    """Python values of a column of a batch's table (sources already joined)."""
    column = feeds.column(name)
    if column.null_count == 0 and pa.types.is_primitive(column.type):
        return column.to_numpy().tolist()  # many times faster than to_pylist
    return column.to_pylist()


def item_dict(row: tuple) -> dict:
    """A stored row (user_id, *ITEM_FIELDS) as the read path returns it: sources as a list."""
    item = dict(zip(ITEM_FIELDS, row[1:], strict=True))
    sources = item[C.SOURCES]
    if sources is not None:
        item[C.SOURCES] = sources.split(SOURCE_SEP) if sources else []
    return item
