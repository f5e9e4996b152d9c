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
    IMPRESSION_SOURCES,
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
    C.SOURCE: IMPRESSION_SOURCES,
}
INTEGER_CATEGORIES = ("topic",)  # ids, split on by set not by order; stored as float64
# Lists are no model input as they are: user_last_topics is read through TOPIC_RECENCY, hashtags
# through the TF-IDF feature, the history lists through their flat slots (HISTORY).
_LISTS = (
    R.USER_LAST_TOPICS,
    "hashtags",
    R.USER_HIST_TOPICS,
    R.USER_HIST_AUTHORS,
    R.USER_HIST_MEDIA,
)
FEATURES: tuple[str, ...] = (
    *(f for f in R.feature_columns() if f not in _LISTS),
    TOPIC_RECENCY,
)
# Where and how the logging policy served an impression. Models see them in training, so they
# need not explain a slot's effect with relevance features, and scoring fixes them
# (`serving_bias`): a ranking is of relevance, not of where the logging policy put a post.
BIAS: tuple[str, ...] = (C.POSITION, C.SOURCE)
SERVING_POSITION = 0.0  # scoring asks how each post would do in the first slot
# The source a post would have had under the chronological logging policy: a followee's post
# is `network`, any other `popular` (the two sources the training days mostly hold).
SERVING_SOURCE = {True: "network", False: "popular"}
IDS: tuple[str, ...] = (C.USER_ID, C.AUTHOR_ID, C.POST_ID)  # for hashed id embeddings (DNN)
# The viewer's last engaged posts before as_of (DIN-style attention in the DNN), newest first,
# one flat column per slot and kind: hist_topic_0 .. hist_media_<HISTORY_LEN - 1>, NaN past
# the end of the history; media as its index in MEDIA_TYPES. Slots past HISTORY_LEN are
# dropped when features.history_len is larger.
HISTORY_LEN = 10
HISTORY_KINDS = ("topic", "author", "media")


def history_column(kind: str, slot: int) -> str:
    return f"hist_{kind}_{slot}"


