"""Each window and the decay on tiny inline frames; expected values are worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from features import registry as R
from features.config import FeatureSettings
from features.pit import with_as_of
from features.post import network_interactions, network_tile, post_interactions, post_tile
from warehouse.catalog import C

PRIOR = FeatureSettings()  # the post rate's prior, as the pipeline sets it

pytestmark = pytest.mark.spark

T = datetime(2026, 1, 10, 12, 0, 0)  # on the hour: as_of of an impression at T + 20 min
SERVED = T + timedelta(minutes=20)


def _impressions(spark, rows):
    cols = [C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT]
    return spark.createDataFrame(rows, cols)


def _engagements(spark, rows):
    cols = [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.ACTION, C.EVENT_TS]
    return spark.createDataFrame(rows, cols)


def _posts(spark, created=T - timedelta(days=3)):
    return spark.createDataFrame([(1, 9, created)], [C.POST_ID, C.AUTHOR_ID, C.CREATED_AT])


def _post_feats(spark, eng_rows, imp_rows=()):
    target = with_as_of(_impressions(spark, [(100, 1, 50, 1, 9, SERVED)]))
    history = _impressions(spark, [(100, 1, 50, 1, 9, SERVED), *imp_rows])
    tile = post_tile(history, _engagements(spark, eng_rows))
    out = post_interactions(target, tile, _posts(spark), PRIOR.prior_rate, PRIOR.prior_strength)
    return out.collect()[0].asDict()


# (time before as_of, expected like counts per window), one post per case.
CASES = [
    # 30 min before as_of: inside every window, 1h included.
    (timedelta(minutes=30), {"1h": 1, "1d": 1, "3d": 1, "7d": 1}),
    # exactly 1h before: windows are [as_of - w, as_of), so the left edge counts.
    (timedelta(hours=1), {"1h": 1, "1d": 1, "3d": 1, "7d": 1}),
    # 1 h 1 s before: just out of 1h.
    (timedelta(hours=1, seconds=1), {"1h": 0, "1d": 1, "3d": 1, "7d": 1}),
    # 1.5 days: in 3d and 7d, not 1d.
    (timedelta(days=1.5), {"1h": 0, "1d": 0, "3d": 1, "7d": 1}),
    # 6.9 days: only 7d; 7 days + 1 s: nothing.
    (timedelta(days=6.9), {"1h": 0, "1d": 0, "3d": 0, "7d": 1}),
    (timedelta(days=7, seconds=1), {"1h": 0, "1d": 0, "3d": 0, "7d": 0}),
    # exactly at as_of, and between as_of and the impression: never counted (t >= as_of).
    (timedelta(0), {"1h": 0, "1d": 0, "3d": 0, "7d": 0}),
    (timedelta(minutes=-10), {"1h": 0, "1d": 0, "3d": 0, "7d": 0}),
]


def test_like_windows(spark):
    # Post i gets one like CASES[i] before as_of and one impression at SERVED (its target).
    imps = [(100 + i, 1, 50, i, 9, SERVED) for i in range(len(CASES))]
    eng = [(7, 51, i, "like", T - before) for i, (before, _) in enumerate(CASES)]
    target = with_as_of(_impressions(spark, imps))
    posts = spark.createDataFrame(
        [(i, 9, T) for i in range(len(CASES))], [C.POST_ID, C.AUTHOR_ID, C.CREATED_AT]
    )
    tile = post_tile(target, _engagements(spark, eng))
    out = post_interactions(target, tile, posts, PRIOR.prior_rate, PRIOR.prior_strength).collect()
    got = {r[C.POST_ID]: r.asDict() for r in out}
    for i, (_, windows) in enumerate(CASES):
        assert {w: got[i][R.post_count("like", w)] for w in R.WINDOWS_H} == windows, i
        assert got[i][R.post_count("click", "7d")] == 0  # another action is counted apart


def test_decay_weights(spark):
    # 2 days before: 1/(2+1) = 1/3; 0.5 day (12 h) plus 17 min into its hour: t = 0.5 -
    # 17/1440 days, weight 1/(1.5 - 17/1440); the sum is the decayed total.
    t2 = 0.5 - 17 / 1440
    rows = [(7, 51, 1, "click", T - timedelta(days=2)), (8, 52, 1, "click", T - timedelta(days=t2))]
    got = _post_feats(spark, rows)
    assert got[R.post_decayed("click")] == pytest.approx(1 / 3 + 1 / (1 + t2), rel=1e-5)
    assert got[R.post_decayed("like")] == 0


def test_impressions_age_and_smoothed_rate(spark):
    # Two earlier impressions of post 1 (1 h and 2 days before) plus the target itself, which
    # is at/after as_of and so not counted: 7d impressions = 2, 1h = 1.
    imps = [(101, 2, 60, 1, 9, T - timedelta(hours=1)), (102, 3, 61, 1, 9, T - timedelta(days=2))]
    got = _post_feats(spark, [(101, 60, 1, "like", T - timedelta(minutes=50))], imps)
    assert got[R.post_count(R.IMPRESSION, "7d")] == 2
    assert got[R.post_count(R.IMPRESSION, "1h")] == 1
    # (1 positive + 0.05 * 20) / (2 + 20) = 2 / 22
    assert got[R.POST_SMOOTHED_RATE] == pytest.approx(2 / 22)
    assert got[R.POST_AGE_H] == pytest.approx(72.0)  # created 3 days before as_of


def test_network_counts_need_the_follow_before_as_of(spark):
    # Viewer 50 follows 51 (since long) and 52 (only from as_of on); 53 is not followed.
    # Only 51's like counts: 52's follow is not strictly before as_of.
    target = with_as_of(_impressions(spark, [(100, 1, 50, 1, 9, SERVED)]))
    eng = _engagements(
        spark,
        [
            (7, 51, 1, "like", T - timedelta(hours=2)),
            (8, 52, 1, "like", T - timedelta(hours=2)),
            (9, 53, 1, "like", T - timedelta(hours=2)),
        ],
    )
    follows = spark.createDataFrame(
        [(50, 51, T - timedelta(days=30), False), (50, 52, T, False)],
        [C.FOLLOWER_ID, C.FOLLOWEE_ID, C.CREATED_AT, C.IS_CLOSE_FRIEND],
    )
    got = network_interactions(target, network_tile(eng), follows).collect()[0].asDict()
    assert got[R.net_count("like", "1h")] == 0  # 2 h before
    assert got[R.net_count("like", "1d")] == 1
    assert got[R.net_count("click", "7d")] == 0


def test_one_asof_pass_equals_a_pass_per_family(spark):
    # Two families' events of one key in one running sum: each value column is the same as
    # its family's own pass, at every lag (user 7's events, strictly before as_of, count;
    # the event at as_of does not, nor user 8's).
    from features.pit import AsofPart, asof_pass, asof_sums

    req = spark.createDataFrame([(7, T), (7, T + timedelta(hours=3)), (8, T)], [C.USER_ID, R.AS_OF])
    a = spark.createDataFrame(
        [(7, T - timedelta(hours=2), 2), (7, T, 5), (8, T + timedelta(hours=1), 1)],
        [C.USER_ID, "ts", "n"],
    )
    b = spark.createDataFrame(
        [(7, T - timedelta(days=2), 3), (7, T + timedelta(hours=1), 4)], [C.USER_ID, "ts", "n"]
    )
    shared = asof_pass(
        req,
        [C.USER_ID],
        [AsofPart(a, "ts", {"a": "n"}, (0, 1)), AsofPart(b, "ts", {"b": "n"}, (0, 24))],
    )
    got = {(r[C.USER_ID], r[R.AS_OF]): r.asDict() for r in shared.collect()}
    for name, events, lags in (("a", a, [0, 1]), ("b", b, [0, 24])):
        alone = asof_sums(req, events.withColumnRenamed("n", name), [C.USER_ID], "ts", [name], lags)
        for r in alone.collect():
            for L in lags:
                assert got[(r[C.USER_ID], r[R.AS_OF])][f"{name}__{L}"] == r[f"{name}__{L}"]
    # by hand: at T, user 7 has a's 2 (2h before, so also before T - 1h) and b's 3 (2 days
    # before: in the sums to T - 24h too, so none in the last 24h); the a event at T counts
    # only from T + 3h on
    assert got[(7, T)]["a__0"] == 2 and got[(7, T)]["a__1"] == 2 and got[(7, T)]["b__24"] == 3
    assert got[(7, T + timedelta(hours=3))]["a__0"] == 7 and got[(7, T)]["b__0"] == 3
    assert got[(8, T)]["a__0"] == 0 and got[(8, T)]["b__0"] == 0
