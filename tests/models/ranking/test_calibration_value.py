"""models.ranking.calibration (negative downsampling and its correction) and models.value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from models.evaluation.metrics import calibration_ratio
from models.ranking.calibration import correct_downsampled
from models.ranking.dataset import sample_mask
from models.value import ValueWeights, realised_value, value_score
from warehouse.catalog import ACTIONS, C

# --- downsampling ---------------------------------------------------------------------------


def _downsample(labels: np.ndarray, rate: float, rng: np.random.Generator):
    """The pipeline's sample (sample_mask on a fresh uniform draw) and the 1/rate weights that
    make the kept rows stand for all (1 on positives, 1/rate on kept negatives, 0 if dropped)."""
    keep = sample_mask(labels, rng.random(labels.size), rate)
    return keep, np.where(labels == 1, 1.0, 1.0 / rate) * keep


def test_downsampling_keeps_positives_and_about_rate_of_negatives():
    rng = np.random.default_rng(0)
    labels = (rng.random(200_000) < 0.02).astype(int)
    rate = 0.1
    keep, weight = _downsample(labels, rate, np.random.default_rng(1))
    assert keep[labels == 1].all()
    negatives = labels == 0
    kept_share = keep[negatives].mean()
    sd = np.sqrt(rate * (1 - rate) / negatives.sum())  # binomial sd of the kept share
    assert abs(kept_share - rate) < 5 * sd
    # The weighted count of negatives estimates the full count.
    assert weight[negatives].sum() == pytest.approx(negatives.sum(), rel=5 * sd / rate)


def test_downsampling_is_a_function_of_the_stored_draw():
    labels = np.r_[np.zeros(1000, int), np.ones(10, int)]
    draw = np.random.default_rng(7).random(labels.size)
    assert np.array_equal(sample_mask(labels, draw, 0.3), sample_mask(labels, draw.copy(), 0.3))


def test_bad_rate_raises():
    with pytest.raises(ValueError):
        sample_mask(np.array([0, 1]), np.array([0.5, 0.5]), 0.0)
    with pytest.raises(ValueError):
        correct_downsampled([0.5], 1.5)


@pytest.mark.parametrize("p", [0.005, 0.03, 0.2])
def test_kept_rate_is_inflated_and_correction_restores_it(p):
    rate = 0.1
    rng = np.random.default_rng(2)
    labels = (rng.random(400_000) < p).astype(int)
    keep, _ = _downsample(labels, rate, rng)
    inflated = p / (p + (1 - p) * rate)  # share of positives among kept rows, in expectation
    observed = labels[keep].mean()
    sd = np.sqrt(inflated * (1 - inflated) / keep.sum())
    assert abs(observed - inflated) < 5 * sd
    assert correct_downsampled(inflated, rate) == pytest.approx(p, rel=1e-12)
    # The observed kept rate maps back near the full data's observed rate.
    assert correct_downsampled(observed, rate) == pytest.approx(labels.mean(), rel=0.1)


def test_correction_is_exact_at_the_ends_and_monotone():
    p = np.linspace(0, 1, 101)
    q = correct_downsampled(p, 0.05)
    assert q[0] == 0.0 and q[-1] == 1.0
    assert np.all(np.diff(q) > 0) and np.all(q <= p)
    assert np.array_equal(correct_downsampled(p, 1.0), p)  # rate 1 keeps everything


def test_correcting_a_model_fitted_on_downsampled_data_restores_calibration():
    rng = np.random.default_rng(3)
    n, rate = 200_000, 0.05
    x = rng.normal(size=(n, 1))
    p_true = 1 / (1 + np.exp(-(-4.0 + 1.0 * x[:, 0])))  # ~3% positives
    y = (rng.random(n) < p_true).astype(int)
    keep, weight = _downsample(y, rate, rng)
    unweighted = LogisticRegression(C=1e6).fit(x[keep], y[keep])
    raw = unweighted.predict_proba(x)[:, 1]
    assert calibration_ratio(y, raw) > 5  # learnt the inflated rate
    corrected = correct_downsampled(raw, rate)
    assert calibration_ratio(y, corrected) == pytest.approx(1.0, abs=0.05)
    assert np.allclose(corrected, p_true, atol=0.01)
    # The other remedy: 1/rate weights in the loss, predictions used as they are.
    weighted = LogisticRegression(C=1e6).fit(x[keep], y[keep], sample_weight=weight[keep])
    assert calibration_ratio(y, weighted.predict_proba(x)[:, 1]) == pytest.approx(1.0, abs=0.05)


# --- value ----------------------------------------------------------------------------------


def test_weights_cover_every_action_and_are_strict():
    weights = ValueWeights()
    assert list(weights.action_weights()) == list(ACTIONS)
    assert weights.hide < 0 and weights.report < weights.hide
    top = max(weights.action_weights().values())
    assert weights.like == top and weights.comment == top  # likes and comments weigh most
    with pytest.raises(ValidationError):
        ValueWeights(clicks=1.0)  # misspelt key
    with pytest.raises(ValidationError):
        ValueWeights(like="5")  # strings are not numbers here


def test_value_score_by_hand():
    weights = ValueWeights(
        click=1.0, like=5.0, comment=4.0, share=3.0, hide=-10.0, report=-50.0, dwell_per_s=0.1
    )
    probs = {
        "click": [0.5, 0.2],
        "like": [0.1, 0.0],
        "comment": [0.02, 0.0],
        "share": [0.0, 0.1],
        "hide": [0.01, 0.0],
        "report": [0.0, 0.002],
    }
    e_dwell = [20.0, 10.0]
    # Row 0: 0.5*1 + 0.1*5 + 0.02*4 + 0 - 0.01*10 - 0 + 20*0.1 = 0.5+0.5+0.08-0.1+2 = 2.98
    # Row 1: 0.2*1 + 0 + 0 + 0.1*3 - 0 - 0.002*50 + 10*0.1 = 0.2+0.3-0.1+1 = 1.4
    assert np.allclose(value_score(probs, e_dwell, weights), [2.98, 1.4])
    # Dwell given a click is scaled by P(click): 20*0.5*0.1 = 1 and 10*0.2*0.1 = 0.2 instead.
    given_click = value_score(probs, e_dwell, weights, dwell_given_click=True)
    assert np.allclose(given_click, [2.98 - 2 + 1, 1.4 - 1 + 0.2])


def test_hide_and_report_lower_the_score():
    weights = ValueWeights()
    base = {a: np.array([0.1]) for a in ACTIONS} | {"hide": [0.0], "report": [0.0]}
    score = value_score(base, [5.0], weights)[0]
    for action in ("hide", "report"):
        assert value_score(base | {action: [0.05]}, [5.0], weights)[0] < score


def test_value_score_rejects_unknown_or_missing_actions():
    weights = ValueWeights()
    probs = {a: [0.1] for a in ACTIONS}
    with pytest.raises(KeyError):
        value_score(probs | {"retweet": [0.1]}, [0.0], weights)
    without_report = {a: v for a, v in probs.items() if a != "report"}
    with pytest.raises(KeyError):
        value_score(without_report, [0.0], weights)
    # Leaving out an action is fine when its weight is 0.
    zero_report = weights.model_copy(update={"report": 0.0})
    assert value_score(without_report, [0.0], zero_report).shape == (1,)


def test_realised_value_applies_the_weights_to_what_happened():
    weights = ValueWeights()
    labels = pd.DataFrame({a: [0, 0, 0] for a in ACTIONS} | {C.DWELL_S: [40.0, None, None]})
    labels.loc[0, ["click", "like"]] = 1  # clicked, read 40 s, liked
    labels.loc[2, "hide"] = 1  # hid it; no click, so no dwell
    value = realised_value(labels, weights)
    expected = [
        weights.click + weights.like + 40.0 * weights.dwell_per_s,
        0.0,
        weights.hide,
    ]
    assert np.allclose(value, expected)
    renamed = labels.rename(columns={a: f"label_{a}" for a in ACTIONS})
    columns = {a: f"label_{a}" for a in ACTIONS}
    assert np.allclose(realised_value(renamed, weights, action_columns=columns), expected)
