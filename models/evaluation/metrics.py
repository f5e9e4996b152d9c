"""Metrics, defined once: numpy or pandas in, plain floats out.

Every offline evaluation (rankers, calibration, retrieval, feed replays) calls these, so a
number means the same thing wherever it is reported. Each one that scikit-learn also has is
tested against it.

Conventions:
* A metric that is undefined on its input (AUC with one class, NCE at a base rate of 0 or 1,
  NDCG with no request that has a relevant item) returns NaN rather than raising, so that a
  report over many slices does not stop at an empty one.
* Grouped ranking metrics run on flat arrays with one row per (request, item). Within a request
  items are ordered by score, descending; ties in score are broken *pessimistically* (the less
  relevant item first, then input order). A constant or coarse score therefore earns the worst
  order its ties allow and cannot borrow the order of the logged feed the rows arrive in.
* Grouped metrics are vectorised (one lexsort plus bincounts): ~1M rows in ~100K requests
  take about half a second per metric.
* The MIND protocol (group AUC, MRR, nDCG@5/10 of the clicks per impression list, as
  Microsoft's MIND evaluation computes them) sits beside ours; intervals come from a seeded
  bootstrap over requests, paired when two scorers are compared on the same requests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] before taking logs


def _binary(y: ArrayLike, name: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    out = arr.astype(np.float64)
    if not np.isin(out, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return out


def _prob(p: ArrayLike, n: int, name: str = "p") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not (np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return arr


def _labels_and_probs(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_arr = _binary(y)
    if y_arr.size == 0:
        raise ValueError("no rows to evaluate")
    return y_arr, _prob(p, y_arr.size)


# --- pointwise binary metrics ---------------------------------------------------------------


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve, via the Mann-Whitney rank sum; tied scores count one half.

    NaN when y holds a single class (the AUC is undefined there). `p` may be any score.
    """
    y_arr = _binary(y)
    score = np.asarray(p, dtype=np.float64)
    if score.shape != y_arr.shape:
        raise ValueError(f"p must have shape {y_arr.shape}, got {score.shape}")
    n_pos = y_arr.sum()
    n_neg = y_arr.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()  # ties share their mean rank
    return float((ranks[y_arr == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = EPS) -> float:
    """Mean binary cross-entropy in nats; p is clipped to [eps, 1 - eps] so it stays finite."""
    y_arr, p_arr = _labels_and_probs(y, p)
    p_arr = np.clip(p_arr, eps, 1 - eps)
    return float(-np.mean(y_arr * np.log(p_arr) + (1 - y_arr) * np.log1p(-p_arr)))


def normalized_cross_entropy(y: ArrayLike, p: ArrayLike, eps: float = EPS) -> float:
    """Log loss divided by the entropy of the base rate (1 = no better than predicting it).

    NaN when the base rate is 0 or 1, where that entropy is 0.
    """
    y_arr, p_arr = _labels_and_probs(y, p)
    base = y_arr.mean()
    if base in (0.0, 1.0):
        return float("nan")
    entropy = -(base * np.log(base) + (1 - base) * np.log1p(-base))
    return log_loss(y_arr, p_arr, eps) / float(entropy)


def calibration_ratio(y: ArrayLike, p: ArrayLike) -> float:
    """Mean prediction / observed rate: 1 is calibrated on average, > 1 over-predicts.

    NaN when no row is positive.
    """
    y_arr, p_arr = _labels_and_probs(y, p)
    observed = y_arr.mean()
    return float(p_arr.mean() / observed) if observed > 0 else float("nan")


def calibration_curve(
    y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: str = "uniform"
) -> pd.DataFrame:
    """Reliability table over `n_bins` bins; empty bins are left out.

    strategy "uniform": equal-width bins of [0, 1], bin b holds b/n_bins <= p < (b+1)/n_bins
    and the last bin also takes p == 1 (what ECE uses). "quantile": bins between quantiles of
    p, each with about the same number of rows, which shows a rare action's calibration where
    its predictions are (all in the first equal-width bin otherwise); an edge belongs to the
    bin below it, as in scikit-learn. Columns: bin, lower, upper, n, mean_pred, observed_rate.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    y_arr, p_arr = _labels_and_probs(y, p)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = np.minimum((p_arr * n_bins).astype(np.int64), n_bins - 1)
    elif strategy == "quantile":
        edges = np.percentile(p_arr, np.linspace(0, 100, n_bins + 1))
        bins = np.searchsorted(edges[1:-1], p_arr)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    n = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p_arr, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y_arr, minlength=n_bins)
    used = np.flatnonzero(n)
    return pd.DataFrame(
        {
            "bin": used,
            "lower": edges[used],
            "upper": edges[used + 1],
            "n": n[used],
            "mean_pred": sum_p[used] / n[used],
            "observed_rate": sum_y[used] / n[used],
        }
    )


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Sum over equal-width bins of (share of rows) * |observed rate - mean prediction|.

    Equal-width rather than equal-mass bins, so the number is comparable across models; with
    rare actions most rows fall in the first bin, so compare ECE between models of one action
    rather than across actions.
    """
    curve = calibration_curve(y, p, n_bins)
    gap = (curve["observed_rate"] - curve["mean_pred"]).abs()
    return float((curve["n"] * gap).sum() / curve["n"].sum())


def binary_report(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> dict[str, float]:
    """The standard row of a per-action metrics table."""
    y_arr, p_arr = _labels_and_probs(y, p)
    return {
        "auc": auc(y_arr, p_arr),
        "logloss": log_loss(y_arr, p_arr),
        "nce": normalized_cross_entropy(y_arr, p_arr),
        "calibration_ratio": calibration_ratio(y_arr, p_arr),
        "ece": expected_calibration_error(y_arr, p_arr, n_bins),
        "base_rate": float(y_arr.mean()),
        "n": float(y_arr.size),
    }


def dwell_mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error of dwell seconds; the caller passes engaged (clicked) rows only."""
    t = np.asarray(y_true, dtype=np.float64)
    q = np.asarray(y_pred, dtype=np.float64)
    if t.shape != q.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"need two non-empty 1-D arrays of one length, got {t.shape}, {q.shape}")
    return float(np.abs(t - q).mean())


# --- grouped ranking metrics ----------------------------------------------------------------


class _Ranked:
    """Rows sorted into ranking order within each group, with each row's 0-based rank."""

    def __init__(self, groups: ArrayLike, relevance: ArrayLike, score: ArrayLike):
        codes, self.uniques = pd.factorize(np.asarray(groups), sort=True)
        rel = np.asarray(relevance, dtype=np.float64)
        sc = np.asarray(score, dtype=np.float64)
        n = codes.size
        if rel.shape != (n,) or sc.shape != (n,):
            raise ValueError("groups, relevance and score must be 1-D of one length")
        if n == 0:
            raise ValueError("no rows to rank")
        if (codes < 0).any():
            raise ValueError("groups must not hold missing values")
        if np.isnan(sc).any() or np.isnan(rel).any():
            raise ValueError("score and relevance must not hold NaN")
        self.n_groups = len(self.uniques)
        # lexsort: last key is primary -> group, score desc, relevance asc (pessimistic), row
        order = np.lexsort((np.arange(n), rel, -sc, codes))
        self.codes = codes[order]
        self.rel = rel[order]
        counts = np.bincount(self.codes, minlength=self.n_groups)
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1]))  # first row of each group
        self.rank = np.arange(n) - self.starts[self.codes]
        ideal = np.lexsort((-rel, codes))
        self.ideal_rel = rel[ideal]  # ideal order has the same group layout as self.codes

    def cumsum_in_group(self, values: np.ndarray) -> np.ndarray:
        """Running sum of values within each group, inclusive of the row itself."""
        total = np.cumsum(values)
        before = (total - values)[self.starts]  # running total before each group starts
        return total - before[self.codes]

    def per_group(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.codes, weights=values, minlength=self.n_groups)


