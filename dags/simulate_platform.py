"""
### simulate_platform

One day of the simulated social network's logs per run: **simulate** the day and stage the
raw tables (users, authors, follows, posts, impressions, engagements, and the simulator's
truth), **validate** them against the data contracts (Great Expectations), then **publish**
the partitions atomically and mark the `raw` Asset, which starts the feature DAG.

A day that fails a contract is never published; the failed task names the table, column and
expectation. Re-running a day replaces it with the same data (seeded).

Trigger from the UI with Params `profile` (tiny | demo | large) and `seed`; the logical date
is the day simulated and must lie in the profile's calendar, after the days before it.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobs import simulate_platform as job
from jobs.airflow_support import (
    DEFAULT_ARGS,
    RAW_LOGS,
    calendar,
    mark_days,
    params,
    settings_from,
)


@dag(
    schedule="@daily",
    catchup=True,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "depends_on_past": True},
    params=params(),
    tags=["feedrank", "raw", "simulator"],
    doc_md=__doc__,
    **calendar(),
)
def simulate_platform():
    @task
    def simulate(params=None, ds=None):
        return job.simulate(settings_from(params), ds)

    @task
    def validate(params=None, ds=None):
        job.validate(settings_from(params), ds)

    @task(outlets=[RAW_LOGS])
    def publish(params=None, ds=None, outlet_events=None):
        rows = job.publish(settings_from(params), ds)
        mark_days(outlet_events, RAW_LOGS, [ds])
        return rows

    simulate() >> validate() >> publish()


simulate_platform()
