"""Data contract of gold.user_news_feed: what a reader pages through must hold up.

Besides the common rules ((user_id, rank) unique, every column set, no NaN): ranks run 1..n
within each user without gaps, at most `feed_size` items per user, probabilities in [0, 1],
expected dwell >= 0, a model version the registry knows, and what a feed must never hold:
the same post twice for one user, a post the user was served before generated_at, one they
hid or reported, their own post, a post that does not exist, was created after generated_at
or is older than the serving pool (`pool_hours` before generated_at: no longer servable),
and a feed for a user who is not in raw.users. The cross-table rules are plain column rules
on a derived frame: the partition with the posts, the users, the users' earlier impressions
and negative actions, and the registry's versions joined in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import Window
from pyspark.sql import functions as F

from warehouse.catalog import (
    ACTIONS,
    ENGAGEMENTS,
    IMPRESSIONS,
    NEGATIVE_ACTIONS,
    POSTS,
    USER_NEWS_FEED,
    USERS,
    C,
    truth_column,
)
from warehouse.contracts.expectations import Contract, after, between, equal, expect, never
from warehouse.contracts.report import ContractReport

MODEL_VERSIONS = "model_versions"  # the frame of registered versions (one column: version)
FEED_SIZE = "feed_size"  # suite parameter: the most items a user's feed may hold
POOL_HOURS = "pool_hours"  # suite parameter: the oldest post a feed may serve, in hours
_EXPECTED_RANK = "_expected_rank"  # row_number of the user's items by rank
_USER_ITEMS = "_user_items"
_SEEN = "_seen_before"  # served to the user before generated_at
_PUSHED_AWAY = "_hidden_or_reported"  # the user hid or reported it before generated_at
_CREATED_AT = "_post_created_at"
_POST_AGE_H = "_post_age_hours"  # generated_at - the post's created_at
_OWN_POST = "_own_post"  # the post's author is the user (a person's author id is theirs)
_IN_USERS = "_in_users"
_KNOWN_VERSION = "_model_version_registered"


def _rules() -> list[Any]:
    pair = [C.USER_ID, C.POST_ID]
    checks = [
        equal(C.RANK, _EXPECTED_RANK, "rank runs 1..n within each user"),
        between(_USER_ITEMS, 1, {"$PARAMETER": FEED_SIZE}),
        expect(
            "ExpectCompoundColumnsToBeUnique",
            [C.POST_ID],
            "(user_id, post_id) unique: a post once per feed",
            show=pair,
            column_list=pair,
        ),
        never(
            _SEEN,
            [C.POST_ID],
            "post not served to the user before generated_at",
            show=[*pair, C.GENERATED_AT],
        ),
        never(_PUSHED_AWAY, [C.POST_ID], "post not hidden or reported by the user", show=pair),
        never(_OWN_POST, [C.POST_ID], "post not the user's own", show=pair),
        expect(
            "ExpectColumnValuesToNotBeNull",
            [C.POST_ID],
            f"post_id exists in {POSTS.qualified}",
            show=pair,
            column=_CREATED_AT,
        ),
        expect(
            "ExpectColumnValuesToNotBeNull",
            [C.USER_ID],
            f"user_id exists in {USERS.qualified}",
            show=[C.USER_ID],
            column=_IN_USERS,
        ),
    ]
    checks.append(after(C.GENERATED_AT, _CREATED_AT, "post created before generated_at"))
    checks.append(
        expect(
            "ExpectColumnValuesToBeBetween",
            [C.POST_ID],
            f"post still servable: created at most ${POOL_HOURS} h before generated_at",
            show=[*pair, _POST_AGE_H],
            column=_POST_AGE_H,
            max_value={"$PARAMETER": POOL_HOURS},
        )
    )
    checks.append(
        expect(
            "ExpectColumnValuesToBeInSet",
            [C.MODEL_VERSION],
            "model_version is a version of the registered ranker",
            show=[C.MODEL_VERSION],
            column=_KNOWN_VERSION,
            value_set=[True],
        )
    )
    checks += [between(truth_column(a), 0.0, 1.0) for a in ACTIONS]
    checks.append(between(C.E_DWELL_S, 0.0))
    return checks


def _derive(df, frames: Mapping[str, Any]):
    by_user = Window.partitionBy(C.USER_ID)
    df = df.withColumns(
        {
            _EXPECTED_RANK: F.row_number().over(by_user.orderBy(C.RANK, C.POST_ID)),
            _USER_ITEMS: F.count(F.lit(1)).over(by_user),
        }
    )
    author = "_post_author_id"
    posts = (
        frames[POSTS.name]
        .select(C.POST_ID, F.col(C.CREATED_AT).alias(_CREATED_AT), F.col(C.AUTHOR_ID).alias(author))
        .dropDuplicates([C.POST_ID])
    )
    person = "_user_is_person_author"
    users = (
        frames[USERS.name]
        .select(C.USER_ID, F.lit(True).alias(_IN_USERS), F.col(C.IS_PERSON_AUTHOR).alias(person))
        .dropDuplicates([C.USER_ID])
    )
    pairs = df.select(C.USER_ID, C.POST_ID, C.GENERATED_AT).distinct()
    served = frames[IMPRESSIONS.name].select(C.USER_ID, C.POST_ID, F.col(C.SERVED_AT).alias("_t"))
    seen = _before(pairs, served, _SEEN)
    negative = frames[ENGAGEMENTS.name].where(F.col(C.ACTION).isin(*NEGATIVE_ACTIONS))
    pushed = _before(
        pairs, negative.select(C.USER_ID, C.POST_ID, F.col(C.EVENT_TS).alias("_t")), _PUSHED_AWAY
    )
    versions = frames[MODEL_VERSIONS].select(
        F.col("version").alias(C.MODEL_VERSION), F.lit(True).alias(_KNOWN_VERSION)
    )
    df = df.join(posts, C.POST_ID, "left").join(users, C.USER_ID, "left")
    df = df.join(seen, [C.USER_ID, C.POST_ID], "left").join(pushed, [C.USER_ID, C.POST_ID], "left")
    df = df.join(F.broadcast(versions.distinct()), C.MODEL_VERSION, "left")
    age_s = F.col(C.GENERATED_AT).cast("double") - F.col(_CREATED_AT).cast("double")
    own = F.coalesce(F.col(person), F.lit(False)) & (F.col(author) == F.col(C.USER_ID))
    df = df.withColumns({_POST_AGE_H: age_s / 3600.0, _OWN_POST: own})
    return df.fillna({_SEEN: False, _PUSHED_AWAY: False, _KNOWN_VERSION: False}).drop(
        author, person
    )


def _before(pairs, events, flag: str):
    """(user_id, post_id, flag=True) of the feed's pairs with an event (`_t`) before the
    feed's generated_at."""
    return (
        pairs.join(events, [C.USER_ID, C.POST_ID])
        .where(F.col("_t") < F.col(C.GENERATED_AT))
        .select(C.USER_ID, C.POST_ID, F.lit(True).alias(flag))
        .distinct()
    )


FEED_CONTRACT = Contract(
    (POSTS.name, USERS.name, IMPRESSIONS.name, ENGAGEMENTS.name, MODEL_VERSIONS), _rules, _derive
)


def check_feed_partition(
    ds: str, frames: Mapping[str, Any], feed_size: int, *, pool_hours: int
) -> ContractReport:
    """Run the feed contract on gold.user_news_feed ds: frames holds the partition, the posts
    its items may come from (the serving pool's days), raw.users ds, the impressions and
    engagements of the pool's days (what the users saw and pushed away before
    generated_at), and the registry's versions of the ranker (a frame with one column,
    `version`). `pool_hours` is how old a post the feeds may serve."""
    from warehouse.contracts.validate import run_contract

    params = {FEED_SIZE: feed_size, POOL_HOURS: float(pool_hours)}
    return run_contract(USER_NEWS_FEED, ds, FEED_CONTRACT, frames, params)
