"""Offline evaluation of a ranker against baselines and the oracle, on one split's days
(a real log has no oracle: `oracle=False` leaves it out of every table and metric).

Scorers, all on the same impressions:
* model: the ranker's calibrated probabilities, E[dwell | click] and value score;
* model_uncorrected: the same models' probabilities before the downsampling correction
  (calibration before and after; its ranking is the model's);
* oracle: the simulator's true probabilities and expected dwell (truth layer), the ceiling;
* reverse_chron (newest first), popularity (the post's smoothed 7-day engagement rate; raw or
  decayed counts rank worse, since they favour old posts), logged (the order the logging
  policy served): ranking baselines, whose AUC is that of their score.

Relevance of an impression for NDCG and MAP is its realised value (the value weights on what
the viewer did), grouped by request. Every metric comes from models.evaluation.metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import registry as R
from models.evaluation import metrics as M
from models.ranking.base import DWELL, VALUE_SCORE, RankerLike, prediction_column
from models.ranking.dataset import load_examples, with_truth
from models.value import ValueWeights, realised_value, value_score
from warehouse.catalog import ACTIONS, CLICK, C, label_column, truth_column

if TYPE_CHECKING:
    from warehouse.store import Warehouse

MODEL, UNCORRECTED, ORACLE = "model", "model_uncorrected", "oracle"
# The model's value ranking with the logged position and source as inputs, beside MODEL's with
# the serving ones: what position debiasing changes (RankerLike.predict).
LOGGED_BIAS = "model_logged_position"
VALUE = "value"  # the task name of the ranking rows
CONSTANT = "constant"  # the dwell baseline: one guess (the training median) for every click
GATE_SPLIT = "val"  # the promotion gate compares models on the validation days
BASELINES: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "reverse_chron": lambda f: -f[R.POST_AGE_H].to_numpy(dtype=float),
    "popularity": lambda f: f[R.POST_SMOOTHED_RATE].to_numpy(dtype=float),
    "logged": lambda f: -f[C.POSITION].to_numpy(dtype=float),
}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One split's report: per task and scorer, per ranking scorer, dwell, calibration."""

    tasks: pd.DataFrame  # scorer, task, auc, logloss, nce, calibration_ratio, ece, ...
    ranking: pd.DataFrame  # scorer, ndcg_at_k, map_at_k, n_requests, n_requests_scored
    dwell: pd.DataFrame  # scorer, mae, n
    calibration: dict[str, dict[str, pd.DataFrame]]  # task -> scorer -> calibration_curve

    def metrics(self, split: str) -> dict[str, float]:
        """Flat names for MLflow (`metric_name`): <split>/<scorer>/<task>/<metric>."""
        out = {}
        for row in self.tasks.to_dict("records"):
            for key, value in row.items():
                if key not in ("scorer", "task") and np.isfinite(value):
                    out[metric_name(split, row["scorer"], row["task"], key)] = float(value)
        for row in self.ranking.to_dict("records"):
            for key, value in row.items():
                if key != "scorer" and np.isfinite(value):
                    out[metric_name(split, row["scorer"], VALUE, key)] = float(value)
        for row in self.dwell.to_dict("records"):
            out[metric_name(split, row["scorer"], DWELL, "mae")] = float(row["mae"])
        return out


def metric_name(split: str, scorer: str, *name: str) -> str:
    """The one naming scheme of evaluation metrics: `<split>/<scorer>/<task>/<metric>` for
    the rankers (test/model/click/auc), `<split>/<scorer>/<metric>` for retrieval, which has
    one task (test/two_tower/recall_at_500)."""
    return "/".join((split, scorer, *name))


def best_baseline(baselines: Mapping[str, float]) -> tuple[str, float]:
    """The baseline with the highest metric; an undefined (NaN) one never counts as best."""
    name = max(baselines, key=lambda b: -np.inf if np.isnan(baselines[b]) else baselines[b])
    return name, baselines[name]


