"""models.ranking.ensemble and models.ranking.base on two GBDT rankers fitted with other seeds and
settings on the synthetic examples of test_gbdt (whose true probabilities are known):
the combination per action, save/load by kind, the stacker and its held-out check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_gbdt import SETTINGS, synthetic

from models.evaluation.metrics import auc, calibration_ratio
from models.ranking.base import ENSEMBLE, GBDT, VALUE_SCORE, RankerLike, prediction_column
from models.ranking.config import EnsembleSettings, GbdtSettings
from models.ranking.ensemble import EnsembleRanker, fit_ensemble, logit, user_fold
from models.ranking.gbdt import Ranker, fit_ranker
from models.ranking.load import load_ranker_folder, member_kinds
from models.value import value_score
from warehouse.catalog import ACTIONS, C, label_column
from warehouse.layout import Folder

OTHER = SETTINGS.model_copy(
    update={
        "seed": 11,
        "gbdt": GbdtSettings(
            num_leaves=15,
            min_child_samples=80,
            max_rounds=100,
            early_stopping_rounds=10,
            num_threads=2,
            feature_fraction=0.6,
        ),
    }
)


@pytest.fixture(scope="module")
def data():
    return synthetic(20_000, 1), synthetic(12_000, 2), synthetic(10_000, 3)


@pytest.fixture(scope="module")
def members(data):
    (train, _), (val, _), _ = data
    return fit_ranker(train, val, SETTINGS)[0], fit_ranker(train, val, OTHER)[0]


def test_average_is_the_mean_logit_of_the_members(data, members):
    _, _, (test, _) = data
    ensemble, history = fit_ensemble(members, data[1][0], SETTINGS)
    assert ensemble.combine == "average" and not history.metrics()
    assert isinstance(ensemble, RankerLike) and ensemble.kind == ENSEMBLE
    pred = ensemble.predict(test.X)
    each = [m.predict(test.X) for m in members]
    for a in ACTIONS:
        col = prediction_column(a)
        mean = np.mean([logit(p[col].to_numpy()) for p in each], axis=0)
        np.testing.assert_allclose(logit(pred[col].to_numpy()), mean, atol=1e-9)
        y = test.labels[label_column(a)].to_numpy()
        # Averaging two models of the same truth ranks about as well as the better one, and
        # better than the worse; on 10K rows a rare action's AUC moves by ~0.02 between models.
        aucs = [auc(y, p[col]) for p in each]
        assert max(aucs) - 0.02 < auc(y, pred[col]), a
        assert auc(y, pred[col]) > min(aucs) - 0.005, a
    dwell = np.mean([p[C.E_DWELL_S].to_numpy() for p in each], axis=0)
    np.testing.assert_allclose(pred[C.E_DWELL_S].to_numpy(), dwell)
    probs = {a: pred[prediction_column(a)].to_numpy() for a in ACTIONS}
    expected = value_score(probs, dwell, SETTINGS.value, dwell_given_click=True)
    np.testing.assert_allclose(pred[VALUE_SCORE].to_numpy(), expected)
    # Uncorrected: the same logit minus log(rate), the members' sampled scale.
    raw = ensemble.predict(test.X, corrected=False)
    shift = logit(raw["p_click"].to_numpy()) - logit(pred["p_click"].to_numpy())
    np.testing.assert_allclose(shift, -np.log(SETTINGS.negative_rate), atol=1e-6)
    y = test.labels[label_column("click")].to_numpy()
    assert calibration_ratio(y, pred["p_click"]) == pytest.approx(1, abs=0.15)


def test_saved_members_load_back_by_kind(data, members, tmp_path):
    _, _, (test, _) = data
    ensemble, _ = fit_ensemble(members, data[1][0], SETTINGS)
    folder = ensemble.save(Folder(tmp_path / "ensemble"))
    meta = json.loads(folder.file("ranker.json").read_text())
    assert meta["kind"] == ENSEMBLE and meta["members"] == ["member_0", "member_1"]
    assert json.loads(folder.file("member_1/ranker.json").read_text())["kind"] == GBDT
    loaded = load_ranker_folder(folder)
    assert isinstance(loaded, EnsembleRanker) and member_kinds(loaded) == (GBDT,)
    pd.testing.assert_frame_equal(loaded.predict(test.X), ensemble.predict(test.X))
    # A member's folder is an ordinary ranker folder.
    assert isinstance(load_ranker_folder(folder.sub("member_0")), Ranker)


def test_a_gbdt_saved_before_kinds_loads_as_gbdt(members, tmp_path):
    folder = members[0].save(Folder(tmp_path / "old"))
    meta = json.loads(folder.file("ranker.json").read_text())
    assert meta.pop("kind") == GBDT
    folder.file("ranker.json").write_text(json.dumps(meta))
    assert isinstance(load_ranker_folder(folder), Ranker)
    folder.file("ranker.json").write_text(json.dumps(meta | {"kind": "xgboost"}))
    with pytest.raises(ValueError, match="unknown ranker kind 'xgboost'"):
        load_ranker_folder(folder)


def test_stacker_fits_on_part_of_validation_and_reports_the_rest(data, members, tmp_path):
    (_, _), (val, _), (test, _) = data
    settings = SETTINGS.model_copy(update={"ensemble": EnsembleSettings(combine="stacker")})
    ensemble, history = fit_ensemble(members, val, settings)
    assert ensemble.combine == "stacker" and set(ensemble.stackers) == set(ACTIONS)
    fit = user_fold(val.X[C.USER_ID].to_numpy(), settings.seed) < 0.5
    assert history.rows["click"] == int(fit.sum()) and 0.4 < fit.mean() < 0.6
    m = history.metrics()
    for a in ACTIONS:
        # On the held-out users the stacker is no worse than the average by more than noise.
        held_out = m[f"ensemble/{a}/logloss_held_out"]
        assert held_out < m[f"ensemble/{a}/logloss_held_out_average"] * 1.02, a
    for a in ("click", "like"):  # enough positives: both members of the truth weigh > 0
        assert all(c > 0 for c in ensemble.stackers[a].coef), a
    pred = ensemble.predict(test.X)
    y = test.labels[label_column("click")].to_numpy()
    assert auc(y, pred["p_click"]) > 0.65
    loaded = load_ranker_folder(ensemble.save(Folder(tmp_path / "stacked")))
    pd.testing.assert_frame_equal(loaded.predict(test.X), pred)


def test_members_must_be_two_on_one_sampled_scale(members):
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleRanker(members[:1], SETTINGS.value)
    other = Ranker(members[1].boosters, 0.5, members[1].weights, members[1].features)
    with pytest.raises(ValueError, match="share their negative_rate"):
        EnsembleRanker([members[0], other], SETTINGS.value)


def test_user_fold_is_a_seeded_uniform_draw_per_user():
    users = np.arange(20_000)
    u = user_fold(users, 7)
    assert ((u >= 0) & (u < 1)).all() and abs(u.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(user_fold(users, 7), u)  # the same user, the same draw
    assert not np.array_equal(user_fold(users, 8), u)
