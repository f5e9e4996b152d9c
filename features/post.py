"""Post interaction features per (post_id, as_of), and the same counts from the viewer's network
per (user_id, post_id, as_of). Windows and decay: features.windows."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.pit import follow_edges, hours_between, needed
from features.registry import AS_OF
from features.windows import fill_zero, kind_buckets, range_join, window_aggs
from warehouse.catalog import C

_KIND = "_kind"
_TS = "_ts"


def post_events(impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    """(post_id, kind, ts): engagements by event_ts, and served impressions by served_at."""
    eng = engagements.select(C.POST_ID, F.col(C.ACTION).alias(_KIND), F.col(C.EVENT_TS).alias(_TS))
    imp = impressions.select(
        C.POST_ID, F.lit(R.IMPRESSION).alias(_KIND), F.col(C.SERVED_AT).alias(_TS)
    )
    return eng.unionByName(imp)


def post_tile(impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    """Per (post_id, bucket): count and decay moments of each action and of impressions."""
    return kind_buckets(
        post_events(impressions, engagements), [C.POST_ID], _KIND, _TS, R.POST_KINDS, True
    )


def network_tile(engagements: DataFrame) -> DataFrame:
    """Per (post_id, engager_id, bucket): the counted actions of one engager on the post."""
    eng = engagements.withColumnRenamed(C.USER_ID, R.T_ENGAGER_ID)
    return kind_buckets(
        eng, [C.POST_ID, R.T_ENGAGER_ID], C.ACTION, C.EVENT_TS, R.COUNTED_ACTIONS, False
    )


def post_interactions(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    posts: DataFrame,
    prior_rate: float,
    prior_strength: float,
) -> DataFrame:
    """Per (post_id, as_of) needed by impressions_as_of: window counts and decayed totals of
    each action and of impressions, post age, and a smoothed engagement rate.

    tile: post_tile over every hour the windows read (the days before too).
    Positives count events, so a click and a like on one impression are two positives.
    """
    need = needed(impressions_as_of, [C.POST_ID])
    feats = window_aggs(
        range_join(need, tile, [C.POST_ID]),
        [C.POST_ID, AS_OF],
        R.POST_KINDS,
        R.post_count,
        R.post_decayed,
    )
    out = fill_zero(need, feats, [C.POST_ID])
    pos = sum(F.col(R.post_count(a, "7d")) for a in R.POSITIVE_ACTIONS)
    imp = F.col(R.post_count(R.IMPRESSION, "7d"))
    rate = (pos + prior_rate * prior_strength) / (imp + prior_strength)
    created = posts.select(C.POST_ID, C.CREATED_AT)
    return (
        out.join(created, C.POST_ID, "left")
        .withColumn(R.POST_SMOOTHED_RATE, rate)
        .withColumn(
            R.POST_AGE_H, F.greatest(F.lit(0.0), hours_between(F.col(AS_OF), F.col(C.CREATED_AT)))
        )
        .drop(C.CREATED_AT)
    )


def network_interactions(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    follows: DataFrame,
    *,
    edges: DataFrame | None = None,
    many_per_user: bool = False,
) -> DataFrame:
    """Per (user_id, post_id, as_of): actions on the post by the viewer's followees (follow
    created before as_of) with event_ts < as_of, in each window; tile: network_tile.
    edges: follow_edges(follows), if the caller has it.

    By default each request meets its post's engager-hours first and the follow edge
    second: a training day has a few requests per user. many_per_user (a feed generation:
    every active user x hundreds of candidates) turns the order round: the requested posts'
    engager-hours meet the requested users' follow edges first, the requests second, on
    (user, post). The first order made a row per candidate and engager-hour there (demo's
    1.75M candidates: 107M rows, for 76K followee actions); the second's cuts cost a tiny
    training day more stages than they save (README, Benchmarks). The same counts either way.
    """
    need = needed(impressions_as_of, [C.USER_ID, C.POST_ID])
    edges = (follow_edges(follows) if edges is None else edges).select(
        F.col(C.FOLLOWER_ID).alias(C.USER_ID),
        F.col(C.FOLLOWEE_ID).alias(R.T_ENGAGER_ID),
        F.col(C.CREATED_AT).alias("_followed_at"),
    )
    keys = [C.USER_ID, C.POST_ID]
    if many_per_user:
        posts = tile.join(need.select(C.POST_ID).distinct(), C.POST_ID, "left_semi")
        users = edges.join(need.select(C.USER_ID).distinct(), C.USER_ID, "left_semi")
        joined = range_join(need, posts.join(users, R.T_ENGAGER_ID), keys)
    else:
        joined = range_join(need, tile, [C.POST_ID]).join(edges, [C.USER_ID, R.T_ENGAGER_ID])
    joined = joined.where(F.col("_followed_at") < F.col(AS_OF))
    feats = window_aggs(joined, [*keys, AS_OF], R.COUNTED_ACTIONS, R.net_count)
    return fill_zero(need, feats, keys)
