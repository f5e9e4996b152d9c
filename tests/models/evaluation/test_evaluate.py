"""models.evaluation.evaluate (scorers on one split) and the promotion gate of
models.registry.versions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import registry as R
from models.evaluation import metrics as M
from models.evaluation.evaluate import (
    BASELINES,
    MODEL,
    ORACLE,
    UNCORRECTED,
    evaluate,
    summary_table,
)
from models.ranking.base import VALUE_SCORE, prediction_column
from models.registry.versions import decide
from models.value import ValueWeights, value_score
from warehouse.catalog import ACTIONS, C, label_column, truth_column

WEIGHTS = ValueWeights()


def frame_and_predictions(n_requests=400, per=8, seed=0):
    rng = np.random.default_rng(seed)
    n = n_requests * per
    frame = pd.DataFrame(
        {
            C.IMPRESSION_ID: np.arange(n),
            C.REQUEST_ID: np.repeat(np.arange(n_requests), per),
            C.POSITION: np.tile(np.arange(per), n_requests),
            R.POST_AGE_H: rng.random(n) * 48,
            R.POST_SMOOTHED_RATE: rng.random(n),
            C.E_DWELL_S: 20 + 40 * rng.random(n),
        }
    )
    for i, a in enumerate(ACTIONS):
        p = rng.beta(1, 10 + 10 * i, n)
        frame[truth_column(a)] = p
        frame[label_column(a)] = (rng.random(n) < p).astype(int)
    clicked = frame[label_column("click")] == 1
    frame[C.DWELL_S] = np.where(clicked, rng.exponential(frame[C.E_DWELL_S]), np.nan)
    # A model that knows the truth up to noise, and its "uncorrected" twin at 3x the odds.
    noisy = {a: np.clip(frame[truth_column(a)] * rng.uniform(0.7, 1.3, n), 0, 1) for a in ACTIONS}
    predicted = pd.DataFrame({prediction_column(a): noisy[a] for a in ACTIONS})
    predicted[C.E_DWELL_S] = frame[C.E_DWELL_S] * rng.uniform(0.8, 1.2, n)
    predicted[VALUE_SCORE] = value_score(
        noisy, predicted[C.E_DWELL_S].to_numpy(), WEIGHTS, dwell_given_click=True
    )
    uncorrected = predicted.copy()
    for a in ACTIONS:
        p = predicted[prediction_column(a)]
        uncorrected[prediction_column(a)] = 3 * p / (3 * p + 1 - p)
    return frame, predicted, uncorrected


@pytest.fixture(scope="module")
def evaluated():
    frame, predicted, uncorrected = frame_and_predictions()
    return frame, predicted, evaluate(frame, predicted, uncorrected, WEIGHTS, dwell_baseline=30)


def test_every_scorer_is_reported_per_task(evaluated):
    _, _, ev = evaluated
    scorers = set(ev.tasks["scorer"])
    assert scorers == {MODEL, UNCORRECTED, ORACLE, *BASELINES}
    assert len(ev.tasks) == len(ACTIONS) * len(scorers)
    oracle = ev.tasks[ev.tasks["scorer"] == ORACLE]
    assert (oracle["auc_gap_to_oracle"] == 0).all()
    # Baselines rank but give no probabilities: AUC only.
    baselines = ev.tasks[ev.tasks["scorer"].isin(list(BASELINES))]
    assert baselines["auc"].notna().all() and baselines["logloss"].isna().all()


def test_metrics_equal_the_metrics_module(evaluated):
    frame, predicted, ev = evaluated
    row = ev.tasks.set_index(["scorer", "task"]).loc[(MODEL, "like")]
    y = frame[label_column("like")]
    assert row["auc"] == M.auc(y, predicted[prediction_column("like")])
    assert row["nce"] == M.normalized_cross_entropy(y, predicted[prediction_column("like")])
    ranking = ev.ranking.set_index("scorer")
    chron = -frame[R.POST_AGE_H].to_numpy()
    relevance = (
        frame[[label_column(a) for a in ACTIONS]].to_numpy()
        @ np.array([getattr(WEIGHTS, a) for a in ACTIONS])
        + WEIGHTS.dwell_per_s * frame[C.DWELL_S].fillna(0).to_numpy()
    )
    want = M.ranking_report(frame[C.REQUEST_ID], relevance, chron, 10)
    assert ranking.loc["reverse_chron", "ndcg_at_10"] == want["ndcg@10"]
    assert ranking.loc["reverse_chron", "map_at_10"] == want["map@10"]


def test_calibration_before_and_after_and_the_summary(evaluated):
    _, _, ev = evaluated
    summary = summary_table(ev).set_index("task")
    assert (summary["calib_uncorrected"] > 1.5).all()  # the 3x-odds twin over-predicts
    assert (summary["calib"] - 1).abs().max() < 0.3
    assert set(ev.calibration) == set(ACTIONS)
    assert set(ev.calibration["click"]) == {MODEL, UNCORRECTED, ORACLE}


def test_informed_scorers_beat_random_baselines_and_names_are_flat(evaluated):
    _, _, ev = evaluated
    ranking = ev.ranking.set_index("scorer")["ndcg_at_10"]
    assert ranking[ORACLE] > ranking["reverse_chron"]
    assert ranking[MODEL] > ranking["popularity"]
    metrics = ev.metrics("test")
    assert metrics["test/model/value/ndcg_at_10"] == ranking[MODEL]
    assert "test/oracle/dwell/mae" in metrics and "test/constant/dwell/mae" in metrics
    assert all("@" not in name for name in metrics)


def test_the_mind_protocol_per_scorer_with_intervals(evaluated):
    frame, predicted, ev = evaluated
    mind = ev.mind.set_index("scorer")
    assert set(mind.index) == {MODEL, ORACLE, *BASELINES}  # every ranking scorer
    # The model's row is models.evaluation.metrics' MIND report on its value score and the clicks.
    want = M.mind_report(frame[C.REQUEST_ID], frame[label_column("click")], predicted[VALUE_SCORE])
    for metric in M.MIND_METRICS:
        assert mind.loc[MODEL, metric] == want[metric]
        assert (mind[f"{metric}_lo"] < mind[metric]).all()
        assert (mind[metric] < mind[f"{metric}_hi"]).all()
    assert mind.loc[MODEL, "n_requests"] == want["n_requests"] < 400  # some lists lack a click
    # A random baseline's interval holds 1/2 (popularity is drawn at random here).
    assert mind.loc["popularity", "group_auc_lo"] < 0.5 < mind.loc["popularity", "group_auc_hi"]
    metrics = ev.metrics("test")
    assert metrics["test/model/click/group_auc"] == want["group_auc"]
    assert metrics["test/model/click/ndcg_at_10_hi"] == mind.loc[MODEL, "ndcg_at_10_hi"]


def test_intervals_are_seeded_and_the_gate_sample_is_per_request():
    frame, predicted, uncorrected = frame_and_predictions(n_requests=60)
    one = evaluate(frame, predicted, uncorrected, WEIGHTS, n_boot=200, seed=3)
    again = evaluate(frame, predicted, uncorrected, WEIGHTS, n_boot=200, seed=3)
    other = evaluate(frame, predicted, uncorrected, WEIGHTS, n_boot=200, seed=4)
    pd.testing.assert_frame_equal(one.mind, again.mind)
    assert not one.mind["group_auc_lo"].equals(other.mind["group_auc_lo"])
    sample = one.gate_sample("click_group_auc", 10)
    assert list(sample.index) == list(range(60))  # one row per request
    assert set(sample.columns) == {MODEL, ORACLE, *BASELINES, "positives"}
    assert sample[MODEL].mean() == one.mind.set_index("scorer").loc[MODEL, "group_auc"]
    clicks = frame.groupby(C.REQUEST_ID)[label_column("click")].agg(["sum", "size"])
    defined = (clicks["sum"] > 0) & (clicks["sum"] < clicks["size"])
    assert (sample["positives"] == clicks["sum"].where(defined, 0)).all()
    value = one.gate_sample("value_ndcg", 10)
    assert value[MODEL].mean() == one.ranking.set_index("scorer").loc[MODEL, "ndcg_at_10"]


def test_evaluate_refuses_misaligned_predictions():
    frame, predicted, uncorrected = frame_and_predictions(n_requests=10)
    with pytest.raises(ValueError, match="one row per impression"):
        evaluate(frame, predicted.iloc[:-1], uncorrected, WEIGHTS)


# --- the promotion gate -----------------------------------------------------------------------


BASE = {"popularity": 0.55, "logged": 0.5}  # the best baseline is popularity


def test_gate_promotes_only_by_the_margin():
    assert decide(0.70, None, BASE, 0.01).promote  # first model, beats the baselines
    assert not decide(0.555, None, BASE, 0.01).promote  # first model, within the margin
    assert decide(0.72, 0.70, BASE, 0.01).promote
    kept = decide(0.705, 0.70, BASE, 0.01)
    assert not kept.promote and "does not beat champion" in kept.reason
    worse = decide(0.40, 0.70, BASE, 0.01)  # e.g. fitted to shuffled labels
    assert not worse.promote and "baseline" in worse.reason
    assert not decide(float("nan"), None, BASE, 0.0).promote
    outdated = decide(0.70, None, BASE, 0.01, "champion version 3 cannot score these features")
    assert outdated.promote and outdated.reason.startswith("champion version 3 cannot score")


def test_gate_compares_with_the_best_defined_baseline_and_names_it():
    # An undefined (NaN) baseline is never the best: 0.60 is, so 0.605 is within the margin.
    baselines = {"reverse_chron": float("nan"), "popularity": 0.60, "logged": 0.55}
    within = decide(0.605, None, baselines, 0.01, metric="validation NDCG@10")
    assert not within.promote
    assert within.reason.endswith("(baseline: popularity; validation NDCG@10)")
    assert decide(0.62, None, baselines, 0.01).promote


def test_gate_says_when_the_challenger_metric_is_undefined():
    undefined = decide(float("nan"), None, BASE, 0.0, metric="validation NDCG@10", days="d1..d1")
    assert not undefined.promote
    assert undefined.reason.startswith("validation NDCG@10 is undefined on d1..d1")
