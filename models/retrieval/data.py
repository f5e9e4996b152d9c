"""Inputs of the two towers as numpy arrays: post and user feature tables, engagement history.

Everything here is plain numpy/pandas on frames read by the job; the towers
(models.retrieval.two_tower)
index into these tables by row. A post's features never depend on its own engagement, so a
post created a minute ago embeds like any other (cold start). A user's history is the posts
they engaged with strictly before a given time (point in time).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pandas as pd

from warehouse.catalog import AGE_BUCKETS, COUNTRIES, DEVICES, GENDERS, MEDIA_TYPES, C

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids
MAX_HASHTAGS = 4  # hashtags per post kept for the post tower


def hash_ids(ids: np.ndarray, buckets: int) -> np.ndarray:
    """Stable bucket in 1..buckets of each integer id (0 is padding)."""
    mixed = np.asarray(ids).astype(np.uint64) * _GOLDEN
    return ((mixed >> np.uint64(17)) % np.uint64(buckets)).astype(np.int64) + 1


def hash_tag(tag: str, buckets: int) -> int:
    """Stable bucket in 1..buckets of a hashtag (crc32: the same in every process)."""
    return zlib.crc32(tag.encode()) % buckets + 1


def _codes(values: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Index in 1..len(vocabulary); 0 for missing or unknown values."""
    lookup = {v: i + 1 for i, v in enumerate(vocabulary)}
    return values.map(lookup).fillna(0).to_numpy(np.int64)


