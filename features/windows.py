"""Window counts and decayed totals by a range join of snapshots to hourly buckets.

Events are summed per (keys, hour bucket); each needed (keys, as_of) is joined to the buckets
with `as_of - lookback <= bucket < as_of` and the windows are conditional sums. Window counts
are exact: as_of and every window edge are hour boundaries, so an event lies in
[as_of - w, as_of) exactly when its bucket does.

Decay is approximate, to <= 2.6e-6 relative and always under the exact value: with T =
(as_of - bucket) in days and d = (event_ts - bucket) in days (0 <= d < 1/24), an event weighs
1/(1 + T - d) = sum_k d^k / (1 + T)^(k+1). Each bucket stores the moments m_k = sum d^k for
k < DECAY_TERMS, and the series cut after DECAY_TERMS terms is the exact weight times
1 - x^DECAY_TERMS, x = d / (1 + T) < 1/25 (T >= 1/24: a bucket is before as_of), so it errs
by under 25^-4 = 2.56e-6, from below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.pit import bucket_col, hours_between, minus_hours
from features.registry import AS_OF, BUCKET, LOOKBACK_H, WINDOWS_H

DECAY_TERMS = 4
_US_PER_DAY = 86_400_000_000


def count_col(kind: str) -> str:
    """A tile column: the events of a kind in the bucket."""
    return f"n_{kind}"


def moment_col(kind: str, k: int) -> str:
    """A tile column: sum of d^k over the bucket's events of a kind (d: days into the hour)."""
    return f"m{k}_{kind}"


def kind_buckets(
    events: DataFrame,
    keys: Sequence[str],
    kind: str,
    ts: str,
    kinds: Sequence[str],
    decay: bool,
) -> DataFrame:
    """Per (keys, bucket): the count of each kind, and its decay moments when asked."""
    d = (F.unix_micros(F.col(ts)) - F.unix_micros(bucket_col(ts))) / F.lit(float(_US_PER_DAY))
    aggs = []
    for k in kinds:
        hit = F.col(kind) == k
        aggs.append(F.sum(F.when(hit, 1).otherwise(0)).alias(count_col(k)))
        if decay:
            aggs += [
                F.sum(F.when(hit, F.pow(d, j)).otherwise(0.0)).alias(moment_col(k, j))
                for j in range(1, DECAY_TERMS)
            ]
    return events.withColumn(BUCKET, bucket_col(ts)).groupBy(*keys, BUCKET).agg(*aggs)


def range_join(
    needed: DataFrame, buckets: DataFrame, keys: Sequence[str], lookback_h: int = LOOKBACK_H
) -> DataFrame:
    """needed (keys, as_of, ...) x buckets of the same keys in [as_of - lookback, as_of).

    Inner: snapshots with no bucket are restored by the caller's left join. The bucket's keys
    are dropped; the bucket's own columns stay.
    """
    b = buckets.select(
        *[F.col(k).alias(f"_b_{k}") for k in keys], *[c for c in buckets.columns if c not in keys]
    )
    cond = [F.col(k) == F.col(f"_b_{k}") for k in keys]
    cond += [F.col(BUCKET) < F.col(AS_OF), F.col(BUCKET) >= minus_hours(F.col(AS_OF), lookback_h)]
    return needed.join(b, cond).drop(*[f"_b_{k}" for k in keys])


def _decay(kind: str) -> Column:
    days = hours_between(F.col(AS_OF), F.col(BUCKET)) / 24.0
    terms = [F.col(count_col(kind)) / (days + 1.0)]
    terms += [F.col(moment_col(kind, j)) / F.pow(days + 1.0, j + 1) for j in range(1, DECAY_TERMS)]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def window_aggs(
    joined: DataFrame,
    group: Sequence[str],
    kinds: Sequence[str],
    name: Callable[[str, str], str],
    decay_name: Callable[[str], str] | None = None,
) -> DataFrame:
    """Conditional sums over range_join's rows: name(kind, window) per kind and window, and
    decay_name(kind) when given."""
    age_h = hours_between(F.col(AS_OF), F.col(BUCKET))  # 1..lookback, whole hours
    aggs = [
        F.sum(F.when(age_h <= h, F.col(count_col(k))).otherwise(0)).alias(name(k, w))
        for k in kinds
        for w, h in WINDOWS_H.items()
    ]
    if decay_name:
        aggs += [F.sum(_decay(k)).alias(decay_name(k)) for k in kinds]
    return joined.groupBy(*group).agg(*aggs)


def fill_zero(needed: DataFrame, feats: DataFrame, keys: Sequence[str]) -> DataFrame:
    """needed left join feats; a snapshot with no event in the lookback has zero counts."""
    cols = [c for c in feats.columns if c not in (*keys, AS_OF)]
    return needed.join(feats, [*keys, AS_OF], "left").fillna(0, subset=cols)
