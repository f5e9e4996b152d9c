"""All feature families joined per impression, point in time, from raw event history.

The same computation as the daily build from persisted tiles (features.tiles): tiles of the
whole history are built at once and read by features_from_tiles.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from features.tiles import IMPRESSION_KEYS, build_tiles, features_from_tiles

__all__ = ["IMPRESSION_KEYS", "point_in_time_features"]


def point_in_time_features(
    impressions: DataFrame,
    posts: DataFrame,
    engagements: DataFrame,
    follows: DataFrame,
    users: DataFrame,
    authors: DataFrame,
    graph_cutoff,
    history_impressions: DataFrame | None = None,
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
) -> DataFrame:
    """One row per impression_id: its keys, as_of and every family's features.

    impressions are the ones to featurize (several days is fine); history_impressions (default:
    impressions) and the other frames are the raw tables over every day the features read (up
    to 365 days back: user-author shares, and the hashtag TF-IDF and topic share, which are
    bounded at registry.HISTORY_BOUND_D). Null fills and graph_cutoff: features_from_tiles.
    """
    history = history_impressions if history_impressions is not None else impressions
    return features_from_tiles(
        impressions,
        build_tiles(history, engagements, posts),
        posts,
        follows,
        users,
        authors,
        graph_cutoff,
        prior_rate=prior_rate,
        prior_strength=prior_strength,
        pagerank_iterations=pagerank_iterations,
        last_k_topics=last_k_topics,
        hide_prior_rate=hide_prior_rate,
        hide_prior_strength=hide_prior_strength,
        report_prior_rate=report_prior_rate,
        report_prior_strength=report_prior_strength,
        history_len=history_len,
    )
