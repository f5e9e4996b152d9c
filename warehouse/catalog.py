"""The table catalog: every table's name, layer, schema, key and partitioning.

Column names are constants here and nowhere else; code refers to `C.USER_ID`, not "user_id".
Every table is partitioned by `ds` (YYYY-MM-DD); the partition column is not stored in the
Parquet files but in the directory name, as Hive and Spark lay it out.
"""

from __future__ import annotations

import dataclasses
import enum

import pyarrow as pa


class Layer(enum.StrEnum):
    RAW = "raw"  # logs as the platform wrote them
    TRUTH = "truth"  # the simulator's ground truth: evaluation only, never features
    SILVER = "silver"  # point-in-time features
    GOLD = "gold"  # training sets
    SERVING = "serving"  # what the read path serves


class C:
    """Column names."""

    DS = "ds"
    USER_ID = "user_id"
    AUTHOR_ID = "author_id"
    POST_ID = "post_id"
    IMPRESSION_ID = "impression_id"
    REQUEST_ID = "request_id"
    FOLLOWER_ID = "follower_id"
    FOLLOWEE_ID = "followee_id"
    CREATED_AT = "created_at"
    SERVED_AT = "served_at"
    EVENT_TS = "event_ts"
    COUNTRY = "country"
    AGE_BUCKET = "age_bucket"
    GENDER = "gender"
    PRIMARY_DEVICE = "primary_device"
    IS_PERSON_AUTHOR = "is_person_author"
    KIND = "kind"
    VERIFIED = "verified"
    IS_CLOSE_FRIEND = "is_close_friend"
    TOPIC = "topic"
    HASHTAGS = "hashtags"
    MEDIA_TYPE = "media_type"
    LENGTH = "length"
    HAS_URL = "has_url"
    POSITION = "position"
    DEVICE = "device"
    SOURCE = "source"
    ACTION = "action"
    DWELL_S = "dwell_s"
    E_DWELL_S = "e_dwell_s"
    SAMPLE_U = "sample_u"
    ATTRIBUTION_WINDOW_S = "attribution_window_s"
    SAMPLE_SEED = "sample_seed"
    RANK = "rank"
    SCORE = "score"  # a feed item's re-ranked score (a ranker's: ranking.base.VALUE_SCORE)
    VALUE = "value"
    SOURCES = "sources"
    SIMILARITY = "similarity"  # a two-tower neighbour's inner product (interest candidates)
    MODEL_VERSION = "model_version"
    GENERATED_AT = "generated_at"
    PRIORITY = "priority"
    BUCKET = "bucket"
    POLICY = "policy"
    FEED_VERSION = "feed_version"
    PROPENSITY = "propensity"


CLICK = "click"  # the action that opens a post; dwell belongs to it
POSITIVE_ACTIONS = (CLICK, "like", "comment", "share")  # need the post to be looked at
NEGATIVE_ACTIONS = ("hide", "report")  # the viewer pushes the post away
ACTIONS = (*POSITIVE_ACTIONS, *NEGATIVE_ACTIONS)
MEDIA_TYPES = ("text", "photo", "video", "link")
DEVICES = ("mobile", "desktop")
# Where an impression's post came from: the chronological policy's network and popular slots;
# the ranked policy's cached feed, the fresh network posts blended in at read time, and its
# exploration slots (simulator.closed_loop).
IMPRESSION_SOURCES = ("network", "popular", "ranked", "fresh", "explore", "fallback")
# Where a feed candidate came from, in the order a feed item's `sources` list names them: the
# precompute's candidate sources (features.candidates); the feed store's fallback items (the
# version's most-held posts) say TRENDING too.
NETWORK, RESURFACED, INTEREST, TRENDING = "network", "resurfaced", "interest", "trending"
FEED_SOURCES = (NETWORK, RESURFACED, INTEREST, TRENDING)
BUCKETS = ("control", "treatment")  # the A/B split, a hash of the user id (simulator.closed_loop)
CHRONOLOGICAL, RANKED, LOGGED = "chronological", "ranked", "logged"
# The serving policy of an impression: the simulator's two, or a real log's own (`logged`).
POLICIES = (CHRONOLOGICAL, RANKED, LOGGED)
AUTHOR_KINDS = ("person", "page")
AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
GENDERS = ("f", "m", "x")
COUNTRIES = ("us", "br", "in", "gb", "de", "fr", "ng", "jp")


def truth_column(action: str) -> str:
    """Name of the true-probability column of an action in truth_impressions."""
    return f"p_{action}"


def label_column(action: str) -> str:
    """Name of an action's 0/1 label in gold.training_examples."""
    return f"label_{action}"


_TS = pa.timestamp("us", tz="UTC")


