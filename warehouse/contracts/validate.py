"""Running a contract with Great Expectations on Spark.

`run_contract(table, ds, contract, frames, params)` takes the contract explicitly: nothing is
registered in a module-level table. One ephemeral GX context per process holds a Spark data
source and, per distinct suite (the table's name and a digest of its expectations, so two
contracts of one table never share a suite), a dataframe asset, an expectation suite and a
validation definition; a run hands the table's derived frame in as the batch and the day's
bounds as suite parameters. No Checkpoint: its actions (data docs, notifications) are not
wanted here, and the job decides what a failure stops.

`engine`: "spark" validates the derived frame where it is (GX issues Spark jobs per
expectation: fine for a big day, but about a second each however small the day); "pandas"
collects the derived frame to the driver in one Spark job and validates it there with the
same expectations (a real log's small days: seconds instead of minutes per ingest).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import json
import logging
import string
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from pyspark import StorageLevel

from warehouse.catalog import Layer, Table, table
from warehouse.contracts.expectations import (
    COLUMNS,
    MIN_ROWS,
    RULE,
    SHOW,
    Contract,
    LogRules,
    flag_nans,
    float_columns,
    window,
)
from warehouse.contracts.report import CheckFailure, ContractReport, qualified
from warehouse.contracts.rules import CONTRACTS, REFERENCES

log = logging.getLogger(__name__)

N_SAMPLES = 5  # offending rows quoted per failed check
_SOURCE = "feedrank_raw"
_SOURCES = {"spark": _SOURCE, "pandas": "feedrank_pandas"}  # engine -> GX data source


def check_raw_partition(
    table_name: str,
    ds: str,
    frames: Mapping[str, Any],
    *,
    max_engagement_delay_s: int,
    rules: LogRules | None = None,
    engine: str = "spark",
) -> ContractReport:
    """Run the contract of raw table `table_name` on its partition ds.

    frames maps table names to Spark DataFrames with the catalog columns: the partition
    under `table_name`, and each table of REFERENCES[table_name] (see `reference_days`).
    A partition that lacks a catalog column fails without running the rest. `rules` relax
    what a real log cannot have (an empty table, clicks without dwell, a posts backlog).
    """
    t = table(table_name)
    if t.layer is not Layer.RAW:
        raise ValueError(f"{table_name} is a {t.layer.value} table; contracts cover raw tables")
    missing = [name for name in (table_name, *REFERENCES[table_name]) if name not in frames]
    if missing:
        raise KeyError(f"the contract of {table_name} needs frames {missing}")
    absent = [c for c in t.columns if c not in frames[table_name].columns]
    if absent:
        failures = tuple(
            CheckFailure(table_name, c, "expect_column_to_exist", None, ("absent",), "exists")
            for c in absent
        )
        return ContractReport(table_name, ds, 0, len(t.columns), failures)
    params = window(ds, max_engagement_delay_s, rules or LogRules())
    return run_contract(t, ds, CONTRACTS[table_name], frames, params, engine=engine)


def run_contract(
    t: Table,
    ds: str,
    contract: Contract,
    frames: Mapping[str, Any],
    params: Mapping[str, Any],
    engine: str = "spark",
) -> ContractReport:
    """Run `contract` on t's partition ds: frames[t.name] is the partition, the other frames
    the contract's references; params fill the suite parameters ($day_start, ...).

    Pass 1 runs the suite asking GX for success only: a few Spark jobs, the column rules'
    counts bundled into one. Pass 2 re-runs just the failed expectations for counts and
    sample rows, which cost jobs per expectation that a passing day should not pay.
    `engine` "pandas": both passes on the derived frame collected to the driver once."""
    missing = [name for name in (t.name, *contract.references) if name not in frames]
    if missing:
        raise KeyError(f"the contract of {t.qualified} needs frames {missing}")
    params = {MIN_ROWS: 1, **params}  # every table has rows unless its caller says otherwise
    started = time.perf_counter()
    if engine not in _SOURCES:
        raise ValueError(f"engine must be one of {sorted(_SOURCES)}, got {engine!r}")
    validation = _validation(t, contract.expectations(t), engine)
    derived = contract.derive(frames[t.name], frames)
    derived = flag_nans(derived, float_columns(t))
    # Every expectation scans the frame, and the derived one holds joins: compute it once,
    # unless the caller cached it already (a table with no references is its own derivation).
    owned = engine == "spark" and derived.storageLevel == StorageLevel.NONE
    if owned:
        derived.persist(StorageLevel.MEMORY_AND_DISK)
    if engine == "pandas":
        derived = _collected(derived)
    try:
        n_rows = len(derived) if engine == "pandas" else derived.count()
        result = validation.run(
            batch_parameters={"dataframe": derived},
            expectation_parameters=params,
            result_format="BOOLEAN_ONLY",
        )
        failed = [r.expectation_config for r in result.results if not r.success]
        failures = _explain(t, validation, derived, failed, params) if failed else ()
    finally:
        if owned:
            derived.unpersist()
    report = ContractReport(t.name, ds, n_rows, len(result.results), failures)
    log.info(
        "contract %s ds=%s: %d rows, %d checks, %d failed, %.1fs",
        qualified(t.name),
        ds,
        report.n_rows,
        report.n_checks,
        len(report.failures),
        time.perf_counter() - started,
    )
    return report


def _collected(df):
    """A Spark frame as pandas, its timestamps aware in UTC (the suite's bounds are aware;
    Arrow hands them over naive, in the session's zone, which is UTC)."""
    frame = df.toPandas()
    for column in frame.columns:
        if pd.api.types.is_datetime64_dtype(frame[column]) and frame[column].dt.tz is None:
            frame[column] = frame[column].dt.tz_localize("UTC")
    return frame


@functools.cache
def _context():
    """The process's ephemeral GX context: building one is slow, so once per process."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # A tqdm bar per run would flood the job logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # GX's default persist=True caches every batch and never unpersists it: a leak per day.
    context.data_sources.add_spark(_SOURCE, persist=False)
    context.data_sources.add_pandas(_SOURCES["pandas"])
    return context


_VALIDATIONS: dict[str, Any] = {}  # suite name -> validation definition, per process


def _validation(t: Table, expectations: list[Any], engine: str = "spark"):
    """The validation definition of t's derived frame against these expectations on
    `engine`, reused for as long as the expectations are the same (building one costs a GX
    round trip)."""
    import great_expectations as gx

    configs = [e.configuration.to_json_dict() for e in expectations]
    digest = hashlib.sha256(json.dumps(configs, sort_keys=True, default=str).encode())
    name = f"{t.name}_{digest.hexdigest()[:16]}" + ("" if engine == "spark" else f"_{engine}")
    if name not in _VALIDATIONS:
        context = _context()
        asset = context.data_sources.get(_SOURCES[engine]).add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        _VALIDATIONS[name] = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
    return _VALIDATIONS[name]


def _explain(t: Table, validation, derived, failed, params) -> tuple[CheckFailure, ...]:
    """The failed expectations again, on the same batch, with counts and quoted rows."""
    import great_expectations as gx

    batch = validation.batch_definition.get_batch(batch_parameters={"dataframe": derived})
    # Copies: an expectation belongs to one suite, and these belong to the contract's.
    expectations = [copy.copy(config.to_domain_obj()) for config in failed]
    shown = [c for config in failed for c in config.meta[SHOW]]
    result_format = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": N_SAMPLES,
        "unexpected_index_column_names": list(dict.fromkeys([*t.key, *shown])),
    }
    suite = gx.ExpectationSuite(name=f"{t.name}_failed", expectations=expectations)
    detail = batch.validate(suite, result_format=result_format, expectation_parameters=params)
    bounds = {name: _text(value) for name, value in params.items()}
    return tuple(_failure(t, r, bounds) for r in detail.results)


def _failure(t: Table, r, bounds: Mapping[str, str]) -> CheckFailure:
    config, meta = r.expectation_config, r.expectation_config.meta
    failure = functools.partial(
        CheckFailure,
        t.name,
        ", ".join(meta[COLUMNS]) or None,
        config.type,
        rule=string.Template(meta[RULE]).safe_substitute(bounds),
    )
    error = _exception_message(r.exception_info)
    if error is not None:
        return failure(None, (error,))
    if "observed_value" in r.result:  # a table-level rule
        return failure(None, (f"observed {r.result['observed_value']}",))
    return failure(r.result.get("unexpected_count"), _sample(t, meta[SHOW], r.result))


def _sample(t: Table, show: Sequence[str], result: Mapping[str, Any]) -> tuple[str, ...]:
    """The offending rows as 'col=value ...' text: the key, then the columns the rule shows."""
    rows = result.get("partial_unexpected_index_list")
    if not rows:
        return tuple(_text(v) for v in result.get("partial_unexpected_list") or ())
    wanted = list(dict.fromkeys([*t.key, *show]))
    return tuple(" ".join(f"{c}={_text(row[c])}" for c in wanted if c in row) for row in rows)


def _text(value: Any) -> str:
    if hasattr(value, "item") and not isinstance(value, dt.datetime):  # a numpy scalar (pandas)
        value = value.item()
    if isinstance(value, dt.datetime):
        # PySpark collects naive datetimes in the OS zone; astimezone reads them so.
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    return repr(value)


def _exception_message(info: Mapping[str, Any] | None) -> str | None:
    """GX catches an expectation's exception into exception_info, flat or keyed by metric."""
    if not info:
        return None
    nested = [info] if "raised_exception" in info else list(info.values())
    raised = [i for i in nested if isinstance(i, Mapping) and i.get("raised_exception")]
    return f"error: {raised[0].get('exception_message')}"[:300] if raised else None
