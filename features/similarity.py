"""Viewer-post similarity per (user_id, post_id, as_of): hashtag TF-IDF cosine and topic share.

TF-IDF is hand-built with DataFrame ops. The viewer's document is the multiset of hashtags on
posts they engaged with positively in the HISTORY_BOUND_D days before as_of (tf = count); the
post's is its distinct hashtags (tf = 1). idf(tag) = ln((N + 1) / (df + 1)) over the posts
created before a cutoff (Spark ML's formula); a tag unseen there gets ln(N + 1). Topic share
reads the same bounded window.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives, ratio
from features.pit import AsofPart, asof_pass, asof_sums, hourly, needed, windowed
from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_TAG, _N, _IDF2 = "_tag", "_n", "_idf2"
_BOUND_H = R.HISTORY_BOUND_D * 24


def idf_squared(posts: DataFrame, cutoff) -> tuple[DataFrame, DataFrame]:
    """(tag, idf^2) over posts created before cutoff, and a one-row frame of ln(N+1)^2 for
    tags outside that corpus."""
    corpus = posts.where(F.col(C.CREATED_AT) < cutoff)
    n = corpus.agg(F.count("*").cast("double").alias("_N"))
    tags = corpus.select(C.POST_ID, F.explode(F.array_distinct(C.HASHTAGS)).alias(_TAG))
    df = tags.groupBy(_TAG).agg(F.count("*").alias("_df"))
    idf = F.log((F.col("_N") + 1.0) / (F.col("_df") + 1.0))
    unseen = n.select(F.pow(F.log(F.col("_N") + 1.0), 2).alias("_unseen2"))
    return df.crossJoin(n).select(_TAG, F.pow(idf, 2).alias(_IDF2)), unseen


def _with_idf2(df: DataFrame, idf2: DataFrame, unseen: DataFrame) -> DataFrame:
    return (
        df.join(idf2, _TAG, "left")
        .crossJoin(unseen)
        .withColumn(_IDF2, F.coalesce(_IDF2, "_unseen2"))
        .drop("_unseen2")
    )


def _post_tags(posts: DataFrame) -> DataFrame:
    return posts.select(C.POST_ID, F.explode(F.array_distinct(C.HASHTAGS)).alias(_TAG))


def user_hashtag_tile(engagements: DataFrame, posts: DataFrame) -> DataFrame:
    """Per (user_id, hashtag, bucket): the user's positives on posts carrying the hashtag."""
    ev = positives(engagements).select(C.USER_ID, C.POST_ID, C.EVENT_TS)
    ev = ev.join(_post_tags(posts), C.POST_ID).withColumnRenamed(_TAG, R.T_HASHTAG)
    return hourly(ev, [C.USER_ID, R.T_HASHTAG], C.EVENT_TS, {R.T_TAG_COUNT: F.lit(1)})


