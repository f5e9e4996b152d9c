"""Author features per (author_id, as_of) and per (author_id, topic, as_of)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.pagerank import pagerank
from features.pit import (
    AsofPart,
    asof_pass,
    follow_edges,
    hourly,
    latest_snapshot,
    needed,
    windowed,
)
from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_IMP = "_imp"


def positives(engagements: DataFrame) -> DataFrame:
    """The engagement rows whose action is positive (click, like, comment, share)."""
    return engagements.where(F.col(C.ACTION).isin(*R.POSITIVE_ACTIONS))


def ratio(num, den):
    """num / den, null when den is 0 (no impression yet: unknown, not zero)."""
    return F.when(den > 0, num / den)


_FOLLOW_SIDES = {R.AUTHOR_FOLLOWERS: C.FOLLOWEE_ID, R.AUTHOR_FOLLOWEES: C.FOLLOWER_ID}


def _early(cutoff):
    # a null created_at sorts first in a running sum, so it counts as before cutoff
    return F.coalesce(F.col(C.CREATED_AT) < cutoff, F.lit(True))


def follow_parts(edges: DataFrame, key: str, cutoff) -> list[AsofPart]:
    """follow_counts' share of a per-key as-of pass (features.pit.asof_pass): the follows
    created at or after cutoff, one value per side."""
    return [
        AsofPart(
            edges.where(~_early(cutoff)).select(F.col(col).alias(key), C.CREATED_AT),
            C.CREATED_AT,
            {f"_f_{name}": F.lit(1)},
        )
        for name, col in _FOLLOW_SIDES.items()
    ]


def follow_counts(
    requests: DataFrame, edges: DataFrame, key: str, cutoff, *, sums: DataFrame | None = None
) -> DataFrame:
    """Per (key, as_of): followers (follows of key) and followees (follows by key) created
    before as_of; key is the author id, which is also the user id of a person author.

    edges: follow_edges. cutoff (a timestamp Column or literal) must be <= every as_of: an
    edge created before it counts for every snapshot, so those are counted once per key and
    only the later ones go through the as-of running sum (a sort of the day's new edges, not
    of the whole graph). A null created_at sorts first there, so it counts as before cutoff.
    sums: a per-key as-of pass over requests holding follow_parts, if the caller shares one.
    """
    req = requests.select(F.col(key), AS_OF)
    if sums is None:
        sums = asof_pass(req, [key], follow_parts(edges, key, cutoff))
    out = sums.select(key, AS_OF, *[f"_f_{name}__0" for name in _FOLLOW_SIDES])
    for name, col in _FOLLOW_SIDES.items():
        ev = edges.where(_early(cutoff)).select(F.col(col).alias(key))
        before = ev.groupBy(key).agg(F.count("*").alias(f"_before_{name}"))
        out = out.join(before, key, "left")
    counts = [
        (
            F.coalesce(F.col(f"_before_{name}"), F.lit(0)) + F.col(f"_f_{name}__0").cast("long")
        ).alias(name)
        for name in _FOLLOW_SIDES
    ]
    out = out.select(key, AS_OF, *counts)
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


_RATE_LAGS = (0, *(d * 24 for d in R.AUTHOR_WINDOWS_D))


def rate_parts(tile: DataFrame, prefix: str = "") -> list[AsofPart]:
    """engagement_rates' share of an as-of pass (features.pit.asof_pass), its values named
    with prefix."""
    own = {prefix + R.T_IMPRESSIONS: R.T_IMPRESSIONS, prefix + R.T_POSITIVES: R.T_POSITIVES}
    return [AsofPart(tile, BUCKET, own, _RATE_LAGS)]


def engagement_rates(
    requests: DataFrame,
    tile: DataFrame,
    keys: list[str],
    name,
    *,
    sums: DataFrame | None = None,
    prefix: str = "",
) -> DataFrame:
    """Per (keys, as_of): positives / impressions of the keyed tile over each author window.
    sums: an as-of pass holding rate_parts(tile, prefix), if the caller shares one."""
    if sums is None:
        sums = asof_pass(requests, keys, rate_parts(tile, prefix))
    imp, pos = prefix + R.T_IMPRESSIONS, prefix + R.T_POSITIVES
    rates = [
        ratio(windowed(pos, d * 24), windowed(imp, d * 24)).alias(name(d))
        for d in R.AUTHOR_WINDOWS_D
    ]
    return sums.select(*keys, AS_OF, *rates)


_AUTHOR = "_au_"  # the author rates' values in a shared as-of pass


def author_parts(tile: DataFrame, edges: DataFrame, cutoff) -> list[AsofPart]:
    """The author family's share of a per-author as-of pass: engagement rates and follow
    counts (features.tiles adds the author's negative feedback to the same pass)."""
    return [*rate_parts(tile, _AUTHOR), *follow_parts(edges, C.AUTHOR_ID, cutoff)]


def author_features(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    follows: DataFrame,
    authors: DataFrame,
    pagerank_cutoff,
    pagerank_iterations: int,
    *,
    edges: DataFrame | None = None,
    sums: DataFrame | None = None,
) -> DataFrame:
    """Per (author_id, as_of): follow counts and ratio, verified, PageRank, engagement rates
    (tile: the author tile of author_tiles). sums: author_parts' as-of pass, if the caller
    shares one between families.

    PageRank runs once on the follow graph with created_at < pagerank_cutoff (a timestamp
    Column or literal); pass a time at or before the earliest as_of so that it cannot leak
    (the follow counts rely on that too). edges: follow_edges(follows), if the caller has it.
    """
    edges = follow_edges(follows) if edges is None else edges
    req = needed(impressions_as_of, [C.AUTHOR_ID])
    if sums is None:
        sums = asof_pass(req, [C.AUTHOR_ID], author_parts(tile, edges, pagerank_cutoff))
    out = follow_counts(req, edges, C.AUTHOR_ID, pagerank_cutoff, sums=sums)
    rates = engagement_rates(req, tile, [C.AUTHOR_ID], R.author_rate, sums=sums, prefix=_AUTHOR)
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
