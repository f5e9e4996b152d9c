"""
### train_rankers

Nightly retraining of the LightGBM rankers on the latest days, as a time split: **train** on
the earliest days, stop early on the **validation** days, report on the **test** days.

1. **build_training_set**: `gold.training_examples` for every day with features that lacks
   it (labels within the attribution window, dwell, the seeded sampling draw), gated by its
   Great Expectations contract.
2. **train**: one LightGBM model per action (click, like, comment, share, hide, report) on
   its positives and a sample of its negatives, and a Huber dwell regressor; an MLflow run
   in the `feedrank` experiment with settings, window, counts, learning curves, importance
   and the model.
3. **evaluate**: validation and test metrics against reverse-chronological, popularity
   (smoothed engagement rate) and logged-order baselines and the oracle (the simulator's
   true probabilities).
4. **register**: a new version of `feedrank-ranker`, alias `challenger`.
5. **promote**: alias `champion` only if it beats the champion (and every baseline) on the
   validation NDCG of the value score by the configured margin; the version's tags say why.

Params: `profile`, `seed`, `train_days` (the training window, empty for every day before
validation) and `negative_rate` (share of negatives kept). The run's logical date is the last
day it may use.
"""

from __future__ import annotations

from dataclasses import asdict

from airflow.sdk import dag, task

from jobs import train_rankers as job
from jobs.airflow_support import (
    DEFAULT_ARGS,
    RANKER,
    calendar,
    mark_promotion,
    settings_from,
    training_params,
)


@dag(
    schedule="0 2 * * *",
    start_date=calendar()["start_date"],
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=training_params(),
    tags=["feedrank", "gold", "models", "mlflow"],
    doc_md=__doc__,
)
def train_rankers():
    @task
    def build_training_set(params=None, ds=None):
        return job.build_training_set(settings_from(params), ds)

    # Each step hands the next a models.handoff dataclass, through XCom as a dict.
    @task
    def train(params=None, ds=None):
        return asdict(job.train(settings_from(params), ds))

    @task
    def evaluate(trained, params=None):
        return asdict(job.evaluate_run(settings_from(params), job.TrainedRun(**trained)))

    @task
    def register(evaluated, params=None):
        return asdict(job.register(settings_from(params), job.EvaluatedRun(**evaluated)))

    @task(outlets=[RANKER])
    def promote(registered, params=None, outlet_events=None):
        outcome = job.promote(settings_from(params), job.RegisteredVersion(**registered))
        mark_promotion(outlet_events, RANKER, outcome)
        return asdict(outcome)

    trained = train()
    build_training_set() >> trained
    promote(register(evaluate(trained)))


train_rankers()
