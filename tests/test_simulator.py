"""The simulator on the tiny profile: deterministic, well-formed, and carrying the structure
(affinity, position bias, clickbait, social proof) that the pipeline's features rely on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from simulator import (
    SimulatorSettings,
    build_world,
    posts_for_day,
    simulate_day,
    simulate_shard,
    social_state,
)
from warehouse.catalog import (
    ACTIONS,
    ENGAGEMENTS,
    FOLLOWS,
    POSTS,
    SIMULATED_TABLES,
    TABLES,
    C,
    truth_column,
)

CFG = SimulatorSettings()  # the tiny profile


def _midnight(day_index: int) -> pd.Timestamp:
    return pd.Timestamp(CFG.start_date, tz="UTC") + pd.Timedelta(days=day_index)


def _run(cfg: SimulatorSettings, days: int):
    world = build_world(cfg)
    out, prior = [], []
    for d in range(days):
        logs = simulate_day(world, cfg, d, pd.concat(prior[-cfg.pool_days :]) if prior else None)
        prior.append(logs.engagements)
        out.append(logs)
    return world, out


@pytest.fixture(scope="module")
def sim():
    return _run(CFG, CFG.days)


@pytest.fixture(scope="module")
def scored(sim):
    """All days' impressions with their truth and whether they were clicked."""
    _, days = sim
    imp = pd.concat([d.impressions.merge(d.truth, on=C.IMPRESSION_ID) for d in days])
    eng = pd.concat([d.engagements for d in days])
    for a in ACTIONS:
        hit = eng.loc[eng[C.ACTION] == a, C.IMPRESSION_ID]
        imp[a] = imp[C.IMPRESSION_ID].isin(hit).astype(float)
    posts = pd.concat([d.posts for d in days])[[C.POST_ID, C.TOPIC]]
    return imp.merge(posts, on=C.POST_ID, how="left")


def test_same_seed_same_logs_other_seed_other_logs(sim):
    _, days = sim
    _, again = _run(CFG, 2)
    for first, second in zip(days[:2], again, strict=True):
        for name, frame in first.tables().items():
            pd.testing.assert_frame_equal(frame, second.tables()[name], check_exact=True)
    _, other = _run(CFG.model_copy(update={"seed": CFG.seed + 1}), 1)
    assert not days[0].impressions.equals(other[0].impressions)
    assert not days[0].posts[C.AUTHOR_ID].equals(other[0].posts[C.AUTHOR_ID])


def test_day_is_the_union_of_its_independent_shards(sim):
    world, days = sim
    state = social_state(days[0].engagements, world.follows_as_of(_midnight(1)))
    shards = [simulate_shard(world, CFG, 1, state, s) for s in reversed(range(CFG.n_shards))]
    imps = pd.concat([s.impressions for s in shards]).sort_values(C.IMPRESSION_ID)
    pd.testing.assert_frame_equal(imps.reset_index(drop=True), days[1].impressions)


def test_every_table_casts_to_its_catalog_schema(sim):
    _, days = sim
    tables = days[-1].tables()
    assert set(tables) == {t.name for t in SIMULATED_TABLES}
    for name, frame in tables.items():
        schema = TABLES[name].schema
        assert list(frame.columns) == schema.names, name
        cast = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        assert cast.num_rows == len(frame) > 0
        for key in TABLES[name].key:  # keys are never null
            assert cast.column(key).null_count == 0


def test_posts_have_catalog_columns_and_plausible_values(sim):
    world, days = sim
    posts = posts_for_day(world, CFG, 2)
    pd.testing.assert_frame_equal(posts, days[2].posts)
    assert list(posts.columns) == POSTS.columns
    assert posts[C.POST_ID].is_unique and posts[C.AUTHOR_ID].isin(world.authors[C.AUTHOR_ID]).all()
    assert posts[C.HASHTAGS].map(len).between(1, 4).all()
    assert posts.loc[posts[C.MEDIA_TYPE] == "link", C.HAS_URL].all()
    assert (posts[C.CREATED_AT].dt.floor("D") == _midnight(2)).all()


def test_follows_have_no_self_loops_and_grow_over_the_days(sim):
    world, days = sim
    f = world.follows
    assert list(f.columns) == FOLLOWS.columns
    assert not (f[C.FOLLOWER_ID] == f[C.FOLLOWEE_ID]).any()
    assert not f.duplicated([C.FOLLOWER_ID, C.FOLLOWEE_ID]).any()
    sizes = [len(d.follows) for d in days]
    assert sizes == sorted(sizes) and sizes[-1] == len(f) > sizes[0]
    close = f[f[C.IS_CLOSE_FRIEND]]
    assert (close[C.FOLLOWEE_ID] < CFG.n_users).all()  # close friends are people


def test_engagements_follow_their_impressions(sim):
    _, days = sim
    max_delay = pd.Timedelta(seconds=CFG.max_engagement_delay_s)
    for d in days:
        assert list(d.engagements.columns) == ENGAGEMENTS.columns
        e = d.engagements.merge(d.impressions, on=C.IMPRESSION_ID, suffixes=("", "_imp"))
        assert len(e) == len(d.engagements)  # every engagement is of an impression of the day
        assert (e[C.USER_ID] == e[f"{C.USER_ID}_imp"]).all()
        assert (e[C.POST_ID] == e[f"{C.POST_ID}_imp"]).all()
        assert (e[C.EVENT_TS] > e[C.SERVED_AT]).all()
        assert (e[C.EVENT_TS] <= e[C.SERVED_AT] + max_delay).all()
        assert e[C.DWELL_S].notna().eq(e[C.ACTION] == "click").all()
        assert e[C.DWELL_S].dropna().between(0, 3600, inclusive="right").all()
        assert not d.engagements.duplicated([C.IMPRESSION_ID, C.ACTION]).any()


