"""The SQLite feed store: one file in WAL mode, the default on one machine.

Tables: `versions` (one row per publish, with its state), `pointer` (the current version),
`feed_users` (per version: every known user, with lastGenerated and model version; users
without a feed have n_items 0; user_id -1 is the fallback feed) and `feed_blobs` (per version
and user, the whole feed as one blob of fixed-width records, rank = position: post_id, score,
value, the truths, e_dwell_s and a code into the row's list of sources). One row per user
instead of one per item lets a publish write 5M items as ~10k rows built column-wise from
Arrow; a page reads one row and slices it. A publish inserts the new version's rows, then
flips the pointer in one short transaction. A read runs in one read transaction, so WAL gives
it one snapshot: the pointer and the rows it reads always belong together.

Writers (publish, rollback, the collection of old versions) hold an exclusive `flock` on
`<name>.lock` beside the store for their whole run; a second writer fails at once naming the
holder. The flip checks that the pointer still names the version the publish started from.

The served log lives in a second file next to the store (`<name>.served<suffix>`), so that
readers appending to it never wait on a publish holding the store's write lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.catalog import C
from warehouse.feeds.base import (
    ITEM_FIELDS,
    SERVED_SCHEMA,
    Anchor,
    FeedBatch,
    FeedStore,
    FeedStoreError,
    NoVersion,
    Snapshot,
    StoreStatus,
    UserFeed,
    VersionInfo,
    busy,
    holder,
    item_dict,
    now_iso,
)

_FLOATS = ITEM_FIELDS[2:-1]  # score, value, the truths, e_dwell_s
# One item in a feed blob: rank is its position (1-based); sources a code into the row's list.
_ITEM = np.dtype([(C.POST_ID, "<i8"), *((f, "<f8") for f in _FLOATS), ("src", "<i2")])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    vid INTEGER PRIMARY KEY AUTOINCREMENT, version TEXT UNIQUE, ds TEXT, users INTEGER,
    items INTEGER, published_at TEXT, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pointer (name TEXT PRIMARY KEY, vid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS feed_users (
    vid INTEGER, user_id INTEGER, generated_at TEXT, model_version TEXT, n_items INTEGER,
    PRIMARY KEY (vid, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_blobs (
    vid INTEGER NOT NULL, user_id INTEGER NOT NULL, items BLOB NOT NULL, sources TEXT NOT NULL,
    UNIQUE (vid, user_id));
"""
_SERVED_SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    user_id INTEGER, post_id INTEGER, rank INTEGER, version TEXT, served_at TEXT);
"""
_INSERT_BLOB = "INSERT OR REPLACE INTO feed_blobs VALUES (?, ?, ?, ?)"
_SELECT_BLOB = "SELECT items, sources FROM feed_blobs WHERE vid = ? AND user_id = ?"
_ROWS_PER_TX = 500_000  # items per insert transaction: bounds the time a writer holds the lock


def _blobs(vid: int, part: pa.Table, starts: np.ndarray, users: list[int]) -> list[tuple]:
    """Rows of feed_blobs for the users of `part` (whole feeds, by user and rank), built
    column-wise: one fixed-width record per item, sources as codes into the row's list."""
    items = np.empty(part.num_rows, _ITEM)
    items[C.POST_ID] = part.column(C.POST_ID).to_numpy()
    for name in _FLOATS:
        items[name] = part.column(name).to_numpy()
    encoded = pc.dictionary_encode(part.column(C.SOURCES).combine_chunks())
    items["src"] = pc.fill_null(encoded.indices, -1).to_numpy()
    names = json.dumps(encoded.dictionary.to_pylist())
    raw = items.tobytes()
    bounds = [*(starts * _ITEM.itemsize).tolist(), len(raw)]
    return [
        (vid, user, raw[a:b], names)
        for user, (a, b) in zip(users, itertools.pairwise(bounds), strict=True)
    ]


def _feed_blob(vid: int, feed: UserFeed) -> tuple:
    """The feed_blobs row of one UserFeed (tuples (user_id, *ITEM_FIELDS), ranks 1..n)."""
    ranks = [row[1] for row in feed.rows]
    if ranks != list(range(1, len(ranks) + 1)):
        raise FeedStoreError(f"user {feed.user_id}: ranks must run 1..n, got {ranks[:10]}...")
    names = sorted({row[-1] for row in feed.rows if row[-1] is not None})
    code = {name: i for i, name in enumerate(names)}
    records = [(row[2], *row[3:-1], code.get(row[-1], -1)) for row in feed.rows]
    return (vid, feed.user_id, np.array(records, _ITEM).tobytes(), json.dumps(names))


