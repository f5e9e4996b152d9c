"""Feed candidates at a generation time, and the serving-time features of each candidate.

    active = active_users(impressions, generated_at, active_days=1)    # + since, per user
    cands = compose_candidates(active, pool(posts, at, 72), impressions, ...)
    feats = featurize_candidates(cands, tiles, posts, follows, users, authors, at, ...)

Each source proposes (user_id, post_id, source, source_rank), best first; `merge_candidates`
drops what the user was already served and their own posts, merges a post proposed by several
sources into one row that names all of them, and caps each user's list by a weighted
round-robin over the sources (models.feed.config.SourceShares). `compose_candidates` wires
the sources and the merge together, as the feed precompute runs them.

No train/serve skew: a candidate becomes an impression served at `generated_at` (its as_of is
the hour boundary before it, by features.pit's rule) and goes through the same
`features_from_tiles` as the training set's impressions. The only difference is that the
candidate's request is not in the tiles yet (a logged request is in its own day's tile), so
its request time is added to the request tile, as the daily build has it.

Pure transforms: no I/O; the job reads the tables and passes them in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.pit import follow_edges, latest_snapshot, serving_cutoff
from features.tiles import IMPRESSION_KEYS, features_from_tiles
from features.user import request_times
from warehouse.catalog import INTEREST, NETWORK, POSITIVE_ACTIONS, RESURFACED, TRENDING, C

SOURCE = "source"  # the source proposing a candidate
SOURCE_RANK = "source_rank"  # its rank within that source for the user, 1 = best
SINCE = "since"  # per active user: the previous generation (network posts are newer)
GROWTH = "growth"  # positives on an older post since the previous generation


def active_users(impressions: DataFrame, generated_at: dt.datetime, active_days: int) -> DataFrame:
    """user_id of the users served a feed in the `active_days` days before generated_at."""
    lo = generated_at - dt.timedelta(days=active_days)
    served = F.col(C.SERVED_AT)
    recent = impressions.where((served >= F.lit(lo)) & (served < F.lit(generated_at)))
    return recent.select(C.USER_ID).distinct()


def seen_posts(impressions: DataFrame, generated_at: dt.datetime) -> DataFrame:
    """(user_id, post_id) of every post served to the user before generated_at."""
    before = impressions.where(F.col(C.SERVED_AT) < F.lit(generated_at))
    return before.select(C.USER_ID, C.POST_ID).distinct()


def pool(posts: DataFrame, generated_at: dt.datetime, pool_hours: int) -> DataFrame:
    """Posts created in the `pool_hours` before generated_at: what a feed may carry."""
    lo = generated_at - dt.timedelta(hours=pool_hours)
    created = F.col(C.CREATED_AT)
    window = posts.where((created >= F.lit(lo)) & (created < F.lit(generated_at)))
    return window.select(C.POST_ID, C.AUTHOR_ID, C.CREATED_AT)


def positives_per_post(
    engagements: DataFrame, start: dt.datetime, generated_at: dt.datetime
) -> DataFrame:
    """(post_id, bucket hour, n) of positive actions with event_ts in [start, generated_at)."""
    ts = F.col(C.EVENT_TS)
    pos = engagements.where(
        F.col(C.ACTION).isin(*POSITIVE_ACTIONS) & (ts >= F.lit(start)) & (ts < F.lit(generated_at))
    )
    return pos.groupBy(C.POST_ID, F.date_trunc("hour", ts).alias("hour")).agg(
        F.count("*").alias("n")
    )


def _ranked(df: DataFrame, source: str, *order: Column) -> DataFrame:
    w = Window.partitionBy(C.USER_ID).orderBy(*order, C.POST_ID)
    return df.select(
        C.USER_ID, C.POST_ID, F.lit(source).alias(SOURCE), F.row_number().over(w).alias(SOURCE_RANK)
    )


def network_candidates(
    active: DataFrame,
    follows: DataFrame,
    pool_posts: DataFrame,
    positives: DataFrame,
    generated_at: dt.datetime,
    *,
    resurfaced_k: int,
    network: str = NETWORK,
    resurfaced: str = RESURFACED,
) -> tuple[DataFrame, DataFrame]:
    """Posts of the user's followees in the pool: those created since the user's previous
    generation (`active`.since), newest first; and the older ones that gained positives since
    then (whole hours), most gained first, at most `resurfaced_k` per user."""
    edges = follow_edges(follows).where(F.col(C.CREATED_AT) < F.lit(generated_at))
    edges = edges.select(
        F.col(C.FOLLOWER_ID).alias(C.USER_ID), F.col(C.FOLLOWEE_ID).alias(C.AUTHOR_ID)
    )
    posts = active.join(edges, C.USER_ID).join(pool_posts, C.AUTHOR_ID)
    new = posts.where(F.col(C.CREATED_AT) >= F.col(SINCE))
    older = posts.where(F.col(C.CREATED_AT) < F.col(SINCE))
    gained = (
        older.join(positives, C.POST_ID)
        .where(F.col("hour") >= F.date_trunc("hour", F.col(SINCE)))
        .groupBy(C.USER_ID, C.POST_ID)
        .agg(F.sum("n").alias(GROWTH))
    )
    resurfaced_df = _ranked(gained, resurfaced, F.col(GROWTH).desc())
    return (
        _ranked(new, network, F.col(C.CREATED_AT).desc()),
        resurfaced_df.where(F.col(SOURCE_RANK) <= resurfaced_k),
    )


def interest_candidates(
    active: DataFrame, neighbours: DataFrame, pool_posts: DataFrame, *, interest: str = INTEREST
) -> DataFrame:
    """The two-tower neighbours (user_id, post_id, similarity) of the active users that are
    still in the pool, most similar first (the index holds the pool at the end of its day,
    and every user active that day)."""
    kept = neighbours.join(active.select(C.USER_ID), C.USER_ID)
    kept = kept.join(pool_posts.select(C.POST_ID), C.POST_ID)
    return _ranked(kept, interest, F.col(C.SIMILARITY).desc())


def trending_candidates(
    active: DataFrame,
    positives: DataFrame,
    pool_posts: DataFrame,
    k: int,
    *,
    trending: str = TRENDING,
) -> DataFrame:
    """The k pool posts with the most positives in `positives` (the trending window), for
    every active user, most engaged first."""
    totals = positives.groupBy(C.POST_ID).agg(F.sum("n").alias("_n"))
    top = totals.join(pool_posts.select(C.POST_ID), C.POST_ID).orderBy(
        F.col("_n").desc(), C.POST_ID
    )
    top = top.limit(k).select(
        C.POST_ID, F.row_number().over(Window.orderBy(F.col("_n").desc(), C.POST_ID)).alias("_r")
    )
    return (
        active.select(C.USER_ID)
        .crossJoin(top)
        .select(C.USER_ID, C.POST_ID, F.lit(trending).alias(SOURCE), F.col("_r").alias(SOURCE_RANK))
    )


def merge_candidates(
    proposals: Sequence[DataFrame],
    seen: DataFrame,
    pool_posts: DataFrame,
    shares: Mapping[str, float],
    max_candidates: int,
) -> DataFrame:
    """One row per (user, post): every source that proposed it (sorted names) and its
    priority, min over those sources of source_rank / share; posts the user was served
    before, and the user's own posts, are dropped; the `max_candidates` lowest priorities
    (ties: post_id) are kept per user. Adds author_id and created_at."""
    weights = F.create_map(*[x for s, w in shares.items() for x in (F.lit(s), F.lit(float(w)))])
    allp = proposals[0]
    for p in proposals[1:]:
        allp = allp.unionByName(p)
    allp = allp.join(seen, [C.USER_ID, C.POST_ID], "left_anti").join(pool_posts, C.POST_ID)
    allp = allp.where(F.col(C.AUTHOR_ID) != F.col(C.USER_ID))
    merged = allp.groupBy(C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.CREATED_AT).agg(
        F.array_sort(F.collect_set(SOURCE)).alias(C.SOURCES),
        F.min(F.col(SOURCE_RANK) / weights[F.col(SOURCE)]).alias(C.PRIORITY),
    )
    w = Window.partitionBy(C.USER_ID).orderBy(C.PRIORITY, C.POST_ID)
    capped = merged.withColumn("_i", F.row_number().over(w)).where(F.col("_i") <= max_candidates)
    return capped.drop("_i")


def compose_candidates(
    active: DataFrame,
    pool_posts: DataFrame,
    impressions: DataFrame,
    engagements: DataFrame,
    follows: DataFrame,
    neighbours: DataFrame | None,
    generated_at: dt.datetime,
    *,
    pool_hours: int,
    trending_hours: int,
    resurfaced_k: int,
    trending_k: int,
    shares: Mapping[str, float],
    max_candidates: int,
) -> DataFrame:
    """Every active user's candidates at `generated_at`: the sources (network new and
    resurfaced, trending, and interest when there are `neighbours`), then `merge_candidates`
    (nothing seen, nothing of the user's own, a weighted round-robin to the cap).

    `active` is (user_id, since), `pool_posts` the servable pool (`pool`); both are read
    several times, so the caller may cache them."""
    growth_from = generated_at - dt.timedelta(hours=pool_hours)
    growth = positives_per_post(engagements, growth_from, generated_at)
    trend_from = generated_at - dt.timedelta(hours=trending_hours)
    trend = positives_per_post(engagements, trend_from, generated_at)
    network, resurfaced = network_candidates(
        active, follows, pool_posts, growth, generated_at, resurfaced_k=resurfaced_k
    )
    proposals = [network, resurfaced, trending_candidates(active, trend, pool_posts, trending_k)]
    if neighbours is not None:
        proposals.append(interest_candidates(active, neighbours, pool_posts))
    seen = seen_posts(impressions, generated_at)
    return merge_candidates(proposals, seen, pool_posts, shares, max_candidates)


def as_impressions(candidates: DataFrame, users: DataFrame) -> DataFrame:
    """Each candidate as an impression served at its generated_at, in one request per (user,
    generated_at), on the candidate's `device` when it has one (a refresh a request triggered)
    else the user's primary device; ids are hashes of (user, post, time) and (user, time)."""
    at = F.col(C.GENERATED_AT)
    if C.DEVICE in candidates.columns:
        rows = candidates
    else:
        device = latest_snapshot(users, [C.USER_ID]).select(
            C.USER_ID, F.col(C.PRIMARY_DEVICE).alias(C.DEVICE)
        )
        rows = candidates.join(device, C.USER_ID, "left")
    return rows.select(
        F.xxhash64(C.USER_ID, C.POST_ID, F.unix_micros(at)).alias(C.IMPRESSION_ID),
        F.xxhash64(C.USER_ID, F.unix_micros(at)).alias(C.REQUEST_ID),
        C.USER_ID,
        C.POST_ID,
        C.AUTHOR_ID,
        at.alias(C.SERVED_AT),
        C.DEVICE,
    )


def serving_features(
    impressions: DataFrame,
    tiles: Mapping[str, DataFrame],
    posts: DataFrame,
    follows: DataFrame,
    users: DataFrame,
    authors: DataFrame,
    graph_cutoff,
    *,
    small_entities: bool = False,
    **knobs,
) -> DataFrame:
    """features_from_tiles of the candidate impressions, their requests added to the request
    tile (merging keeps a logged request's own time: the tile's min); small_entities: see
    features_from_tiles (featurize_candidates sets it)."""
    requests = request_times(impressions.select(*IMPRESSION_KEYS))
    with_requests = {**tiles, "requests": tiles["requests"].unionByName(requests)}
    return features_from_tiles(
        impressions,
        with_requests,
        posts,
        follows,
        users,
        authors,
        graph_cutoff,
        **knobs,
        small_entities=small_entities,
    )


def featurize_candidates(
    candidates: DataFrame,
    tiles: Mapping[str, DataFrame],
    posts: DataFrame,
    follows: DataFrame,
    users: DataFrame,
    authors: DataFrame,
    generated_at: dt.datetime,
    **knobs,
) -> DataFrame:
    """The serving-time features of candidate rows (user_id, post_id, author_id,
    generated_at = `generated_at`, optionally device) that are not impressions: one row per
    candidate, keyed by as_impressions' ids, with the training set's definitions.

    Every family is computed on the distinct (keys, as_of) its rows need, and all rows share
    one as_of: user-side families (user, context) run once per user, post-side ones (post,
    content, author, author x topic) once per post or author, and only the pairwise ones
    (network, user x author, similarity) once per pair. graph_cutoff is that of the
    generation time (features.pit.serving_cutoff). knobs: features.config.FeatureSettings.
    """
    return serving_features(
        as_impressions(candidates, users),
        tiles,
        posts,
        follows,
        users,
        authors,
        serving_cutoff(generated_at),
        small_entities=True,
        **knobs,
    )