def gate_metric(k: int, scorer: str = MODEL) -> str:
    """The metric the promotion gate reads: validation NDCG@k of the value score."""
    return metric_name(GATE_SPLIT, scorer, VALUE, f"ndcg_at_{k}")


def evaluate(
    frame: pd.DataFrame,
    predicted: pd.DataFrame,
    uncorrected: pd.DataFrame,
    weights: ValueWeights,
    *,
    k: int = 10,
    dwell_baseline: float | None = None,
    n_bins: int = 20,
    oracle: bool = True,
    actions: Sequence[str] = ACTIONS,
    served: pd.DataFrame | None = None,
) -> Evaluation:
    """Evaluate on `frame` (labels, request_id, truth p_* and e_dwell_s, baseline inputs).

    `predicted` / `uncorrected` are Ranker.predict with and without the correction, row-aligned
    with `frame`. `dwell_baseline`: a constant dwell guess (e.g. the training median) to put
    the dwell model's MAE in context. `oracle=False`: the raw input has no truth (a real
    log): no oracle scorer anywhere, `frame` needs no truth columns. `actions`: the tasks
    reported per task (a real log's recorded ones; the value ranking uses every label).
    `served`: the model's predictions with the serving position and source (a debiased
    ranker): then MODEL's value ranking is of those, as a feed would rank, and LOGGED_BIAS's of
    `predicted` (scored where the logging policy put each post); per-task metrics always
    compare `predicted` with what happened where it was shown.
    """
    if not (len(frame) == len(predicted) == len(uncorrected)):
        raise ValueError("frame and predictions must have one row per impression")
    probs = {
        MODEL: {a: predicted[prediction_column(a)].to_numpy() for a in ACTIONS},
        UNCORRECTED: {a: uncorrected[prediction_column(a)].to_numpy() for a in ACTIONS},
    }
    scores = {MODEL: predicted[VALUE_SCORE].to_numpy()}
    if served is not None:
        scores = {
            MODEL: served[VALUE_SCORE].to_numpy(),
            LOGGED_BIAS: predicted[VALUE_SCORE].to_numpy(),
        }
    if oracle:
        probs[ORACLE] = {a: frame[truth_column(a)].to_numpy() for a in ACTIONS}
        e_dwell = frame[C.E_DWELL_S].to_numpy()
        scores[ORACLE] = value_score(probs[ORACLE], e_dwell, weights, dwell_given_click=True)
    scores |= {name: fn(frame) for name, fn in BASELINES.items()}
    labels = {a: frame[label_column(a)].to_numpy() for a in ACTIONS}
    rows = []
    for a in actions:
        for scorer, p in probs.items():
            rows.append({"scorer": scorer, "task": a, **M.binary_report(labels[a], p[a], n_bins)})
        for scorer in BASELINES:
            rows.append({"scorer": scorer, "task": a, "auc": M.auc(labels[a], scores[scorer])})
    tasks = pd.DataFrame(rows)
    if oracle:
        oracle_auc = tasks[tasks["scorer"] == ORACLE].set_index("task")["auc"]
        tasks["auc_gap_to_oracle"] = tasks["task"].map(oracle_auc) - tasks["auc"]

    ranking = value_ranking(frame, scores, weights, k)

    # Clicks with a dwell: a real log may lack it (MIND always, EB-NeRD on some clicks).
    clicked = (labels[CLICK] == 1) & frame[C.DWELL_S].notna().to_numpy()
    dwell_true = frame[C.DWELL_S].to_numpy(dtype=float)[clicked]
    guesses = {MODEL: predicted[C.E_DWELL_S].to_numpy()[clicked]}
    if oracle:
        guesses[ORACLE] = frame[C.E_DWELL_S].to_numpy()[clicked]
    if dwell_baseline is not None:
        guesses[CONSTANT] = np.full(dwell_true.size, float(dwell_baseline))
    dwell = pd.DataFrame(
        [
            {"scorer": name, "mae": M.dwell_mae(dwell_true, guess), "n": float(dwell_true.size)}
            for name, guess in guesses.items()
            if dwell_true.size
        ]
    )

    calibration = {  # equal-mass bins for the plots: rare actions' predictions are all small
        a: {
            scorer: M.calibration_curve(labels[a], probs[scorer][a], 10, strategy="quantile")
            for scorer in probs
        }
        for a in actions
    }
    return Evaluation(tasks, ranking, dwell, calibration)


