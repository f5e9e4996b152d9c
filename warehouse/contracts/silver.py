"""Data contract of the silver feature table: keys, ranges, nulls and no future timestamps.

The feature columns belong to features.registry; the job that builds the table passes which
columns are counts, shares and so on (`FeatureRules`), so the warehouse does not import
feature code. Each call checks against the rules it is given (`feature_contract`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from warehouse.catalog import IMPRESSION_FEATURES, C, Table
from warehouse.contracts.expectations import (
    DAY_END,
    DAY_START,
    Contract,
    after,
    between,
    not_null,
    param,
    window,
)
from warehouse.contracts.report import ContractReport

AS_OF = "as_of"  # features.registry.AS_OF: the snapshot hour an impression's features use


@dataclasses.dataclass(frozen=True)
class FeatureRules:
    """What the feature columns must satisfy, by kind."""

    not_null: tuple[str, ...] = ()  # filled in by their family (counts, flags, content)
    nonnegative: tuple[str, ...] = ()  # counts, decayed totals, ages, rates
    unit_interval: tuple[str, ...] = ()  # shares and similarities in [0, 1]
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def feature_contract(rules: FeatureRules) -> Contract:
    """The feature table's contract under these rules."""

    def build() -> list[Any]:
        checks = [
            not_null(AS_OF),
            between(C.SERVED_AT, param(DAY_START), param(DAY_END), strict_max=True),
            # The point-in-time rule: a feature snapshot strictly before the impression.
            after(C.SERVED_AT, AS_OF, f"{AS_OF} < served_at (no feature from the future)"),
        ]
        checks += [not_null(col) for col in rules.not_null]
        checks += [between(col, 0) for col in rules.nonnegative]
        checks += [between(col, 0.0, 1.0) for col in rules.unit_interval]
        checks += [between(col, lo, hi) for col, (lo, hi) in rules.ranges.items()]
        return checks

    return Contract((), build)


def checked_columns(rules: FeatureRules) -> list[str]:
    """The columns the contract under these rules reads: the key, the time columns and every
    column with a rule."""
    named = (C.IMPRESSION_ID, C.SERVED_AT, AS_OF, *rules.not_null, *rules.nonnegative)
    return list(dict.fromkeys([*named, *rules.unit_interval, *rules.ranges]))


def check_feature_partition(
    ds: str, df, rules: FeatureRules, table: Table = IMPRESSION_FEATURES, engine: str = "spark"
) -> ContractReport:
    """Run the feature table's contract on the partition ds (a Spark DataFrame).

    engine: "spark" validates the frame in Spark (GX's jobs per expectation); "pandas"
    collects the columns the contract reads in one Spark job and runs the same
    expectations there (for a day that fits the driver: see warehouse.contracts.validate)."""
    from warehouse.contracts.validate import run_contract

    missing = [
        c
        for c in (C.IMPRESSION_ID, C.SERVED_AT, AS_OF, *rules.not_null, *rules.nonnegative)
        if c not in df.columns
    ]
    if missing:
        raise KeyError(f"{table.qualified} ds={ds}: columns {missing} are missing")
    contract = feature_contract(rules)
    frame = df.select(*[c for c in checked_columns(rules) if c in df.columns])
    return run_contract(table, ds, contract, {table.name: frame}, window(ds, 0), engine=engine)
