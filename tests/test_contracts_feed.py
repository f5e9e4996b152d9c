"""The feed contract (warehouse.contracts.feeds) on tiny inline frames: a valid day's feeds
pass, and each thing a feed must never hold is caught alone and named (issue 28: on the base
code c744a08 a post twice in a feed, the user's own post, a feed of an unknown user, a hidden
post and one older than the serving pool all passed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from test_contracts import DS, OLDER_POSTS, VALID, frame, ts

from warehouse.catalog import (
    ACTIONS,
    ENGAGEMENTS,
    IMPRESSIONS,
    POSTS,
    USER_NEWS_FEED,
    USERS,
    C,
    truth_column,
)
from warehouse.contracts import DataContractError, enforce
from warehouse.contracts.feeds import MODEL_VERSIONS, check_feed_partition

pytestmark = pytest.mark.spark

GENERATED = ts(5, 23)  # the feeds of DS are generated an hour before midnight
POOL_HOURS = 72
FEED_SIZE = 3
# Post 12, by page 100, is new on the day; post 13 was created 72 h 1 min before the feeds, out
# of the 72 h pool by a minute. Post 10 is by author 0, who is user 0 (a person author).
POSTS_ROWS = [
    *VALID[POSTS.name],
    *OLDER_POSTS,
    {**OLDER_POSTS[0], C.POST_ID: 12, C.CREATED_AT: ts(5, 2)},
    {**OLDER_POSTS[0], C.POST_ID: 13, C.CREATED_AT: ts(2, 22, 59)},
]


def item(user: int, rank: int, post: int) -> dict:
    row = {C.USER_ID: user, C.RANK: rank, C.POST_ID: post, C.SCORE: 1.0 / rank, C.VALUE: 0.5}
    row |= {truth_column(a): 0.1 for a in ACTIONS}
    row |= {C.E_DWELL_S: 12.0, C.SOURCES: ["network"], C.MODEL_VERSION: "3"}
    return row | {C.GENERATED_AT: GENERATED}


# User 0 gets post 12 and post 11, which they are served only after the generation (23:59:59);
# user 1, who was served 10 and 11 at 10:00, gets post 12.
VALID_FEED = [item(0, 1, 12), item(0, 2, 11), item(1, 1, 12)]


def run(spark, feed: list[dict], engagements: list[dict] | None = None):
    frames = {
        USER_NEWS_FEED.name: frame(spark, USER_NEWS_FEED, feed),
        POSTS.name: frame(spark, POSTS, POSTS_ROWS),
        USERS.name: frame(spark, USERS, VALID[USERS.name]),
        IMPRESSIONS.name: frame(spark, IMPRESSIONS, VALID[IMPRESSIONS.name]),
        ENGAGEMENTS.name: frame(spark, ENGAGEMENTS, engagements or VALID[ENGAGEMENTS.name]),
        MODEL_VERSIONS: spark.createDataFrame([("3",)], "version string"),
    }
    return check_feed_partition(DS, frames, FEED_SIZE, pool_hours=POOL_HOURS)


def test_a_valid_feed_passes(spark):
    report = run(spark, VALID_FEED)
    assert report.ok, report.describe()
    assert report.n_rows == 3


@dataclasses.dataclass(frozen=True)
class Case:
    feed: list[dict]
    column: str
    expectation: str
    quoted: str  # in the message: the rule and the offending row
    engagements: Callable[[], list[dict]] | None = None


HIDE = {C.IMPRESSION_ID: 999, C.USER_ID: 1, C.POST_ID: 12, C.ACTION: "hide"}

CASES = {
    "the same post twice": Case(
        [*VALID_FEED, item(0, 3, 12)],
        C.POST_ID,
        "expect_compound_columns_to_be_unique",
        "((user_id, post_id) unique: a post once per feed): 2 unexpected, "
        "e.g. [user_id=0 rank=1 post_id=12; user_id=0 rank=3 post_id=12]",
    ),
    "the user's own post": Case(
        [*VALID_FEED, item(0, 3, 10)],
        C.POST_ID,
        "expect_column_values_to_be_in_set",
        "(post not the user's own): 1 unexpected, e.g. [user_id=0 rank=3 post_id=10]",
    ),
    "a user not in raw.users": Case(
        [*VALID_FEED, item(7, 1, 12)],
        C.USER_ID,
        "expect_column_values_to_not_be_null",
        "(user_id exists in raw.users): 1 unexpected, e.g. [user_id=7 rank=1]",
    ),
    "a post the user hid": Case(
        VALID_FEED,
        C.POST_ID,
        "expect_column_values_to_be_in_set",
        "(post not hidden or reported by the user): 1 unexpected, "
        "e.g. [user_id=1 rank=1 post_id=12]",
        lambda: [*VALID[ENGAGEMENTS.name], {**HIDE, C.EVENT_TS: ts(5, 12)}],
    ),
    "a post older than the serving pool": Case(
        [*VALID_FEED, item(1, 2, 13)],
        C.POST_ID,
        "expect_column_values_to_be_between",
        "(post still servable: created at most 72.0 h before generated_at): 1 unexpected, "
        "e.g. [user_id=1 rank=2 post_id=13 _post_age_hours=72.01",
    ),
    "a post the user was served before": Case(
        [*VALID_FEED, item(1, 2, 10)],
        C.POST_ID,
        "expect_column_values_to_be_in_set",
        "(post not served to the user before generated_at): 1 unexpected",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_what_a_feed_must_never_hold_is_caught_and_named(spark, name):
    case = CASES[name]
    report = run(spark, case.feed, case.engagements() if case.engagements else None)
    assert [(f.column, f.expectation) for f in report.failures] == [
        (case.column, case.expectation)
    ], report.describe()
    with pytest.raises(DataContractError) as raised:
        enforce(report)
    message = str(raised.value)
    assert f"gold.user_news_feed ds={DS}: column {case.column} failed {case.expectation}" in (
        message
    )
    assert case.quoted in message, message


def test_a_hide_after_the_generation_does_not_count(spark):
    late = [*VALID[ENGAGEMENTS.name], {**HIDE, C.EVENT_TS: ts(5, 23, 30)}]
    assert run(spark, VALID_FEED, late).ok
