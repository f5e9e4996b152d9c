"""Load a real impression log (MIND, EB-NeRD or raw) into the raw tables, every day of it.

    feedrank ingest --format mind --path data/MINDsmall_train
    python jobs/ingest_log.py --profile ebnerd --path data/ebnerd_small

The profile's `log` section (or the command's options) names the format, the folder and its
files, and the log's calendar; without a calendar the ingest takes the log's first to last
day. Once published, the log's section is recorded in the data root
(warehouse.layout.DataRoot.remember_log): later jobs on the root read the files' names and
the calendar from there. Four steps, the simulator's write -> audit -> publish for a whole
file:
1. read: stream the files (CSV blocks, Parquet batches), checking every line; a malformed
   one stops here with its file, line and field named, before anything is written;
2. map: warehouse.ingest.mapping turns the log into each day's raw tables (users, authors, follows
   (empty), posts, impressions, engagements); no truth table;
3. stage every day, then validate the days in order (file schemas against the catalog, then
   the raw contracts, with the relaxations a log needs: warehouse.contracts.LogRules); the
   first day that fails stops the ingest;
4. publish the days, oldest first, only once all of them passed.
The run holds the raw lock of every day of the log throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from jobs.common import configure_logging, log_settings
from jobs.settings import Settings, load_settings
from jobs.spark import get_spark
from warehouse import audit, contracts
from warehouse.catalog import FOLLOWS, POSTS, RAW_TABLES, Layer, table
from warehouse.contracts import LogRules
from warehouse.ingest import common, ebnerd, mind, raw
from warehouse.ingest.mapping import Dropped, raw_days
from warehouse.layout import Folder
from warehouse.store import Warehouse

log = logging.getLogger(__name__)

JOB = "ingest_log"


@dataclasses.dataclass(frozen=True)
class Ingested:
    """What an ingest published."""

    format: str
    days: tuple[str, ...]
    rows: dict[str, int]  # per raw table, over every day
    dropped: Dropped  # impressions of items without metadata


def run(settings: Settings) -> Ingested:
    """Read, map, stage, validate and publish the profile's log."""
    log_settings(JOB, settings)
    started = time.perf_counter()
    data = read(settings)
    days, dropped = raw_days(
        data, settings.log.dates() or None, max_missing_share=settings.log.max_missing_share
    )
    store = settings.open_warehouse()
    with contextlib.ExitStack() as locks:
        for ds in days:
            locks.enter_context(store.lock(Layer.RAW, ds, job=JOB))
        stage(store, days)
        validate(settings, store, sorted(days))
        rows = publish(store, sorted(days))
        settings.root.remember_log(remembered(settings, sorted(days)))
    log.info(
        "ingested %s: %d days in %.1fs: %s",
        data.format,
        len(days),
        time.perf_counter() - started,
        rows,
    )
    return Ingested(data.format, tuple(sorted(days)), rows, dropped)


def remembered(settings: Settings, days: Sequence[str]) -> dict[str, object]:
    """The `log` section later jobs on the data root need: the format, the files (the
    folder absolute) and the calendar the ingest published."""
    cfg = settings.log
    return {
        "format": cfg.format,
        "path": str(Path(cfg.path).expanduser().resolve()),
        "behaviors": cfg.file("behaviors"),
        "items": cfg.file("items"),
        "start_date": days[0],
        "days": len(days),
    }


def read(settings: Settings) -> common.LogData:
    """The profile's log, read and checked (warehouse.ingest.mind / warehouse.ingest.ebnerd)."""
    cfg = settings.log
    if cfg.format is None or cfg.path is None:
        raise ValueError(f"profile {settings.profile!r} names no log (log.format, log.path)")
    folder = Folder(cfg.path)
    behaviors, items = folder.file(cfg.file("behaviors")), folder.file(cfg.file("items"))
    for path in (behaviors, items):
        if not path.is_file():
            raise FileNotFoundError(
                f"{cfg.format} log: no file {path} (log.path, log.behaviors, log.items)"
            )
    if cfg.format == "mind":
        return mind.read(behaviors, items, block_bytes=cfg.block_bytes)
    if cfg.format == "raw":
        return raw.read(behaviors, items)
    return ebnerd.read(behaviors, items, batch_rows=cfg.batch_rows)


def stage(store: Warehouse, days: Mapping[str, Mapping[str, object]]) -> None:
    """Write every day's raw tables, staged and unpublished."""
    for ds, tables in sorted(days.items()):
        for name, frame in tables.items():
            store.write_arrow(table(name), ds, frame, publish=False)


def log_rules(ds: str, days: Sequence[str]) -> dict[str, LogRules]:
    """What a log's day may lack: follows are empty, clicks may lack dwell, and the first
    day's posts include those published before the log began."""
    rules = {t.name: LogRules(clicks_without_dwell=True) for t in RAW_TABLES}
    rules[FOLLOWS.name] = LogRules(may_be_empty=True)
    # A day may show no item that is new to the log; the first holds the older ones.
    backlog = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) if ds == days[0] else None
    rules[POSTS.name] = LogRules(may_be_empty=True, posts_from=backlog)
    return rules


def validate(settings: Settings, store: Warehouse, days: Sequence[str]) -> None:
    """Every staged day's files and contracts, oldest first; the first day that fails
    raises (listing every failed check of its tables), else each table of each day is
    recorded as passed."""
    spark = get_spark(settings.spark)
    reports = []
    for ds in days:
        day = audit.check_staged_log_day(
            spark,
            store,
            ds,
            days=days,
            rules=log_rules(ds, days),
            engine=settings.log.contracts_engine,
        )
        contracts.enforce_all(day)  # a bad day stops the ingest before the next is checked
        reports += day
    for report in reports:
        by = f"its contract, for a log ({report.n_checks} checks on {report.n_rows} rows)"
        store.accept(table(report.table), report.ds, by=by)


def publish(store: Warehouse, days: Sequence[str]) -> dict[str, int]:
    """Publish the days, oldest first, each in one commit of the raw layer."""
    rows = dict.fromkeys((t.name for t in RAW_TABLES), 0)
    for ds in days:  # every day is sound before the first commit
        store.verify_staged(RAW_TABLES, ds)
    for ds in days:
        for name, info in store.publish_day(RAW_TABLES, ds).items():
            rows[name] += info.rows
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="mind | ebnerd (default: FEEDRANK_PROFILE)")
    parser.add_argument("--path", help="the log's folder (default: the profile's log.path)")
    args = parser.parse_args(argv)
    configure_logging()
    overrides = {"log": {"path": args.path}} if args.path else None
    run(load_settings(args.profile, overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
