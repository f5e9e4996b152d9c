"""The feed store on SQLite and Redis: pages, versions, rollback, refresh, atomicity.

The Redis cases use the session's own redis-server (conftest `redis_url`), each test in its
own key prefix. Items carry their version in their post id (feed_data), so every check below
compares a page with the version it claims.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import threading
import time
from pathlib import Path

import pytest
from feed_data import DS, batch, make_feeds, post_of, settings_for, tag_of

from warehouse.feeds.base import FeedStoreError, StoreBusy
from warehouse.feeds.batch import prepare_batch
from warehouse.feeds.open import open_store
from warehouse.feeds.reader import FeedReader, UnknownUser
from warehouse.layout import DataRoot

KINDS = ["sqlite", "redis"]


@pytest.fixture(params=KINDS)
def env(request, tmp_path):
    """(settings, data root) of a fresh store of each kind."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return settings_for(url, max_limit=500), DataRoot(tmp_path)


@pytest.fixture
def store(env):
    store = open_store(*env)
    yield store
    store.close()


def walk(reader: FeedReader, user: int, limit: int) -> list[dict]:
    items, cursor = [], None
    while True:
        page = reader.page(user, limit, cursor)
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items


def test_walking_all_pages_returns_every_item_once_in_order(env, store):
    store.publish(batch(1, users=[3, 4], n_items=47))
    reader = FeedReader(store, env[0])
    items = walk(reader, 3, limit=10)  # 5 pages: 10 + 10 + 10 + 10 + 7
    assert [i["rank"] for i in items] == list(range(1, 48))
    assert [i["post_id"] for i in items] == [post_of(1, 3, r) for r in range(1, 48)]
    assert items[0]["sources"] == ["network", "popular"]
    assert reader.page(3, 47).next_cursor is None  # exactly one page: nothing after it


def test_a_publish_between_two_pages_never_mixes_versions(env, store):
    store.publish(batch(1, users=[3], n_items=30))
    reader = FeedReader(store, env[0])
    first = reader.page(3, 10)
    # Version 2 keeps version 1's post at rank 10, now at rank 4; every other post is new.
    keep = post_of(1, 3, 10)
    store.publish(batch(2, [3], 30, posts=lambda u, r: keep if r == 4 else post_of(2, u, r)))
    second = reader.page(3, 10, first.next_cursor)
    assert second.version != first.version
    assert second.cursor_status == "resumed"
    assert [i["rank"] for i in second.items] == list(range(5, 15))  # right after the post
    assert {tag_of(i["post_id"]) for i in second.items} == {2}
    # Version 3 drops the post: the next page starts from the top and says so.
    store.publish(batch(3, users=[3], n_items=30))
    third = reader.page(3, 10, second.next_cursor)
    assert third.cursor_status == "restarted"
    assert [i["rank"] for i in third.items] == list(range(1, 11))
    assert {tag_of(i["post_id"]) for i in third.items} == {3}


def test_status_rollback_and_collection_of_old_versions(env, store):
    v1 = store.publish(batch(1, [1, 2], 5, ds="2026-01-05"))
    v2 = store.publish(batch(2, [1, 2, 3], 4, ds="2026-01-06"))
    status = store.status()
    assert (status.current.version, status.previous.version) == (v2.version, v1.version)
    assert (status.current.users, status.current.items, status.current.ds) == (3, 12, "2026-01-06")
    v3 = store.publish(batch(3, [1], 6, ds="2026-01-07"))
    assert store.status().previous.version == v2.version  # v1 collected (keep_versions=2)
    back = store.rollback()
    assert back.version == v2.version
    assert store.status().current.version == v2.version
    assert store.status().previous is None  # v1 was collected, v3 dropped by the rollback
    reader = FeedReader(store, env[0])
    page = reader.page(2, 10)
    assert {tag_of(i["post_id"]) for i in page.items} == {2}
    assert v3.version != back.version
    with pytest.raises(FeedStoreError, match="no previous version"):
        store.rollback()


def test_collected_versions_leave_no_rows_behind(env, store):
    for tag in range(1, 5):
        store.publish(batch(tag, [1, 2], 3))
    if store.backend == "sqlite":
        conn = store._conn()
        vids = {r[0] for r in conn.execute("SELECT DISTINCT vid FROM feed_blobs")}
        assert len(vids) == 2  # current and previous only
    else:
        keys = list(store.client.scan_iter(f"{store.p}:v:*"))
        assert {k.split(":")[2] for k in keys} == {
            store.status().current.version,
            store.status().previous.version,
        }


