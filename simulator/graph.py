"""The follow graph: popularity-driven, homophilous, with close friends among people.

Each user draws ~3x as many candidate authors as they will follow from the popularity
distribution, then keeps the top k by a Gumbel-perturbed homophily weight (topic similarity
and same country). That is a sample without replacement with probability roughly
proportional to popularity x homophily, and it never builds a dense users x authors matrix,
so it scales to a million users in fixed-size chunks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator._common import (
    DAY_US,
    Stream,
    day_start_us,
    pick,
    rank_in_group,
    rng,
    sorted_unique,
)
from simulator.config import SimulatorSettings
from simulator.latents import AuthorLatents, UserLatents

_CHUNK_USERS = 5_000  # users per independently seeded chunk: bounds memory at any scale
_CANDIDATE_FACTOR = 3  # candidates drawn per follow kept
_COUNT_SIGMA = 0.7  # log-sd of the number of follows per user
_HISTORY_DAYS = 365  # old follows were made in the year before the start
_SIM_FLOOR = 0.05  # keeps unrelated authors reachable when homophily is strong


@dataclasses.dataclass(frozen=True, eq=False)
class FollowGraph:
    """Follows sorted by (follower, followee index); `key` = follower * n_authors + followee."""

    follower: np.ndarray  # (n_follows,) user id
    followee: np.ndarray  # (n_follows,) author index
    created_us: np.ndarray  # (n_follows,)
    close_friend: np.ndarray  # (n_follows,) bool
    key: np.ndarray  # (n_follows,) sorted, for membership look-ups
    user_start: np.ndarray  # (n_users + 1,) a user's follows are rows user_start[u]:user_start[u+1]

    def lookup(self, users: np.ndarray, authors: np.ndarray, n_authors: int) -> np.ndarray:
        """Row of each (user, author index) follow, -1 where the user does not follow."""
        key = users.astype(np.int64) * n_authors + authors
        if len(self.key) == 0:
            return np.full(len(key), -1, dtype=np.int64)
        row = np.searchsorted(self.key, key).clip(0, len(self.key) - 1)
        return np.where(self.key[row] == key, row, -1)


def build_follow_graph(
    cfg: SimulatorSettings, users: UserLatents, authors: AuthorLatents, n_person: int
) -> FollowGraph:
    chunks = [
        _chunk_follows(cfg, users, authors, n_person, lo, min(lo + _CHUNK_USERS, cfg.n_users))
        for lo in range(0, cfg.n_users, _CHUNK_USERS)
    ]
    follower = np.concatenate([c[0] for c in chunks])
    followee = np.concatenate([c[1] for c in chunks])
    key = follower * cfg.n_authors + followee  # chunks are in user order and sorted within
    close = _close_friends(cfg, users, follower, followee, key, n_person)
    created = _follow_times(cfg, follower, followee, users, authors)
    user_start = np.searchsorted(follower, np.arange(cfg.n_users + 1))
    return FollowGraph(follower, followee, created, close, key, user_start)


def _chunk_follows(cfg, users: UserLatents, authors: AuthorLatents, n_person, lo, hi):
    r = rng(cfg.seed, Stream.FOLLOWS, lo)
    n_auth = cfg.n_authors
    mu = np.log(cfg.avg_followees) - 0.5 * _COUNT_SIGMA**2  # lognormal with that mean
    k = np.clip(np.rint(r.lognormal(mu, _COUNT_SIGMA, hi - lo)), 1, n_auth - 1).astype(np.int64)
    cand_user = np.repeat(np.arange(lo, hi), _CANDIDATE_FACTOR * k)
    cand_author = pick(authors.popularity, len(cand_user), r)
    key = sorted_unique(cand_user * n_auth + cand_author)  # sorted by user, then author
    user, author = key // n_auth, key % n_auth
    keep = ~((author < n_person) & (author == user))  # nobody follows themself
    user, author = user[keep], author[keep]
    logw = cfg.homophily * np.log(_topic_similarity(users, authors, user, author) + _SIM_FLOOR)
    person = author < n_person
    same = person & (users.country[user] == users.country[np.where(person, author, 0)])
    logw += np.log(cfg.same_country_boost) * same
    g = logw + r.gumbel(size=len(user))
    order = np.lexsort((-g, user))
    user, author = user[order], author[order]
    kept = rank_in_group(user) < k[user - lo]
    user, author = user[kept], author[kept]
    order = np.lexsort((author, user))
    return user[order], author[order]


def _topic_similarity(users: UserLatents, authors: AuthorLatents, user, author) -> np.ndarray:
    """n_topics * <interests, topic mix>: 1 for an indifferent pair; a loop over topics keeps
    memory linear in the pairs."""
    sim = np.zeros(len(user))
    for t in range(users.interests.shape[1]):
        sim += users.interests[user, t] * authors.topic_mix[author, t]
    return sim * users.interests.shape[1]


def _close_friends(cfg, users: UserLatents, follower, followee, key, n_person) -> np.ndarray:
    """Close friends among person->person follows, favouring mutual and same-country ties."""
    r = rng(cfg.seed, Stream.CLOSE_FRIENDS)
    person = followee < n_person
    reverse = followee * cfg.n_authors + follower  # the followee (a user) following back
    at = np.searchsorted(key, reverse).clip(0, len(key) - 1)  # key is sorted
    mutual = person & (key[at] == reverse)
    same = person & (users.country[follower] == users.country[np.where(person, followee, 0)])
    weight = 1.0 + 2.0 * mutual + 1.0 * same
    mean = weight[person].mean() if person.any() else 1.0
    p = np.clip(cfg.close_friend_share * weight / mean, 0.0, 1.0)
    return person & (r.random(len(follower)) < p)


def _follow_times(cfg, follower, followee, users: UserLatents, authors: AuthorLatents):
    """Most follows in the year before the start, `new_follow_share` during the simulation."""
    r = rng(cfg.seed, Stream.FOLLOW_TIMES)
    start = day_start_us(cfg, 0)
    n = len(follower)
    new = r.random(n) < cfg.new_follow_share
    in_sim = start + (r.random(n) * cfg.days * DAY_US).astype(np.int64)
    # A follow cannot predate either account.
    opened = np.maximum(authors.created_us[followee], users.created_us[follower])
    lo = np.maximum(opened, start - _HISTORY_DAYS * DAY_US)
    before = lo + (r.random(n) * (start - lo)).astype(np.int64)
    return np.where(new, in_sim, before)
