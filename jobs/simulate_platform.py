"""Simulate one day of the platform, check its data contracts, then publish it.

    spark-submit jobs/simulate_platform.py --ds 2026-01-05 --profile demo

Three steps, each a DAG task (write -> audit -> publish): `simulate` stages every raw table
of the day, `validate` runs the data contracts on what was staged, `publish` swaps the staged
partitions in. A day that fails its contracts is never published, so nothing downstream sees
it. Day d needs the committed engagements of the `pool_days` days before it (the simulator's
social proof); the first day of the calendar needs nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
import time

import pandas as pd

from jobs.common import check_day, days_before, log_settings, run_job
from jobs.settings import Settings
from jobs.spark import get_spark
from simulator import build_world, simulate_day
from simulator.config import SimulatorSettings
from warehouse import contracts
from warehouse.catalog import ENGAGEMENTS, RAW_TABLES, SIMULATED_TABLES, table
from warehouse.store import Warehouse, WarehouseError

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
    cfg, store = settings.simulator, Warehouse(settings.root.warehouse)
    day = day_index(cfg, ds)
    started = time.perf_counter()
    logs = simulate_day(_world(cfg), cfg, day, _prior_engagements(store, cfg, ds))
    rows = {}
    for name, frame in logs.tables().items():
        rows[name] = store.write_arrow(table(name), ds, frame, publish=False).rows
    log.info("simulated ds=%s in %.1fs: %s", ds, time.perf_counter() - started, rows)
    return rows


def validate(settings: Settings, ds: str) -> list[contracts.ContractReport]:
    """Run the raw tables' contracts on the staged day; raise if any check fails."""
    spark = get_spark(settings.spark)
    store = Warehouse(settings.root.warehouse)
    reports = []
    for tbl in RAW_TABLES:
        frames = {tbl.name: store.read_spark(spark, tbl, ds, staged=True)}
        for ref in contracts.REFERENCES.get(tbl.name, ()):
            frames[ref] = _reference(spark, store, settings.simulator, tbl.name, ref, ds)
        reports.append(
            contracts.check_raw_partition(
                tbl.name,
                ds,
                frames,
                max_engagement_delay_s=settings.simulator.max_engagement_delay_s,
            )
        )
    contracts.enforce_all(reports)  # one error listing every failed check of every table
    return reports


def publish(settings: Settings, ds: str) -> dict[str, int]:
    """Swap the day's staged partitions in; idempotent if it is re-run after a crash."""
    store = Warehouse(settings.root.warehouse)
    rows = {}
    for tbl in SIMULATED_TABLES:
        if store.is_committed(tbl, ds, staged=True):
            rows[tbl.name] = store.publish(tbl, ds).rows
        elif store.is_committed(tbl, ds):
            rows[tbl.name] = store.info(tbl, ds).rows  # published by an earlier try
        else:
            raise WarehouseError(f"{tbl.qualified} ds={ds}: nothing to publish")
    return rows


def day_index(cfg: SimulatorSettings, ds: str) -> int:
    index = (dt.date.fromisoformat(ds) - cfg.start_date).days
    if index < 0:
        raise ValueError(f"ds={ds} is before the simulation starts ({cfg.start_date})")
    return index


@functools.lru_cache(maxsize=2)
def _world(cfg: SimulatorSettings):
    return build_world(cfg)


def _prior_engagements(store: Warehouse, cfg: SimulatorSettings, ds: str) -> pd.DataFrame:
    days = days_before(cfg.start_date, ds, cfg.pool_days)
    try:
        return store.read_pandas(ENGAGEMENTS, days).drop(columns="ds")
    except WarehouseError as err:
        raise WarehouseError(
            f"cannot simulate ds={ds}: run the days before it first ({err})"
        ) from None


def _reference(spark, store: Warehouse, cfg: SimulatorSettings, table_name: str, ref: str, ds: str):
    """A table a contract checks against: the staged day, plus committed earlier days."""
    first = cfg.start_date.isoformat()
    days = [
        d
        for d in contracts.reference_days(table_name, ref, ds, pool_days=cfg.pool_days)
        if d >= first
    ]
    tbl = table(ref)
    frame = store.read_spark(spark, tbl, ds, staged=True)
    earlier = [d for d in days if d != ds]
    return frame.unionByName(store.read_spark(spark, tbl, earlier)) if earlier else frame


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
