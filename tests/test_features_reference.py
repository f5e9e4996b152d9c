"""The Spark features against a second, independent implementation in DuckDB SQL (event-level,
no buckets, no running sums) on a seeded random log of a few hundred impressions."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from test_features_data import GRAPH_CUTOFF, LEAK_BASE, REFERENCE_FROM, featurized, random_log

from features import registry as R
from features.config import FeatureSettings
from features.pit import follow_edges, needed, with_as_of
from features.post import network_interactions, network_tile
from features.registry import AS_OF
from features.user_author import common_followees
from warehouse.catalog import C

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def log():
    return random_log()


@pytest.fixture(scope="module")
def spark_features(spark):
    out = featurized(spark)
    return out[out[C.IMPRESSION_ID] < LEAK_BASE].reset_index(drop=True)


def _duck(log, sql) -> pd.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, df in log.items():
        con.register(name, df)
    return con.execute(sql).df().sort_values("impression_id").reset_index(drop=True)


# as_of in SQL: the latest hour strictly before served_at.
_T = f"""WITH t AS (SELECT *, date_trunc('hour', served_at - INTERVAL 1 MICROSECOND) AS as_of
                   FROM impressions WHERE served_at >= TIMESTAMP '{REFERENCE_FROM}')"""


def test_post_windows_and_decay(log, spark_features):
    ref = _duck(
        log,
        _T
        + """
        SELECT t.impression_id,
          (SELECT count(*) FROM engagements e WHERE e.post_id = t.post_id AND e.action = 'like'
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 1 DAY) AS like_1d,
          (SELECT count(*) FROM impressions i WHERE i.post_id = t.post_id
             AND i.served_at < t.as_of AND i.served_at >= t.as_of - INTERVAL 7 DAY) AS imp_7d,
          (SELECT coalesce(sum(1 / (1 + epoch(t.as_of - e.event_ts) / 86400)), 0)
             FROM engagements e WHERE e.post_id = t.post_id AND e.action = 'click'
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 7 DAY) AS click_decay
        FROM t""",
    )
    got = spark_features
    assert len(got) == len(ref) > 100
    assert (got[R.post_count("like", "1d")].to_numpy() == ref.like_1d.to_numpy()).all()
    assert (got[R.post_count(R.IMPRESSION, "7d")].to_numpy() == ref.imp_7d.to_numpy()).all()
    np.testing.assert_allclose(got[R.post_decayed("click")], ref.click_decay, rtol=1e-5)


def test_follow_user_author_and_network(log, spark_features):
    ref = _duck(
        log,
        _T
        + """
        SELECT t.impression_id,
          (SELECT count(*) FROM follows f WHERE f.followee_id = t.author_id
             AND f.created_at < t.as_of) AS followers,
          (SELECT count(*) FROM follows f1 JOIN follows f2 ON f2.follower_id = f1.followee_id
             WHERE f1.follower_id = t.user_id AND f2.followee_id = t.author_id
             AND f1.created_at < t.as_of AND f2.created_at < t.as_of) AS common,
          (SELECT count(*) FROM impressions i WHERE i.user_id = t.user_id
             AND i.author_id = t.author_id AND i.served_at < t.as_of
             AND i.served_at >= t.as_of - INTERVAL 90 DAY) AS ua_imp,
          (SELECT count(*) FROM engagements e JOIN impressions i USING (impression_id)
             WHERE e.user_id = t.user_id AND i.author_id = t.author_id
             AND e.action IN ('click', 'like', 'comment', 'share')
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 90 DAY) AS ua_pos,
          (SELECT count(*) FROM engagements e JOIN follows f
             ON f.follower_id = t.user_id AND f.followee_id = e.user_id
             WHERE e.post_id = t.post_id AND e.action = 'like' AND f.created_at < t.as_of
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 7 DAY) AS net_like,
          (SELECT count(*) FROM impressions i WHERE i.user_id = t.user_id
             AND i.served_at < t.as_of AND i.served_at >= t.as_of - INTERVAL 7 DAY) AS user_imp
        FROM t""",
    )
    got = spark_features
    assert (got[R.AUTHOR_FOLLOWERS].to_numpy() == ref.followers.to_numpy()).all()
    assert (got[R.UA_COMMON_FOLLOWEES].to_numpy() == ref.common.to_numpy()).all()
    assert (got[R.net_count("like", "7d")].to_numpy() == ref.net_like.to_numpy()).all()
    assert (got[R.USER_IMPRESSIONS_7D].to_numpy() == ref.user_imp.to_numpy()).all()
    share = (ref.ua_pos / ref.ua_imp).where(ref.ua_imp > 0)  # null before any impression
    np.testing.assert_allclose(got[R.ua_share(90)].astype(float), share, rtol=1e-12)
    assert ref.followers.sum() > 0 and ref.common.sum() > 0 and ref.net_like.sum() > 0


def _pandas_similarity(log, row) -> tuple[float, float | None]:
    """TF-IDF cosine and topic share for one target impression, from the definitions."""
    posts, eng = log["posts"].set_index(C.POST_ID), log["engagements"]
    as_of = pd.Timestamp(row[C.SERVED_AT]).ceil("h") - pd.Timedelta(hours=1)
    corpus = posts[posts[C.CREATED_AT] < GRAPH_CUTOFF]
    df = pd.Series([t for tags in corpus[C.HASHTAGS] for t in set(tags)]).value_counts()
    idf = lambda t: np.log((len(corpus) + 1) / (df.get(t, 0) + 1))  # noqa: E731
    mine = eng[
        (eng[C.USER_ID] == row[C.USER_ID])
        & (eng[C.EVENT_TS] < as_of)
        & eng[C.ACTION].isin(R.POSITIVE_ACTIONS)
    ]
    tf = pd.Series(
        [t for p in mine[C.POST_ID] for t in set(posts.at[p, C.HASHTAGS])]
    ).value_counts()
    u = {t: c * idf(t) for t, c in tf.items()}
    p = {t: idf(t) for t in set(posts.at[row[C.POST_ID], C.HASHTAGS])}
    dot = sum(u.get(t, 0.0) * w for t, w in p.items())
    norm = np.sqrt(sum(v * v for v in u.values()) * sum(v * v for v in p.values()))
    topics = posts.loc[mine[C.POST_ID], C.TOPIC]
    share = (topics == posts.at[row[C.POST_ID], C.TOPIC]).mean() if len(topics) else None
    return (dot / norm if dot > 0 else 0.0), share


def test_similarity(log, spark_features):
    got = spark_features
    ref = [_pandas_similarity(log, r) for _, r in got.iterrows()]
    np.testing.assert_allclose(got[R.SIM_HASHTAG_TFIDF], [c for c, _ in ref], rtol=1e-9)
    share = np.array([np.nan if s is None else s for _, s in ref])
    np.testing.assert_allclose(got[R.SIM_TOPIC_SHARE].astype(float), share, rtol=1e-12)
    assert (got[R.SIM_HASHTAG_TFIDF] > 0).sum() > 20


def test_rates_topics_and_context(log, spark_features):
    pos = "('click', 'like', 'comment', 'share')"
    ref = _duck(
        log,
        _T
        + f"""
        , p AS (SELECT e.*, po.author_id, po.topic FROM engagements e JOIN posts po USING (post_id)
                WHERE e.action IN {pos}),
        ip AS (SELECT i.*, po.topic FROM impressions i JOIN posts po USING (post_id))
        SELECT t.impression_id,
          (SELECT count(*) FROM p WHERE p.author_id = t.author_id AND p.event_ts < t.as_of
             AND p.event_ts >= t.as_of - INTERVAL 7 DAY) AS a_pos,
          (SELECT count(*) FROM ip WHERE ip.author_id = t.author_id AND ip.served_at < t.as_of
             AND ip.served_at >= t.as_of - INTERVAL 7 DAY) AS a_imp,
          (SELECT count(*) FROM p WHERE p.author_id = t.author_id AND p.event_ts < t.as_of
             AND p.topic = (SELECT topic FROM posts WHERE post_id = t.post_id)
             AND p.event_ts >= t.as_of - INTERVAL 30 DAY) AS at_pos,
          (SELECT count(*) FROM ip WHERE ip.author_id = t.author_id AND ip.served_at < t.as_of
             AND ip.topic = (SELECT topic FROM posts WHERE post_id = t.post_id)
             AND ip.served_at >= t.as_of - INTERVAL 30 DAY) AS at_imp,
          (SELECT count(DISTINCT request_id) FROM impressions i WHERE i.user_id = t.user_id
             AND (SELECT min(served_at) FROM impressions j WHERE j.request_id = i.request_id)
               BETWEEN t.as_of - INTERVAL 7 DAY AND t.as_of - INTERVAL 1 MICROSECOND) AS u_req,
          (SELECT list(topic ORDER BY last DESC, topic) FROM (
             SELECT topic, max(event_ts) AS last FROM p WHERE p.user_id = t.user_id
             AND p.event_ts < t.as_of AND p.event_ts >= t.as_of - INTERVAL 30 DAY
             GROUP BY topic ORDER BY last DESC, topic LIMIT 5)) AS last_topics,
          (SELECT epoch((SELECT min(served_at) FROM impressions WHERE request_id = t.request_id)
               - max(r.first)) / 3600 FROM (
             SELECT min(served_at) AS first FROM impressions WHERE user_id = t.user_id
             GROUP BY request_id) r WHERE r.first < (
               SELECT min(served_at) FROM impressions WHERE request_id = t.request_id)) AS since,
          (SELECT greatest(0, epoch(t.as_of - created_at) / 3600) FROM posts
             WHERE post_id = t.post_id) AS age
        FROM t""",
    )
    got = spark_features

    def rate(num, den):
        return (num / den).where(den > 0)  # null before any impression

    np.testing.assert_allclose(got[R.author_rate(7)].astype(float), rate(ref.a_pos, ref.a_imp))
    np.testing.assert_allclose(
        got[R.author_topic_rate(30)].astype(float), rate(ref.at_pos, ref.at_imp)
    )
    assert (got[R.USER_REQUESTS_7D].to_numpy() == ref.u_req.to_numpy()).all()
    last = [list(x) if isinstance(x, list | np.ndarray) else [] for x in ref.last_topics]
    assert [list(x) for x in got[R.USER_LAST_TOPICS]] == last
    assert sum(len(x) > 1 for x in last) > 20  # orders are really compared
    # request time (its first item) minus the previous request's; no earlier request -> null
    np.testing.assert_allclose(
        got[R.CTX_HOURS_SINCE_PREV_REQUEST].astype(float), ref.since.astype(float)
    )
    np.testing.assert_allclose(got[R.POST_AGE_H], ref.age)


def test_negative_feedback_and_history(log, spark_features):
    prior = FeatureSettings()
    ref = _duck(
        log,
        _T
        + """
        , ip AS (SELECT i.*, po.author_id AS a FROM impressions i JOIN posts po USING (post_id)),
        ep AS (SELECT e.*, po.author_id AS a FROM engagements e JOIN posts po USING (post_id)),
        pos AS (SELECT e.user_id, e.post_id, max(e.event_ts) AS last, t.impression_id
                FROM t JOIN engagements e ON e.user_id = t.user_id
                WHERE e.action IN ('click', 'like', 'comment', 'share') AND e.event_ts < t.as_of
                  AND e.event_ts >= t.as_of - INTERVAL 30 DAY
                GROUP BY e.user_id, e.post_id, t.impression_id),
        hist AS (SELECT impression_id,
                   list(po.topic ORDER BY last DESC, post_id) AS topics,
                   list(po.author_id ORDER BY last DESC, post_id) AS authors,
                   list(po.media_type ORDER BY last DESC, post_id) AS media
                 FROM (SELECT *, row_number() OVER (PARTITION BY impression_id
                                                    ORDER BY last DESC, post_id) AS r FROM pos)
                 JOIN posts po USING (post_id) WHERE r <= 10 GROUP BY impression_id)
        SELECT t.impression_id,
          (SELECT count(*) FROM engagements e WHERE e.post_id = t.post_id AND e.action = 'hide'
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 7 DAY) AS p_hide,
          (SELECT count(*) FROM engagements e WHERE e.post_id = t.post_id AND e.action = 'report'
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 7 DAY) AS p_report,
          (SELECT count(*) FROM impressions i WHERE i.post_id = t.post_id
             AND i.served_at < t.as_of AND i.served_at >= t.as_of - INTERVAL 7 DAY) AS p_imp,
          (SELECT count(*) FROM ep WHERE ep.a = t.author_id AND ep.action = 'hide'
             AND ep.event_ts < t.as_of AND ep.event_ts >= t.as_of - INTERVAL 30 DAY) AS a_hide,
          (SELECT count(*) FROM ep WHERE ep.a = t.author_id AND ep.action = 'report'
             AND ep.event_ts < t.as_of AND ep.event_ts >= t.as_of - INTERVAL 30 DAY) AS a_report,
          (SELECT count(*) FROM ip WHERE ip.a = t.author_id
             AND ip.served_at < t.as_of AND ip.served_at >= t.as_of - INTERVAL 30 DAY) AS a_imp,
          (SELECT count(*) FROM engagements e WHERE e.user_id = t.user_id AND e.action = 'hide'
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 30 DAY) AS u_hide,
          (SELECT count(*) FROM impressions i WHERE i.user_id = t.user_id
             AND i.served_at < t.as_of AND i.served_at >= t.as_of - INTERVAL 30 DAY) AS u_imp,
          hist.topics, hist.authors, hist.media
        FROM t LEFT JOIN hist USING (impression_id)""",
    )
    got = spark_features

    def smoothed(n, imp, rate, strength):
        return (n + rate * strength) / (imp + strength)

    hide = (prior.hide_prior_rate, prior.hide_prior_strength)
    report = (prior.report_prior_rate, prior.report_prior_strength)
    expect = {
        R.POST_SMOOTHED_HIDE_RATE: smoothed(ref.p_hide, ref.p_imp, *hide),
        R.POST_SMOOTHED_REPORT_RATE: smoothed(ref.p_report, ref.p_imp, *report),
        R.AUTHOR_SMOOTHED_HIDE_RATE: smoothed(ref.a_hide, ref.a_imp, *hide),
        R.AUTHOR_SMOOTHED_REPORT_RATE: smoothed(ref.a_report, ref.a_imp, *report),
        R.USER_HIDE_RATE: (ref.u_hide / ref.u_imp).where(ref.u_imp > 0),  # null: no impression
    }
    for col, want in expect.items():
        np.testing.assert_allclose(got[col].astype(float), want, rtol=1e-12, err_msg=col)
    # the log really has hides and reports in every window, and viewers with none
    assert min(ref.p_hide.sum(), ref.p_report.sum(), ref.a_report.sum(), ref.u_hide.sum()) > 0
    assert ref.u_hide.eq(0).sum() > 0

    def lists(col):  # no engaged post: SQL's null, the features' empty list
        return [list(x) if isinstance(x, list | np.ndarray) else [] for x in ref[col]]

    assert [list(x) for x in got[R.USER_HIST_TOPICS]] == lists("topics")
    assert [list(x) for x in got[R.USER_HIST_AUTHORS]] == lists("authors")
    assert [list(x) for x in got[R.USER_HIST_MEDIA]] == lists("media")
    lengths = [len(x) for x in lists("topics")]
    assert max(lengths) == FeatureSettings().history_len and 0 in lengths  # cut, and empty
    assert sum(1 < n < 10 for n in lengths) > 20  # orders are really compared


@pytest.mark.parametrize("many_per_user", [False, True])
def test_network_and_common_followees_in_either_join_order(log, spark, many_per_user):
    # The two join orders (a training day's, and a feed generation's that cuts the follow
    # graph to the requested users and authors first) give the reference's counts for every
    # impression. Only even users and authors are requested, so that the cuts drop edges and
    # paths run through users and authors that are not requested.
    even = f"{C.USER_ID} % 2 = 0 AND {C.AUTHOR_ID} % 2 = 0"
    ref = _duck(
        log,
        _T.replace("WHERE served_at", f"WHERE {even} AND served_at")
        + """
        SELECT t.impression_id,
          (SELECT count(*) FROM follows f1 JOIN follows f2 ON f2.follower_id = f1.followee_id
             WHERE f1.follower_id = t.user_id AND f2.followee_id = t.author_id
             AND f1.created_at < t.as_of AND f2.created_at < t.as_of) AS common,
          (SELECT count(*) FROM engagements e JOIN follows f
             ON f.follower_id = t.user_id AND f.followee_id = e.user_id
             WHERE e.post_id = t.post_id AND e.action = 'like' AND f.created_at < t.as_of
             AND e.event_ts < t.as_of AND e.event_ts >= t.as_of - INTERVAL 1 DAY) AS net_like
        FROM t""",
    )
    imps = with_as_of(spark.createDataFrame(log["impressions"]))
    imps = imps.where(imps[C.SERVED_AT] >= REFERENCE_FROM).where(even)
    follows = spark.createDataFrame(log["follows"])
    tile = network_tile(spark.createDataFrame(log["engagements"]))
    net = network_interactions(imps, tile, follows, many_per_user=many_per_user)
    req = needed(imps, [C.USER_ID, C.AUTHOR_ID])
    common = common_followees(req, follow_edges(follows), many_per_user=many_per_user)
    got = (
        imps.join(net, [C.USER_ID, C.POST_ID, AS_OF], "left")
        .join(common, [C.USER_ID, C.AUTHOR_ID, AS_OF], "left")
        .select(C.IMPRESSION_ID, R.net_count("like", "1d"), R.UA_COMMON_FOLLOWEES)
        .toPandas()
        .sort_values(C.IMPRESSION_ID)
        .reset_index(drop=True)
    )
    assert (got[C.IMPRESSION_ID].to_numpy() == ref.impression_id.to_numpy()).all()
    assert (got[R.UA_COMMON_FOLLOWEES].to_numpy() == ref.common.to_numpy()).all()
    assert (got[R.net_count("like", "1d")].to_numpy() == ref.net_like.to_numpy()).all()
    assert ref.common.sum() > 0 and ref.net_like.sum() > 0