def test_fallback_for_a_known_user_without_a_feed_and_404_for_an_unknown_one(env, store):
    # Posts 7 and 8 are in all three feeds, 9 in two (not user 3's), the others in one.
    def posts(user, rank):
        return {1: 7, 2: 8}.get(rank) or (9 if rank == 3 and user != 3 else 100 * user + rank)

    feeds = make_feeds(1, [1, 2, 3], 4, posts=posts)
    store.publish(prepare_batch(feeds, DS, known_users=[1, 2, 3, 99], trending_size=3))
    reader = FeedReader(store, env[0])
    page = reader.page(99, 5)
    assert page.fallback is True
    assert [i["post_id"] for i in page.items] == [7, 8, 9]  # most feeds first, then post id
    assert [round(i["score"], 3) for i in page.items] == [1.0, 1.0, 0.667]
    assert page.items[0]["sources"] == ["trending"]
    assert reader.page(1, 5).fallback is False
    with pytest.raises(UnknownUser, match="unknown user 98"):
        reader.page(98, 5)


def test_redis_feed_that_expired_or_was_evicted_falls_back(redis_url, tmp_path):
    store = open_store(settings_for(redis_url, redis_ttl_s=60), DataRoot(tmp_path))
    store.publish(batch(1, [1, 2], 5))
    key = f"{store.p}:v:{store.status().current.version}:feed:1"
    assert 0 < store.client.ttl(key) <= 60  # feeds carry the TTL, pointers do not
    assert store.client.ttl(f"{store.p}:current") == -1
    store.client.delete(key)  # what expiry or an LRU eviction does
    page = FeedReader(store, settings_for(redis_url)).page(1, 5)
    assert page.fallback is True and page.items
    store.close()


def test_unknown_store_url_and_feeds_keys_are_refused():
    from jobs.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=r"(?s)feeds\.store_url.*must start with one of"):
        load_settings("tiny", {"feeds": {"store_url": "mysql://db/feeds"}})
    with pytest.raises(SettingsError, match=r"feeds\.page_size"):
        load_settings("tiny", {"feeds": {"page_size": 3}})
    with pytest.raises(SettingsError, match=r"feeds\.max_limit"):
        load_settings("tiny", {"feeds": {"max_limit": 0}})


def test_replacing_one_user_leaves_the_others_and_updates_last_generated(env, store):
    store.publish(batch(1, [1, 2], 10))
    reader = FeedReader(store, env[0])
    before = reader.page(1, 4)
    assert store.last_generated(1) == "2026-01-05T04:00:00+00:00"
    refreshed = batch(
        5, [1], 6, posts=lambda u, r: post_of(1, 1, 4) if r == 2 else post_of(5, u, r)
    )
    store.replace_user(refreshed.feeds[0])
    after = reader.page(1, 10, before.next_cursor)  # rank-4 post is now rank 2
    assert after.cursor_status == "resumed"
    assert [i["rank"] for i in after.items] == [3, 4, 5, 6]
    assert store.last_generated(1) == "2026-01-05T08:00:00+00:00"
    assert {tag_of(i["post_id"]) for i in reader.page(2, 10).items} == {1}
    assert store.status().current.items == 16


def test_served_pages_are_logged(env, store):
    store.publish(batch(1, [1], 6))
    reader = FeedReader(store, env[0])
    page = reader.page(1, 4)
    reader.page(1, 4, page.next_cursor)
    log = store.served_log().to_pylist()
    assert [(r["user_id"], r["rank"]) for r in log] == [(1, k) for k in range(1, 7)]
    assert {r["version"] for r in log} == {page.version}
    assert log[0]["post_id"] == post_of(1, 1, 1)


def test_bad_feeds_are_refused_naming_the_column(env, store):
    feeds = make_feeds(1, [1], 3).set_column(1, "rank", [[1, 2, 4]])
    with pytest.raises(FeedStoreError, match=r"gold.user_news_feed: column rank .* user_id=1"):
        prepare_batch(feeds, DS, None, 10)
    with pytest.raises(FeedStoreError, match=r"missing columns \['score'\]"):
        prepare_batch(make_feeds(1, [1], 3).drop_columns(["score"]), DS, None, 10)


