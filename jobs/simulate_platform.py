"""Simulate one day of the platform, check its data contracts, then publish it.

    spark-submit jobs/simulate_platform.py --ds 2026-01-05 --profile demo
    spark-submit jobs/simulate_platform.py --from 2026-01-02 --to 2026-01-15 --profile demo

A range simulates its days in order in one process (one Spark session for the contracts),
each day exactly as a one-day run: its own contracts and atomic publish.

Three steps, each a DAG task (write -> audit -> publish): `simulate` stages every raw table
of the day, `validate` checks the staged files against the catalog and runs the data
contracts on them, recording which passed, `publish` commits the day: the truth table, then
the raw layer's six tables in one commit, the two as one unit (a read refuses a day whose
truth and raw disagree). A day that fails its contracts is never published, so nothing
downstream sees it. Each step holds the raw layer's lock for ds, so an
overlapping run of the same day fails at once. Day d needs the committed engagements of the
`pool_days` days before it (the simulator's social proof); the first day needs nothing.

A closed-loop day (the last `simulator.serving.loop_days` of the calendar) also needs the
feeds of the day before published to the feed store: its treatment bucket reads them through
the read path (simulator.closed_loop), and the run refuses to start without them.
"""

from __future__ import annotations

import logging
import sys
import time

from jobs.common import (
    NothingToDo,
    calendar_day,
    check_day,
    log_settings,
    run_range_job,
    shift_ds,
)
from jobs.reading import day_index, prior_engagements, read_path, stale_feeds, world
from jobs.settings import Settings
from jobs.spark import get_spark
from simulator import simulate_day
from simulator.day import is_loop_day
from warehouse import audit, contracts
from warehouse.catalog import (
    IMPRESSIONS,
    RAW_TABLES,
    SIMULATED_TABLES,
    TRUTH_IMPRESSIONS,
    Layer,
    table,
)
from warehouse.feeds.open import open_store

log = logging.getLogger(__name__)


def run(settings: Settings, ds: str) -> None:
    """All three steps, for a one-off run."""
    simulate(settings, ds)
    validate(settings, ds)
    publish(settings, ds)


def simulate(settings: Settings, ds: str) -> dict[str, int]:
    """Generate the day and stage every simulated table; returns rows per table."""
    check_day(settings, ds)
    log_settings("simulate", settings, ds)
    cfg, store = settings.simulator, settings.open_warehouse()
    day = day_index(cfg, ds)
    with (
        store.lock(Layer.RAW, ds, job="simulate_platform.simulate"),
        read_path(settings, ds) as client,
    ):
        started = time.perf_counter()
        logs = simulate_day(world(cfg), cfg, day, prior_engagements(store, cfg, ds), client)
        rows = {}
        for name, frame in logs.tables().items():
            rows[name] = store.write_arrow(table(name), ds, frame, publish=False).rows
    log.info("simulated ds=%s in %.1fs: %s", ds, time.perf_counter() - started, rows)
    return rows


def validate(settings: Settings, ds: str) -> list[contracts.ContractReport]:
    """Check the staged day's files and contracts; raise if any check fails, else record
    that every table passed (publish refuses a table that did not)."""
    spark = get_spark(settings.spark)
    store, cfg = settings.open_warehouse(), settings.simulator
    with store.lock(Layer.RAW, ds, job="simulate_platform.validate"):
        reports = audit.check_staged_day(
            spark,
            store,
            ds,
            first_day=cfg.start_date,
            pool_days=cfg.pool_days,
            max_engagement_delay_s=cfg.max_engagement_delay_s,
        )
        contracts.enforce_all(reports)  # one error listing every failed check of every table
        for report in reports:
            by = f"its contract ({report.n_checks} checks on {report.n_rows} rows)"
            store.accept(table(report.table), ds, by=by)
    return reports


def publish(settings: Settings, ds: str) -> dict[str, int]:
    """Commit the day: truth, then raw (it starts features), as one unit
    (Warehouse.publish_together: each layer's manifest records the other's versions, and a
    read refuses a day whose two layers disagree). Idempotent if it is re-run after a
    crash, which finishes the unit; refuses tables that did not pass `validate`."""
    store = settings.open_warehouse()
    with store.lock(Layer.RAW, ds, job="simulate_platform.publish"):
        infos = store.publish_together(((TRUTH_IMPRESSIONS,), RAW_TABLES), ds)
    return {t.name: infos[t.name].rows for t in SIMULATED_TABLES}


def missing_inputs(settings: Settings, ds: str) -> str | None:
    """What day ds still waits for, None when it can be simulated: the day before it
    published (day d reads the engagements of the days before), and on a closed-loop day the
    feeds of the day before in the feed store. NothingToDo outside the calendar."""
    days = settings.dates()
    try:
        calendar_day(settings, ds)
    except NothingToDo as err:
        nxt = next_day(settings)
        then = f"the next day to build is {nxt}" if nxt else "every day of it is built"
        raise NothingToDo(f"{err}; {then}") from None
    store = settings.open_warehouse()
    before = days[days.index(ds) - 1] if ds != days[0] else None
    if before is not None and not store.is_committed(IMPRESSIONS, before):
        return f"ds={ds} waits for the day before it, {before}, to be published"
    if is_loop_day(settings.simulator, day_index(settings.simulator, ds)):
        feed_store = open_store(settings.feeds, settings.root)
        try:
            current = feed_store.status().current
        finally:
            feed_store.close()
        if current is None or current.ds != shift_ds(ds, -1):
            return stale_feeds(ds, current)
    return None


def next_day(settings: Settings) -> str | None:
    """The first day of the calendar whose logs are not published (None: all are)."""
    done = set(settings.open_warehouse().partitions(IMPRESSIONS))
    return next((d for d in settings.dates() if d not in done), None)


def run_days(settings: Settings, days: list[str]) -> None:
    """Simulate several days, oldest first (each reads the days before it)."""
    for ds in sorted(days):
        run(settings, ds)


def main(argv: list[str] | None = None) -> int:
    return run_range_job(run_days, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
