"""No leakage: events at or after an impression's as_of leave its features unchanged; the same
events moved before as_of change them.

One small world (tests/test_features_data.py) is copied into independent "universes" (ids offset
by 100 per universe), each with the same extra events at a different time; all families are
computed in one call. Universe 0 is the base world; 1: events exactly at as_of; 2: between
as_of and the impression; 3: after the impression; 4: 40 minutes before as_of.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_features_data import LEAK_BASE, UNIVERSES, A, featurized

from features import registry as R
from features.config import FeatureSettings
from warehouse.catalog import C

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def features(spark) -> dict[int, dict]:
    out = featurized(spark)
    out = out[out[C.IMPRESSION_ID] >= LEAK_BASE]
    feats = R.feature_columns()
    assert set(feats) <= set(out.columns) and len(out) == len(UNIVERSES)
    assert not [c for c in out.columns if c.startswith("_")]  # no helper column escapes
    universes = {(int(r[C.IMPRESSION_ID]) - LEAK_BASE) // 100: r for _, r in out.iterrows()}
    return {u: {c: _local(c, r[c], u) for c in feats} for u, r in universes.items()}


def _local(col: str, value, universe: int):
    """Ids are offset per universe: an id-valued feature is compared as its id within it."""
    if col == R.USER_HIST_AUTHORS:
        return [int(a) - LEAK_BASE - 100 * universe for a in value]
    return value


def _same(a, b) -> bool:
    if isinstance(a, list | np.ndarray) or isinstance(b, list | np.ndarray):
        return list(a) == list(b)
    return (pd.isna(a) and pd.isna(b)) or a == b


@pytest.mark.parametrize("universe", [1, 2, 3])
def test_events_at_or_after_as_of_change_nothing(features, universe):
    # The previous request (universes 1 and 2 add one in [as_of, served_at)) is context known
    # when serving, not a snapshot feature: it is allowed to move.
    skip = {R.CTX_HOURS_SINCE_PREV_REQUEST} if universe in (1, 2) else set()
    base, other = features[0], features[universe]
    changed = [c for c in base if c not in skip and not _same(base[c], other[c])]
    assert changed == []


# column -> (base value, value with the events 40 min before as_of), and why
CHANGES = {
    R.post_count("like", "1h"): (0, 1),  # the viewer's like on P1
    R.post_count(R.IMPRESSION, "1h"): (0, 1),  # the viewer's earlier impression of P1
    R.net_count("comment", "1h"): (0, 1),  # the friend (a followee) comments on P1
    R.net_count("like", "1d"): (1, 1),  # the friend's old like, unchanged
    R.AUTHOR_FOLLOWERS: (1, 3),  # F only; then G and the viewer too
    R.UA_FOLLOWS: (False, True),
    R.UA_CLOSE_FRIEND: (False, True),
    R.UA_COMMON_FOLLOWEES: (1, 2),  # F, then F and G
    R.ua_share(90): (1.0, 1.0),  # 1 like / 1 impression, then 2 / 2
    R.USER_IMPRESSIONS_7D: (1, 2),
    R.USER_LAST_TOPICS: ([2], [1, 2]),  # topic 1 now the most recent
    R.SIM_TOPIC_SHARE: (0.0, 0.5),  # no like on topic 1, then one of two
    # x and y are in no post before the IDF cutoff, so both weigh the same i. Liked tags {x}
    # against the post's {x, y}: cos((i, 0), (i, i)) = 1/sqrt(2); then {x: 2, y: 1}:
    # cos((2i, i), (i, i)) = 3 / sqrt(10).
    R.SIM_HASHTAG_TFIDF: (1 / 2**0.5, 3 / 10**0.5),
    R.USER_HIDE_RATE: (0.0, 0.5),  # no hide of 1 impression; then the hide of P2 of 2
    R.USER_HIST_TOPICS: ([2], [1, 2]),  # the like on P2 (topic 2), then the newer one on P1
    R.USER_HIST_AUTHORS: ([A], [A, A]),  # both posts are A's
    R.USER_HIST_MEDIA: (["text"], ["text", "text"]),
}


def _smoothed(n: int, impressions: int, rate: float, strength: float) -> float:
    return (n + rate * strength) / (impressions + strength)


_P = FeatureSettings()
_HIDE = (_P.hide_prior_rate, _P.hide_prior_strength)
_REPORT = (_P.report_prior_rate, _P.report_prior_strength)
# P1 in 7d: the friend's impression, then also the viewer's, with the friend's hide and report.
# Author A in 30d: the viewer's impression of P2 and the friend's of P1, then also the viewer's
# of P1, with the friend's hide and report of P1 and the viewer's hide of P2.
CHANGES |= {
    R.POST_SMOOTHED_HIDE_RATE: (_smoothed(0, 1, *_HIDE), _smoothed(1, 2, *_HIDE)),
    R.POST_SMOOTHED_REPORT_RATE: (_smoothed(0, 1, *_REPORT), _smoothed(1, 2, *_REPORT)),
    R.AUTHOR_SMOOTHED_HIDE_RATE: (_smoothed(0, 2, *_HIDE), _smoothed(2, 3, *_HIDE)),
    R.AUTHOR_SMOOTHED_REPORT_RATE: (_smoothed(0, 2, *_REPORT), _smoothed(1, 3, *_REPORT)),
}


def test_events_before_as_of_change_the_features(features):
    base, early = features[0], features[4]
    for col, (before, after) in CHANGES.items():
        assert (
            base[col] == pytest.approx(before)
            if isinstance(before, float)
            else _same(base[col], before)
        ), (col, base[col])
        assert (
            early[col] == pytest.approx(after)
            if isinstance(after, float)
            else _same(early[col], after)
        ), (col, early[col])
