"""The viewer's engagement history (features.history) on a hand-made log: the last n posts
with a positive strictly before as_of, within 30 days, newest first, each post once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pyspark.sql import types as T_

from features import registry as R
from features.history import history_features, history_tile
from features.pit import with_as_of
from warehouse.catalog import C

pytestmark = pytest.mark.spark

T = datetime(2026, 5, 4, 12)  # the targets' as_of
D, H, M = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
TARGETS = [  # impression, request, user, post, author, served_at: viewers 1 and 2
    (1, 1, 1, 99, 100, T + 20 * M),
    (2, 2, 2, 99, 100, T + 20 * M),
]
ENG = [  # impression, user, post, action, event_ts (impression ids do not matter here)
    (0, 1, 10, "like", T - 2 * H),
    (0, 1, 10, "click", T - 1 * H),  # post 10 again: it counts once, at T-1h
    (0, 1, 11, "click", T - 3 * H),
    (0, 1, 12, "like", T - 3 * H),  # the same time as post 11: post_id breaks the tie
    (0, 1, 13, "hide", T - 30 * M),  # not a positive
    (0, 1, 14, "like", T),  # at as_of: not before it
    (0, 1, 17, "share", T + 5 * M),  # after as_of
    (0, 1, 15, "like", T - 31 * D),  # older than 30 days
    (0, 1, 16, "share", T - 29 * D),
    (0, 2, 10, "hide", T - H),  # viewer 2 has no positive
]
POSTS = [  # post, topic, author, media type
    (10, 1, 100, "video"),
    (11, 2, 101, "text"),
    (12, 1, 102, "photo"),
    (13, 4, 100, "text"),
    (14, 4, 100, "text"),
    (15, 4, 100, "text"),
    (16, 3, 100, "link"),
    (17, 4, 100, "text"),
]
POST_SCHEMA = T_.StructType(
    [
        T_.StructField(C.POST_ID, T_.LongType()),
        T_.StructField(C.TOPIC, T_.IntegerType()),  # as in the posts table
        T_.StructField(C.AUTHOR_ID, T_.LongType()),
        T_.StructField(C.MEDIA_TYPE, T_.StringType()),
    ]
)


def _history(spark, n: int) -> dict[int, dict]:
    targets = with_as_of(
        spark.createDataFrame(
            TARGETS,
            [C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT],
        )
    )
    eng = spark.createDataFrame(ENG, [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.ACTION, C.EVENT_TS])
    posts = spark.createDataFrame(POSTS, POST_SCHEMA)
    got = history_features(targets, history_tile(eng), posts, n)
    cols = (R.USER_HIST_TOPICS, R.USER_HIST_AUTHORS, R.USER_HIST_MEDIA)
    types = {f.name: f.dataType.simpleString() for f in got.schema.fields if f.name in cols}
    assert types == {
        R.USER_HIST_TOPICS: "array<int>",  # the type of topic
        R.USER_HIST_AUTHORS: "array<bigint>",
        R.USER_HIST_MEDIA: "array<string>",
    }
    return {r[C.USER_ID]: {c: list(r[c]) for c in cols} for r in got.collect()}


# n -> viewer 1's posts, newest first: 10 (latest positive T-1h), then 11 and 12 (both T-3h,
# by post_id), then 16 (T-29d); 13 (a hide), 14 (at as_of), 17 (after) and 15 (31 days) never
@pytest.mark.parametrize("n, posts", [(3, [10, 11, 12]), (10, [10, 11, 12, 16])])
def test_last_engaged_posts(spark, n, posts):
    got = _history(spark, n)
    attrs = {p: (t, a, m) for p, t, a, m in POSTS}
    assert got[1] == {
        R.USER_HIST_TOPICS: [attrs[p][0] for p in posts],
        R.USER_HIST_AUTHORS: [attrs[p][1] for p in posts],
        R.USER_HIST_MEDIA: [attrs[p][2] for p in posts],
    }
    # viewer 2 has no positive: empty lists, not null
    assert got[2] == {R.USER_HIST_TOPICS: [], R.USER_HIST_AUTHORS: [], R.USER_HIST_MEDIA: []}
