"""
### build_retrieval_index

The day's FAISS index of interest candidates, from the champion two-tower model; the feed
precompute waits on its `retrieval_index` Asset. Runs when `train_retrieval` gates a model
(for the days it trained on), or by hand for the run's logical date (to rebuild a day).

1. **build_index**: the champion's vectors of every post servable at the end of the day
   (created within the pool window) in an exact index below `retrieval.index.flat_max` posts,
   else HNSW or IVF; its recall@500 against exact search is measured on a sample of the
   active users' queries, and a build below `retrieval.index.min_recall` fails and publishes
   nothing. The index, the post-id map and the active users' vectors are published
   atomically as the day's version.

Params: `profile`, `seed`.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RETRIEVAL,
    RETRIEVAL_INDEX,
    asset_scheduled,
    days_to_build,
    lazy_job,
    mark_days,
    params,
    settings_from,
)

job = lazy_job("train_retrieval")  # imported when a task runs, not when the file is parsed


@dag(
    schedule=[RETRIEVAL],
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=params(),
    tags=["feedrank", "retrieval", "faiss", "serving"],
    doc_md=__doc__,
    **asset_scheduled(),
)
def build_retrieval_index():
    @task(outlets=[RETRIEVAL_INDEX])
    def build_index(params=None, outlet_events=None):
        days = days_to_build(get_current_context())
        settings = settings_from(params, *days)
        for ds in days:
            job.build_index(settings, ds)
        mark_days(outlet_events, RETRIEVAL_INDEX, days)
        return days

    build_index()


build_retrieval_index()
