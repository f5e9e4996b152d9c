"""models.feed.rerank over many users at once equals the per-user reference (the re-ranker as it
was written before it was vectorised: a loop over posts for media separation, a groupby for
author repeats), on random batches that hit ties, zero factors, negatives and media runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.feed.config import RerankSettings
from models.feed.rerank import (
    AUTHOR_ID,
    IN_NETWORK,
    MEDIA,
    MEDIA_TYPE,
    POST_AGE_H,
    POST_ID,
    RANK,
    SCORE,
    USER_ID,
    VALUE,
    apply,
    rerank,
    rerank_table,
)

# --- the per-user reference -------------------------------------------------------------------


def reference(items: pd.DataFrame, settings: RerankSettings, size: int) -> pd.DataFrame:
    """One user's feed, step by step as models.feed.rerank's docstring says."""
    value = items[VALUE].to_numpy(dtype=np.float64)
    post_id = items[POST_ID].to_numpy()
    age = items[POST_AGE_H].to_numpy(dtype=np.float64)
    fresh = 1.0 + settings.freshness_boost * 0.5 ** (age / settings.freshness_half_life_h)
    static = fresh * np.where(items[IN_NETWORK].to_numpy(bool), 1.0, settings.out_of_network_weight)
    first = _order(apply(value, static), value, post_id)
    by_order = pd.Series(items[AUTHOR_ID].to_numpy()[first])
    k = by_order.groupby(by_order, sort=False).cumcount().to_numpy()
    author = np.empty(first.size)
    author[first] = np.maximum(settings.author_repeat_decay**k, settings.author_repeat_floor)
    score = apply(value, static * author)
    order = _order(score, value, post_id)
    if settings.separate_media:
        order = _separate_media_loop(order, items[MEDIA_TYPE].isin(MEDIA).to_numpy())
    order = order[:size]
    out = items.iloc[order].reset_index(drop=True)
    out[SCORE] = score[order]
    out[RANK] = np.arange(1, order.size + 1, dtype=np.int32)
    return out


def _order(score, value, post_id):
    sunk_value = np.where(score == np.finfo(np.float64).min, value, 0.0)
    return np.lexsort((post_id, -sunk_value, -score))


def _separate_media_loop(order, is_media):
    """Merge the media and rest queues; after a media post the rest's head goes first."""
    media_in_order = is_media[order]
    media = np.flatnonzero(media_in_order).tolist()
    rest = np.flatnonzero(~media_in_order).tolist()
    placed, i, j, last_media = [], 0, 0, False
    for _ in range(order.size):
        last_media = j == len(rest) or (i < len(media) and not last_media and media[i] < rest[j])
        if last_media:
            placed.append(media[i])
            i += 1
        else:
            placed.append(rest[j])
            j += 1
    return order[placed]


# --- random batches ---------------------------------------------------------------------------


MEDIA_TYPES = ("text", "link", "photo", "video")
SHARES = (0.2, 0.1, 0.3, 0.3, 0.1)  # and None: not media


def batch(seed: int, users: int, max_rows: int) -> pd.DataFrame:
    """Users with 0..max_rows candidates, rows shuffled across users. Few authors (repeats),
    rounded values (ties, decided by post_id), some negative values and old posts, a share of
    media that makes long media runs."""
    rng = np.random.default_rng(seed)
    n_rows = rng.integers(0, max_rows + 1, users)
    n = int(n_rows.sum())
    frame = pd.DataFrame(
        {
            USER_ID: np.repeat(rng.permutation(10 * users)[:users], n_rows),
            POST_ID: rng.permutation(3 * n + 1)[:n],
            VALUE: np.round(rng.normal(0.5, 1.0, n), 1),
            AUTHOR_ID: rng.integers(0, 6, n),
            MEDIA_TYPE: rng.choice([*MEDIA_TYPES, None], n, p=SHARES),
            POST_AGE_H: rng.choice([0.0, 3.0, 6.0, 50.0], n),
            IN_NETWORK: rng.random(n) < 0.5,
            "sources": [["network"] if i % 2 else ["interest", "trending"] for i in range(n)],
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


SETTINGS = [
    RerankSettings(),
    RerankSettings(out_of_network_weight=0.0, author_repeat_floor=0.0, author_repeat_decay=0.3),
    RerankSettings(separate_media=False, freshness_boost=1.5, out_of_network_weight=2.0),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "zero-factors", "no-media"])
@pytest.mark.parametrize(("seed", "size"), [(1, 500), (2, 7), (3, 1), (4, 0)])
def test_a_batch_of_users_equals_the_reference_user_by_user(seed, size, settings):
    items = batch(seed, users=60, max_rows=40)
    got = rerank_table(pa.Table.from_pandas(items, preserve_index=False), settings, size)
    got = got.to_pandas()
    got["sources"] = got["sources"].map(list)  # Arrow's lists come back as numpy arrays
    expected = [
        reference(rows.reset_index(drop=True), settings, size)
        for _, rows in items.groupby(USER_ID, sort=True)
    ]
    expected = pd.concat(expected, ignore_index=True)
    assert list(got.columns) == [*items.columns, SCORE, RANK]
    assert len(got) == len(expected) and (size == 0 or len(got) > 0)
    # The same rows in the same order, each with the same score and rank: exactly.
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)
    assert got[RANK].dtype == np.int32


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "zero-factors", "no-media"])
def test_the_one_user_function_equals_the_reference(settings):
    items = batch(5, users=1, max_rows=300)
    assert len(items) > 50
    pd.testing.assert_frame_equal(
        rerank(items, settings, 100), reference(items, settings, 100), check_exact=True
    )


def test_a_batch_does_not_depend_on_its_row_order():
    items = batch(6, users=30, max_rows=30)
    table = pa.Table.from_pandas(items, preserve_index=False)
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))
    assert rerank_table(shuffled, RerankSettings(), 20).equals(
        rerank_table(table, RerankSettings(), 20)
    )


def test_a_table_without_a_column_or_with_a_null_value_is_refused():
    table = pa.Table.from_pandas(batch(7, users=3, max_rows=5), preserve_index=False)
    with pytest.raises(KeyError, match=USER_ID):
        rerank_table(table.drop_columns([USER_ID]), RerankSettings(), 10)
    nulls = table.set_column(
        table.schema.get_field_index(VALUE), VALUE, pa.array([None] * table.num_rows, pa.float64())
    )
    with pytest.raises(ValueError, match=VALUE):
        rerank_table(nulls, RerankSettings(), 10)
