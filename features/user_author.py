"""Viewer-author features per (user_id, author_id, as_of)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives, ratio
from features.pit import asof_sums, follow_edges, hourly, needed, windowed
from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_IMP, _ONE = "_imp", "_one"
_LAGS = [d * 24 for d in R.USER_AUTHOR_WINDOWS_D]


def user_author_tile(impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    """Per (user_id, author_id, bucket): impressions (by served_at) and positives (by event_ts).
    Positives get author_id from their impression, so no post table is needed."""
    imp_author = impressions.select(C.IMPRESSION_ID, C.AUTHOR_ID)
    pos = positives(engagements).select(C.IMPRESSION_ID, C.USER_ID, C.EVENT_TS)
    pos = pos.join(imp_author, C.IMPRESSION_ID).select(
        C.USER_ID, C.AUTHOR_ID, F.col(C.EVENT_TS).alias("_ts"), F.lit(0).alias(_IMP)
    )
    imp = impressions.select(
        C.USER_ID, C.AUTHOR_ID, F.col(C.SERVED_AT).alias("_ts"), F.lit(1).alias(_IMP)
    )
    values = {R.T_IMPRESSIONS: F.col(_IMP), R.T_POSITIVES: 1 - F.col(_IMP)}
    return hourly(imp.unionByName(pos), [C.USER_ID, C.AUTHOR_ID], "_ts", values)


def _shares(sums: DataFrame):
    return {
        d: ratio(windowed(R.T_POSITIVES, d * 24), windowed(R.T_IMPRESSIONS, d * 24))
        for d in R.USER_AUTHOR_WINDOWS_D
    }


def interaction_shares(req: DataFrame, tile: DataFrame):
    """Per (user, author, as_of): the user's positives / impressions on the author's posts in
    90d and 365d, and that share over the user's overall share in the same window (the tile
    summed over authors)."""
    pair = [C.USER_ID, C.AUTHOR_ID]
    vals = [R.T_IMPRESSIONS, R.T_POSITIVES]
    sums = asof_sums(req, tile, pair, BUCKET, vals, [0, *_LAGS])
    per_user = tile.groupBy(C.USER_ID, BUCKET).agg(*[F.sum(v).alias(v) for v in vals])
    user = asof_sums(req.select(C.USER_ID, AS_OF), per_user, [C.USER_ID], BUCKET, vals, [0, *_LAGS])
    user = user.select(C.USER_ID, AS_OF, *[s.alias(f"_u{d}") for d, s in _shares(user).items()])
    cols = []
    for d, share in _shares(sums).items():
        cols += [share.alias(R.ua_share(d)), ratio(share, F.col(f"_u{d}")).alias(R.ua_norm(d))]
    return sums.join(user, [C.USER_ID, AS_OF]).select(*pair, AS_OF, *cols)


def follow_flags(req: DataFrame, edges: DataFrame) -> DataFrame:
    """Per (user, author, as_of): the user follows the author, and as a close friend, by a
    follow created before as_of (edges: follow_edges)."""
    edges = edges.select(
        F.col(C.FOLLOWER_ID).alias(C.USER_ID),
        F.col(C.FOLLOWEE_ID).alias(C.AUTHOR_ID),
        F.col(C.CREATED_AT).alias("_at"),
        C.IS_CLOSE_FRIEND,
    )
    j = req.join(edges, [C.USER_ID, C.AUTHOR_ID], "left")
    on = F.coalesce(F.col("_at") < F.col(AS_OF), F.lit(False))
    return j.select(
        C.USER_ID,
        C.AUTHOR_ID,
        AS_OF,
        on.alias(R.UA_FOLLOWS),
        (on & F.coalesce(C.IS_CLOSE_FRIEND, F.lit(False))).alias(R.UA_CLOSE_FRIEND),
    )


def common_followees(req: DataFrame, edges: DataFrame) -> DataFrame:
    """Per (user, author, as_of): how many of the user's followees follow the author, both
    follows created before as_of.

    Paths user -> m -> author are found once per (user, author) pair, dated by their later
    follow, and counted as of each as_of by a running sum: no join fans out by as_of.
    edges: follow_edges.
    """
    first = edges.select(
        F.col(C.FOLLOWER_ID).alias(C.USER_ID),
        F.col(C.FOLLOWEE_ID).alias("_m"),
        F.col(C.CREATED_AT).alias("_t1"),
    )
    second = edges.select(
        F.col(C.FOLLOWER_ID).alias("_m"),
        F.col(C.FOLLOWEE_ID).alias(C.AUTHOR_ID),
        F.col(C.CREATED_AT).alias("_t2"),
    )
    pairs = req.select(C.USER_ID, C.AUTHOR_ID).distinct()
    paths = pairs.join(first, C.USER_ID).join(second, ["_m", C.AUTHOR_ID])
    ev = paths.select(
        C.USER_ID, C.AUTHOR_ID, F.greatest("_t1", "_t2").alias("_ts"), F.lit(1).alias(_ONE)
    )
    got = asof_sums(req, ev, [C.USER_ID, C.AUTHOR_ID], "_ts", [_ONE])
    return got.select(
        C.USER_ID, C.AUTHOR_ID, AS_OF, F.col(f"{_ONE}__0").cast("long").alias(R.UA_COMMON_FOLLOWEES)
    )


def user_author_features(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    follows: DataFrame,
    *,
    edges: DataFrame | None = None,
) -> DataFrame:
    """All viewer-author features per (user_id, author_id, as_of); tile: user_author_tile;
    edges: follow_edges(follows), if the caller has it."""
    edges = follow_edges(follows) if edges is None else edges
    keys = [C.USER_ID, C.AUTHOR_ID, AS_OF]
    req = needed(impressions_as_of, [C.USER_ID, C.AUTHOR_ID])
    return (
        interaction_shares(req, tile)
        .join(follow_flags(req, edges), keys)
        .join(common_followees(req, edges), keys)
    )
