"""What each raw table must satisfy: its expectations, and the derived frame they run on.

Cross-table rules run on columns that `derive` adds in Spark: a left join to a reference
adds an `_in_<table>` marker (null where the reference has no such row) and the reference's
columns the rule compares with. So "the engagement's impression exists" is a not-null
expectation on `_in_impressions`, and "after it was served" a column-pair expectation on
(event_ts, _imp_served_at): no value lists shipped to the executors, one frame per table.

Expectations carry, in their meta, the columns a failure names, the rule in words and the
columns its sample rows quote, so the result of a run is enough to word a failure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyspark.sql import functions as F

from warehouse.catalog import (
    ACTIONS,
    AGE_BUCKETS,
    AUTHOR_KINDS,
    AUTHORS,
    COUNTRIES,
    DEVICES,
    ENGAGEMENTS,
    FOLLOWS,
    GENDERS,
    IMPRESSIONS,
    MEDIA_TYPES,
    POSTS,
    SOURCES,
    USERS,
    C,
    Table,
    table,
)
from warehouse.contracts.report import qualified

MAX_DWELL_S = 3600.0  # a click read for over an hour is a logging bug, not a reader
_CLICK = "click"


class D:
    """Columns the contracts derive; the leading underscore keeps them apart from the catalog."""

    IN_USERS = "_in_users"  # True where the row's user (or follower) is in users
    IN_AUTHORS = "_in_authors"  # True where the row's author (or followee) is in authors
    IN_POSTS = "_in_posts"  # True where the impression's post is in the serving pool's posts
    IN_IMPRESSIONS = "_in_impressions"  # True where the engagement's impression is in ds's
    POST_CREATED_AT = "_post_created_at"  # the impression's post's created_at
    POST_AUTHOR_ID = "_post_author_id"  # the impression's post's author_id
    IMP_SERVED_AT = "_imp_served_at"  # the engagement's impression's served_at
    IMP_USER_ID = "_imp_user_id"  # the engagement's impression's user_id
    IMP_POST_ID = "_imp_post_id"  # the engagement's impression's post_id
    DWELL_IFF_CLICK = "_dwell_iff_click"  # dwell_s is set exactly when action is a click
    JOIN_KEY = "_join_key"  # transient: the reference's key while joining


# Suite parameters: suites are built once per process, a day's bounds come with each run.
# A rule's words name them as $day_start etc., filled in when a failure is described.
DAY_START, DAY_END, LATE_END = "day_start", "day_end", "late_end"
# Meta keys of an expectation: the columns a failure names, the rule, the columns quoted.
COLUMNS, RULE, SHOW = "columns", "rule", "show"


def window(ds: str, max_engagement_delay_s: int) -> dict[str, dt.datetime]:
    """The suite parameters of ds, in UTC. Aware datetimes: Spark reads naive ones in the
    OS time zone, not the session's."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    late = end + dt.timedelta(seconds=max_engagement_delay_s)
    return {DAY_START: start, DAY_END: end, LATE_END: late}


# --- expectations ----------------------------------------------------------------------------


def _expect(kind: str, columns: Sequence[str], rule: str, show=(), **kwargs) -> Any:
    """An instance of GX expectation class `kind`; `show` defaults to `columns`."""
    import great_expectations as gx  # slow to import; REFERENCES readers need not pay it

    meta = {COLUMNS: list(columns), RULE: rule, SHOW: list(show or columns)}
    return getattr(gx.expectations, kind)(meta=meta, **kwargs)


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def _in_set(column: str, values: Sequence[str]) -> Any:
    rule = f"{column} in {sorted(values)}"
    kind = "ExpectColumnValuesToBeInSet"
    return _expect(kind, [column], rule, column=column, value_set=list(values))


def _between(column: str, low: Any = None, high: Any = None, *, strict_max=False) -> Any:
    def text(value):
        return f"${value['$PARAMETER']}" if isinstance(value, dict) else str(value)

    rule = column if low is None else f"{text(low)} <= {column}"
    rule = rule if high is None else f"{rule} {'<' if strict_max else '<='} {text(high)}"
    return _expect(
        "ExpectColumnValuesToBeBetween",
        [column],
        rule,
        column=column,
        min_value=low,
        max_value=high,
        strict_max=strict_max,
    )


def _exists(column: str, marker: str, reference: Table) -> Any:
    rule = f"{column} exists in {qualified(reference.name)}"
    return _expect("ExpectColumnValuesToNotBeNull", [column], rule, column=marker)


def _pair(kind: str, column: str, other: str, rule: str, **kwargs) -> Any:
    """A rule on (column, other); a row missing either is another rule's business."""
    return _expect(
        kind,
        [column],
        rule,
        show=[column, other],
        column_A=column,
        column_B=other,
        ignore_row_if="either_value_is_missing",
        **kwargs,
    )


