"""Retrieval evaluation on hand-made pools: servable posts only, baselines without leakage."""

from __future__ import annotations

import numpy as np

from models.retrieval import evaluate as E

# five posts; created at t = 0, 10, 20, 30, 100; authors 7, 7, 8, 9, 8
CREATED = np.array([0, 10, 20, 30, 100])
AUTHOR = np.array([7, 7, 8, 9, 8])
ROWS = np.arange(5)


def _requests(ts, positives):
    q = np.array([i for i, p in enumerate(positives) for _ in p])
    rel = np.array([x for p in positives for x in p])
    return E.Requests(np.zeros(len(ts), np.int64), np.array(ts), q, rel)


def test_only_posts_servable_at_the_request_are_retrieved():
    req = _requests([25, 50], [[2], [3]])
    scores = E.vector_scorer(np.ones((2, 1)), np.arange(5, dtype=float)[:, None])
    got = E.retrieve(req, ROWS, CREATED, scores, k=5, window_s=20)
    # at 25 the window [5, 25) holds posts 1 and 2; at 50, [30, 50) holds post 3 only;
    # post 4 (created at 100) is never servable before it exists
    assert got[0].tolist() == [2, 1, -1, -1, -1]
    assert got[1].tolist() == [3, -1, -1, -1, -1]


def test_popularity_counts_only_engagements_before_the_request():
    req = _requests([25], [[1]])
    # post 0 gets 3 engagements at t=5..7, post 1 gets 5 but at t=40, after the request
    ev_ts = np.array([5, 6, 7, 40, 40, 40, 40, 40])
    ev_post = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    score = E.popularity_scorer(req, ROWS, CREATED, ev_ts, ev_post, 5)
    got = E.retrieve(req, ROWS, CREATED, score, k=1, window_s=1000)
    assert got.tolist() == [[0]]


def test_followees_newest_and_recall_table():
    req = _requests([50, 50], [[2], [3]])
    req = E.Requests(np.array([0, 1]), req.ts, req.rel_query, req.rel_post_row)
    # user 0 follows author 8 (posts 2 and 4; 4 is not created yet), user 1 follows nobody
    score = E.followees_scorer(req, AUTHOR, CREATED, np.array([0]), np.array([8]))
    got = E.retrieve(req, ROWS, CREATED, score, k=2, window_s=1000)
    assert got.tolist() == [[2, -1], [-1, -1]]
    table = E.recall_table(req, {"f": got}, CREATED, [1, 2], cold_s=25, split="test")
    assert table["test/f/recall_at_2"] == 0.5  # user 0 finds its post, user 1 does not
    # cold slice: ages 30 (post 2) and 20 (post 3) at t=50; only post 3 is under 25
    assert table["test/f/cold_recall_at_2"] == 0.0
    assert table["test/cold_positives"] == 1.0
