"""The Redis feed store: the same interface, for a cluster's read path.

Keys, under the `feeds.redis_prefix` namespace P (V is a version name):

    P:current               the current version (the pointer readers resolve)
    P:versions              list of live versions, oldest first (current is the last)
    P:seq                   publish counter: version names are <ds>.<seq>
    P:staging               the version a publish is writing (collected if it crashed)
    P:lock                  the writer lease: "<token> <holder>", with an expiry (PX)
    P:v:V:meta              hash: ds, users, items, published_at, built_from (lineage)
    P:v:V:users             set of the users the version knows
    P:v:V:gen               hash user -> [generated_at, model_version] (lastGenerated)
    P:v:V:feed:U            list of U's items, rank 1 first, one JSON array each; TTL
    P:v:V:feed:-1           the fallback (trending) feed
    P:served                stream of pages served (the served log)

A publish or rollback first takes the writer lease (SET NX PX; a second writer fails at once
naming the holder), renews it while it writes, then flips in one Lua script that checks the
lease is still its own and the pointer still names the version it replaces (compare-and-set)
before it SETs the pointer and appends to the versions list; a publish that fails or is
refused deletes what it wrote. a read is one Lua script (pointer, user and page in one
atomic step), so a reader never mixes versions. Replacing one user writes a temporary list
and RENAMEs it over the user's key (atomic), guarded by WATCH on the pointer.

Feeds carry a TTL (`feeds.redis_ttl_s`); run Redis with `maxmemory-policy volatile-lru` so
that under memory pressure it evicts feeds (with a TTL) and never the pointers or version
metadata (without). A known user whose feed expired or was evicted gets the fallback. Opening
the store checks the policy and refuses an `allkeys-*` one, which may evict the pointer or a
version's metadata (then every user gets 404 and a rollback has nothing to go back to).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import secrets

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

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

log = logging.getLogger(__name__)

_PIPELINE_USERS = 1_000  # users per pipeline round trip while publishing
_CHUNK_ROWS = 100_000  # items formatted and sent per pipeline while publishing
_SERVED_MAXLEN = 1_000_000  # pages kept in the served stream (approximate trim)
SAFE_POLICIES = ("noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")

# KEYS: lock. ARGV: the lease's value, ttl ms. Extends the lease if it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lock. ARGV: the lease's value. Deletes the lease if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: lock, current, versions, staging. ARGV: lease value, the version replaced ('' for
# none), the new version, whether to append it to the versions list (1) or pop the newest (0).
# Returns {'ok'} or {'lease', holder} (the lease is gone or another's) or {'moved', current}.
_FLIP = """
local lease = redis.call('GET', KEYS[1])
if lease ~= ARGV[1] then return {'lease', lease or ''} end
local cur = redis.call('GET', KEYS[2]) or ''
if cur ~= ARGV[2] then return {'moved', cur} end
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] == '1' then
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('DEL', KEYS[4])
else
  redis.call('RPOP', KEYS[3])
end
return {'ok'}
"""

# ARGV: prefix, user, limit, anchor rank (0: none), anchor post.
# Returns {version} for an unknown user, else {version, fallback, gen, anchor, items}.
_READ = """
local p = ARGV[1]
local cur = redis.call('GET', p .. ':current')
if not cur then return false end
local base = p .. ':v:' .. cur
local uid = ARGV[2]
local key = base .. ':feed:' .. uid
local gen = redis.call('HGET', base .. ':gen', uid)
local fallback = 0
if (not gen) or redis.call('EXISTS', key) == 0 then
  if redis.call('SISMEMBER', base .. ':users', uid) == 0 then return {cur} end
  key = base .. ':feed:-1'
  gen = redis.call('HGET', base .. ':gen', '-1')
  fallback = 1
