"""Data contracts: a valid day passes; each kind of corruption is caught and named."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest

from warehouse.catalog import (
    AUTHORS,
    ENGAGEMENTS,
    FOLLOWS,
    IMPRESSIONS,
    POSTS,
    RAW_TABLES,
    USERS,
    C,
    Table,
    table,
)
from warehouse.contracts import (
    REFERENCES,
    CheckFailure,
    ContractReport,
    DataContractError,
    check_raw_partition,
    enforce,
    enforce_all,
    reference_days,
)

DS = "2026-01-05"
DELAY_S = 3600  # SimulatorSettings.max_engagement_delay_s


def ts(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """A UTC instant in January 2026."""
    return dt.datetime(2026, 1, day, hour, minute, second, tzinfo=dt.UTC)


# How the chronological policy served an impression outside the closed loop.
CHRONO = {C.BUCKET: "control", C.POLICY: "chronological", C.PROPENSITY: 1.0}

# A valid day, 2026-01-05. Users 0 and 1 and authors 0 (a person) and 100 (a page) exist by the
# end of the day; post 10 is created on the day and post 11 two days earlier, so it is still in
# the 3-day serving pool. Each impression is served on the day, after its post was created, to
# a known user, with the post's author. The click has a dwell and the others none; each
# engagement comes after its impression, the share past midnight but within the 1-hour delay.
# Boundaries on purpose: user 1 is created a minute before midnight, impression 1002 is served
# in the day's last second, post 11 has length 0, and nullable fields hold a few nulls.
VALID: dict[str, list[dict]] = {
    USERS.name: [
        {C.USER_ID: 0, C.CREATED_AT: ts(1, 0), C.COUNTRY: "us", C.AGE_BUCKET: "18-24",
         C.GENDER: "f", C.PRIMARY_DEVICE: "mobile", C.IS_PERSON_AUTHOR: True},
        {C.USER_ID: 1, C.CREATED_AT: ts(5, 23, 59), C.COUNTRY: "br", C.AGE_BUCKET: "55+",
         C.GENDER: None, C.PRIMARY_DEVICE: "desktop", C.IS_PERSON_AUTHOR: False},
    ],
    AUTHORS.name: [
        {C.AUTHOR_ID: 0, C.KIND: "person", C.CREATED_AT: ts(1, 0), C.VERIFIED: False},
        {C.AUTHOR_ID: 100, C.KIND: "page", C.CREATED_AT: ts(2, 12), C.VERIFIED: True},
    ],
    FOLLOWS.name: [
        {C.FOLLOWER_ID: 1, C.FOLLOWEE_ID: 0, C.CREATED_AT: ts(3, 8), C.IS_CLOSE_FRIEND: True},
        {C.FOLLOWER_ID: 1, C.FOLLOWEE_ID: 100, C.CREATED_AT: ts(5, 9), C.IS_CLOSE_FRIEND: False},
        {C.FOLLOWER_ID: 0, C.FOLLOWEE_ID: 100, C.CREATED_AT: ts(4, 9)},
    ],
    POSTS.name: [
        {C.POST_ID: 10, C.AUTHOR_ID: 0, C.CREATED_AT: ts(5, 1), C.TOPIC: 3,
         C.HASHTAGS: ["#a"], C.MEDIA_TYPE: "text", C.LENGTH: 120, C.HAS_URL: False},
    ],
    IMPRESSIONS.name: [
        {C.IMPRESSION_ID: 1000, C.REQUEST_ID: 500, C.USER_ID: 1, C.POST_ID: 10, C.AUTHOR_ID: 0,
         C.SERVED_AT: ts(5, 10), C.POSITION: 0, C.DEVICE: "mobile", C.SOURCE: "network",
         **CHRONO},
        {C.IMPRESSION_ID: 1001, C.REQUEST_ID: 500, C.USER_ID: 1, C.POST_ID: 11,
         C.AUTHOR_ID: 100, C.SERVED_AT: ts(5, 10), C.POSITION: 1, C.DEVICE: "mobile",
         C.SOURCE: "popular", **CHRONO},
        {C.IMPRESSION_ID: 1002, C.REQUEST_ID: 501, C.USER_ID: 0, C.POST_ID: 11,
         C.AUTHOR_ID: 100, C.SERVED_AT: ts(5, 23, 59, 59), C.POSITION: 0, C.DEVICE: "desktop",
         C.SOURCE: "network", **CHRONO},
    ],
    ENGAGEMENTS.name: [
        {C.IMPRESSION_ID: 1000, C.USER_ID: 1, C.POST_ID: 10, C.ACTION: "click",
         C.EVENT_TS: ts(5, 10, 0, 30), C.DWELL_S: 42.0},
        {C.IMPRESSION_ID: 1000, C.USER_ID: 1, C.POST_ID: 10, C.ACTION: "like",
         C.EVENT_TS: ts(5, 10, 1)},
        {C.IMPRESSION_ID: 1002, C.USER_ID: 0, C.POST_ID: 11, C.ACTION: "share",
         C.EVENT_TS: ts(6, 0, 30)},
    ],
}  # fmt: skip
# Post 11, two days old: in the pool the impressions are checked against, not in ds's posts.
OLDER_POSTS = [
    {C.POST_ID: 11, C.AUTHOR_ID: 100, C.CREATED_AT: ts(3, 12), C.TOPIC: 5, C.HASHTAGS: [],
     C.MEDIA_TYPE: "video", C.LENGTH: 0, C.HAS_URL: True},
]  # fmt: skip


def frame(spark, t: Table, rows: list[dict]):
    """A Spark frame of t's catalog columns, every field nullable so that tests can break it."""
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructField, StructType

    fields = [StructField(f.name, f.dataType, True) for f in from_arrow_schema(t.schema)]
    return spark.createDataFrame(
        [tuple(r.get(c) for c in t.columns) for r in rows], StructType(fields)
    )


