"""Feed value@k and candidate recall on hand-made candidate lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.feed import quality as fq
from warehouse.catalog import C

T0 = pd.Timestamp("2026-01-08", tz="UTC")


def _cands() -> pd.DataFrame:
    # Two users, three candidates each. rank: our feed (NaN: not in it); value: our value
    # before re-ranking; created_at hours before T0; popularity; the oracle's true value.
    rows = [
        # user, post, rank, value, age_h, popularity, true_value
        (1, 10, 1.0, 0.9, 5, 0, 3.0),
        (1, 11, 2.0, 0.5, 1, 9, 1.0),
        (1, 12, np.nan, 0.7, 2, 4, 2.0),
        (2, 20, 2.0, 0.1, 3, 1, 0.5),
        (2, 21, 1.0, 0.4, 9, 0, -1.0),
        (2, 22, 3.0, 0.2, 1, 5, 4.0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[C.USER_ID, C.POST_ID, C.RANK, C.VALUE, "age", fq.POPULARITY, fq.TRUE_VALUE],
    )
    frame[C.CREATED_AT] = T0 - pd.to_timedelta(frame.pop("age"), unit="h")
    frame[C.SOURCES] = [["network"], ["trending"], ["interest", "network"], [], ["x"], ["y"]]
    return frame


def test_feed_value_at_k_per_ranking():
    got = fq.feed_value(_cands(), 1).set_index("ranking")["value_at_1"]
    # Top 1 per user, summed true value, averaged over the 2 users:
    # feed: rank 1 = post 10 (3.0) and 21 (-1.0) -> 1.0
    # before re-rank: value order 10 (3.0), 21 (-1.0) -> 1.0
    # reverse-chron: newest 11 (1 h, 1.0) and 22 (1 h, 4.0) -> 2.5
    # popularity: 11 (9, 1.0) and 22 (5, 4.0) -> 2.5
    # oracle: 10 (3.0) and 22 (4.0) -> 3.5
    assert got.to_dict() == {
        fq.FEED: 1.0,
        fq.BEFORE_RERANK: 1.0,
        fq.REVERSE_CHRON: 2.5,
        fq.POPULAR: 2.5,
        fq.ORACLE: 3.5,
    }


def test_oracle_is_the_ceiling_and_its_share_is_one():
    value = fq.feed_value(_cands(), 2).set_index("ranking")
    # top 2 of user 1: oracle 10+12 = 5.0; user 2: 22+20 = 4.5 -> 4.75; nothing can beat it.
    assert value.loc[fq.ORACLE, "value_at_2"] == pytest.approx(4.75)
    assert (value["value_at_2"] <= 4.75 + 1e-12).all()
    assert value.loc[fq.ORACLE, "share_of_oracle"] == 1.0
    # feed top 2: user 1 = 10+11 = 4.0 (12 is not in the feed); user 2 = 21+20 = -0.5
    assert value.loc[fq.FEED, "value_at_2"] == pytest.approx(1.75)


def test_candidate_recall_by_source():
    engaged = pd.DataFrame(
        {
            C.USER_ID: [1, 1, 1, 2],
            C.POST_ID: [10, 12, 99, 20],  # 99 was not a candidate; it was created later
            "existed": [True, True, False, True],
        }
    )
    got = fq.candidate_recall(_cands(), engaged, ("network", "interest", "trending"))
    got = got.set_index("source")
    # all: 10, 12, 20 were candidates of their users: 3 of 4; of those that existed, 3 of 3.
    assert got.loc["all", "recall"] == 0.75 and got.loc["all", "recall_existing"] == 1.0
    # network proposed 10 and 12: 2 of 4, 2 of 3; interest 12 only; trending none of them.
    assert got.loc["network", "recall"] == 0.5
    assert got.loc["network", "recall_existing"] == pytest.approx(2 / 3)
    assert got.loc["interest", "recall"] == 0.25
    assert got.loc["trending", "recall"] == 0.0


def test_missing_columns_are_named():
    with pytest.raises(KeyError, match="true_value"):
        fq.feed_value(_cands().drop(columns=fq.TRUE_VALUE), 10)