def evaluate_days(
    store: Warehouse,
    ranker: RankerLike,
    days: Sequence[str],
    weights: ValueWeights,
    *,
    k: int,
    dwell_baseline: float | None = None,
    oracle: bool = True,
) -> Evaluation:
    """`evaluate` on the training examples of `days`, with the oracle from the truth layer;
    `oracle=False` (a real log, no truth layer): the baselines alone, and per task only the
    actions the ranker has a model for."""
    examples, info = load_examples(store, days)
    frame = with_truth(store, info, days) if oracle else info
    # Per-task metrics: predictions for where each post was shown (the oracle's are too).
    predicted = ranker.predict(examples.X, logged_bias=True)
    # Its own call, not `predicted` with the correction undone: the inverse is off in the last
    # bit (calibration ratio, ECE), and an ensemble corrects on the logit scale of its mean.
    uncorrected = ranker.predict(examples.X, corrected=False, logged_bias=True)
    served = ranker.predict(examples.X) if ranker.debiased else None
    actions = tuple(a for a in ACTIONS if a not in ranker.absent)
    return evaluate(
        frame,
        predicted,
        uncorrected,
        weights,
        k=k,
        dwell_baseline=dwell_baseline,
        oracle=oracle,
        actions=actions,
        served=served,
    )


def value_ranking(
    frame: pd.DataFrame, scores: Mapping[str, np.ndarray], weights: ValueWeights, k: int
) -> pd.DataFrame:
    """NDCG@k and MAP@k per request of each scorer against the realised value of the rows
    (label columns and dwell_s in `frame`, grouped by request_id): one row per scorer."""
    relevance = realised_value(frame, weights, action_columns={a: label_column(a) for a in ACTIONS})
    groups = frame[C.REQUEST_ID].to_numpy()
    return pd.DataFrame(
        [
            {"scorer": name, **_renamed(M.ranking_report(groups, relevance, score, k))}
            for name, score in scores.items()
        ]
    )


def _renamed(report: Mapping[str, float]) -> dict[str, float]:
    """ndcg@10 -> ndcg_at_10: MLflow metric names take no '@'."""
    return {key.replace("@", "_at_"): value for key, value in report.items()}


def summary_table(evaluation: Evaluation) -> pd.DataFrame:
    """One row per task with the model's metrics beside the oracle's (when there is one) and
    the baselines' AUC."""
    t = evaluation.tasks.set_index(["task", "scorer"])
    oracle = ORACLE in set(evaluation.tasks["scorer"])
    rows = []
    for a in (a for a in ACTIONS if a in set(evaluation.tasks["task"])):
        row = {
            "task": a,
            "base_rate": t.loc[(a, MODEL), "base_rate"],
            "auc": t.loc[(a, MODEL), "auc"],
        }
        if oracle:
            row["auc_oracle"] = t.loc[(a, ORACLE), "auc"]
            row["auc_gap"] = t.loc[(a, MODEL), "auc_gap_to_oracle"]
        row["nce"] = t.loc[(a, MODEL), "nce"]
        if oracle:
            row["nce_oracle"] = t.loc[(a, ORACLE), "nce"]
        row |= {
            "calib_uncorrected": t.loc[(a, UNCORRECTED), "calibration_ratio"],
            "calib": t.loc[(a, MODEL), "calibration_ratio"],
            "ece": t.loc[(a, MODEL), "ece"],
        }
        row |= {f"auc_{b}": t.loc[(a, b), "auc"] for b in BASELINES}
        rows.append(row)
    return pd.DataFrame(rows)
