"""Candidate selection on small hand-made frames: sources, seen and own posts, the cap."""

from __future__ import annotations

import datetime as dt

import pytest

from features import candidates as fc
from warehouse.catalog import INTEREST, NETWORK, RESURFACED, TRENDING, C

pytestmark = pytest.mark.spark

G = dt.datetime(2026, 1, 8, tzinfo=dt.UTC)  # generation time: the end of 2026-01-07


def h(hours: float) -> dt.datetime:
    """G minus `hours`."""
    return G - dt.timedelta(hours=hours)


@pytest.fixture
def posts(spark):
    # post, author, created: 10-12 by author 100 (followed), 20 by 200 (not followed),
    # 30 by user 1 themselves (a person author), 40 too old for a 72 h pool, 50 after G.
    rows = [
        (10, 100, h(2)),
        (11, 100, h(30)),
        (12, 100, h(50)),
        (20, 200, h(5)),
        (30, 1, h(3)),
        (40, 100, h(80)),
        (50, 100, G + dt.timedelta(minutes=5)),
    ]
    schema = f"{C.POST_ID} long, {C.AUTHOR_ID} long, {C.CREATED_AT} timestamp"
    return spark.createDataFrame(rows, schema)


def test_pool_keeps_the_window_before_generation(posts):
    got = {r[C.POST_ID] for r in fc.pool(posts, G, 72).collect()}
    assert got == {10, 11, 12, 20, 30}  # 40 is 80 h old, 50 is created after G


def test_active_users_and_seen_posts(spark):
    imps = spark.createDataFrame(
        [(1, 10, h(1)), (2, 20, h(30)), (3, 11, G)],
        f"{C.USER_ID} long, {C.POST_ID} long, {C.SERVED_AT} timestamp",
    )
    # user 2's request is 30 h before G: outside one active day; user 3's is at G, not before.
    assert {r[0] for r in fc.active_users(imps, G, 1).collect()} == {1}
    assert {r[0] for r in fc.active_users(imps, G, 2).collect()} == {1, 2}
    assert {(r[0], r[1]) for r in fc.seen_posts(imps, G).collect()} == {(1, 10), (2, 20)}


def test_network_new_since_the_last_generation_and_resurfaced(spark, posts):
    active = spark.createDataFrame([(1, h(24))], f"{C.USER_ID} long, {fc.SINCE} timestamp")
    follows = spark.createDataFrame(
        [(1, 100, h(500), False)],
        f"{C.FOLLOWER_ID} long, {C.FOLLOWEE_ID} long, {C.CREATED_AT} timestamp,"
        f" {C.IS_CLOSE_FRIEND} boolean",
    )
    # Positives since the last generation (h(24)): post 12 gained 3 in hour h(10), post 11 one;
    # a positive before `since` (h(40) on post 12) does not count.
    engagements = spark.createDataFrame(
        [(12, "like", h(10))] * 3 + [(11, "click", h(2)), (12, "like", h(40)), (11, "hide", h(1))],
        f"{C.POST_ID} long, {C.ACTION} string, {C.EVENT_TS} timestamp",
    )
    growth = fc.positives_per_post(engagements, h(72), G)
    network, resurfaced = fc.network_candidates(
        active,
        follows,
        fc.pool(posts, G, 72),
        growth,
        G,
        network=NETWORK,
        resurfaced=RESURFACED,
        resurfaced_k=5,
    )
    # New in the network since h(24): only post 10 (h(2)); 11 (h(30)) and 12 (h(50)) are older.
    assert [(r[C.POST_ID], r[fc.SOURCE_RANK]) for r in network.collect()] == [(10, 1)]
    # Older posts that gained: 12 (3 likes) before 11 (1 click; the hide is not positive).
    got = sorted((r[fc.SOURCE_RANK], r[C.POST_ID]) for r in resurfaced.collect())
    assert got == [(1, 12), (2, 11)]


def test_trending_is_the_most_engaged_pool_posts_for_everyone(spark, posts):
    active = spark.createDataFrame([(1,), (2,)], f"{C.USER_ID} long")
    engagements = spark.createDataFrame(
        [(20, "like", h(1))] * 2 + [(10, "click", h(2)), (40, "like", h(1))],
        f"{C.POST_ID} long, {C.ACTION} string, {C.EVENT_TS} timestamp",
    )
    trend = fc.positives_per_post(engagements, h(6), G)
    got = fc.trending_candidates(active, trend, fc.pool(posts, G, 72), 2, trending=TRENDING)
    # 20 (2 positives) then 10 (1); 40 is out of the pool, so it cannot trend.
    rows = sorted((r[C.USER_ID], r[fc.SOURCE_RANK], r[C.POST_ID]) for r in got.collect())
    assert rows == [(1, 1, 20), (1, 2, 10), (2, 1, 20), (2, 2, 10)]


def test_merge_drops_seen_and_own_posts_merges_sources_and_caps(spark, posts):
    schema = f"{C.USER_ID} long, {C.POST_ID} long, {fc.SOURCE} string, {fc.SOURCE_RANK} int"
    proposals = [
        spark.createDataFrame([(1, 10, NETWORK, 1), (1, 11, NETWORK, 2)], schema),
        spark.createDataFrame([(1, 20, INTEREST, 1), (1, 10, INTEREST, 2)], schema),
        spark.createDataFrame([(1, 30, TRENDING, 1), (1, 12, TRENDING, 2)], schema),
    ]
    seen = spark.createDataFrame([(1, 11)], f"{C.USER_ID} long, {C.POST_ID} long")
    shares = {NETWORK: 0.5, INTEREST: 0.25, TRENDING: 0.1, RESURFACED: 0.1}
    got = fc.merge_candidates(proposals, seen, fc.pool(posts, G, 72), shares, 2)
    rows = {r[C.POST_ID]: (r[C.SOURCES], r[C.PRIORITY]) for r in got.collect()}
    # Priorities (rank / share): 10 = min(1/0.5, 2/0.25) = 2 from both sources; 20 = 1/0.25
    # = 4; 12 = 2/0.1 = 20. 11 was seen, 30 is user 1's own post. The cap of 2 keeps 10, 20.
    assert rows == {10: ([INTEREST, NETWORK], 2.0), 20: ([INTEREST], 4.0)}


def test_as_impressions_one_request_per_user_and_time(spark):
    cands = spark.createDataFrame(
        [(1, 10, 100, G), (1, 11, 100, G), (2, 10, 100, G)],
        f"{C.USER_ID} long, {C.POST_ID} long, {C.AUTHOR_ID} long, {C.GENERATED_AT} timestamp",
    )
    users = spark.createDataFrame(
        [(1, "mobile"), (2, "desktop")], f"{C.USER_ID} long, {C.PRIMARY_DEVICE} string"
    )
    rows = fc.as_impressions(cands, users).collect()
    assert len({r[C.IMPRESSION_ID] for r in rows}) == 3
    requests = {r[C.USER_ID]: set() for r in rows}
    for r in rows:
        requests[r[C.USER_ID]].add(r[C.REQUEST_ID])
        assert r[C.SERVED_AT] == G.replace(tzinfo=None)  # session time zone UTC, naive
    assert all(len(v) == 1 for v in requests.values()) and requests[1] != requests[2]
    assert {r[C.USER_ID]: r[C.DEVICE] for r in rows} == {1: "mobile", 2: "desktop"}
