"""Viewer-author features per (user_id, author_id, as_of)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.author import positives, ratio
from features.pit import AsofPart, asof_pass, follow_edges, hourly, needed, windowed
from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_IMP = "_imp"
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


_PAIR_IMP, _PAIR_POS = "_ua_imp", "_ua_pos"  # the pair's values in an as-of pass
_USER_IMP, _USER_POS = "_uu_imp", "_uu_pos"  # the viewer's, over every author
_COMMON = "_ua_common"


def _shares(imp: str, pos: str):
    return {d: ratio(windowed(pos, d * 24), windowed(imp, d * 24)) for d in R.USER_AUTHOR_WINDOWS_D}


def share_user_parts(tile: DataFrame) -> list[AsofPart]:
    """interaction_shares' share of a per-user as-of pass (features.pit.asof_pass): the
    tile's rows of every author (a running sum needs no per-user-hour total first)."""
    own = {_USER_IMP: R.T_IMPRESSIONS, _USER_POS: R.T_POSITIVES}
    return [AsofPart(tile, BUCKET, own, (0, *_LAGS))]


def user_author_parts(
    req: DataFrame, tile: DataFrame, edges: DataFrame, *, many_per_user: bool = False
) -> list[AsofPart]:
    """The per-(user, author) as-of pass of this family: the pair's shares and the common
    followees (many_per_user: common_followee_part)."""
    own = {_PAIR_IMP: R.T_IMPRESSIONS, _PAIR_POS: R.T_POSITIVES}
    paths = common_followee_part(req, edges, many_per_user=many_per_user)
    return [AsofPart(tile, BUCKET, own, (0, *_LAGS)), paths]


def interaction_shares(
    req: DataFrame,
    tile: DataFrame,
    *,
    sums: DataFrame | None = None,
    user_sums: DataFrame | None = None,
):
    """Per (user, author, as_of): the user's positives / impressions on the author's posts in
    90d and 365d, and that share over the user's overall share in the same window (the tile
    summed over authors). sums: the pair pass (user_author_parts), user_sums: a per-user
    pass holding share_user_parts, if the caller shares them."""
    pair = [C.USER_ID, C.AUTHOR_ID]
    if sums is None:
        own = {_PAIR_IMP: R.T_IMPRESSIONS, _PAIR_POS: R.T_POSITIVES}
        sums = asof_pass(req, pair, [AsofPart(tile, BUCKET, own, (0, *_LAGS))])
    if user_sums is None:
        user_sums = asof_pass(req.select(C.USER_ID, AS_OF), [C.USER_ID], share_user_parts(tile))
    user = user_sums.select(
        C.USER_ID, AS_OF, *[s.alias(f"_u{d}") for d, s in _shares(_USER_IMP, _USER_POS).items()]
    )
    cols = []
    for d, share in _shares(_PAIR_IMP, _PAIR_POS).items():
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


def common_followee_part(
    req: DataFrame, edges: DataFrame, *, many_per_user: bool = False
) -> AsofPart:
    """Paths user -> m -> author of the requested pairs, dated by their later follow
    (common_followees).

    By default each requested pair walks the user's followees, then their follows: a
    training day has a few authors per user. many_per_user (a feed generation: hundreds of
    authors per user) cuts the two hops to the requested users' follows and the requested
    authors' followers, meets them at m, and keeps the requested pairs: walking the
    followees once per pair made 128M rows there for 444K paths (demo's 1.18M candidate
    pairs); the cuts cost a tiny training day more stages than they save (README,
    Benchmarks). The same paths either way."""
    pairs = req.select(C.USER_ID, C.AUTHOR_ID).distinct()
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
    if many_per_user:
        first = first.join(pairs.select(C.USER_ID).distinct(), C.USER_ID, "left_semi")
        second = second.join(pairs.select(C.AUTHOR_ID).distinct(), C.AUTHOR_ID, "left_semi")
        paths = first.join(second, "_m").join(pairs, [C.USER_ID, C.AUTHOR_ID])
    else:
        paths = pairs.join(first, C.USER_ID).join(second, ["_m", C.AUTHOR_ID])
    ev = paths.select(C.USER_ID, C.AUTHOR_ID, F.greatest("_t1", "_t2").alias("_ts"))
    return AsofPart(ev, "_ts", {_COMMON: F.lit(1)})


def common_followees(
    req: DataFrame,
    edges: DataFrame,
    *,
    sums: DataFrame | None = None,
    many_per_user: bool = False,
) -> DataFrame:
    """Per (user, author, as_of): how many of the user's followees follow the author, both
    follows created before as_of.

    Paths user -> m -> author are found once per (user, author) pair, dated by their later
    follow, and counted as of each as_of by a running sum: no join fans out by as_of.
    edges: follow_edges. sums: the pair pass (user_author_parts), if the caller shares it.
    many_per_user: common_followee_part.
    """
    if sums is None:
        part = common_followee_part(req, edges, many_per_user=many_per_user)
        sums = asof_pass(req, [C.USER_ID, C.AUTHOR_ID], [part])
    n = F.col(f"{_COMMON}__0").cast("long")
    return sums.select(C.USER_ID, C.AUTHOR_ID, AS_OF, n.alias(R.UA_COMMON_FOLLOWEES))


def user_author_features(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    follows: DataFrame,
    *,
    edges: DataFrame | None = None,
    user_sums: DataFrame | None = None,
    many_per_user: bool = False,
) -> DataFrame:
    """All viewer-author features per (user_id, author_id, as_of); tile: user_author_tile;
    edges: follow_edges(follows), if the caller has it; user_sums: a per-user as-of pass
    holding share_user_parts, if the caller shares one. The pair's shares and common
    followees come from one as-of pass per (user, author). many_per_user:
    common_followee_part."""
    edges = follow_edges(follows) if edges is None else edges
    keys = [C.USER_ID, C.AUTHOR_ID, AS_OF]
    req = needed(impressions_as_of, [C.USER_ID, C.AUTHOR_ID])
    # materialized: its two readers would otherwise each get a pruned copy of the whole pass
    pair = [C.USER_ID, C.AUTHOR_ID]
    parts = user_author_parts(req, tile, edges, many_per_user=many_per_user)
    sums = asof_pass(req, pair, parts).localCheckpoint(eager=False)
    return (
        interaction_shares(req, tile, sums=sums, user_sums=user_sums)
        .join(follow_flags(req, edges), keys)
        .join(common_followees(req, edges, sums=sums), keys)
    )