def hashtag_tfidf(req: DataFrame, tile: DataFrame, posts: DataFrame, cutoff) -> DataFrame:
    """Per (user_id, post_id, as_of): cosine of the TF-IDF vectors; 0 when either is empty.

    tile: user_hashtag_tile. The viewer's tag counts in the window are as-of lookups of every
    tag the viewer has in the tile, so the cost grows with snapshots x the viewer's tags.
    """
    idf2, unseen = idf_squared(posts, cutoff)
    post_tags = _with_idf2(_post_tags(posts), idf2, unseen)
    post_norm2 = post_tags.groupBy(C.POST_ID).agg(F.sum(_IDF2).alias("_p2"))
    counts = tile.select(C.USER_ID, F.col(R.T_HASHTAG).alias(_TAG), BUCKET, R.T_TAG_COUNT)
    user_tags = (
        req.select(C.USER_ID, AS_OF)
        .distinct()
        .join(counts.select(C.USER_ID, _TAG).distinct(), C.USER_ID)
    )
    c_at = asof_sums(user_tags, counts, [C.USER_ID, _TAG], BUCKET, [R.T_TAG_COUNT], [0, _BOUND_H])
    c_at = c_at.select(C.USER_ID, _TAG, AS_OF, windowed(R.T_TAG_COUNT, _BOUND_H).alias(_N))
    c_at = _with_idf2(c_at.where(F.col(_N) > 0), idf2, unseen)
    u2 = c_at.groupBy(C.USER_ID, AS_OF).agg(F.sum(F.col(_N) ** 2 * F.col(_IDF2)).alias("_u2"))
    # dot = sum over the post's tags of count_as_of(user, tag) * idf^2
    dot = (
        req.join(post_tags.select(C.POST_ID, _TAG), C.POST_ID)
        .join(c_at, [C.USER_ID, _TAG, AS_OF])
        .groupBy(C.USER_ID, C.POST_ID, AS_OF)
        .agg(F.sum(F.col(_N) * F.col(_IDF2)).alias("_dot"))
    )
    cos = F.col("_dot") / F.sqrt(F.col("_u2") * F.col("_p2"))
    return (
        req.join(dot, [C.USER_ID, C.POST_ID, AS_OF], "left")
        .join(u2, [C.USER_ID, AS_OF], "left")
        .join(post_norm2, C.POST_ID, "left")
        .select(
            C.USER_ID,
            C.POST_ID,
            AS_OF,
            F.coalesce(F.when(F.col("_dot") > 0, cos), F.lit(0.0)).alias(R.SIM_HASHTAG_TFIDF),
        )
    )


_ALL = "_sim_all_pos"  # the viewer's positives on every topic, in a per-user as-of pass


def topic_user_parts(tile: DataFrame) -> list[AsofPart]:
    """topic_share's share of a per-user as-of pass (features.pit.asof_pass): the topic
    tile's rows of every topic (a running sum needs no per-user-hour total first)."""
    return [AsofPart(tile, BUCKET, {_ALL: R.T_POSITIVES}, (0, _BOUND_H))]


def topic_share(
    req: DataFrame, tile: DataFrame, posts: DataFrame, *, user_sums: DataFrame | None = None
) -> DataFrame:
    """Per (user_id, post_id, as_of): the share of the user's positives in the bounded window
    before as_of that fell on the post's topic (the topic-profile dot the post's one-hot); null
    before any positive. tile: user_topic_tile. user_sums: a per-user as-of pass holding
    topic_user_parts, if the caller shares one."""
    topics = posts.select(C.POST_ID, C.TOPIC)
    pos = R.T_POSITIVES
    req_t = req.join(topics, C.POST_ID)
    lags = [0, _BOUND_H]
    on_topic = asof_sums(req_t, tile, [C.USER_ID, C.TOPIC], BUCKET, [pos], lags)
    if user_sums is None:
        user_sums = asof_pass(req, [C.USER_ID], topic_user_parts(tile))
    overall = user_sums.select(C.USER_ID, AS_OF, windowed(_ALL, _BOUND_H).alias("_all"))
    return (
        req_t.join(on_topic, [C.USER_ID, C.TOPIC, AS_OF], "left")
        .join(overall, [C.USER_ID, AS_OF], "left")
        .select(
            C.USER_ID,
            C.POST_ID,
            AS_OF,
            ratio(windowed(pos, _BOUND_H), F.col("_all")).alias(R.SIM_TOPIC_SHARE),
        )
    )


def similarity_features(
    impressions_as_of: DataFrame,
    hashtag_tile: DataFrame,
    topic_tile: DataFrame,
    posts: DataFrame,
    idf_cutoff,
    *,
    user_sums: DataFrame | None = None,
) -> DataFrame:
    """Both similarities per (user_id, post_id, as_of); tiles: user_hashtag_tile and
    features.user.user_topic_tile; user_sums: topic_share's."""
    keys = [C.USER_ID, C.POST_ID, AS_OF]
    req = needed(impressions_as_of, [C.USER_ID, C.POST_ID])
    return hashtag_tfidf(req, hashtag_tile, posts, idf_cutoff).join(
        topic_share(req, topic_tile, posts, user_sums=user_sums), keys
    )