def _after(column: str, other: str, rule: str) -> Any:
    """column > other, strictly."""
    kind = "ExpectColumnPairValuesAToBeGreaterThanB"
    return _pair(kind, column, other, rule, or_equal=False)


def _equal(column: str, other: str, rule: str) -> Any:
    return _pair("ExpectColumnPairValuesToBeEqual", column, other, rule)


def _common(t: Table) -> list[Any]:
    """Every table: at least one row, key and non-nullable fields set, key unique."""
    fields = t.schema if t.schema is not None else []  # silver: the producer owns the schema
    required = [*t.key, *(f.name for f in fields if not f.nullable and f.name not in t.key)]
    checks = [_expect("ExpectTableRowCountToBeBetween", [], "at least 1 row", min_value=1)]
    for c in required:
        checks.append(_expect("ExpectColumnValuesToNotBeNull", [c], f"{c} set", column=c))
    if len(t.key) == 1:
        rule = f"{t.key[0]} unique"
        checks.append(_expect("ExpectColumnValuesToBeUnique", t.key, rule, column=t.key[0]))
    else:
        rule = f"({', '.join(t.key)}) unique"
        checks.append(_expect("ExpectCompoundColumnsToBeUnique", t.key, rule, column_list=t.key))
    return checks


def _snapshot_rules() -> list[Any]:
    """A snapshot at the end of ds holds no rows created later."""
    return [_between(C.CREATED_AT, high=_param(DAY_END), strict_max=True)]


def _users_rules() -> list[Any]:
    sets = [(C.COUNTRY, COUNTRIES), (C.AGE_BUCKET, AGE_BUCKETS), (C.GENDER, GENDERS)]
    sets.append((C.PRIMARY_DEVICE, DEVICES))
    return [*(_in_set(c, values) for c, values in sets), *_snapshot_rules()]


def _authors_rules() -> list[Any]:
    return [_in_set(C.KIND, AUTHOR_KINDS), *_snapshot_rules()]


def _follows_rules() -> list[Any]:
    return [
        *_snapshot_rules(),
        _exists(C.FOLLOWER_ID, D.IN_USERS, USERS),
        _exists(C.FOLLOWEE_ID, D.IN_AUTHORS, AUTHORS),
    ]


def _posts_rules() -> list[Any]:
    return [
        _between(C.CREATED_AT, _param(DAY_START), _param(DAY_END), strict_max=True),
        _in_set(C.MEDIA_TYPE, MEDIA_TYPES),
        _between(C.LENGTH, 0),
        _exists(C.AUTHOR_ID, D.IN_AUTHORS, AUTHORS),
    ]


def _impressions_rules() -> list[Any]:
    return [
        _between(C.SERVED_AT, _param(DAY_START), _param(DAY_END), strict_max=True),
        _between(C.POSITION, 0),
        _in_set(C.DEVICE, DEVICES),
        _in_set(C.SOURCE, SOURCES),
        _exists(C.POST_ID, D.IN_POSTS, POSTS),
        _after(C.SERVED_AT, D.POST_CREATED_AT, "served_at > its post's created_at"),
        _equal(C.AUTHOR_ID, D.POST_AUTHOR_ID, "author_id = its post's author_id"),
        _exists(C.USER_ID, D.IN_USERS, USERS),
        _exists(C.AUTHOR_ID, D.IN_AUTHORS, AUTHORS),
    ]


def _engagements_rules() -> list[Any]:
    iff_click = _expect(
        "ExpectColumnValuesToBeInSet",
        [C.DWELL_S],
        f"dwell_s set exactly when action = {_CLICK!r}",
        show=[C.ACTION, C.DWELL_S],
        column=D.DWELL_IFF_CLICK,
        value_set=[True],
    )
    return [
        _in_set(C.ACTION, ACTIONS),
        _between(C.EVENT_TS, _param(DAY_START), _param(LATE_END), strict_max=True),
        _between(C.DWELL_S, 0.0, MAX_DWELL_S),
        iff_click,
        _exists(C.IMPRESSION_ID, D.IN_IMPRESSIONS, IMPRESSIONS),
        _after(C.EVENT_TS, D.IMP_SERVED_AT, "event_ts > its impression's served_at"),
        _equal(C.USER_ID, D.IMP_USER_ID, "user_id = its impression's user_id"),
        _equal(C.POST_ID, D.IMP_POST_ID, "post_id = its impression's post_id"),
    ]


# --- derived frames --------------------------------------------------------------------------