def test_impressions_are_well_formed_feeds(sim):
    world, days = sim
    for i, d in enumerate(days):
        imp = d.impressions.merge(d.truth, on=C.IMPRESSION_ID)
        assert len(imp) == len(d.impressions) == len(d.truth)
        assert d.impressions[C.IMPRESSION_ID].is_unique
        feeds = imp.sort_values([C.REQUEST_ID, C.POSITION])
        by_request = feeds.groupby(C.REQUEST_ID)
        assert (by_request.cumcount() == feeds[C.POSITION]).all()  # positions 0, 1, 2, ...
        assert (by_request[C.SERVED_AT].diff().dropna() > pd.Timedelta(0)).all()
        assert (imp[C.SERVED_AT].dt.floor("D") == _midnight(i)).all()
        p = imp[[truth_column(a) for a in ACTIONS]].to_numpy()
        assert ((p > 0) & (p < 1)).all() and (imp[C.E_DWELL_S] > 0).all()
        _check_sources(world, d.impressions, i)


def _check_sources(world, impressions, day_index):
    """Network posts come from followees, popular ones never do; no one sees their own."""
    f = world.follows[[C.FOLLOWER_ID, C.FOLLOWEE_ID, C.CREATED_AT]].rename(
        columns={C.FOLLOWER_ID: C.USER_ID, C.FOLLOWEE_ID: C.AUTHOR_ID}
    )
    j = impressions.merge(f, on=[C.USER_ID, C.AUTHOR_ID], how="left")
    network = j[C.SOURCE] == "network"
    assert (j.loc[network, C.CREATED_AT] < j.loc[network, C.SERVED_AT]).all()
    assert j.loc[~network, C.CREATED_AT].isna().all()
    assert (impressions[C.USER_ID] != impressions[C.AUTHOR_ID]).all()
    assert set(impressions[C.SOURCE]) == {"network", "popular"}, day_index


def test_action_rates_are_in_range(scored):
    rate = scored[list(ACTIONS)].mean()
    assert 0.02 < rate["click"] < 0.08
    assert rate["like"] < rate["click"]
    assert rate["comment"] < rate["like"] and rate["share"] < rate["like"]
    assert min(rate["comment"], rate["share"]) > 0.001
    assert rate["report"] < rate["hide"] < rate["like"]
    truth = scored[[truth_column(a) for a in ACTIONS]].mean()
    assert truth[truth_column("report")] < truth[truth_column("hide")]
    # The true probabilities are the rates the draws produce.
    assert abs(truth[truth_column("click")] - rate["click"]) < 0.01


def test_clicks_rise_with_true_probability_and_with_affinity(sim, scored):
    world, _ = sim
    decile = pd.qcut(scored[truth_column("click")], 10, labels=False)
    ctr = scored.groupby(decile)["click"].mean()
    assert ctr.iloc[-1] > 3 * ctr.iloc[0]
    interest = world.users_latent.interests[scored[C.USER_ID], scored[C.TOPIC]]
    third = pd.qcut(interest, 3, labels=False)
    by_interest = scored.groupby(third)["click"].mean()
    assert by_interest.iloc[2] > 1.3 * by_interest.iloc[0]


def test_clicks_fall_with_position(scored):
    top = scored[C.POSITION] <= 1
    deep = scored[C.POSITION] >= 5
    assert scored.loc[top, "click"].mean() > 1.2 * scored.loc[deep, "click"].mean()
    p = scored[truth_column("click")]
    assert p[top].mean() > p[deep].mean()


def test_clickbait_draws_clicks_and_hides(sim, scored):
    """Clickbait is latent; recover it from the posts' authors, the only place it shows."""
    world, _ = sim
    baiter = world.authors_latent.clickbait[world.author_index(scored[C.AUTHOR_ID])] > 0.1
    assert scored.loc[baiter, "hide"].mean() > 2 * scored.loc[~baiter, "hide"].mean()
    p_like = scored[truth_column("like")] / scored[truth_column("click")]
    assert p_like[baiter].mean() < p_like[~baiter].mean()


def test_social_state_counts_positive_engagement_and_engaged_followees():
    ts = pd.Timestamp("2026-01-05 12:00", tz="UTC")
    eng = pd.DataFrame(
        {
            C.IMPRESSION_ID: [1, 2, 3, 4, 5],
            C.USER_ID: [1, 2, 1, 1, 3],
            C.POST_ID: [10, 10, 11, 10, 12],
            C.ACTION: ["like", "click", "hide", "click", "report"],
            C.EVENT_TS: [ts] * 5,
            C.DWELL_S: [np.nan, 3.0, np.nan, 4.0, np.nan],
        }
    )
    follows = pd.DataFrame(
        {C.FOLLOWER_ID: [5, 5, 6], C.FOLLOWEE_ID: [1, 2, 1], C.CREATED_AT: [ts] * 3}
    )
    state = social_state(eng, follows)
    # Post 10: like + click by user 1, click by user 2 = 3 positive; hides and reports do not count.
    assert state.post_engagements.to_dict() == {10: 3}
    # User 5 follows both engagers of post 10 (1 and 2, user 1 counted once), user 6 only 1.
    net = state.network.set_index([C.USER_ID, C.POST_ID])["n"].to_dict()
    assert net == {(5, 10): 2, (6, 10): 1}
    empty = social_state(None, follows)
    assert empty.post_engagements.empty and empty.network.empty
