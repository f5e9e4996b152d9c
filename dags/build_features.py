"""
### build_features

Point-in-time features of one day's impressions, built in Spark when the `raw` Asset says a
day of logs passed its contracts. The day's aggregate state (hourly tiles per post, author,
user, user-author, ...) is computed from that day's logs only and kept in silver; the
features read the state of each family's lookback (7 to 365 days), so no run recomputes
history. The feature table passes its own contract (Great Expectations: keys, ranges, nulls,
`as_of` strictly before `served_at`) before it is published and the `features` Asset marked.

Triggered by the raw Asset (the days its events name): a `simulate_platform` run starts this
DAG by itself, as it is unpaused at creation (`airflow.asset_dags_unpaused`). By hand: a
logical date inside the profile's calendar and the Param `profile`, the data root's profile.
Days must be built in order; to re-run a day, Clear its run. A backfill by hand (or
`feedrank demo`): the logical date its first day and the Param `to` its last; the task builds
every day between in order, in one Spark application, each with its own contract and publish.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    FEATURES,
    RAW_LOGS,
    asset_scheduled,
    backfill_days,
    days_to_build,
    features_params,
    lazy_job,
    mark_days,
    settings_from,
)

job = lazy_job("build_features")  # imported when a task runs, not when the file is parsed


@dag(
    schedule=[RAW_LOGS],
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=features_params(),
    tags=["feedrank", "silver", "features", "spark"],
    doc_md=__doc__,
    **asset_scheduled(),
)
def build_features():
    @task(outlets=[FEATURES])
    def build(params=None, outlet_events=None):
        days = days_to_build(get_current_context())
        to = params.get("to")
        settings = settings_from(params, *days, *([to] if to else []))
        days = backfill_days(settings, days, to)
        job.run_days(settings, days)
        mark_days(outlet_events, FEATURES, days)

    build()


build_features()