def test_a_crashed_publish_leaves_the_old_version_and_is_cleaned_up(env, store, monkeypatch):
    v1 = store.publish(batch(1, [1, 2], 5))
    broken = batch(2, [1, 2], 5)
    chunks = type(broken).chunks

    def crash_half_way(self, size):  # the items break off after the first half
        yield next(chunks(self, self.n_items // 2))
        raise RuntimeError("crash while writing")

    monkeypatch.setattr(type(broken), "chunks", crash_half_way)
    with pytest.raises(RuntimeError, match="crash while writing"):
        store.publish(broken)
    monkeypatch.undo()
    assert store.status().current.version == v1.version
    assert stored_versions(store) == {v1.version}  # the broken version's rows: gone at once
    assert {tag_of(i["post_id"]) for i in FeedReader(store, env[0]).page(2, 10).items} == {1}
    v3 = store.publish(batch(3, [1, 2], 5))
    assert store.status().previous.version == v1.version  # the broken one never became live
    assert v3.version.endswith(".3")


# -- concurrency: readers during repeated publishes ------------------------------------------
N_USERS = 8


def _length(tag: int, user: int) -> int:
    return 5 + tag + user  # every version and user has its own length: a mix would show


def _check_reads(settings, root: DataRoot, rounds: int, seed: int) -> tuple[list[str], set[int]]:
    """Read whole feeds of random users: (every inconsistency seen, the versions seen)."""
    store = open_store(settings, root)
    reader = FeedReader(store, settings.model_copy(update={"log_served": False}))
    rng, seen, problems = random.Random(seed), set(), []
    for _ in range(rounds):
        user = rng.randrange(N_USERS)
        page = reader.page(user, 500)
        tags = {tag_of(i["post_id"]) for i in page.items}
        tag = int(page.model_version[1:])
        if tags != {tag} or len(page.items) != _length(tag, user):
            problems.append(f"user {user}: tags {tags}, {len(page.items)} items, claims m{tag}")
        if seen and tag < max(seen):  # versions only move forward here (no rollback)
            problems.append(f"user {user}: saw m{tag} after m{max(seen)}")
        seen.add(tag)
    store.close()
    return problems, seen


def _publish_while(store, running) -> int:
    """Publish versions 2, 3, ... while `running()`; returns the last tag."""
    tag = 1
    while running() and tag < 200:
        tag += 1
        store.publish(batch(tag, range(N_USERS), lambda u, t=tag: _length(t, u)))
    return tag


def test_concurrent_reader_threads_never_see_a_partial_version(env, store):
    store.publish(batch(1, range(N_USERS), lambda u: _length(1, u)))
    results: list = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(_check_reads(*env, 300, s)))
        for s in range(3)
    ]
    for t in threads:
        t.start()
    last = _publish_while(store, lambda: any(t.is_alive() for t in threads))
    for t in threads:
        t.join()
    assert [p for problems, _ in results for p in problems] == []
    seen = set().union(*(s for _, s in results))
    assert len(seen) > 1 and last > 2  # the reads did overlap publishes


def test_concurrent_reader_processes_never_see_a_partial_version(env, store):
    store.publish(batch(1, range(N_USERS), lambda u: _length(1, u)))
    ctx = multiprocessing.get_context("spawn")  # no fork after threads (libgomp, sqlite)
    settings, root = env
    with ctx.Pool(2) as pool:
        pending = [pool.apply_async(_check_reads, (settings, root, 400, s)) for s in (1, 2)]
        last = _publish_while(store, lambda: not all(p.ready() for p in pending))
        results = [p.get(timeout=120) for p in pending]
    assert [p for problems, _ in results for p in problems] == []
    seen = set().union(*(s for _, s in results))
    assert len(seen) > 1 and last > 2


# -- one writer at a time, across processes ----------------------------------------------------
def stored_versions(store) -> set[str]:
    """The versions that have any rows (SQLite) or keys (Redis) in the store."""
    if store.backend == "sqlite":
        conn = store._conn()
        vids = {r[0] for r in conn.execute("SELECT DISTINCT vid FROM feed_blobs")}
        vids |= {r[0] for r in conn.execute("SELECT DISTINCT vid FROM feed_users")}
        names = dict(conn.execute("SELECT vid, version FROM versions"))
        return {names.get(v, f"orphan vid {v}") for v in vids}
    return {k.split(":")[2] for k in store.client.scan_iter(f"{store.p}:v:*")}


def _writer(settings, root, op: str, tag: int, started, go, results) -> None:
    """A writer in its own process: `op` (publish of version `tag`, or rollback); with events,
    it stops just before its flip (holding the writer lock) until `go` is set. Puts (outcome,
    detail, seconds the call took) on `results`: outcome "ok" or the exception's class."""
    store = open_store(settings, root)
    if started is not None:
        flip = store._flip

        def gated(*args, **kwargs):
            started.set()
            if not go.wait(120):
                raise RuntimeError("never released")
            return flip(*args, **kwargs)

        store._flip = gated
    prepared = _tagged(tag) if op == "publish" else None
    t0 = time.monotonic()
    try:
        info = store.publish(prepared) if op == "publish" else store.rollback()
        results.put(("ok", info.version, time.monotonic() - t0))
    except Exception as err:
        results.put((type(err).__name__, str(err), time.monotonic() - t0))
    finally:
        store.close()


