"""Per-day tiles: additive hourly aggregates that the features of a day are built from.

A daily job, for day ds, (1) builds ds's tiles from ds's raw partitions only (impressions
served on ds, the engagements of those impressions, whose event_ts may pass midnight, and the
posts they reference) and persists them by ds; (2) unions the tiles of ds - lookback .. ds
(earlier runs' output: the reused state) and computes the features of ds's impressions with
`features_from_tiles`. point_in_time_features (features.assemble) is the same computation on
tiles built from the whole raw history at once, so both give the same features whenever each
tile's lookback covers what the features read.

Tiles are additive: the same (keys) in two ds partitions (an hour that straddles two days'
partitions, a request served across midnight) merge by summing counts, and by max / min for
the columns named in the spec. Every column is a plain Parquet type (no maps).

Lookbacks count whole days before ds. A window of W days before as_of reads from
as_of - W days, and the earliest as_of of ds is ds - 1 day 23:00 (an impression at 00:00:xx),
so W + 1 days; engagements are filed under their impression's day, which holds as long as an
engagement lags its impression by less than 23 h (the simulator's cap is 1 h).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.author import author_features, author_parts, author_tiles, author_topic_features
from features.content import post_content
from features.context import context_features
from features.history import history_features, history_tile
from features.negative import (
    Priors,
    author_negative_features,
    author_negative_parts,
    post_negative_features,
    post_negative_tile,
    user_hide_parts,
    user_hide_rate,
    user_negative_tile,
)
from features.pit import asof_pass, follow_edges, needed, with_as_of
from features.post import network_interactions, network_tile, post_interactions, post_tile
from features.registry import AS_OF, BUCKET
from features.similarity import similarity_features, topic_user_parts, user_hashtag_tile
from features.user import (
    activity_parts,
    request_times,
    user_features,
    user_tile,
    user_topic_tile,
)
from features.user_author import share_user_parts, user_author_features, user_author_tile
from warehouse.catalog import C

IMPRESSION_KEYS = (C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT)


@dataclasses.dataclass(frozen=True)
class TileSpec:
    keys: tuple[str, ...]  # unique once merged; `bucket` (the event hour) for hourly tiles
    lookback_days: int  # the features of ds read this tile's partitions ds - lookback .. ds
    doc: str
    maxes: tuple[str, ...] = ()  # columns merged by max; the others not in mins are summed
    mins: tuple[str, ...] = ()


TILES: dict[str, TileSpec] = {
    "post_hourly": TileSpec(
        (C.POST_ID, BUCKET),
        R.LOOKBACK_H // 24 + 1,
        "impressions (served_at) and actions (event_ts) on the post, per kind: n_<kind> and "
        "the decay moments m1_<kind>..m3_<kind> of features.windows",
    ),
    "network_hourly": TileSpec(
        (C.POST_ID, R.T_ENGAGER_ID, BUCKET),
        R.LOOKBACK_H // 24 + 1,
        "counted actions (n_<action>) of one engager on the post; the follow check is at read",
    ),
    "author_hourly": TileSpec(
        (C.AUTHOR_ID, BUCKET),
        max(R.AUTHOR_WINDOWS_D) + 1,
        "impressions and positives on the author's posts",
    ),
    "author_topic_hourly": TileSpec(
        (C.AUTHOR_ID, C.TOPIC, BUCKET),
        max(R.AUTHOR_WINDOWS_D) + 1,
        "impressions and positives on the author's posts of the topic",
    ),
    "user_hourly": TileSpec(
        (C.USER_ID, BUCKET),
        max(7, *R.USER_RATE_WINDOWS_D) + 1,
        "impressions served to the user and the user's positives",
    ),
    "requests": TileSpec(
        (C.USER_ID, C.REQUEST_ID),
        max(7, R.REQUEST_GAP_BOUND_D) + 1,
        "one row per feed request: served_at of its first item (min over days when merged)",
        mins=(C.SERVED_AT,),
    ),
    "user_author_hourly": TileSpec(
        (C.USER_ID, C.AUTHOR_ID, BUCKET),
        max(R.USER_AUTHOR_WINDOWS_D) + 1,
        "impressions of the author's posts served to the user, and the user's positives on them",
    ),
    "user_topic_hourly": TileSpec(
        (C.USER_ID, C.TOPIC, BUCKET),
        max(R.LAST_TOPICS_D, R.HISTORY_BOUND_D) + 1,
        "the user's positives on the topic and the latest one's event_ts (last topics order; "
        f"topic share over {R.HISTORY_BOUND_D}d)",
        maxes=(R.T_LAST_EVENT_TS,),
    ),
    "user_hashtag_hourly": TileSpec(
        (C.USER_ID, R.T_HASHTAG, BUCKET),
        R.HISTORY_BOUND_D + 1,
        f"the user's positives on posts with the hashtag (TF-IDF over {R.HISTORY_BOUND_D}d)",
    ),
    "post_negative_hourly": TileSpec(
        (C.POST_ID, C.AUTHOR_ID, BUCKET),
        max(R.POST_NEGATIVE_WINDOW_H // 24, R.AUTHOR_NEGATIVE_D) + 1,
        "impressions of the post and hides and reports on it: n_impression, n_hide, n_report "
        "(post and author negative feedback)",
    ),
    "user_negative_hourly": TileSpec(
        (C.USER_ID, BUCKET),
        R.USER_NEGATIVE_D + 1,
        "impressions served to the user and the user's hides: n_impression, n_hide",
    ),
    "user_history_hourly": TileSpec(
        (C.USER_ID, C.POST_ID, BUCKET),
        R.USER_HIST_D + 1,
        "the latest event_ts of the user's positives on the post (engagement history)",
        maxes=(R.T_LAST_EVENT_TS,),
    ),
}


def lookback_days(name: str) -> int:
    """Days before ds whose partitions of the tile the features of ds read."""
    return TILES[name].lookback_days


def build_tiles(
    impressions: DataFrame, engagements: DataFrame, posts: DataFrame
) -> dict[str, DataFrame]:
    """Every tile of the given events (one day's raw partitions in the daily job; any span
    works, and tiles of several spans merge to the tiles of their union). Pure, no I/O."""
    author, author_topic = author_tiles(impressions, engagements, posts)
    return {
        "post_hourly": post_tile(impressions, engagements),
        "network_hourly": network_tile(engagements),
        "author_hourly": author,
        "author_topic_hourly": author_topic,
        "user_hourly": user_tile(impressions, engagements),
        "requests": request_times(impressions),
        "user_author_hourly": user_author_tile(impressions, engagements),
        "user_topic_hourly": user_topic_tile(engagements, posts),
        "user_hashtag_hourly": user_hashtag_tile(engagements, posts),
        "post_negative_hourly": post_negative_tile(impressions, engagements, posts),
        "user_negative_hourly": user_negative_tile(impressions, engagements),
        "user_history_hourly": history_tile(engagements),
    }


def merge_tile(name: str, tile: DataFrame) -> DataFrame:
    """One row per key of a union of partitions of the tile (sum, or max / min per spec)."""
    spec = TILES[name]

    def agg(c: str):
        fn = F.max if c in spec.maxes else F.min if c in spec.mins else F.sum
        return fn(c).alias(c)

    return tile.groupBy(*spec.keys).agg(*[agg(c) for c in tile.columns if c not in spec.keys])


# The tiles merged (one row per key) before the features read them. Every reader of the others
# sums counts (exact in a double whatever the grouping) or takes a max, so a key in two days'
# partitions gives the same features unmerged, and each merge would cost a shuffle. The post
# tile's decay moments are floats (a merged sum rounds differently), and a request must be one
# row (context's previous request, the requests counted in 7d).
MERGED = frozenset({"post_hourly", "requests"})


def features_from_tiles(
    impressions: DataFrame,
    tiles: Mapping[str, DataFrame],
    posts: DataFrame,
    follows: DataFrame,
    users: DataFrame,
    authors: DataFrame,
    graph_cutoff,
    *,
    prior_rate: float,
    prior_strength: float,
    pagerank_iterations: int,
    last_k_topics: int,
    hide_prior_rate: float,
    hide_prior_strength: float,
    report_prior_rate: float,
    report_prior_strength: float,
    history_len: int,
    small_entities: bool = False,
) -> DataFrame:
    """One row per impression_id: its keys, as_of and every family's features.

    tiles[name]: the union of the tile's partitions over (at least) its lookback, merged here
    where a reader needs one row per key (MERGED).
    posts: the posts the impressions and the tiles' days reference; the IDF corpus is those
    created before graph_cutoff. follows, users, authors: snapshots (ds-partitioned or not).

    Families are left-joined on their keys; null fills: window counts are 0 (filled in their
    family), rates are null when nothing was seen (unknown, not zero), hashtag cosine is 0,
    last topics is an empty array, PageRank is null for an author outside the follow graph and
    author flags null for an unknown author; smoothed rates (the hide and report rates of
    features.negative: priors in the keywords) are the prior, and the history lists empty
    (history_len: their length at most). PageRank and the IDF corpus are computed once, on
    follows and posts created before graph_cutoff (a datetime), and the follow counts count
    the follows before it once per author: it must be <= every as_of.

    small_entities: the per-post, per-author and per-user families are small beside the rows
    (a feed generation's candidates share one as_of, so a row per entity): they are broadcast
    to the rows after the pair families are joined (_SMALL_JOINED_INTO, _BROADCAST) instead
    of being shuffled with the ever wider frame; and each user has many rows, so the network
    and common-followee joins cut the follow graph to the requested users first
    (many_per_user). The same rows and values either way.
    """
    missing = sorted(set(TILES) - set(tiles))
    if missing:
        raise KeyError(f"missing tiles {missing}")
    t = {name: merge_tile(name, tiles[name]) if name in MERGED else tiles[name] for name in TILES}
    imps = with_as_of(impressions.select(*IMPRESSION_KEYS, C.DEVICE))
    cutoff = F.lit(graph_cutoff)
    # Five lookups read the follow graph, each with its own columns, so Spark would dedupe
    # the snapshots (a shuffle of the whole graph) once per lookup: do it once, materialized.
    edges = follow_edges(follows).localCheckpoint(eager=False)
    # One as-of pass per entity key for the families that keep running sums over its hourly
    # tiles (every window a difference of two running sums of the same select), each read by
    # its family: one sort per key, not one per family. Materialized (like the edges): each
    # family reads other columns of it, and the optimizer would prune each reader's copy to
    # its own columns, so the copies would differ and each would sort every family's rows.
    user_sums = asof_pass(
        needed(imps, [C.USER_ID]),
        [C.USER_ID],
        [
            *activity_parts(t["user_hourly"], t["requests"]),
            *user_hide_parts(t["user_negative_hourly"]),
            *share_user_parts(t["user_author_hourly"]),
            *topic_user_parts(t["user_topic_hourly"]),
        ],
    ).localCheckpoint(eager=False)
    author_sums = asof_pass(
        needed(imps, [C.AUTHOR_ID]),
        [C.AUTHOR_ID],
        [
            *author_parts(t["author_hourly"], edges, cutoff),
            *author_negative_parts(t["post_negative_hourly"]),
        ],
    ).localCheckpoint(eager=False)
    families = {
        "post": (
            post_interactions(imps, t["post_hourly"], posts, prior_rate, prior_strength),
            [C.POST_ID, AS_OF],
        ),
        "network": (
            network_interactions(
                imps, t["network_hourly"], follows, edges=edges, many_per_user=small_entities
            ),
            [C.USER_ID, C.POST_ID, AS_OF],
        ),
        "content": (post_content(posts), [C.POST_ID]),
        "author": (
            author_features(
                imps,
                t["author_hourly"],
                follows,
                authors,
                cutoff,
                pagerank_iterations,
                edges=edges,
                sums=author_sums,
            ),
            [C.AUTHOR_ID, AS_OF],
        ),
        "author_topic": (
            author_topic_features(imps, t["author_topic_hourly"], posts),
            [C.AUTHOR_ID, C.TOPIC, AS_OF],
        ),
        "user": (
            user_features(
                imps,
                t["user_hourly"],
                t["requests"],
                t["user_topic_hourly"],
                users,
                last_k_topics,
                sums=user_sums,
            ),
            [C.USER_ID, AS_OF],
        ),
        "user_author": (
            user_author_features(
                imps,
                t["user_author_hourly"],
                follows,
                edges=edges,
                user_sums=user_sums,
                many_per_user=small_entities,
            ),
            [C.USER_ID, C.AUTHOR_ID, AS_OF],
        ),
        "similarity": (
            similarity_features(
                imps,
                t["user_hashtag_hourly"],
                t["user_topic_hourly"],
                posts,
                cutoff,
                user_sums=user_sums,
            ),
            [C.USER_ID, C.POST_ID, AS_OF],
        ),
        "context": (context_features(imps, t["requests"]).drop(C.DEVICE), [C.IMPRESSION_ID]),
    }
    priors = Priors(hide_prior_rate, hide_prior_strength, report_prior_rate, report_prior_strength)
    families |= _negative_and_history(
        imps, t, posts, priors, history_len, user_sums=user_sums, author_sums=author_sums
    )
    columns = imps.columns  # the order of joining every family to the impressions in turn
    for feats, keys in families.values():
        columns = _using_join_columns(columns, feats.columns, keys)
    # Each join to the impressions shuffles the whole, ever wider frame. A family whose keys
    # the host family holds, one row per needed key (built from the impressions' own keys),
    # joins that smaller frame first: one wide shuffle per host, the same rows and values.
    frames = {name: feats for name, (feats, _) in families.items()}
    joined_into, small = (_SMALL_JOINED_INTO, _BROADCAST) if small_entities else (_JOINED_INTO, ())
    for part, host in joined_into.items():
        frames[host] = frames[host].join(frames.pop(part), families[part][1], "left")
    out = imps
    for name in sorted(frames, key=lambda n: n in small):  # the pairs first, then the small
        feats = F.broadcast(frames[name]) if name in small else frames[name]
        out = out.join(feats, families[name][1], "left")
    return out.select(*columns)


# family -> the family it is joined to before the impressions (see features_from_tiles)
_JOINED_INTO = {
    "content": "post",
    "similarity": "network",
    "user": "user_author",
    "post_negative": "post",
    "author_negative": "author",
    "user_negative": "user_author",
}

# small_entities: family -> the family it is joined to before the impressions, and the
# families broadcast to the impressions, each a row per post, author, (author, topic) or user,
# joined after the pair families (network with the hashtag similarity, user x author,
# context): only those are shuffled with the rows, while the frame is still narrow.
_SMALL_JOINED_INTO = {
    "content": "post",
    "similarity": "network",
    "post_negative": "post",
    "author_negative": "author",
    "user_negative": "user",
}
_BROADCAST = ("post", "author", "author_topic", "user")


def _negative_and_history(
    imps, t, posts, priors: Priors, history_len: int, *, user_sums, author_sums
) -> dict:
    """The negative-feedback and history families (registry: negative_feedback, history),
    each joined to a host family with its keys (_JOINED_INTO); the viewer's and the author's
    rates from the shared as-of passes."""
    hist = history_features(imps, t["user_history_hourly"], posts, history_len)
    hide = user_hide_rate(imps, t["user_negative_hourly"], sums=user_sums)
    user = hide.join(hist, [C.USER_ID, AS_OF])
    return {
        "post_negative": (
            post_negative_features(imps, t["post_negative_hourly"], priors),
            [C.POST_ID, AS_OF],
        ),
        "author_negative": (
            author_negative_features(imps, t["post_negative_hourly"], priors, sums=author_sums),
            [C.AUTHOR_ID, AS_OF],
        ),
        "user_negative": (user, [C.USER_ID, AS_OF]),
    }


def _using_join_columns(left: list[str], right: list[str], keys: list[str]) -> list[str]:
    """The columns of left.join(right, keys): the keys, then the others of each side."""
    return [*keys, *(c for c in left if c not in keys), *(c for c in right if c not in keys)]
