"""From gold.training_examples to model inputs: the time split, the sample, the feature frame.

* `time_split`: test is the latest days, validation the days before, training the days before
  those; never random, so no model sees its evaluation days' future.
* `sample_mask`: task a keeps every positive and the negatives whose sample_u < rate (the
  draw stored with the data), a Bernoulli thinning of its negatives at that rate.
* `feature_frame`: the columns a ranker reads, typed the same way for training and scoring:
  numbers as float64, flags as 0/1, categories from the catalog's vocabularies, topic as a
  category of (float-typed) ids; list columns become `topic_recency`.
* `load_examples`: days of gold.training_examples as model inputs (and the columns evaluation
  reads), optionally only the rows some task trains on; `with_truth` joins the oracle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from features import registry as R
from warehouse.catalog import (
    ACTIONS,
    AGE_BUCKETS,
    COUNTRIES,
    DEVICES,
    GENDERS,
    MEDIA_TYPES,
    TRAINING_EXAMPLES,
    TRUTH_IMPRESSIONS,
    C,
    label_column,
)

if TYPE_CHECKING:
    from warehouse.store import Warehouse

TOPIC_RECENCY = "topic_recency"  # rank of the post's topic in user_last_topics, 1 = newest
# String features and their fixed vocabularies (a value outside one becomes missing).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "media_type": MEDIA_TYPES,
    "device": DEVICES,
    "country": COUNTRIES,
    "age_bucket": AGE_BUCKETS,
    "gender": GENDERS,
    "primary_device": DEVICES,
}
INTEGER_CATEGORIES = ("topic",)  # ids, split on by set not by order; stored as float64
_LISTS = (R.USER_LAST_TOPICS, "hashtags")  # read through TOPIC_RECENCY / the TF-IDF feature
_LISTS += (R.USER_HIST_TOPICS, R.USER_HIST_AUTHORS, R.USER_HIST_MEDIA)  # DNN inputs, not GBDT's
FEATURES: tuple[str, ...] = (
    *(f for f in R.feature_columns() if f not in _LISTS),
    TOPIC_RECENCY,
)
CATEGORICAL: tuple[str, ...] = (*CATEGORIES, *INTEGER_CATEGORIES)
# What evaluation reads besides the features: labels, request grouping.
LABELS: tuple[str, ...] = (*(label_column(a) for a in ACTIONS), C.DWELL_S)
EXAMPLE_COLUMNS: tuple[str, ...] = (
    C.IMPRESSION_ID,
    C.REQUEST_ID,
    C.POSITION,
    C.SAMPLE_U,
    *LABELS,
    *(f for f in R.feature_columns() if f != "hashtags"),
)
# Columns an evaluation reads besides the features and labels: grouping and the baselines.
EVAL_COLUMNS: tuple[str, ...] = (
    C.IMPRESSION_ID,
    C.REQUEST_ID,
    C.POSITION,
    R.POST_AGE_H,
    R.POST_SMOOTHED_RATE,
)


@dataclasses.dataclass(frozen=True)
class Examples:
    """Model inputs and labels of one split: X from feature_frame, labels and draws aligned."""

    X: pd.DataFrame
    labels: pd.DataFrame  # label_<action> (0/1) and dwell_s (NaN unless clicked)
    sample_u: np.ndarray

    def __post_init__(self):
        if not (len(self.X) == len(self.labels) == len(self.sample_u)):
            raise ValueError("X, labels and sample_u must have one row per example")

    def __len__(self) -> int:
        return len(self.X)


@dataclasses.dataclass(frozen=True)
class Split:
    """The days of each part of a time-based split, oldest first."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


def time_split(
    days: Sequence[str], *, train_days: int | None, val_days: int, test_days: int
) -> Split:
    """Split the available days by time: train < val < test, each a run of whole days."""
    ordered = sorted(set(days))
    need = val_days + test_days + 1
    if len(ordered) < need:
        raise ValueError(
            f"a time split with {val_days} validation and {test_days} test days needs at least "
            f"{need} days of training examples, found {len(ordered)}: {ordered}"
        )
    test = ordered[len(ordered) - test_days :]
    val = ordered[len(ordered) - test_days - val_days : len(ordered) - test_days]
    before = ordered[: len(ordered) - test_days - val_days]
    train = before if train_days is None else before[-train_days:]
    return Split(tuple(train), tuple(val), tuple(test))