@dataclasses.dataclass(frozen=True)
class Table:
    """One table of the warehouse."""

    name: str
    layer: Layer
    schema: pa.Schema | None  # without the partition column; None: owned by the producer
    # A field is nullable only where the catalog says so: every other column's contract
    # includes not-null (warehouse.contracts.expectations.common).
    key: tuple[str, ...]  # unique within a partition
    doc: str
    partition_by: str = C.DS

    @property
    def qualified(self) -> str:
        """The name messages give the table: layer.name, e.g. raw.engagements."""
        return f"{self.layer.value}.{self.name}"

    @property
    def columns(self) -> list[str]:
        return self.schema.names if self.schema is not None else []


def _table(name, layer, fields, key, doc) -> Table:
    return Table(name, layer, pa.schema(fields), tuple(key), doc)


USERS = _table(
    "users",
    Layer.RAW,
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.CREATED_AT, _TS, nullable=False),
        # A real log may not say (warehouse.ingest.mapping); the simulator sets all but gender.
        pa.field(C.COUNTRY, pa.string()),
        pa.field(C.AGE_BUCKET, pa.string()),
        pa.field(C.GENDER, pa.string()),  # not every user states one,
        pa.field(C.PRIMARY_DEVICE, pa.string()),
        pa.field(C.IS_PERSON_AUTHOR, pa.bool_(), nullable=False),
    ],
    [C.USER_ID],
    "Snapshot of the viewers at the end of ds.",
)

AUTHORS = _table(
    "authors",
    Layer.RAW,
    [
        pa.field(C.AUTHOR_ID, pa.int64(), nullable=False),
        pa.field(C.KIND, pa.string(), nullable=False),
        pa.field(C.CREATED_AT, _TS, nullable=False),
        pa.field(C.VERIFIED, pa.bool_(), nullable=False),
    ],
    [C.AUTHOR_ID],
    "Snapshot of the posting accounts (people, who are also users, and pages) at the end of ds.",
)

FOLLOWS = _table(
    "follows",
    Layer.RAW,
    [
        pa.field(C.FOLLOWER_ID, pa.int64(), nullable=False),
        pa.field(C.FOLLOWEE_ID, pa.int64(), nullable=False),
        pa.field(C.CREATED_AT, _TS, nullable=False),
        pa.field(C.IS_CLOSE_FRIEND, pa.bool_()),  # unset: not marked either way,
    ],
    [C.FOLLOWER_ID, C.FOLLOWEE_ID],
    "Snapshot of the follow graph (user -> author) at the end of ds; created_at tells when.",
)

POSTS = _table(
    "posts",
    Layer.RAW,
    [
        pa.field(C.POST_ID, pa.int64(), nullable=False),
        pa.field(C.AUTHOR_ID, pa.int64(), nullable=False),
        pa.field(C.CREATED_AT, _TS, nullable=False),
        pa.field(C.TOPIC, pa.int32(), nullable=False),
        pa.field(C.HASHTAGS, pa.list_(pa.string()), nullable=False),
        pa.field(C.MEDIA_TYPE, pa.string(), nullable=False),
        pa.field(C.LENGTH, pa.int32(), nullable=False),
        pa.field(C.HAS_URL, pa.bool_(), nullable=False),
    ],
    [C.POST_ID],
    "Posts created on ds.",
)

IMPRESSIONS = _table(
    "impressions",
    Layer.RAW,
    [
        pa.field(C.IMPRESSION_ID, pa.int64(), nullable=False),
        pa.field(C.REQUEST_ID, pa.int64(), nullable=False),
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.POST_ID, pa.int64(), nullable=False),
        pa.field(C.AUTHOR_ID, pa.int64(), nullable=False),
        pa.field(C.SERVED_AT, _TS, nullable=False),
        pa.field(C.POSITION, pa.int32(), nullable=False),
        pa.field(C.DEVICE, pa.string()),  # null where a real log does not record it (MIND)
        pa.field(C.SOURCE, pa.string(), nullable=False),
        pa.field(C.BUCKET, pa.string(), nullable=False),
        pa.field(C.POLICY, pa.string(), nullable=False),
        pa.field(C.FEED_VERSION, pa.string()),  # set when the ranked policy served it
        pa.field(C.MODEL_VERSION, pa.string()),  # likewise: the ranker of that feed
        pa.field(C.PROPENSITY, pa.float64()),  # where the policy's randomisation is known
    ],
    [C.IMPRESSION_ID],
    "Feed items served on ds; one row per (request, position), with the user's experiment "
    "bucket, the policy that served the item and, for the ranked policy, the feed store "
    "version and ranker version it came from; propensity is the probability that the policy "
    "put this post at this position given the session's list (its randomisation only).",
)