def epoch_s(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 seconds since the epoch."""
    since = pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")  # any unit (us from Arrow)
    return (since // pd.Timedelta(seconds=1)).to_numpy(np.int64)


@dataclasses.dataclass(frozen=True)
class PostTable:
    """One row per post: its id, creation time and the post tower's inputs."""

    post_id: np.ndarray  # (N,) int64
    created_s: np.ndarray  # (N,) int64 epoch seconds
    author_id: np.ndarray  # (N,) int64
    topic: np.ndarray  # (N,) int64 in 0..n_topics-1
    hashtags: np.ndarray  # (N, MAX_HASHTAGS) int64 buckets, 0 = none
    media: np.ndarray  # (N,) int64, 0 = unknown
    author: np.ndarray  # (N,) int64 hashed author id
    dense: np.ndarray  # (N, 4) float32: log length, URL flag, verified author, page author

    def __len__(self) -> int:
        return len(self.post_id)

    def rows(self, post_ids: np.ndarray) -> np.ndarray:
        """Row of each post id; -1 for ids the table lacks."""
        order = np.argsort(self.post_id, kind="stable")
        sorted_ids = self.post_id[order]
        pos = np.clip(np.searchsorted(sorted_ids, post_ids), 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == post_ids if len(sorted_ids) else np.zeros(len(post_ids), bool)
        return np.where(found, order[pos], -1)


def post_table(
    posts: pd.DataFrame, authors: pd.DataFrame, n_topics: int, author_buckets: int, tag_buckets: int
) -> PostTable:
    """Encode raw posts (with their authors' snapshot) for the post tower."""
    posts = posts.sort_values(C.POST_ID, kind="stable").reset_index(drop=True)
    a = authors.drop_duplicates(C.AUTHOR_ID, keep="last").set_index(C.AUTHOR_ID)
    verified = posts[C.AUTHOR_ID].map(a[C.VERIFIED]).fillna(False).astype(np.float32)
    page = (posts[C.AUTHOR_ID].map(a[C.KIND]) == "page").astype(np.float32)
    tags = np.zeros((len(posts), MAX_HASHTAGS), np.int64)
    for i, row in enumerate(posts[C.HASHTAGS]):
        for j, tag in enumerate(list(row if row is not None else ())[:MAX_HASHTAGS]):
            tags[i, j] = hash_tag(tag, tag_buckets)
    dense = np.stack(
        [
            np.log1p(posts[C.LENGTH].fillna(0).to_numpy(np.float32)) / 8,
            posts[C.HAS_URL].fillna(False).to_numpy(np.float32),
            verified.to_numpy(),
            page.to_numpy(),
        ],
        axis=1,
    ).astype(np.float32)
    return PostTable(
        post_id=posts[C.POST_ID].to_numpy(np.int64),
        created_s=epoch_s(posts[C.CREATED_AT]),
        author_id=posts[C.AUTHOR_ID].to_numpy(np.int64),
        topic=np.clip(posts[C.TOPIC].fillna(0).to_numpy(np.int64), 0, n_topics - 1),
        hashtags=tags,
        media=_codes(posts[C.MEDIA_TYPE], MEDIA_TYPES),
        author=hash_ids(posts[C.AUTHOR_ID].to_numpy(np.int64), author_buckets),
        dense=dense,
    )


@dataclasses.dataclass(frozen=True)
class UserTable:
    """One row per user: id and the user tower's categorical inputs."""

    user_id: np.ndarray  # (U,) int64
    bucket: np.ndarray  # (U,) hashed user id
    cats: np.ndarray  # (U, 4) int64: country, age bucket, gender, device; 0 = unknown

    def __len__(self) -> int:
        return len(self.user_id)

    def rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user id; -1 for ids the table lacks."""
        lookup = pd.Index(self.user_id)
        return lookup.get_indexer(np.asarray(user_ids))


CAT_SIZES = (len(COUNTRIES) + 1, len(AGE_BUCKETS) + 1, len(GENDERS) + 1, len(DEVICES) + 1)


def user_table(users: pd.DataFrame, user_buckets: int) -> UserTable:
    users = users.drop_duplicates(C.USER_ID, keep="last").sort_values(C.USER_ID)
    cats = np.stack(
        [
            _codes(users[C.COUNTRY], COUNTRIES),
            _codes(users[C.AGE_BUCKET], AGE_BUCKETS),
            _codes(users[C.GENDER], GENDERS),
            _codes(users[C.PRIMARY_DEVICE], DEVICES),
        ],
        axis=1,
    )
    ids = users[C.USER_ID].to_numpy(np.int64)
    return UserTable(ids, hash_ids(ids, user_buckets), cats)


@dataclasses.dataclass(frozen=True)
class History:
    """Positive engagements sorted by (user row, time): the source of point-in-time history."""

    user_row: np.ndarray  # (E,) int64
    ts: np.ndarray  # (E,) int64 epoch seconds
    post_row: np.ndarray  # (E,) int64

    @staticmethod
    def of(user_row: np.ndarray, ts: np.ndarray, post_row: np.ndarray) -> History:
        keep = (user_row >= 0) & (post_row >= 0)
        u, t, p = user_row[keep], ts[keep], post_row[keep]
        order = np.lexsort((p, t, u))
        return History(u[order], t[order], p[order])

    def before(self, user_rows: np.ndarray, times: np.ndarray, length: int):
        """The last `length` posts each user engaged with strictly before each time.

        Returns (rows, count): rows (B, length) post rows, newest last, -1 padding; count (B,)
        the number of all earlier engagements (the activity feature).
        """
        key = self.user_row * (1 << 34) + self.ts  # ts < 2**34 s (year 2514)
        query = np.asarray(user_rows, np.int64) * (1 << 34) + np.asarray(times, np.int64)
        end = np.searchsorted(key, query, side="left")  # first event at or after the time
        start = np.searchsorted(self.user_row, user_rows, side="left")
        offsets = end[:, None] - length + np.arange(length)[None, :]  # (B, length)
        valid = offsets >= start[:, None]
        rows = np.where(valid, self.post_row[np.clip(offsets, 0, max(len(key) - 1, 0))], -1)
        if len(key) == 0:
            rows = np.full_like(offsets, -1)
        return rows, (end - start).astype(np.int64)
