"""Train, evaluate, register and gate every ranker kind on the days up to ds.

    python jobs/build_training_set.py --ds 2026-01-18 --profile demo  # examples up to ds first
    python jobs/train_rankers.py --ds 2026-01-18 --profile demo      # every step, in order

The steps are the tasks of dags/train_rankers.py; each returns a models.registry.handoff value:
1. build_training_set (its own job, jobs/build_training_set.py): gold.training_examples for
   each day with features that has none yet;
2. train, once per member kind of `training.kinds` (gbdt: LightGBM, dnn: the deep ranker):
   a time split of the days up to ds (train < validation < test), early stopping on
   validation; one MLflow run per kind (models.registry.runs), tagged `feedrank.kind`
   -> TrainedRun;
3. train_ensemble, if `ensemble` is a kind: the trained members combined (models.ranking.ensemble),
   its own run -> TrainedRun;
4. evaluate, per kind: validation and test days against the baselines and the oracle (truth
   layer; a real log has none, and the oracle is left out), with the same metric names for
   every kind; metrics, tables and plots into the kind's run, a report under
   reports/train_rankers/<ds>/<kind>/ -> EvaluatedRun;
5. register, per kind: a new version of the registered model, alias `challenger`, tag
   `feedrank.kind` -> RegisteredVersion;
6. promote, once for all kinds: the best on the validation gate metric (NDCG of the value
   score; on a real log MIND's group AUC of clicks: training.gate_metric) that beats the
   champion (re-scored on the same days) and the baselines by the margin, on enough requests
   and with a paired bootstrap interval of the gain above the margin, and passes the harm
   guard on hide and report (against the champion, and no lower-ranked version of the night
   that passes too is safer), becomes champion (models.registry.versions.promote), its GBDTs
   compiled for the feed precompute first (`compile_for_serving`); every version and run say
   why -> Gate.


"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence

from jobs.common import (
    TRAIN_RANKERS,
    check_split,
    log_settings,
    ranker_report_folder,
    run_job,
    use_tracking,
)
from jobs.settings import Settings
from models.evaluation.evaluate import evaluate_days, gate_metric, resolve_gate
from models.evaluation.report import format_report
from models.ranking.base import DNN, ENSEMBLE, GBDT, RankerLike
from models.ranking.dataset import Examples, Split, load_examples, time_split
from models.ranking.ensemble import fit_ensemble
from models.ranking.gbdt import fit_ranker
from models.registry import runs as tracking
from models.registry import versions as reg
from models.registry.gate import HarmGuard, SampleRule
from models.registry.handoff import EvaluatedRun, Gate, RegisteredVersion, TrainedRun, extend
from models.registry.tags import KIND_TAG, MEMBERS_TAG, PROFILE_TAG, RANKER_STAGE, STAGE_TAG
from warehouse.catalog import IMPRESSION_FEATURES, TRAINING_EXAMPLES, C
from warehouse.store import Warehouse

log = logging.getLogger(__name__)

JOB = TRAIN_RANKERS


def training_days(store: Warehouse, ds: str) -> list[str]:
    """Days up to ds that have training examples, oldest first."""
    return [d for d in store.partitions(TRAINING_EXAMPLES) if d <= ds]


def missing_inputs(settings: Settings, ds: str) -> str | None:
    """What the night of ds still waits for (its day's features), None when it can train;
    NothingToDo outside the calendar or on a day too early for the split."""
    check_split(settings, ds)
    if not settings.open_warehouse().is_committed(IMPRESSION_FEATURES, ds):
        return f"ds={ds} waits for the day's features ({IMPRESSION_FEATURES.qualified})"
    return None


def split_days(settings: Settings, ds: str) -> Split:
    t = settings.training
    days = training_days(settings.open_warehouse(), ds)
    return time_split(days, train_days=t.train_days, val_days=t.val_days, test_days=t.test_days)


def member_kinds(settings: Settings) -> list[str]:
    """The kinds the train step fits, one task each (the ensemble is made of them)."""
    return list(settings.training.member_kinds())


def gate_choice(settings: Settings) -> str:
    """The gate metric of these settings (models.evaluation.evaluate.GATE_METRICS), "auto"
    resolved."""
    return resolve_gate(settings.training.gate_metric, settings.has_truth)


def train(settings: Settings, ds: str, kind: str = GBDT) -> TrainedRun:
    """Fit one member kind on the split of the days up to ds and log it in an MLflow run."""
    if kind not in settings.training.member_kinds():
        raise ValueError(f"kind {kind!r} is not a member kind of training.kinds")
    log_settings(f"{JOB}.train[{kind}]", settings, ds)
    t, store = settings.training, settings.open_warehouse()
    split = split_days(settings, ds)
    log.info("time split up to %s: %s", ds, json.dumps(split.as_dict()))
    days = (*split.train, *split.val, *split.test)
    store.refuse_stale(TRAINING_EXAMPLES, days, use=f"train a ranker up to {ds}")
    started = time.perf_counter()
    val_ex, _ = load_examples(store, split.val)
    if kind == DNN:  # streams its training days itself
        ranker, history = _fit_dnn(settings, store, split, ds)
        train_ex = None
    else:
        train_ex, _ = load_examples(store, split.train, negative_rate=t.negative_rate)
        ranker, history = fit_ranker(train_ex, val_ex, t, tasks=settings.recorded_tasks)
    log.info("trained %s on every task in %.0fs", kind, time.perf_counter() - started)
    median = None if train_ex is not None else dwell_median(store, split.train)
    return log_run(settings, ds, split, ranker, history, train_ex, val_ex, dwell=median)


def _fit_dnn(settings: Settings, store: Warehouse, split: Split, ds: str):
    try:
        from models.ranking.dnn.train import fit_dnn
    except ModuleNotFoundError as err:
        raise RuntimeError(
            f"training.kinds lists {DNN!r} but its module cannot be imported ({err}); "
            "install it or set training.kinds (FEEDRANK__TRAINING__KINDS) without dnn"
        ) from err
    # Checkpoints of this day's run: a retried or killed task resumes from them.
    checkpoints = settings.root.checkpoint_folder(JOB, ds, DNN)
    t = settings.training
    if t.dnn.processes == 1:
        return fit_dnn(store, split.train, split.val, t, checkpoints, settings.recorded_tasks)
    from jobs.spark import get_spark
    from models.ranking.dnn.distributed import fit_dnn_distributed

    spark = get_spark(settings.spark)  # TorchDistributor runs in the active session
    return fit_dnn_distributed(
        store,
        split.train,
        split.val,
        t,
        checkpoints,
        settings.recorded_tasks,
        processes=t.dnn.processes,
        local_mode=spark.sparkContext.master.startswith("local"),
    )


def dwell_median(store: Warehouse, days: Sequence[str]) -> float:
    """The median dwell of a click on `days`: evaluation's constant dwell guess."""
    dwell = store.read_pandas(TRAINING_EXAMPLES, list(days), columns=[C.DWELL_S])[C.DWELL_S]
    dwell = dwell.dropna()
    return float(dwell.median()) if len(dwell) else 0.0


def train_ensemble(settings: Settings, ds: str, members: Sequence[TrainedRun]) -> TrainedRun:
    """Combine the trained members (models.ranking.ensemble) and log the ensemble in its own run."""
    log_settings(f"{JOB}.train_ensemble", settings, ds)
    use_tracking(settings)
    store = settings.open_warehouse()
    split = Split(**{k: tuple(v) for k, v in reg.load_split(members[0].run_id).items()})
    if any(reg.load_split(m.run_id) != split.as_dict() for m in members[1:]):
        raise ValueError("an ensemble's members must share their time split")
    rankers = [reg.load_ranker(m.model_uri) for m in members]
    val_ex, _ = load_examples(store, split.val)
    ranker, history = fit_ensemble(rankers, val_ex, settings.training)
    median = tracking.dwell_baseline(members[0].run_id)
    runs = {MEMBERS_TAG: ",".join(m.run_id for m in members)}
    return log_run(settings, ds, split, ranker, history, None, val_ex, runs, dwell=median)


def train_all(settings: Settings, ds: str) -> list[TrainedRun]:
    """Every kind of `training.kinds`: the members, then the ensemble of them."""
    trained = [train(settings, ds, kind) for kind in member_kinds(settings)]
    return with_ensemble(settings, ds, trained)


def with_ensemble(settings: Settings, ds: str, members: Sequence[TrainedRun]) -> list[TrainedRun]:
    """The members' runs, and the ensemble's after them when `ensemble` is a kind."""
    members = list(members)
    if ENSEMBLE not in settings.training.kinds:
        return members
    return [*members, train_ensemble(settings, ds, members)]


def log_run(
    settings: Settings,
    ds: str,
    split: Split,
    ranker: RankerLike,
    history: tracking.TrainingHistory,
    train_ex: Examples | None,
    val_ex: Examples,
    tags: Mapping[str, str] | None = None,
    *,
    dwell: float | None = None,
) -> TrainedRun:
    """The MLflow run of a trained ranker, described by the settings it was trained with.

    `train_ex` None (an ensemble; a DNN, which streams its days): `dwell` is the training
    days' median dwell of a click."""
    use_tracking(settings)
    info = tracking.RunInfo(
        name=f"rankers {ranker.kind} {settings.profile} {ds}",
        ds=ds,
        tags={
            PROFILE_TAG: settings.profile,
            STAGE_TAG: RANKER_STAGE,
            **dict(tags or {}),
        },
        params={
            **tracking.flatten(settings.training.model_dump(mode="json"), "training"),
            "profile": settings.profile,
            "simulator.seed": settings.simulator.seed,
        },
        settings=settings.model_dump(mode="json"),
    )
    folder = ranker_report_folder(settings, ds, ranker.kind)
    with settings.root.scratch("ranker") as scratch:
        trained = tracking.log_training_run(
            info, split, ranker, history, train_ex, val_ex, folder, scratch, dwell_median=dwell
        )
    log.info("MLflow run %s logged %s model %s", trained.run_id, ranker.kind, trained.model_uri)
    return trained


def evaluate_run(settings: Settings, trained: TrainedRun) -> EvaluatedRun:
    """Evaluate the run's model on its validation and test days; log into the same run."""
    t, store = settings.training, settings.open_warehouse()
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
            n_boot=t.bootstrap,
            level=t.bootstrap_level,
            seed=t.seed,
        )
        for name in ("val", "test")
    }
    title = f"Rankers ({ranker.kind}), profile {settings.profile}, up to {trained.ds}"
    figures = tracking.logged_files(trained.run_id)
    text = format_report(title, trained.run_id, split, t.negative_rate, evaluations, figures)
    folder = ranker_report_folder(settings, trained.ds, ranker.kind)
    which = gate_choice(settings)
    sample = evaluations["val"].gate_sample(which, t.ranking_k)
    metrics = tracking.log_evaluations(trained.run_id, evaluations, text, folder, sample)
    report = folder.file(tracking.REPORT)
    log.info("evaluation report: %s\n%s", report, text)
    gate = metrics.get(gate_metric(t.ranking_k, which=which))  # absent (None) when undefined
    return extend(trained, EvaluatedRun, gate_metric=gate, report=str(report))


