"""The two towers on small synthetic worlds with a planted structure (CPU, seconds each)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.evaluation.metrics import relevant_recall_at_k
from models.retrieval import evaluate as E
from models.retrieval.config import TowerSettings
from models.retrieval.data import History, PostTable, UserTable, hash_ids, post_table
from models.retrieval.two_tower import Encoder, Pairs, embed_posts, embed_users, fit

N_TOPICS, N_USERS, N_POSTS = 8, 160, 320
DAY = 86_400

CFG = TowerSettings(
    dim=16,
    id_dim=8,
    hidden=32,
    user_buckets=512,
    author_buckets=256,
    hashtag_buckets=64,
    n_topics=N_TOPICS,
    history_len=8,
    batch_size=128,
    learning_rate=0.01,
    max_epochs=6,
    threads=1,
)


@dataclasses.dataclass
class World:
    posts: PostTable
    users: UserTable
    user_topic: np.ndarray
    train: Pairs
    test: Pairs


def _posts(topic: np.ndarray, seed: int) -> PostTable:
    rng = np.random.default_rng(seed)
    n = len(topic)
    tags = np.zeros((n, 4), np.int64)
    tags[:, 0] = topic * 4 + rng.integers(1, 5, n)  # hashtags carry the topic, noisily
    authors = rng.integers(0, 60, n)
    return PostTable(
        post_id=np.arange(n, dtype=np.int64),
        created_s=np.zeros(n, np.int64),  # every post exists before any engagement
        author_id=authors,
        topic=topic.astype(np.int64),
        hashtags=tags,
        media=rng.integers(1, 5, n),
        author=hash_ids(authors, CFG.author_buckets),
        dense=rng.random((n, 4)).astype(np.float32),
    )


def _world(seed: int = 0, head: int = 0, head_share: float = 0.0, n_pairs: int = 4000) -> World:
    """Users engage with posts of their one latent topic; with `head`, a share `head_share` of
    engagements goes to `head` globally popular posts whatever the user's topic."""
    rng = np.random.default_rng(seed)
    topic = np.arange(N_POSTS) % N_TOPICS
    posts = _posts(topic, seed)
    ids = np.arange(N_USERS, dtype=np.int64)
    users = UserTable(ids, hash_ids(ids, CFG.user_buckets), rng.integers(0, 3, (N_USERS, 4)))
    user_topic = rng.integers(0, N_TOPICS, N_USERS)
    by_topic = [
        np.flatnonzero((topic == t) & (np.arange(N_POSTS) >= head)) for t in range(N_TOPICS)
    ]
    u = rng.integers(0, N_USERS, n_pairs)
    p = np.array([rng.choice(by_topic[user_topic[x]]) for x in u])
    if head:
        popular = rng.random(n_pairs) < head_share
        p[popular] = rng.zipf(1.5, popular.sum()).clip(1, head) - 1
    ts = np.sort(rng.integers(DAY, 3 * DAY, n_pairs))
    pairs = Pairs(u, p, ts, np.ones(n_pairs, np.float32))
    cut = int(0.8 * n_pairs)
    train = Pairs(u[:cut], p[:cut], ts[:cut], pairs.weight[:cut])
    test = Pairs(u[cut:], p[cut:], ts[cut:], pairs.weight[cut:])
    return World(posts, users, user_topic, train, test)


def _encoder(w: World, cfg: TowerSettings = CFG) -> Encoder:
    return Encoder(
        w.posts, w.users, History.of(w.train.user_row, w.train.ts, w.train.post_row), cfg
    )


def _recall(w: World, model, enc: Encoder, k: int) -> tuple[float, np.ndarray]:
    """recall@k of the test pairs (one request each) retrieving from every post."""
    rows = np.arange(len(w.posts))
    users = embed_users(model, enc, w.test.user_row, w.test.ts)
    top = np.argsort(-(users @ embed_posts(model, enc, rows).T), axis=1, kind="stable")[:, :k]
    q = np.arange(len(w.test))
    return relevant_recall_at_k(top, q, w.test.post_row, k), top


def test_towers_recover_planted_topics_well_above_popularity():
    w = _world()
    enc = _encoder(w)
    model = fit(enc, w.train, np.arange(N_POSTS)).model
    recall, _ = _recall(w, model, enc, k=40)
    counts = np.bincount(w.train.post_row, minlength=N_POSTS)
    popular = np.tile(np.argsort(-counts, kind="stable")[:40], (len(w.test), 1))
    pop = relevant_recall_at_k(popular, np.arange(len(w.test)), w.test.post_row)
    # 40 of 320 posts; a user's topic has 40 posts, so the towers can reach ~1; popularity
    # (one ranking for all) sits near 40/320 = 0.125.
    assert pop < 0.25
    assert recall > 0.6
    assert recall > 3 * pop