_SERVED_WAIT_S = 0.2  # how long logging a served page waits for the served log's lock


class SqliteFeedStore(FeedStore):
    backend = "sqlite"

    def __init__(self, path: Path, settings):
        self.path = Path(path)
        self.served_path = self.path.with_name(f"{self.path.stem}.served{self.path.suffix}")
        self.lock_path = self.path.with_name(f"{self.path.stem}.lock")  # the writer lock
        self.keep_versions = settings.keep_versions
        self._local = threading.local()  # one connection per thread (sqlite3's rule)
        self._names: dict[int, str] = {}  # vid -> version name: ids are never reused
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(_SCHEMA)
        columns = {r[1] for r in self._conn().execute("PRAGMA table_info(versions)")}
        if "built_from" not in columns:  # a store from before lineage
            self._conn().execute("ALTER TABLE versions ADD COLUMN built_from TEXT")
        # A store written before feed_blobs keeps its items in feed_items: collected, not read
        # (its versions answer with an error naming them until the next publish).
        self._legacy = bool(
            self._conn()
            .execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feed_items'")
            .fetchone()
        )
        self._served().executescript(_SERVED_SCHEMA)

    # -- connections ---------------------------------------------------------------------
    def _connect(self, path: Path, timeout: float = 30) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)  # explicit BEGINs
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        return conn

    def _conn(self) -> sqlite3.Connection:
        if getattr(self._local, "conn", None) is None:
            self._local.conn = self._connect(self.path)
        return self._local.conn

    def _served(self) -> sqlite3.Connection:
        if getattr(self._local, "served", None) is None:
            # A page waits on the log this long at most when another process holds its lock;
            # then the write fails and the reader drops the rows (warehouse.feeds.reader).
            self._local.served = self._connect(self.served_path, timeout=_SERVED_WAIT_S)
        return self._local.served

    def close(self) -> None:
        for name in ("conn", "served"):
            conn = getattr(self._local, name, None)
            if conn is not None:
                conn.close()
                setattr(self._local, name, None)

    @contextlib.contextmanager
    def _write(self):
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- the writer lock -----------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, operation: str):
        """Hold the store's writer lock (flock on `<name>.lock`) or raise StoreBusy at once.

        The OS releases the lock when the holding process dies, so a crashed publisher never
        leaves the store locked; the file holds the holder's description, for the message.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held_by = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                raise busy(f"SQLite ({self.path.name})", held_by) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder(operation).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- writes --------------------------------------------------------------------------
    def publish(self, batch: FeedBatch) -> VersionInfo:
        with self._locked("publish"):
            self._drop_states("staging")  # left by a publish that crashed before its flip
            with self._write() as conn:
                row = conn.execute("SELECT vid FROM pointer WHERE name = 'current'").fetchone()
                replaces = row[0] if row else None
                vid = conn.execute(
                    "INSERT INTO versions (ds, users, items, published_at, state, built_from) "
                    "VALUES (?, ?, ?, ?, 'staging', ?)",
                    (
                        batch.ds,
                        batch.n_users,
                        batch.n_items,
                        now_iso(),
                        json.dumps(batch.built_from),
                    ),
                ).lastrowid
                conn.execute(
                    "UPDATE versions SET version = ? WHERE vid = ?", (f"{batch.ds}.{vid}", vid)
                )
            try:
                self._insert_users(vid, batch)
                self._insert_items(vid, batch)
                self._flip(vid, replaces)
            except BaseException:
                self._drop_vids([vid])  # what a failed or refused publish wrote: gone at once
                raise
            self._drop_states("dropped")
            return self._info(self._conn(), vid)

    def _flip(self, vid: int, replaces: int | None, drop: int | None = None) -> None:
        """Make vid current if the pointer still names `replaces` (compare-and-set); a
        rollback drops the version it replaces (`drop`)."""
        with self._write() as conn:  # one row, one short transaction
            row = conn.execute("SELECT vid FROM pointer WHERE name = 'current'").fetchone()
            now = row[0] if row else None
            if now != replaces:
                raise FeedStoreError(
                    f"refused at the flip: the current version moved from "
                    f"{self._label(conn, replaces)} to {self._label(conn, now)} meanwhile "
                    "(another writer without the lock); the pointer is unchanged"
                )
            if drop is not None:
                conn.execute("UPDATE versions SET state = 'dropped' WHERE vid = ?", (drop,))
            conn.execute("UPDATE versions SET state = 'live' WHERE vid = ?", (vid,))
            conn.execute("INSERT OR REPLACE INTO pointer (name, vid) VALUES ('current', ?)", (vid,))
            live = [r[0] for r in conn.execute(_LIVE_DESC)]
            conn.executemany(
                "UPDATE versions SET state = 'dropped' WHERE vid = ?",
                [(v,) for v in live[self.keep_versions :]],
            )

    def _label(self, conn, vid: int | None) -> str:
        if vid is None:
            return "none"
        row = conn.execute("SELECT version FROM versions WHERE vid = ?", (vid,)).fetchone()
        return row[0] if row else f"a deleted version (id {vid})"

    def replace_user(self, feed: UserFeed) -> str:
        with self._write() as conn:
            vid = self._current(conn)
            if feed.rows:
                conn.execute(_INSERT_BLOB, _feed_blob(vid, feed))
            else:
                conn.execute(
                    "DELETE FROM feed_blobs WHERE vid = ? AND user_id = ?", (vid, feed.user_id)
                )
            old = conn.execute(
                "SELECT n_items FROM feed_users WHERE vid = ? AND user_id = ?", (vid, feed.user_id)
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO feed_users VALUES (?, ?, ?, ?, ?)",
                (vid, feed.user_id, feed.generated_at, feed.model_version, len(feed.rows)),
            )
            had = old[0] if old else 0
            conn.execute(
                "UPDATE versions SET items = items + ?, users = users + ? WHERE vid = ?",
                (len(feed.rows) - had, int(had == 0 and len(feed.rows) > 0), vid),
            )
            return self._name(conn, vid)

    def rollback(self) -> VersionInfo:
        with self._locked("rollback"):
            conn = self._conn()
            live = [r[0] for r in conn.execute(_LIVE_DESC)]
            if len(live) < 2:
                raise FeedStoreError("no previous version to roll back to")
            info = self._info(conn, live[1])
            self._flip(live[1], live[0], drop=live[0])
            self._drop_states("dropped")
            return info

    def _insert_users(self, vid: int, batch: FeedBatch) -> None:
        users = batch.user_ids.tolist()
        columns = [[vid] * len(users), users, batch.generated, batch.models]
        rows = list(zip(*columns, batch.lengths.tolist(), strict=True))
        trend = batch.trending
        rows.append((vid, trend.user_id, trend.generated_at, trend.model_version, len(trend.rows)))
        with_feed = set(users)
        rows += [(vid, u, None, None, 0) for u in batch.known_users if u not in with_feed]
        with self._write() as conn:
            conn.executemany("INSERT INTO feed_users VALUES (?, ?, ?, ?, ?)", rows)

    def _insert_items(self, vid: int, batch: FeedBatch) -> None:
        """One feed_blobs row per user, built column-wise from the batch's Arrow table, about
        _ROWS_PER_TX items per transaction."""
        for part in batch.chunks(_ROWS_PER_TX):
            users = part.column(C.USER_ID).to_numpy()
            starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
            rows = _blobs(vid, part, starts, users[starts].tolist())
            with self._write() as conn:
                conn.executemany(_INSERT_BLOB, rows)
        with self._write() as conn:
            conn.execute(_INSERT_BLOB, _feed_blob(vid, batch.trending))

    def _drop_states(self, state: str) -> None:
        """Delete the rows of versions in a state no reader can reach (staging or dropped)."""
        vids = self._conn().execute("SELECT vid FROM versions WHERE state = ?", (state,))
        self._drop_vids([r[0] for r in vids])

    def _drop_vids(self, vids: list[int]) -> None:
        """Delete versions that are not current (never the pointer's), every row of them."""
        with self._write() as conn:
            current = conn.execute("SELECT vid FROM pointer WHERE name = 'current'").fetchone()
            for vid in vids:
                if current is not None and vid == current[0]:
                    continue
                conn.execute("DELETE FROM feed_blobs WHERE vid = ?", (vid,))
                if self._legacy:
                    conn.execute("DELETE FROM feed_items WHERE vid = ?", (vid,))
                conn.execute("DELETE FROM feed_users WHERE vid = ?", (vid,))
                conn.execute("DELETE FROM versions WHERE vid = ?", (vid,))

    # -- reads ---------------------------------------------------------------------------
    def read(self, user_id: int, limit: int, after: Anchor | None = None) -> Snapshot | None:
        conn = self._conn()
        conn.execute("BEGIN")  # one WAL snapshot for the pointer and every row below
        try:
            vid = self._current(conn)
            user = conn.execute(_SELECT_USER, (vid, user_id)).fetchone()
            if user is None:
                return None
            fallback = user[2] == 0
            feed_user = -1 if fallback else user_id
            if fallback:
                user = conn.execute(_SELECT_USER, (vid, -1)).fetchone()
            blob = conn.execute(_SELECT_BLOB, (vid, feed_user)).fetchone()
            version = self._name(conn, vid)
        finally:
            conn.execute("COMMIT")
        if blob is None:
            raise FeedStoreError(
                f"version {version} has no items for user {feed_user} (a version published "
                "before feed_blobs? publish again)"
            )
        items = np.frombuffer(blob[0], _ITEM)
        start, anchor = _resolve(items[C.POST_ID], after)
        names = json.loads(blob[1]) if blob[1] != "[]" else []
        page = [
            item_dict((feed_user, start + k + 1, post, *floats, names[src] if src >= 0 else None))
            for k, (post, *floats, src) in enumerate(items[start : start + limit + 1].tolist())
        ]
        return Snapshot(version, page, anchor, fallback, user[0], user[1])

    def last_generated(self, user_id: int) -> str | None:
        conn = self._conn()
        row = conn.execute(
            "SELECT u.generated_at FROM feed_users u JOIN pointer p ON u.vid = p.vid "
            "WHERE p.name = 'current' AND u.user_id = ? AND u.n_items > 0",
            (user_id,),
        ).fetchone()
        return row[0] if row else None

    def status(self) -> StoreStatus:
        conn = self._conn()
        current = conn.execute("SELECT vid FROM pointer WHERE name = 'current'").fetchone()
        if current is None:
            return StoreStatus(self.backend, None, None)
        older = conn.execute(
            "SELECT vid FROM versions WHERE state = 'live' AND vid < ? ORDER BY vid DESC LIMIT 1",
            (current[0],),
        ).fetchone()
        previous = self._info(conn, older[0]) if older else None
        return StoreStatus(self.backend, self._info(conn, current[0]), previous)

    def _current(self, conn) -> int:
        row = conn.execute("SELECT vid FROM pointer WHERE name = 'current'").fetchone()
        if row is None:
            raise NoVersion("the feed store has no published version")
        return row[0]

    def _name(self, conn, vid: int) -> str:
        if vid not in self._names:
            self._names[vid] = conn.execute(
                "SELECT version FROM versions WHERE vid = ?", (vid,)
            ).fetchone()[0]
        return self._names[vid]

    def _info(self, conn, vid: int) -> VersionInfo:
        row = conn.execute(
            "SELECT version, ds, users, items, published_at, built_from FROM versions "
            "WHERE vid = ?",
            (vid,),
        ).fetchone()
        if row is None:
            raise FeedStoreError(f"the pointer names version id {vid}, which has no metadata")
        return VersionInfo(*row[:5], json.loads(row[5] or "{}"))

    # -- served log ----------------------------------------------------------------------
    def record_served(self, rows: list[tuple[int, int, int, str, str]]) -> None:
        conn = self._served()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO served VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:  # a full disk fails the insert or the commit: end the transaction
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def served_log(self) -> pa.Table:
        rows = self._served().execute("SELECT * FROM served ORDER BY rowid").fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in SERVED_SCHEMA]
        return pa.Table.from_arrays([list(c) for c in columns], schema=SERVED_SCHEMA)


_LIVE_DESC = "SELECT vid FROM versions WHERE state = 'live' ORDER BY vid DESC"
_SELECT_USER = (
    "SELECT generated_at, model_version, n_items FROM feed_users WHERE vid = ? AND user_id = ?"
)


def _resolve(posts: np.ndarray, after: Anchor | None) -> tuple[int, str]:
    """The index of the page's first item and how the client's last item was found."""
    if after is None:
        return 0, "none"
    if 1 <= after.rank <= len(posts) and posts[after.rank - 1] == after.post_id:
        return after.rank, "rank"
    moved = np.flatnonzero(posts == after.post_id)
    return (int(moved[0]) + 1, "post") if moved.size else (0, "lost")