ENGAGEMENTS = _table(
    "engagements",
    Layer.RAW,
    [
        pa.field(C.IMPRESSION_ID, pa.int64(), nullable=False),
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.POST_ID, pa.int64(), nullable=False),
        pa.field(C.ACTION, pa.string(), nullable=False),
        pa.field(C.EVENT_TS, _TS, nullable=False),
        pa.field(C.DWELL_S, pa.float64()),  # set on clicks only,
    ],
    [C.IMPRESSION_ID, C.ACTION],
    "Actions on the impressions of ds (partitioned by the impression's day; event_ts may "
    "pass midnight by up to max_engagement_delay_s). dwell_s is set on clicks only.",
)

TRUTH_IMPRESSIONS = _table(
    "truth_impressions",
    Layer.TRUTH,
    [pa.field(C.IMPRESSION_ID, pa.int64(), nullable=False)]
    + [pa.field(truth_column(a), pa.float64(), nullable=False) for a in ACTIONS]
    + [pa.field(C.E_DWELL_S, pa.float64(), nullable=False)],
    [C.IMPRESSION_ID],
    "The simulator's true action probabilities and expected dwell (given a click) per "
    "impression. Read by evaluation only.",
)

IMPRESSION_FEATURES = Table(
    "impression_features",
    Layer.SILVER,
    None,  # the columns are the feature registry's (features.registry.FAMILIES)
    (C.IMPRESSION_ID,),
    "Point-in-time features of each impression of ds: every family joined at its as_of.",
)


TRAINING_EXAMPLES = Table(
    "training_examples",
    Layer.GOLD,
    None,  # the feature columns of impression_features, then the labels (features.labels)
    (C.IMPRESSION_ID,),
    "Every impression of ds with its point-in-time features, its position and source, a 0/1 "
    "label per action (within the attribution window after served_at), dwell_s (set on "
    "clicks) and sample_u, a seeded uniform draw that negative downsampling thresholds; the "
    "attribution window and the seed they were built with are kept as columns.",
)


USER_NEWS_FEED = _table(
    "user_news_feed",
    Layer.GOLD,
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.RANK, pa.int32(), nullable=False),
        pa.field(C.POST_ID, pa.int64(), nullable=False),
        pa.field(C.SCORE, pa.float64(), nullable=False),
        pa.field(C.VALUE, pa.float64(), nullable=False),
    ]
    + [pa.field(truth_column(a), pa.float64(), nullable=False) for a in ACTIONS]
    + [
        pa.field(C.E_DWELL_S, pa.float64(), nullable=False),
        pa.field(C.SOURCES, pa.list_(pa.string())),
        pa.field(C.MODEL_VERSION, pa.string(), nullable=False),
        pa.field(C.GENERATED_AT, _TS, nullable=False),
    ],
    [C.USER_ID, C.RANK],
    "Every active user's precomputed feed of ds, ranked from 1: the post, the ranker's score, "
    "the value model's value, each action's predicted probability (p_<action>) and expected "
    "dwell, the candidate sources that proposed the post, the ranker's registry version and "
    "when the feed was generated. What the feed store publishes.",
)


FEED_CANDIDATES = _table(
    "feed_candidates",
    Layer.SILVER,
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.POST_ID, pa.int64(), nullable=False),
        pa.field(C.AUTHOR_ID, pa.int64(), nullable=False),
        pa.field(C.CREATED_AT, _TS, nullable=False),
        pa.field(C.SOURCES, pa.list_(pa.string()), nullable=False),
        pa.field(C.PRIORITY, pa.float64(), nullable=False),
        pa.field(C.GENERATED_AT, _TS, nullable=False),
    ],
    [C.USER_ID, C.POST_ID],
    "The candidates of each active user's feed generated from ds: the post, its author and "
    "creation time, every source that proposed it and its priority under the candidate cap "
    "(models.feed.config.SourceShares; lower first).",
)


def feature_state_table(name: str, key: tuple[str, ...], doc: str) -> Table:
    """A silver table of per-day feature state (aggregate tiles), named by features.tiles."""
    return Table(f"state_{name}", Layer.SILVER, None, key, doc)


RAW_TABLES = (USERS, AUTHORS, FOLLOWS, POSTS, IMPRESSIONS, ENGAGEMENTS)
SIMULATED_TABLES = (*RAW_TABLES, TRUTH_IMPRESSIONS)
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        *SIMULATED_TABLES,
        IMPRESSION_FEATURES,
        TRAINING_EXAMPLES,
        FEED_CANDIDATES,
        USER_NEWS_FEED,
    )
}


def table(name: str) -> Table:
    """The catalog entry of a table, with a clear error for an unknown name."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; the catalog has {sorted(TABLES)}") from None
