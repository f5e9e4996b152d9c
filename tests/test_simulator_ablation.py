"""The oracle with latents hidden: hiding nothing is the oracle, a hidden trait can no longer be
read (changing it changes nothing), and hiding every latent costs AUC on simulated logs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from jobs.settings import load_settings
from models.evaluation.metrics import auc
from simulator import build_world, simulate_day
from simulator.ablation import (
    ALL_HIDDEN,
    CLICKBAIT,
    INTERESTS,
    LATENTS,
    POST_CLICKBAIT,
    QUALITY,
    USER_BIAS,
    ablated_truth,
    bait_share,
    with_latents,
)
from simulator.behaviour import true_model
from simulator.oracle import oracle_exposure, truth_frame
from warehouse.catalog import ACTIONS, CLICK, C, truth_column

CFG = load_settings("tiny", environ={}).simulator
PAIRS = [C.USER_ID, C.POST_ID, C.SERVED_AT, C.DEVICE]


@pytest.fixture(scope="module")
def sim():
    """The world, day 1's logs and the exposure of its impressions (day 0 gives social proof)."""
    world = build_world(CFG)
    day0 = simulate_day(world, CFG, 0, None)
    day1 = simulate_day(world, CFG, 1, day0.engagements)
    imp = day1.impressions
    x = oracle_exposure(world, CFG, imp[PAIRS], day0.engagements, position=imp[C.POSITION])
    return world, day1, x


def _probs(truth) -> np.ndarray:
    return np.stack([truth.p[a] for a in ACTIONS])  # (n_actions, n)


def test_hiding_nothing_is_the_logged_truth(sim):
    world, day1, x = sim
    got = truth_frame(ablated_truth(world, CFG, x, ()), day1.impressions.index)
    want = day1.truth.set_index(C.IMPRESSION_ID).loc[day1.impressions[C.IMPRESSION_ID]]
    np.testing.assert_allclose(got.to_numpy(), want[list(got.columns)].to_numpy(), rtol=1e-12)


def _shuffled(world, field: str, r: np.random.Generator):
    """The world with one latent permuted across users or authors (its mean unchanged)."""
    where = "users_latent" if field in ("interests", "bias") else "authors_latent"
    latents = getattr(world, where)
    values = getattr(latents, field)
    changed = dataclasses.replace(latents, **{field: values[r.permutation(len(values))]})
    return dataclasses.replace(world, **{where: changed})


@pytest.mark.parametrize(
    ("hidden", "field"),
    [(INTERESTS, "interests"), (USER_BIAS, "bias"), (QUALITY, "quality")],
)
def test_a_hidden_trait_is_no_longer_read(sim, hidden, field):
    world, _, x = sim
    other = _shuffled(world, field, np.random.default_rng(3))
    seen = _probs(true_model(world, CFG, x))
    assert not np.allclose(_probs(true_model(other, CFG, x)), seen)  # the trait matters ...
    blind = _probs(ablated_truth(world, CFG, x, [hidden]))
    # ... until it is hidden: whatever the users' or authors' values, the same probabilities.
    np.testing.assert_allclose(_probs(ablated_truth(other, CFG, x, [hidden])), blind, rtol=1e-12)
    assert not np.allclose(blind, seen)


def test_user_bias_moves_only_the_positive_actions(sim):
    world, _, x = sim
    seen, blind = true_model(world, CFG, x), ablated_truth(world, CFG, x, [USER_BIAS])
    for a in ("hide", "report"):  # their logits read the fit, not the viewer's own bias
        np.testing.assert_array_equal(blind.p[a], seen.p[a])
    assert not np.allclose(blind.p[CLICK], seen.p[CLICK])


def test_hidden_clickbait_is_the_mixture_over_its_prior(sim):
    world, _, x = sim
    flipped = dataclasses.replace(x, clickbait=~x.clickbait)
    blind = ablated_truth(world, CFG, x, [CLICKBAIT])
    # The post's own flag is no longer read: flipping every flag changes nothing.
    unread = ablated_truth(world, CFG, flipped, [CLICKBAIT])
    np.testing.assert_allclose(_probs(unread), _probs(blind), rtol=1e-12)
    honest = true_model(world, CFG, dataclasses.replace(x, clickbait=np.zeros_like(x.clickbait)))
    bait = true_model(world, CFG, dataclasses.replace(x, clickbait=np.ones_like(x.clickbait)))
    q = bait_share(world)
    assert 0.0 < q < 0.5  # a few authors bait (clickbait_author_share), the rest rarely
    for a in ACTIONS:  # exactly the prior's weights of the two worlds
        np.testing.assert_allclose(blind.p[a], (1 - q) * honest.p[a] + q * bait.p[a])
    # Bait is closed at once: the mixture's dwell lies between the two.
    assert (bait.e_dwell_s <= blind.e_dwell_s + 1e-9).all()
    assert (blind.e_dwell_s <= honest.e_dwell_s + 1e-9).all()


def test_post_clickbait_keeps_the_authors_rate(sim):
    world, _, x = sim
    seen = true_model(world, CFG, x)
    blind = ablated_truth(world, CFG, x, [POST_CLICKBAIT])
    rate = world.authors_latent.clickbait[x.author]
    honest_author = rate < 0.05  # 1% bait: hiding the draw barely moves an honest post
    assert honest_author.mean() > 0.5
    moved = np.abs(blind.p[CLICK] - seen.p[CLICK]) / seen.p[CLICK]
    assert np.median(moved[honest_author & ~x.clickbait]) < 0.02
    assert np.median(moved[~honest_author]) > 0.2


def test_hiding_every_latent_costs_auc_on_the_logs(sim):
    world, day1, x = sim
    labels = (
        day1.engagements.assign(hit=1)
        .pivot_table(index=C.IMPRESSION_ID, columns=C.ACTION, values="hit", aggfunc="max")
        .reindex(day1.impressions[C.IMPRESSION_ID], fill_value=0)
        .fillna(0)
    )
    oracle = truth_frame(true_model(world, CFG, x), pd.RangeIndex(len(labels)))
    blind = truth_frame(ablated_truth(world, CFG, x, ALL_HIDDEN), oracle.index)
    assert labels[CLICK].sum() > 300
    col = truth_column(CLICK)
    full, hidden = auc(labels[CLICK], oracle[col]), auc(labels[CLICK], blind[col])
    assert full - hidden > 0.03, (full, hidden)


def test_unknown_latents_raise(sim):
    world, _, x = sim
    with pytest.raises(ValueError, match="unknown latents"):
        ablated_truth(world, CFG, x, ["mood"])
    assert set(ALL_HIDDEN) < set(LATENTS)


def test_with_latents_puts_estimates_in(sim):
    world, _, x = sim
    u = world.users_latent
    same = with_latents(world, interests=u.interests, bias=u.bias)
    np.testing.assert_array_equal(
        _probs(true_model(same, CFG, x)), _probs(true_model(world, CFG, x))
    )
    # The population's mean interest, put in as an estimate, is what hiding interests does.
    mean = np.broadcast_to(u.interests.mean(axis=0), u.interests.shape)
    np.testing.assert_allclose(
        _probs(true_model(with_latents(world, interests=mean), CFG, x)),
        _probs(ablated_truth(world, CFG, x, [INTERESTS])),
        rtol=1e-12,
    )
    assert world.users_latent is u  # the world itself is left as it was
    with pytest.raises(ValueError, match="quality must have shape"):
        with_latents(world, quality=np.zeros(3))
