"""
### simulate_platform

One day of the simulated social network's logs per run: **simulate** the day and stage the
raw tables (users, authors, follows, posts, impressions, engagements, and the simulator's
truth), **validate** them against the data contracts (Great Expectations), then **publish**
the partitions atomically and mark the `raw` Asset, which starts `build_features` on that day
by itself (DAGs scheduled on Assets are unpaused at creation).

A day that fails a contract is never published; the failed task names the table, column and
expectation.

**The calendar is the schedule**: one run per day of the profile's calendar (the schedule
lists them), each run's logical date its data day; unpaused, the DAG runs every day of the
calendar, oldest first, one at a time (`airflow.catchup`, default true). Each run first
waits for its **inputs** (the day before published; on a closed-loop day, the feeds of the
day before in the feed store), so the days follow the Asset chain in order.

**Trigger a day** by hand with the logical date set to one of the calendar's days. A run on
any other date (the trigger form's default is now) is **skipped** by `inputs`, whose log
names the calendar and the next day to build; nothing is written, no Asset is updated.
Params: `profile`, which must be the profile of the data root (a job refuses another
profile's root), and `seed`.

**Re-run a day**: open its run and **Clear** it (all tasks); the day is replaced with the same
data (seeded). Triggering the same logical date again is refused (409 Conflict: a DAG has one
run per logical date, and the scheduled runs already hold every day of the calendar).
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RAW_LOGS,
    calendar,
    inputs_ready,
    lazy_job,
    mark_days,
    params,
    settings_from,
    wait_for_inputs,
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
    @task.sensor(**wait_for_inputs())
    def inputs(params=None, ds=None):
        return inputs_ready(job.missing_inputs, params, ds)

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

    inputs() >> simulate() >> validate() >> publish()


simulate_platform()
