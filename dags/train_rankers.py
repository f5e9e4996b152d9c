"""
### train_rankers

Nightly retraining of every ranker kind on the latest days, as a time split: **train** on
the earliest days, stop early on the **validation** days, report on the **test** days; the
best kind becomes champion.

Scheduled on the data days it is needed on (`jobs.common.nightly_days`: the last day before
the closed loop, whose champion serves the loop, and the loop's last day), each run's
logical date that data day; unpaused, it runs them in order (`airflow.catchup`).

0. **inputs**: waits for the day's features; a run on a day outside the calendar, or too
   early for the split, is skipped, saying why (no model, no `feedrank-ranker` event).
1. **build_training_set**: `gold.training_examples` for every day with features that lacks
   it (labels within the attribution window, dwell, the seeded sampling draw), gated by its
   Great Expectations contract.
2. **kinds**: the member kinds of `training.kinds` (gbdt, dnn), one **train** task each,
   in parallel (dynamic task mapping): gbdt is one LightGBM model per action (click, like,
   comment, share, hide, report) and a Huber dwell regressor, dnn the multi-task network;
   an MLflow run per kind in the `feedrank` experiment, tagged `feedrank.kind`, with
   settings, window, counts, learning curves and the model.
3. **ensemble**: with `ensemble` in `training.kinds`, the trained members combined per
   action (averaged logits by default, `training.ensemble`), in its own run; passes every
   kind's run on.
4. **evaluate** (per kind): validation and test metrics under the same names for every kind,
   against reverse-chronological, popularity (smoothed engagement rate) and logged-order
   baselines and the oracle (the simulator's true probabilities).
5. **register** (once, the kinds in order): per kind a new version of `feedrank-ranker`,
   alias `challenger`, tag `feedrank.kind`. One task, so the version numbers and the last
   challenger are those of `feedrank demo`.
6. **promote** (once): the kinds' versions and the champion compared on the same
   validation days; alias `champion` moves to the best validation NDCG of the value score
   only if it beats the champion (re-scored on those days) and every baseline by the
   configured margin, and its hide and report AUC and NCE are not worse than the
   champion's beyond `training.harm_margin`; every version's tags say why. Before the alias
   moves, the winner's GBDTs are compiled once (lleaves) into its run as the
   `compiled_ranker` artifact, which the feed precompute's workers load; a version that
   never becomes champion is never compiled.

Params: `profile`, `seed`, `train_days` (the training window, empty for every day before
validation) and `negative_rate` (share of negatives kept). The run's logical date is the last
day it may use.
"""

from __future__ import annotations

from dataclasses import asdict

from airflow.sdk import dag, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RANKER,
    calendar,
    inputs_ready,
    lazy_job,
    mark_gate,
    settings_from,
    training_params,
    wait_for_inputs,
)
from jobs.common import nightly_days

job = lazy_job("train_rankers")  # imported when a task runs, not when the file is parsed
build_job = lazy_job("build_training_set")


@dag(
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=training_params(),
    tags=["feedrank", "gold", "models", "mlflow"],
    doc_md=__doc__,
    **calendar(nightly_days),
)
def train_rankers():
    @task.sensor(**wait_for_inputs())
    def inputs(params=None, ds=None):
        return inputs_ready(job.missing_inputs, params, ds)

    @task
    def build_training_set(params=None, ds=None):
        return build_job.run_up_to(settings_from(params), ds)

    @task
    def kinds(params=None):
        return job.member_kinds(settings_from(params))

    # Each step hands the next a models.registry.handoff dataclass, through XCom as a dict.
    @task
    def train(kind, params=None, ds=None):
        return asdict(job.train(settings_from(params), ds, kind))

    @task
    def ensemble(trained, params=None, ds=None):
        members = [job.TrainedRun(**t) for t in trained]
        return [asdict(t) for t in job.with_ensemble(settings_from(params), ds, members)]

    @task
    def evaluate(trained, params=None):
        return asdict(job.evaluate_run(settings_from(params), job.TrainedRun(**trained)))

    # One task registers the night's runs in the kinds' order, as `feedrank demo` does: the
    # versions' numbers and the last `challenger` alias do not depend on which mapped task
    # the scheduler happened to run first (a walk gave @challenger to the DNN where dag.test
    # gave it to the ensemble). A retry keeps the versions already registered.
    @task
    def register(evaluated, params=None):
        settings = settings_from(params)
        return [asdict(job.register(settings, job.EvaluatedRun(**e))) for e in evaluated]

    @task(outlets=[RANKER])
    def promote(registered, params=None, outlet_events=None):
        versions = [job.RegisteredVersion(**r) for r in registered]
        outcome = job.promote(settings_from(params), versions)
        mark_gate(outlet_events, RANKER, outcome)
        return asdict(outcome)

    member_kinds = kinds()
    inputs() >> build_training_set() >> member_kinds
    trained = ensemble(train.expand(kind=member_kinds))
    promote(register(evaluate.expand(trained=trained)))


train_rankers()