def frames_for(spark, table_name: str, data: dict[str, list[dict]]) -> dict:
    """table_name's partition and its references. The impressions' posts reference is the
    serving pool, so it holds the older posts too."""
    rows = {name: data[name] for name in (table_name, *REFERENCES[table_name])}
    if table_name == IMPRESSIONS.name:
        rows[POSTS.name] = rows[POSTS.name] + OLDER_POSTS
    return {name: frame(spark, table(name), r) for name, r in rows.items()}


def check(spark, table_name: str, data: dict[str, list[dict]]) -> ContractReport:
    frames = frames_for(spark, table_name, data)
    return check_raw_partition(table_name, DS, frames, max_engagement_delay_s=DELAY_S)


def edit(table_name: str, row: int, **changes) -> Callable[[dict], dict]:
    """A corruption: set columns of one row of one table."""

    def apply(data: dict) -> dict:
        rows = [dict(r) for r in data[table_name]]
        rows[row].update(changes)
        return {**data, table_name: rows}

    return apply


def append(table_name: str, row: int, **changes) -> Callable[[dict], dict]:
    """A corruption: add a copy of one row of one table, with some columns changed."""

    def apply(data: dict) -> dict:
        return {**data, table_name: [*data[table_name], {**data[table_name][row], **changes}]}

    return apply


def empty(table_name: str) -> Callable[[dict], dict]:
    return lambda data: {**data, table_name: []}


@pytest.mark.spark
@pytest.mark.parametrize("table_name", sorted(REFERENCES))
def test_valid_day_passes(spark, table_name):
    frames = frames_for(spark, table_name, VALID)
    partition = frames[table_name].cache()  # the caller's cache, which the check must keep
    report = check_raw_partition(table_name, DS, frames, max_engagement_delay_s=DELAY_S)
    assert report.ok, report.describe()
    assert report.n_rows == len(VALID[table_name])
    assert report.n_checks >= 6
    enforce(report)  # does not raise
    assert partition.storageLevel.useMemory
    partition.unpersist()


@dataclasses.dataclass(frozen=True)
class Case:
    corrupt: Callable[[dict], dict]
    table: str  # the table whose contract must catch it
    column: str | None  # the column the failure names; None for a table-level rule
    expectation: str
    quoted: str  # in the message: the offending row, or what was observed


