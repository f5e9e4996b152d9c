"""Train, evaluate, register and gate the LightGBM rankers on the days up to ds.

    python jobs/train_rankers.py --ds 2026-01-18 --profile demo      # every step, in order

The steps are the tasks of dags/train_rankers.py; each returns a models.handoff value:
1. build_training_set: gold.training_examples for each day with features that has none yet;
2. train: a time split of the days up to ds (train < validation < test), each task on its
   positives and sampled negatives, early stopping on validation; one MLflow run
   (models.tracking) -> TrainedRun;
3. evaluate: validation and test days against the baselines and the oracle (truth layer;
   a real log has none, and the oracle is left out);
   metrics, tables and plots into the same run, a report under reports/ -> EvaluatedRun;
4. register: a new version of the registered model, alias `challenger` -> RegisteredVersion;
5. promote: alias `champion` if it beats the champion (and the baselines) on validation by
   the margin (models.registry.promote); the run and the version say why -> Promotion.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping

from jobs import build_training_set as build_job
from jobs.common import log_settings, run_job, use_tracking
from jobs.settings import Settings
from models import registry as reg
from models import tracking
from models.dataset import Examples, Split, load_examples, time_split
from models.evaluate import evaluate_days, gate_metric
from models.gbdt import History, Ranker, fit_ranker
from models.handoff import EvaluatedRun, Promotion, RegisteredVersion, TrainedRun, extend
from models.report import format_report
from warehouse.catalog import IMPRESSION_FEATURES, TRAINING_EXAMPLES
from warehouse.store import Warehouse

log = logging.getLogger(__name__)

JOB = "train_rankers"  # names the report folder


def training_days(store: Warehouse, ds: str) -> list[str]:
    """Days up to ds that have training examples, oldest first."""
    return [d for d in store.partitions(TRAINING_EXAMPLES) if d <= ds]


def split_days(settings: Settings, ds: str) -> Split:
    t = settings.training
    days = training_days(Warehouse(settings.root.warehouse), ds)
    return time_split(days, train_days=t.train_days, val_days=t.val_days, test_days=t.test_days)


def build_training_set(settings: Settings, ds: str) -> list[str]:
    """Build the missing days of training examples up to ds; the days now available."""
    store = Warehouse(settings.root.warehouse)
    days = [d for d in store.partitions(IMPRESSION_FEATURES) if d <= ds]
    built = build_job.run_days(settings, days)
    log.info("training examples: built %s, %d days up to %s", built or "nothing", len(days), ds)
    return training_days(store, ds)


def train(settings: Settings, ds: str) -> TrainedRun:
    """Fit the ranker on the split of the days up to ds and log it in an MLflow run."""
    log_settings(JOB, settings, ds)
    t, store = settings.training, Warehouse(settings.root.warehouse)
    split = split_days(settings, ds)
    log.info("time split up to %s: %s", ds, json.dumps(split.as_dict()))
    started = time.perf_counter()
    train_ex, _ = load_examples(store, split.train, negative_rate=t.negative_rate)
    val_ex, _ = load_examples(store, split.val)
    ranker, history = fit_ranker(train_ex, val_ex, t, tasks=settings.recorded_tasks)
    log.info("trained every task in %.0fs", time.perf_counter() - started)
    return log_run(settings, ds, split, ranker, history, train_ex, val_ex)


def log_run(
    settings: Settings,
    ds: str,
    split: Split,
    ranker: Ranker,
    history: History,
    train_ex: Examples,
    val_ex: Examples,
    tags: Mapping[str, str] | None = None,
) -> TrainedRun:
    """The MLflow run of a trained ranker, described by the settings it was trained with."""
    use_tracking(settings)
    info = tracking.RunInfo(
        name=f"rankers {settings.profile} {ds}",
        ds=ds,
        tags={
            "feedrank.profile": settings.profile,
            tracking.STAGE_TAG: tracking.RANKER_STAGE,
            **dict(tags or {}),
        },
        params={
            **tracking.flatten(settings.training.model_dump(mode="json"), "training"),
            "profile": settings.profile,
            "simulator.seed": settings.simulator.seed,
        },
        settings=settings.model_dump(mode="json"),
    )
    folder = settings.root.report_folder(JOB, ds)
    with settings.root.scratch("ranker") as scratch:
        trained = tracking.log_training_run(
            info, split, ranker, history, train_ex, val_ex, folder, scratch
        )
    log.info("MLflow run %s logged model %s", trained.run_id, trained.model_uri)
    return trained


def evaluate_run(settings: Settings, trained: TrainedRun) -> EvaluatedRun:
    """Evaluate the run's model on its validation and test days; log into the same run."""
    t, store = settings.training, Warehouse(settings.root.warehouse)
    use_tracking(settings)
    split = reg.load_split(trained.run_id)
    ranker = reg.load_ranker(trained.model_uri)
    dwell = tracking.dwell_baseline(trained.run_id)
    evaluations = {
        name: evaluate_days(
            store,
            ranker,
            split[name],
            t.value,
            k=t.ranking_k,
            dwell_baseline=dwell,
            oracle=settings.has_truth,  # a real log has no truth: baselines only
        )
        for name in ("val", "test")
    }
    title = f"Rankers, profile {settings.profile}, up to {trained.ds}"
    text = format_report(title, trained.run_id, split, t.negative_rate, evaluations)
    folder = settings.root.report_folder(JOB, trained.ds)
    metrics = tracking.log_evaluations(trained.run_id, evaluations, text, folder)
    report = folder.file(tracking.REPORT)
    log.info("evaluation report: %s\n%s", report, text)
    gate = metrics.get(gate_metric(t.ranking_k))  # absent (None) when undefined
    return extend(trained, EvaluatedRun, gate_metric=gate, report=str(report))


def register(settings: Settings, evaluated: EvaluatedRun) -> RegisteredVersion:
    """A new version of the registered model with the alias challenger."""
    use_tracking(settings)
    tags = {
        "run_id": evaluated.run_id,
        "ds": evaluated.ds,
        gate_metric(settings.training.ranking_k): (
            "undefined" if evaluated.gate_metric is None else f"{evaluated.gate_metric:.6f}"
        ),
    }
    version = reg.register(evaluated.model_uri, settings.mlflow.registered_model, tags)
    return extend(evaluated, RegisteredVersion, version=version)


def promote(settings: Settings, registered: RegisteredVersion) -> Promotion:
    """Make the challenger champion if it wins on the validation days; say why either way."""
    t = settings.training
    use_tracking(settings)
    store = Warehouse(settings.root.warehouse)
    name = settings.mlflow.registered_model
    return reg.promote(registered, name, store, t.value, k=t.ranking_k, margin=t.promotion_margin)


def run(settings: Settings, ds: str) -> Promotion:
    """Every step, in order (what the DAG runs as separate tasks)."""
    build_training_set(settings, ds)
    return promote(settings, register(settings, evaluate_run(settings, train(settings, ds))))


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
