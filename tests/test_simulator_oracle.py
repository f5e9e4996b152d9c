"""The oracle recomputes the simulator's truth for any (user, post, time, device) pair: on the
pairs the logging policy did serve it must give back the logged truth exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.settings import load_settings
from simulator import build_world, simulate_day, social_state
from simulator.oracle import ORACLE_COLUMNS, oracle_truth
from warehouse.catalog import ACTIONS, POSITIVE_ACTIONS, TRUTH_IMPRESSIONS, C, truth_column

CFG = load_settings("tiny", environ={}).simulator
PAIRS = [C.USER_ID, C.POST_ID, C.SERVED_AT, C.DEVICE]


@pytest.fixture(scope="module")
def sim():
    """The world, day 0's engagements (day 1's social proof) and day 1's logs."""
    world = build_world(CFG)
    day0 = simulate_day(world, CFG, 0, None)
    day1 = simulate_day(world, CFG, 1, day0.engagements)
    return world, day0.engagements, day1


def _truth_of(day1) -> pd.DataFrame:
    """Day 1's truth in the order of its impressions, without impression_id."""
    truth = day1.truth.set_index(C.IMPRESSION_ID).loc[day1.impressions[C.IMPRESSION_ID]]
    return truth.reset_index(drop=True)


def test_oracle_reproduces_the_logged_truth(sim):
    world, prior, day1 = sim
    imp = day1.impressions
    # The comparison only means something if day 1 carries social proof from day 0.
    midnight = pd.Timestamp(CFG.start_date, tz="UTC") + pd.Timedelta(days=1)
    state = social_state(prior, world.follows_as_of(midnight), before=midnight)
    assert imp[C.POST_ID].isin(state.post_engagements.index).sum() > 100
    assert len(imp.merge(state.network, on=[C.USER_ID, C.POST_ID])) > 10

    got = oracle_truth(world, CFG, imp[PAIRS], prior, position=imp[C.POSITION].to_numpy())

    assert list(got.columns) == [c for c in TRUTH_IMPRESSIONS.columns if c != C.IMPRESSION_ID]
    assert list(got.columns) == list(ORACLE_COLUMNS)
    assert got.index.equals(imp.index)
    want = _truth_of(day1)
    for column in [*map(truth_column, ACTIONS), C.E_DWELL_S]:
        np.testing.assert_allclose(got[column], want[column], rtol=1e-12, atol=0, err_msg=column)


def test_oracle_keeps_the_index_and_order_of_its_pairs(sim):
    world, prior, day1 = sim
    imp = day1.impressions
    rows = np.random.default_rng(0).permutation(len(imp))[:500]
    pairs = imp[PAIRS].iloc[rows].set_axis(np.arange(500) * 7 + 3)  # shuffled, odd index
    got = oracle_truth(world, CFG, pairs, prior, position=imp[C.POSITION].to_numpy()[rows])
    assert got.index.equals(pairs.index)
    want = _truth_of(day1).iloc[rows]
    np.testing.assert_allclose(got.to_numpy(), want[list(ORACLE_COLUMNS)].to_numpy(), rtol=1e-12)


def test_position_zero_is_fully_examined(sim):
    world, prior, day1 = sim
    imp = day1.impressions
    top = oracle_truth(world, CFG, imp[PAIRS], prior)  # position 0 by default
    served = _truth_of(day1)
    deeper = imp[C.POSITION].to_numpy() > 0
    assert deeper.any()
    for a in POSITIVE_ACTIONS:  # examination (1 + position) ** -decay is 1 at the top
        col = truth_column(a)
        assert (top[col].to_numpy() >= served[col].to_numpy()).all()
        assert (top[col].to_numpy()[deeper] > served[col].to_numpy()[deeper]).all()
    # Hide and report need no examination, and dwell is given a click: neither moves.
    for col in [truth_column("hide"), truth_column("report"), C.E_DWELL_S]:
        np.testing.assert_allclose(top[col], served[col], rtol=1e-12)


def test_unservable_posts_and_mixed_days_raise(sim):
    world, prior, day1 = sim
    pairs = day1.impressions[PAIRS].head(3).copy()
    unknown = pairs.assign(**{C.POST_ID: [pairs[C.POST_ID].iloc[0], 10**14, 5]})
    with pytest.raises(ValueError, match=str(10**14)):
        oracle_truth(world, CFG, unknown, prior)
    # A post created later on day 1 than the first pair is served.
    last = day1.posts.iloc[-1]
    early = pairs.assign(**{C.POST_ID: last[C.POST_ID]})
    assert (early[C.SERVED_AT] < last[C.CREATED_AT]).any()
    with pytest.raises(ValueError, match="after its served_at"):
        oracle_truth(world, CFG, early, prior)
    two_days = pairs.assign(
        **{C.SERVED_AT: pairs[C.SERVED_AT] + pd.to_timedelta([0, 0, 1], unit="D")}
    )
    with pytest.raises(ValueError, match="spans 2 simulated days"):
        oracle_truth(world, CFG, two_days, prior)
    with pytest.raises(ValueError, match="unknown device"):
        oracle_truth(world, CFG, pairs.assign(**{C.DEVICE: "tablet"}), prior)
