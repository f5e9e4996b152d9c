"""The hidden traits of users and authors: what the simulator knows and the logs only reflect.

Their own module so that the world (which draws them) and the follow graph (which reads them)
do not import each other.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class UserLatents:
    """Hidden traits of the users, indexed by user id."""

    interests: np.ndarray  # (n_users, n_topics), rows sum to 1
    activity: np.ndarray  # (n_users,) mean-one multiplier of sessions per day
    bias: np.ndarray  # (n_users,) own propensity to engage, logit
    pref_hour: np.ndarray  # (n_users,) preferred session hour in [0, 24)
    device: np.ndarray  # (n_users,) index into DEVICES of the primary device
    country: np.ndarray  # (n_users,) index into COUNTRIES
    created_us: np.ndarray  # (n_users,) account opening time


@dataclasses.dataclass(frozen=True, eq=False)
class AuthorLatents:
    """Hidden traits of the authors, indexed by author index."""

    author_id: np.ndarray  # (n_authors,) the account id
    topic_mix: np.ndarray  # (n_authors, n_topics), rows sum to 1
    quality: np.ndarray  # (n_authors,) standard normal, clickbaiters lower
    popularity: np.ndarray  # (n_authors,) Pareto weight, drives follows
    post_rate: np.ndarray  # (n_authors,) expected posts per day
    clickbait: np.ndarray  # (n_authors,) probability that a post is clickbait
    created_us: np.ndarray  # (n_authors,) account opening time