CASES = {
    "null key": Case(
        edit(IMPRESSIONS.name, 1, **{C.IMPRESSION_ID: None}),
        IMPRESSIONS.name,
        C.IMPRESSION_ID,
        "expect_column_values_to_not_be_null",
        "1 unexpected, e.g. [impression_id=None]",
    ),
    # Both copies are duplicates.
    "duplicate key": Case(
        append(USERS.name, 0, **{C.COUNTRY: "de"}),
        USERS.name,
        C.USER_ID,
        "expect_column_values_to_be_unique",
        "2 unexpected, e.g. [user_id=0; user_id=0]",
    ),
    "duplicate compound key": Case(
        append(ENGAGEMENTS.name, 1),
        ENGAGEMENTS.name,
        f"{C.IMPRESSION_ID}, {C.ACTION}",
        "expect_compound_columns_to_be_unique",
        "2 unexpected, e.g. [impression_id=1000 action='like'; impression_id=1000 action='like']",
    ),
    "out-of-set value": Case(
        edit(IMPRESSIONS.name, 0, **{C.DEVICE: "tablet"}),
        IMPRESSIONS.name,
        C.DEVICE,
        "expect_column_values_to_be_in_set",
        "[impression_id=1000 device='tablet']",
    ),
    "unknown bucket": Case(
        edit(IMPRESSIONS.name, 1, **{C.BUCKET: "treatment-2"}),
        IMPRESSIONS.name,
        C.BUCKET,
        "expect_column_values_to_be_in_set",
        "[impression_id=1001 bucket='treatment-2']",
    ),
    "propensity above 1": Case(
        edit(IMPRESSIONS.name, 2, **{C.PROPENSITY: 1.5}),
        IMPRESSIONS.name,
        C.PROPENSITY,
        "expect_column_values_to_be_between",
        "[impression_id=1002 propensity=1.5]",
    ),
    # Issue 28: off-policy estimates divide by it; 0 passed on the base code (c744a08).
    "propensity 0": Case(
        edit(IMPRESSIONS.name, 2, **{C.PROPENSITY: 0.0}),
        IMPRESSIONS.name,
        C.PROPENSITY,
        "expect_column_values_to_be_between",
        "(0.0 < propensity <= 1.0): 1 unexpected, e.g. [impression_id=1002 propensity=0.0]",
    ),
    "impression of an unknown user": Case(
        edit(IMPRESSIONS.name, 0, **{C.USER_ID: 55}),
        IMPRESSIONS.name,
        C.USER_ID,
        "expect_column_values_to_not_be_null",
        "(user_id exists in raw.users): 1 unexpected, e.g. [impression_id=1000 user_id=55]",
    ),
    "impression with another author than its post's": Case(
        edit(IMPRESSIONS.name, 0, **{C.AUTHOR_ID: 100}),
        IMPRESSIONS.name,
        C.AUTHOR_ID,
        "expect_column_pair_values_to_be_equal",
        "(author_id = its post's author_id): 1 unexpected, "
        "e.g. [impression_id=1000 author_id=100 _post_author_id=0]",
    ),
    "engagement on another post than its impression's": Case(
        edit(ENGAGEMENTS.name, 2, **{C.POST_ID: 10}),
        ENGAGEMENTS.name,
        C.POST_ID,
        "expect_column_pair_values_to_be_equal",
        "[impression_id=1002 action='share' post_id=10 _imp_post_id=11]",
    ),
    "follow by an unknown user": Case(
        edit(FOLLOWS.name, 2, **{C.FOLLOWER_ID: 55}),
        FOLLOWS.name,
        C.FOLLOWER_ID,
        "expect_column_values_to_not_be_null",
        "(follower_id exists in raw.users): 1 unexpected, e.g. [follower_id=55 followee_id=100]",
    ),
    "follow of an unknown author": Case(
        edit(FOLLOWS.name, 2, **{C.FOLLOWEE_ID: 55}),
        FOLLOWS.name,
        C.FOLLOWEE_ID,
        "expect_column_values_to_not_be_null",
        "(followee_id exists in raw.authors): 1 unexpected, e.g. [follower_id=0 followee_id=55]",
    ),
    # Issue 28: user 0 is person author 0. A page may share a number with a user: not a self.
    "self-follow": Case(
        append(FOLLOWS.name, 2, **{C.FOLLOWEE_ID: 0}),
        FOLLOWS.name,
        C.FOLLOWEE_ID,
        "expect_column_values_to_be_in_set",
        "(follower_id != followee_id (nobody follows themself)): 1 unexpected, "
        "e.g. [follower_id=0 followee_id=0]",
    ),
    "post of an unknown author": Case(
        edit(POSTS.name, 0, **{C.AUTHOR_ID: 55}),
        POSTS.name,
        C.AUTHOR_ID,
        "expect_column_values_to_not_be_null",
        "(author_id exists in raw.authors): 1 unexpected, e.g. [post_id=10 author_id=55]",
    ),
    "negative length": Case(
        edit(POSTS.name, 0, **{C.LENGTH: -1}),
        POSTS.name,
        C.LENGTH,
        "expect_column_values_to_be_between",
        "[post_id=10 length=-1]",
    ),
    # Midnight belongs to the next day.
    "served_at outside the day": Case(
        edit(IMPRESSIONS.name, 2, **{C.SERVED_AT: ts(6, 0)}),
        IMPRESSIONS.name,
        C.SERVED_AT,
        "expect_column_values_to_be_between",
        "(2026-01-05T00:00:00+00:00 <= served_at < 2026-01-06T00:00:00+00:00): 1 unexpected, "
        "e.g. [impression_id=1002 served_at=2026-01-06T00:00:00+00:00]",
    ),
    "engagement before its impression": Case(
        edit(ENGAGEMENTS.name, 0, **{C.EVENT_TS: ts(5, 9, 59)}),
        ENGAGEMENTS.name,
        C.EVENT_TS,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "[impression_id=1000 action='click' event_ts=2026-01-05T09:59:00+00:00 "
        "_imp_served_at=2026-01-05T10:00:00+00:00]",
    ),
    # Strictly after: nobody acts on an item in the instant it is served.
    "engagement at its impression's instant": Case(
        edit(ENGAGEMENTS.name, 0, **{C.EVENT_TS: ts(5, 10)}),
        ENGAGEMENTS.name,
        C.EVENT_TS,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "event_ts=2026-01-05T10:00:00+00:00 _imp_served_at=2026-01-05T10:00:00+00:00",
    ),
    # The share may pass midnight, but by less than the 1-hour delay.
    "engagement later than the delay allows": Case(
        edit(ENGAGEMENTS.name, 2, **{C.EVENT_TS: ts(6, 1)}),
        ENGAGEMENTS.name,
        C.EVENT_TS,
        "expect_column_values_to_be_between",
        "< 2026-01-06T01:00:00+00:00",
    ),
    "orphan engagement": Case(
        edit(ENGAGEMENTS.name, 2, **{C.IMPRESSION_ID: 9999}),
        ENGAGEMENTS.name,
        C.IMPRESSION_ID,
        "expect_column_values_to_not_be_null",
        "(impression_id exists in raw.impressions): 1 unexpected, "
        "e.g. [impression_id=9999 action='share']",
    ),
    "engagement by another user than its impression's": Case(
        edit(ENGAGEMENTS.name, 2, **{C.USER_ID: 1}),
        ENGAGEMENTS.name,
        C.USER_ID,
        "expect_column_pair_values_to_be_equal",
        "[impression_id=1002 action='share' user_id=1 _imp_user_id=0]",
    ),
    "impression of an unknown post": Case(
        edit(IMPRESSIONS.name, 0, **{C.POST_ID: 77}),
        IMPRESSIONS.name,
        C.POST_ID,
        "expect_column_values_to_not_be_null",
        "(post_id exists in raw.posts): 1 unexpected, e.g. [impression_id=1000 post_id=77]",
    ),
    "impression served before its post was created": Case(
        edit(IMPRESSIONS.name, 0, **{C.SERVED_AT: ts(5, 0, 30)}),
        IMPRESSIONS.name,
        C.SERVED_AT,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "served_at=2026-01-05T00:30:00+00:00 _post_created_at=2026-01-05T01:00:00+00:00",
    ),
    "dwell on a non-click": Case(
        edit(ENGAGEMENTS.name, 1, **{C.DWELL_S: 5.0}),
        ENGAGEMENTS.name,
        C.DWELL_S,
        "expect_column_values_to_be_in_set",
        "[impression_id=1000 action='like' dwell_s=5.0]",
    ),
    "future follow in a snapshot": Case(
        edit(FOLLOWS.name, 1, **{C.CREATED_AT: ts(6, 0)}),
        FOLLOWS.name,
        C.CREATED_AT,
        "expect_column_values_to_be_between",
        "[follower_id=1 followee_id=100 created_at=2026-01-06T00:00:00+00:00]",
    ),
    "empty partition": Case(
        empty(ENGAGEMENTS.name),
        ENGAGEMENTS.name,
        None,
        "expect_table_row_count_to_be_between",
        "(at least 1 row): observed 0",
    ),
}


