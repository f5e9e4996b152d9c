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
the viewer did), grouped by request. Beside it, the MIND protocol (group AUC, MRR, nDCG@5 and
nDCG@10 of the clicks per request, as Microsoft's MIND evaluation computes them), each with a
seeded bootstrap interval over requests: a pooled AUC rewards a score that only tells long
lists from short ones, a per-request metric does not. Every metric comes from
models.evaluation.metrics.
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
# The promotion gate's metric (training.gate_metric) -> (task, metric name, words); {k} is
# the value ranking's cutoff. "auto": the value ranking with a truth layer (the simulator),
# MIND's group AUC of clicks on a real log.
GATE_METRICS = {
    "value_ndcg": (VALUE, "ndcg_at_{k}", "NDCG@{k} of the value score"),
    "click_group_auc": (CLICK, "group_auc", "group AUC of clicks"),
    "click_ndcg": (CLICK, "ndcg_at_10", "nDCG@10 of clicks"),
}
AUTO_GATE = {True: "value_ndcg", False: "click_group_auc"}  # has a truth layer -> metric
POSITIVES = "positives"  # a gate sample's column: the positives of each request
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
    # MIND protocol per scorer: group_auc, group_auc_lo, group_auc_hi, mrr, ..., n_requests
    mind: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    # index request_id; columns <scorer>/<task>/<metric> for the per-request metrics the gate
    # may read, and <task>/positives (clicks, or rows of positive realised value)
    per_request: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

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
        for row in self.mind.to_dict("records"):
            for key, value in row.items():
                if key != "scorer" and np.isfinite(value):
                    out[metric_name(split, row["scorer"], CLICK, key)] = float(value)
        return out

    def gate_sample(self, which: str, k: int) -> pd.DataFrame:
        """The gate metric of every scorer per request (columns: the scorers) and the
        positives of each request (POSITIVES): what the gate's paired bootstrap resamples."""
        task, metric, _ = GATE_METRICS[which]
        metric = metric.format(k=k)
        suffix = f"/{task}/{metric}"
        cols = [c for c in self.per_request.columns if c.endswith(suffix)]
        sample = self.per_request[cols].rename(columns=lambda c: c.removesuffix(suffix))
        sample[POSITIVES] = self.per_request[f"{task}/{POSITIVES}"]
        return sample


def metric_name(split: str, scorer: str, *name: str) -> str:
    """The one naming scheme of evaluation metrics: `<split>/<scorer>/<task>/<metric>` for
    the rankers (test/model/click/auc), `<split>/<scorer>/<metric>` for retrieval, which has
    one task (test/two_tower/recall_at_500)."""
    return "/".join((split, scorer, *name))


def best_baseline(baselines: Mapping[str, float]) -> tuple[str, float]:
    """The baseline with the highest metric; an undefined (NaN) one never counts as best."""
    name = max(baselines, key=lambda b: -np.inf if np.isnan(baselines[b]) else baselines[b])
    return name, baselines[name]


def gate_metric(k: int, scorer: str = MODEL, which: str = "value_ndcg") -> str:
    """The metric the promotion gate reads (GATE_METRICS): by default validation NDCG@k of
    the value score."""
    task, metric, _ = GATE_METRICS[which]
    return metric_name(GATE_SPLIT, scorer, task, metric.format(k=k))


def gate_words(k: int, which: str) -> str:
    """The gate metric in words, for its reasons: "validation group AUC of clicks"."""
    return f"validation {GATE_METRICS[which][2].format(k=k)}"


def resolve_gate(which: str, has_truth: bool) -> str:
    """The gate metric a setting names; "auto" by whether the log has a truth layer."""
    return AUTO_GATE[has_truth] if which == "auto" else which


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
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
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
    compare `predicted` with what happened where it was shown. `n_boot`, `level`, `seed`: the
    bootstrap over requests of the MIND metrics' intervals.
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
    mind, per_request = mind_protocol(frame, scores, weights, k, n_boot, level, seed)

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
    return Evaluation(tasks, ranking, dwell, calibration, mind, per_request)


def evaluate_days(
    store: Warehouse,
    ranker: RankerLike,
    days: Sequence[str],
    weights: ValueWeights,
    *,
    k: int,
    dwell_baseline: float | None = None,
    oracle: bool = True,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
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
        n_boot=n_boot,
        level=level,
        seed=seed,
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


def mind_protocol(
    frame: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    weights: ValueWeights,
    k: int,
    n_boot: int,
    level: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MIND's metrics of each ranking scorer on the clicks of `frame`'s requests, each with
    its bootstrap interval (every scorer resampled with the same seed, so the intervals are
    over the same draws of requests), and the per-request table the gate resamples: the
    MIND metrics and the value ranking's NDCG@k per scorer, with each request's positives."""
    groups = frame[C.REQUEST_ID].to_numpy()
    clicks = frame[label_column(CLICK)].to_numpy()
    relevance = np.clip(
        realised_value(frame, weights, action_columns={a: label_column(a) for a in ACTIONS}),
        0,
        None,
    )
    columns: dict[str, pd.Series] = {}
    rows = []
    for name, score in scores.items():
        per = M.mind_per_request(groups, clicks, score)
        row: dict[str, float | str] = {"scorer": name}
        for metric in M.MIND_METRICS:
            mean, lo, hi = M.bootstrap_mean(per[metric], n_boot, level, seed)
            row |= {metric: mean, f"{metric}_lo": lo, f"{metric}_hi": hi}
            columns[metric_name(name, CLICK, metric)] = per[metric]
        scored = per["group_auc"].notna()
        row |= {"n_requests": float(scored.sum()), "n_clicks": float(per["clicks"][scored].sum())}
        rows.append(row)
        ndcg = M.ndcg_per_request(groups, relevance, score, k)
        columns[metric_name(name, VALUE, f"ndcg_at_{k}")] = ndcg
    per_request = pd.DataFrame(columns)
    per_request[f"{CLICK}/{POSITIVES}"] = per["clicks"].where(per["group_auc"].notna(), 0.0)
    positive = pd.Series(relevance > 0, dtype=float).groupby(groups).sum()
    per_request[f"{VALUE}/{POSITIVES}"] = positive.reindex(per_request.index).to_numpy()
    per_request.index.name = C.REQUEST_ID
    return pd.DataFrame(rows), per_request


def mind_table(evaluation: Evaluation) -> pd.DataFrame:
    """The MIND protocol for a report: per scorer each metric as "mean [lo, hi]", and how
    many requests (with a click and a non-click) and clicks it averages over."""
    out = []
    for row in evaluation.mind.to_dict("records"):
        shown: dict[str, str | float] = {"scorer": row["scorer"]}
        for m in M.MIND_METRICS:
            shown[m] = (
                ""
                if np.isnan(row[m])
                else f"{row[m]:.4f} [{row[f'{m}_lo']:.4f}, {row[f'{m}_hi']:.4f}]"
            )
        out.append(shown | {"n_requests": row["n_requests"], "n_clicks": row["n_clicks"]})
    return pd.DataFrame(out)


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
