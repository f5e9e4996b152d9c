"""
### ab_report

The closed loop's A/B test: treatment (the ranked feeds, read through the feed store) against
control (reverse-chronological), for a closed-loop day (`simulator.serving.loop_days`). Runs
when a day of raw logs is published, or by hand for the run's logical date; a day before
the loop is skipped.

1. **feed_quality**: the offline evaluation of the feeds that served the loop's first day
   (jobs/evaluate_feeds.py), on that day.
2. **report**: per bucket, each loop day and pooled: weighted engagement per active user,
   CTR and action rates, negative-action rate, dwell per session, sessions per user; the lift
   with a bootstrap interval over users and a p-value; the same on the days before the loop
   (A/A); the offline ceiling of the feeds that served the loop; the off-policy support. An
   MLflow run (`ab/<metric>/lift`, `ci_low`, `ci_high`, `p_value`, plots) and a report.

Params: `profile`, `seed`.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RAW_LOGS,
    asset_scheduled,
    days_to_build,
    lazy_job,
    params,
    settings_from,
)

job = lazy_job("ab_report")  # imported when a task runs, not when the file is parsed
evaluate_feeds = lazy_job("evaluate_feeds")


@dag(
    schedule=[RAW_LOGS],
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=params(),
    tags=["feedrank", "experiment"],
    doc_md=__doc__,
    **asset_scheduled(),
)
def ab_report():
    @task
    def feed_quality(params=None):
        ds = days_to_build(get_current_context())[-1]
        settings = settings_from(params, ds)
        if ds not in job.loop_days(settings):
            raise AirflowSkipException(f"ds={ds} is not a closed-loop day: no A/B test")
        return evaluate_feeds.run(settings, job.feeds_day(settings))

    @task
    def report(quality, params=None):
        ds = days_to_build(get_current_context())[-1]
        return job.run(settings_from(params, ds), ds, quality)

    report(feed_quality())


ab_report()
