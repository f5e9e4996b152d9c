"""Author features per (author_id, as_of) and per (author_id, topic, as_of)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.pagerank import pagerank
from features.pit import asof_sums, follow_edges, hourly, latest_snapshot, needed, windowed
from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_IMP, _ONE = "_imp", "_one"


def positives(engagements: DataFrame) -> DataFrame:
    """The engagement rows whose action is positive (click, like, comment, share)."""
    return engagements.where(F.col(C.ACTION).isin(*R.POSITIVE_ACTIONS))


def ratio(num, den):
    """num / den, null when den is 0 (no impression yet: unknown, not zero)."""
    return F.when(den > 0, num / den)


def follow_counts(requests: DataFrame, edges: DataFrame, key: str, cutoff) -> DataFrame:
    """Per (key, as_of): followers (follows of key) and followees (follows by key) created
    before as_of; key is the author id, which is also the user id of a person author.

    edges: follow_edges. cutoff (a timestamp Column or literal) must be <= every as_of: an
    edge created before it counts for every snapshot, so those are counted once per key and
    only the later ones go through the as-of running sum (a sort of the day's new edges, not
    of the whole graph). A null created_at sorts first there, so it counts as before cutoff.
    """
    req = requests.select(F.col(key), AS_OF)
    side = {R.AUTHOR_FOLLOWERS: C.FOLLOWEE_ID, R.AUTHOR_FOLLOWEES: C.FOLLOWER_ID}
    early = F.coalesce(F.col(C.CREATED_AT) < cutoff, F.lit(True))
    out = req.distinct()
    for name, col in side.items():
        ev = edges.select(F.col(col).alias(key), C.CREATED_AT, F.lit(1).alias(_ONE))
        before = ev.where(early).groupBy(key).agg(F.count("*").alias("_before"))
        recent = asof_sums(req, ev.where(~early), [key], C.CREATED_AT, [_ONE])
        n = F.coalesce(F.col("_before"), F.lit(0)) + F.col(f"{_ONE}__0").cast("long")
        got = recent.join(before, key, "left").select(key, AS_OF, n.alias(name))
        out = out.join(got, [key, AS_OF])
    ratio_col = F.col(R.AUTHOR_FOLLOWERS) / (F.col(R.AUTHOR_FOLLOWEES) + 1.0)
    return out.withColumn(R.AUTHOR_FOLLOW_RATIO, ratio_col)


def author_tiles(
    impressions: DataFrame, engagements: DataFrame, posts: DataFrame
) -> tuple[DataFrame, DataFrame]:
    """Per (author_id, bucket) and per (author_id, topic, bucket): impressions of the author's
    posts by served_at and positives on them by event_ts (author and topic from posts)."""
    meta = posts.select(C.POST_ID, C.AUTHOR_ID, C.TOPIC)
    imp = impressions.select(C.POST_ID, F.col(C.SERVED_AT).alias("_ts"), F.lit(1).alias(_IMP))
    pos = positives(engagements).select(
        C.POST_ID, F.col(C.EVENT_TS).alias("_ts"), F.lit(0).alias(_IMP)
    )
    ev = imp.unionByName(pos).join(meta, C.POST_ID)
    values = {R.T_IMPRESSIONS: F.col(_IMP), R.T_POSITIVES: 1 - F.col(_IMP)}
    return (
        hourly(ev, [C.AUTHOR_ID], "_ts", values),
        hourly(ev, [C.AUTHOR_ID, C.TOPIC], "_ts", values),
    )


def engagement_rates(requests: DataFrame, tile: DataFrame, keys: list[str], name) -> DataFrame:
    """Per (keys, as_of): positives / impressions of the keyed tile over each author window."""
    lags = [d * 24 for d in R.AUTHOR_WINDOWS_D]
    vals = [R.T_IMPRESSIONS, R.T_POSITIVES]
    sums = asof_sums(requests, tile, keys, BUCKET, vals, [0, *lags])
    rates = [
        ratio(windowed(R.T_POSITIVES, d * 24), windowed(R.T_IMPRESSIONS, d * 24)).alias(name(d))
        for d in R.AUTHOR_WINDOWS_D
    ]
    return sums.select(*keys, AS_OF, *rates)


def author_features(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    follows: DataFrame,
    authors: DataFrame,
    pagerank_cutoff,
    pagerank_iterations: int,
    *,
    edges: DataFrame | None = None,
) -> DataFrame:
    """Per (author_id, as_of): follow counts and ratio, verified, PageRank, engagement rates
    (tile: the author tile of author_tiles).

    PageRank runs once on the follow graph with created_at < pagerank_cutoff (a timestamp
    Column or literal); pass a time at or before the earliest as_of so that it cannot leak
    (the follow counts rely on that too). edges: follow_edges(follows), if the caller has it.
    """
    edges = follow_edges(follows) if edges is None else edges
    req = needed(impressions_as_of, [C.AUTHOR_ID])
    out = follow_counts(req, edges, C.AUTHOR_ID, pagerank_cutoff)
    rates = engagement_rates(req, tile, [C.AUTHOR_ID], R.author_rate)
    known = edges.where(F.col(C.CREATED_AT) < pagerank_cutoff)
    pr = pagerank(known, C.FOLLOWER_ID, C.FOLLOWEE_ID, pagerank_iterations).select(
        F.col("node").alias(C.AUTHOR_ID), F.col("pagerank").alias(R.AUTHOR_PAGERANK)
    )
    verified = latest_snapshot(authors, [C.AUTHOR_ID]).select(
        C.AUTHOR_ID, F.col(C.VERIFIED).alias(R.AUTHOR_VERIFIED)
    )
    return (
        out.join(rates, [C.AUTHOR_ID, AS_OF], "left")
        .join(pr, C.AUTHOR_ID, "left")
        .join(F.broadcast(verified), C.AUTHOR_ID, "left")
    )


def author_topic_features(
    impressions_as_of: DataFrame, tile: DataFrame, posts: DataFrame
) -> DataFrame:
    """Per (author_id, topic, as_of): the author's engagement rate on posts of that topic
    (tile: the author-topic tile of author_tiles)."""
    topics = posts.select(C.POST_ID, C.TOPIC)
    req = needed(impressions_as_of.join(topics, C.POST_ID), [C.AUTHOR_ID, C.TOPIC])
    return engagement_rates(req, tile, [C.AUTHOR_ID, C.TOPIC], R.author_topic_rate)