def register(settings: Settings, evaluated: EvaluatedRun) -> RegisteredVersion:
    """A new version of the registered model with the alias challenger and its kind's tag.
    Its GBDTs are compiled only if the gate makes it champion (`promote`)."""
    use_tracking(settings)
    kind = reg.run_kind(evaluated.run_id)
    tags = {
        "run_id": evaluated.run_id,
        "ds": evaluated.ds,
        KIND_TAG: kind,
        gate_metric(settings.training.ranking_k, which=gate_choice(settings)): (
            "undefined" if evaluated.gate_metric is None else f"{evaluated.gate_metric:.6f}"
        ),
    }
    name = settings.mlflow.registered_model
    version = reg.register(evaluated.model_uri, name, tags)
    return extend(evaluated, RegisteredVersion, version=version)


def compile_for_serving(settings: Settings, registered: RegisteredVersion) -> None:
    """The version's GBDTs (a GBDT's, or an ensemble's members') compiled and stored in its
    run (models.registry.versions.save_compiled) for the feed precompute's workers, which
    only load them. Called by the gate before the version becomes champion: a challenger
    that never serves is never compiled (demo's 952 trees take 90-120 s on 2 cores); a
    version that holds the artifact already (a retried gate) is not compiled again."""
    name = settings.mlflow.registered_model
    kind = reg.run_kind(registered.run_id)
    if kind not in (GBDT, ENSEMBLE) or reg.has_compiled(name, registered.version):
        return
    with settings.root.scratch(f"compile-v{registered.version}") as scratch:
        reg.save_compiled(name, registered.version, scratch, settings.root.compiled_cache)


def promote(settings: Settings, registered: Sequence[RegisteredVersion]) -> Gate:
    """Make the best of the night's versions champion if it wins on the validation days and
    passes the harm guard (models.registry.versions.promote); say why for each version either
    way."""
    t = settings.training
    use_tracking(settings)
    store = settings.open_warehouse()
    name = settings.mlflow.registered_model
    guard = HarmGuard(t.harm_tasks, t.harm_margin)
    return reg.promote(
        list(registered),
        name,
        store,
        t.value,
        k=t.ranking_k,
        margin=t.promotion_margin,
        guard=guard,
        which=gate_choice(settings),
        rule=SampleRule(
            t.gate_min_requests, t.gate_min_positives, t.bootstrap, t.bootstrap_level, t.seed
        ),
        before_champion=lambda winner: compile_for_serving(settings, winner),
    )


def run(settings: Settings, ds: str) -> Gate:
    """Every step after the training set, in order (what the DAG runs as separate tasks);
    jobs/build_training_set.py builds the examples first (the DAG's first task)."""
    evaluated = [evaluate_run(settings, trained) for trained in train_all(settings, ds)]
    return promote(settings, [register(settings, e) for e in evaluated])


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
