"""
### simulate_platform

One day of the simulated social network's logs per run: **simulate** the day and stage the
raw tables (users, authors, follows, posts, impressions, engagements, and the simulator's
truth), **validate** them against the data contracts (Great Expectations), then **publish**
the partitions atomically and mark the `raw` Asset, which starts `build_features` on that day
by itself (DAGs scheduled on Assets are unpaused at creation).

A day that fails a contract is never published; the failed task names the table, column and
expectation.

**Trigger a day**: set the logical date to a day of the profile's calendar (this DAG's
schedule lists it), in order, as day d reads the days before it. A run for any other day
(the form's default is now) fails at once, saying which days exist. Params: `profile`, which
must be the profile of the data root (a job refuses another profile's root), and `seed`.

**Catch-up** is off by default (`airflow.catchup`): unpausing runs nothing by itself, and each
trigger starts one run. With `FEEDRANK__AIRFLOW__CATCHUP=true` unpausing runs every day of the
calendar, one at a time.

**Re-run a day**: open its run and **Clear** it (all tasks); the day is replaced with the same
data (seeded). Triggering the same logical date again is refused (409 Conflict, "Unique
constraint violation": a DAG has one run per logical date).
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RAW_LOGS,
    calendar,
    lazy_job,
    mark_days,
    params,
    settings_from,
)

job = lazy_job("simulate_platform")  # imported when a task runs, not when the file is parsed


@dag(
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
        return job.simulate(settings_from(params, ds), ds)

    @task
    def validate(params=None, ds=None):
        job.validate(settings_from(params, ds), ds)

    @task(outlets=[RAW_LOGS])
    def publish(params=None, ds=None, outlet_events=None):
        rows = job.publish(settings_from(params, ds), ds)
        mark_days(outlet_events, RAW_LOGS, [ds])
        return rows

    simulate() >> validate() >> publish()


simulate_platform()
