"""models.ranking.gbdt on synthetic examples whose true probabilities are known: per-task fitting on
sampled negatives, the correction back to calibrated probabilities, persistence, determinism.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluation.metrics import auc, calibration_ratio, dwell_mae
from models.ranking.base import DWELL, VALUE_SCORE, IncompatibleRanker, prediction_column
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import BIAS, FEATURES, IDS, feature_frame, serving_bias, signature_frame
from models.ranking.gbdt import Examples, Ranker, fit_ranker
from warehouse.catalog import ACTIONS, C, label_column
from warehouse.layout import Folder

DRIVER = "post_click_1d"  # the feature the synthetic actions depend on
DWELL_DRIVER = "length"
BASE_LOGIT = {"click": -3.0, "like": -4.0, "comment": -4.5, "share": -4.5, "hide": -5.0}
BASE_LOGIT["report"] = -5.0
SETTINGS = TrainingSettings(
    negative_rate=0.1,
    gbdt=GbdtSettings(
        num_leaves=7, min_child_samples=40, max_rounds=300, early_stopping_rounds=20, num_threads=2
    ),
)


def synthetic(n: int, seed: int) -> tuple[Examples, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.random(n) for name in FEATURES})
    frame["topic"] = rng.integers(0, 20, n)
    for name in ("device", "country", "age_bucket", "gender", "primary_device"):
        frame[name] = None  # missing categories are allowed
    frame["media_type"] = rng.choice(["text", "photo", "video", "link"], n)
    for name in IDS:
        frame[name] = rng.integers(0, 1000, n)
    X = feature_frame(frame)  # no position or source: the serving values
    video = (frame["media_type"] == "video").to_numpy()
    truth, labels = {}, {}
    for a, base in BASE_LOGIT.items():
        logit = base + 3.0 * (frame[DRIVER].to_numpy() - 0.5) + 1.0 * video
        truth[a] = 1 / (1 + np.exp(-logit))
        labels[label_column(a)] = (rng.random(n) < truth[a]).astype(np.int8)
    clicked = labels[label_column("click")] == 1
    dwell = 10 + 80 * frame[DWELL_DRIVER].to_numpy() + rng.exponential(5, n)
    labels[C.DWELL_S] = np.where(clicked, dwell, np.nan)
    truth[DWELL] = 10 + 80 * frame[DWELL_DRIVER].to_numpy() + 5
    return Examples(X, pd.DataFrame(labels), rng.random(n)), truth


@pytest.fixture(scope="module")
def data():
    return synthetic(60_000, 1), synthetic(20_000, 2), synthetic(40_000, 3)


@pytest.fixture(scope="module")
def fitted(data):
    (train, _), (val, _), _ = data
    return fit_ranker(train, val, SETTINGS)


def test_each_task_ranks_close_to_the_truth(data, fitted):
    ranker, _ = fitted
    _, _, (test, truth) = data
    pred = ranker.predict(test.X)
    for a in ACTIONS:
        y = test.labels[label_column(a)].to_numpy()
        model, oracle = auc(y, pred[prediction_column(a)]), auc(y, truth[a])
        assert model > 0.65, a
        assert oracle - model < 0.05, (a, model, oracle)


def test_correction_restores_calibration(data, fitted):
    ranker, _ = fitted
    _, _, (test, _) = data
    corrected = ranker.predict(test.X)
    raw = ranker.predict(test.X, corrected=False)
    for a in ("click", "like"):  # enough positives to measure the ratio tightly
        y = test.labels[label_column(a)].to_numpy()
        assert calibration_ratio(y, raw[prediction_column(a)]) > 3, a  # the sampled scale
        assert calibration_ratio(y, corrected[prediction_column(a)]) == pytest.approx(1, abs=0.15)


def test_dwell_model_beats_a_constant(data, fitted):
    ranker, _ = fitted
    _, _, (test, _) = data
    clicked = test.labels[label_column("click")].to_numpy() == 1
    true = test.labels[C.DWELL_S].to_numpy()[clicked]
    pred = ranker.predict(test.X)[C.E_DWELL_S].to_numpy()[clicked]
    assert dwell_mae(true, pred) < 0.5 * dwell_mae(true, np.full(true.size, np.median(true)))


def test_history_records_rows_curves_and_the_driving_feature(fitted):
    ranker, history = fitted
    train_rows = history.rows["click"]
    assert history.positives["click"] < train_rows < 60_000  # sampled negatives
    for task in (*ACTIONS, DWELL):
        assert len(history.curves[task]["valid"]) >= history.best_iteration[task] >= 1
    importance = history.importance(ranker)
    assert importance.groupby("task")["gain_share"].sum().round(6).eq(1).all()
    top = importance.sort_values("gain", ascending=False).groupby("task").head(1)
    top = top.set_index("task")["feature"]
    assert top["click"] == DRIVER
    assert top[DWELL] == DWELL_DRIVER


def test_save_load_and_refit_give_the_same_scores(data, fitted, tmp_path):
    ranker, _ = fitted
    (train, _), (val, _), (test, _) = data
    before = ranker.predict(test.X)
    loaded = Ranker.load(ranker.save(Folder(tmp_path / "ranker")))
    pd.testing.assert_frame_equal(loaded.predict(test.X), before)
    # Strings instead of categories (as MLflow hands them over) score the same.
    pd.testing.assert_frame_equal(loaded.predict(signature_frame(test.X)), before)
    refit, _ = fit_ranker(train, val, SETTINGS)
    pd.testing.assert_frame_equal(refit.predict(test.X), before)
    assert np.isfinite(before[VALUE_SCORE]).all()


def test_a_task_without_positives_is_refused(data):
    (train, _), (val, _), _ = data
    labels = train.labels.copy()
    labels[label_column("report")] = 0
    with pytest.raises(ValueError, match="no positive 'report'"):
        fit_ranker(Examples(train.X, labels, train.sample_u), val, SETTINGS)


def test_a_ranker_of_other_features_refuses_to_score(data, fitted):
    ranker, _ = fitted
    _, _, (test, _) = data
    older_features = (*FEATURES[:-1], *BIAS)  # trained before topic_recency existed
    older = Ranker(ranker.boosters, ranker.negative_rate, ranker.weights, older_features)
    with pytest.raises(IncompatibleRanker, match="new \\['topic_recency'\\]"):
        older.predict(test.X)


def _booster_by_booster(ranker: Ranker, X: pd.DataFrame, corrected: bool, logged_bias: bool):
    """Ranker.predict as it scored before model_matrix: every booster on the pandas frame,
    through LightGBM's own conversion of its categories."""
    frame = feature_frame(X)
    if not logged_bias:
        frame = serving_bias(frame)
    frame = frame.loc[:, list(ranker.features)]
    outputs = {task: booster.predict(frame) for task, booster in ranker.boosters.items()}
    return ranker.scores(outputs, corrected=corrected, index=X.index)


@pytest.mark.parametrize("corrected", [True, False])
@pytest.mark.parametrize("logged_bias", [False, True])
def test_one_matrix_for_all_tasks_scores_exactly_as_lightgbm_on_the_frame(
    data, fitted, corrected, logged_bias
):
    ranker, _ = fitted
    _, _, (test, _) = data
    rng = np.random.default_rng(4)
    X = test.X.iloc[:2_000].copy()
    X.index = X.index + 10  # predict keeps the caller's index
    X[C.POSITION] = rng.integers(0, 30, len(X)).astype(float)  # logged slots and sources
    X[C.SOURCE] = pd.Categorical(
        rng.choice(["ranked", "fresh", None], len(X)), X[C.SOURCE].cat.categories
    )
    expected = _booster_by_booster(ranker, X, corrected, logged_bias)
    got = ranker.predict(X, corrected=corrected, logged_bias=logged_bias)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # Strings in place of categories (MLflow's frames) go through the same matrix.
    got = ranker.predict(signature_frame(X), corrected=corrected, logged_bias=logged_bias)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