def _cutoff(rank: np.ndarray, k: int | None) -> np.ndarray:
    if k is None:
        return np.ones(rank.size, dtype=bool)
    if k < 1:
        raise ValueError("k must be at least 1")
    return rank < k


def ndcg_per_request(
    groups: ArrayLike, relevance: ArrayLike, score: ArrayLike, k: int | None = 10
) -> pd.Series:
    """NDCG@k of each request (index: the group ids, sorted); NaN where the ideal DCG is 0.

    Gain is the relevance itself (graded, non-negative), discount 1 / log2(rank + 1) with rank
    from 1, the ideal from sorting the request by relevance; k=None uses every item.
    """
    if (np.asarray(relevance, dtype=np.float64) < 0).any():
        raise ValueError("NDCG needs non-negative relevance; clip or shift it first")
    r = _Ranked(groups, relevance, score)
    discount = 1.0 / np.log2(r.rank + 2.0)  # rank is 0-based here
    top = _cutoff(r.rank, k)
    dcg = r.per_group(r.rel * discount * top)
    idcg = r.per_group(r.ideal_rel * discount * top)  # same ranks: same group layout
    with np.errstate(invalid="ignore", divide="ignore"):
        ndcg = np.where(idcg > 0, dcg / idcg, np.nan)
    return pd.Series(ndcg, index=r.uniques, name="ndcg")


