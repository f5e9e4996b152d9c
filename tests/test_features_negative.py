"""Negative feedback (features.negative) on a hand-made log: the post's and the author's
smoothed hide and report rates and the viewer's hide rate, all at as_of T."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from features import registry as R
from features.negative import (
    Priors,
    author_negative_features,
    post_negative_features,
    post_negative_tile,
    user_hide_rate,
    user_negative_tile,
)
from features.pit import with_as_of
from warehouse.catalog import C

pytestmark = pytest.mark.spark

T = datetime(2026, 5, 4, 12)  # the targets' as_of
D, H, M = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
# Priors chosen so that each stands for one pseudo-event: hide 0.1 x 10, report 0.05 x 20.
PRIORS = Priors(hide_rate=0.1, hide_strength=10.0, report_rate=0.05, report_strength=20.0)
IMPS = [  # impression, request, user, post, author, served_at
    (1, 1, 2, 1, 100, T - D),
    (2, 2, 3, 1, 100, T - 2 * D),
    (3, 3, 4, 1, 100, T - 3 * H),
    (4, 4, 2, 1, 100, T - 8 * D),  # out of the post's 7d, in the author's 30d
    (5, 5, 2, 2, 100, T - 10 * D),
    (6, 6, 3, 2, 100, T - 10 * D),
    (7, 7, 1, 2, 100, T - D),  # the viewer's
    (8, 8, 1, 3, 101, T - 5 * D),  # the viewer's
    (9, 9, 1, 3, 101, T - 31 * D),  # the viewer's, out of 30d
    (10, 10, 1, 1, 100, T + 20 * M),  # target: viewer 1, post 1
    (11, 11, 5, 4, 102, T + 20 * M),  # target: viewer 5 (nothing before), post 4 (no event)
]
ENG = [  # impression, user, post, action, event_ts
    (1, 2, 1, "hide", T - 2 * H),
    (3, 4, 1, "report", T - 30 * M),
    (3, 4, 1, "like", T - 20 * M),  # a positive: counts nowhere here
    (2, 3, 1, "hide", T),  # at as_of: not before it
    (10, 1, 1, "hide", T + 25 * M),  # after the target
    (5, 2, 2, "hide", T - 10 * D + M),
    (7, 1, 2, "hide", T - D + M),  # the viewer's hide
    (9, 1, 3, "hide", T - 31 * D + M),  # the viewer's, out of 30d
]
POSTS = [(1, 100), (2, 100), (3, 101), (4, 102)]


@pytest.fixture(scope="module")
def frames(spark):
    imps = spark.createDataFrame(
        IMPS, [C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT]
    )
    eng = spark.createDataFrame(ENG, [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.ACTION, C.EVENT_TS])
    posts = spark.createDataFrame(POSTS, [C.POST_ID, C.AUTHOR_ID])
    targets = with_as_of(imps.where(f"{C.IMPRESSION_ID} >= 10"))
    return imps, eng, posts, targets


def _by(df, key: str, col: str) -> dict:
    return {r[key]: r[col] for r in df.collect()}


def test_post_rates(frames):
    imps, eng, posts, targets = frames
    got = post_negative_features(targets, post_negative_tile(imps, eng, posts), PRIORS)
    hide = _by(got, C.POST_ID, R.POST_SMOOTHED_HIDE_RATE)
    report = _by(got, C.POST_ID, R.POST_SMOOTHED_REPORT_RATE)
    # post 1, 7d before T: impressions 1-3 (4 is 8 days old, 10 is the target); the hide at
    # T-2h (those at T and after do not count) and the report at T-30min
    assert hide[1] == pytest.approx((1 + 0.1 * 10) / (3 + 10))
    assert report[1] == pytest.approx((1 + 0.05 * 20) / (3 + 20))
    # post 4 has no event: the priors
    assert (hide[4], report[4]) == pytest.approx((0.1, 0.05))


def test_author_rates(frames):
    imps, eng, posts, targets = frames
    tile = post_negative_tile(imps, eng, posts)
    got = author_negative_features(targets, tile, PRIORS)
    hide = _by(got, C.AUTHOR_ID, R.AUTHOR_SMOOTHED_HIDE_RATE)
    report = _by(got, C.AUTHOR_ID, R.AUTHOR_SMOOTHED_REPORT_RATE)
    # author 100, 30d before T: impressions 1-7 of posts 1 and 2; hides at T-2h, T-10d+1min
    # and the viewer's at T-1d+1min; the report at T-30min
    assert hide[100] == pytest.approx((3 + 0.1 * 10) / (7 + 10))
    assert report[100] == pytest.approx((1 + 0.05 * 20) / (7 + 20))
    assert (hide[102], report[102]) == pytest.approx((0.1, 0.05))  # nothing before: priors
    assert set(hide) == {100, 102}  # only the authors the targets ask for


def test_user_hide_rate(frames):
    imps, eng, _, targets = frames
    got = _by(user_hide_rate(targets, user_negative_tile(imps, eng)), C.USER_ID, R.USER_HIDE_RATE)
    # viewer 1, 30d before T: impressions 7 and 8 (9 is 31 days old), one hide (T-1d+1min;
    # the one at T+25min is after the target, the 31-day-old one out of the window)
    assert got[1] == pytest.approx(1 / 2)
    assert got[5] is None  # no impression before: unknown, not zero