def sample_mask(labels: np.ndarray, sample_u: np.ndarray, rate: float) -> np.ndarray:
    """Rows a task trains on: its positives, and its negatives whose draw fell under rate."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"negative rate must be in (0, 1], got {rate}")
    return (np.asarray(labels) == 1) | (np.asarray(sample_u) < rate)


def any_label_or_sampled(table: pa.Table, rate: float) -> np.ndarray:
    """Rows some task trains on: sample_mask with "positive of any action" as the label."""
    any_positive = np.logical_or.reduce(
        [table.column(label_column(a)).to_numpy() == 1 for a in ACTIONS]
    )
    return sample_mask(any_positive, table.column(C.SAMPLE_U).to_numpy(), rate)


def topic_recency(last_topics: pa.ChunkedArray | pa.Array, topic: np.ndarray) -> np.ndarray:
    """1-based rank of each row's topic among its viewer's last topics, 0 when absent."""
    lists = last_topics
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    n = len(lists)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    lists = lists.fill_null([])
    offsets = lists.offsets.to_numpy()
    offsets = offsets - offsets[0]  # a slice's offsets start where the slice does
    values = lists.flatten().to_numpy(zero_copy_only=False)
    parent = np.repeat(np.arange(n), np.diff(offsets))
    rank = np.arange(values.size) - offsets[parent] + 1
    hit = values == np.asarray(topic)[parent]
    # The first hit of a row is its smallest rank; a row holds each topic at most once.
    out[parent[hit]] = rank[hit]
    return out


def feature_frame(data: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """The ranker's input: FEATURES in order, typed for LightGBM and the MLflow signature.

    Takes a table of training examples or impression features (with user_last_topics), or an
    already built feature frame (then only the types are set again, so a frame whose strings
    were not categories, as MLflow hands them over, is accepted).
    """
    if isinstance(data, pa.Table):
        missing = [c for c in (*FEATURES[:-1], R.USER_LAST_TOPICS) if c not in data.column_names]
        if missing:
            raise KeyError(f"feature columns missing: {missing}")
        topic = data.column("topic").to_numpy(zero_copy_only=False)
        recency = topic_recency(data.column(R.USER_LAST_TOPICS), topic)
        frame = data.select(list(FEATURES[:-1])).to_pandas()
        frame[TOPIC_RECENCY] = recency
    else:
        missing = [c for c in FEATURES if c not in data.columns]
        if missing:
            raise KeyError(f"feature columns missing: {missing}")
        frame = data.loc[:, list(FEATURES)].copy()
    for col in frame.columns:
        if col in CATEGORIES:
            frame[col] = pd.Categorical(frame[col].astype("object"), categories=CATEGORIES[col])
        else:  # integer categories too: LightGBM casts them to int; MLflow ints allow no NaN
            frame[col] = frame[col].astype("float64")
    return frame


def signature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as MLflow's signature sees it: categories as plain strings."""
    out = frame.copy()
    for col in CATEGORIES:
        out[col] = out[col].astype("object")
    return out


def load_examples(
    store: Warehouse, days: Sequence[str], *, negative_rate: float | None = None
) -> tuple[Examples, pd.DataFrame]:
    """Model inputs of the days, and the columns evaluation reads (same rows, same order).

    With `negative_rate`, only rows some task trains on are read into memory: a positive of
    any action, or a draw under the rate (fit_ranker then samples each task from those).
    """
    parts = []
    for ds in days:  # day by day, so memory holds one full day at most, then the sample
        day = store.read_arrow(TRAINING_EXAMPLES, ds, columns=list(EXAMPLE_COLUMNS))
        # Spark writes rows in whatever order its tasks finish; LightGBM's bagging and sums
        # depend on the order, so a fixed one makes the same data give the same model.
        day = day.sort_by(C.IMPRESSION_ID)
        if negative_rate is not None:
            day = day.filter(any_label_or_sampled(day, negative_rate))
        parts.append(day)
    table = pa.concat_tables(parts) if parts else None
    if table is None or table.num_rows == 0:
        raise ValueError(f"{TRAINING_EXAMPLES.qualified}: no rows in {list(days)}")
    labels = table.select(list(LABELS)).to_pandas()
    examples = Examples(feature_frame(table), labels, table.column(C.SAMPLE_U).to_numpy())
    info = pd.concat([table.select(list(EVAL_COLUMNS)).to_pandas(), labels], axis=1)
    return examples, info


def with_truth(store: Warehouse, info: pd.DataFrame, days: Sequence[str]) -> pd.DataFrame:
    """Join the simulator's true probabilities (evaluation only) to the evaluation rows."""
    truth = store.read_pandas(TRUTH_IMPRESSIONS, list(days)).drop(columns=[C.DS])
    frame = info.merge(truth, on=C.IMPRESSION_ID, how="left", validate="one_to_one")
    if frame[C.E_DWELL_S].isna().any():
        n = int(frame[C.E_DWELL_S].isna().sum())
        raise ValueError(f"{TRUTH_IMPRESSIONS.qualified}: {n} evaluated impressions lack truth")
    return frame
