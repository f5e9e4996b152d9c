"""All feature families joined per impression, point in time: the one call a job makes."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.author import author_features, author_topic_features
from features.content import post_content
from features.context import context_features
from features.pit import with_as_of
from features.post import network_interactions, post_interactions
from features.registry import AS_OF
from features.similarity import similarity_features
from features.user import user_features
from features.user_author import user_author_features
from warehouse.catalog import C

IMPRESSION_KEYS = (C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT)


def point_in_time_features(
    impressions: DataFrame,
    posts: DataFrame,
    engagements: DataFrame,
    follows: DataFrame,
    users: DataFrame,
    authors: DataFrame,
    graph_cutoff,
    history_impressions: DataFrame | None = None,
    prior_rate: float = 0.05,
    prior_strength: float = 20.0,
    pagerank_iterations: int = 20,
    last_k_topics: int = 5,
) -> DataFrame:
    """One row per impression_id: its keys, as_of and every family's features.

    impressions are the ones to featurize (several days is fine); history_impressions (default:
    impressions) and the other frames are the raw tables over every day the features read (up
    to 365 days back for user-author shares). Families are left-joined on their keys; null fills:
    window counts are 0 (filled in their family), rates are null when nothing was seen (unknown,
    not zero), hashtag cosine is 0, last topics is an empty array, PageRank is null for an
    author outside the follow graph and author flags null for an unknown author.

    PageRank and the IDF corpus are computed once, on follows and posts created before
    graph_cutoff (a datetime): it must be <= every as_of, e.g. the first day's start minus 1 h
    (an impression at 00:00:00 has as_of 23:00 the day before).
    """
    history = history_impressions if history_impressions is not None else impressions
    imps = with_as_of(impressions.select(*IMPRESSION_KEYS, C.DEVICE))
    cutoff = F.lit(graph_cutoff)
    post = post_interactions(imps, history, engagements, posts, prior_rate, prior_strength)
    families = [
        (post, [C.POST_ID, AS_OF]),
        (network_interactions(imps, engagements, follows), [C.USER_ID, C.POST_ID, AS_OF]),
        (post_content(posts), [C.POST_ID]),
        (
            author_features(
                imps, history, engagements, posts, follows, authors, cutoff, pagerank_iterations
            ),
            [C.AUTHOR_ID, AS_OF],
        ),
        (author_topic_features(imps, history, engagements, posts), [C.AUTHOR_ID, C.TOPIC, AS_OF]),
        (
            user_features(imps, history, engagements, posts, users, last_k_topics),
            [C.USER_ID, AS_OF],
        ),
        (
            user_author_features(imps, history, engagements, follows),
            [C.USER_ID, C.AUTHOR_ID, AS_OF],
        ),
        (similarity_features(imps, engagements, posts, cutoff), [C.USER_ID, C.POST_ID, AS_OF]),
        (context_features(imps, history).drop(C.DEVICE), [C.IMPRESSION_ID]),
    ]
    out = imps
    for feats, keys in families:
        out = out.join(feats, keys, "left")
    return out
