"""The point-in-time rule, and the as-of lookups every family builds on.

An impression served at t is joined to the snapshot at `as_of`, the latest hour boundary
strictly before t (t exactly on the hour -> the previous hour). A snapshot at as_of reads only
events with a timestamp < as_of, so nothing at or after the impression can leak into it.
Snapshots are computed only for the (entity, as_of) pairs the impressions ask for.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features.registry import AS_OF, BUCKET
from warehouse.catalog import C

_US_PER_H = 3_600_000_000


def graph_cutoff(ds: str) -> dt.datetime:
    """PageRank and IDF use what was known an hour before ds began: an impression at
    00:00:00 has its features as of 23:00 the day before."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    return start - dt.timedelta(hours=1)


def as_of_time(ts: dt.datetime) -> dt.datetime:
    """as_of_col for one time: the latest hour boundary strictly before ts."""
    earlier = ts - dt.timedelta(microseconds=1)
    return earlier.replace(minute=0, second=0, microsecond=0)


def serving_cutoff(generated_at: dt.datetime) -> dt.datetime:
    """graph_cutoff for candidates served at generated_at: that of the day of their as_of,
    the cutoff the training set's impressions with the same as_of were built with."""
    return graph_cutoff(as_of_time(generated_at).date().isoformat())


def as_of_col(ts: str):
    """date_trunc('hour', ts - 1us): timestamps are microseconds, so this is the latest hour
    boundary strictly before ts."""
    return F.date_trunc("hour", F.col(ts) - F.expr("INTERVAL 1 MICROSECOND"))


def with_as_of(impressions: DataFrame, served_at: str = C.SERVED_AT) -> DataFrame:
    """impressions + `as_of`."""
    return impressions.withColumn(AS_OF, as_of_col(served_at))


def bucket_col(ts: str):
    """The event's hour. bucket < as_of <=> ts < as_of, since as_of is on the hour."""
    return F.date_trunc("hour", F.col(ts))


def hours_between(later, earlier):
    """(later - earlier) in hours, as a double, from microsecond timestamps."""
    return (F.unix_micros(later) - F.unix_micros(earlier)) / F.lit(float(_US_PER_H))


def minus_hours(ts, hours: int):
    return F.timestamp_micros(F.unix_micros(ts) - F.lit(hours * _US_PER_H))


def needed(impressions_as_of: DataFrame, keys: Sequence[str]) -> DataFrame:
    """The distinct (keys, as_of) snapshots the impressions need (request-driven)."""
    return impressions_as_of.select(*keys, AS_OF).distinct()


def latest_snapshot(df: DataFrame, key: Sequence[str], ds: str = C.DS) -> DataFrame:
    """One row per key from the latest `ds` partition of a snapshot table (users, authors).

    Dimension attributes are treated as static; a table without `ds` is deduplicated as is.
    """
    if ds not in df.columns:
        return df.dropDuplicates(list(key))
    rest = [c for c in df.columns if c not in key and c != ds]
    latest = F.max_by(F.struct(*rest), F.col(ds)).alias("_s")
    return df.groupBy(*key).agg(latest).select(*key, "_s.*")


def follow_edges(follows: DataFrame, ds: str = C.DS) -> DataFrame:
    """One row per (follower, followee) from the daily graph snapshots: the first created_at,
    the close-friend flag of the latest snapshot (one aggregation, no self-join)."""
    key = [C.FOLLOWER_ID, C.FOLLOWEE_ID]
    close = F.col(C.IS_CLOSE_FRIEND)
    latest = F.max_by(close, F.col(ds)) if ds in follows.columns else F.max(close)
    return follows.groupBy(*key).agg(
        latest.alias(C.IS_CLOSE_FRIEND), F.min(C.CREATED_AT).alias(C.CREATED_AT)
    )


