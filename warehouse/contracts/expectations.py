"""The building blocks of every contract: Great Expectations expectations with the meta a
failure is worded from, suite parameters, and the derived columns rules share.

An expectation carries, in its meta, the columns a failure names, the rule in words and the
columns its sample rows quote, so the result of a run is enough to word a failure. Bounds
that change per day are suite parameters ($day_start, ...), filled in by each run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import functions as F

from warehouse.catalog import C, Table
from warehouse.contracts.report import qualified

MAX_DWELL_S = 3600.0  # a click read for over an hour is a logging bug, not a reader

# Suite parameters: a day's bounds come with each run, and a rule's words name them as
# $day_start etc., filled in when a failure is described.
DAY_START, DAY_END, LATE_END = "day_start", "day_end", "late_end"
# Suite parameters that only a real log changes (warehouse.contracts.LogRules): the fewest
# rows a table may have, which dwell states are allowed, and the earliest post of the day.
MIN_ROWS, DWELL_STATES, POSTS_FROM = "min_rows", "dwell_states", "posts_from"
# The derived dwell state of a row: dwell_s set exactly on a click is "ok"; a log without
# dwell (or without it on some clicks) allows "click_without_dwell" too; never the third.
DWELL_OK, CLICK_WITHOUT_DWELL, DWELL_WITHOUT_CLICK = (
    "ok",
    "click_without_dwell",
    "dwell_without_click",
)
# Meta keys of an expectation: the columns a failure names, the rule, the columns quoted.
COLUMNS, RULE, SHOW = "columns", "rule", "show"
DWELL_IFF_CLICK = "_dwell_iff_click"  # derived: the row's dwell state (DWELL_OK, ...)
NAN_PREFIX = "_nan_"  # derived: `_nan_<col>` is True where a float column holds NaN


@dataclasses.dataclass(frozen=True)
class LogRules:
    """How a real log's raw day may differ from a simulated one; the defaults are the
    simulator's (none of these)."""

    may_be_empty: bool = False  # the table may have no row (follows: a log has no graph)
    clicks_without_dwell: bool = False  # a click may lack dwell_s (MIND has none)
    # posts of this day may be created this early (the log's first day carries the posts
    # published before the log begins); None: from the day's start
    posts_from: dt.datetime | None = None


def window(ds: str, max_engagement_delay_s: int, rules: LogRules = LogRules()) -> dict[str, Any]:
    """The suite parameters of ds, in UTC. Aware datetimes: Spark reads naive ones in the
    OS time zone, not the session's."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    late = end + dt.timedelta(seconds=max_engagement_delay_s)
    states = [DWELL_OK, CLICK_WITHOUT_DWELL] if rules.clicks_without_dwell else [DWELL_OK]
    return {
        DAY_START: start,
        DAY_END: end,
        LATE_END: late,
        MIN_ROWS: 0 if rules.may_be_empty else 1,
        DWELL_STATES: states,
        POSTS_FROM: start if rules.posts_from is None else rules.posts_from,
    }


def expect(kind: str, columns: Sequence[str], rule: str, show=(), **kwargs) -> Any:
    """An instance of GX expectation class `kind`; `show` defaults to `columns`."""
    import great_expectations as gx  # slow to import; REFERENCES readers need not pay it

    meta = {COLUMNS: list(columns), RULE: rule, SHOW: list(show or columns)}
    return getattr(gx.expectations, kind)(meta=meta, **kwargs)


def param(name: str) -> dict[str, str]:
    """A suite parameter, filled in from the run's params."""
    return {"$PARAMETER": name}


def not_null(column: str) -> Any:
    return expect("ExpectColumnValuesToNotBeNull", [column], f"{column} set", column=column)


def in_set(column: str, values: Sequence[str]) -> Any:
    rule = f"{column} in {sorted(values)}"
    return expect(
        "ExpectColumnValuesToBeInSet", [column], rule, column=column, value_set=list(values)
    )


def between(
    column: str, low: Any = None, high: Any = None, *, strict_min=False, strict_max=False
) -> Any:
    def text(value):
        return f"${value['$PARAMETER']}" if isinstance(value, dict) else str(value)

    rule = column if low is None else f"{text(low)} {'<' if strict_min else '<='} {column}"
    rule = rule if high is None else f"{rule} {'<' if strict_max else '<='} {text(high)}"
    return expect(
        "ExpectColumnValuesToBeBetween",
        [column],
        rule,
        column=column,
        min_value=low,
        max_value=high,
        strict_min=strict_min,
        strict_max=strict_max,
    )


def never(flag: str, columns: Sequence[str], rule: str, show=()) -> Any:
    """A derived boolean `flag` is never True (null: another rule's business)."""
    kind = "ExpectColumnValuesToBeInSet"
    return expect(kind, columns, rule, show=show, column=flag, value_set=[False])


