"""Train, evaluate, register and gate the LightGBM rankers on the days up to ds.

    python jobs/train_rankers.py --ds 2026-01-18 --profile demo      # every step, in order

The steps are the tasks of dags/train_rankers.py:
1. build_training_set: gold.training_examples for each day with features that has none yet;
2. train: a time split of the days up to ds (train < validation < test), each task on its
   positives and sampled negatives, early stopping on validation; one MLflow run with the
   settings, the data window, row counts, the sampling rate, learning curves, importance
   (table and plot) and the model (pyfunc, signature, input example);
3. evaluate: validation and test days against the baselines and the oracle (truth layer);
   metrics, tables and calibration plots into the same run, a report under reports/;
4. register: a new version of the registered model, alias `challenger`;
5. promote: alias `champion` if it beats the champion (and the baselines) on validation by
   the margin (models.registry.decide); the run and the version say why either way.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from features import registry as R
from jobs import build_training_set as build_job
from jobs.common import log_settings, run_job
from jobs.settings import Settings
from models import plots
from models import registry as reg
from models.dataset import (
    EXAMPLE_COLUMNS,
    LABELS,
    Split,
    any_label_or_sampled,
    feature_frame,
    time_split,
)
from models.evaluate import BASELINES, MODEL, VALUE, evaluate, summary_table, value_ranking
from models.gbdt import SCORE, Examples, History, IncompatibleRanker, Ranker, fit_ranker
from warehouse.catalog import (
    IMPRESSION_FEATURES,
    TRAINING_EXAMPLES,
    TRUTH_IMPRESSIONS,
    C,
)
from warehouse.store import Warehouse

log = logging.getLogger(__name__)

GATE_SPLIT = "val"  # the promotion gate compares models on the validation days
# Columns an evaluation reads besides the features and labels: grouping and the baselines.
_EVAL_COLUMNS = (
    C.IMPRESSION_ID,
    C.REQUEST_ID,
    C.POSITION,
    R.POST_AGE_H,
    R.POST_SMOOTHED_RATE,
)


def gate_metric(k: int, scorer: str = MODEL) -> str:
    """The MLflow metric the promotion gate reads: validation NDCG@k of the value score."""
    return f"{GATE_SPLIT}/{scorer}/{VALUE}/ndcg_at_{k}"


# --- data ------------------------------------------------------------------------------------


def training_days(settings: Settings, ds: str) -> list[str]:
    """Days up to ds that have training examples, oldest first."""
    store = Warehouse(settings.root.warehouse)
    return [d for d in store.partitions(TRAINING_EXAMPLES) if d <= ds]


def split_days(settings: Settings, ds: str) -> Split:
    t = settings.training
    return time_split(
        training_days(settings, ds),
        train_days=t.train_days,
        val_days=t.val_days,
        test_days=t.test_days,
    )


def load_examples(
    settings: Settings, days: Sequence[str], *, negative_rate: float | None = None
) -> tuple[Examples, pd.DataFrame]:
    """Model inputs of the days, and the columns evaluation reads (same rows, same order).

    With `negative_rate`, only rows some task trains on are read into memory: a positive of
    any action, or a draw under the rate (fit_ranker then samples each task from those).
    """
    store = Warehouse(settings.root.warehouse)
    parts = []
    for ds in days:  # day by day, so memory holds one full day at most, then the sample
        day = store.read_arrow(TRAINING_EXAMPLES, ds, columns=list(EXAMPLE_COLUMNS))
        # Spark writes rows in whatever order its tasks finish; LightGBM's bagging and sums
        # depend on the order, so a fixed one makes the same data give the same model.
        day = day.sort_by(C.IMPRESSION_ID)
        if negative_rate is not None:
            day = day.filter(any_label_or_sampled(day, negative_rate))
        parts.append(day)
    table = pa.concat_tables(parts) if parts else None
    if table is None or table.num_rows == 0:
        raise ValueError(f"{TRAINING_EXAMPLES.qualified}: no rows in {list(days)}")
    labels = table.select(list(LABELS)).to_pandas()
    examples = Examples(feature_frame(table), labels, table.column(C.SAMPLE_U).to_numpy())
    info = pd.concat([table.select(list(_EVAL_COLUMNS)).to_pandas(), labels], axis=1)
    return examples, info


def with_truth(settings: Settings, info: pd.DataFrame, days: Sequence[str]) -> pd.DataFrame:
    """Join the simulator's true probabilities (evaluation only) to the evaluation rows."""
    store = Warehouse(settings.root.warehouse)
    truth = store.read_pandas(TRUTH_IMPRESSIONS, list(days)).drop(columns=[C.DS])
    frame = info.merge(truth, on=C.IMPRESSION_ID, how="left", validate="one_to_one")
    if frame[C.E_DWELL_S].isna().any():
        n = int(frame[C.E_DWELL_S].isna().sum())
        raise ValueError(f"{TRUTH_IMPRESSIONS.qualified}: {n} evaluated impressions lack truth")
    return frame


