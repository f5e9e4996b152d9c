"""The feed re-ranker: each user's scored candidates -> the feed, in order.

    feed = rerank(items, settings, size)            # one user's pandas rows
    feeds = rerank_table(batch, settings, size)     # many users' Arrow rows at once

Pure functions (no I/O, no Spark) over array operations: the precompute job calls
`rerank_table` on Arrow batches that hold whole users, and every step is a sort by (user, ...)
or a segmented cumulative sum over the batch, not a loop over users or posts. Each step
multiplies a candidate's value by a positive factor, through `apply`, which moves a negative
value the intended way too (a penalty pushes -2 down to -4, not up to -1):

1. Static factors: freshness 1 + boost * 0.5 ** (age_h / half_life), and the out-of-network
   weight for posts by authors the user does not follow.
2. Author diversity (X's AuthorDiversityScorer): in the order of the statically adjusted
   score, the k-th post (0-based) of each author gets max(decay**k, floor).
3. The final score is the value under the product of all factors; the list is sorted by it,
   descending.
4. Media separation (optional): no two media posts (photo, video) in a row while a text or
   link post is left to place; the next such post is pulled forward and the media post waits.
   When only media posts are left they follow each other.
5. The first `size` posts are kept and ranked 1..n.

Ties are broken by post_id, ascending, so the result does not depend on the input's row
order. A zero factor (an out-of-network weight or author floor of 0, or an underflow) sends a
post to the bottom: its score is BOTTOM, the lowest finite float, and such posts follow each
other by value (descending). Scores that would overflow are clipped to +-BOTTOM as well, so the
output never holds an infinity. The output `score` is each post's own adjusted score, so after
media separation it need not be monotone in rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike

from features.registry import POST_AGE_H  # hours since the post was created, >= 0
from models.feed.config import RerankSettings
from warehouse.catalog import C

USER_ID = C.USER_ID  # rerank_table: whose candidate a row is
POST_ID = C.POST_ID
VALUE = C.VALUE  # the value model's expected value; negative where hide/report dominate
AUTHOR_ID = C.AUTHOR_ID
MEDIA_TYPE = C.MEDIA_TYPE  # one of catalog.MEDIA_TYPES
IN_NETWORK = "in_network"  # the user follows the post's author
SCORE = C.SCORE  # added: the adjusted score the order is built from
RANK = C.RANK  # added: 1 for the top of the feed

REQUIRED = (POST_ID, VALUE, AUTHOR_ID, MEDIA_TYPE, POST_AGE_H, IN_NETWORK)
MEDIA = ("photo", "video")  # the media types that must not follow each other
BOTTOM = float(np.finfo(np.float64).min)  # the score of a post with a zero factor


def apply(score: ArrayLike, multiplier: ArrayLike) -> np.ndarray:
    """Scores under factors >= 0: s * m if s >= 0 else s / m, elementwise.

    A factor below 1 lowers any score and one above 1 raises it (a negative one toward 0). A
    zero factor gives BOTTOM, and results beyond the finite floats are clipped to them.
    """
    s = np.asarray(score, dtype=np.float64)
    m = np.asarray(multiplier, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = np.where(s >= 0, s * m, s / m)
    out = np.where(m == 0, BOTTOM, out)
    return np.clip(out, BOTTOM, -BOTTOM)


def rerank(items: pd.DataFrame, settings: RerankSettings, size: int) -> pd.DataFrame:
    """One user's feed: `items` re-ranked as the module docstring says, at most `size` rows.

    `items` has one row per candidate with the REQUIRED columns (other columns pass through
    unchanged); SCORE and RANK are added (replaced if present) and the index is reset.
    """
    missing = [c for c in REQUIRED if c not in items.columns]
    if missing:
        raise KeyError(f"rerank needs columns {missing}, missing from {list(items.columns)}")
    arrays = RerankInputs(
        post_id=items[POST_ID].to_numpy(),
        value=items[VALUE].to_numpy(dtype=np.float64),
        author=items[AUTHOR_ID].to_numpy(),
        is_media=items[MEDIA_TYPE].isin(MEDIA).to_numpy(),
        age_h=items[POST_AGE_H].to_numpy(dtype=np.float64),
        in_network=items[IN_NETWORK].to_numpy(dtype=bool),
    )
    feed = rerank_arrays(np.zeros(len(items), dtype=np.int64), arrays, settings, size)
    out = items.iloc[feed.rows].reset_index(drop=True)
    out[SCORE] = feed.score
    out[RANK] = feed.rank
    return out


def rerank_table(items: pa.Table, settings: RerankSettings, size: int) -> pa.Table:
    """Every user's feed in an Arrow table of many users' candidates (USER_ID and the
    REQUIRED columns; the others pass through): the rows of each user's feed in order, users
    ascending, with SCORE and RANK added (replaced if present). `rerank` per user, at once."""
    missing = [c for c in (USER_ID, *REQUIRED) if c not in items.column_names]
    if missing:
        raise KeyError(f"rerank needs columns {missing}, missing from {items.column_names}")
    if items.column(VALUE).null_count:
        raise ValueError(f"{VALUE} must be finite, not null")
    arrays = RerankInputs(
        post_id=items.column(POST_ID).to_numpy(),
        value=items.column(VALUE).to_numpy().astype(np.float64),
        author=items.column(AUTHOR_ID).to_numpy(),
        is_media=pc.fill_null(pc.is_in(items.column(MEDIA_TYPE), pa.array(MEDIA)), False)
        .to_numpy()
        .astype(bool),
        age_h=items.column(POST_AGE_H).to_numpy().astype(np.float64),
        in_network=pc.fill_null(items.column(IN_NETWORK), False).to_numpy().astype(bool),
    )
    feed = rerank_arrays(items.column(USER_ID).to_numpy(), arrays, settings, size)
    out = items.drop_columns([c for c in (SCORE, RANK) if c in items.column_names])
    out = out.take(pa.array(feed.rows))
    return out.append_column(SCORE, pa.array(feed.score)).append_column(RANK, pa.array(feed.rank))


@dataclass(frozen=True)
class RerankInputs:
    """The re-ranker's inputs, one (n,) array per column, rows in any order."""

    post_id: np.ndarray
    value: np.ndarray  # float64
    author: np.ndarray
    is_media: np.ndarray  # bool: MEDIA_TYPE in MEDIA
    age_h: np.ndarray  # float64
    in_network: np.ndarray  # bool


