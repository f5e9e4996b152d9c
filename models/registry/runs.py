"""MLflow runs of the rankers: what a training run logs, and the evaluation added to it.

    trained = log_training_run(RunInfo(...), split, ranker, history, train_ex, val_ex, folder,
                               scratch)
    metrics = log_evaluations(trained.run_id, {"val": ev_val, "test": ev_test}, report, folder)

A run of any ranker kind (models.ranking.base) holds the tag `feedrank.kind`, the resolved
settings (`settings.json`, and the training settings as params), the data window
(`split.json`, `window.*` params), row and positive counts per task, learning curves
(per-step metrics and a plot), gain importance (table and plot, for a history that has it:
the GBDT's), the history's own metrics (an ensemble's stacker), the model (a pyfunc,
models.registry.versions.log_ranker), then the evaluation: metrics named by
models.evaluation.evaluate.metric_name,
tables, calibration plots and `report.md`. Every figure is saved twice: as a run artifact and
under the same relative name in the report folder the caller hands in, so the report's image
links work in both places.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from models.evaluation import plots
from models.evaluation.evaluate import Evaluation, summary_table
from models.evaluation.report import to_html
from models.ranking.base import GBDT, RankerLike
from models.ranking.dataset import Examples, Split
from models.registry import versions as reg
from models.registry.handoff import TrainedRun
from models.registry.tags import DS_TAG, KIND_TAG, RANKER_STAGE, STAGE_TAG
from warehouse.catalog import C
from warehouse.layout import Folder

REPORT = "report.md"  # the evaluation report, in the run and in the report folder
REPORT_HTML = "report.html"  # the same with its figures embedded: what MLflow's UI renders
CURVES = "learning_curves.png"  # the learning curves' plot
DWELL_MEDIAN_PARAM = "dwell_median_train_s"  # the constant dwell guess evaluation compares to


class TrainingHistory(Protocol):
    """What a run logs of any kind's fit (models.ranking.gbdt.History, the DNN's, the ensemble's):
    per task the rows and positives it trained on, and learning curves per dataset. Optional
    attributes: best_iteration and metric per task (for the curves' plot), importance(ranker)
    (a table of task, feature, gain, gain_share) and metrics() (more numbers to log)."""

    rows: Mapping[str, int]
    positives: Mapping[str, int]
    curves: Mapping[str, Mapping[str, list[float]]]


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What names and describes a run, beside what it trained on."""

    name: str  # the run's name in the MLflow UI
    ds: str  # the last day the training could use
    tags: Mapping[str, str]  # e.g. feedrank.profile (the run also gets DS_TAG = ds)
    params: Mapping[str, Any]  # flat params (see `flatten`)
    settings: Mapping[str, Any]  # the resolved settings, logged as settings.json


def flatten(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Nested settings as MLflow params `prefix.key.sub`; unset (None) values are left out,
    so that the UI shows no "None" (settings.json keeps them)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, name)
        elif value is not None:
            out[name] = value
    return out


def log_figure(fig: Figure, artifact_file: str, folder: Folder) -> None:
    """Log a figure to the active run and save it under the same name in `folder`."""
    mlflow.log_figure(fig, artifact_file)
    plots.save_figure(fig, folder.writable(artifact_file))


def log_report(report: str, folder: Folder) -> None:
    """Log the Markdown report and its HTML page (models.evaluation.report.to_html: the figures
    saved in
    `folder` by log_figure embedded) to the active run, and write both into `folder`."""
    page = to_html(report, folder)
    mlflow.log_text(report, REPORT)
    mlflow.log_text(page, REPORT_HTML)
    folder.writable(REPORT).write_text(report)
    folder.writable(REPORT_HTML).write_text(page)


def log_training_run(
    info: RunInfo,
    split: Split,
    ranker: RankerLike,
    history: TrainingHistory,
    train_ex: Examples | None,
    val_ex: Examples,
    folder: Folder,
    scratch: Folder,
    *,
    dwell_median: float | None = None,
) -> TrainedRun:
    """One MLflow run for a trained ranker: settings, data window, counts, plots, the model.

    `folder`: the report folder (figures land there too); `scratch`: an empty folder the
    model is written to on its way into the run. `train_ex` None (an ensemble, made of
    trained models): `dwell_median` is the training days' median dwell of a click, which
    evaluation's constant dwell guess uses (its members' runs logged it)."""
    if train_ex is not None:
        dwell = train_ex.labels[C.DWELL_S].dropna()
        dwell_median = float(dwell.median()) if len(dwell) else 0.0
    parts = (("train", split.train), ("val", split.val), ("test", split.test))
    with mlflow.start_run(run_name=info.name) as run:
        mlflow.set_tags({**info.tags, DS_TAG: info.ds, KIND_TAG: ranker.kind})
        mlflow.log_params(dict(info.params))
        mlflow.log_params(
            {
                **{reg.window_param(part): f"{days[0]}..{days[-1]}" for part, days in parts},
                reg.window_param("train_days"): len(split.train),
                DWELL_MEDIAN_PARAM: dwell_median or 0.0,
            }
        )
        mlflow.log_dict(dict(info.settings), "settings.json")
        mlflow.log_dict(split.as_dict(), reg.SPLIT_ARTIFACT)
        counts = {"rows/val": len(val_ex)}
        counts |= {"rows/train_read": len(train_ex)} if train_ex is not None else {}
        counts |= {f"rows/train/{task}": n for task, n in history.rows.items()}
        counts |= {f"positives/train/{task}": n for task, n in history.positives.items()}
        best = dict(getattr(history, "best_iteration", {}))
        counts |= {f"best_iteration/{task}": n for task, n in best.items()}
        counts |= dict(history.metrics()) if hasattr(history, "metrics") else {}
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        log_curves(run.info.run_id, history, folder)
        if hasattr(history, "importance"):
            importance = history.importance(ranker)
            mlflow.log_table(importance, "importance/gain.json")
            log_figure(plots.importance_figure(importance), "importance/gain.png", folder)
        model = reg.log_ranker(ranker, val_ex.X, scratch)
    return TrainedRun(run.info.run_id, model.model_uri, info.ds)


def log_curves(run_id: str, history: TrainingHistory, folder: Folder) -> None:
    """Learning curves as per-step metrics (`curve/<task>/<dataset>`) and a plot; nothing
    for a history without curves (an averaged ensemble fits nothing)."""
    if not history.curves:
        return
    now = int(time.time() * 1000)
    curves = [  # browsable per step; one batch, not one call per point
        Metric(f"curve/{task}/{name}", float(value), now, step + 1)
        for task, per_task in history.curves.items()
        for name, values in per_task.items()
        for step, value in enumerate(values)
    ]
    MlflowClient().log_batch(run_id, metrics=curves)
    # A history without a best step per task marks the last one.
    best = {t: len(next(iter(c.values()), [])) for t, c in history.curves.items()}
    best |= dict(getattr(history, "best_iteration", {}))
    metric = {t: "loss" for t in history.curves} | dict(getattr(history, "metric", {}))
    log_figure(plots.learning_curves_figure(history.curves, best, metric), CURVES, folder)


def logged_files(run_id: str, folders: Sequence[str] = ("", "importance")) -> set[str]:
    """The run's artifact names in `folders` (e.g. to link only the figures it has)."""
    client = MlflowClient()
    return {f.path for folder in folders for f in client.list_artifacts(run_id, folder or None)}


def dwell_baseline(run_id: str) -> float:
    """The constant dwell guess the run's evaluation compares the dwell model with."""
    return float(MlflowClient().get_run(run_id).data.params[DWELL_MEDIAN_PARAM])


def log_evaluations(
    run_id: str,
    evaluations: Mapping[str, Evaluation],
    report: str,
    folder: Folder,
    gate_sample: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Add each split's evaluation (metrics, tables, calibration plot) and the report to the
    run; write the report into `folder`. `gate_sample`: the gate metric per validation
    request, logged as reg.GATE_SAMPLE for the gate's bootstrap. Returns the metrics logged."""
    metrics: dict[str, float] = {}
    with mlflow.start_run(run_id=run_id):
        if gate_sample is not None:
            sample = folder.writable(reg.GATE_SAMPLE.rsplit("/", 1)[-1])
            gate_sample.to_parquet(sample)
            mlflow.log_artifact(str(sample), reg.GATE_SAMPLE.rsplit("/", 1)[0])
        for name, ev in evaluations.items():
            metrics |= ev.metrics(name)
            tables = {"tasks": ev.tasks, "ranking": ev.ranking, "dwell": ev.dwell, "mind": ev.mind}
            tables["summary"] = summary_table(ev)
            for label, table in tables.items():
                mlflow.log_table(table, f"evaluation/{name}_{label}.json")
            log_figure(plots.calibration_figure(ev.calibration), f"calibration/{name}.png", folder)
        mlflow.log_metrics(metrics)
        log_report(report, folder)
    return metrics


def latest_runs_by_kind(experiment: str, ds: str) -> dict[str, mlflow.entities.Run]:
    """The newest ranker run of each kind (models.ranking.base) trained up to ds, oldest kind
    first (the order a night trains them); a run from before kinds counts as gbdt."""
    found = MlflowClient().search_runs(
        [e.experiment_id for e in [mlflow.get_experiment_by_name(experiment)] if e is not None],
        filter_string=f"tags.`{DS_TAG}` = '{ds}' and tags.`{STAGE_TAG}` = '{RANKER_STAGE}'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    newest: dict[str, mlflow.entities.Run] = {}
    for run in found:
        newest.setdefault(run.data.tags.get(KIND_TAG, GBDT), run)
    return dict(sorted(newest.items(), key=lambda kv: kv[1].info.start_time))


def latest_run(experiment: str, ds: str, stage: str = RANKER_STAGE) -> mlflow.entities.Run | None:
    """The newest run of the experiment's `stage` trained up to ds, or None."""
    found = MlflowClient().search_runs(
        [e.experiment_id for e in [mlflow.get_experiment_by_name(experiment)] if e is not None],
        filter_string=f"tags.`{DS_TAG}` = '{ds}' and tags.`{STAGE_TAG}` = '{stage}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None
