"""The Redis feed store: the same interface, for a cluster's read path.

Keys, under the `feeds.redis_prefix` namespace P (V is a version name):

    P:current               the current version (the pointer readers resolve)
    P:versions              list of live versions, oldest first (current is the last)
    P:seq                   publish counter: version names are <ds>.<seq>
    P:staging               the version a publish is writing (collected if it crashed)
    P:v:V:meta              hash: ds, users, items, published_at
    P:v:V:users             set of the users the version knows
    P:v:V:gen               hash user -> [generated_at, model_version] (lastGenerated)
    P:v:V:feed:U            list of U's items, rank 1 first, one JSON array each; TTL
    P:v:V:feed:-1           the fallback (trending) feed
    P:served                stream of pages served (the served log)

A publish writes every key of the new version first, then SETs the pointer and appends to
the versions list in one MULTI; a read is one Lua script (pointer, user and page in one
atomic step), so a reader never mixes versions. Replacing one user writes a temporary list
and RENAMEs it over the user's key (atomic), guarded by WATCH on the pointer.

Feeds carry a TTL (`feeds.redis_ttl_s`); run Redis with `maxmemory-policy volatile-lru` so
that under memory pressure it evicts feeds (with a TTL) and never the pointers or version
metadata (without). A known user whose feed expired or was evicted gets the fallback.
"""

from __future__ import annotations

import json

import pyarrow as pa
import redis

from warehouse.feeds.base import (
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
    item_dict,
    now_iso,
)

_PIPELINE_USERS = 200  # users per pipeline round trip while publishing
_SERVED_MAXLEN = 1_000_000  # pages kept in the served stream (approximate trim)

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
        self._read = self.client.register_script(_READ)

    def close(self) -> None:
        self.client.close()

    def _base(self, version: str) -> str:
        return f"{self.p}:v:{version}"

    # -- writes --------------------------------------------------------------------------
    def publish(self, batch: FeedBatch) -> VersionInfo:
        r = self.client
        leftover = r.get(f"{self.p}:staging")
        if leftover and leftover not in r.lrange(f"{self.p}:versions", 0, -1):
            self._delete_version(leftover)  # a publish that crashed before its flip
        version = f"{batch.ds}.{r.incr(f'{self.p}:seq')}"
        r.set(f"{self.p}:staging", version)
        base = self._base(version)
        feeds = [*batch.feeds, batch.trending]
        for start in range(0, len(feeds), _PIPELINE_USERS):
            pipe = r.pipeline(transaction=False)
            for feed in feeds[start : start + _PIPELINE_USERS]:
                self._write_feed(pipe, base, feed, f"{base}:feed:{feed.user_id}")
            pipe.execute()
        for start in range(0, len(batch.known_users), 10_000):
            r.sadd(f"{base}:users", *batch.known_users[start : start + 10_000])
        info = VersionInfo(version, batch.ds, len(batch.feeds), batch.n_items, now_iso())
        r.hset(f"{base}:meta", mapping=_meta(info))
        pipe = r.pipeline(transaction=True)  # the flip
        pipe.set(f"{self.p}:current", version)
        pipe.rpush(f"{self.p}:versions", version)
        pipe.delete(f"{self.p}:staging")
        pipe.execute()
        live = r.lrange(f"{self.p}:versions", 0, -1)
        for old in live[: -self.keep_versions]:
            r.lrem(f"{self.p}:versions", 1, old)
            self._delete_version(old)
        return info

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
        r = self.client
        with r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(f"{self.p}:current", f"{self.p}:versions")
                    live = pipe.lrange(f"{self.p}:versions", 0, -1)
                    if len(live) < 2:
                        raise FeedStoreError("no previous version to roll back to")
                    pipe.multi()
                    pipe.set(f"{self.p}:current", live[-2])
                    pipe.rpop(f"{self.p}:versions")
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self._delete_version(live[-1])
        return self._info(live[-2])

    def _delete_version(self, version: str) -> None:
        base = self._base(version)
        users = list(self.client.sscan_iter(f"{base}:users", count=10_000))
        keys = [f"{base}:feed:{u}" for u in (*users, -1)]
        keys += [f"{base}:{k}" for k in ("users", "gen", "meta")]
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
        items = [item_dict((user_id, *json.loads(x))) for x in raw]
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
        return VersionInfo(
            version, meta["ds"], int(meta["users"]), int(meta["items"]), meta["published_at"]
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
    }


def _items(feed: UserFeed) -> list[str]:
    """A feed's list elements: JSON arrays in ITEM_FIELDS order, without the user id."""
    return [json.dumps(row[1:], separators=(",", ":")) for row in feed.rows]


def _gen(feed: UserFeed) -> str:
    return json.dumps([feed.generated_at, feed.model_version, len(feed.rows)])