@pytest.mark.spark
@pytest.mark.parametrize("name", list(CASES))
def test_corruption_is_caught_and_named(spark, name):
    case = CASES[name]
    report = check(spark, case.table, case.corrupt(VALID))

    # The corruption breaks that one rule and no other of the table's.
    assert [(f.table, f.column, f.expectation) for f in report.failures] == [
        (case.table, case.column, case.expectation)
    ]
    with pytest.raises(DataContractError) as raised:
        enforce(report)
    assert raised.value.failures == list(report.failures)
    message = str(raised.value)
    where = "table" if case.column is None else f"column {case.column}"
    assert f"raw.{case.table} ds={DS}: {where} failed {case.expectation} (" in message
    assert case.quoted in message


def test_enforce_all_names_every_failure_of_every_table():
    ok = ContractReport(USERS.name, DS, 2, 9, ())
    failure = CheckFailure(POSTS.name, C.LENGTH, "expect_x", 1, ("post_id=10 length=-1",), "r")
    broken = [ContractReport(t, DS, 1, 9, (dataclasses.replace(failure, table=t),)) for t in
              (POSTS.name, ENGAGEMENTS.name)]  # fmt: skip
    enforce_all([ok])  # does not raise
    with pytest.raises(DataContractError) as raised:
        enforce_all([ok, *broken])
    assert len(raised.value.failures) == 2
    assert "raw.posts ds=2026-01-05: column length failed expect_x" in str(raised.value)
    assert "raw.engagements ds=2026-01-05: column length failed expect_x" in str(raised.value)
    assert "raw.users" not in str(raised.value)