def ndcg_at_k(
    groups: ArrayLike, relevance: ArrayLike, score: ArrayLike, k: int | None = 10
) -> float:
    """Mean NDCG@k over requests with at least one relevant item (ideal DCG > 0).

    Requests with nothing relevant are excluded, not scored 0 or 1: no order can be good or bad
    there. `ranking_report` gives how many were excluded. NaN when every request is.
    """
    per = ndcg_per_request(groups, relevance, score, k)
    return float(per.mean()) if per.notna().any() else float("nan")


def average_precision_per_request(
    groups: ArrayLike, relevance_binary: ArrayLike, score: ArrayLike, k: int | None = None
) -> pd.Series:
    """AP@k of each request (index: the group ids, sorted); NaN where nothing is relevant.

    Relevant means relevance > 0. AP@k = sum over relevant items ranked within k of the
    precision at their rank, divided by min(k, number relevant) so a perfect order scores 1.
    With k=None this is scikit-learn's average_precision_score on untied scores.
    """
    r = _Ranked(groups, np.asarray(relevance_binary, dtype=np.float64) > 0, score)
    hits = r.rel  # 0/1 after the > 0 above
    precision = r.cumsum_in_group(hits) / (r.rank + 1.0)  # precision at each row's rank
    found = r.per_group(hits * precision * _cutoff(r.rank, k))
    n_rel = r.per_group(hits)
    denom = n_rel if k is None else np.minimum(n_rel, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(n_rel > 0, found / denom, np.nan)
    return pd.Series(ap, index=r.uniques, name="average_precision")


def mean_average_precision(
    groups: ArrayLike, relevance_binary: ArrayLike, score: ArrayLike, k: int | None = None
) -> float:
    """MAP@k: mean AP over requests with at least one relevant item; NaN if there is none."""
    per = average_precision_per_request(groups, relevance_binary, score, k)
    return float(per.mean()) if per.notna().any() else float("nan")


def ranking_report(
    groups: ArrayLike, relevance: ArrayLike, score: ArrayLike, k: int = 10
) -> dict[str, float]:
    """NDCG@k and MAP@k of one scorer, with how many requests each averaged over.

    MAP counts an item relevant when its relevance is > 0, so the graded relevance serves both.
    """
    ndcg = ndcg_per_request(groups, np.clip(np.asarray(relevance, float), 0, None), score, k)
    ap = average_precision_per_request(groups, relevance, score, k)
    return {
        f"ndcg@{k}": float(ndcg.mean()) if ndcg.notna().any() else float("nan"),
        f"map@{k}": float(ap.mean()) if ap.notna().any() else float("nan"),
        "n_requests": float(ndcg.size),
        "n_requests_scored": float(ndcg.notna().sum()),
    }


# --- the MIND protocol ----------------------------------------------------------------------

MIND_METRICS = ("group_auc", "mrr", "ndcg_at_5", "ndcg_at_10")  # Microsoft's MIND evaluation


def mind_per_request(groups: ArrayLike, clicks: ArrayLike, score: ArrayLike) -> pd.DataFrame:
    """MIND's four metrics of each impression list (index: the group ids, sorted), as
    Microsoft's MIND evaluation (msnews/MIND evaluate.py) computes them per impression:

    * group_auc: the ROC AUC of the list's scores against its clicks, tied scores counting one
      half (scikit-learn's roc_auc_score);
    * mrr: sum over clicked items of 1 / rank, divided by the number of clicks;
    * ndcg_at_5, ndcg_at_10: DCG with gain 2^click - 1 and discount 1 / log2(rank + 1), over
      the ideal DCG of the list, both cut at k.

    A list without both a click and a non-click is NaN in every column (the reference's
    roc_auc_score raises there, and an order cannot be good or bad), so the four are always
    averaged over the same lists. Ties in score: AUC counts them half as the reference does;
    MRR and nDCG break them pessimistically (models.evaluation.metrics' convention), where the
    reference
    leaves them to numpy's argsort. Also gives `clicks` and `items` per list.
    """
    y = _binary(clicks, "clicks")
    r = _Ranked(groups, y, score)
    n_clicks = r.per_group(r.rel)
    n_items = np.bincount(r.codes, minlength=r.n_groups).astype(np.float64)
    both = (n_clicks > 0) & (n_clicks < n_items)
    # Average ranks within each group (ties share their mean rank), for the rank-sum AUC.
    codes = pd.factorize(np.asarray(groups), sort=True)[0]
    ranks = pd.Series(np.asarray(score, dtype=np.float64)).groupby(codes).rank(method="average")
    pos_rank_sum = np.bincount(codes, weights=ranks.to_numpy() * y, minlength=r.n_groups)
    n_neg = n_items - n_clicks
    with np.errstate(invalid="ignore", divide="ignore"):
        group_auc = (pos_rank_sum - n_clicks * (n_clicks + 1) / 2) / (n_clicks * n_neg)
        mrr = r.per_group(r.rel / (r.rank + 1.0)) / n_clicks
    out = pd.DataFrame(
        {
            "group_auc": group_auc,
            "mrr": mrr,
            "ndcg_at_5": ndcg_per_request(groups, y, score, 5).to_numpy(),
            "ndcg_at_10": ndcg_per_request(groups, y, score, 10).to_numpy(),
        },
        index=r.uniques,
    )
    out.loc[~both] = np.nan
    out["clicks"] = n_clicks
    out["items"] = n_items
    return out


def mind_report(groups: ArrayLike, clicks: ArrayLike, score: ArrayLike) -> dict[str, float]:
    """MIND's metrics averaged over the impression lists with a click and a non-click (the
    reference's mean over impressions), with how many lists and clicks they hold."""
    per = mind_per_request(groups, clicks, score)
    scored = per["group_auc"].notna()
    out = {m: float(per.loc[scored, m].mean()) if scored.any() else np.nan for m in MIND_METRICS}
    return out | {
        "n_requests": float(scored.sum()),
        "n_clicks": float(per.loc[scored, "clicks"].sum()),
    }


# --- bootstrap over requests ----------------------------------------------------------------


def bootstrap_indices(n: int, n_boot: int, seed: int, chunk: int = 200):
    """Resamples of `n` requests with replacement, `chunk` at a time as (rows, n) index arrays;
    the same `seed` gives the same draws, so metrics resampled with them are paired."""
    if n < 1 or n_boot < 1:
        raise ValueError("need at least one request and one resample")
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        rows = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(rows, n))
        done += rows


