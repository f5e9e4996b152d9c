"""The oracle with latents hidden: how much of its AUC each trait the logs never show is worth.

The true model reads four traits that no log records: a user's interest in each topic, a
user's own bias, an author's quality and whether a post is clickbait. `ablated_truth` runs
`true_model` unchanged on a copy of the world (and of the exposure) where the hidden traits
are replaced by what is known without them:

* `interests`: every user gets the population's mean interest in each topic (a plug-in of the
  mean, not an average over users);
* `user_bias`: every user gets the population's mean bias;
* `quality`: every author gets the mean quality over authors;
* `clickbait`: the post's flag is unknown; each probability is the mixture over its prior,
  (1 - q) p(not bait) + q p(bait), with q the share of bait among all posts (`bait_share`);
* `post_clickbait`: only the post's own draw is unknown, q is its author's bait rate (what an
  author's history reveals in the limit), so it is no stricter than `clickbait` (hiding both
  is hiding `clickbait`).

Hiding nothing gives the oracle exactly. Expected dwell given a click, under a mixture, is the
click-weighted mean of the two dwells. `with_latents` puts other values in (an estimate of a
trait from the logs, to ask what that estimate is worth).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import numpy as np

from simulator.behaviour import Exposure, Truth, true_model
from simulator.config import SimulatorSettings
from simulator.world import World
from warehouse.catalog import CLICK

INTERESTS, USER_BIAS, QUALITY = "interests", "user_bias", "quality"
CLICKBAIT, POST_CLICKBAIT = "clickbait", "post_clickbait"
LATENTS = (CLICKBAIT, POST_CLICKBAIT, USER_BIAS, INTERESTS, QUALITY)
# Every trait the logs never show, each replaced by the least that is known of it.
ALL_HIDDEN = (CLICKBAIT, USER_BIAS, INTERESTS, QUALITY)


def ablated_truth(
    world: World, cfg: SimulatorSettings, x: Exposure, hidden: Collection[str]
) -> Truth:
    """The true model's probabilities for `x` with the `hidden` latents (of LATENTS) replaced
    by what is known without them (module docstring)."""
    unknown = sorted(set(hidden) - set(LATENTS))
    if unknown:
        raise ValueError(f"unknown latents {unknown}; choose from {LATENTS}")
    blind = blind_world(world, hidden)
    if CLICKBAIT in hidden:
        return _mixture(blind, cfg, x, np.full(len(x.user), bait_share(world)))
    if POST_CLICKBAIT in hidden:
        return _mixture(blind, cfg, x, world.authors_latent.clickbait[x.author])
    return true_model(blind, cfg, x)


def blind_world(world: World, hidden: Collection[str]) -> World:
    """A copy of `world` whose hidden user and author traits are their population means."""
    users, authors = world.users_latent, world.authors_latent
    means = {}
    if INTERESTS in hidden:
        mean = users.interests.mean(axis=0, keepdims=True)  # (1, T), still sums to 1
        means["interests"] = np.broadcast_to(mean, users.interests.shape)
    if USER_BIAS in hidden:
        means["bias"] = np.full_like(users.bias, users.bias.mean())
    if QUALITY in hidden:
        means["quality"] = np.full_like(authors.quality, authors.quality.mean())
    return with_latents(world, **means)


def with_latents(
    world: World,
    *,
    interests: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    quality: np.ndarray | None = None,
) -> World:
    """A copy of `world` with the given traits in place of its own (an estimate of them, say):
    interests (n_users, n_topics), bias (n_users,), quality (n_authors,)."""
    users, authors = world.users_latent, world.authors_latent
    for name, value, like in (
        ("interests", interests, users.interests),
        ("bias", bias, users.bias),
        ("quality", quality, authors.quality),
    ):
        if value is not None and np.shape(value) != like.shape:
            raise ValueError(f"{name} must have shape {like.shape}, got {np.shape(value)}")
    if interests is not None:
        users = dataclasses.replace(users, interests=interests)
    if bias is not None:
        users = dataclasses.replace(users, bias=bias)
    if quality is not None:
        authors = dataclasses.replace(authors, quality=quality)
    return dataclasses.replace(world, users_latent=users, authors_latent=authors)


def bait_share(world: World) -> float:
    """The prior that a post is clickbait: authors post in proportion to their rate, and each
    post is bait with its author's probability."""
    a = world.authors_latent
    return float((a.post_rate * a.clickbait).sum() / a.post_rate.sum())


def _mixture(world: World, cfg: SimulatorSettings, x: Exposure, q: np.ndarray) -> Truth:
    """The truth averaged over the post's clickbait flag, bait with probability q (n,)."""
    n = len(x.user)
    honest = true_model(world, cfg, dataclasses.replace(x, clickbait=np.zeros(n, dtype=bool)))
    bait = true_model(world, cfg, dataclasses.replace(x, clickbait=np.ones(n, dtype=bool)))
    p = {a: (1.0 - q) * honest.p[a] + q * bait.p[a] for a in honest.p}
    click_honest, click_bait = (1.0 - q) * honest.p[CLICK], q * bait.p[CLICK]
    e_dwell = (click_honest * honest.e_dwell_s + click_bait * bait.e_dwell_s) / (
        click_honest + click_bait
    )
    # The log-median of a lognormal with the mixture's mean and the model's spread.
    mu = np.log(e_dwell) - 0.5 * cfg.behaviour.dwell_sigma**2
    return Truth(p, mu, e_dwell)
