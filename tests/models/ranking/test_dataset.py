"""models.ranking.dataset: the time split, the stored-draw sample, topic recency, the feature
frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features import registry as R
from models.ranking.dataset import (
    CATEGORIES,
    FEATURES,
    HISTORY_KINDS,
    HISTORY_LEN,
    IDS,
    INPUTS,
    SERVING_POSITION,
    TOPIC_RECENCY,
    feature_frame,
    history_column,
    history_frame,
    sample_mask,
    serving_bias,
    signature_frame,
    time_split,
    topic_recency,
)
from warehouse.catalog import MEDIA_TYPES, C

DAYS = [f"2026-01-{d:02d}" for d in range(5, 19)]  # 14 days


def test_time_split_is_by_time_and_disjoint():
    split = time_split(DAYS[::-1], train_days=None, val_days=2, test_days=1)
    assert split.test == ("2026-01-18",)
    assert split.val == ("2026-01-16", "2026-01-17")
    assert split.train == tuple(DAYS[:11])
    assert max(split.train) < min(split.val) and max(split.val) < min(split.test)


def test_time_split_window_takes_the_latest_training_days():
    split = time_split(DAYS, train_days=3, val_days=1, test_days=1)
    assert split.train == ("2026-01-14", "2026-01-15", "2026-01-16")


def test_time_split_needs_a_training_day():
    with pytest.raises(ValueError, match="needs at least 3 days"):
        time_split(DAYS[:2], train_days=None, val_days=1, test_days=1)


def test_sample_mask_keeps_positives_and_a_rate_of_negatives():
    rng = np.random.default_rng(3)
    y = (rng.random(100_000) < 0.03).astype(int)
    u = rng.random(y.size)
    keep = sample_mask(y, u, 0.2)
    assert keep[y == 1].all()
    share = keep[y == 0].mean()
    assert abs(share - 0.2) < 5 * np.sqrt(0.2 * 0.8 / (y == 0).sum())
    # The same draws at a higher rate keep a superset: the sample nests across rates.
    assert (keep <= sample_mask(y, u, 0.5)).all()
    with pytest.raises(ValueError, match="negative rate"):
        sample_mask(y, u, 0.0)


def test_topic_recency_matches_a_loop():
    rng = np.random.default_rng(5)
    lists = [
        None if i % 7 == 0 else list(rng.choice(20, size=rng.integers(0, 6), replace=False))
        for i in range(500)
    ]
    topic = rng.integers(0, 20, size=500)
    expected = [
        0 if not lst or t not in lst else lst.index(t) + 1
        for lst, t in zip(lists, topic, strict=True)
    ]
    got = topic_recency(pa.chunked_array([pa.array(lists[:250]), pa.array(lists[250:])]), topic)
    assert got.tolist() == expected


def _example_table(n: int = 50) -> pa.Table:
    rng = np.random.default_rng(1)
    cols = {}
    for name in FEATURES:
        if name == TOPIC_RECENCY:
            continue
        if name in CATEGORIES:
            vocab = [*CATEGORIES[name], "unseen"]
            cols[name] = pa.array(rng.choice(vocab, n).tolist())
        elif name == "topic":
            cols[name] = pa.array(rng.integers(0, 20, n), pa.int32())
        elif name in (R.AUTHOR_VERIFIED, R.UA_FOLLOWS, R.UA_CLOSE_FRIEND, "has_url"):
            cols[name] = pa.array(rng.random(n) < 0.5)
        else:
            cols[name] = pa.array(rng.random(n))
    cols[R.USER_LAST_TOPICS] = pa.array([[int(t)] for t in cols["topic"].to_numpy()])
    cols["hashtags"] = pa.array([["a"]] * n)
    cols[R.USER_HIST_TOPICS] = pa.array([[int(t)] for t in cols["topic"].to_numpy()])
    cols[R.USER_HIST_AUTHORS] = pa.array([[7]] * n, pa.list_(pa.int64()))
    cols[R.USER_HIST_MEDIA] = pa.array([["photo"]] * n)
    for name in IDS:
        cols[name] = pa.array(rng.integers(0, 1 << 40, n), pa.int64())
    cols[C.POSITION] = pa.array(rng.integers(0, 30, n), pa.int32())
    cols[C.SOURCE] = pa.array(rng.choice([*CATEGORIES[C.SOURCE], "unseen"], n).tolist())
    return pa.table(cols)


def test_feature_frame_types_and_vocabularies():
    table = _example_table()
    frame = feature_frame(table)
    assert list(frame.columns) == list(INPUTS)
    for name, vocab in CATEGORIES.items():
        assert isinstance(frame[name].dtype, pd.CategoricalDtype)
        assert list(frame[name].cat.categories) == list(vocab)
        unseen = np.asarray(table.column(name).to_pylist()) == "unseen"
        assert frame[name].isna().to_numpy().tolist() == unseen.tolist()
    assert frame["topic"].dtype == np.float64  # a category to LightGBM (CATEGORICAL)
    assert (frame[TOPIC_RECENCY] == 1).all()  # each row's last topic is its own
    assert frame["has_url"].dtype == np.float64
    for name in IDS:  # hashed by the DNN, never a float (2^53 would round them)
        assert frame[name].to_numpy().tolist() == table.column(name).to_pylist()
    assert frame[C.POSITION].to_numpy().tolist() == table.column(C.POSITION).to_pylist()
    # What MLflow hands back (strings, not categories) builds the same frame.
    pd.testing.assert_frame_equal(feature_frame(signature_frame(frame)), frame)


def test_feature_frame_names_missing_columns():
    with pytest.raises(KeyError, match="ctx_hour"):
        feature_frame(_example_table().drop_columns(["ctx_hour"]))


def test_rows_without_bias_get_the_serving_values():
    table = _example_table().drop_columns([C.POSITION, C.SOURCE])
    frame = feature_frame(table)
    assert (frame[C.POSITION] == SERVING_POSITION).all()
    # The chronological policy's source: a followee's post is `network`, any other `popular`.
    follows = np.asarray(table.column(R.UA_FOLLOWS).to_pylist())
    expected = np.where(follows, "network", "popular")
    assert frame[C.SOURCE].astype("object").to_numpy().tolist() == expected.tolist()
    # Logged rows keep theirs: a frame with BIAS is not changed by feature_frame.
    logged = feature_frame(_example_table())
    assert not (logged[C.POSITION] == SERVING_POSITION).all()
    assert serving_bias(logged)[C.SOURCE].tolist() == expected.tolist()


def test_history_slots_newest_first_padded_and_cut():
    table = pa.table(
        {
            "user_hist_topics": pa.array([[3, 1], [], None, list(range(12))], pa.list_(pa.int32())),
            "user_hist_authors": pa.array([[30, 10], [], None, list(range(100, 112))]),
            "user_hist_media": pa.array([["video", "text"], [], None, ["link"] * 12]),
        }
    )
    frame = history_frame(table)
    assert list(frame.columns) == [
        history_column(k, i) for k in HISTORY_KINDS for i in range(HISTORY_LEN)
    ]
    topic = frame[[history_column("topic", i) for i in range(HISTORY_LEN)]].to_numpy()
    # Row 0 holds two posts (newest first), rows 1-2 none (an empty and a null list), row 3
    # twelve, of which the newest HISTORY_LEN are kept.
    np.testing.assert_array_equal(topic[0, :3], [3, 1, np.nan])
    assert np.isnan(topic[1:3]).all()
    np.testing.assert_array_equal(topic[3], np.arange(HISTORY_LEN))
    assert frame[history_column("author", 1)].tolist()[0] == 10
    # Media as its index in MEDIA_TYPES: video 2, text 0, link 3.
    assert frame[history_column("media", 0)].tolist()[0] == MEDIA_TYPES.index("video")
    assert frame[history_column("media", 1)].tolist()[0] == MEDIA_TYPES.index("text")
    assert frame[history_column("media", 9)].tolist()[3] == MEDIA_TYPES.index("link")


def test_topic_recency_of_a_slice():
    lists = pa.array([[1, 2], [3, 4, 5], [5, 6]])
    assert topic_recency(lists.slice(1), np.array([5, 6])).tolist() == [3, 2]


def test_a_feature_frame_comes_back_equal_and_as_a_copy():
    # Scoring hands predict frames feature_frame already built (the precompute does): their
    # columns are kept as they are, and the result is still the caller's to change.
    frame = feature_frame(_example_table())
    again = feature_frame(frame)
    pd.testing.assert_frame_equal(again, frame, check_exact=True)
    again.loc[again.index[0], "length"] = -1.0
    assert frame["length"].iloc[0] != -1.0
