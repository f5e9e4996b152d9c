"""
### train_retrieval

Nightly training of the two-tower retrieval model. Its `feedrank-retrieval` Asset triggers
`build_retrieval_index`, the day's FAISS index of interest candidates. Scheduled on the data
day it is needed on (`jobs.common.retrieval_days`: the last day before the closed loop), the
run's logical date that day.

0. **inputs**: waits for the day's logs; a run on a day outside the calendar, or too early
   for the split, is skipped, saying why.
1. **train**: user and post towers on the positive engagements (click, like, comment, share)
   of the training days, in-batch negatives with the logQ correction, early stopping on
   validation recall; an MLflow run with settings, curves and the model.
2. **evaluate**: recall@50/200/500 of engaged posts from the servable pool on the validation
   and test days, and its cold-start slice, against popularity, followees' newest and random.
3. **register**: a new version of `feedrank-retrieval`, alias `challenger`.
4. **promote**: alias `champion` only if it beats the champion and popularity on validation
   recall@500; the version's tags say why.
Params: `profile`, `seed`. The run's logical date is the last day it may use; trigger it by
hand to rebuild a day.
"""

from __future__ import annotations

from dataclasses import asdict

from airflow.sdk import dag, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RETRIEVAL,
    calendar,
    inputs_ready,
    lazy_job,
    mark_promotion,
    params,
    settings_from,
    wait_for_inputs,
)
from jobs.common import retrieval_days

job = lazy_job("train_retrieval")  # imported when a task runs, not when the file is parsed


@dag(
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=params(),
    tags=["feedrank", "models", "retrieval", "faiss", "mlflow"],
    doc_md=__doc__,
    **calendar(retrieval_days),
)
def train_retrieval():
    @task.sensor(**wait_for_inputs())
    def inputs(params=None, ds=None):
        return inputs_ready(job.missing_inputs, params, ds)

    # Each step hands the next a models.registry.handoff dataclass, through XCom as a dict.
    @task
    def train(params=None, ds=None):
        return asdict(job.train(settings_from(params, ds), ds))

    @task
    def evaluate(trained, params=None):
        return asdict(job.evaluate_run(settings_from(params), job.TrainedRun(**trained)))

    @task
    def register(evaluated, params=None):
        return asdict(job.register(settings_from(params), job.EvaluatedRun(**evaluated)))

    @task(outlets=[RETRIEVAL])
    def promote(registered, params=None, outlet_events=None):
        outcome = job.promote(settings_from(params), job.RegisteredVersion(**registered))
        mark_promotion(outlet_events, RETRIEVAL, outcome)  # its days: what the index builds
        return asdict(outcome)

    trained = train()
    inputs() >> trained
    promote(register(evaluate(trained)))


train_retrieval()