@pytest.mark.spark
def test_missing_column_fails_without_running(spark):
    frames = {name: frame(spark, table(name), VALID[name]) for name in (POSTS.name, AUTHORS.name)}
    frames[POSTS.name] = frames[POSTS.name].drop(C.LENGTH)
    report = check_raw_partition(POSTS.name, DS, frames, max_engagement_delay_s=DELAY_S)
    assert [(f.column, f.expectation) for f in report.failures] == [
        (C.LENGTH, "expect_column_to_exist")
    ]


@pytest.mark.spark
def test_missing_reference_is_refused(spark):
    frames = {ENGAGEMENTS.name: frame(spark, ENGAGEMENTS, VALID[ENGAGEMENTS.name])}
    with pytest.raises(KeyError, match="impressions"):
        check_raw_partition(ENGAGEMENTS.name, DS, frames, max_engagement_delay_s=DELAY_S)


def test_every_raw_table_has_a_contract():
    assert set(REFERENCES) == {t.name for t in RAW_TABLES}
    assert all(set(refs) <= set(REFERENCES) for refs in REFERENCES.values())


def test_reference_days_span_the_pool_for_the_impressions_posts_only():
    # pool_days=3: posts of the 2nd to the 5th may be served on the 5th.
    days = reference_days(IMPRESSIONS.name, POSTS.name, DS, pool_days=3)
    assert days == ("2026-01-02", "2026-01-03", "2026-01-04", DS)
    assert reference_days(IMPRESSIONS.name, USERS.name, DS, pool_days=3) == (DS,)
    assert reference_days(ENGAGEMENTS.name, IMPRESSIONS.name, DS, pool_days=3) == (DS,)
    with pytest.raises(KeyError):
        reference_days(USERS.name, POSTS.name, DS, pool_days=3)


@pytest.mark.spark
def test_each_feature_check_uses_the_rules_it_is_given(spark):
    """A second check in the same process with other rules is checked against those rules,
    not against the first call's (the suite used to be registered once per table name)."""
    from warehouse.contracts.silver import AS_OF, FeatureRules, check_feature_partition

    rows = [(1, ts(5, 10), ts(5, 9), 2.0)]  # share = 2.0: a count, but not a share
    df = spark.createDataFrame(rows, [C.IMPRESSION_ID, C.SERVED_AT, AS_OF, "share"])
    as_count = check_feature_partition(DS, df, FeatureRules(nonnegative=("share",)))
    assert as_count.ok, as_count.describe()
    as_share = check_feature_partition(DS, df, FeatureRules(unit_interval=("share",)))
    assert [(f.column, f.expectation) for f in as_share.failures] == [
        ("share", "expect_column_values_to_be_between")
    ]
    assert "[impression_id=1 share=2.0]" in as_share.describe()


@pytest.mark.spark
def test_the_feature_check_on_pandas_fails_as_on_spark(spark):
    """build_features checks a day that fits the driver on GX's pandas engine (one Spark job
    to collect it): the same checks fail, worded the same, naming table, column and rule."""
    from warehouse.contracts.silver import AS_OF, FeatureRules, check_feature_partition

    rows = [(1, ts(5, 10), ts(5, 9), 2.0, 0.5), (2, ts(5, 11), ts(5, 11), 0.5, None)]
    columns = [C.IMPRESSION_ID, C.SERVED_AT, AS_OF, "share", "unchecked"]
    df = spark.createDataFrame(rows, columns)
    rules = FeatureRules(not_null=("share",), unit_interval=("share",))
    on = {e: check_feature_partition(DS, df, rules, engine=e) for e in ("spark", "pandas")}
    assert on["pandas"].failures == on["spark"].failures
    assert on["pandas"].describe() == on["spark"].describe()
    assert (on["pandas"].n_rows, on["pandas"].n_checks) == (2, on["spark"].n_checks)
    described = on["pandas"].describe()
    assert "impression_features" in described
    assert "[impression_id=1 share=2.0]" in described  # share in [0, 1]
    assert "as_of < served_at" in described and "impression_id=2" in described
