"""The feed re-ranker: one user's scored candidates -> the feed, in order.

A pure function over a pandas DataFrame (no I/O, no Spark); the precompute job calls it once
per user. Each step multiplies a candidate's value by a positive factor, through `apply`, which
moves a negative value the intended way too (a penalty pushes -2 down to -4, not up to -1):

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

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.registry import POST_AGE_H  # hours since the post was created, >= 0
from models.feed.config import RerankSettings
from warehouse.catalog import C

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
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    value = items[VALUE].to_numpy(dtype=np.float64)
    if not np.isfinite(value).all():
        raise ValueError(f"{VALUE} must be finite")
    post_id = items[POST_ID].to_numpy()

    static = _static_factor(items, settings)
    first = _order(apply(value, static), value, post_id)
    factor = static * _author_factor(items[AUTHOR_ID].to_numpy(), first, settings)
    score = apply(value, factor)
    order = _order(score, value, post_id)
    if settings.separate_media:
        order = _separate_media(order, items[MEDIA_TYPE].isin(MEDIA).to_numpy())
    order = order[:size]

    out = items.iloc[order].reset_index(drop=True)
    out[SCORE] = score[order]
    out[RANK] = np.arange(1, order.size + 1, dtype=np.int32)
    return out


def _static_factor(items: pd.DataFrame, settings: RerankSettings) -> np.ndarray:
    """Freshness times the out-of-network weight, per row."""
    age = items[POST_AGE_H].to_numpy(dtype=np.float64)
    fresh = 1.0 + settings.freshness_boost * 0.5 ** (age / settings.freshness_half_life_h)
    followed = items[IN_NETWORK].to_numpy(dtype=bool)
    return fresh * np.where(followed, 1.0, settings.out_of_network_weight)


def _order(score: np.ndarray, value: np.ndarray, post_id: np.ndarray) -> np.ndarray:
    """Row positions by score (descending), BOTTOM rows by value (descending), then post_id."""
    sunk_value = np.where(score == BOTTOM, value, 0.0)
    return np.lexsort((post_id, -sunk_value, -score))  # last key sorts first


def _author_factor(author: np.ndarray, order: np.ndarray, settings: RerankSettings) -> np.ndarray:
    """max(decay**k, floor) per row, k = how many posts of its author come before it in order."""
    by_order = pd.Series(author[order])
    k = by_order.groupby(by_order, sort=False).cumcount().to_numpy()  # (n,) in `order`
    factor = np.empty(order.size, dtype=np.float64)
    factor[order] = np.maximum(settings.author_repeat_decay**k, settings.author_repeat_floor)
    return factor


def _separate_media(order: np.ndarray, is_media: np.ndarray) -> np.ndarray:
    """`order` with the next non-media post pulled before any second media post in a row.

    The positions in `order` of media posts and of the rest form two queues, merged by taking
    the earlier head, except that after a media post the rest's head goes first while the rest
    has one: O(n).
    """
    media_in_order = is_media[order]
    media = np.flatnonzero(media_in_order).tolist()
    rest = np.flatnonzero(~media_in_order).tolist()
    placed: list[int] = []
    i = j = 0  # heads of media and rest
    last_media = False
    for _ in range(order.size):
        last_media = j == len(rest) or (i < len(media) and not last_media and media[i] < rest[j])
        if last_media:
            placed.append(media[i])
            i += 1
        else:
            placed.append(rest[j])
            j += 1
    return order[placed]
