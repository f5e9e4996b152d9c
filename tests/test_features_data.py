"""Shared inputs of the feature tests (no tests here): a seeded random log for the reference
test and small "universes" for the leakage test, featurized in ONE point_in_time_features call
(ids are disjoint) because a full feature plan costs tens of seconds on two local cores.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from features.assemble import point_in_time_features
from features.config import FeatureSettings
from warehouse.catalog import MEDIA_TYPES, C

START = datetime(2026, 3, 1)
N_USERS, N_PAGES, N_POSTS, N_IMPS = 20, 5, 60, 400
TAGS = [f"t{i}" for i in range(8)]


def _ts(rng, lo_days, hi_days, n):
    """n random times (to the second) between START + lo_days and START + hi_days."""
    secs = rng.integers(int(lo_days * 86400), int(hi_days * 86400), n)
    return [START + timedelta(seconds=int(s)) for s in secs]


def random_log(seed: int = 7) -> dict[str, pd.DataFrame]:
    """Users 0..19, person authors = users 0..9, pages 100..104; 10 days of history and
    impressions over the last 4, some exactly on the hour."""
    rng = np.random.default_rng(seed)
    author_ids = list(range(10)) + list(range(100, 100 + N_PAGES))
    users = pd.DataFrame(
        {
            C.USER_ID: range(N_USERS),
            C.CREATED_AT: START,
            C.COUNTRY: "us",
            C.AGE_BUCKET: "25-34",
            C.GENDER: "f",
            C.PRIMARY_DEVICE: "mobile",
            C.IS_PERSON_AUTHOR: [u < 10 for u in range(N_USERS)],
            C.DS: "x",
        }
    )
    authors = pd.DataFrame(
        {
            C.AUTHOR_ID: author_ids,
            C.KIND: "person",
            C.CREATED_AT: START,
            C.VERIFIED: rng.random(len(author_ids)) < 0.3,
            C.DS: "x",
        }
    )
    pairs = {
        (int(a), int(b))
        for a, b in zip(rng.integers(0, N_USERS, 120), rng.choice(author_ids, 120), strict=True)
        if a != b
    }
    follows = pd.DataFrame(sorted(pairs), columns=[C.FOLLOWER_ID, C.FOLLOWEE_ID])
    follows[C.CREATED_AT] = _ts(rng, -5, 10, len(follows))
    follows[C.IS_CLOSE_FRIEND] = rng.random(len(follows)) < 0.2
    posts = pd.DataFrame(
        {
            C.POST_ID: range(N_POSTS),
            C.AUTHOR_ID: rng.choice(author_ids, N_POSTS),
            C.CREATED_AT: _ts(rng, -1, 9, N_POSTS),
            C.TOPIC: rng.integers(0, 5, N_POSTS).astype("int32"),
        }
    )
    posts[C.HASHTAGS] = [
        list(rng.choice(TAGS, rng.integers(0, 4), replace=False)) for _ in range(N_POSTS)
    ]
    posts[C.MEDIA_TYPE], posts[C.LENGTH], posts[C.HAS_URL] = "text", 100, False
    # ~100 feed requests (a user at a time, some exactly on the hour), ~4 items each, one
    # second apart
    n_req = 100
    req_user = rng.integers(0, N_USERS, n_req)
    req_time = _ts(rng, 0, 10, n_req)
    req_time[:10] = [t.replace(minute=0, second=0) for t in req_time[:10]]
    req = np.sort(rng.integers(0, n_req, N_IMPS))
    position = pd.Series(req).groupby(req).cumcount().to_numpy()
    post_id = rng.integers(0, N_POSTS, N_IMPS)
    imps = pd.DataFrame(
        {
            C.IMPRESSION_ID: range(N_IMPS),
            C.REQUEST_ID: req,
            C.USER_ID: req_user[req],
            C.POST_ID: post_id,
            C.AUTHOR_ID: posts[C.AUTHOR_ID].to_numpy()[post_id],
            C.SERVED_AT: [
                req_time[r] + timedelta(seconds=int(p)) for r, p in zip(req, position, strict=True)
            ],
            C.POSITION: position.astype("int32"),
            C.DEVICE: "mobile",
            C.SOURCE: "network",
            C.BUCKET: "control",
            C.POLICY: "chronological",
            C.PROPENSITY: 1.0,
        }
    )
    eng = imps.sample(frac=0.5, random_state=seed)[
        [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.SERVED_AT]
    ]
    eng[C.ACTION] = rng.choice(["click", "like", "comment", "share", "hide"], len(eng))
    eng[C.EVENT_TS] = eng[C.SERVED_AT] + pd.to_timedelta(rng.integers(1, 7200, len(eng)), "s")
    eng = eng.drop(columns=C.SERVED_AT)
    eng, posts[C.MEDIA_TYPE] = _reports_and_media(seed, imps, eng)
    return {
        "users": users,
        "authors": authors,
        "follows": follows,
        "posts": posts,
        "impressions": imps,
        "engagements": eng,
    }


def _reports_and_media(seed, imps, eng) -> tuple[pd.DataFrame, list[str]]:
    """Engagements with reports on ~5% of the impressions added, and a media type per post,
    from a generator of their own: the draws above, and every feature that reads neither
    reports nor media, stay as they were."""
    rng = np.random.default_rng(seed + 1)
    media = list(rng.choice(MEDIA_TYPES, N_POSTS))
    rep = imps.sample(frac=0.05, random_state=seed + 1)[
        [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.SERVED_AT]
    ]
    rep[C.ACTION] = "report"
    rep[C.EVENT_TS] = rep[C.SERVED_AT] + pd.to_timedelta(rng.integers(1, 7200, len(rep)), "s")
    return pd.concat([eng, rep.drop(columns=C.SERVED_AT)], ignore_index=True), media


LEAK_BASE = 1_000_000  # leakage universes' ids start here, apart from the random log's
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
    o = LEAK_BASE + 100 * u
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
        eng.append((2 + o, F_ + o, P1 + o, "hide", x))  # the friend hides P1 ...
        eng.append((2 + o, F_ + o, P1 + o, "report", x))  # ... and reports it
        eng.append((1 + o, V + o, P2 + o, "hide", x))  # the viewer hides P2
    posts = [
        (P1 + o, A + o, T - timedelta(days=2), 1, ["x", "y"]),
        (P2 + o, A + o, T - timedelta(days=3), 2, ["x"]),
    ]
    return {"follows": follows, "impressions": imps, "engagements": eng, "posts": posts}


GRAPH_CUTOFF = datetime(2026, 3, 6, 23)  # <= every as_of of both sets
REFERENCE_FROM = datetime(2026, 3, 7)  # the random log's target impressions start here


def leakage_log() -> dict[str, pd.DataFrame]:
    """All universes' rows, in the random log's columns."""
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
    f = {k: pd.DataFrame(rows[k], columns=cols[k]) for k in cols}
    f["impressions"] = f["impressions"].assign(
        **{C.POSITION: 0, C.DEVICE: "mobile", C.SOURCE: "network", C.BUCKET: "control"},
        **{C.POLICY: "chronological", C.PROPENSITY: 1.0},
    )
    f["engagements"][C.DWELL_S] = np.nan
    f["posts"] = f["posts"].assign(**{C.MEDIA_TYPE: "text", C.LENGTH: 100, C.HAS_URL: False})
    f["posts"][C.TOPIC] = f["posts"][C.TOPIC].astype("int32")
    ids = sorted({LEAK_BASE + 100 * u + i for u in UNIVERSES for i in (V, F_, G, A)})
    f["users"] = pd.DataFrame(
        {
            C.USER_ID: ids,
            C.CREATED_AT: OLD,
            C.COUNTRY: "us",
            C.AGE_BUCKET: "25-34",
            C.GENDER: "f",
            C.PRIMARY_DEVICE: "mobile",
            C.IS_PERSON_AUTHOR: True,
            C.DS: "x",
        }
    )
    f["authors"] = pd.DataFrame(
        {C.AUTHOR_ID: ids, C.KIND: "person", C.CREATED_AT: OLD, C.VERIFIED: True, C.DS: "x"}
    )
    return f


@functools.cache
def featurized(spark) -> pd.DataFrame:
    """point_in_time_features over the random log's targets and every universe's target."""
    ref, leak = random_log(), leakage_log()
    frames = {k: spark.createDataFrame(pd.concat([ref[k], leak[k][ref[k].columns]])) for k in ref}
    imps = frames["impressions"]
    targets = imps.where(
        f"({C.IMPRESSION_ID} < {LEAK_BASE} AND {C.SERVED_AT} >= '{REFERENCE_FROM}')"
        f" OR ({C.IMPRESSION_ID} >= {LEAK_BASE} AND {C.IMPRESSION_ID} % 100 = 9)"
    )
    out = point_in_time_features(
        targets,
        frames["posts"],
        frames["engagements"],
        frames["follows"],
        frames["users"],
        frames["authors"],
        graph_cutoff=GRAPH_CUTOFF,
        history_impressions=imps,
        **{
            **FeatureSettings().model_dump(),
            "pagerank_iterations": 2,  # PageRank has its own test
        },
    )
    return out.toPandas().sort_values(C.IMPRESSION_ID).reset_index(drop=True)