def test_same_settings_give_the_same_model():
    w = _world(n_pairs=1200)
    cfg = CFG.model_copy(update={"max_epochs": 2, "random_negatives": 16})
    a = fit(_encoder(w, cfg), w.train, np.arange(N_POSTS)).model
    b = fit(_encoder(w, cfg), w.train, np.arange(N_POSTS)).model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert np.array_equal(x.numpy(), y.numpy()), name


def test_attention_pooling_trains_too():
    w = _world(n_pairs=2000)
    cfg = CFG.model_copy(update={"pooling": "attention", "max_epochs": 4})
    enc = _encoder(w, cfg)
    recall, _ = _recall(w, fit(enc, w.train, np.arange(N_POSTS)).model, enc, k=40)
    assert recall > 0.4


def test_logq_correction_restores_popular_items_that_in_batch_negatives_push_down():
    """In-batch negatives sample a post as often as it is engaged with, so without the
    correction the towers learn engagement / popularity and under-rank the head; corrected,
    they keep the head where the data puts it, and recall on held-out engagements (drawn from
    the same skewed distribution) is higher."""
    w = _world(seed=3, head=8, head_share=0.5, n_pairs=5000)
    out = {}
    for logq in (True, False):
        cfg = CFG.model_copy(update={"logq": logq})
        enc = _encoder(w, cfg)
        recall, top = _recall(w, fit(enc, w.train, np.arange(N_POSTS)).model, enc, k=20)
        out[logq] = (recall, float((top < 8).mean()))  # share of the top-20 from the head
    (rec_on, head_on), (rec_off, head_off) = out[True], out[False]
    assert head_on > head_off + 0.05
    assert rec_on > rec_off + 0.02


def test_cold_post_without_engagement_is_embedded_and_retrieved():
    w = _world()
    enc = _encoder(w)
    model = fit(enc, w.train, np.arange(N_POSTS)).model
    now = 3 * DAY
    frame = pd.DataFrame(
        {
            "post_id": [10_000],  # unseen id, no engagement, created a minute ago
            "author_id": [999],
            "created_at": [pd.Timestamp(now - 60, unit="s", tz="UTC")],
            "topic": [2],
            "hashtags": [[]],
            "media_type": ["photo"],
            "length": [120],
            "has_url": [False],
        }
    )
    authors = pd.DataFrame({"author_id": [999], "kind": ["person"], "verified": [False]})
    fresh = post_table(frame, authors, N_TOPICS, CFG.author_buckets, CFG.hashtag_buckets)
    fresh = dataclasses.replace(fresh, hashtags=np.array([[2 * 4 + 1, 0, 0, 0]]))
    both = PostTable(
        *(
            np.concatenate([getattr(w.posts, f.name), getattr(fresh, f.name)])
            for f in dataclasses.fields(PostTable)
        )
    )
    enc2 = Encoder(both, w.users, enc.history, CFG)
    vecs = embed_posts(model, enc2, np.arange(len(both)))
    assert np.isfinite(vecs[-1]).all()
    assert np.linalg.norm(vecs[-1]) == pytest.approx(1.0, abs=1e-5)
    fans = np.flatnonzero(w.user_topic == 2)
    users = embed_users(model, enc2, fans, np.full(len(fans), now))
    allowed = np.ones((len(fans), len(both)), bool)
    top = E.top_k(users @ vecs.T, allowed, 40, np.arange(len(both)))
    # the new post competes with 320 trained posts; its topic's fans retrieve it in their 40
    assert (top == len(both) - 1).any(axis=1).mean() > 0.7


def test_history_is_strictly_before_the_time():
    h = History.of(np.array([0, 0, 0, 1]), np.array([10, 20, 30, 5]), np.array([7, 8, 9, 3]))
    rows, count = h.before(np.array([0, 0, 1, 2]), np.array([20, 31, 5, 100]), 2)
    # user 0 at 20 sees only the event at 10; at 31 the last two; user 1 at 5: nothing
    # (same second is not before); user 2 has no events.
    assert rows.tolist() == [[-1, 7], [8, 9], [-1, -1], [-1, -1]]
    assert count.tolist() == [1, 3, 0, 0]


def test_epoch_seconds_whatever_the_timestamp_unit():
    import pyarrow as pa

    from models.retrieval.data import epoch_s

    # Arrow timestamps arrive as datetime64[us]; counting them as ns would shrink time 1000x
    us = pa.table({"t": pa.array([0, 5_000_000], pa.timestamp("us", tz="UTC"))}).to_pandas()["t"]
    assert epoch_s(us).tolist() == [0, 5]
    assert epoch_s(pd.Series(pd.to_datetime(["1970-01-02"], utc=True))).tolist() == [86_400]