def exists(column: str, marker: str, reference: Table) -> Any:
    """column's value is a key of reference: `marker` (a derived column) is set."""
    rule = f"{column} exists in {qualified(reference.name)}"
    return expect("ExpectColumnValuesToNotBeNull", [column], rule, column=marker)


def pair(kind: str, column: str, other: str, rule: str, **kwargs) -> Any:
    """A rule on (column, other); a row missing either is another rule's business."""
    return expect(
        kind,
        [column],
        rule,
        show=[column, other],
        column_A=column,
        column_B=other,
        ignore_row_if="either_value_is_missing",
        **kwargs,
    )


def after(column: str, other: str, rule: str) -> Any:
    """column > other, strictly."""
    kind = "ExpectColumnPairValuesAToBeGreaterThanB"
    return pair(kind, column, other, rule, or_equal=False)


def equal(column: str, other: str, rule: str) -> Any:
    return pair("ExpectColumnPairValuesToBeEqual", column, other, rule)


def common(t: Table) -> list[Any]:
    """Every table: at least one row, key and non-nullable fields set, key unique, and no
    NaN in a float column of the catalog (Spark orders NaN above every number, so a range
    rule alone would let it through or fail it without a row to quote)."""
    fields = t.schema if t.schema is not None else []  # silver: the producer owns the schema
    required = [*t.key, *(f.name for f in fields if not f.nullable and f.name not in t.key)]
    rule = f"at least ${MIN_ROWS} row"
    checks = [expect("ExpectTableRowCountToBeBetween", [], rule, min_value=param(MIN_ROWS))]
    checks += [not_null(c) for c in required]
    if len(t.key) == 1:
        rule = f"{t.key[0]} unique"
        checks.append(expect("ExpectColumnValuesToBeUnique", t.key, rule, column=t.key[0]))
    else:
        rule = f"({', '.join(t.key)}) unique"
        checks.append(expect("ExpectCompoundColumnsToBeUnique", t.key, rule, column_list=t.key))
    checks += [not_nan(c) for c in float_columns(t)]
    return checks


def not_nan(column: str) -> Any:
    """No NaN in column; runs on the derived `_nan_<column>` flag (see `flag_nans`)."""
    flag = NAN_PREFIX + column
    kind = "ExpectColumnValuesToBeInSet"
    return expect(kind, [column], f"{column} is not NaN", column=flag, value_set=[False])


def flag_nans(df, columns: Sequence[str]):
    """Add `_nan_<col>` for each float column: True where it is NaN, null where null."""
    return df.withColumns({NAN_PREFIX + c: F.isnan(F.col(c)) for c in columns})


def dwell_iff_click(is_click) -> Any:
    """The derived column of the dwell-with-clicks rule: the row's dwell state, DWELL_OK
    where dwell_s is set exactly when `is_click` (a Column) holds; null where is_click is
    null (another rule's failure)."""
    has_dwell = F.col(C.DWELL_S).isNotNull()
    return (
        F.when(is_click.isNull(), F.lit(None))
        .when(has_dwell == is_click, F.lit(DWELL_OK))
        .when(is_click, F.lit(CLICK_WITHOUT_DWELL))
        .otherwise(F.lit(DWELL_WITHOUT_CLICK))
    )


def dwell_iff_click_rule(click_column: str, click: str) -> Any:
    """dwell_s is set exactly on clicks (or, for a log without dwell, only on clicks),
    checked on the DWELL_IFF_CLICK column against the run's allowed states."""
    return expect(
        "ExpectColumnValuesToBeInSet",
        [C.DWELL_S],
        f"dwell_s set exactly when {click} (allowed: ${DWELL_STATES})",
        show=[click_column, C.DWELL_S],
        column=DWELL_IFF_CLICK,
        value_set=param(DWELL_STATES),
    )


def float_columns(t: Table) -> list[str]:
    """The catalog's float columns of t: the ones `not_nan` covers."""
    fields = t.schema if t.schema is not None else []
    return [f.name for f in fields if pa.types.is_floating(f.type)]


@dataclasses.dataclass(frozen=True)
class Contract:
    """One table's contract: what it reads besides its partition, its own rules (after the
    common ones), and the derived frame they run on."""

    references: tuple[str, ...]  # tables `derive` joins to, besides the partition itself
    rules: Callable[[], list[Any]]  # the table's own expectations, after the common ones
    derive: Callable[[Any, Mapping[str, Any]], Any] = lambda df, frames: df  # (partition, frames)

    def expectations(self, t: Table) -> list[Any]:
        return [*common(t), *self.rules()]
