"""models.evaluation.metrics: limits (perfect, reversed, nothing relevant) and agreement with
scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from models.evaluation import metrics as M


def _random_requests(rng: np.random.Generator, n_requests: int, graded: bool):
    """Flat rows for requests of 2..15 items; untied float scores (sklearn averages ties)."""
    sizes = rng.integers(2, 16, size=n_requests)
    groups = np.repeat(rng.permutation(n_requests) * 7 + 3, sizes)  # ids not 0..n-1, unsorted
    n = groups.size
    relevance = rng.gamma(0.5, 2.0, n) * (rng.random(n) < 0.3) if graded else rng.random(n) < 0.2
    return groups, relevance.astype(float), rng.normal(size=n)


def _by_group(groups, relevance, score):
    """(group id, relevance, score) per request, the slow obvious way, for the reference."""
    frame = pd.DataFrame({"g": groups, "r": relevance, "s": score})
    for gid, part in frame.groupby("g", sort=False):
        yield gid, part["r"].to_numpy(), part["s"].to_numpy()


# --- limits ---------------------------------------------------------------------------------

GROUPS = np.array([1, 1, 1, 1, 2, 2, 2])
RELEVANCE = np.array([3.0, 0.0, 1.0, 0.0, 0.0, 2.0, 1.0])


def test_perfect_ranking_scores_one():
    y = np.array([0, 0, 1, 1, 0, 1])
    assert M.auc(y, y + 0.1) == 1.0
    # Scoring by the relevance itself is the ideal order in every request.
    assert M.ndcg_at_k(GROUPS, RELEVANCE, RELEVANCE, k=3) == pytest.approx(1.0)
    assert M.mean_average_precision(GROUPS, RELEVANCE > 0, RELEVANCE) == pytest.approx(1.0)
    assert M.mean_average_precision(GROUPS, RELEVANCE > 0, RELEVANCE, k=1) == pytest.approx(1.0)


def test_reversed_ranking_scores_the_minimum():
    y = np.array([0, 0, 1, 1, 0, 1])
    assert M.auc(y, -y) == 0.0
    # Request 1 alone: gains 3 and 1 land at ranks 4 and 3 (worst possible order):
    # DCG = 1/log2(4) + 3/log2(5); ideal = 3/log2(2) + 1/log2(3).
    g, rel = GROUPS[:4], RELEVANCE[:4]
    worst = (1 / np.log2(4) + 3 / np.log2(5)) / (3 + 1 / np.log2(3))
    assert M.ndcg_at_k(g, rel, -rel, k=None) == pytest.approx(worst)
    # Top-2 holds only the two zeros, so NDCG@2 and AP@2 are 0.
    assert M.ndcg_at_k(g, rel, -rel, k=2) == 0.0
    assert M.mean_average_precision(g, rel > 0, -rel, k=2) == 0.0
    # Full AP: hits at ranks 3 and 4 -> (1/3 + 2/4) / 2.
    assert M.mean_average_precision(g, rel > 0, -rel) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_requests_without_relevant_items_are_excluded():
    groups = np.array([1, 1, 2, 2])
    rel = np.array([1.0, 0.0, 0.0, 0.0])  # request 2 has nothing relevant
    score = np.array([0.9, 0.1, 0.5, 0.4])
    assert np.isnan(M.ndcg_per_request(groups, rel, score).loc[2])
    assert M.ndcg_at_k(groups, rel, score) == 1.0  # the mean over request 1 only
    assert M.mean_average_precision(groups, rel, score) == 1.0
    report = M.ranking_report(groups, rel, score, k=2)
    assert (report["n_requests"], report["n_requests_scored"]) == (2, 1)
    assert np.isnan(M.ndcg_at_k(groups[2:], rel[2:], score[2:]))
    assert np.isnan(M.mean_average_precision(groups[2:], rel[2:], score[2:]))


def test_ties_break_pessimistically():
    # A constant score ties everything; the relevant item goes last, whatever the row order.
    groups, rel, const = np.zeros(3), np.array([1.0, 0.0, 0.0]), np.ones(3)
    assert M.mean_average_precision(groups, rel, const) == pytest.approx(1 / 3)
    assert M.ndcg_at_k(groups, rel, const, k=2) == 0.0


def test_undefined_pointwise_metrics_are_nan():
    ones = np.ones(5)
    assert np.isnan(M.auc(ones, np.linspace(0, 1, 5)))
    assert np.isnan(M.normalized_cross_entropy(ones, np.full(5, 0.5)))
    assert np.isnan(M.calibration_ratio(np.zeros(5), np.full(5, 0.5)))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        M.log_loss([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError):
        M.log_loss([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError):
        M.ndcg_at_k([1, 1], [-1.0, 1.0], [0.1, 0.2])


# --- agreement with scikit-learn ------------------------------------------------------------


def test_auc_and_log_loss_match_sklearn():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 5000)
    y = (rng.random(5000) < p).astype(int)
    assert M.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert M.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    coarse = np.round(p, 1)  # many ties: both count a tied pair as one half
    assert M.auc(y, coarse) == pytest.approx(skm.roc_auc_score(y, coarse), abs=1e-12)


@pytest.mark.parametrize("k", [3, 10, None])
def test_ndcg_matches_sklearn_per_request(k):
    rng = np.random.default_rng(1)
    groups, rel, score = _random_requests(rng, 400, graded=True)
    expected = [
        skm.ndcg_score([r], [s], k=k)
        for _, r, s in _by_group(groups, rel, score)
        if r.sum() > 0  # ours excludes these; sklearn would score them 0
    ]
    assert len(expected) > 100
    assert M.ndcg_at_k(groups, rel, score, k=k) == pytest.approx(np.mean(expected), rel=1e-12)


def test_average_precision_matches_sklearn_per_request():
    rng = np.random.default_rng(2)
    groups, rel, score = _random_requests(rng, 400, graded=False)
    per = M.average_precision_per_request(groups, rel, score)
    checked = 0
    for gid, r, s in _by_group(groups, rel, score):
        if r.sum() == 0:
            assert np.isnan(per.loc[gid])
            continue
        assert per.loc[gid] == pytest.approx(skm.average_precision_score(r, s), rel=1e-12)
        checked += 1
    assert checked > 100
    assert M.mean_average_precision(groups, rel, score) == pytest.approx(per.mean())


# --- calibration ----------------------------------------------------------------------------


def test_nce_of_the_base_rate_is_one():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.07).astype(int)
    assert M.normalized_cross_entropy(y, np.full(y.size, y.mean())) == pytest.approx(1.0)
    assert M.calibration_ratio(y, np.full(y.size, y.mean())) == pytest.approx(1.0)


def test_ece_small_when_calibrated_large_when_not():
    rng = np.random.default_rng(4)
    p = rng.beta(1.0, 4.0, 200_000)
    y = (rng.random(p.size) < p).astype(int)  # y ~ Bernoulli(p): calibrated by construction
    calibrated = M.expected_calibration_error(y, p)
    halved = M.expected_calibration_error(y, p / 2)
    assert calibrated < 0.01
    # Predicting p/2 is off by p/2 everywhere, so ECE is about mean(p)/2 = 0.1.
    assert halved == pytest.approx(p.mean() / 2, rel=0.1)
    assert M.calibration_ratio(y, p / 2) == pytest.approx(0.5, rel=0.05)


def test_calibration_curve_bins():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.95, 0.99, 1.0])  # p == 1 goes to the last bin
    curve = M.calibration_curve(y, p, n_bins=10)
    assert curve["bin"].tolist() == [0, 1, 9]
    assert curve["n"].tolist() == [1, 1, 3]
    assert curve["observed_rate"].iloc[2] == pytest.approx(2 / 3)
    assert curve["mean_pred"].iloc[2] == pytest.approx((0.95 + 0.99 + 1.0) / 3)


def test_binary_report_keys_and_values():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 0.5, 1000)
    y = (rng.random(1000) < p).astype(int)
    report = M.binary_report(y, p)
    assert set(report) == {"auc", "logloss", "nce", "calibration_ratio", "ece", "base_rate", "n"}
    assert report["auc"] == M.auc(y, p)
    assert report["n"] == 1000 and report["base_rate"] == y.mean()


def test_dwell_mae():
    # |10 - 12| + |30 - 25| + |5 - 5| = 7 over 3 rows.
    assert M.dwell_mae([10.0, 30.0, 5.0], [12.0, 25.0, 5.0]) == pytest.approx(7 / 3)


def test_dwell_mae_and_calibration_curve_match_sklearn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(11)
    true, pred = rng.exponential(40, 500), rng.uniform(0, 120, 500)
    assert M.dwell_mae(true, pred) == pytest.approx(skm.mean_absolute_error(true, pred))
    p = rng.beta(1, 8, 5000)  # rare, like most actions: high bins are sparse or empty
    y = (rng.random(5000) < p).astype(int)
    for strategy in ("uniform", "quantile"):
        observed, mean_pred = calibration_curve(y, p, n_bins=20, strategy=strategy)
        curve = M.calibration_curve(y, p, n_bins=20, strategy=strategy)
        np.testing.assert_allclose(curve["observed_rate"], observed)
        np.testing.assert_allclose(curve["mean_pred"], mean_pred)
    quantile = M.calibration_curve(y, p, n_bins=20, strategy="quantile")
    assert quantile["n"].between(240, 260).all()  # equal mass: 5000 / 20 each


# --- retrieval ------------------------------------------------------------------------------


def test_recall_at_k_on_hand_made_ids():
    exact = np.array([[1, 2, 3], [10, 11, 12]])
    retrieved = np.array([[3, 9, 1, 7], [12, 13, 14, 15]])
    # Query 0 finds 1 and 3 of {1, 2, 3}: 2/3; query 1 finds 12 of {10, 11, 12}: 1/3.
    assert M.recall_at_k(retrieved, exact) == pytest.approx((2 / 3 + 1 / 3) / 2)
    # k=2 compares {3, 9} with {1, 2}: 0 hits; and {12, 13} with {10, 11}: 0 hits.
    assert M.recall_at_k(retrieved, exact, k=2) == 0.0
    # An id found only for another query must not count: 12 is exact for query 1 alone.
    assert M.recall_at_k(np.array([[12], [1]]), np.array([[1], [12]])) == 0.0
    assert M.recall_at_k(exact, exact) == 1.0


def test_relevant_recall_perfect_none_and_partial():
    retrieved = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    # query 0: both positives retrieved; query 1: one of two; query 2: no positive (left out)
    q, ids = np.array([0, 0, 1, 1]), np.array([1, 3, 5, 42])
    assert M.relevant_recall_at_k(retrieved, q, ids) == pytest.approx((1.0 + 0.5) / 2)
    assert M.relevant_recall_at_k(retrieved, q[:2], ids[:2]) == 1.0  # perfect retrieval
    assert M.relevant_recall_at_k(retrieved, q, ids + 100) == 0.0  # nothing relevant found
    # k=1 keeps the first column: query 0 finds 1 of {1, 3}, query 1 finds none of {5, 42}
    assert M.relevant_recall_at_k(retrieved, q, ids, k=1) == pytest.approx((0.5 + 0.0) / 2)
    # duplicates count once; -1 padding never matches
    assert M.relevant_recall_at_k(np.array([[1, -1]]), [0, 0], [1, 1]) == 1.0
    assert np.isnan(M.relevant_recall_at_k(retrieved, [], []))
    with pytest.raises(ValueError, match="relevant_query"):
        M.relevant_recall_at_k(retrieved, [5], [1])


# --- the MIND protocol ----------------------------------------------------------------------

# Three impression lists. List 1: clicks at score ranks 2 and 4; list 2: its one click ranked
# last of 3; list 3: no click (undefined, left out of every mean).
MIND_GROUPS = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3])
MIND_CLICKS = np.array([0, 1, 0, 1, 1, 0, 0, 0, 0])
MIND_SCORE = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.5, 0.4, 0.1, 0.2])


def test_mind_metrics_on_a_hand_computed_example():
    per = M.mind_per_request(MIND_GROUPS, MIND_CLICKS, MIND_SCORE)
    # List 1: of the 4 (click, non-click) pairs only 0.8 > 0.3 is ordered right -> AUC 1/4;
    # MRR (1/2 + 1/4) / 2; DCG 1/log2(3) + 1/log2(5) over the ideal 1 + 1/log2(3).
    assert per.loc[1, "group_auc"] == pytest.approx(0.25)
    assert per.loc[1, "mrr"] == pytest.approx(0.375)
    ndcg1 = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert per.loc[1, "ndcg_at_5"] == pytest.approx(ndcg1)
    # List 2: the click below both others -> AUC 0, MRR 1/3, nDCG 1/log2(4) = 0.5.
    assert per.loc[2, "group_auc"] == 0.0
    assert per.loc[2, ["mrr", "ndcg_at_10"]].tolist() == pytest.approx([1 / 3, 0.5])
    assert per.loc[3, list(M.MIND_METRICS)].isna().all()
    assert per["clicks"].tolist() == [2, 1, 0] and per["items"].tolist() == [4, 3, 2]
    report = M.mind_report(MIND_GROUPS, MIND_CLICKS, MIND_SCORE)
    assert report["group_auc"] == pytest.approx(0.125)
    assert report["mrr"] == pytest.approx((0.375 + 1 / 3) / 2)
    assert report["ndcg_at_10"] == pytest.approx((ndcg1 + 0.5) / 2)
    assert report["n_requests"] == 2 and report["n_clicks"] == 3


def test_mind_ties_count_half_in_auc_and_break_pessimistically_elsewhere():
    # A constant score: AUC 1/2 (as roc_auc_score), the click ranked last for MRR and nDCG.
    per = M.mind_per_request([1, 1, 1], [1, 0, 0], [0.5, 0.5, 0.5])
    assert per.loc[1, "group_auc"] == 0.5
    assert per.loc[1, "mrr"] == pytest.approx(1 / 3)
    # A list with every item clicked has no non-click: undefined, as the reference's AUC is.
    assert np.isnan(M.mind_per_request([1, 1], [1, 1], [0.1, 0.2]).loc[1, "mrr"])


def _mind_reference(labels: np.ndarray, score: np.ndarray) -> tuple[float, ...]:
    """One impression list scored by the definition of Microsoft's MIND evaluation, written out
    slowly: sklearn's AUC, 1/rank of each click averaged over clicks, DCG with gain 2^y - 1."""
    order = np.argsort(-score, kind="stable")
    ranked = labels[order]

    def ndcg(k: int) -> float:
        disc = 1 / np.log2(np.arange(2, k + 2))[: min(k, labels.size)]
        dcg = ((2.0 ** ranked[:k] - 1) * disc).sum()
        ideal = ((2.0 ** np.sort(labels)[::-1][:k] - 1) * disc).sum()
        return dcg / ideal

    mrr = sum(1 / (i + 1) for i, y in enumerate(ranked) if y) / labels.sum()
    return skm.roc_auc_score(labels, score), mrr, ndcg(5), ndcg(10)