def _attach(df, ref, *, on: str, ref_key: str, marker: str, **carry: str):
    """Left-join ref where df.on == ref.ref_key: `marker` is True where a row matched, and
    carry names new columns after ref's columns. One ref row per key keeps df's row count:
    a duplicate in the reference is the reference's failure, not df's."""
    right = ref.select(
        F.col(ref_key).alias(D.JOIN_KEY),
        F.lit(True).alias(marker),
        *(F.col(src).alias(dst) for dst, src in carry.items()),
    ).dropDuplicates([D.JOIN_KEY])
    return df.join(right, F.col(on) == F.col(D.JOIN_KEY), "left").drop(D.JOIN_KEY)


def _derive_follows(df, frames):
    df = _attach(df, frames[USERS.name], on=C.FOLLOWER_ID, ref_key=C.USER_ID, marker=D.IN_USERS)
    authors = frames[AUTHORS.name]
    return _attach(df, authors, on=C.FOLLOWEE_ID, ref_key=C.AUTHOR_ID, marker=D.IN_AUTHORS)


def _derive_posts(df, frames):
    authors = frames[AUTHORS.name]
    return _attach(df, authors, on=C.AUTHOR_ID, ref_key=C.AUTHOR_ID, marker=D.IN_AUTHORS)


def _derive_impressions(df, frames):
    post = {D.POST_CREATED_AT: C.CREATED_AT, D.POST_AUTHOR_ID: C.AUTHOR_ID}
    posts, users, authors = (frames[t.name] for t in (POSTS, USERS, AUTHORS))
    df = _attach(df, posts, on=C.POST_ID, ref_key=C.POST_ID, marker=D.IN_POSTS, **post)
    df = _attach(df, users, on=C.USER_ID, ref_key=C.USER_ID, marker=D.IN_USERS)
    return _attach(df, authors, on=C.AUTHOR_ID, ref_key=C.AUTHOR_ID, marker=D.IN_AUTHORS)


def _derive_engagements(df, frames):
    imp = {D.IMP_SERVED_AT: C.SERVED_AT, D.IMP_USER_ID: C.USER_ID, D.IMP_POST_ID: C.POST_ID}
    impressions = frames[IMPRESSIONS.name]
    key = C.IMPRESSION_ID
    df = _attach(df, impressions, on=key, ref_key=key, marker=D.IN_IMPRESSIONS, **imp)
    # Null where action is null: that row already fails action's not-null rule.
    iff = F.col(C.DWELL_S).isNotNull() == (F.col(C.ACTION) == _CLICK)
    return df.withColumn(D.DWELL_IFF_CLICK, iff)


@dataclasses.dataclass(frozen=True)
class Contract:
    """One raw table's contract."""

    references: tuple[str, ...]  # tables `derive` joins to, besides the partition itself
    rules: Callable[[], list[Any]]  # the table's own expectations, after the common ones
    derive: Callable[[Any, Mapping[str, Any]], Any] = lambda df, frames: df  # (partition, frames)

    def expectations(self, table_name: str) -> list[Any]:
        return [*_common(table(table_name)), *self.rules()]


CONTRACTS: dict[str, Contract] = {
    USERS.name: Contract((), _users_rules),
    AUTHORS.name: Contract((), _authors_rules),
    FOLLOWS.name: Contract((USERS.name, AUTHORS.name), _follows_rules, _derive_follows),
    POSTS.name: Contract((AUTHORS.name,), _posts_rules, _derive_posts),
    IMPRESSIONS.name: Contract(
        (POSTS.name, USERS.name, AUTHORS.name), _impressions_rules, _derive_impressions
    ),
    ENGAGEMENTS.name: Contract((IMPRESSIONS.name,), _engagements_rules, _derive_engagements),
}

# The tables each raw table's contract reads besides its own partition. All are ds's
# partition (users and authors: the snapshot at the end of ds), except the posts of the
# impressions' contract: the serving pool, ds - pool_days .. ds. See `reference_days`.
REFERENCES: dict[str, tuple[str, ...]] = {name: c.references for name, c in CONTRACTS.items()}


def reference_days(table_name: str, reference: str, ds: str, *, pool_days: int) -> tuple[str, ...]:
    """The ds partitions of `reference` that the contract of `table_name` on ds reads."""
    if reference not in REFERENCES[table_name]:
        raise KeyError(f"{table_name}'s contract reads {REFERENCES[table_name]}, not {reference!r}")
    if (table_name, reference) != (IMPRESSIONS.name, POSTS.name):
        return (ds,)
    day = dt.date.fromisoformat(ds)
    return tuple(str(day - dt.timedelta(days=n)) for n in range(pool_days, -1, -1))
