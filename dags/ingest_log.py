"""
### ingest_log

A real impression log into the raw layer, by hand: MIND, EB-NeRD or your own log in the raw
format (`warehouse/ingest/raw.py` lists its columns). **ingest** reads the files, maps them
into the raw tables day by day, stages every day, checks each table-day against its data
contract (Great Expectations) and publishes the days, then marks the `raw` Asset with them,
which starts `build_features` on those days by itself. `feedrank ingest` does the same from
a shell.

**Trigger** it with the Params (there is no schedule; the logical date does not matter):
`profile` (`mind`, `ebnerd` or `raw`: the data root's), `path` (the log's folder on the
machine the task runs on), and if needed `behaviors` and `items` (file names in the folder;
each format has its default), `first_day` and `days` (the calendar; by default the log's own
days) and `max_missing_share`. The data root records the log's files and calendar, so every
later job and DAG on it needs none of them again.

A bad file fails the task with one line naming the file (its line and field where there is
one) and nothing is published; no retry is attempted, since retrying cannot fix the file.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    RAW_LOGS,
    ingest_params,
    mark_days,
    run_ingest,
)


@dag(
    schedule=None,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=ingest_params(),
    tags=["feedrank", "raw", "real log"],
    doc_md=__doc__,
)
def ingest_log():
    @task(outlets=[RAW_LOGS])
    def ingest(params=None, outlet_events=None):
        done = run_ingest(params)  # imports the job when it runs, not at parse time
        mark_days(outlet_events, RAW_LOGS, list(done.days))
        return {"days": list(done.days), "rows": done.rows}

    ingest()


ingest_log()
