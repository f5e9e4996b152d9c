"""The viewer's recent engagement history per (user_id, as_of), for attention over it (DIN):
the last engaged posts' topics, authors and media types as three aligned lists."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives
from features.pit import bucket_col, needed
from features.registry import AS_OF, BUCKET
from features.windows import range_join
from warehouse.catalog import C

# list column -> the post attribute it lists, with the list's element type
_LISTS = {
    R.USER_HIST_TOPICS: (C.TOPIC, "int"),
    R.USER_HIST_AUTHORS: (C.AUTHOR_ID, "bigint"),
    R.USER_HIST_MEDIA: (C.MEDIA_TYPE, "string"),
}


def history_tile(engagements: DataFrame) -> DataFrame:
    """Per (user_id, post_id, bucket): the latest event_ts of the user's positives on the
    post in the hour. Post attributes are read with the features (they are static)."""
    return (
        positives(engagements)
        .withColumn(BUCKET, bucket_col(C.EVENT_TS))
        .groupBy(C.USER_ID, C.POST_ID, BUCKET)
        .agg(F.max(C.EVENT_TS).alias(R.T_LAST_EVENT_TS))
    )


def last_engaged(requests: DataFrame, tile: DataFrame, n: int) -> DataFrame:
    """(user_id, as_of, post_id, _r): the user's n posts with the latest positive before
    as_of, within R.USER_HIST_D, _r = 1 for the newest; a post once, at its latest positive;
    ties by post_id. The range join grows with engaged posts x active hours, not events."""
    last = tile.select(C.USER_ID, C.POST_ID, BUCKET, F.col(R.T_LAST_EVENT_TS).alias("_t"))
    joined = range_join(requests, last, [C.USER_ID], R.USER_HIST_D * 24)
    per_post = joined.groupBy(C.USER_ID, AS_OF, C.POST_ID).agg(F.max("_t").alias("_t"))
    w = Window.partitionBy(C.USER_ID, AS_OF).orderBy(F.desc("_t"), C.POST_ID)
    ranked = per_post.withColumn("_r", F.row_number().over(w))
    return ranked.where(F.col("_r") <= n).drop("_t")


def history_features(
    impressions_as_of: DataFrame, tile: DataFrame, posts: DataFrame, n: int
) -> DataFrame:
    """Per (user_id, as_of): user_hist_topics, user_hist_authors, user_hist_media of the last
    n engaged posts (last_engaged), newest first, aligned; empty arrays when there is none.

    tile: history_tile. posts: the posts the history references (a post missing there keeps
    its slot, with null attributes, so the lists stay aligned and in order).
    """
    req = needed(impressions_as_of, [C.USER_ID])
    attrs = [a for a, _ in _LISTS.values()]
    top = last_engaged(req, tile, n).join(posts.select(C.POST_ID, *attrs), C.POST_ID, "left")
    arr = F.sort_array(F.collect_list(F.struct("_r", *attrs)))
    lists = top.groupBy(C.USER_ID, AS_OF).agg(arr.alias("_h"))
    out = req.join(lists, [C.USER_ID, AS_OF], "left")
    cols = [
        F.coalesce(F.transform("_h", _field(a)), F.array()).cast(f"array<{t}>").alias(name)
        for name, (a, t) in _LISTS.items()
    ]
    return out.select(C.USER_ID, AS_OF, *cols)


def _field(name: str):
    """x -> x[name] for F.transform (a lambda with a second argument would get the index)."""
    return lambda s: s[name]
