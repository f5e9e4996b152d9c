"""Labels of the training set: what each viewer did after an impression, within a window.

An action counts for an impression when its event comes at most `attribution_window_s` after
served_at; dwell_s is the click's dwell, set exactly when the click label is 1. Every row also
gets `sample_u`, a uniform draw in [0, 1) hashed from (impression_id, seed): negative
downsampling keeps a row for task a when label_a = 1 or sample_u < rate, which is a Bernoulli
thinning of each task's negatives at that rate, and the same for every run with the same seed.
The window and the seed are kept as columns, so a build with other ones is told apart.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from warehouse.catalog import ACTIONS, CLICK, C, label_column

_HASH_SPAN = 1 << 53  # doubles hold integers up to 2^53 exactly: u = h mod 2^53 / 2^53


def label_columns() -> list[str]:
    return [label_column(a) for a in ACTIONS]


def sample_uniform(seed: int) -> F.Column:
    """A uniform draw in [0, 1) per impression, fixed by (impression_id, seed)."""
    hashed = F.xxhash64(F.col(C.IMPRESSION_ID), F.lit(int(seed)))
    return F.pmod(hashed, F.lit(_HASH_SPAN)).cast("double") / float(_HASH_SPAN)


def attach_labels(
    features: DataFrame,
    impressions: DataFrame,
    engagements: DataFrame,
    *,
    attribution_window_s: int,
    seed: int,
) -> DataFrame:
    """The feature rows of a day with position, source, one 0/1 label per action, dwell_s and
    sample_u. `impressions` and `engagements` are the same day's raw partitions (engagements
    are partitioned by their impression's day, so nothing later is needed)."""
    if attribution_window_s < 1:
        raise ValueError(f"attribution_window_s must be at least 1, got {attribution_window_s}")
    served = features.select(C.IMPRESSION_ID, C.SERVED_AT)
    window = F.expr(f"INTERVAL {int(attribution_window_s)} SECONDS")
    attributed = engagements.join(served, C.IMPRESSION_ID).where(
        F.col(C.EVENT_TS) <= F.col(C.SERVED_AT) + window
    )
    labels = attributed.groupBy(C.IMPRESSION_ID).agg(
        *[F.max((F.col(C.ACTION) == a).cast("tinyint")).alias(label_column(a)) for a in ACTIONS],
        F.max(F.when(F.col(C.ACTION) == CLICK, F.col(C.DWELL_S))).alias(C.DWELL_S),
    )
    context = impressions.select(C.IMPRESSION_ID, C.POSITION, C.SOURCE)
    return (
        features.join(context, C.IMPRESSION_ID, "left")
        .join(labels, C.IMPRESSION_ID, "left")
        .fillna(0, subset=label_columns())
        .withColumn(C.SAMPLE_U, sample_uniform(seed))
        .withColumn(C.ATTRIBUTION_WINDOW_S, F.lit(int(attribution_window_s)))
        .withColumn(C.SAMPLE_SEED, F.lit(int(seed)).cast("long"))
    )
