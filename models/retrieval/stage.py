"""The retrieval stage on the warehouse's raw logs: its data, the towers' fit, the recall table.

    data = load_data(store, days, split, settings.retrieval)
    result = fit_towers(data, settings.retrieval)
    metrics = evaluate_split(data, settings.retrieval, result.model, "val")

`load_data` reads the tables up to the last day (Arrow, only the columns used, one day of
engagements in memory at a time) and encodes them (models.retrieval.data); the positives are
the engaged impressions, weighted by their strongest positive action. Evaluation ranks the
pool servable at each sampled request with the towers and the baselines
(models.retrieval.evaluate); the gate compares `gate_metric` on the validation days.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.evaluation.evaluate import GATE_SPLIT, metric_name
from models.ranking.dataset import Split
from models.retrieval import evaluate as E
from models.retrieval.config import RetrievalSettings
from models.retrieval.data import History, PostTable, UserTable, epoch_s, post_table, user_table
from models.retrieval.two_tower import (
    Encoder,
    FitResult,
    Pairs,
    TwoTower,
    embed_posts,
    embed_users,
    fit,
)
from warehouse.catalog import AUTHORS, ENGAGEMENTS, FOLLOWS, IMPRESSIONS, POSTS, USERS, C

if TYPE_CHECKING:
    from warehouse.store import Warehouse

log = logging.getLogger(__name__)

DAY_S = 86_400
SCORERS = (E.TWO_TOWER, *E.BASELINES)  # every scorer of the recall table
GATE_BASELINES = (E.POPULARITY,)  # what a challenger must beat besides the champion
SPLITS = ("val", "test")  # the evaluated parts of the split


def gate_metric(k: int, scorer: str = E.TWO_TOWER) -> str:
    """The metric the promotion gate compares: validation recall@k (val/two_tower/recall_at_500)."""
    return metric_name(GATE_SPLIT, scorer, f"recall_at_{k}")


@dataclasses.dataclass(frozen=True)
class Data:
    """Everything the steps read, encoded: tables, engagement history, positives per day."""

    posts: PostTable
    users: UserTable
    history: History
    positives: pd.DataFrame  # one row per engaged impression: request, user/post row, ts, weight
    follows: pd.DataFrame  # user_row, author_id, created_s
    split: Split


def log_days(store: Warehouse, ds: str) -> list[str]:
    """Days up to ds with engagements, oldest first."""
    return [d for d in store.partitions(ENGAGEMENTS) if d <= ds]


def load_data(store: Warehouse, days: Sequence[str], split: Split, r: RetrievalSettings) -> Data:
    """Read the raw tables of `days` and encode them; users and follows as of the last day."""
    t, last = r.tower, days[-1]
    posts = store.read_pandas(POSTS, list(days)).drop(columns=[C.DS])
    post_tab = post_table(
        posts, store.read_pandas(AUTHORS, last), t.n_topics, t.author_buckets, t.hashtag_buckets
    )
    users = user_table(store.read_pandas(USERS, last), t.user_buckets)
    pos = _engaged_impressions(store, days, r.positives.as_dict())
    positives = pd.DataFrame(
        {
            "request": pos[C.REQUEST_ID].to_numpy(),
            "user_row": users.rows(pos[C.USER_ID].to_numpy()),
            "post_row": post_tab.rows(pos[C.POST_ID].to_numpy()),
            "ts": epoch_s(pos[C.SERVED_AT]),
            "event_s": epoch_s(pos[C.EVENT_TS]),
            "weight": pos["w"].to_numpy(np.float32),
            "day": pos["day"].to_numpy(),
        }
    )
    positives = positives[(positives.user_row >= 0) & (positives.post_row >= 0)]
    history = History.of(
        positives.user_row.to_numpy(), positives.event_s.to_numpy(), positives.post_row.to_numpy()
    )
    fol = store.read_pandas(FOLLOWS, last, columns=[C.FOLLOWER_ID, C.FOLLOWEE_ID, C.CREATED_AT])
    follows = pd.DataFrame(
        {
            "user_row": users.rows(fol[C.FOLLOWER_ID].to_numpy()),
            "author_id": fol[C.FOLLOWEE_ID].to_numpy(np.int64),
            "created_s": epoch_s(fol[C.CREATED_AT]),
        }
    )
    log.info(
        "retrieval data up to %s: %d posts, %d users, %d positives, split %s",
        last,
        len(post_tab),
        len(users),
        len(positives),
        json.dumps(split.as_dict()),
    )
    return Data(post_tab, users, history, positives, follows[follows.user_row >= 0], split)


def _engaged_impressions(
    store: Warehouse, days: Sequence[str], weights: Mapping[str, float]
) -> pd.DataFrame:
    """Impressions with a positive action: weight `w` of the strongest, first event time."""
    parts = []
    for day in days:  # one day in memory at a time, then only its positives
        eng = store.read_pandas(ENGAGEMENTS, day, columns=[C.IMPRESSION_ID, C.ACTION, C.EVENT_TS])
        eng = eng[eng[C.ACTION].isin(list(weights))]
        eng = eng.assign(w=eng[C.ACTION].map(weights))
        eng = eng.groupby(C.IMPRESSION_ID).agg(w=("w", "max"), **{C.EVENT_TS: (C.EVENT_TS, "min")})
        cols = [C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.SERVED_AT]
        imp = store.read_pandas(IMPRESSIONS, day, columns=cols)
        parts.append(imp.merge(eng.reset_index(), on=C.IMPRESSION_ID).assign(day=day))
    return pd.concat(parts, ignore_index=True).sort_values(C.IMPRESSION_ID, kind="stable")


def encoder(data: Data, r: RetrievalSettings, model: TwoTower | None = None) -> Encoder:
    """The towers' inputs; a trained model's own tower settings when one is given."""
    return Encoder(
        data.posts, data.users, data.history, model.cfg if model is not None else r.tower
    )


def pairs_of(data: Data, days: Sequence[str]) -> Pairs:
    p = data.positives[data.positives.day.isin(list(days))]
    return Pairs(
        p.user_row.to_numpy(np.int64),
        p.post_row.to_numpy(np.int64),
        p.ts.to_numpy(np.int64),
        p.weight.to_numpy(np.float32),
    )


def requests_of(data: Data, days: Sequence[str], r: RetrievalSettings) -> E.Requests:
    """The evaluated requests of `days`: a seeded sample of those with a positive."""
    p = data.positives[data.positives.day.isin(list(days))]
    req = E.requests_from(
        p.request.to_numpy(), p.user_row.to_numpy(), p.ts.to_numpy(), p.post_row.to_numpy()
    )
    return E.sample(req, r.eval_requests, r.tower.seed)


def fit_towers(data: Data, r: RetrievalSettings) -> FitResult:
    """Fit on the training days' pairs, negatives from their posts, early stopping on
    validation recall@gate_k."""
    pairs = pairs_of(data, data.split.train)
    pool = np.flatnonzero(np.isin(data.posts.created_s // DAY_S, _day_numbers(data.split.train)))
    val_req = requests_of(data, data.split.val, r)

    def validate(model: TwoTower) -> float:
        got = retrieve_all(data, val_req, r, model, [E.TWO_TOWER])
        table = E.recall_table(val_req, got, data.posts.created_s, [r.gate_k], 1, GATE_SPLIT)
        return table[gate_metric(r.gate_k)]

    pool = pool if len(pool) else np.arange(len(data.posts))
    return fit(encoder(data, r), pairs, pool, validate)


def _candidates(data: Data, req: E.Requests, window_s: int) -> np.ndarray:
    """Rows of every post servable at some request: created in [first - window, last)."""
    created = data.posts.created_s
    return np.flatnonzero((created < req.ts.max()) & (created >= req.ts.min() - window_s))


def retrieve_all(
    data: Data, req: E.Requests, r: RetrievalSettings, model: TwoTower, scorers: Sequence[str]
) -> dict[str, np.ndarray]:
    """(requests, max k) retrieved post rows per scorer."""
    window_s = int(r.pool_window_h * 3600)
    cand = _candidates(data, req, window_s)
    created = data.posts.created_s[cand]
    out = {}
    for name in scorers:
        if name == E.TWO_TOWER:
            enc = encoder(data, r, model)
            users = embed_users(model, enc, req.user_row, req.ts)
            scorer = E.vector_scorer(users, embed_posts(model, enc, cand))
        elif name == E.POPULARITY:
            h = data.history
            scorer = E.popularity_scorer(req, cand, created, h.ts, h.post_row, len(data.posts))
        elif name == E.FOLLOWEES:
            f = data.follows[data.follows.created_s < req.ts.min()]  # followed before the day
            authors = data.posts.author_id[cand]
            users, followed = f.user_row.to_numpy(), f.author_id.to_numpy()
            scorer = E.followees_scorer(req, authors, created, users, followed)
        else:
            scorer = E.random_scorer(len(cand), r.tower.seed)
        out[name] = E.retrieve(req, cand, created, scorer, max(r.ks), window_s)
    return out


def evaluate_split(
    data: Data, r: RetrievalSettings, model: TwoTower, split: str, scorers: Sequence[str] = SCORERS
) -> dict[str, float]:
    """The recall table (models.retrieval.evaluate.recall_table) of one part of the split."""
    req = requests_of(data, getattr(data.split, split), r)
    got = retrieve_all(data, req, r, model, scorers)
    return E.recall_table(req, got, data.posts.created_s, r.ks, int(r.cold_age_h * 3600), split)


def recall_frame(metrics: Mapping[str, float], ks: Sequence[int]) -> pd.DataFrame:
    """One row per (split, scorer): recall@k and the cold-start slice's."""
    rows = []
    for split in SPLITS:
        for scorer in SCORERS:
            row: dict[str, Any] = {"split": split, "scorer": scorer}
            for k in ks:
                row[f"recall@{k}"] = metrics[metric_name(split, scorer, f"recall_at_{k}")]
            for k in ks:
                row[f"cold recall@{k}"] = metrics[metric_name(split, scorer, f"cold_recall_at_{k}")]
            rows.append(row)
    return pd.DataFrame(rows)


def _day_numbers(days: Sequence[str]) -> np.ndarray:
    return np.array([int(pd.Timestamp(d, tz="UTC").timestamp()) // DAY_S for d in days])
