"""The oracle recomputes the simulator's truth for any (user, post, time, device) pair: on the
pairs the logging policy did serve it must give back the logged truth exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.settings import load_settings
from simulator import build_world, simulate_day, social_state
from simulator._common import earlier_in_session
from simulator.behaviour import true_model
from simulator.oracle import ORACLE_COLUMNS, as_lists, best_lists, oracle_exposure, oracle_truth
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


# Satisfaction within a session: each earlier post of the same author (topic) in the session
# lowers the positive actions' logits (simulator.behaviour, off by default).
TIRED = CFG.model_copy(
    update={
        "behaviour": CFG.behaviour.model_copy(update={"author_fatigue": 0.6, "topic_fatigue": 0.3})
    }
)


@pytest.fixture(scope="module")
def tired(sim):
    """Day 0 simulated by the tiny profile with session fatigue on, and the same day without."""
    world, _, _ = sim
    return world, simulate_day(world, CFG, 0, None), simulate_day(world, TIRED, 0, None)


def test_earlier_in_session_counts_the_same_key_at_earlier_positions():
    session = np.array([0, 0, 0, 1, 1, 0, 0])
    position = np.array([3, 1, 2, 0, 1, 0, 4])
    key = np.array([5, 5, 6, 5, 5, 5, 6])
    # session 0 in position order: 5 (row 5), 5 (row 1), 6 (row 2), 5 (row 0), 6 (row 6)
    assert earlier_in_session(session, position, key).tolist() == [2, 1, 0, 0, 1, 0, 1]
    assert earlier_in_session(*(np.zeros(0, dtype=np.int64),) * 3).tolist() == []


def test_fatigue_lowers_the_positive_actions_of_repeated_authors_and_topics(tired):
    _, fresh, tiring = tired
    # Day 0's chronological serving does not depend on behaviour: the same impressions.
    pd.testing.assert_frame_equal(fresh.impressions, tiring.impressions)
    imp = fresh.impressions
    posts = fresh.posts.set_index(C.POST_ID)
    topic = posts[C.TOPIC].reindex(imp[C.POST_ID]).to_numpy()
    request, position = imp[C.REQUEST_ID].to_numpy(), imp[C.POSITION].to_numpy()
    seen = (earlier_in_session(request, position, imp[C.AUTHOR_ID].to_numpy()) > 0) | (
        earlier_in_session(request, position, topic) > 0
    )
    assert 0.1 < seen.mean() < 0.95  # sessions do repeat authors and topics
    a, b = _truth_of(fresh), _truth_of(tiring)
    for action in POSITIVE_ACTIONS:
        col = truth_column(action)
        np.testing.assert_array_equal(a[col][~seen], b[col][~seen])  # first of their kind
        assert (b[col][seen] < a[col][seen]).all(), action
    for col in [truth_column("hide"), truth_column("report"), C.E_DWELL_S]:
        np.testing.assert_array_equal(a[col], b[col])
    assert (
        tiring.engagements[C.ACTION].eq("click").sum()
        < fresh.engagements[C.ACTION].eq("click").sum()
    )


def test_the_oracle_reproduces_a_tired_session_given_its_request(tired):
    world, _, day = tired
    imp = day.impressions
    position, request = imp[C.POSITION].to_numpy(), imp[C.REQUEST_ID].to_numpy()
    want = _truth_of(day)
    got = oracle_truth(world, TIRED, imp[PAIRS], None, position=position, session=request)
    np.testing.assert_allclose(got.to_numpy(), want[list(ORACLE_COLUMNS)].to_numpy(), rtol=1e-12)
    alone = oracle_truth(world, TIRED, imp[PAIRS], None, position=position)  # no session
    assert (alone[truth_column("click")] > want[truth_column("click")] * (1 + 1e-9)).any()
    with pytest.raises(ValueError, match="session has"):
        oracle_truth(world, TIRED, imp[PAIRS], None, position=position, session=request[:-1])


def _lists(world, cfg, day):
    """Each user's candidates = the posts served to them that day, as evaluate_feeds values
    them (alone, at the top, at noon): their exposures, the user of each row and p_click."""
    pairs = day.impressions.drop_duplicates([C.USER_ID, C.POST_ID]).reset_index(drop=True)
    pairs = pairs.assign(**{C.SERVED_AT: pairs[C.SERVED_AT].max()})[PAIRS]
    x = oracle_exposure(world, cfg, pairs, None)
    return x, pairs[C.USER_ID].to_numpy()


def _click(truth):
    return truth.p["click"]


def test_best_lists_without_fatigue_are_the_value_order(tired):
    world, day, _ = tired
    x, user = _lists(world, CFG, day)
    slot = best_lists(world, CFG, x, user, 5, _click)
    alone = true_model(world, CFG, x).p["click"]
    frame = pd.DataFrame({"user": user, "v": alone, "row": np.arange(len(user))})
    want = frame.sort_values(["user", "v", "row"], ascending=[True, False, True])
    want = want.assign(slot=want.groupby("user").cumcount()).query("slot < 5")
    got = np.full(len(user), -1)
    got[want["row"].to_numpy()] = want["slot"].to_numpy()
    np.testing.assert_array_equal(slot, got)
    assert (pd.Series(slot[slot >= 0]).groupby(user[slot >= 0]).size() <= 5).all()


def test_best_lists_under_fatigue_vary_authors_and_beat_the_value_order(tired):
    world, day, _ = tired
    k = 8
    x, user = _lists(world, TIRED, day)
    alone = true_model(world, TIRED, x).p["click"]
    best = best_lists(world, TIRED, x, user, k, _click)
    frame = pd.DataFrame({"user": user, "v": alone, "row": np.arange(len(user))})
    order = frame.sort_values(["user", "v", "row"], ascending=[True, False, True])
    order = order.assign(slot=order.groupby("user").cumcount()).query("slot < @k")

    def value_and_authors(rows, slots):
        xl = as_lists(x, rows, slots, user[rows])
        v = pd.Series(_click(true_model(world, TIRED, xl))).groupby(user[rows]).sum()
        authors = pd.Series(xl.author).groupby(user[rows]).nunique()
        return v, authors

    rows = np.flatnonzero(best >= 0)
    best_v, best_authors = value_and_authors(rows, best[rows])
    greedy_v, greedy_authors = value_and_authors(order["row"].to_numpy(), order["slot"].to_numpy())
    assert best_authors.mean() > greedy_authors.mean()  # fatigue spreads the authors
    assert best_v.sum() > greedy_v.sum()  # and the list is worth more as read
    assert (best_v >= greedy_v - 1e-12).mean() > 0.9