def bootstrap_mean(
    values: ArrayLike, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of per-request values and its percentile bootstrap
    interval at `level`, resampling requests; NaN values (undefined requests) are left out
    first. All NaN when none is left."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    means = np.concatenate([v[idx].mean(axis=1) for idx in bootstrap_indices(v.size, n_boot, seed)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(v.mean()), float(lo), float(hi))


def paired_bootstrap_gain(
    a: pd.Series, b: pd.Series, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float, int]:
    """(gain, lower, upper, n): the mean of a - b over the requests both define (aligned on
    their index, the request ids) and its bootstrap interval, resampling requests so each
    draw compares both on the same requests; n is how many requests that is."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    gain, lo, hi = bootstrap_mean(both["a"] - both["b"], n_boot, level, seed)
    return gain, lo, hi, len(both)


# --- retrieval ------------------------------------------------------------------------------


def recall_at_k(retrieved_ids: ArrayLike, exact_ids: ArrayLike, k: int | None = None) -> float:
    """Mean over queries of |retrieved ∩ exact| / k, with k the width of `exact_ids`.

    Both are (n_queries, width) arrays of ids, one row per query; `retrieved_ids` may be wider
    than k (recall k@n). Ids must be unique within a row. `k` truncates both to their first k
    columns (both assumed best-first).
    """
    got = np.asarray(retrieved_ids)
    exact = np.asarray(exact_ids)
    if got.ndim != 2 or exact.ndim != 2 or got.shape[0] != exact.shape[0]:
        raise ValueError(f"need 2-D arrays with one row per query, got {got.shape}, {exact.shape}")
    if k is not None:
        got, exact = got[:, :k], exact[:, :k]
    n_q, width = exact.shape
    if n_q == 0 or width == 0:
        raise ValueError("no queries or no exact neighbours")
    # Key every id by its query, so one isin answers all queries at once.
    codes, uniques = pd.factorize(np.concatenate([got.ravel(), exact.ravel()]))
    got_codes = codes[: got.size].reshape(got.shape)
    exact_codes = codes[got.size :].reshape(exact.shape)
    n_ids = len(uniques)
    rows = np.arange(n_q, dtype=np.int64)[:, None] * n_ids
    hit = np.isin(exact_codes + rows, got_codes + rows)  # (n_queries, k)
    return float(hit.sum(axis=1).mean() / width)


def relevant_recall_at_k(
    retrieved_ids: ArrayLike,
    relevant_query: ArrayLike,
    relevant_ids: ArrayLike,
    k: int | None = None,
) -> float:
    """Mean over queries with a relevant item of |top-k retrieved ∩ relevant| / |relevant|.

    `retrieved_ids`: (n_queries, width) ids, best first (pad with an id no relevant item has,
    e.g. -1). The relevant items are flat: `relevant_ids[i]` is relevant to query
    `relevant_query[i]` (a row of `retrieved_ids`); duplicates count once. Queries without a
    relevant item are left out; NaN when none has one.
    """
    got = np.asarray(retrieved_ids)
    if got.ndim != 2:
        raise ValueError(f"retrieved_ids must be 2-D (n_queries, width), got {got.shape}")
    if k is not None:
        got = got[:, :k]
    rel = pd.DataFrame({"q": np.asarray(relevant_query), "id": np.asarray(relevant_ids)})
    if len(rel) and (rel["q"].min() < 0 or rel["q"].max() >= got.shape[0]):
        raise ValueError(f"relevant_query must index the {got.shape[0]} rows of retrieved_ids")
    rel = rel.drop_duplicates()
    if rel.empty:
        return float("nan")
    width = got.shape[1]
    retrieved = pd.DataFrame(
        {"q": np.repeat(np.arange(got.shape[0]), width), "id": got.ravel()}
    ).drop_duplicates()
    hit = rel.merge(retrieved, on=["q", "id"], how="left", indicator=True)["_merge"] == "both"
    hit = hit.to_numpy(bool)
    per_query = pd.Series(hit, dtype=float).groupby(rel["q"].to_numpy()).mean()
    return float(per_query.mean())
