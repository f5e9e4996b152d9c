"""LightGBM rankers: one binary model per action and a dwell regressor, scored as one value.

    ranker, history = fit_ranker(train, val, settings)
    scores = ranker.predict(feature_frame(examples))   # p_<action>, e_dwell_s, score

Position debiasing (`training.debias`): the position and source the logging policy served an
impression with (models.ranking.dataset.BIAS) are features in training, and `predict` sets them to
the
serving values (models.ranking.dataset.serving_bias) unless asked for the logged ones, so the
ranking is of relevance, not of the slot the logging policy chose.

Each action's model trains on that action's positives and a `negative_rate` sample of its
negatives (models.ranking.dataset.sample_mask) and stops early on the validation days, sampled the
same way. Its raw output is the probability on the sampled scale; `predict` maps it back with
models.ranking.calibration.correct_downsampled, `predict(..., corrected=False)` leaves it as it is
(to report calibration before and after). The dwell model is a Huber regression on clicked
impressions: E[dwell | click], which the value model multiplies by P(click).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from features import registry as R
from models.ranking.base import (
    DWELL,
    GBDT,
    TASKS,
    VALUE_SCORE,
    IncompatibleRanker,
    prediction_column,
    read_meta,
    write_meta,
)
from models.ranking.calibration import correct_downsampled
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import (
    BIAS,
    CATEGORICAL,
    FEATURES,
    Examples,
    feature_frame,
    sample_mask,
    serving_bias,
)
from models.value import ValueWeights, value_score
from warehouse.catalog import ACTIONS, CLICK, C, label_column
from warehouse.layout import Folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = GBDT


def model_features(debias: bool) -> tuple[str, ...]:
    """The columns a GBDT reads: the features, and with debiasing the serving context."""
    return (*FEATURES, *BIAS) if debias else FEATURES


@dataclasses.dataclass
class History:
    """How each task trained: rows, best iteration, the metric per iteration, gain per feature."""

    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    positives: dict[str, int] = dataclasses.field(default_factory=dict)
    best_iteration: dict[str, int] = dataclasses.field(default_factory=dict)
    metric: dict[str, str] = dataclasses.field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)

    def importance(self, ranker: Ranker) -> pd.DataFrame:
        """Gain per feature and task, long form: task, feature, gain, gain_share."""
        frames = []
        for task, booster in ranker.boosters.items():
            gain = booster.feature_importance(importance_type="gain")
            total = gain.sum()
            frames.append(
                pd.DataFrame(
                    {
                        "task": task,
                        "feature": booster.feature_name(),
                        "gain": gain,
                        "gain_share": gain / total if total > 0 else 0.0,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


class Ranker:
    """The trained models of every task, with what scoring needs to use them.

    A task the raw input does not record (`absent`: a real log's likes, hides, ...; MIND's
    dwell) has no model: its probability is 0, and E[dwell] is 0 without a dwell model, so
    the value is made of the recorded tasks alone."""

    def __init__(
        self,
        boosters: Mapping[str, lgb.Booster],
        negative_rate: float,
        weights: ValueWeights,
        features: tuple[str, ...] = model_features(True),
        absent: tuple[str, ...] = (),
    ):
        missing = [t for t in TASKS if t not in boosters and t not in absent]
        if missing:
            raise ValueError(f"a ranker needs a model for every task, missing {missing}")
        self.boosters = dict(boosters)
        self.negative_rate = float(negative_rate)
        self.weights = weights
        self.features = tuple(features)
        self.absent = tuple(t for t in TASKS if t in absent)
        # The categories each string feature had in training, in column order (LightGBM's
        # pandas_categorical); the same for every task, all trained on one frame.
        first = next(iter(self.boosters.values()), None)
        self._categories = None if first is None else first.pandas_categorical

    kind = KIND

    @property
    def debiased(self) -> bool:
        """Whether position and source were training inputs (fixed when scoring)."""
        return self.features == model_features(True)

    def predict(
        self, X: pd.DataFrame, *, corrected: bool = True, logged_bias: bool = False
    ) -> pd.DataFrame:
        """p_<action> per action, e_dwell_s (given a click) and the value score, per row.

        `logged_bias`: score with the logged position and source instead of the serving ones
        (to measure what debiasing changes); no effect on a ranker trained without them.
        Raises IncompatibleRanker when the ranker was trained on other feature columns than
        this code's feature frame builds (LightGBM would match them by position, silently).
        """
        if self.features not in (model_features(True), model_features(False)):
            current = model_features(True)
            added = sorted(set(current) - set(self.features))
            dropped = sorted(set(self.features) - set(current))
            raise IncompatibleRanker(
                f"the ranker was trained on other features: new {added}, gone {dropped}"
                + ("" if added or dropped else ", same names in another order")
            )
        matrix = self.model_matrix(feature_frame(X), logged_bias=logged_bias)
        return self.scores(self.task_outputs(matrix), corrected=corrected, index=X.index)

    def model_matrix(self, frame: pd.DataFrame, *, logged_bias: bool = False) -> np.ndarray:
        """(n, len(features)) float64: what LightGBM makes of the feature frame's columns.

        The same numbers as LightGBM's own pandas conversion (categories as their codes in
        the training categories, missing as NaN), built once for all tasks instead of once
        per booster; BIAS columns hold the serving values unless `logged_bias`."""
        bias = serving_bias(frame.loc[:, [R.UA_FOLLOWS]]) if not logged_bias else frame
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        categories = iter(self._categories or ())
        for i, name in enumerate(self.features):
            column = bias[name] if name in BIAS else frame[name]
            if not isinstance(column.dtype, pd.CategoricalDtype):
                out[:, i] = column.to_numpy(dtype=np.float64)
                continue
            trained = next(categories, None)
            if trained is not None and list(column.cat.categories) != trained:
                column = column.cat.set_categories(trained)
            codes = column.cat.codes.to_numpy()
            out[:, i] = np.where(codes < 0, np.nan, codes)
        return out

    def task_outputs(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """Each present task's model output on model_matrix rows: the probability on the
        sampled scale for an action, E[dwell | click] unclipped for dwell."""
        return {task: booster.predict(matrix) for task, booster in self.boosters.items()}

    def scores(
        self, outputs: Mapping[str, np.ndarray], *, corrected: bool, index: pd.Index
    ) -> pd.DataFrame:
        """task_outputs as predict's columns: calibrated probabilities, E[dwell], value."""
        n = len(index)
        out = {}
        for a in ACTIONS:
            if a in self.absent:
                out[prediction_column(a)] = np.zeros(n)
                continue
            q = outputs[a]
            if corrected:
                q = correct_downsampled(q, self.negative_rate)
            out[prediction_column(a)] = q
        dwell = np.zeros(n) if DWELL in self.absent else np.clip(outputs[DWELL], 0.0, None)
        out[C.E_DWELL_S] = dwell
        probs = {a: out[prediction_column(a)] for a in ACTIONS}
        out[VALUE_SCORE] = value_score(probs, dwell, self.weights, dwell_given_click=True)
        return pd.DataFrame(out, index=index)

    def save(self, folder: Folder) -> Folder:
        """Write each booster as LightGBM text and the rest as ranker.json into `folder`."""
        for task, booster in self.boosters.items():
            booster.save_model(str(folder.writable(f"{task}.txt")))
        meta = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "negative_rate": self.negative_rate,
            "weights": self.weights.model_dump(),
            "features": list(self.features),
            "tasks": list(self.boosters),
            "absent": list(self.absent),
        }
        write_meta(folder, meta)
        return folder

    @classmethod
    def load(cls, folder: Folder) -> Ranker:
        meta = read_meta(folder)
        if meta.get("kind", KIND) != KIND:
            raise ValueError(f"{folder}: a {meta['kind']} ranker, not a {KIND} one")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: ranker format {meta.get('format_version')} unknown")
        boosters = {t: lgb.Booster(model_file=str(folder.file(f"{t}.txt"))) for t in meta["tasks"]}
        weights = ValueWeights(**meta["weights"])
        absent = tuple(meta.get("absent", ()))
        return cls(boosters, meta["negative_rate"], weights, tuple(meta["features"]), absent)


