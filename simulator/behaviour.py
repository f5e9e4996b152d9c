"""The true engagement model: action probabilities per impression, and the drawn actions.

One score, shared by all actions, sums what makes a post engaging for this user now:
user-topic affinity, closeness to the author, the author's quality, social proof (overall
and from the user's network), freshness, the device x content fit, the hour and weekday, and
the user's own bias, less the session's fatigue: each earlier post of the same author or topic
in the session lowers the odds of the positive actions (`author_fatigue`, `topic_fatigue`;
0, the default, turns it off). Each action's logit is its intercept plus that score, with clickbait
pulling clicks, hides and reports up and likes, comments and shares down; hide and report
instead fall with the positive fit. Position bias multiplies the probabilities of the
actions that need the user to examine the post.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import expit

from simulator._common import DAY_US, US_PER_S
from simulator.config import SimulatorSettings
from simulator.posts import LINK, PHOTO, TEXT, VIDEO
from simulator.world import World
from warehouse.catalog import ACTIONS, CLICK, DEVICES, POSITIVE_ACTIONS

MOBILE = DEVICES.index("mobile")
_LONG_TEXT = 600.0  # characters past which text starts to hurt on a phone
_HOUR_EFFECT, _PEAK_HOUR = 0.15, 21.0  # engagement is a little higher late in the evening
_WEEKEND_EFFECT = 0.1
_DWELL_MEDIA = {TEXT: 0.0, PHOTO: -0.4, VIDEO: 1.1, LINK: 0.3}  # log-multipliers of dwell
_DWELL_AFFINITY, _DWELL_CLICKBAIT = 0.3, -1.3  # interest holds attention; bait does not
# Drawn dwell is capped (the raw contract rejects reads over an hour); the cap sits so far in
# the lognormal's tail that e_dwell_s, the uncapped expectation, is unaffected in practice.
_MAX_DWELL_S = 1_800.0


@dataclasses.dataclass(frozen=True, eq=False)
class Exposure:
    """What the model needs about each impression, aligned arrays of length n."""

    user: np.ndarray
    author: np.ndarray  # author index
    topic: np.ndarray
    media: np.ndarray  # index into MEDIA_TYPES
    length: np.ndarray  # characters
    clickbait: np.ndarray  # bool, latent
    created_us: np.ndarray
    served_us: np.ndarray
    device: np.ndarray  # index into DEVICES
    position: np.ndarray
    follows: np.ndarray  # bool: the user follows the author
    close_friend: np.ndarray  # bool
    post_engagements: np.ndarray  # positive engagements of the post before the day
    network_engagers: np.ndarray  # the user's followees who engaged the post before the day
    # posts of the same author / topic at earlier positions of the same session
    seen_author: np.ndarray
    seen_topic: np.ndarray

    def take(self, rows: np.ndarray) -> Exposure:
        """The exposures of `rows` (indices), each keeping the session it was computed in."""
        return Exposure(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True, eq=False)
class Truth:
    p: dict[str, np.ndarray]  # action -> (n,) probability
    dwell_mu: np.ndarray  # (n,) log-median dwell given a click
    e_dwell_s: np.ndarray  # (n,) expected dwell given a click


def true_model(world: World, cfg: SimulatorSettings, x: Exposure) -> Truth:
    b = cfg.behaviour
    n_topics = world.users_latent.interests.shape[1]
    interest = world.users_latent.interests[x.user, x.topic]
    affinity = np.log1p(n_topics * interest) - np.log(2.0)  # 0 for an indifferent user
    fit = (
        b.affinity * affinity
        + b.closeness * (x.follows.astype(float) + x.close_friend)
        + b.quality * world.authors_latent.quality[x.author]
    )
    score = (
        fit
        + b.social_proof * np.log1p(x.post_engagements)
        + b.network_proof * np.log1p(x.network_engagers)
        - b.age_decay_per_day * (x.served_us - x.created_us) / DAY_US
        + b.context * _device_fit(x)
        + _calendar(x.served_us)
        + world.users_latent.bias[x.user]
    )
    bait = x.clickbait.astype(float)
    positive = score
    if b.author_fatigue or b.topic_fatigue:
        positive = score - b.author_fatigue * x.seen_author - b.topic_fatigue * x.seen_topic
    logits = {
        CLICK: b.base_click + positive + b.clickbait_click * bait,
        "like": b.base_like + positive - b.clickbait_engage * bait,
        "comment": b.base_comment + positive - b.clickbait_engage * bait,
        "share": b.base_share + positive - b.clickbait_engage * bait,
        "hide": b.base_hide - b.negative_weight * fit + b.clickbait_hide * bait,
        "report": b.base_report - b.negative_weight * fit + b.clickbait_report * bait,
    }
    examine = (1.0 + x.position) ** -b.position_decay
    p = {a: expit(logits[a]) * (examine if a in POSITIVE_ACTIONS else 1.0) for a in ACTIONS}
    mu = _dwell_mu(cfg, x, affinity, bait)
    return Truth(p, mu, np.exp(mu + 0.5 * b.dwell_sigma**2))


def _device_fit(x: Exposure) -> np.ndarray:
    """Video suits a phone, long text does not; links read better on a desktop."""
    mobile = x.device == MOBILE
    long_text = np.clip((x.length - _LONG_TEXT) / _LONG_TEXT, 0.0, 2.0) * (x.media == TEXT)
    return np.where(mobile, 1.0 * (x.media == VIDEO) - long_text, 0.5 * (x.media == LINK))


def _calendar(served_us: np.ndarray) -> np.ndarray:
    hour = (served_us % DAY_US) / (3600.0 * US_PER_S)
    weekday = (served_us // DAY_US + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return _HOUR_EFFECT * np.cos(2 * np.pi * (hour - _PEAK_HOUR) / 24.0) + _WEEKEND_EFFECT * (
        weekday >= 5
    )


def _dwell_mu(cfg, x: Exposure, affinity, bait) -> np.ndarray:
    """Log-median dwell: longer texts and videos hold longer, bait is closed at once."""
    media = np.zeros(len(x.media))
    for m, effect in _DWELL_MEDIA.items():
        media[x.media == m] = effect
    reads = (x.media == TEXT) | (x.media == LINK)  # captions do not set a photo's dwell
    length = np.where(reads, 0.5 * np.log(np.maximum(x.length, 1.0) / 300.0), 0.0)
    return (
        np.log(cfg.behaviour.dwell_median_s)
        + media
        + length
        + _DWELL_AFFINITY * affinity
        + _DWELL_CLICKBAIT * bait
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Actions:
    """Drawn engagements, one row per (impression, action)."""

    row: np.ndarray  # index into the exposures
    action: np.ndarray  # index into ACTIONS
    event_us: np.ndarray
    dwell_s: np.ndarray  # NaN except on clicks


def draw_actions(cfg: SimulatorSettings, x: Exposure, t: Truth, r) -> Actions:
    """Independent Bernoulli draws per action, timed after the impression: a click a few
    seconds in, like/comment/share after the click's dwell, hide/report a few seconds in."""
    n = len(x.user)
    hit = {a: r.random(n) < t.p[a] for a in ACTIONS}
    dwell = np.exp(t.dwell_mu + cfg.behaviour.dwell_sigma * r.standard_normal(n))
    dwell = np.minimum(dwell, _MAX_DWELL_S)
    s = US_PER_S
    click_at = x.served_us + ((0.5 + r.exponential(3.0, n)) * s).astype(np.int64)
    after_click = np.where(hit[CLICK], click_at + (dwell * s).astype(np.int64), x.served_us)
    extra_s = {"like": 2.0, "comment": 20.0, "share": 5.0, "hide": 3.0, "report": 10.0}
    rows, actions, times, dwells = [], [], [], []
    for i, a in enumerate(ACTIONS):
        idx = np.flatnonzero(hit[a])
        if a == CLICK:
            ts = click_at[idx]
        else:
            origin = after_click[idx] if a in POSITIVE_ACTIONS else x.served_us[idx]
            ts = origin + ((0.5 + r.exponential(extra_s[a], len(idx))) * s).astype(np.int64)
        cap = x.served_us[idx] + cfg.max_engagement_delay_s * s
        ts = np.clip(ts, x.served_us[idx] + 1, cap)  # strictly after, at most the max delay
        rows.append(idx)
        actions.append(np.full(len(idx), i))
        times.append(ts)
        dwells.append(dwell[idx] if a == CLICK else np.full(len(idx), np.nan))
    return Actions(*(np.concatenate(v) for v in (rows, actions, times, dwells)))
