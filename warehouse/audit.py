"""What a contract checks, read from the warehouse: a staged day's files and frames.

The contracts (warehouse.contracts) do no I/O; this module reads what they need. A staged
table is first checked file by file against the catalog (each Parquet footer's schema, so a
dropped column or a changed type is caught before a reader projects the files onto the
catalog schema and fills the gap with nulls); only a day whose files are sound is read into
Spark for the Great Expectations suites.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from warehouse.catalog import IMPRESSIONS, RAW_TABLES, SIMULATED_TABLES, TRUTH_IMPRESSIONS, Table
from warehouse.catalog import table as catalog_table
from warehouse.contracts import (
    REFERENCES,
    CheckFailure,
    ContractReport,
    LogRules,
    check_raw_partition,
    reference_days,
)
from warehouse.contracts.truth import check_truth_partition
from warehouse.store import Warehouse

LOG_DELAY_S = (
    60  # a log's clicks come 1 s after serving (warehouse.ingest.mapping); a minute bounds them
)
_RULES = {  # a file check in words, for the failure's message
    "parquet_file_readable": "every data file is readable Parquet",
    "expect_column_to_exist": "the column is in every data file",
    "expect_column_values_to_be_of_type": "the column has the catalog's type",
    "expect_table_columns_to_match_set": "no column the catalog does not have",
}


def file_report(store: Warehouse, t: Table, ds: str, *, staged: bool = True) -> ContractReport:
    """The files of t's partition ds against the catalog, as a contract report."""
    problems = store.check_files(t, ds, staged=staged)
    failures = tuple(
        CheckFailure(t.name, p.column, p.check, None, (p.detail,), _RULES[p.check])
        for p in problems
    )
    return ContractReport(t.name, ds, 0, len(t.columns) + 1, failures)


def raw_frames(
    spark,
    store: Warehouse,
    table_name: str,
    ds: str,
    *,
    first_day: dt.date,
    pool_days: int,
    staged_days: Collection[str] = (),
) -> dict[str, Any]:
    """The staged partition of a raw table and the references its contract reads: the
    staged day, plus committed earlier days (the impressions' serving pool of posts), or
    staged ones where `staged_days` names them (a log's days, validated before any is
    published)."""
    frames = {table_name: store.read_spark(spark, catalog_table(table_name), ds, staged=True)}
    for ref in REFERENCES[table_name]:
        days = reference_days(table_name, ref, ds, pool_days=pool_days)
        days = [d for d in days if d >= first_day.isoformat()]
        staged = {ds, *(d for d in days if d in staged_days)}
        frames[ref] = store.read_spark(spark, catalog_table(ref), days, staged=staged)
    return frames


def check_staged_day(
    spark,
    store: Warehouse,
    ds: str,
    *,
    first_day: dt.date,
    pool_days: int,
    max_engagement_delay_s: int,
) -> list[ContractReport]:
    """The contracts of every simulated table on the staged day ds. If any table's files
    disagree with the catalog, those reports alone: reading the day would hide it."""
    files = [file_report(store, t, ds) for t in SIMULATED_TABLES]
    if not all(r.ok for r in files):
        return files
    reports = []
    for t in RAW_TABLES:
        frames = raw_frames(spark, store, t.name, ds, first_day=first_day, pool_days=pool_days)
        reports.append(
            check_raw_partition(t.name, ds, frames, max_engagement_delay_s=max_engagement_delay_s)
        )
    truth = {
        name: store.read_spark(spark, catalog_table(name), ds, staged=True).drop("ds")
        for name in (TRUTH_IMPRESSIONS.name, IMPRESSIONS.name)
    }
    reports.append(check_truth_partition(ds, truth))
    return reports


def check_staged_log_day(
    spark,
    store: Warehouse,
    ds: str,
    *,
    days: Sequence[str],
    rules: Mapping[str, LogRules],
    engine: str = "pandas",
) -> list[ContractReport]:
    """The contracts of the raw tables on the staged day ds of a real log (no truth table),
    whose `days` are all staged and none published yet: every post of the log is in the
    impressions' serving pool, and `rules` (per table) relax what a log cannot have.
    `engine`: where GX validates each table's derived frame (warehouse.contracts.validate):
    "pandas" collects it to the driver once, seconds for a log's day."""
    files = [file_report(store, t, ds) for t in RAW_TABLES]
    if not all(r.ok for r in files):
        return files
    first = dt.date.fromisoformat(min(days))
    reports = []
    for t in RAW_TABLES:
        frames = raw_frames(
            spark, store, t.name, ds, first_day=first, pool_days=len(days), staged_days=days
        )
        reports.append(
            check_raw_partition(
                t.name,
                ds,
                frames,
                max_engagement_delay_s=LOG_DELAY_S,
                rules=rules.get(t.name),
                engine=engine,
            )
        )
    return reports