# --- steps -----------------------------------------------------------------------------------


def build_training_set(settings: Settings, ds: str) -> list[str]:
    """Build the missing days of training examples up to ds; the days now available."""
    store = Warehouse(settings.root.warehouse)
    days = [d for d in store.partitions(IMPRESSION_FEATURES) if d <= ds]
    built = build_job.run_days(settings, days)
    log.info("training examples: built %s, %d days up to %s", built or "nothing", len(days), ds)
    return training_days(settings, ds)


def train(settings: Settings, ds: str) -> dict[str, Any]:
    """Fit the ranker on the split of the days up to ds and log it; the run and model ids."""
    log_settings("train_rankers", settings, ds)
    t = settings.training
    split = split_days(settings, ds)
    log.info("time split up to %s: %s", ds, json.dumps(split.as_dict()))
    started = time.perf_counter()
    train_ex, _ = load_examples(settings, split.train, negative_rate=t.negative_rate)
    val_ex, _ = load_examples(settings, split.val)
    ranker, history = fit_ranker(train_ex, val_ex, t)
    log.info("trained every task in %.0fs", time.perf_counter() - started)
    return log_training_run(settings, ds, split, ranker, history, train_ex, val_ex)


def log_training_run(
    settings: Settings,
    ds: str,
    split: Split,
    ranker: Ranker,
    history: History,
    train_ex: Examples,
    val_ex: Examples,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One MLflow run for a trained ranker: settings, data window, counts, plots, the model."""
    use_tracking(settings)
    dwell = train_ex.labels[C.DWELL_S].dropna()
    with mlflow.start_run(run_name=f"rankers {settings.profile} {ds}") as run:
        mlflow.set_tags(
            {"feedrank.profile": settings.profile, "feedrank.ds": ds, **dict(tags or {})}
        )
        mlflow.log_params(_flatten(settings.training.model_dump(mode="json"), "training"))
        mlflow.log_params(
            {
                "profile": settings.profile,
                "simulator.seed": settings.simulator.seed,
                "window.train": f"{split.train[0]}..{split.train[-1]}",
                "window.val": f"{split.val[0]}..{split.val[-1]}",
                "window.test": f"{split.test[0]}..{split.test[-1]}",
                "dwell_median_train_s": float(dwell.median()) if len(dwell) else 0.0,
            }
        )
        mlflow.log_dict(settings.model_dump(mode="json"), "settings.json")
        mlflow.log_dict(split.as_dict(), "split.json")
        counts = {"rows/train_read": len(train_ex), "rows/val": len(val_ex)}
        counts |= {f"rows/train/{task}": n for task, n in history.rows.items()}
        counts |= {f"positives/train/{task}": n for task, n in history.positives.items()}
        counts |= {f"best_iteration/{task}": n for task, n in history.best_iteration.items()}
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        now = int(time.time() * 1000)
        curves = [  # learning curves, browsable per step; one batch, not one call per point
            Metric(f"curve/{task}/{name}", float(value), now, step + 1)
            for task, per_task in history.curves.items()
            for name, values in per_task.items()
            for step, value in enumerate(values)
        ]
        MlflowClient().log_batch(run.info.run_id, metrics=curves)
        importance = history.importance(ranker)
        mlflow.log_table(importance, "importance/gain.json")
        _figure(settings, ds, plots.importance_figure(importance), "importance/gain.png")
        _figure(
            settings,
            ds,
            plots.learning_curves_figure(history.curves, history.best_iteration, history.metric),
            "learning_curves.png",
        )
        info = reg.log_ranker(ranker, val_ex.X)
    log.info("MLflow run %s logged model %s", run.info.run_id, info.model_uri)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "ds": ds}


def evaluate_run(settings: Settings, trained: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate the run's model on its validation and test days; log into the same run."""
    t = settings.training
    use_tracking(settings)
    run = MlflowClient().get_run(trained["run_id"])
    split = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/split.json")
    ranker = reg.load_ranker(trained["model_uri"])
    dwell_baseline = float(run.data.params["dwell_median_train_s"])
    metrics: dict[str, float] = {}
    reports: dict[str, pd.DataFrame] = {}
    with mlflow.start_run(run_id=trained["run_id"]):
        for name in ("val", "test"):
            examples, info = load_examples(settings, split[name])
            frame = with_truth(settings, info, split[name])
            ev = evaluate(
                frame,
                ranker.predict(examples.X),
                ranker.predict(examples.X, corrected=False),
                t.value,
                k=t.ranking_k,
                dwell_baseline=dwell_baseline,
            )
            metrics |= ev.metrics(name)
            reports[name] = summary_table(ev)
            for label, table in (
                ("tasks", ev.tasks),
                ("ranking", ev.ranking),
                ("dwell", ev.dwell),
                ("summary", reports[name]),
            ):
                mlflow.log_table(table, f"evaluation/{name}_{label}.json")
            figure = plots.calibration_figure(ev.calibration)
            _figure(settings, trained["ds"], figure, f"calibration/{name}.png")
            reports[f"{name}_ranking"] = ev.ranking
            reports[f"{name}_dwell"] = ev.dwell
        mlflow.log_metrics(metrics)
        text = format_report(settings, trained, split, reports)
        mlflow.log_text(text, "report.md")
    path = report_path(settings, trained["ds"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log.info("evaluation report: %s\n%s", path, text)
    return {
        "run_id": trained["run_id"],
        "model_uri": trained["model_uri"],
        "ds": trained["ds"],
        "gate_metric": metrics.get(gate_metric(t.ranking_k), float("nan")),
        "report": str(path),
    }


def register(settings: Settings, evaluated: Mapping[str, Any]) -> dict[str, Any]:
    """A new version of the registered model with the alias challenger."""
    use_tracking(settings)
    tags = {
        "run_id": evaluated["run_id"],
        "ds": evaluated["ds"],
        gate_metric(settings.training.ranking_k): f"{evaluated['gate_metric']:.6f}",
    }
    version = reg.register(evaluated["model_uri"], settings.mlflow.registered_model, tags)
    return {**evaluated, "version": version}


def promote(settings: Settings, registered: Mapping[str, Any]) -> dict[str, Any]:
    """Make the challenger champion if it wins on the validation days; say why either way."""
    t = settings.training
    use_tracking(settings)
    client = MlflowClient()
    name, version = settings.mlflow.registered_model, registered["version"]
    run = client.get_run(registered["run_id"])
    nan = float("nan")
    challenger = run.data.metrics.get(gate_metric(t.ranking_k), nan)  # absent when undefined
    baselines = {b: run.data.metrics.get(gate_metric(t.ranking_k, b), nan) for b in BASELINES}
    best_name = max(baselines, key=lambda b: -np.inf if np.isnan(baselines[b]) else baselines[b])
    current = reg.champion_version(name)
    champion, unusable = None, None
    if current is not None and current != version:
        champion, unusable = champion_on_validation(settings, run, name)
    if np.isnan(challenger):
        days = run.data.params.get("window.val")
        decision = reg.Decision(
            False,
            f"validation NDCG@{t.ranking_k} is undefined on {days}: no request there "
            "has a positive realised value",
        )
    else:
        no_champion = "no champion yet"
        if unusable is not None:
            no_champion = f"champion version {current} cannot score these features ({unusable})"
        decision = reg.decide(
            challenger, champion, baselines[best_name], t.promotion_margin, no_champion
        )
    reason = f"{decision.reason} (baseline: {best_name}; validation NDCG@{t.ranking_k})"
    if decision.promote:
        reg.set_champion(name, version)
    outcome = "promoted" if decision.promote else "not promoted"
    for key, value in {"feedrank.promotion": outcome, "feedrank.promotion_reason": reason}.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(registered["run_id"], key, value)
    champion_now = reg.champion_version(name)
    log.info(
        "%s version %s %s: %s; champion is version %s", name, version, outcome, reason, champion_now
    )
    return {**registered, "promoted": decision.promote, "reason": reason, "champion": champion_now}


def champion_on_validation(settings: Settings, run, name: str) -> tuple[float | None, str | None]:
    """The current champion's gate metric on this run's validation days, or (None, why) when
    it was trained on other feature columns: then it cannot stay. Any other failure (the
    registry or its artifacts unreachable) raises, so the task fails and is retried rather
    than promote a challenger unchecked."""
    t = settings.training
    split = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/split.json")
    examples, info = load_examples(settings, split[GATE_SPLIT])
    champion = reg.load_ranker(f"models:/{name}@{reg.CHAMPION}")
    try:
        score = champion.predict(examples.X)[SCORE].to_numpy()
    except IncompatibleRanker as err:  # an outdated champion must not block a new challenger
        log.warning("the champion cannot score the validation days: %s", err)
        return None, str(err)
    ranking = value_ranking(info, {reg.CHAMPION: score}, t.value, t.ranking_k)
    return float(ranking[f"ndcg_at_{t.ranking_k}"].iloc[0]), None


def run(settings: Settings, ds: str) -> dict[str, Any]:
    """Every step, in order (what the DAG runs as separate tasks)."""
    build_training_set(settings, ds)
    return promote(settings, register(settings, evaluate_run(settings, train(settings, ds))))


# --- helpers ---------------------------------------------------------------------------------


def report_path(settings: Settings, ds: str) -> Path:
    """Where the report of the training run up to ds is written, its figures beside it."""
    return settings.root.reports / "train_rankers" / ds / "report.md"


def _figure(settings: Settings, ds: str, fig, artifact_file: str) -> None:
    """Log a figure to the active run, and save it beside the report as <dir>_<name>.png."""
    mlflow.log_figure(fig, artifact_file)
    plots.save_figure(fig, report_path(settings, ds).with_name(artifact_file.replace("/", "_")))


def use_tracking(settings: Settings) -> None:
    """MLflow on the data root's tracking store, in the pipeline's experiment."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    local = settings.mlflow.tracking_uri is None  # SQLite: artifacts in the data root too
    artifacts = settings.root.mlflow_artifacts if local else None  # else the server decides
    reg.use_tracking(settings.tracking_uri, settings.mlflow.experiment, artifacts)


def _flatten(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out |= _flatten(value, name)
        else:
            out[name] = value
    return out


def format_report(
    settings: Settings,
    trained: Mapping[str, Any],
    split: Mapping[str, list[str]],
    reports: Mapping[str, pd.DataFrame],
) -> str:
    """Markdown: per task on test, model against oracle and baselines; ranking and dwell."""
    lines = [
        f"# Rankers, profile {settings.profile}, up to {trained['ds']}",
        "",
        f"MLflow run `{trained['run_id']}`. Days: train {split['train'][0]}..{split['train'][-1]}"
        f" ({len(split['train'])}), validation {', '.join(split['val'])}, "
        f"test {', '.join(split['test'])}. Negatives kept at {settings.training.negative_rate}.",
    ]
    lines += [
        "",
        "![calibration, test](calibration_test.png) ![importance](importance_gain.png)",
        "![learning curves](learning_curves.png)",
    ]
    for name in ("test", "val"):
        lines += ["", f"## {name}: per task", "", _markdown(reports[name])]
        lines += ["", f"## {name}: value ranking per request", ""]
        lines += [_markdown(reports[f"{name}_ranking"])]
        lines += ["", f"## {name}: dwell on clicks (s)", "", _markdown(reports[f"{name}_dwell"])]
    return "\n".join(lines) + "\n"


def _markdown(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
