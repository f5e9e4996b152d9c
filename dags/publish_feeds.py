"""
### publish_feeds

Publish a day's validated `gold.user_news_feed` to the feed store (SQLite in the data root,
or Redis: `feeds.store_url`) as a new version, whose current pointer flips atomically; the
read path (`feedrank serve`, `feedrank feeds`) pages through it. Runs when `precompute_feeds`
publishes a day, or by hand for the run's logical date.

1. **publish**: check and split the feeds per user, compute the trending fallback, write the
   version and flip the pointer; older versions beyond `feeds.keep_versions` are dropped.

Params: `profile`, `seed`.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    FEEDS,
    asset_scheduled,
    days_to_build,
    lazy_job,
    params,
    settings_from,
)

job = lazy_job("publish_feed")  # imported when a task runs, not when the file is parsed


@dag(
    schedule=[FEEDS],
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=params(),
    tags=["feedrank", "feeds", "serving"],
    doc_md=__doc__,
    **asset_scheduled(),
)
def publish_feeds():
    @task
    def publish(params=None):
        ds = days_to_build(get_current_context())[-1]  # only the latest day's feeds are served
        info = job.run(settings_from(params, ds), ds)
        return {"version": info.version, "users": info.users, "items": info.items}

    publish()


publish_feeds()
