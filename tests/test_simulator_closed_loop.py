"""The closed loop in the simulator: buckets, and treatment served from a feed client."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from simulator import build_world, simulate_day
from simulator._common import day_start_us
from simulator.closed_loop import buckets, is_treatment
from simulator.config import ServingSettings, SimulatorSettings
from simulator.day import day_pool, social_state
from warehouse.catalog import IMPRESSIONS, C

CFG = SimulatorSettings(days=2, serving=ServingSettings(loop_days=1, explore_share=0.2))
LOOP_DAY = 1
VERSION, MODEL = "2026-01-05.1", "3"
NOT_IN_POOL = 10**15  # a post id the day's pool does not have


@dataclasses.dataclass
class Page:
    items: list[dict]
    next_cursor: str | None
    version: str
    generated_at: str | None
    model_version: str | None
    fallback: bool = False


class FakeReader:
    """A feed per user, paged by an offset cursor; records every call. A user without a feed
    gets the `fallback` feed, marked as such, as the read path does."""

    def __init__(self, feeds: dict[int, list[int]], generated_at: str, fallback=()):
        self.feeds, self.generated_at, self.calls = feeds, generated_at, []
        self.fallback = list(fallback)

    def page(self, user_id: int, limit: int | None = None, cursor: str | None = None) -> Page:
        self.calls.append((user_id, limit, cursor))
        own = user_id in self.feeds
        feed = self.feeds[user_id] if own else self.fallback
        start = int(cursor) if cursor else 0
        chunk = feed[start : start + limit]
        items = [{C.RANK: start + i + 1, C.POST_ID: p} for i, p in enumerate(chunk)]
        more = str(start + limit) if start + limit < len(feed) else None
        return Page(items, more, VERSION, self.generated_at, MODEL, fallback=not own)


@pytest.fixture(scope="module")
def world():
    return build_world(CFG)


@pytest.fixture(scope="module")
def reader(world):
    """Every user's feed: 150 posts of the loop day's pool created before it began, newest
    first, with a post the pool does not have at rank 2."""
    state = social_state(None, world.follows_as_of(pd.Timestamp("2026-01-06", tz="UTC")))
    pool = day_pool(world, CFG, LOOP_DAY, state).pool
    start = day_start_us(CFG, LOOP_DAY)
    older = pool.post_id[pool.created_us < start][
        np.argsort(-pool.created_us[pool.created_us < start])
    ]
    rng = np.random.default_rng(0)
    feeds = {
        u: [int(older[0]), NOT_IN_POOL, *map(int, rng.choice(older[1:], 149, replace=False))]
        for u in range(CFG.n_users)
    }
    generated = dt.datetime.fromtimestamp(start / 1e6, tz=dt.UTC).isoformat()
    return FakeReader(feeds, generated)


@pytest.fixture(scope="module")
def logs(world, reader):
    return simulate_day(world, CFG, LOOP_DAY, None, reader)


def test_buckets_split_by_the_share_and_are_stable():
    ids = np.arange(100_000)
    s = ServingSettings(control_share=0.3)
    treat = is_treatment(ids, s)
    assert abs(treat.mean() - 0.7) < 0.01
    assert np.array_equal(treat, is_treatment(ids, s))
    other = is_treatment(ids, s.model_copy(update={"bucket_salt": 1}))
    assert 0.5 < (treat == other).mean() < 0.7  # a new salt: an independent split
    assert set(buckets(ids[:1000], s)) == {"control", "treatment"}


def test_a_loop_day_needs_the_read_path_and_no_other_day_takes_it(world, reader):
    with pytest.raises(ValueError, match=r"closed-loop day.*needs the feed store's read path"):
        simulate_day(world, CFG, LOOP_DAY, None)
    with pytest.raises(ValueError, match="not a closed-loop day"):
        simulate_day(world, CFG, 0, None, reader)


def test_treatment_reads_its_feed_and_control_stays_chronological(logs, reader):
    imps = logs.impressions
    assert list(imps.columns) == IMPRESSIONS.columns
    treat = is_treatment(imps[C.USER_ID].to_numpy(), CFG.serving)
    assert (imps[C.BUCKET] == np.where(treat, "treatment", "control")).all()
    t, c = imps[treat], imps[~treat]
    assert len(t) > 500 and len(c) > 500
    assert set(t[C.POLICY]) == {"ranked"} and set(c[C.POLICY]) == {"chronological"}
    assert set(t[C.SOURCE]) == {"ranked", "fresh", "explore"}
    assert set(c[C.SOURCE]) <= {"network", "popular"}
    assert (t[C.FEED_VERSION] == VERSION).all() and (t[C.MODEL_VERSION] == MODEL).all()
    assert c[C.FEED_VERSION].isna().all() and c[C.MODEL_VERSION].isna().all()
    # Only treatment users asked the read path, page by page by the cursor it returned.
    asked = {u for u, _, _ in reader.calls}
    assert asked == set(t[C.USER_ID])
    assert {limit for _, limit, _ in reader.calls} == {CFG.serving.page_size}
    assert NOT_IN_POOL not in set(t[C.POST_ID])


def test_a_user_without_a_feed_reads_the_fallback_recorded_as_such(world, reader):
    """Odd users have no feed of their own: the read path gives them the version's fallback
    (here: user 0's feed), whose next posts are logged as `fallback`, never as `ranked`."""
    feeds = {u: f for u, f in reader.feeds.items() if u % 2 == 0}
    partial = FakeReader(feeds, reader.generated_at, fallback=reader.feeds[0])
    imps = simulate_day(world, CFG, LOOP_DAY, None, partial).impressions
    t = imps[imps[C.POLICY] == "ranked"]
    odd = t[C.USER_ID] % 2 == 1
    assert odd.any() and (~odd).any()
    assert set(t.loc[odd, C.SOURCE]) == {"fallback", "fresh", "explore"}
    assert set(t.loc[~odd, C.SOURCE]) == {"ranked", "fresh", "explore"}
    from_fallback = t[odd & t[C.SOURCE].isin(["fallback", "explore"])]
    assert from_fallback[C.POST_ID].isin(reader.feeds[0]).all()


def test_no_post_is_served_twice_to_a_user_in_a_day(logs):
    imps = logs.impressions[logs.impressions[C.POLICY] == "ranked"]
    assert not imps.duplicated([C.USER_ID, C.POST_ID]).any()


def test_the_feed_order_is_kept_and_fresh_posts_are_newer_than_the_feed(logs, reader, world):
    imps = logs.impressions.sort_values([C.REQUEST_ID, C.POSITION])
    t = imps[imps[C.POLICY] == "ranked"]
    ranked = t[t[C.SOURCE] == "ranked"]
    rank = {u: {p: i for i, p in enumerate(f)} for u, f in reader.feeds.items()}
    ranks = [rank[u][p] for u, p in zip(ranked[C.USER_ID], ranked[C.POST_ID], strict=True)]
    ranked = ranked.assign(r=ranks)
    # Within a session the feed's posts come in feed order.
    assert ranked.groupby(C.REQUEST_ID)["r"].is_monotonic_increasing.all()
    fresh = t[t[C.SOURCE] == "fresh"]
    assert len(fresh) > 0  # every fresh post is one of the loop day's own
    created = logs.posts.set_index(C.POST_ID)[C.CREATED_AT]
    assert (
        created.reindex(fresh[C.POST_ID]).to_numpy() >= pd.Timestamp("2026-01-06", tz="UTC")
    ).all()
    assert (fresh[C.POSITION] % CFG.serving.fresh_every == CFG.serving.fresh_every - 1).mean() > 0.5


def test_propensities_are_those_of_the_policy(logs):
    imps = logs.impressions
    eps = CFG.serving.explore_share
    t = imps[imps[C.POLICY] == "ranked"]
    p = t.groupby(C.SOURCE)[C.PROPENSITY]
    assert (p.get_group("fresh") == 1.0).all()
    assert (p.get_group("ranked") > 1 - eps).all() and (p.get_group("ranked") <= 1).all()
    explored = p.get_group("explore")
    assert (explored > 0).all() and (explored <= eps / 2).all()
    share = (t[C.SOURCE] == "explore").sum() / (t[C.SOURCE] != "fresh").sum()
    assert abs(share - eps) < 0.05
    c = imps[imps[C.POLICY] == "chronological"]
    top = c[C.POSITION] < CFG.explore_top_k
    assert (c.loc[~top, C.PROPENSITY] == 1.0).all()
    assert c.loc[top, C.PROPENSITY].between(1 / CFG.explore_top_k, 1.0).all()


def test_the_loop_day_is_deterministic(world, reader, logs):
    again = simulate_day(world, CFG, LOOP_DAY, None, reader)
    pd.testing.assert_frame_equal(again.impressions, logs.impressions)
    pd.testing.assert_frame_equal(again.engagements, logs.engagements)