def _tagged(tag: int):
    return batch(tag, range(N_USERS), lambda u: _length(tag, u))


def _start_holder(env, op: str, tag: int):
    """A writer process that takes the lock and waits at its flip: (process, go, results)."""
    ctx = multiprocessing.get_context("spawn")
    started, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_writer, args=(*env, op, tag, started, go, results))
    proc.start()
    if not started.wait(120):
        proc.kill()
        pytest.fail("the holder never reached its flip")
    return proc, go, results


def assert_serves(store, settings, tag: int) -> None:
    reader = FeedReader(store, settings.model_copy(update={"log_served": False}))
    for user in range(N_USERS):
        page = reader.page(user, 500)
        assert {tag_of(i["post_id"]) for i in page.items} == {tag}
        assert len(page.items) == _length(tag, user)


@pytest.mark.parametrize(
    ("held_by", "refused"),
    [("publish", "publish"), ("publish", "rollback"), ("rollback", "publish")],
)
def test_a_second_writer_fails_at_once_naming_the_holder(env, store, held_by, refused):
    v1, v2 = store.publish(_tagged(1)), store.publish(_tagged(2))
    proc, go, results = _start_holder(env, held_by, 3)
    try:
        prepared = _tagged(4)
        t0 = time.monotonic()
        with pytest.raises(StoreBusy, match=rf"{held_by} by pid {proc.pid} on ") as err:
            store.publish(prepared) if refused == "publish" else store.rollback()
        assert time.monotonic() - t0 < 10  # at once: the holder waits up to 120 s
        assert "wait for it to finish and retry" in str(err.value)
    finally:
        go.set()
        proc.join(120)
    outcome, version, _ = results.get(timeout=10)
    assert outcome == "ok"
    status = store.status()
    if held_by == "publish":
        assert (status.current.version, status.previous.version) == (version, v2.version)
        assert_serves(store, env[0], 3)
    else:
        assert (status.current.version, status.previous) == (v1.version, None)
        assert_serves(store, env[0], 1)
    assert stored_versions(store) == {v.version for v in (status.current, status.previous) if v}
    store.publish(_tagged(5))  # the lock was released: the next writer goes through
    assert_serves(store, env[0], 5)


def test_a_publisher_in_another_process_is_refused_while_this_one_publishes(env, store):
    """The other order: this process holds the lock, a second process is refused."""
    store.publish(_tagged(1))
    ctx = multiprocessing.get_context("spawn")
    at_flip, go = threading.Event(), threading.Event()
    flip = store._flip

    def gated(*args, **kwargs):
        at_flip.set()
        go.wait(120)
        return flip(*args, **kwargs)

    store._flip = gated
    mine: list = []
    publisher = threading.Thread(target=lambda: mine.append(store.publish(_tagged(2))))
    publisher.start()
    try:
        assert at_flip.wait(60)
        results = ctx.Queue()
        other = ctx.Process(target=_writer, args=(*env, "publish", 3, None, None, results))
        other.start()
        outcome, message, seconds = results.get(timeout=120)
        other.join(60)
    finally:
        go.set()
        publisher.join(120)
    assert outcome == "StoreBusy" and f"publish by pid {os.getpid()} on " in message
    assert seconds < 10  # at once: this process would hold the lock for up to 120 s
    assert store.status().current.version == mine[0].version
    assert_serves(store, env[0], 2)
    assert stored_versions(store) == {mine[0].version, store.status().previous.version}


def test_the_flip_is_refused_when_the_pointer_or_the_lease_moved(env, store):
    """A writer that bypassed the lock moved the pointer (SQLite), or the lease expired and
    another writer took it (Redis): the publish waiting at its flip is refused, removes what
    it wrote and leaves the pointer where the other writer put it."""
    v1, v2 = store.publish(_tagged(1)), store.publish(_tagged(2))
    proc, go, results = _start_holder(env, "publish", 3)
    try:
        if store.backend == "sqlite":
            conn = store._conn()
            vid = conn.execute("SELECT vid FROM versions WHERE version = ?", (v1.version,))
            conn.execute("UPDATE pointer SET vid = ? WHERE name = 'current'", (vid.fetchone()[0],))
            expected = rf"moved from {v2.version} to {v1.version}"
        else:
            store.client.set(f"{store.p}:lock", "t0 rollback by pid 1 on elsewhere")
            expected = r"writer lease is no longer ours \(held by t0 rollback by pid 1"
    finally:
        go.set()
        proc.join(120)
    outcome, message, _ = results.get(timeout=10)
    assert outcome == "FeedStoreError" and "refused at the flip" in message
    assert re.search(expected, message), message
    current = store.status().current.version
    assert current == (v1.version if store.backend == "sqlite" else v2.version)
    assert stored_versions(store) == {v1.version, v2.version}  # nothing of the refused one


