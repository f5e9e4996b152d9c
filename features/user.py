"""Viewer features per (user_id, as_of): demographics, activity, own rate, last topics."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives, ratio
from features.pit import asof_sums, hourly, latest_snapshot, needed, windowed
from features.registry import AS_OF, BUCKET
from features.windows import range_join
from warehouse.catalog import C

_IMP, _REQ, _POS = "_imp", "_req", "_pos"
DEMOGRAPHICS = (C.COUNTRY, C.AGE_BUCKET, C.GENDER, C.PRIMARY_DEVICE)


def request_times(impressions: DataFrame) -> DataFrame:
    """(user_id, request_id, served_at): a request happens at its first served item."""
    return impressions.groupBy(C.USER_ID, C.REQUEST_ID).agg(F.min(C.SERVED_AT).alias(C.SERVED_AT))


def _user_events(impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    zero = F.lit(0)
    imp = hourly(impressions, [C.USER_ID], C.SERVED_AT, {_IMP: F.lit(1), _REQ: zero, _POS: zero})
    req = hourly(
        request_times(impressions),
        [C.USER_ID],
        C.SERVED_AT,
        {_IMP: zero, _REQ: F.lit(1), _POS: zero},
    )
    pos = hourly(
        positives(engagements), [C.USER_ID], C.EVENT_TS, {_IMP: zero, _REQ: zero, _POS: F.lit(1)}
    )
    return imp.unionByName(req).unionByName(pos)


def user_activity(requests: DataFrame, impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    """Per (user_id, as_of): impressions and requests in the 7d before as_of, and the user's
    positives / impressions over 7d and 30d (null before the first impression)."""
    lags = sorted({7 * 24, *(d * 24 for d in R.USER_RATE_WINDOWS_D)})
    sums = asof_sums(
        requests,
        _user_events(impressions, engagements),
        [C.USER_ID],
        BUCKET,
        [_IMP, _REQ, _POS],
        [0, *lags],
    )
    rates = [
        ratio(windowed(_POS, d * 24), windowed(_IMP, d * 24)).alias(R.user_rate(d))
        for d in R.USER_RATE_WINDOWS_D
    ]
    return sums.select(
        C.USER_ID,
        AS_OF,
        windowed(_IMP, 168).cast("long").alias(R.USER_IMPRESSIONS_7D),
        windowed(_REQ, 168).cast("long").alias(R.USER_REQUESTS_7D),
        *rates,
    )


def last_topics(
    requests: DataFrame,
    engagements: DataFrame,
    posts: DataFrame,
    k: int = 5,
    lookback_h: int = 30 * 24,
) -> DataFrame:
    """Per (user_id, as_of): the last k distinct topics of the user's positives with
    event_ts < as_of within lookback_h, most recent first (ties by topic id).

    Positives are first reduced to the latest time per (user, topic, hour), so the range join
    grows with topics x active hours, not with events.
    """
    ev = positives(engagements).join(posts.select(C.POST_ID, C.TOPIC), C.POST_ID)
    last = (
        ev.withColumn(BUCKET, F.date_trunc("hour", C.EVENT_TS))
        .groupBy(C.USER_ID, C.TOPIC, BUCKET)
        .agg(F.max(C.EVENT_TS).alias("_t"))
    )
    joined = range_join(requests.select(C.USER_ID, AS_OF).distinct(), last, [C.USER_ID], lookback_h)
    per_topic = joined.groupBy(C.USER_ID, AS_OF, C.TOPIC).agg(F.max("_t").alias("_t"))
    w = Window.partitionBy(C.USER_ID, AS_OF).orderBy(F.desc("_t"), C.TOPIC)
    top = per_topic.withColumn("_r", F.row_number().over(w)).where(F.col("_r") <= k)
    arr = F.sort_array(F.collect_list(F.struct("_r", C.TOPIC)))
    return top.groupBy(C.USER_ID, AS_OF).agg(
        F.transform(arr, lambda s: s[C.TOPIC]).alias(R.USER_LAST_TOPICS)
    )


def user_features(
    impressions_as_of: DataFrame,
    history_impressions: DataFrame,
    engagements: DataFrame,
    posts: DataFrame,
    users: DataFrame,
    k: int = 5,
) -> DataFrame:
    """Per (user_id, as_of): demographics, activity, own rates, last k topics (empty array if
    none)."""
    req = needed(impressions_as_of, [C.USER_ID])
    demo = latest_snapshot(users, [C.USER_ID]).select(C.USER_ID, *DEMOGRAPHICS)
    topics = last_topics(req, engagements, posts, k)
    empty = F.array().cast("array<int>")
    return (
        user_activity(req, history_impressions, engagements)
        .join(topics, [C.USER_ID, AS_OF], "left")
        .withColumn(R.USER_LAST_TOPICS, F.coalesce(R.USER_LAST_TOPICS, empty))
        .join(demo, C.USER_ID, "left")
    )
