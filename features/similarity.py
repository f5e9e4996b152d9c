"""Viewer-post similarity per (user_id, post_id, as_of): hashtag TF-IDF cosine and topic share.

TF-IDF is hand-built with DataFrame ops. The viewer's document is the multiset of hashtags on
posts they engaged with positively before as_of (tf = count); the post's is its distinct
hashtags (tf = 1). idf(tag) = ln((N + 1) / (df + 1)) over the posts created before a cutoff
(Spark ML's formula); a tag unseen there gets ln(N + 1).

The viewer's vector norm as of any time is kept as a running sum: when a tag's count goes
from c to c + n, |u|^2 grows by ((c + n)^2 - c^2) idf^2. So the cosine needs as-of lookups of
the post's few tags and of one norm, never the viewer's whole vector per as_of.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives, ratio
from features.pit import asof_sums, hourly, needed
from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_TAG, _N, _IDF2 = "_tag", "_n", "_idf2"


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


def hashtag_tfidf(req: DataFrame, engagements: DataFrame, posts: DataFrame, cutoff) -> DataFrame:
    """Per (user_id, post_id, as_of): cosine of the TF-IDF vectors; 0 when either is empty."""
    idf2, unseen = idf_squared(posts, cutoff)
    post_tags = posts.select(C.POST_ID, F.explode(F.array_distinct(C.HASHTAGS)).alias(_TAG))
    post_tags = _with_idf2(post_tags, idf2, unseen)
    post_norm2 = post_tags.groupBy(C.POST_ID).agg(F.sum(_IDF2).alias("_p2"))
    ev = (
        positives(engagements)
        .select(C.USER_ID, C.POST_ID, C.EVENT_TS)
        .join(post_tags.select(C.POST_ID, _TAG, _IDF2), C.POST_ID)
    )
    counts = hourly(ev, [C.USER_ID, _TAG, _IDF2], C.EVENT_TS, {_N: F.lit(1)})
    w = Window.partitionBy(C.USER_ID, _TAG).orderBy(BUCKET)
    after = F.sum(_N).over(w)  # the tag's count after this bucket (buckets are unique)
    norm_inc = counts.withColumn("_c", after).select(
        C.USER_ID,
        BUCKET,
        ((F.col("_c") ** 2 - (F.col("_c") - F.col(_N)) ** 2) * F.col(_IDF2)).alias("_inc"),
    )
    u2 = asof_sums(req.select(C.USER_ID, AS_OF), norm_inc, [C.USER_ID], BUCKET, ["_inc"])
    # dot = sum over the post's tags of count_as_of(user, tag) * idf^2
    req_tags = req.join(post_tags, C.POST_ID)
    c_at = asof_sums(
        req_tags.select(C.USER_ID, _TAG, AS_OF), counts, [C.USER_ID, _TAG], BUCKET, [_N]
    )
    dot = (
        req_tags.join(c_at, [C.USER_ID, _TAG, AS_OF])
        .groupBy(C.USER_ID, C.POST_ID, AS_OF)
        .agg(F.sum(F.col(f"{_N}__0") * F.col(_IDF2)).alias("_dot"))
    )
    cos = F.col("_dot") / F.sqrt(F.col("_inc__0") * F.col("_p2"))
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


def topic_share(req: DataFrame, engagements: DataFrame, posts: DataFrame) -> DataFrame:
    """Per (user_id, post_id, as_of): the share of the user's positives before as_of that fell on
    the post's topic (the topic-profile dot the post's one-hot); null before any positive."""
    topics = posts.select(C.POST_ID, C.TOPIC)
    ev = positives(engagements).join(topics, C.POST_ID)
    by_topic = hourly(ev, [C.USER_ID, C.TOPIC], C.EVENT_TS, {_N: F.lit(1)})
    total = hourly(ev, [C.USER_ID], C.EVENT_TS, {_N: F.lit(1)})
    req_t = req.join(topics, C.POST_ID)
    on_topic = asof_sums(req_t, by_topic, [C.USER_ID, C.TOPIC], BUCKET, [_N])
    overall = asof_sums(req, total, [C.USER_ID], BUCKET, [_N]).withColumnRenamed(f"{_N}__0", "_all")
    return (
        req_t.join(on_topic, [C.USER_ID, C.TOPIC, AS_OF], "left")
        .join(overall, [C.USER_ID, AS_OF], "left")
        .select(
            C.USER_ID,
            C.POST_ID,
            AS_OF,
            ratio(F.col(f"{_N}__0"), F.col("_all")).alias(R.SIM_TOPIC_SHARE),
        )
    )


def similarity_features(
    impressions_as_of: DataFrame, engagements: DataFrame, posts: DataFrame, idf_cutoff
) -> DataFrame:
    """Both similarities per (user_id, post_id, as_of)."""
    keys = [C.USER_ID, C.POST_ID, AS_OF]
    req = needed(impressions_as_of, [C.USER_ID, C.POST_ID])
    return hashtag_tfidf(req, engagements, posts, idf_cutoff).join(
        topic_share(req, engagements, posts), keys
    )