def test_mind_metrics_match_the_reference_definition():
    rng = np.random.default_rng(11)
    groups, clicks, score = _random_requests(rng, 300, graded=False)
    per = M.mind_per_request(groups, clicks, score)
    checked = 0
    for gid, y, s in _by_group(groups, clicks, score):
        if 0 < y.sum() < y.size:
            assert per.loc[gid, list(M.MIND_METRICS)].tolist() == pytest.approx(
                _mind_reference(y, s)
            )
            checked += 1
        else:
            assert per.loc[gid, list(M.MIND_METRICS)].isna().all()
    assert checked > 100


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(3)
    values = rng.normal(0.6, 0.2, 2000)
    mean, lo, hi = M.bootstrap_mean(values, n_boot=500, seed=1)
    assert M.bootstrap_mean(values, n_boot=500, seed=1) == (mean, lo, hi)  # same seed, same
    assert lo < mean < hi
    # The normal approximation of the 95% half-width: 1.96 * sd / sqrt(n) ~ 0.0088.
    assert (hi - lo) / 2 == pytest.approx(1.96 * values.std() / np.sqrt(values.size), rel=0.15)
    assert np.isnan(M.bootstrap_mean([np.nan, np.nan])[0])


def test_paired_gain_compares_the_same_requests():
    idx = pd.Index([10, 11, 12, 13, 14, 15])
    a = pd.Series([0.9, 0.8, 0.7, 0.6, 0.5, np.nan], index=idx)
    b = a - 0.1  # better by exactly 0.1 on every request
    gain, lo, hi, n = M.paired_bootstrap_gain(a, b.iloc[::-1], n_boot=200, seed=0)
    # Aligned on the ids (b reversed does not matter), NaN left out: every draw's gain is 0.1,
    # where unpaired draws would scatter it by the spread of a itself.
    assert (gain, n) == (pytest.approx(0.1), 5)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    gain, lo, hi, _ = M.paired_bootstrap_gain(a, a.sample(frac=1, random_state=0), seed=0)
    assert gain == 0 and lo == 0 == hi


def test_a_score_constant_per_request_has_group_auc_one_half_whatever_its_pooled_auc():
    # Short lists click more (one click per list): -(list length) ranks the short lists'
    # rows first, which the pooled AUC rewards, but it orders nothing within a list.
    rng = np.random.default_rng(5)
    sizes = rng.integers(2, 30, size=400)
    groups = np.repeat(np.arange(400), sizes)
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    clicks = np.zeros(groups.size)
    clicks[first + rng.integers(0, sizes)] = 1
    score = -np.repeat(sizes, sizes).astype(float)
    assert M.auc(clicks, score) > 0.65
    assert M.mind_report(groups, clicks, score)["group_auc"] == 0.5
