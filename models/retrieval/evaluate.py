"""Offline evaluation of retrieval: recall@k of engaged posts from the pool servable at a request.

For each request with at least one positive, every scorer ranks the posts servable at that
moment (created before the request, within the pool window) and keeps its top k; recall@k is
the share of the request's engaged posts among them
(models.evaluation.metrics.relevant_recall_at_k),
averaged over requests. A positive outside the pool (an older post) counts as a miss for
every scorer alike. The cold-start slice keeps only positives younger than `cold_s` at the
request. Baselines: popularity (engagements before the request's chunk starts, newest first
on ties), the user's followees' newest posts, and a seeded random draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from models.evaluation.evaluate import metric_name
from models.evaluation.metrics import relevant_recall_at_k

TWO_TOWER, POPULARITY, FOLLOWEES, RANDOM = "two_tower", "popularity", "followees_newest", "random"
BASELINES = (POPULARITY, FOLLOWEES, RANDOM)
CHUNK = 256  # requests scored at once: (CHUNK, pool) floats

Scorer = Callable[[np.ndarray], np.ndarray]  # request indices (Qc,) -> scores (Qc, n_candidates)


@dataclasses.dataclass(frozen=True)
class Requests:
    """Evaluated requests, sorted by time, and their positives (flat)."""

    user_row: np.ndarray  # (Q,) int64
    ts: np.ndarray  # (Q,) int64 epoch seconds
    rel_query: np.ndarray  # (n,) index into the requests
    rel_post_row: np.ndarray  # (n,) post row engaged with

    def __len__(self) -> int:
        return len(self.user_row)


def requests_from(
    request_id: np.ndarray, user_row: np.ndarray, ts: np.ndarray, post_row: np.ndarray
) -> Requests:
    """Requests from positive impressions (one row per engaged impression), by time."""
    frame = pd.DataFrame({"r": request_id, "u": user_row, "t": ts, "p": post_row})
    frame = frame[(frame["u"] >= 0) & (frame["p"] >= 0)]
    heads = frame.groupby("r", sort=True).agg(u=("u", "first"), t=("t", "min")).reset_index()
    heads = heads.sort_values(["t", "r"], kind="stable").reset_index(drop=True)
    q = pd.Series(np.arange(len(heads)), index=heads["r"].to_numpy())
    return Requests(
        heads["u"].to_numpy(np.int64),
        heads["t"].to_numpy(np.int64),
        q.loc[frame["r"].to_numpy()].to_numpy(np.int64),
        frame["p"].to_numpy(np.int64),
    )


def sample(requests: Requests, n: int, seed: int) -> Requests:
    """At most n requests, a seeded draw, still sorted by time."""
    if len(requests) <= n:
        return requests
    keep = np.sort(np.random.default_rng(seed).choice(len(requests), n, replace=False))
    new_index = np.full(len(requests), -1)
    new_index[keep] = np.arange(n)
    mask = new_index[requests.rel_query] >= 0
    return Requests(
        requests.user_row[keep],
        requests.ts[keep],
        new_index[requests.rel_query[mask]],
        requests.rel_post_row[mask],
    )


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int, cand_rows: np.ndarray) -> np.ndarray:
    """(Qc, k) post rows of the best allowed candidates, best first; -1 where too few."""
    k_eff = min(k, scores.shape[1])
    masked = np.where(allowed, scores, -np.inf)
    part = np.argpartition(-masked, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(masked, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    rows = np.where(np.take_along_axis(part_scores, order, axis=1) > -np.inf, cand_rows[best], -1)
    if k_eff < k:
        rows = np.pad(rows, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return rows


def retrieve(
    requests: Requests,
    cand_rows: np.ndarray,
    cand_created_s: np.ndarray,
    scorer: Scorer,
    k: int,
    window_s: int,
) -> np.ndarray:
    """(Q, k) post rows each request retrieves from its servable pool."""
    out = np.full((len(requests), k), -1, np.int64)
    for start in range(0, len(requests), CHUNK):
        idx = np.arange(start, min(start + CHUNK, len(requests)))
        t = requests.ts[idx][:, None]
        allowed = (cand_created_s[None, :] < t) & (cand_created_s[None, :] >= t - window_s)
        out[idx] = top_k(scorer(idx), allowed, k, cand_rows)
    return out


def recall_table(
    requests: Requests,
    retrieved: dict[str, np.ndarray],
    post_created_s: np.ndarray,
    ks: Sequence[int],
    cold_s: int,
    split: str,
) -> dict[str, float]:
    """`<split>/<scorer>/recall_at_<k>` and `.../cold_recall_at_<k>` for every scorer."""
    age = requests.ts[requests.rel_query] - post_created_s[requests.rel_post_row]
    cold = age < cold_s
    out = {
        f"{split}/requests": float(len(requests)),
        f"{split}/cold_positives": float(cold.sum()),
    }
    for name, rows in retrieved.items():
        for k in ks:
            out[metric_name(split, name, f"recall_at_{k}")] = relevant_recall_at_k(
                rows, requests.rel_query, requests.rel_post_row, k
            )
            out[metric_name(split, name, f"cold_recall_at_{k}")] = relevant_recall_at_k(
                rows, requests.rel_query[cold], requests.rel_post_row[cold], k
            )
    return out


# --- scorers ---------------------------------------------------------------------------------


def vector_scorer(user_vecs: np.ndarray, cand_vecs: np.ndarray) -> Scorer:
    """Dot product of each request's user vector with every candidate's vector."""
    return lambda idx: user_vecs[idx] @ cand_vecs.T


def popularity_scorer(
    requests: Requests,
    cand_rows: np.ndarray,
    cand_created_s: np.ndarray,
    event_ts: np.ndarray,
    event_post_row: np.ndarray,
    n_posts: int,
) -> Scorer:
    """Engagement count before the chunk's first request; newest first among equal counts."""
    recency = (cand_created_s - cand_created_s.min()) / max(np.ptp(cand_created_s), 1) / 2

    def score(idx: np.ndarray) -> np.ndarray:
        before = event_ts < requests.ts[idx].min()  # no event after any request of the chunk
        counts = np.bincount(event_post_row[before], minlength=n_posts)[cand_rows]
        return np.broadcast_to(counts + recency, (len(idx), len(cand_rows)))

    return score