@dataclass(frozen=True)
class Feeds:
    """The kept rows of a batch in feed order (user by user) with their score and rank."""

    rows: np.ndarray  # (m,) positions in the input, grouped by user, rank 1 first
    score: np.ndarray  # (m,) float64: each post's adjusted score
    rank: np.ndarray  # (m,) int32: 1..n within each user


def rerank_arrays(
    user: np.ndarray, items: RerankInputs, settings: RerankSettings, size: int
) -> Feeds:
    """Every user's feed of a batch at once: the rows of each `user` re-ranked as the module
    docstring says (the users in ascending order), at most `size` rows each.

    Array operations over the whole batch: one sort by (user, adjusted score) per step, the
    author repeats and the media slots counted per user with segmented cumulative sums.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    value = np.asarray(items.value, dtype=np.float64)
    if not np.isfinite(value).all():
        raise ValueError(f"{VALUE} must be finite")
    user, post_id = np.asarray(user), np.asarray(items.post_id)
    static = _static_factor(items.age_h, items.in_network, settings)
    first = _order(user, apply(value, static), value, post_id)
    factor = static * _author_factor(user, np.asarray(items.author), first, settings)
    score = apply(value, factor)
    order = _order(user, score, value, post_id)
    starts = _starts(user[order])  # (n,) the position in `order` where each row's user begins
    if settings.separate_media:
        order = order[_separate_media(starts, np.asarray(items.is_media, dtype=bool)[order])]
    place = np.arange(order.size) - starts  # 0-based place in the user's feed
    kept = place < size
    order = order[kept]
    return Feeds(order, score[order], (place[kept] + 1).astype(np.int32))


def _static_factor(age_h, in_network, settings: RerankSettings) -> np.ndarray:
    """Freshness times the out-of-network weight, per row."""
    age = np.asarray(age_h, dtype=np.float64)
    fresh = 1.0 + settings.freshness_boost * 0.5 ** (age / settings.freshness_half_life_h)
    followed = np.asarray(in_network, dtype=bool)
    return fresh * np.where(followed, 1.0, settings.out_of_network_weight)


def _order(user, score: np.ndarray, value: np.ndarray, post_id) -> np.ndarray:
    """Row positions by user, then score (descending), BOTTOM rows by value (descending),
    then post_id."""
    sunk_value = np.where(score == BOTTOM, value, 0.0)
    return np.lexsort((post_id, -sunk_value, -score, user))  # last key sorts first


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    """(n,) for keys in runs (sorted): the position where each element's run begins."""
    n = sorted_keys.size
    new = np.ones(n, dtype=bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(n), 0)) if n else np.zeros(0, np.int64)


