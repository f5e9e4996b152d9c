"""Train, evaluate, register and gate the two-tower retrieval model; build the day's index.

    python jobs/train_retrieval.py --ds 2026-01-18 --profile demo     # every step, in order

The steps are the tasks of dags/train_retrieval.py; each returns a models.registry.handoff value:
1. train: positive engagements (click, like, comment, share) of the training days, each with
   the user's history before the impression; early stopping on validation recall@gate_k; an
   MLflow run with settings, window, counts, curves and the model (models.retrieval.tracking)
   -> TrainedRun;
2. evaluate: recall@k (and its cold-start slice) on the validation and test days against
   popularity, followees' newest and random, into the same run, a report under reports/
   -> EvaluatedRun;
3. register: a new version of `feedrank-retrieval`, alias `challenger` -> RegisteredVersion;
4. promote: alias `champion` if it beats the champion and popularity on validation recall
   (models.registry.versions.decide) -> Promotion;
5. build_index: the champion's post vectors for the pool servable at the end of ds in a
   FAISS index (recall against exact checked), the post-id map and the active users'
   vectors, published atomically as the day's version (models.retrieval.published).
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from mlflow.tracking import MlflowClient

from jobs.common import check_split, log_settings, run_job, use_tracking
from jobs.settings import Settings
from models.evaluation.evaluate import GATE_SPLIT
from models.ranking.dataset import time_split
from models.registry import runs as tracking
from models.registry import versions as reg
from models.registry.handoff import EvaluatedRun, Promotion, RegisteredVersion, TrainedRun, extend
from models.registry.tags import PROFILE_TAG, RETRIEVAL_STAGE, STAGE_TAG
from models.retrieval import tracking as rt
from models.retrieval.evaluate import TWO_TOWER
from models.retrieval.published import PublishedIndex, publish_index
from models.retrieval.published import load_published as _load_published
from models.retrieval.stage import (
    GATE_BASELINES,
    SPLITS,
    Data,
    evaluate_split,
    fit_towers,
    gate_metric,
    load_data,
    log_days,
    pairs_of,
    recall_frame,
)
from warehouse.artifacts import ArtifactStore
from warehouse.catalog import ENGAGEMENTS

log = logging.getLogger(__name__)

JOB = "train_retrieval"  # names the report folder


def missing_inputs(settings: Settings, ds: str) -> str | None:
    """What the night of ds still waits for (its day's engagements), None when it can train;
    NothingToDo outside the calendar or on a day too early for the split."""
    check_split(settings, ds)
    if not settings.open_warehouse().is_committed(ENGAGEMENTS, ds):
        return f"ds={ds} waits for the day's logs ({ENGAGEMENTS.qualified})"
    return None


def read_data(settings: Settings, ds: str) -> Data:
    """The retrieval data of the days up to ds, time-split as the training settings say."""
    store = settings.open_warehouse()
    days, t = log_days(store, ds), settings.training
    split = time_split(days, train_days=t.train_days, val_days=t.val_days, test_days=t.test_days)
    return load_data(store, days, split, settings.retrieval)


def train(settings: Settings, ds: str) -> TrainedRun:
    """Fit the towers on the training days, early stopping on validation recall; log the run."""
    log_settings(JOB, settings, ds)
    r = settings.retrieval
    data = read_data(settings, ds)
    result = fit_towers(data, r)
    use_tracking(settings)
    info = tracking.RunInfo(
        name=f"retrieval {settings.profile} {ds}",
        ds=ds,
        tags={PROFILE_TAG: settings.profile, STAGE_TAG: RETRIEVAL_STAGE},
        params=tracking.flatten(r.model_dump(mode="json"), "retrieval"),
        settings=settings.model_dump(mode="json"),
    )
    n_pairs = len(pairs_of(data, data.split.train))
    with settings.root.scratch("towers") as scratch:
        trained = rt.log_training_run(
            info, data.split, result, n_pairs, gate_metric(r.gate_k), scratch
        )
    log.info("MLflow run %s logged model %s", trained.run_id, trained.model_uri)
    return trained


def evaluate_run(settings: Settings, trained: TrainedRun) -> EvaluatedRun:
    """Recall table of the run's model and the baselines on validation and test, into the run."""
    r = settings.retrieval
    use_tracking(settings)
    data = read_data(settings, trained.ds)
    model = rt.load_towers(trained.model_uri)
    metrics: dict[str, float] = {}
    for split in SPLITS:
        metrics |= evaluate_split(data, r, model, split)
    table = recall_frame(metrics, r.ks)
    folder = settings.root.report_folder(JOB, trained.ds)
    rt.log_evaluation(trained.run_id, metrics, table, folder)
    report = folder.file(tracking.REPORT)
    log.info("retrieval recall (%s):\n%s", report, table.to_string(index=False))
    gate = metrics[gate_metric(r.gate_k)]
    gate_value = gate if math.isfinite(gate) else None  # None when undefined
    return extend(trained, EvaluatedRun, gate_metric=gate_value, report=str(report))


def register(settings: Settings, evaluated: EvaluatedRun) -> RegisteredVersion:
    """A new version of the registered model with the alias challenger."""
    use_tracking(settings)
    gate = evaluated.gate_metric
    tags = {
        "run_id": evaluated.run_id,
        "ds": evaluated.ds,
        gate_metric(settings.retrieval.gate_k): "undefined" if gate is None else f"{gate:.6f}",
    }
    version = reg.register(evaluated.model_uri, settings.retrieval.registered_model, tags)
    return extend(evaluated, RegisteredVersion, version=version)


def promote(settings: Settings, registered: RegisteredVersion) -> Promotion:
    """Champion if it beats popularity and the champion on validation recall@gate_k
    (models.registry.versions.decide); the version and its run say why either way."""
    r = settings.retrieval
    use_tracking(settings)
    client = MlflowClient()
    name, version = r.registered_model, registered.version
    run = client.get_run(registered.run_id)
    challenger = run.data.metrics.get(gate_metric(r.gate_k), math.nan)  # absent when undefined
    baselines = {
        b: run.data.metrics.get(gate_metric(r.gate_k, b), math.nan) for b in GATE_BASELINES
    }
    current = reg.champion_version(name)
    champion = None
    if current is not None and current != version and not math.isnan(challenger):
        data = read_data(settings, registered.ds)
        model = rt.load_towers(f"models:/{name}@{reg.CHAMPION}")
        scores = evaluate_split(data, r, model, GATE_SPLIT, [TWO_TOWER])
        champion = scores[gate_metric(r.gate_k)]
    decision = reg.decide(
        challenger,
        champion,
        baselines,
        r.promotion_margin,
        metric=f"validation recall@{r.gate_k}",
        days=run.data.params.get(reg.window_param(GATE_SPLIT), "the validation days"),
    )
    return reg.apply_decision(registered, name, decision)


def build_index(settings: Settings, ds: str) -> dict[str, Any]:
    """Index the champion's vectors of the pool servable at the end of ds; publish atomically."""
    r = settings.retrieval
    use_tracking(settings)
    version = reg.champion_version(r.registered_model)
    if version is None:
        raise RuntimeError(f"{r.registered_model} has no champion yet: nothing to index for {ds}")
    model = rt.load_towers(f"models:/{r.registered_model}@{reg.CHAMPION}")
    data = read_data(settings, ds)
    store, artifacts = settings.open_warehouse(), ArtifactStore(settings.root.artifacts)
    return publish_index(store, artifacts, data, model, version, ds, r)


def load_published(settings: Settings, ds: str | None = None) -> PublishedIndex:
    """The index of ds, or the latest one (None); a clear error when there is none."""
    return _load_published(ArtifactStore(settings.root.artifacts), ds)


def run(settings: Settings, ds: str) -> Promotion:
    """Every step, in order (what the DAG runs as separate tasks; the index when there is a
    champion)."""
    outcome = promote(settings, register(settings, evaluate_run(settings, train(settings, ds))))
    if outcome.champion is not None:
        build_index(settings, ds)
    return outcome


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