end
local limit = tonumber(ARGV[3])
local arank = tonumber(ARGV[4])
local apost = ARGV[5]
local start = 0
local anchor = 'none'
-- an item is a JSON array [rank, post_id, ...]: compare the post id as text, exactly
local function post_of(item) return string.match(item, '^%[%-?%d+,(%-?%d+),') end
if arank > 0 then
  local at = redis.call('LINDEX', key, arank - 1)
  if at and post_of(at) == apost then
    start = arank
    anchor = 'rank'
  else
    anchor = 'lost'
    for i, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
      if post_of(item) == apost then
        start = i
        anchor = 'post'
        break
      end
    end
  end
end
return {cur, fallback, gen or false, anchor, redis.call('LRANGE', key, start, start + limit)}
"""


class RedisFeedStore(FeedStore):
    backend = "redis"

    def __init__(self, url: str, settings):
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.p = settings.redis_prefix
        self.ttl = settings.redis_ttl_s
        self.keep_versions = settings.keep_versions
        self.lease_ms = settings.lock_ttl_s * 1000
        self._read = self.client.register_script(_READ)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._flip_script = self.client.register_script(_FLIP)
        self._lease: str | None = None
        check_policy(self.client)

    def close(self) -> None:
        self.client.close()

    def _base(self, version: str) -> str:
        return f"{self.p}:v:{version}"

    # -- the writer lease ----------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, operation: str):
        """Hold the writer lease (P:lock, expiring after feeds.lock_ttl_s unless renewed) or
        raise StoreBusy at once, naming the holder."""
        value = f"{secrets.token_hex(8)} {holder(operation)}"
        if not self.client.set(f"{self.p}:lock", value, nx=True, px=self.lease_ms):
            raise busy(f"Redis ({self.p})", self.client.get(f"{self.p}:lock"))
        self._lease = value
        try:
            yield
        finally:
            self._lease = None
            self._release(keys=[f"{self.p}:lock"], args=[value])

    def _keep_lease(self) -> None:
        """Renew the lease; raise if it expired and another writer took over meanwhile."""
        if not self._renew(keys=[f"{self.p}:lock"], args=[self._lease, self.lease_ms]):
            raise FeedStoreError(
                "the writer lease expired while writing (feeds.lock_ttl_s too short?) and "
                f"is now held by {self.client.get(f'{self.p}:lock') or 'nobody'}: stopped"
            )

    def _flip(self, replaces: str | None, version: str, publish: bool) -> None:
        keys = [f"{self.p}:{k}" for k in ("lock", "current", "versions", "staging")]
        args = [self._lease, replaces or "", version, "1" if publish else "0"]
        out = self._flip_script(keys=keys, args=args)
        if out[0] == "lease":
            raise FeedStoreError(
                f"refused at the flip: the writer lease is no longer ours (held by "
                f"{out[1] or 'nobody'}); the pointer is unchanged"
            )
        if out[0] == "moved":
            raise FeedStoreError(
                f"refused at the flip: the current version moved from {replaces or 'none'} to "
                f"{out[1] or 'none'} meanwhile; the pointer is unchanged"
            )

    # -- writes --------------------------------------------------------------------------
    def publish(self, batch: FeedBatch) -> VersionInfo:
        with self._locked("publish"):
            return self._publish(batch)

    def _publish(self, batch: FeedBatch) -> VersionInfo:
        r = self.client
        leftover = r.get(f"{self.p}:staging")
        if leftover and leftover not in r.lrange(f"{self.p}:versions", 0, -1):
            self._delete_version(leftover)  # a publish that crashed before its flip
        replaces = r.get(f"{self.p}:current")
        version = f"{batch.ds}.{r.incr(f'{self.p}:seq')}"
        r.set(f"{self.p}:staging", version)
        base = self._base(version)
        try:
            self._write_items(base, batch)
            self._write_feed(r, base, batch.trending, f"{base}:feed:{batch.trending.user_id}")
            for start in range(0, len(batch.known_users), 10_000):
                r.sadd(f"{base}:users", *batch.known_users[start : start + 10_000])
            info = VersionInfo(
                version, batch.ds, batch.n_users, batch.n_items, now_iso(), batch.built_from
            )
            r.hset(f"{base}:meta", mapping=_meta(info))
            self._flip(replaces, version, publish=True)
        except BaseException:
            if r.get(f"{self.p}:current") != version:  # not if the flip itself went through
                self._delete_version(version)  # what a failed or refused publish wrote
                if r.get(f"{self.p}:staging") == version:
                    r.delete(f"{self.p}:staging")
            raise
        live = r.lrange(f"{self.p}:versions", 0, -1)
        for old in live[: -self.keep_versions]:
            r.lrem(f"{self.p}:versions", 1, old)
            self._delete_version(old)
        return info

    def _write_items(self, base: str, batch: FeedBatch) -> None:
        """Every user's list, through pipelines: the items of a chunk of rows are formatted
        as JSON arrays column-wise (Arrow), then RPUSHed per user (a user's rows may span two
        chunks: RPUSH appends). Then each list's TTL and the users' lastGenerated."""
        for part in batch.chunks(_CHUNK_ROWS):
            self._rpush_all(base, part)
            self._keep_lease()
        users = batch.user_ids.tolist()
        gens = zip(users, batch.generated, batch.models, batch.lengths.tolist(), strict=True)
        for start in range(0, len(users), _PIPELINE_USERS):
            pipe = self.client.pipeline(transaction=False)
            part = list(itertools.islice(gens, _PIPELINE_USERS))
            for user, *_ in part:
                pipe.expire(f"{base}:feed:{user}", self.ttl)
            pipe.hset(f"{base}:gen", mapping={u: json.dumps([g, m, n]) for u, g, m, n in part})
            pipe.execute()
            if start % (50 * _PIPELINE_USERS) == 0:
                self._keep_lease()

    def _rpush_all(self, base: str, part: pa.Table) -> None:
        """RPUSH each user's items of a chunk (whole feeds), as one write of Redis protocol
        (RESP) built column-wise: the items framed by Arrow (`$<len>\\r\\n<item>\\r\\n`),
        each user's run of them one slice of the framed array's data buffer."""
        if not part.num_rows:
            return
        texts = _item_texts(part)
        size = pc.cast(pc.binary_length(texts), pa.string())
        framed = pc.binary_join_element_wise("$", size, "\r\n", texts, "\r\n", "")
        framed = framed.combine_chunks() if isinstance(framed, pa.ChunkedArray) else framed
        offsets = np.frombuffer(framed.buffers()[1], np.int32)[framed.offset :]
        data = memoryview(framed.buffers()[2])
        users = part.column(C.USER_ID).to_numpy()
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True]).tolist()
        out = []
        for a, b in itertools.pairwise(bounds):
            key = f"{base}:feed:{users[a]}".encode()
            out.append(b"*%d\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n" % (b - a + 2, len(key), key))
            out.append(data[offsets[a] : offsets[b]])
        conn = self.client.connection_pool.get_connection("RPUSH")
        try:
            conn.send_packed_command(out)
            for _ in range(len(bounds) - 1):
                conn.read_response()  # raises the first error reply
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            self.client.connection_pool.release(conn)

    def _write_feed(self, pipe, base: str, feed: UserFeed, key: str) -> None:
        pipe.delete(key)
        if feed.rows:
            pipe.rpush(key, *_items(feed))
            pipe.expire(key, self.ttl)
        pipe.hset(f"{base}:gen", str(feed.user_id), _gen(feed))

    def replace_user(self, feed: UserFeed) -> str:
        r = self.client
        with r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(f"{self.p}:current")
                    version = pipe.get(f"{self.p}:current")
                    if version is None:
                        raise NoVersion("the feed store has no published version")
                    base = self._base(version)
                    key, tmp = f"{base}:feed:{feed.user_id}", f"{base}:tmp:{feed.user_id}"
                    old = pipe.hget(f"{base}:gen", str(feed.user_id))
                    had = json.loads(old)[2] if old else 0
                    r.delete(tmp)
                    if feed.rows:
                        r.rpush(tmp, *_items(feed))
                    pipe.multi()
                    if feed.rows:
                        pipe.rename(tmp, key)
                        pipe.expire(key, self.ttl)
                    else:
                        pipe.delete(key)
                    pipe.hset(f"{base}:gen", str(feed.user_id), _gen(feed))
                    pipe.sadd(f"{base}:users", feed.user_id)
                    pipe.hincrby(f"{base}:meta", "items", len(feed.rows) - had)
                    pipe.hincrby(f"{base}:meta", "users", int(had == 0 and len(feed.rows) > 0))
                    pipe.execute()
                    return version
                except redis.WatchError:
                    continue  # a publish flipped the pointer meanwhile: write into the new one

    def rollback(self) -> VersionInfo:
        with self._locked("rollback"):
            r = self.client
            live = r.lrange(f"{self.p}:versions", 0, -1)
            if len(live) < 2:
                raise FeedStoreError("no previous version to roll back to")
            current, previous = r.get(f"{self.p}:current"), live[-2]
            if current != live[-1]:
                raise FeedStoreError(
                    f"rollback refused: the pointer names {current}, not the newest live "
                    f"version {live[-1]}; the pointer is unchanged"
                )
            base = self._base(previous)
            missing = [k for k in ("meta", "users", "gen") if not r.exists(f"{base}:{k}")]
            if missing:
                raise FeedStoreError(
                    f"cannot roll back to {previous}: its {', '.join(missing)} key(s) are "
                    "missing (evicted? run Redis with maxmemory-policy volatile-lru); the "
                    f"pointer is unchanged, {current} stays current"
                )
            info = self._info(previous)
            self._flip(current, previous, publish=False)
            self._delete_version(live[-1])
            return info

    def _delete_version(self, version: str) -> None:
        """Every key of a version, found by its name (SCAN), so that one whose user set is
        gone (evicted, or a publish that failed before writing it) leaves nothing behind."""
        keys = list(self.client.scan_iter(f"{self._base(version)}:*", count=10_000))
        for start in range(0, len(keys), 10_000):
            self.client.unlink(*keys[start : start + 10_000])

    # -- reads ---------------------------------------------------------------------------
    def read(self, user_id: int, limit: int, after: Anchor | None = None) -> Snapshot | None:
        rank, post = (after.rank, after.post_id) if after else (0, 0)
        out = self._read(args=[self.p, user_id, limit, rank, post])
        if out is None:
            raise NoVersion("the feed store has no published version")
        if len(out) == 1:
            return None
        version, fallback, gen, anchor, raw = out
        generated_at, model_version = json.loads(gen)[:2] if gen else (None, None)
        items = [item_dict(_row(user_id, x)) for x in raw]
        return Snapshot(version, items, anchor, bool(fallback), generated_at, model_version)

    def last_generated(self, user_id: int) -> str | None:
        version = self.client.get(f"{self.p}:current")
        if version is None:
            return None
        gen = self.client.hget(f"{self._base(version)}:gen", str(user_id))
        return json.loads(gen)[0] if gen and json.loads(gen)[2] else None

    def status(self) -> StoreStatus:
        live = self.client.lrange(f"{self.p}:versions", 0, -1)
        current = self.client.get(f"{self.p}:current")
        if current is None:
            return StoreStatus(self.backend, None, None)
        older = live[live.index(current) - 1] if current in live and live.index(current) else None
        return StoreStatus(self.backend, self._info(current), self._info(older) if older else None)

    def _info(self, version: str) -> VersionInfo:
        meta = self.client.hgetall(f"{self._base(version)}:meta")
        if not {"ds", "users", "items", "published_at"} <= meta.keys():
            raise FeedStoreError(
                f"version {version} has no metadata in Redis (evicted? run Redis with "
                "maxmemory-policy volatile-lru)"
            )
        return VersionInfo(
            version,
            meta["ds"],
            int(meta["users"]),
            int(meta["items"]),
            meta["published_at"],
            json.loads(meta.get("built_from", "{}")),
        )

    # -- served log ----------------------------------------------------------------------
    def record_served(self, rows: list[tuple[int, int, int, str, str]]) -> None:
        if not rows:
            return
        user, _, _, version, served_at = rows[0]  # one page: one user, version and time
        fields = {
            "user_id": user,
            "version": version,
            "served_at": served_at,
            "ranks": ",".join(str(r[2]) for r in rows),
            "posts": ",".join(str(r[1]) for r in rows),
        }
        self.client.xadd(f"{self.p}:served", fields, maxlen=_SERVED_MAXLEN, approximate=True)

    def served_log(self) -> pa.Table:
        rows = []
        for _, f in self.client.xrange(f"{self.p}:served"):
            for rank, post in zip(f["ranks"].split(","), f["posts"].split(","), strict=True):
                rows.append((int(f["user_id"]), int(post), int(rank), f["version"], f["served_at"]))
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in SERVED_SCHEMA]
        return pa.Table.from_arrays([list(c) for c in columns], schema=SERVED_SCHEMA)


def _meta(info: VersionInfo) -> dict:
    return {
        "ds": info.ds,
        "users": info.users,
        "items": info.items,
        "published_at": info.published_at,
        "built_from": json.dumps(info.built_from),
    }


def _row(user_id: int, text: str) -> tuple:
    """A stored row from a list element: the float fields as floats (JSON may say 1)."""
    rank, post, *rest = json.loads(text)
    return (user_id, rank, post, *(float(v) for v in rest[:-1]), rest[-1])


def _item_texts(part: pa.Table) -> pa.Array:
    """The list elements of a chunk of a batch's table, as `_items` writes them, built
    column-wise: JSON arrays [rank, post_id, floats..., "sources"] (floats in their shortest
    round-trip form; an integral one may lose its ".0": reads make them floats again). Rows
    Arrow cannot write as JSON exactly (a non-finite float, a source needing escapes) go
    through json.dumps."""
    floats = list(ITEM_FIELDS[2:-1])
    sources = part.column(C.SOURCES)
    names = pc.unique(sources).drop_null().to_pylist()
    finite = all(pc.all(pc.is_finite(part.column(n))).as_py() is not False for n in floats)
    if not finite or any(_needs_escape(v) for v in names):
        rows = zip(*(part.column(n).to_pylist() for n in ITEM_FIELDS), strict=True)
        return pa.array([json.dumps(list(row), separators=(",", ":")) for row in rows])
    parts = [pc.cast(part.column(n), pa.string()) for n in ITEM_FIELDS[:-1]]
    quoted = pc.binary_join_element_wise('"', sources, '"', "")
    parts.append(pc.fill_null(quoted, "null"))
    body = pc.binary_join_element_wise(*parts, ",")
    texts = pc.binary_join_element_wise("[", body, "]", "")
    return texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts


def _needs_escape(text: str) -> bool:
    return any(c in '"\\' or ord(c) < 0x20 or ord(c) > 0x7E for c in text)


def _items(feed: UserFeed) -> list[str]:
    """A feed's list elements: JSON arrays in ITEM_FIELDS order, without the user id."""
    return [json.dumps(row[1:], separators=(",", ":")) for row in feed.rows]


def _gen(feed: UserFeed) -> str:
    return json.dumps([feed.generated_at, feed.model_version, len(feed.rows)])


def check_policy(client: redis.Redis) -> None:
    """Refuse a Redis whose eviction policy may evict keys without a TTL (allkeys-*): the
    pointer, the versions list and each version's metadata have none."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError as err:  # a managed Redis may forbid CONFIG
        log.warning(
            "could not check Redis's maxmemory-policy (%s): make sure it is volatile-lru or "
            "noeviction, never allkeys-*, or the feed pointers may be evicted",
            err,
        )
        return
    if policy is not None and policy not in SAFE_POLICIES:
        raise FeedStoreError(
            f"Redis runs with maxmemory-policy {policy}, which may evict the feed store's "
            "pointer and version metadata (they have no TTL): every user would get 404 and "
            "a rollback would fail. Run it with `--maxmemory-policy volatile-lru` (or "
            "`CONFIG SET maxmemory-policy volatile-lru`, and in redis.conf)"
        )
