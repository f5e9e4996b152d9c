"""Posts created on one day: author, topic, hashtags, media, length, URL flag, time.

A day's posts depend only on (seed, day_index), so the pool of the last `pool_days` days can
be regenerated cheaply instead of being carried from one day to the next.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa

from simulator._common import DAY_S, US_PER_S, Stream, day_start_us, pick, rng, to_timestamps
from simulator.config import SimulatorSettings
from simulator.world import World
from warehouse.catalog import MEDIA_TYPES, POSTS, C

POST_ID_STRIDE = 10**9  # post_id = day_index * stride + sequence of the day
TEXT, PHOTO, VIDEO, LINK = (MEDIA_TYPES.index(m) for m in ("text", "photo", "video", "link"))

_MEDIA_P_PERSON = np.array([0.45, 0.35, 0.12, 0.08])
_MEDIA_P_PAGE = np.array([0.20, 0.30, 0.20, 0.30])
_CLICKBAIT_LINK_P = 0.6  # clickbait mostly links out
_TEXT_URL_P = 0.15  # text posts that paste a URL
# Median characters and log-sd per media type: captions are short, text runs long.
_LENGTH = {TEXT: (250.0, 0.9), PHOTO: (60.0, 0.8), VIDEO: (80.0, 0.8), LINK: (120.0, 0.6)}
_MAX_LENGTH = 5_000
_DAYTIME_SHARE = 0.7  # posts around mid-afternoon; the rest uniform over the day
_DAYTIME_HOUR, _DAYTIME_SD_H = 14.0, 4.0
_GENERIC_TAGS = np.array(
    ["#news", "#love", "#fun", "#today", "#photo", "#life", "#wow", "#tbt"], dtype=object
)
_GENERIC_P = 0.15  # share of hashtag tokens that are not topical
_TAG_ZIPF = 1.6  # within a topic a few hashtags dominate


@dataclasses.dataclass(frozen=True, eq=False)
class DayPosts:
    """One day's posts: the observable frame plus the arrays the behaviour model needs."""

    frame: pd.DataFrame  # POSTS columns, sorted by post_id (= by created_at)
    author: np.ndarray  # (n,) author index
    created_us: np.ndarray  # (n,)
    media: np.ndarray  # (n,) index into MEDIA_TYPES
    clickbait: np.ndarray  # (n,) bool, latent: never in the frame


def posts_for_day(world: World, cfg: SimulatorSettings, day_index: int) -> pd.DataFrame:
    """The POSTS rows created on a day (without ds)."""
    return generate_posts(world, cfg, day_index).frame


def generate_posts(world: World, cfg: SimulatorSettings, day_index: int) -> DayPosts:
    r = rng(cfg.seed, Stream.POSTS, day_index)
    a = world.authors_latent
    n = int(r.poisson(cfg.posts_per_day))
    author = pick(a.post_rate, n, r)
    created = day_start_us(cfg, day_index) + np.sort(_seconds_of_day(r, n) * US_PER_S).astype(
        np.int64
    )
    topic = _topics(a.topic_mix[author], r)
    clickbait = r.random(n) < a.clickbait[author]
    is_page = author >= world.n_person_authors
    media = np.where(is_page, pick(_MEDIA_P_PAGE, n, r), pick(_MEDIA_P_PERSON, n, r))
    media = np.where(clickbait & (r.random(n) < _CLICKBAIT_LINK_P), LINK, media)
    has_url = (media == LINK) | ((media == TEXT) & (r.random(n) < _TEXT_URL_P))
    length = _lengths(media, r)
    frame = pd.DataFrame(
        {
            C.POST_ID: day_index * POST_ID_STRIDE + np.arange(n, dtype=np.int64),
            C.AUTHOR_ID: a.author_id[author].astype(np.int64),
            C.CREATED_AT: to_timestamps(created),
            C.TOPIC: topic.astype(np.int32),
            C.HASHTAGS: _hashtags(cfg, topic, day_index),
            C.MEDIA_TYPE: np.array(MEDIA_TYPES, dtype=object)[media],
            C.LENGTH: length.astype(np.int32),
            C.HAS_URL: has_url,
        },
        columns=POSTS.columns,
    )
    return DayPosts(frame, author, created, media, clickbait)


def _seconds_of_day(r: np.random.Generator, n: int) -> np.ndarray:
    daytime = r.random(n) < _DAYTIME_SHARE
    peak = (_DAYTIME_HOUR + _DAYTIME_SD_H * r.standard_normal(n)) * 3600.0 % DAY_S
    return np.where(daytime, peak, r.random(n) * DAY_S)


def _topics(mix: np.ndarray, r: np.random.Generator) -> np.ndarray:
    """One topic per row of `mix` (n, T), drawn from that row."""
    cdf = np.cumsum(mix, axis=1)
    u = r.random(len(mix))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), mix.shape[1] - 1)


def _lengths(media: np.ndarray, r: np.random.Generator) -> np.ndarray:
    median = np.zeros(len(media))
    sigma = np.zeros(len(media))
    for m, (med, sd) in _LENGTH.items():
        median[media == m], sigma[media == m] = med, sd
    return np.clip(np.rint(median * np.exp(sigma * r.standard_normal(len(media)))), 1, _MAX_LENGTH)


def _hashtags(cfg: SimulatorSettings, topic: np.ndarray, day_index: int) -> list[list[str]]:
    """1-4 distinct tokens per post, mostly `#t{topic}_{k}` of the post's topic."""
    r = rng(cfg.seed, Stream.HASHTAGS, day_index)
    n, h = len(topic), cfg.hashtags_per_topic
    counts = 1 + r.binomial(3, 0.3, n)
    owner = np.repeat(np.arange(n), counts)
    k = (r.zipf(_TAG_ZIPF, len(owner)) - 1) % h
    vocab = np.array([f"#t{t}_{j}" for t in range(cfg.n_topics) for j in range(h)], dtype=object)
    topical = vocab[topic[owner] * h + k]
    generic = _GENERIC_TAGS[r.integers(0, len(_GENERIC_TAGS), len(owner))]
    tokens = np.where(r.random(len(owner)) < _GENERIC_P, generic, topical)
    tags = pd.DataFrame({"post": owner, "tag": tokens}).drop_duplicates()
    offsets = np.searchsorted(tags["post"].to_numpy(), np.arange(n + 1))
    values = pa.array(tags["tag"].to_numpy(), pa.string())
    return pa.ListArray.from_arrays(offsets, values).to_pylist()