# -- Redis configuration ------------------------------------------------------------------------
def test_redis_with_an_allkeys_eviction_policy_is_refused(redis_url, tmp_path):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(FeedStoreError, match=r"allkeys-lru.*--maxmemory-policy volatile-lru"):
            open_store(settings_for(redis_url), DataRoot(tmp_path))
    finally:
        client.config_set("maxmemory-policy", "volatile-lru")
        client.close()
    open_store(settings_for(redis_url), DataRoot(tmp_path)).close()


def test_compose_and_readme_run_redis_with_a_safe_eviction_policy():
    from warehouse.feeds.redis import SAFE_POLICIES

    repo = Path(__file__).resolve().parents[3]
    compose = (repo / "docker" / "compose.yaml").read_text()
    command = next(line for line in compose.splitlines() if "redis-server" in line)
    policy = command.split('"--maxmemory-policy", "')[1].split('"')[0]
    assert policy in SAFE_POLICIES
    assert f"maxmemory-policy {policy}" in (repo / "README.md").read_text()


def test_redis_rollback_to_a_version_without_metadata_changes_nothing(redis_url, tmp_path):
    store = open_store(settings_for(redis_url), DataRoot(tmp_path))
    v1, v2 = store.publish(_tagged(1)), store.publish(_tagged(2))
    store.client.delete(f"{store.p}:v:{v1.version}:meta")  # what an allkeys-* eviction does
    with pytest.raises(FeedStoreError, match=rf"cannot roll back to {v1.version}: its meta key"):
        store.rollback()
    assert store.client.get(f"{store.p}:current") == v2.version
    assert_serves(store, settings_for(redis_url, max_limit=500), 2)
    with pytest.raises(FeedStoreError, match=rf"version {v1.version} has no metadata"):
        store.status()  # a clear error, not a KeyError
    store.close()


# -- the column-wise publish writes what the per-row one did ------------------------------------
@pytest.mark.parametrize("odd", [None, "inf", "quote"])
def test_redis_items_built_column_wise_equal_the_per_row_json(odd):
    from warehouse.feeds.redis import _item_texts, _items, _row

    rng = random.Random(3)
    values = [1.0, 0.0, 0.1, 1 / 3, 1e-7, 2.5e20, 123456789.123, 5e-324, 42.0]
    feeds = make_feeds(1, [1, 2, 3], 12)
    for name in ("score", "value", "p_click", "e_dwell_s"):
        column = [rng.choice(values) * rng.choice([1, -1]) for _ in range(feeds.num_rows)]
        if odd == "inf" and name == "value":
            column[5] = float("inf")
        feeds = feeds.set_column(feeds.schema.get_field_index(name), name, [column])
    sources = [["network"], [], None, ["network", "interest"]] * (feeds.num_rows // 4)
    if odd == "quote":
        sources[7] = ['odd "source"\\']
    feeds = feeds.set_column(feeds.schema.get_field_index("sources"), "sources", [sources])
    prepared = prepare_batch(feeds, DS, None, 5)
    fast = _item_texts(prepared.table).to_pylist()
    slow = [text for feed in prepared.feeds for text in _items(feed)]
    assert [_row(1, t) for t in fast] == [_row(1, t) for t in slow]
    # what a read returns: the same values and types as the rows published
    rows = [row[1:] for feed in prepared.feeds for row in feed.rows]
    read = [_row(1, t)[1:] for t in fast]
    assert read == rows
    assert [[type(v) for v in row] for row in read] == [[type(v) for v in row] for row in rows]


def test_a_version_records_the_warehouse_versions_it_was_built_from(env, store):
    lineage = {"user_news_feed": "v-abc", "users": "v-def"}
    feeds = make_feeds(1, [1, 2], 3)
    info = store.publish(prepare_batch(feeds, DS, None, 10, built_from=lineage))
    assert info.built_from == lineage
    store.publish(batch(2, [1, 2], 3))  # a publish without lineage records none
    status = store.status()
    assert (status.previous.built_from, status.current.built_from) == (lineage, {})