def followees_scorer(
    requests: Requests,
    cand_author_id: np.ndarray,
    cand_created_s: np.ndarray,
    follow_user_row: np.ndarray,
    follow_author_id: np.ndarray,
) -> Scorer:
    """Posts by authors the user follows, newest first; the rest are never retrieved."""
    follows = pd.MultiIndex.from_arrays([follow_user_row, follow_author_id]).unique()

    def score(idx: np.ndarray) -> np.ndarray:
        users = np.repeat(requests.user_row[idx], len(cand_author_id))
        authors = np.tile(cand_author_id, len(idx))
        hit = pd.MultiIndex.from_arrays([users, authors]).isin(follows).reshape(len(idx), -1)
        return np.where(hit, cand_created_s[None, :].astype(np.float64), -np.inf)

    return score


def random_scorer(n_candidates: int, seed: int) -> Scorer:
    rng = np.random.default_rng(seed)
    return lambda idx: rng.random((len(idx), n_candidates))


def recall_figure(table: pd.DataFrame, split: str):
    """Recall@k per scorer (all positives and the cold-start slice) for one split."""
    from matplotlib.figure import Figure

    rows = table[table["split"] == split]
    fig = Figure(figsize=(9, 3.5))
    for ax, prefix in zip(fig.subplots(1, 2), ("recall@", "cold recall@"), strict=True):
        cols = [c for c in table.columns if c.startswith(prefix)]
        ks = [int(c.split("@")[1]) for c in cols]
        for _, row in rows.iterrows():
            ax.plot(ks, [row[c] for c in cols], marker="o", label=row["scorer"])
        ax.set(xscale="log", xlabel="k", ylabel=prefix.rstrip("@"), title=f"{split}: {prefix}k")
        ax.set_ylim(0, 1)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
