"""Viewer features per (user_id, as_of): demographics, activity, own rate, last topics."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives, ratio
from features.pit import (
    AsofPart,
    asof_pass,
    bucket_col,
    hourly,
    latest_snapshot,
    needed,
    windowed,
)
from features.registry import AS_OF, BUCKET
from features.windows import range_join
from warehouse.catalog import C

_IMP, _REQ = "_imp", "_req"
DEMOGRAPHICS = (C.COUNTRY, C.AGE_BUCKET, C.GENDER, C.PRIMARY_DEVICE)


def request_times(impressions: DataFrame) -> DataFrame:
    """(user_id, request_id, served_at): a request happens at its first served item."""
    return impressions.groupBy(C.USER_ID, C.REQUEST_ID).agg(F.min(C.SERVED_AT).alias(C.SERVED_AT))


def user_tile(impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    """Per (user_id, bucket): impressions served to the user and the user's positives."""
    imp = impressions.select(C.USER_ID, F.col(C.SERVED_AT).alias("_ts"), F.lit(1).alias(_IMP))
    pos = positives(engagements).select(
        C.USER_ID, F.col(C.EVENT_TS).alias("_ts"), F.lit(0).alias(_IMP)
    )
    values = {R.T_IMPRESSIONS: F.col(_IMP), R.T_POSITIVES: 1 - F.col(_IMP)}
    return hourly(imp.unionByName(pos), [C.USER_ID], "_ts", values)


def user_topic_tile(engagements: DataFrame, posts: DataFrame) -> DataFrame:
    """Per (user_id, topic, bucket): the user's positives on posts of the topic, and the latest
    one's event_ts (for the last-topics order)."""
    ev = positives(engagements).join(posts.select(C.POST_ID, C.TOPIC), C.POST_ID)
    return (
        ev.withColumn(BUCKET, bucket_col(C.EVENT_TS))
        .groupBy(C.USER_ID, C.TOPIC, BUCKET)
        .agg(
            F.count("*").alias(R.T_POSITIVES),
            F.max(C.EVENT_TS).alias(R.T_LAST_EVENT_TS),
        )
    )


_ACT_IMP, _ACT_REQ, _ACT_POS = "_act_imp", "_act_req", "_act_pos"
_ACT_LAGS = (0, *sorted({7 * 24, *(d * 24 for d in R.USER_RATE_WINDOWS_D)}))


def activity_parts(tile: DataFrame, request_tile: DataFrame) -> list[AsofPart]:
    """user_activity's share of a per-user as-of pass (features.pit.asof_pass)."""
    reqs = hourly(request_tile, [C.USER_ID], C.SERVED_AT, {_REQ: F.lit(1)})
    own = {_ACT_IMP: R.T_IMPRESSIONS, _ACT_POS: R.T_POSITIVES}
    return [
        AsofPart(tile, BUCKET, own, _ACT_LAGS),
        AsofPart(reqs, BUCKET, {_ACT_REQ: _REQ}, _ACT_LAGS),
    ]


def activity_from_sums(sums: DataFrame) -> DataFrame:
    """user_activity's columns from an as-of pass that holds activity_parts."""
    rates = [
        ratio(windowed(_ACT_POS, d * 24), windowed(_ACT_IMP, d * 24)).alias(R.user_rate(d))
        for d in R.USER_RATE_WINDOWS_D
    ]
    return sums.select(
        C.USER_ID,
        AS_OF,
        windowed(_ACT_IMP, 168).cast("long").alias(R.USER_IMPRESSIONS_7D),
        windowed(_ACT_REQ, 168).cast("long").alias(R.USER_REQUESTS_7D),
        *rates,
    )


def user_activity(
    requests: DataFrame,
    tile: DataFrame,
    request_tile: DataFrame,
    *,
    sums: DataFrame | None = None,
) -> DataFrame:
    """Per (user_id, as_of): impressions and requests in the 7d before as_of, and the user's
    positives / impressions over 7d and 30d (null before the first impression).

    tile: user_tile; request_tile: request_times, one row per request (merged over days).
    sums: a per-user as_of pass over `requests` that holds activity_parts, if the caller
    shares one between families."""
    if sums is None:
        sums = asof_pass(requests, [C.USER_ID], activity_parts(tile, request_tile))
    return activity_from_sums(sums)


def last_topics(
    requests: DataFrame, tile: DataFrame, k: int, lookback_h: int = R.LAST_TOPICS_D * 24
) -> DataFrame:
    """Per (user_id, as_of): the last k distinct topics of the user's positives with
    event_ts < as_of within lookback_h, most recent first (ties by topic id).

    tile (user_topic_tile) holds the latest time per (user, topic, hour), so the range join
    grows with topics x active hours, not with events.
    """
    last = tile.select(C.USER_ID, C.TOPIC, BUCKET, F.col(R.T_LAST_EVENT_TS).alias("_t"))
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
    tile: DataFrame,
    request_tile: DataFrame,
    topic_tile: DataFrame,
    users: DataFrame,
    k: int,
    *,
    sums: DataFrame | None = None,
) -> DataFrame:
    """Per (user_id, as_of): demographics, activity, own rates, last k topics (empty array if
    none). Tiles: user_tile, request_times (merged), user_topic_tile. sums: user_activity's."""
    req = needed(impressions_as_of, [C.USER_ID])
    demo = latest_snapshot(users, [C.USER_ID]).select(C.USER_ID, *DEMOGRAPHICS)
    topics = last_topics(req, topic_tile, k)
    empty = F.array().cast("array<int>")
    return (
        user_activity(req, tile, request_tile, sums=sums)
        .join(topics, [C.USER_ID, AS_OF], "left")
        .withColumn(R.USER_LAST_TOPICS, F.coalesce(R.USER_LAST_TOPICS, empty))
        .join(demo, C.USER_ID, "left")
    )
