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

One publisher at a time (as for the warehouse's partitions); any number of readers.
Backends: warehouse.feeds.sqlite (default, one file under the data root, WAL) and
warehouse.feeds.redis, each importing only this interface; warehouse.feeds.open.open_store
picks one from the `feeds` settings, and warehouse.feeds.batch.prepare_batch turns a day's
gold.user_news_feed into the FeedBatch a publish takes.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt

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


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One published version."""

    version: str
    ds: str
    users: int  # users with a feed
    items: int
    published_at: str  # ISO 8601, UTC


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
    """A version to publish: every user's feed, the known users and the fallback feed."""

    ds: str
    feeds: list[UserFeed]
    known_users: list[int]  # includes every user with a feed
    trending: UserFeed

    @property
    def n_items(self) -> int:
        return sum(len(f.rows) for f in self.feeds)


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


def item_dict(row: tuple) -> dict:
    """A stored row (user_id, *ITEM_FIELDS) as the read path returns it: sources as a list."""
    item = dict(zip(ITEM_FIELDS, row[1:], strict=True))
    sources = item[C.SOURCES]
    if sources is not None:
        item[C.SOURCES] = sources.split(SOURCE_SEP) if sources else []
    return item
