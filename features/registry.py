"""The feature registry: feature names, windows, decay, and the columns of every family.

Names are built here and nowhere else; feature code imports the constants or the name helpers,
and the training set and the docs read `FAMILIES`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from warehouse.catalog import ACTIONS, POSITIVE_ACTIONS, C

if TYPE_CHECKING:
    from warehouse.contracts.silver import FeatureRules

AS_OF = "as_of"  # the hour boundary a snapshot is taken at; see features.pit
BUCKET = "bucket"  # an event's hour: date_trunc('hour', ts)

# Columns of the persisted tiles (features.tiles), besides the count and moment columns of
# features.windows and the raw tables' keys.
T_IMPRESSIONS = "impressions"  # impressions served in the bucket
T_POSITIVES = "positives"  # positive engagements with event_ts in the bucket
T_LAST_EVENT_TS = "last_event_ts"  # the latest positive's event_ts in the bucket
T_HASHTAG = "hashtag"
T_TAG_COUNT = "tag_count"  # positives on posts carrying the hashtag (once per post)
T_ENGAGER_ID = "engager_id"  # the user who acted on the post

# Windows are whole hours so that hourly buckets count them exactly (see features.pit).
WINDOWS_H: dict[str, int] = {"1h": 1, "1d": 24, "3d": 72, "7d": 168}
LOOKBACK_H = max(WINDOWS_H.values())  # post and network snapshots read this far back
AUTHOR_WINDOWS_D = (7, 30, 90)
USER_RATE_WINDOWS_D = (7, 30)
USER_AUTHOR_WINDOWS_D = (90, 365)
LAST_TOPICS_D = 30  # last topics read the viewer's positives this far back
# Features once defined on "all history before as_of" (hashtag TF-IDF, topic share) read this
# far back, and the previous request is looked for this far back, so that a daily build from
# persisted tiles (features.tiles) reads a bounded number of days and equals the raw build.
HISTORY_BOUND_D = 365
REQUEST_GAP_BOUND_D = 30
# Negative feedback: the post's rates over the post window of its smoothed engagement rate;
# the author's and the viewer's over the rate window of the author and user families.
POST_NEGATIVE_WINDOW_H = WINDOWS_H["7d"]
AUTHOR_NEGATIVE_D = 30
USER_NEGATIVE_D = 30
USER_HIST_D = LAST_TOPICS_D  # the engagement history reads this far back, like last topics

# report is too rare to count per window (features.negative smooths it with a prior)
COUNTED_ACTIONS = (*POSITIVE_ACTIONS, "hide")
IMPRESSION = "impression"  # the pseudo-action of a served impression in post event streams
POST_KINDS = (*COUNTED_ACTIONS, IMPRESSION)
assert set(COUNTED_ACTIONS) <= set(ACTIONS)

# Decay: an event t days before as_of weighs 1 / (t + 1), t real (from timestamps), over the
# same lookback as the widest window (7 days). The weight is not computed exactly: hourly tiles
# keep moments, and features.windows sums a 4-term series of it, which errs by at most 25^-4
# (<= 2.6e-6) relative and always falls under the exact value (the cut terms are positive).
DECAY_DOC = (
    "sum over events in the 7d before as_of of 1/(t+1), t = (as_of - event_ts) in days, "
    "approximated by the 4-term series of features.windows (<= 2.6e-6 relative, always under)"
)


def post_count(kind: str, window: str) -> str:
    return f"post_{kind}_{window}"


def post_decayed(kind: str) -> str:
    return f"post_{kind}_decayed"


def net_count(kind: str, window: str) -> str:
    return f"net_{kind}_{window}"


def post_smoothed(action: str) -> str:
    return f"post_smoothed_{action}_rate"


def author_smoothed(action: str) -> str:
    return f"author_smoothed_{action}_rate_{AUTHOR_NEGATIVE_D}d"


def author_rate(days: int) -> str:
    return f"author_eng_rate_{days}d"


def author_topic_rate(days: int) -> str:
    return f"author_topic_eng_rate_{days}d"


def user_rate(days: int) -> str:
    return f"user_eng_rate_{days}d"


def ua_share(days: int) -> str:
    return f"ua_eng_share_{days}d"


def ua_norm(days: int) -> str:
    return f"ua_eng_share_norm_{days}d"


POST_AGE_H = "post_age_h"
POST_SMOOTHED_RATE = "post_smoothed_eng_rate"
HASHTAG_COUNT = "hashtag_count"
AUTHOR_FOLLOWERS = "author_followers"
AUTHOR_FOLLOWEES = "author_followees"
AUTHOR_FOLLOW_RATIO = "author_follow_ratio"
AUTHOR_VERIFIED = "author_verified"
AUTHOR_PAGERANK = "author_pagerank"
USER_IMPRESSIONS_7D = "user_impressions_7d"
USER_REQUESTS_7D = "user_requests_7d"
USER_LAST_TOPICS = "user_last_topics"
UA_FOLLOWS = "ua_follows"
UA_CLOSE_FRIEND = "ua_close_friend"
UA_COMMON_FOLLOWEES = "ua_common_followees"
SIM_HASHTAG_TFIDF = "sim_hashtag_tfidf"
SIM_TOPIC_SHARE = "sim_topic_share"
CTX_HOUR = "ctx_hour"
CTX_DOW = "ctx_dow"
CTX_HOURS_SINCE_PREV_REQUEST = "ctx_hours_since_prev_request"
POST_SMOOTHED_HIDE_RATE = post_smoothed("hide")
POST_SMOOTHED_REPORT_RATE = post_smoothed("report")
AUTHOR_SMOOTHED_HIDE_RATE = author_smoothed("hide")
AUTHOR_SMOOTHED_REPORT_RATE = author_smoothed("report")
USER_HIDE_RATE = f"user_hide_rate_{USER_NEGATIVE_D}d"
USER_HIST_TOPICS = "user_hist_topics"
USER_HIST_AUTHORS = "user_hist_authors"
USER_HIST_MEDIA = "user_hist_media"


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    doc: str


def _post() -> list[Feature]:
    out = [
        Feature(post_count(k, w), f"{k}s on the post in the {w} before as_of")
        for k in POST_KINDS
        for w in WINDOWS_H
    ]
    out += [Feature(post_decayed(k), f"decayed {k}s: {DECAY_DOC}") for k in POST_KINDS]
    out += [
        Feature(POST_AGE_H, "hours from the post's creation to as_of (0 if created later)"),
        Feature(
            POST_SMOOTHED_RATE, "(7d positives + prior*strength) / (7d impressions + strength)"
        ),
    ]
    return out


def _network() -> list[Feature]:
    return [
        Feature(net_count(k, w), f"{k}s on the post by the viewer's followees, {w} before as_of")
        for k in COUNTED_ACTIONS
        for w in WINDOWS_H
    ]


FAMILIES: dict[str, list[Feature]] = {
    "post": _post(),
    "network": _network(),
    "content": [
        Feature("media_type", "text, photo, video or link"),
        Feature("length", "post length in characters"),
        Feature("has_url", "the post carries a URL"),
        Feature("topic", "the post's topic id"),
        Feature("hashtags", "the post's hashtags (array of strings)"),
        Feature(HASHTAG_COUNT, "number of hashtags"),
    ],
    "author": [
        Feature(AUTHOR_FOLLOWERS, "follows of the author created before as_of"),
        Feature(AUTHOR_FOLLOWEES, "accounts the author (as a user) follows before as_of"),
        Feature(AUTHOR_FOLLOW_RATIO, "followers / (followees + 1)"),
        Feature(AUTHOR_VERIFIED, "verified flag (latest snapshot; static in the simulator)"),
        Feature(AUTHOR_PAGERANK, "PageRank of the author in the follow graph before a cutoff"),
    ]
    + [
        Feature(author_rate(d), f"positives / impressions of the author's posts, {d}d")
        for d in AUTHOR_WINDOWS_D
    ]
    + [
        Feature(author_topic_rate(d), f"same, on the author's posts of this topic, {d}d")
        for d in AUTHOR_WINDOWS_D
    ],
    "user": [
        Feature("country", "viewer's country"),
        Feature("age_bucket", "viewer's age bucket"),
        Feature("gender", "viewer's gender"),
        Feature("primary_device", "viewer's primary device"),
        Feature(USER_IMPRESSIONS_7D, "impressions served to the viewer in the 7d before as_of"),
        Feature(USER_REQUESTS_7D, "feed requests of the viewer in the 7d before as_of"),
        Feature(
            USER_LAST_TOPICS,
            f"last k distinct topics the viewer engaged with in {LAST_TOPICS_D}d, newest first",
        ),
    ]
    + [
        Feature(user_rate(d), f"viewer's positives / impressions, {d}d")
        for d in USER_RATE_WINDOWS_D
    ],
    "user_author": [
        Feature(UA_FOLLOWS, "viewer follows the author (follow created before as_of)"),
        Feature(UA_CLOSE_FRIEND, "the follow is marked close friend"),
        Feature(UA_COMMON_FOLLOWEES, "viewer's followees who follow the author, before as_of"),
    ]
    + [
        Feature(ua_share(d), f"viewer's positives / impressions on the author's posts, {d}d")
        for d in USER_AUTHOR_WINDOWS_D
    ]
    + [
        Feature(ua_norm(d), f"{ua_share(d)} / the viewer's overall rate in {d}d")
        for d in USER_AUTHOR_WINDOWS_D
    ],
    "similarity": [
        Feature(
            SIM_HASHTAG_TFIDF,
            f"TF-IDF cosine of the viewer's hashtags engaged in the {HISTORY_BOUND_D}d before"
            " as_of and the post's",
        ),
        Feature(
            SIM_TOPIC_SHARE,
            f"share of the viewer's positives in the {HISTORY_BOUND_D}d before as_of on this topic",
        ),
    ],
    "context": [
        Feature(CTX_HOUR, "hour of day of served_at (UTC)"),
        Feature(CTX_DOW, "day of week of served_at, 1 = Sunday (Spark dayofweek)"),
        Feature("device", "device of the request"),
        Feature(
            CTX_HOURS_SINCE_PREV_REQUEST,
            f"hours since the viewer's previous request (null if none in {REQUEST_GAP_BOUND_D}d)",
        ),
    ],
    "negative_feedback": [
        Feature(
            POST_SMOOTHED_HIDE_RATE,
            "(7d hides + hide_prior_rate*hide_prior_strength) / (7d impressions"
            " + hide_prior_strength), on the post",
        ),
        Feature(
            POST_SMOOTHED_REPORT_RATE,
            "(7d reports + report_prior_rate*report_prior_strength) / (7d impressions"
            " + report_prior_strength), on the post",
        ),
        Feature(
            AUTHOR_SMOOTHED_HIDE_RATE,
            f"the same hide rate over the author's posts, {AUTHOR_NEGATIVE_D}d"
            " (hides by event_ts, impressions by served_at)",
        ),
        Feature(
            AUTHOR_SMOOTHED_REPORT_RATE,
            f"the same report rate over the author's posts, {AUTHOR_NEGATIVE_D}d",
        ),
        Feature(
            USER_HIDE_RATE,
            f"viewer's hides / impressions served to the viewer, {USER_NEGATIVE_D}d"
            " (null before any impression)",
        ),
    ],
    "history": [
        Feature(
            USER_HIST_TOPICS,
            f"topics of the viewer's last history_len distinct posts with a positive in the"
            f" {USER_HIST_D}d before as_of, newest first (a post at its latest positive; ties"
            " by post_id; empty array if none)",
        ),
        Feature(USER_HIST_AUTHORS, f"author ids of the posts of {USER_HIST_TOPICS}, aligned"),
        Feature(USER_HIST_MEDIA, f"media types of the posts of {USER_HIST_TOPICS}, aligned"),
    ],
}


def feature_columns(family: str | None = None) -> list[str]:
    """Feature column names of one family, or of all families in registry order."""
    fams = [family] if family else list(FAMILIES)
    return [f.name for fam in fams for f in FAMILIES[fam]]


def feature_rules() -> FeatureRules:
    """The feature table's contract, by kind of column, from the feature registry."""
    # Imported here: the contracts need pyspark, and scoring a model reads this module.
    from warehouse.contracts.silver import FeatureRules

    windows = [post_count(k, w) for k in POST_KINDS for w in WINDOWS_H]
    windows += [net_count(k, w) for k in COUNTED_ACTIONS for w in WINDOWS_H]
    decayed = [post_decayed(k) for k in POST_KINDS]
    counts = [
        AUTHOR_FOLLOWERS,
        AUTHOR_FOLLOWEES,
        USER_IMPRESSIONS_7D,
        USER_REQUESTS_7D,
        UA_COMMON_FOLLOWEES,
        HASHTAG_COUNT,
    ]
    rates = [author_rate(d) for d in AUTHOR_WINDOWS_D]
    rates += [author_topic_rate(d) for d in AUTHOR_WINDOWS_D]
    rates += [user_rate(d) for d in USER_RATE_WINDOWS_D]
    rates += [ua_share(d) for d in USER_AUTHOR_WINDOWS_D]
    rates += [ua_norm(d) for d in USER_AUTHOR_WINDOWS_D]
    # Smoothed rates are never null (the prior stands in for no impression). No negative
    # rate is bounded by 1: a window counts hides by event_ts and impressions by served_at,
    # so a hide in the window of an impression served just before it has no impression.
    smoothed = (
        POST_SMOOTHED_HIDE_RATE,
        POST_SMOOTHED_REPORT_RATE,
        AUTHOR_SMOOTHED_HIDE_RATE,
        AUTHOR_SMOOTHED_REPORT_RATE,
    )
    history = (USER_HIST_TOPICS, USER_HIST_AUTHORS, USER_HIST_MEDIA)
    return FeatureRules(
        not_null=(
            C.IMPRESSION_ID,
            *windows,
            *decayed,
            POST_AGE_H,
            CTX_HOUR,
            CTX_DOW,
            *smoothed,
            *history,
        ),
        nonnegative=(
            *windows,
            *decayed,
            *counts,
            *rates,
            POST_AGE_H,
            POST_SMOOTHED_RATE,
            AUTHOR_FOLLOW_RATIO,
            CTX_HOURS_SINCE_PREV_REQUEST,
            *smoothed,
            USER_HIDE_RATE,
        ),
        unit_interval=(SIM_TOPIC_SHARE, AUTHOR_PAGERANK),
        ranges={CTX_HOUR: (0, 23), CTX_DOW: (1, 7), SIM_HASHTAG_TFIDF: (0.0, 1.0 + 1e-9)},
    )