def _author_factor(user, author, order: np.ndarray, settings: RerankSettings) -> np.ndarray:
    """max(decay**k, floor) per row, k = how many posts of its author come before it in order
    among its user's rows."""
    by_author = order[np.lexsort((author[order], user[order]))]  # stable: `order` within runs
    same = (user[by_author][1:] == user[by_author][:-1]) & (
        author[by_author][1:] == author[by_author][:-1]
    )
    run = np.ones(order.size, dtype=bool)
    run[1:] = ~same
    k = np.arange(order.size) - np.maximum.accumulate(np.where(run, np.arange(order.size), 0))
    factor = np.empty(order.size, dtype=np.float64)
    factor[by_author] = np.maximum(settings.author_repeat_decay**k, settings.author_repeat_floor)
    return factor


def _separate_media(starts: np.ndarray, is_media: np.ndarray) -> np.ndarray:
    """The permutation of a user-grouped order that pulls the next non-media post before any
    second media post in a row, while the user has one left.

    Per user, the rest (non-media) posts keep their order, and media post i (0-based among
    the user's media) goes into slot s_i: just before rest post s_i, or after all J rest posts
    when s_i = J. A slot before a rest post holds one media post at most and media posts keep
    their order, so s_i = min(J, max(c_i, s_(i-1) + 1)) with c_i the rest posts ranked above
    it: s_i = min(J, i + cummax(c - i)). Sorting by (user, slot, rest after media, order)
    gives the feed; O(n log n) over the batch, no loop over posts.
    """
    n = is_media.size
    pos = np.arange(n)
    rest = ~is_media
    # Counts within each user's run, from cumulative sums over the batch minus the run's start.
    rest_before = np.cumsum(rest) - rest  # rest posts above each row, batch-wide
    media_before = np.cumsum(is_media) - is_media
    c = rest_before - rest_before[starts]  # (n,) rest posts above, within the user
    i = media_before - media_before[starts]  # (n,) media posts above, within the user
    group = np.cumsum(pos == starts) - 1  # (n,) 0, 1, ... per user run
    J = np.bincount(group[rest], minlength=group[-1] + 1)[group] if n else group  # (n,)
    # A segmented cummax: offsetting each run above all the values of the runs before it.
    offset = group * (2 * n + 2)
    gap = np.where(is_media, c - i, -n - 1) + offset
    slot_media = np.minimum(J, i + np.maximum.accumulate(gap) - offset)
    slot = np.where(is_media, slot_media, c)
    return np.lexsort((pos, rest, slot, group))
