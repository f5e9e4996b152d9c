"""Data contract of gold.user_news_feed: what a reader pages through must hold up.

Besides the common rules ((user_id, rank) unique, every column set, no NaN): ranks run 1..n
within each user without gaps, at most `feed_size` items per user, probabilities in [0, 1],
expected dwell >= 0, no post the user was served before generated_at, no post created after
generated_at, and a model version the registry knows. The cross-table rules are plain column
rules on a derived frame: the partition with the posts' created_at, the users' earlier
impressions and the registry's versions joined in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import Window
from pyspark.sql import functions as F

from warehouse.catalog import ACTIONS, IMPRESSIONS, POSTS, USER_NEWS_FEED, C, truth_column
from warehouse.contracts.expectations import Contract, after, between, equal, expect
from warehouse.contracts.report import ContractReport

MODEL_VERSIONS = "model_versions"  # the frame of registered versions (one column: version)
FEED_SIZE = "feed_size"  # suite parameter: the most items a user's feed may hold
_EXPECTED_RANK = "_expected_rank"  # row_number of the user's items by rank
_USER_ITEMS = "_user_items"
_SEEN = "_seen_before"  # served to the user before generated_at
_CREATED_AT = "_post_created_at"
_KNOWN_VERSION = "_model_version_registered"


def _rules() -> list[Any]:
    checks = [
        equal(C.RANK, _EXPECTED_RANK, "rank runs 1..n within each user"),
        between(_USER_ITEMS, 1, {"$PARAMETER": FEED_SIZE}),
        expect(
            "ExpectColumnValuesToBeInSet",
            [C.POST_ID],
            "post not served to the user before generated_at",
            show=[C.USER_ID, C.POST_ID, C.GENERATED_AT],
            column=_SEEN,
            value_set=[False],
        ),
        expect(
            "ExpectColumnValuesToNotBeNull",
            [C.POST_ID],
            f"post_id exists in {POSTS.qualified}",
            show=[C.USER_ID, C.POST_ID],
            column=_CREATED_AT,
        ),
    ]
    checks.append(after(C.GENERATED_AT, _CREATED_AT, "post created before generated_at"))
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
    posts = (
        frames[POSTS.name]
        .select(C.POST_ID, F.col(C.CREATED_AT).alias(_CREATED_AT))
        .dropDuplicates([C.POST_ID])
    )
    served = frames[IMPRESSIONS.name].select(C.USER_ID, C.POST_ID, C.SERVED_AT)
    pairs = df.select(C.USER_ID, C.POST_ID, C.GENERATED_AT).distinct()
    seen = (
        pairs.join(served, [C.USER_ID, C.POST_ID])
        .where(F.col(C.SERVED_AT) < F.col(C.GENERATED_AT))
        .select(C.USER_ID, C.POST_ID, F.lit(True).alias(_SEEN))
        .distinct()
    )
    versions = frames[MODEL_VERSIONS].select(
        F.col("version").alias(C.MODEL_VERSION), F.lit(True).alias(_KNOWN_VERSION)
    )
    df = df.join(posts, C.POST_ID, "left").join(seen, [C.USER_ID, C.POST_ID], "left")
    df = df.join(F.broadcast(versions.distinct()), C.MODEL_VERSION, "left")
    return df.fillna({_SEEN: False, _KNOWN_VERSION: False})


FEED_CONTRACT = Contract((POSTS.name, IMPRESSIONS.name, MODEL_VERSIONS), _rules, _derive)


def check_feed_partition(ds: str, frames: Mapping[str, Any], feed_size: int) -> ContractReport:
    """Run the feed contract on gold.user_news_feed ds: frames holds the partition, the posts
    its items may come from, the impressions served before generated_at, and the registry's
    versions of the ranker (a frame with one column, `version`)."""
    from warehouse.contracts.validate import run_contract

    return run_contract(USER_NEWS_FEED, ds, FEED_CONTRACT, frames, {FEED_SIZE: feed_size})
