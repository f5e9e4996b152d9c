"""Context features per impression: time of day, weekday, device, time since the last visit."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features import registry as R
from features.pit import hours_between
from warehouse.catalog import C


def context_features(impressions: DataFrame, request_tile: DataFrame) -> DataFrame:
    """Per impression_id: hour of day and weekday of served_at (session time zone, UTC), the
    device, and hours since the user's previous request (null when there is none in the
    REQUEST_GAP_BOUND_D days before).

    The previous request is strictly earlier than this one, so it is known when serving; it
    may fall between as_of and served_at, which is fine: it is not an outcome of this item.
    request_tile: request_times (merged over days) of the target requests and the days before.
    """
    w = Window.partitionBy(C.USER_ID).orderBy(C.SERVED_AT, C.REQUEST_ID)
    prev = request_tile.withColumn("_prev", F.lag(C.SERVED_AT).over(w))
    gap = hours_between(F.col(C.SERVED_AT), F.col("_prev"))
    since = prev.select(
        C.USER_ID,
        C.REQUEST_ID,
        F.when(gap <= R.REQUEST_GAP_BOUND_D * 24, gap).alias(R.CTX_HOURS_SINCE_PREV_REQUEST),
    )
    return impressions.join(since, [C.USER_ID, C.REQUEST_ID], "left").select(
        C.IMPRESSION_ID,
        F.hour(C.SERVED_AT).alias(R.CTX_HOUR),
        F.dayofweek(C.SERVED_AT).alias(R.CTX_DOW),
        C.DEVICE,
        R.CTX_HOURS_SINCE_PREV_REQUEST,
    )