# The feature lists each kind of history slot is read from.
HISTORY_LISTS = {
    "topic": R.USER_HIST_TOPICS,
    "author": R.USER_HIST_AUTHORS,
    "media": R.USER_HIST_MEDIA,
}
HISTORY: tuple[str, ...] = tuple(
    history_column(k, i) for k in HISTORY_KINDS for i in range(HISTORY_LEN)
)
# Everything feature_frame builds; each model reads its own subset (models.ranking.gbdt: FEATURES
# and
# BIAS; the DNN: all of it).
INPUTS: tuple[str, ...] = (*FEATURES, *BIAS, *IDS, *HISTORY)
CATEGORICAL: tuple[str, ...] = (*CATEGORIES, *INTEGER_CATEGORIES)
# What evaluation reads besides the features: labels, request grouping.
LABELS: tuple[str, ...] = (*(label_column(a) for a in ACTIONS), C.DWELL_S)
EXAMPLE_COLUMNS: tuple[str, ...] = (
    C.IMPRESSION_ID,
    C.REQUEST_ID,
    *BIAS,
    *IDS,
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
    """The models' input: INPUTS in order, typed for LightGBM, torch and the MLflow signature.

    Takes a table of training examples or impression features (with user_last_topics), or an
    already built feature frame (then only the types are set again, so a frame whose strings
    were not categories, as MLflow hands them over, is accepted). Rows without BIAS columns
    (feature rows of candidates, or of impressions before labels are attached) get the
    serving values (`serving_bias`).
    """
    if isinstance(data, pa.Table):
        names = set(data.column_names)  # a new list per access: once, not once per column
        needed = (*FEATURES[:-1], R.USER_LAST_TOPICS, *HISTORY_LISTS.values(), *IDS)
        missing = [c for c in needed if c not in names]
        if missing:
            raise KeyError(f"feature columns missing: {missing}")
        topic = data.column("topic").to_numpy(zero_copy_only=False)
        recency = topic_recency(data.column(R.USER_LAST_TOPICS), topic)
        present = [c for c in (*FEATURES[:-1], *BIAS, *IDS) if c in names]
        frame = data.select(present).to_pandas()
        frame[TOPIC_RECENCY] = recency
        frame = pd.concat([frame, history_frame(data)], axis=1)
    else:
        missing = [c for c in (*FEATURES, *IDS) if c not in data.columns]
        if missing:
            raise KeyError(f"feature columns missing: {missing}")
        frame = data
        if not set(HISTORY) <= set(frame.columns):
            # A frame made by hand without the history slots (every pipeline path reads the
            # lists from Arrow above): its viewers have no history, as a new user has none.
            if set(HISTORY) & set(frame.columns):
                raise KeyError(
                    f"history slots missing: {sorted(set(HISTORY) - set(frame.columns))}"
                )
            empty = pd.DataFrame(np.nan, index=frame.index, columns=list(HISTORY))
            frame = pd.concat([frame, empty], axis=1)
    if any(c not in frame.columns for c in BIAS):
        frame = serving_bias(frame.loc[:, [c for c in INPUTS if c in frame.columns]])
    # One new frame from typed columns (a column already of its type is taken as it is):
    # assigning ~100 columns one by one costs more than scoring 500 rows.
    typed = {col: _typed(col, frame[col]) for col in INPUTS}
    return pd.DataFrame(typed, index=frame.index)


def _typed(col: str, values: pd.Series) -> pd.Series:
    if col in CATEGORIES:
        dtype = values.dtype
        if (
            isinstance(dtype, pd.CategoricalDtype)
            and not dtype.ordered
            and tuple(dtype.categories) == CATEGORIES[col]
        ):
            return values
        return pd.Series(
            pd.Categorical(values.astype("object"), categories=CATEGORIES[col]),
            index=values.index,
        )
    # integer categories are floats too: LightGBM casts them to int; MLflow ints allow no NaN
    dtype = "int64" if col in IDS else "float64"
    return values if values.dtype == dtype else values.astype(dtype)


def history_frame(data: pa.Table) -> pd.DataFrame:
    """HISTORY's flat slots from the history lists: slot i of kind k is the i-th newest
    engaged post's k (media as its index in MEDIA_TYPES), NaN past the end of the list."""
    media = {m: float(i) for i, m in enumerate(MEDIA_TYPES)}
    cols = {}
    for kind in HISTORY_KINDS:
        slots = _slots(data.column(HISTORY_LISTS[kind]), data.num_rows)
        if kind == "media":
            slots = np.vectorize(lambda v: media.get(v, np.nan), otypes=[float])(slots)
        for i in range(HISTORY_LEN):
            cols[history_column(kind, i)] = slots[:, i].astype("float64")
    return pd.DataFrame(cols)


def _slots(lists: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    """(n, HISTORY_LEN) object array of each row's first HISTORY_LEN list values, NaN after."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    out = np.full((n, HISTORY_LEN), np.nan, dtype=object)
    if n == 0:
        return out
    lists = lists.fill_null([])
    offsets = lists.offsets.to_numpy()
    offsets = offsets - offsets[0]
    values = lists.flatten().to_numpy(zero_copy_only=False)
    parent = np.repeat(np.arange(n), np.diff(offsets))
    slot = np.arange(values.size) - offsets[parent]
    keep = slot < HISTORY_LEN
    out[parent[keep], slot[keep]] = values[keep]
    return out


def serving_bias(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with BIAS set as scoring sets it: the first slot, and the source the
    chronological policy would have given the post (SERVING_SOURCE, from ua_follows)."""
    out = frame.copy()
    out[C.POSITION] = SERVING_POSITION
    follows = out[R.UA_FOLLOWS].astype("float64").fillna(0.0).to_numpy() > 0
    source = np.where(follows, SERVING_SOURCE[True], SERVING_SOURCE[False])
    out[C.SOURCE] = pd.Categorical(source, categories=CATEGORIES[C.SOURCE])
    return out


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