def _params(gbdt: GbdtSettings, objective: str, metric: str, seed: int) -> dict:
    return {
        "objective": objective,
        "metric": metric,
        "learning_rate": gbdt.learning_rate,
        "num_leaves": gbdt.num_leaves,
        "min_child_samples": gbdt.min_child_samples,
        "feature_fraction": gbdt.feature_fraction,
        "bagging_fraction": gbdt.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": gbdt.lambda_l2,
        "num_threads": gbdt.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def _fit(
    task: str,
    params: dict,
    gbdt: GbdtSettings,
    train: tuple[pd.DataFrame, np.ndarray],
    val: tuple[pd.DataFrame, np.ndarray],
    history: History,
) -> lgb.Booster:
    categorical = [c for c in CATEGORICAL if c in train[0].columns]
    dtrain = lgb.Dataset(train[0], train[1], categorical_feature=categorical)
    dval = lgb.Dataset(val[0], val[1], reference=dtrain)
    record: dict = {}
    period = max(1, gbdt.max_rounds // 10)
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=gbdt.max_rounds,
        valid_sets=[dtrain, dval],
        valid_names=["train", "valid"],
        callbacks=[
            lgb.early_stopping(gbdt.early_stopping_rounds, verbose=False),
            lgb.record_evaluation(record),
            _progress(task, period),
        ],
    )
    metric = params["metric"]
    history.rows[task] = len(train[1])
    history.best_iteration[task] = booster.best_iteration or booster.current_iteration()
    history.metric[task] = metric
    history.curves[task] = {name: list(record[name][metric]) for name in ("train", "valid")}
    best = history.curves[task]["valid"][history.best_iteration[task] - 1]
    log.info(
        "%s: %d rows, stopped at %d rounds, best %d: valid %s %.5f",
        task,
        len(train[1]),
        len(history.curves[task]["valid"]),
        history.best_iteration[task],
        metric,
        best,
    )
    return booster


def _progress(task: str, period: int):
    """A LightGBM callback that logs the validation metric every `period` rounds."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        if (env.iteration + 1) % period == 0:
            scores = " ".join(f"{d} {m} {v:.5f}" for d, m, v, _ in env.evaluation_result_list)
            log.info("%s: round %d/%d: %s", task, env.iteration + 1, env.end_iteration, scores)

    return callback


def fit_ranker(
    train: Examples,
    val: Examples,
    settings: TrainingSettings,
    tasks: Sequence[str] | None = None,
) -> tuple[Ranker, History]:
    """Fit every task on the training days, stopping early on the validation days.

    `tasks`: the ones the raw input records (a real log: warehouse.ingest.config.RECORDED),
    the others left absent from the ranker; None: every task. A recorded action without a positive
    still raises: that is a broken input, not a missing one."""
    rate, gbdt = settings.negative_rate, settings.gbdt
    features = model_features(settings.debias)
    train, val = (_select(s, features) for s in (train, val))
    fitted = TASKS if tasks is None else tuple(t for t in TASKS if t in tasks)
    history = History()
    boosters: dict[str, lgb.Booster] = {}
    kept = {}  # every task's sample, checked before any is fitted: a broken input fails fast
    for a in (a for a in ACTIONS if a in fitted):
        y, yv = (s.labels[label_column(a)].to_numpy() for s in (train, val))
        keep = sample_mask(y, train.sample_u, rate)
        keep_v = sample_mask(yv, val.sample_u, rate)
        if y[keep].sum() == 0 or yv[keep_v].sum() == 0:
            raise ValueError(f"no positive {a!r} in the training or validation days: cannot fit")
        kept[a] = y, yv, keep, keep_v
    for a, (y, yv, keep, keep_v) in kept.items():
        history.positives[a] = int(y[keep].sum())
        params = _params(gbdt, "binary", "binary_logloss", settings.seed)
        boosters[a] = _fit(
            a, params, gbdt, (train.X[keep], y[keep]), (val.X[keep_v], yv[keep_v]), history
        )
    absent = tuple(t for t in TASKS if t not in fitted)
    if DWELL in absent:
        return Ranker(boosters, rate, settings.value, features, absent), history
    # Clicks with a dwell: a real log may lack it on some (EB-NeRD: a request with 2 clicks).
    clicked, clicked_v = (
        (s.labels[label_column(CLICK)].to_numpy() == 1) & s.labels[C.DWELL_S].notna().to_numpy()
        for s in (train, val)
    )
    d, dv = (s.labels[C.DWELL_S].to_numpy() for s in (train, val))
    params = _params(gbdt, "huber", "l1", settings.seed) | {"alpha": gbdt.huber_delta}
    history.positives[DWELL] = int(clicked.sum())
    boosters[DWELL] = _fit(
        DWELL,
        params,
        gbdt,
        (train.X[clicked], d[clicked]),
        (val.X[clicked_v], dv[clicked_v]),
        history,
    )
    return Ranker(boosters, rate, settings.value, features, absent), history


def _select(examples: Examples, features: tuple[str, ...]) -> Examples:
    return dataclasses.replace(examples, X=examples.X.loc[:, list(features)])
