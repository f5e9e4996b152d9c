"""No leakage: events at or after an impression's as_of leave its features unchanged; the same
events moved before as_of change them.

One small world is copied into independent "universes" (ids offset by 100 per universe), each
with the same extra events at a different time, and all families are computed in one call.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features import registry as R
from features.assemble import point_in_time_features
from warehouse.catalog import C

pytestmark = pytest.mark.spark

T = datetime(2026, 5, 4, 12)  # the target's as_of
SERVED = T + timedelta(minutes=20)
V, F_, G, A = 1, 2, 4, 3  # viewer, viewer's friend, another followee, author (all persons)
P1, P2 = 10, 11  # P1 is the target post (topic 1, tags x y); P2 an older one (topic 2, tag x)
OLD = T - timedelta(days=10)
# universe -> time of the extra events (None: the base world)
UNIVERSES = {
    0: None,
    1: T,  # exactly at as_of: not strictly before
    2: T + timedelta(minutes=1),  # between as_of and the impression
    3: SERVED + timedelta(minutes=5),  # after the impression
    4: T - timedelta(minutes=40),  # before as_of: must count
}


def _world(u: int, x: datetime | None) -> dict[str, list[tuple]]:
    o = 100 * u
    follows = [(V + o, F_ + o, OLD, False), (V + o, G + o, OLD, False), (F_ + o, A + o, OLD, False)]
    imps = [
        (1 + o, 1 + o, V + o, P2 + o, A + o, T - timedelta(days=1)),
        (2 + o, 2 + o, F_ + o, P1 + o, A + o, T - timedelta(hours=5)),
        (9 + o, 9 + o, V + o, P1 + o, A + o, SERVED),  # the target
    ]
    eng = [
        (1 + o, V + o, P2 + o, "like", T - timedelta(days=1, minutes=-10)),
        (2 + o, F_ + o, P1 + o, "like", T - timedelta(hours=5, minutes=-5)),
    ]
    if x is not None:
        imps.append((3 + o, 3 + o, V + o, P1 + o, A + o, x))  # the viewer sees P1 ...
        eng.append((3 + o, V + o, P1 + o, "like", x))  # ... and likes it (topic 1, tags x y)
        eng.append((2 + o, F_ + o, P1 + o, "comment", x))  # the friend comments on P1
        follows.append((G + o, A + o, x, False))  # a second followee follows the author
        follows.append((V + o, A + o, x, True))  # the viewer follows the author
    posts = [
        (P1 + o, A + o, T - timedelta(days=2), 1, ["x", "y"]),
        (P2 + o, A + o, T - timedelta(days=3), 2, ["x"]),
    ]
    return {"follows": follows, "impressions": imps, "engagements": eng, "posts": posts}


def _frames(spark):
    rows: dict[str, list] = {}
    for u, x in UNIVERSES.items():
        for k, v in _world(u, x).items():
            rows.setdefault(k, []).extend(v)
    cols = {
        "follows": [C.FOLLOWER_ID, C.FOLLOWEE_ID, C.CREATED_AT, C.IS_CLOSE_FRIEND],
        "impressions": [
            C.IMPRESSION_ID,
            C.REQUEST_ID,
            C.USER_ID,
            C.POST_ID,
            C.AUTHOR_ID,
            C.SERVED_AT,
        ],
        "engagements": [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.ACTION, C.EVENT_TS],
        "posts": [C.POST_ID, C.AUTHOR_ID, C.CREATED_AT, C.TOPIC, C.HASHTAGS],
    }
    f = {k: spark.createDataFrame(rows[k], cols[k]) for k in cols}
    f["impressions"] = f["impressions"].selectExpr("*", "'mobile' AS device")
    f["posts"] = f["posts"].selectExpr(
        "*", "'text' AS media_type", "100 AS length", "false AS has_url"
    )
    ids = sorted({i for u in UNIVERSES for i in (V + 100 * u, F_ + 100 * u, A + 100 * u)})
    f["users"] = spark.createDataFrame(
        [(i, "us", "25-34", "f", "mobile") for i in ids],
        [C.USER_ID, C.COUNTRY, C.AGE_BUCKET, C.GENDER, C.PRIMARY_DEVICE],
    )
    f["authors"] = spark.createDataFrame(
        [(A + 100 * u, True) for u in UNIVERSES], [C.AUTHOR_ID, C.VERIFIED]
    )
    return f


@pytest.fixture(scope="module")
def features(spark) -> dict[int, dict]:
    f = _frames(spark)
    targets = f["impressions"].where(f"{C.IMPRESSION_ID} % 100 = 9")
    out = point_in_time_features(
        targets,
        f["posts"],
        f["engagements"],
        f["follows"],
        f["users"],
        f["authors"],
        graph_cutoff=T - timedelta(days=1),
        history_impressions=f["impressions"],
        pagerank_iterations=2,
    ).toPandas()
    feats = R.feature_columns()
    assert set(feats) <= set(out.columns)
    return {int(r[C.IMPRESSION_ID]) // 100: {c: r[c] for c in feats} for _, r in out.iterrows()}


def _same(a, b) -> bool:
    if isinstance(a, list | np.ndarray) or isinstance(b, list | np.ndarray):
        return list(a) == list(b)
    return (pd.isna(a) and pd.isna(b)) or a == b


@pytest.mark.parametrize("universe", [1, 2, 3])
def test_events_at_or_after_as_of_change_nothing(features, universe):
    # The previous request (universes 1 and 2 add one in [as_of, served_at)) is context known
    # when serving, not a snapshot feature: it is allowed to move.
    skip = {R.CTX_HOURS_SINCE_PREV_REQUEST} if universe in (1, 2) else set()
    base, other = features[0], features[universe]
    changed = [c for c in base if c not in skip and not _same(base[c], other[c])]
    assert changed == []


# column -> (base value, value with the events 40 min before as_of), and why
CHANGES = {
    R.post_count("like", "1h"): (0, 1),  # the viewer's like on P1
    R.post_count(R.IMPRESSION, "1h"): (0, 1),  # the viewer's earlier impression of P1
    R.net_count("comment", "1h"): (0, 1),  # the friend (a followee) comments on P1
    R.net_count("like", "1d"): (1, 1),  # the friend's old like, unchanged
    R.AUTHOR_FOLLOWERS: (1, 3),  # F only; then G and the viewer too
    R.UA_FOLLOWS: (False, True),
    R.UA_CLOSE_FRIEND: (False, True),
    R.UA_COMMON_FOLLOWEES: (1, 2),  # F, then F and G
    R.ua_share(90): (1.0, 1.0),  # 1 like / 1 impression, then 2 / 2
    R.USER_IMPRESSIONS_7D: (1, 2),
    R.USER_LAST_TOPICS: ([2], [1, 2]),  # topic 1 now the most recent
    R.SIM_TOPIC_SHARE: (0.0, 0.5),  # no like on topic 1, then one of two
    # IDF over the 10 posts before the cutoff: x is on all (idf ln(11/11) = 0), y on half.
    # Liked tags {x}: a zero vector, cosine 0; then {x: 2, y: 1} -> (0, idf_y) against the
    # post's (0, idf_y): cosine 1.
    R.SIM_HASHTAG_TFIDF: (0.0, 1.0),
}


def test_events_before_as_of_change_the_features(features):
    base, early = features[0], features[4]
    for col, (before, after) in CHANGES.items():
        assert _same(base[col], before), (col, base[col])
        assert (
            early[col] == pytest.approx(after)
            if isinstance(after, float)
            else _same(early[col], after)
        ), (col, early[col])
