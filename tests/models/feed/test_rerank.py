"""models.feed.rerank on small hand-made lists; each expected order is worked out in a comment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.feed.config import RerankSettings
from models.feed.rerank import (
    AUTHOR_ID,
    BOTTOM,
    IN_NETWORK,
    MEDIA_TYPE,
    POST_AGE_H,
    POST_ID,
    RANK,
    REQUIRED,
    SCORE,
    VALUE,
    apply,
    rerank,
)

# Every factor switched off; each test switches on the one it is about.
NEUTRAL = {
    "author_repeat_decay": 1.0,
    "author_repeat_floor": 0.0,
    "separate_media": False,
    "freshness_boost": 0.0,
    "out_of_network_weight": 1.0,
}


def _settings(**changes) -> RerankSettings:
    return RerankSettings(**{**NEUTRAL, **changes})


def _items(*rows: dict) -> pd.DataFrame:
    """Posts 1, 2, ... in the given order; by default each by its own followed author, text,
    0 h old."""
    full = [
        {
            POST_ID: i,
            VALUE: 0.0,
            AUTHOR_ID: 100 + i,
            MEDIA_TYPE: "text",
            POST_AGE_H: 0.0,
            IN_NETWORK: True,
            **row,
        }
        for i, row in enumerate(rows, start=1)
    ]
    return pd.DataFrame(full, columns=list(REQUIRED))


def _ids(feed: pd.DataFrame) -> list[int]:
    return feed[POST_ID].tolist()


# --- apply ------------------------------------------------------------------------------------


def test_apply_moves_negative_scores_the_intended_way():
    # A penalty (0.5) halves 4 but doubles -4's distance below 0; a boost (2) does the reverse.
    assert apply([4.0, -4.0], 0.5).tolist() == [2.0, -8.0]
    assert apply([4.0, -4.0], 2.0).tolist() == [8.0, -2.0]


def test_apply_zero_and_overflow_give_the_lowest_finite_float():
    # A zero factor sinks any score; -1e300 / 1e-10 = -1e310 is past the floats and is clipped.
    out = apply([3.0, 0.0, -3.0, -1e300], [0.0, 0.0, 0.0, 1e-10])
    assert out.tolist() == [BOTTOM] * 4
    assert np.isfinite(out).all()


# --- author diversity --------------------------------------------------------------------------


def test_author_repeats_decay_to_the_floor():
    # Author 7 has posts 1-4 (values 10, 9, 8, 7); post 5 (value 1) is by someone else.
    # In value order author 7's posts are its 0th..3rd, so their factors are
    # 1, 0.5, 0.25 and max(0.125, 0.25) = 0.25: scores 10, 4.5, 2.0, 1.75; post 5 keeps 1.0.
    # Without the floor post 4 would score 0.875 and fall below post 5.
    items = _items(
        {VALUE: 10.0, AUTHOR_ID: 7},
        {VALUE: 9.0, AUTHOR_ID: 7},
        {VALUE: 8.0, AUTHOR_ID: 7},
        {VALUE: 7.0, AUTHOR_ID: 7},
        {VALUE: 1.0},
    )
    feed = rerank(items, _settings(author_repeat_decay=0.5, author_repeat_floor=0.25), size=10)
    assert _ids(feed) == [1, 2, 3, 4, 5]
    assert feed[SCORE].tolist() == [10.0, 4.5, 2.0, 1.75, 1.0]


def test_author_penalty_moves_a_negative_value_down():
    # Author 7: post 1 (value 1) is its 0th, post 2 (value -2) its 1st: factor 0.5, and
    # -2 / 0.5 = -4. Post 3 (value -3, another author) keeps -3, so it now ranks above post 2
    # (multiplying instead would have lifted post 2 to -1, above post 3).
    items = _items(
        {VALUE: 1.0, AUTHOR_ID: 7},
        {VALUE: -2.0, AUTHOR_ID: 7},
        {VALUE: -3.0},
    )
    feed = rerank(items, _settings(author_repeat_decay=0.5), size=10)
    assert _ids(feed) == [1, 3, 2]
    assert feed[SCORE].tolist() == [1.0, -3.0, -4.0]


# --- static factors ----------------------------------------------------------------------------


def test_freshness_breaks_a_tie_between_equal_values():
    # boost 0.2, half-life 6 h: a 0 h post gets 1 + 0.2 = 1.2, a 6 h post 1 + 0.2 * 0.5 = 1.1.
    # Posts 1 (6 h) and 2 (0 h) both have value 1: scores 1.1 and 1.2, so post 2 goes first.
    # Posts 3 (6 h) and 4 (0 h) both have value -1: the fresher post 4 scores -1 / 1.2 = -0.833,
    # above post 3 at -1 / 1.1 = -0.909. Without the boost both pairs tie and go by post_id.
    items = _items(
        {VALUE: 1.0, POST_AGE_H: 6.0},
        {VALUE: 1.0, POST_AGE_H: 0.0},
        {VALUE: -1.0, POST_AGE_H: 6.0},
        {VALUE: -1.0, POST_AGE_H: 0.0},
    )
    feed = rerank(items, _settings(freshness_boost=0.2, freshness_half_life_h=6.0), size=10)
    assert _ids(feed) == [2, 1, 4, 3]
    assert feed[SCORE].tolist() == pytest.approx([1.2, 1.1, -1 / 1.2, -1 / 1.1])
    assert _ids(rerank(items, _settings(), size=10)) == [1, 2, 3, 4]


def test_out_of_network_weight():
    # weight 0.5 on posts 2 and 3 (not followed): 5 -> 2.5 and -1 -> -2. Followed posts keep
    # their value: 3 and -1.5. Order: 1 (3), 2 (2.5), 4 (-1.5), 3 (-2).
    items = _items(
        {VALUE: 3.0},
        {VALUE: 5.0, IN_NETWORK: False},
        {VALUE: -1.0, IN_NETWORK: False},
        {VALUE: -1.5},
    )
    feed = rerank(items, _settings(out_of_network_weight=0.5), size=10)
    assert _ids(feed) == [1, 2, 4, 3]
    assert feed[SCORE].tolist() == [3.0, 2.5, -1.5, -2.0]


def test_zero_weight_sends_posts_to_the_bottom_in_value_order():
    # weight 0: posts 2 (value 10) and 3 (value 3) are not followed and sink below the followed
    # posts 4 (1) and 1 (-5), with the lowest finite score; among themselves by value, 2 then 3.
    items = _items(
        {VALUE: -5.0},
        {VALUE: 3.0, IN_NETWORK: False},
        {VALUE: 10.0, IN_NETWORK: False},
        {VALUE: 1.0},
    )
    feed = rerank(items, _settings(out_of_network_weight=0.0), size=10)
    assert _ids(feed) == [4, 1, 3, 2]
    assert feed[SCORE].tolist() == [1.0, -5.0, BOTTOM, BOTTOM]
    assert np.isfinite(feed[SCORE]).all()


# --- media separation --------------------------------------------------------------------------

MEDIA_LIST = _items(
    {VALUE: 10.0, MEDIA_TYPE: "photo"},
    {VALUE: 9.0, MEDIA_TYPE: "video"},
    {VALUE: 8.0, MEDIA_TYPE: "photo"},
    {VALUE: 7.0, MEDIA_TYPE: "text"},
    {VALUE: 6.0, MEDIA_TYPE: "link"},
    {VALUE: 5.0, MEDIA_TYPE: "video"},
    {VALUE: 4.0, MEDIA_TYPE: "photo"},
)


def test_no_two_media_in_a_row_while_text_or_link_is_left():
    # By score: 1P 2V 3P 4T 5L 6V 7P. Place 1 (media); 2 would be a second media, so text 4
    # comes first; then 2; 3 would follow a media, so link 5 first; then 3. Only media are left
    # (6, 7), so they follow 3 in a row. Each post keeps its own score.
    feed = rerank(MEDIA_LIST, _settings(separate_media=True), size=10)
    assert _ids(feed) == [1, 4, 2, 5, 3, 6, 7]
    assert feed[SCORE].tolist() == [10.0, 7.0, 9.0, 6.0, 8.0, 5.0, 4.0]
    assert _ids(rerank(MEDIA_LIST, _settings(), size=10)) == [1, 2, 3, 4, 5, 6, 7]


def test_media_separation_runs_before_truncation():
    # By score: 1P 2V 3T. Text 3 is pulled before video 2, and then the top 2 are kept.
    items = _items(
        {VALUE: 3.0, MEDIA_TYPE: "photo"},
        {VALUE: 2.0, MEDIA_TYPE: "video"},
        {VALUE: 1.0, MEDIA_TYPE: "text"},
    )
    assert _ids(rerank(items, _settings(separate_media=True), size=2)) == [1, 3]


# --- all defaults together ---------------------------------------------------------------------


def test_default_settings_worked_example():
    # Defaults: decay 0.5, floor 0.25, boost 0.2, half-life 6 h, out-of-network 0.9, media on.
    # Static factors: 1: 1.2 (0 h) -> 4.8; 2: 1.1 (6 h) -> 4.4;
    # 3: (1 + 0.2 * 0.25) * 0.9 = 0.945 (12 h, not followed) -> 4.725;
    # 4: 1.2 * 0.9 = 1.08 -> -1 / 1.08.
    # Static order 1, 3, 2, 4: posts 2 (author 7) and 4 (author 8) are repeats, factor 0.5:
    # 2 -> 4.4 * 0.5 = 2.2, 4 -> -1 / (1.08 * 0.5) = -1.852. Order by score: 1, 3, 2, 4; 3 and
    # 2 are media in a row and text 4 is left, so 4 comes before 2.
    items = _items(
        {VALUE: 4.0, AUTHOR_ID: 7},
        {VALUE: 4.0, AUTHOR_ID: 7, POST_AGE_H: 6.0, MEDIA_TYPE: "photo"},
        {VALUE: 5.0, AUTHOR_ID: 8, POST_AGE_H: 12.0, IN_NETWORK: False, MEDIA_TYPE: "video"},
        {VALUE: -1.0, AUTHOR_ID: 8, IN_NETWORK: False},
    )
    feed = rerank(items, RerankSettings(), size=10)
    assert _ids(feed) == [1, 3, 4, 2]
    assert feed[SCORE].tolist() == pytest.approx([4.8, 4.725, -1 / 0.54, 2.2])


# --- shape of the output -----------------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [(3, [5, 4, 3]), (9, [5, 4, 3, 2, 1]), (0, [])])
def test_truncation_to_size_and_ranks(size, expected):
    # Values 1..5 on posts 1..5: by value 5, 4, 3, 2, 1; the first `size` are kept.
    items = _items(*({VALUE: float(v)} for v in range(1, 6)))
    feed = rerank(items, _settings(), size=size)
    assert _ids(feed) == expected
    assert feed[RANK].tolist() == list(range(1, len(expected) + 1))
    assert pd.api.types.is_integer_dtype(feed[RANK])


def test_other_columns_pass_through_and_index_is_reset():
    # Post 2 (value 2) goes before post 1 (value 1); its extra cells go with it.
    items = _items({VALUE: 1.0}, {VALUE: 2.0})
    items["topic"] = ["sport", "news"]
    items["sources"] = [["network"], ["interest", "trending"]]
    items.index = [10, 20]
    before = items.copy()
    feed = rerank(items, _settings(), size=10)
    pd.testing.assert_frame_equal(items, before)  # the input is not modified
    assert list(feed.columns) == [*items.columns, SCORE, RANK]
    assert list(feed.index) == [0, 1]
    assert feed["topic"].tolist() == ["news", "sport"]
    assert feed["sources"].tolist() == [["interest", "trending"], ["network"]]


def test_ties_break_by_post_id_whatever_the_row_order():
    # Four equal values by different authors tie on score: posts go by post_id, 1..4, and the
    # same frame in any row order gives the same feed, with the default settings too.
    items = _items(*({VALUE: 2.0, MEDIA_TYPE: m} for m in ("photo", "text", "video", "link")))
    shuffled = items.iloc[[2, 0, 3, 1]]
    assert _ids(rerank(shuffled, _settings(), size=10)) == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(
        rerank(items, RerankSettings(), size=10), rerank(shuffled, RerankSettings(), size=10)
    )


def test_empty_input_gives_an_empty_feed_with_the_added_columns():
    feed = rerank(_items(), RerankSettings(), size=10)
    assert feed.empty
    assert list(feed.columns) == [*REQUIRED, SCORE, RANK]


def test_missing_columns_are_named():
    items = _items({VALUE: 1.0}).drop(columns=[IN_NETWORK, MEDIA_TYPE])
    with pytest.raises(KeyError, match=f"{MEDIA_TYPE}.*{IN_NETWORK}"):
        rerank(items, RerankSettings(), size=10)


def test_bad_value_or_size_raises():
    with pytest.raises(ValueError, match=VALUE):
        rerank(_items({VALUE: np.nan}), RerankSettings(), size=10)
    with pytest.raises(ValueError, match="size"):
        rerank(_items({VALUE: 1.0}), RerankSettings(), size=-1)