def asof_sums(
    requests: DataFrame,
    events: DataFrame,
    keys: Sequence[str],
    ts: str,
    values: Sequence[str],
    lags_h: Sequence[int] = (0,),
) -> DataFrame:
    """For each request (keys, as_of) and lag L: sum of each value over events with
    ts < as_of - L; columns `{value}__{L}`. Window sums are differences of two lags.

    A running sum per key over requests and events sorted by time (requests first on ties,
    which makes `<` strict) costs a sort per key whatever the window length, unlike a range
    join whose rows grow with window x requests.
    """
    keys = list(keys)
    req = requests.select(*keys, AS_OF).distinct()
    req = req.withColumn("_lag", F.explode(F.array(*[F.lit(int(L)) for L in lags_h])))
    req = req.select(
        *keys,
        AS_OF,
        "_lag",
        F.timestamp_micros(F.unix_micros(AS_OF) - F.col("_lag") * _US_PER_H).alias("_ts"),
        F.lit(0).alias("_flag"),
        *[F.lit(0.0).alias(v) for v in values],
    )
    ev = events.select(
        *keys,
        F.lit(None).cast("timestamp").alias(AS_OF),
        F.lit(None).cast("int").alias("_lag"),
        F.col(ts).alias("_ts"),
        F.lit(1).alias("_flag"),
        *[F.col(v).cast("double").alias(v) for v in values],
    )
    w = (
        Window.partitionBy(*keys)
        .orderBy("_ts", "_flag")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    run = req.unionByName(ev).select(
        *keys, AS_OF, "_lag", "_flag", *[F.sum(v).over(w).alias(v) for v in values]
    )
    aggs = [
        F.sum(F.when(F.col("_lag") == L, F.col(v))).alias(f"{v}__{L}")
        for v in values
        for L in lags_h
    ]
    return run.where(F.col("_flag") == 0).groupBy(*keys, AS_OF).agg(*aggs)


@dataclasses.dataclass(frozen=True)
class AsofPart:
    """What one family reads from a shared as-of pass (asof_pass): its events, their time
    column, its value columns (output name -> Column or column of events) and its lags."""

    events: DataFrame
    ts: str
    values: Mapping[str, object]
    lags_h: tuple[int, ...] = (0,)


def asof_pass(requests: DataFrame, keys: Sequence[str], parts: Sequence[AsofPart]) -> DataFrame:
    """asof_sums of several families' events of the same keys in one running sum: per request
    (keys, as_of), `{value}__{L}` for each part's values and the union of the lags.

    Each part's rows carry its own values and 0 in the others' columns, so every value's
    running sum is the one asof_sums gives for that part alone: the other rows add exact
    zeros (the values are counts, exact in a double). One sort per key instead of one per
    family (Chronon's one pass per group-by over every window and aggregation).
    """
    names = [n for p in parts for n in p.values]
    if len(set(names)) != len(names):
        raise ValueError(f"asof_pass: value names repeat across parts: {names}")
    keys = list(keys)
    rows = []
    for p in parts:
        own = {n: F.col(c) if isinstance(c, str) else c for n, c in p.values.items()}
        rows.append(
            p.events.select(
                *keys,
                F.col(p.ts).alias("_pass_ts"),
                *[own.get(n, F.lit(0)).cast("double").alias(n) for n in names],
            )
        )
    events = functools.reduce(DataFrame.unionByName, rows)
    lags = sorted({L for p in parts for L in p.lags_h})
    return asof_sums(requests, events, keys, "_pass_ts", names, lags)


def windowed(value: str, lag_h: int):
    """The sum of `value` over [as_of - lag, as_of) from asof_sums' columns."""
    return F.col(f"{value}__0") - F.col(f"{value}__{lag_h}")


def hourly(events: DataFrame, keys: Sequence[str], ts: str, values: dict) -> DataFrame:
    """Events summed per (keys, hour bucket); `values` maps an output name to a Column."""
    agg = [F.sum(col).alias(name) for name, col in values.items()]
    return events.withColumn(BUCKET, bucket_col(ts)).groupBy(*keys, BUCKET).agg(*agg)
