"""The population: users and authors with their latent traits, and the follow graph.

Account ids: users are 0..n_users-1; the first `n_person_authors` users also post, under their
user id; pages are n_users .. n_users + n_pages - 1. Arrays over authors are indexed by an
author *index* 0..n_authors-1 (people first, then pages); `World.author_index` maps ids to it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.special import expit

from simulator._common import DAY_US, Stream, day_start_us, rng, to_timestamps
from simulator.config import SimulatorSettings
from simulator.graph import FollowGraph, build_follow_graph
from simulator.latents import AuthorLatents, UserLatents
from warehouse.catalog import (
    AGE_BUCKETS,
    AUTHOR_KINDS,
    AUTHORS,
    COUNTRIES,
    DEVICES,
    FOLLOWS,
    GENDERS,
    USERS,
    C,
)

_COUNTRY_P = np.array([0.30, 0.12, 0.20, 0.08, 0.08, 0.07, 0.08, 0.07])
_AGE_P = np.array([0.05, 0.20, 0.28, 0.20, 0.15, 0.12])
_GENDER_P = np.array([0.49, 0.49, 0.02])
_MOBILE_P = 0.75  # share of users whose primary device is mobile
_ACCOUNT_AGE_DAYS = (30, 5 * 365)  # accounts were opened this many days before the start
# Session-hour mixture: evening peak, lunch, morning commute (hour, sd, weight).
_HOUR_MIX = np.array([[20.5, 2.0, 0.60], [12.5, 1.5, 0.25], [8.0, 1.5, 0.15]])
_INTEREST_CONCENTRATION = 0.25  # Dirichlet alpha per topic: a few topics per user
_AUTHOR_CONCENTRATION = 0.08  # authors stick to one or two topics
_PARETO_SHAPE = 1.2  # tail of author popularity: a few authors draw most follows
_PAGE_POPULARITY = 4.0  # pages are more popular than people ...
_PAGE_RATE = 1.5  # ... and post more


@dataclasses.dataclass(frozen=True, eq=False)
class World:
    """Everything about the platform that does not change from day to day."""

    n_users: int
    n_person_authors: int
    users_latent: UserLatents
    authors_latent: AuthorLatents
    graph: FollowGraph
    users: pd.DataFrame  # USERS columns, without ds
    authors: pd.DataFrame  # AUTHORS columns, without ds
    follows: pd.DataFrame  # FOLLOWS columns, every follow ever made in the simulation

    @property
    def n_authors(self) -> int:
        return len(self.authors_latent.author_id)

    def author_index(self, author_ids: np.ndarray) -> np.ndarray:
        """Author index of account ids (people keep their user id, pages follow them)."""
        ids = np.asarray(author_ids, dtype=np.int64)
        return np.where(ids < self.n_users, ids, ids - self.n_users + self.n_person_authors)

    def follows_as_of(self, ts: pd.Timestamp) -> pd.DataFrame:
        """The follow graph as it stood just before `ts` (created_at < ts)."""
        return self.follows[self.follows[C.CREATED_AT] < pd.Timestamp(ts)].reset_index(drop=True)


def build_world(cfg: SimulatorSettings) -> World:
    """Draw the population and the follow graph; the same settings give the same world."""
    if not 0 < cfg.n_person_authors <= min(cfg.n_users, cfg.n_authors):
        raise ValueError("need 0 < n_person_authors <= min(n_users, n_authors)")
    start = day_start_us(cfg, 0)
    users, ulat = _users(cfg, start)
    authors, alat = _authors(cfg, start, ulat.created_us)
    graph = build_follow_graph(cfg, ulat, alat, cfg.n_person_authors)
    follows = pd.DataFrame(
        {
            C.FOLLOWER_ID: graph.follower,
            C.FOLLOWEE_ID: alat.author_id[graph.followee],
            C.CREATED_AT: to_timestamps(graph.created_us),
            C.IS_CLOSE_FRIEND: graph.close_friend,
        },
        columns=FOLLOWS.columns,
    )
    return World(cfg.n_users, cfg.n_person_authors, ulat, alat, graph, users, authors, follows)


def _users(cfg: SimulatorSettings, start_us: int):
    r = rng(cfg.seed, Stream.USERS)
    n, t = cfg.n_users, cfg.n_topics
    country = r.choice(len(COUNTRIES), n, p=_COUNTRY_P)
    age = r.choice(len(AGE_BUCKETS), n, p=_AGE_P)
    gender = r.choice(len(GENDERS), n, p=_GENDER_P)
    device = (r.random(n) >= _MOBILE_P).astype(np.int64)  # 0 = mobile, DEVICES order
    # Age groups lean towards their own topics, so demographics carry some signal.
    age_prior = r.dirichlet(np.ones(t), size=len(AGE_BUCKETS))  # (n_ages, T)
    alpha = _INTEREST_CONCENTRATION * t * (0.5 / t + 0.5 * age_prior[age])  # (n, T)
    interests = _normalise(r.gamma(alpha) + 1e-12)
    activity = r.lognormal(-0.5 * 0.6**2, 0.6, n)  # mean one
    bias = r.normal(0.0, cfg.behaviour.user_bias_sd, n)
    comp = r.choice(len(_HOUR_MIX), n, p=_HOUR_MIX[:, 2])
    pref_hour = (_HOUR_MIX[comp, 0] + _HOUR_MIX[comp, 1] * r.standard_normal(n)) % 24.0
    created = start_us - _account_age_us(r, n)
    frame = pd.DataFrame(
        {
            C.USER_ID: np.arange(n, dtype=np.int64),
            C.CREATED_AT: to_timestamps(created),
            C.COUNTRY: np.array(COUNTRIES, dtype=object)[country],
            C.AGE_BUCKET: np.array(AGE_BUCKETS, dtype=object)[age],
            C.GENDER: np.array(GENDERS, dtype=object)[gender],
            C.PRIMARY_DEVICE: np.array(DEVICES, dtype=object)[device],
            C.IS_PERSON_AUTHOR: np.arange(n) < cfg.n_person_authors,
        },
        columns=USERS.columns,
    )
    latent = UserLatents(interests, activity, bias, pref_hour, device, country, created)
    return frame, latent


def _authors(cfg: SimulatorSettings, start_us: int, user_created: np.ndarray):
    r = rng(cfg.seed, Stream.AUTHORS)
    n, n_person = cfg.n_authors, cfg.n_person_authors
    is_page = np.arange(n) >= n_person
    author_id = np.where(is_page, np.arange(n) - n_person + cfg.n_users, np.arange(n))
    topic_mix = _normalise(r.gamma(np.full((n, cfg.n_topics), _AUTHOR_CONCENTRATION)) + 1e-12)
    popularity = (r.pareto(_PARETO_SHAPE, n) + 1.0) * np.where(is_page, _PAGE_POPULARITY, 1.0)
    # Popular accounts post more, with noise so that rate alone does not reveal popularity.
    rate = popularity**0.4 * r.lognormal(0.0, 0.5, n) * np.where(is_page, _PAGE_RATE, 1.0)
    rate *= cfg.posts_per_day / rate.sum()
    share = cfg.clickbait_author_share * np.where(is_page, 1.5, 0.5)  # pages bait more
    baiter = r.random(n) < share
    clickbait = np.where(baiter, 0.5, 0.01)
    quality = r.standard_normal(n) - 0.5 * baiter
    z = np.log(popularity)
    z = (z - z.mean()) / (z.std() + 1e-12)
    verified = r.random(n) < expit(-3.0 + 1.2 * z + 0.7 * is_page)
    created = np.where(is_page, start_us - _account_age_us(r, n), 0)
    created[:n_person] = user_created[:n_person]  # a person's author account is their user
    frame = pd.DataFrame(
        {
            C.AUTHOR_ID: author_id.astype(np.int64),
            C.KIND: np.array(AUTHOR_KINDS, dtype=object)[is_page.astype(np.int64)],
            C.CREATED_AT: to_timestamps(created),
            C.VERIFIED: verified,
        },
        columns=AUTHORS.columns,
    )
    latent = AuthorLatents(author_id, topic_mix, quality, popularity, rate, clickbait, created)
    return frame, latent


def _account_age_us(r: np.random.Generator, n: int) -> np.ndarray:
    lo, hi = _ACCOUNT_AGE_DAYS
    return (r.uniform(lo, hi, n) * DAY_US).astype(np.int64)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=1, keepdims=True)
