"""Data contract of the silver feature table: keys, ranges, nulls and no future timestamps.

The feature columns belong to features.registry; the job that builds the table passes which
columns are counts, shares and so on (`FeatureRules`), so the warehouse does not import
feature code. The suite is built once per process, like the raw tables' suites.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from warehouse.catalog import IMPRESSION_FEATURES, C, Table
from warehouse.contracts.report import ContractReport
from warehouse.contracts.rules import (
    CONTRACTS,
    DAY_END,
    DAY_START,
    Contract,
    _after,
    _between,
    _expect,
    _param,
    window,
)

AS_OF = "as_of"  # features.registry.AS_OF: the snapshot hour an impression's features use


@dataclasses.dataclass(frozen=True)
class FeatureRules:
    """What the feature columns must satisfy, by kind."""

    not_null: tuple[str, ...] = ()  # filled in by their family (counts, flags, content)
    nonnegative: tuple[str, ...] = ()  # counts, decayed totals, ages, rates
    unit_interval: tuple[str, ...] = ()  # shares and similarities in [0, 1]
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def _feature_rules(rules: FeatureRules):
    def build() -> list[Any]:
        checks = [
            _expect("ExpectColumnValuesToNotBeNull", [AS_OF], f"{AS_OF} set", column=AS_OF),
            _between(C.SERVED_AT, _param(DAY_START), _param(DAY_END), strict_max=True),
            # The point-in-time rule: a feature snapshot strictly before the impression.
            _after(C.SERVED_AT, AS_OF, f"{AS_OF} < served_at (no feature from the future)"),
        ]
        for col in rules.not_null:
            checks.append(_expect("ExpectColumnValuesToNotBeNull", [col], f"{col} set", column=col))
        checks += [_between(col, 0) for col in rules.nonnegative]
        checks += [_between(col, 0.0, 1.0) for col in rules.unit_interval]
        checks += [_between(col, lo, hi) for col, (lo, hi) in rules.ranges.items()]
        return checks

    return build


def check_feature_partition(
    ds: str, df, rules: FeatureRules, table: Table = IMPRESSION_FEATURES
) -> ContractReport:
    """Run the feature table's contract on the partition ds (a Spark DataFrame)."""
    from warehouse.contracts.validate import _run

    missing = [
        c
        for c in (C.IMPRESSION_ID, C.SERVED_AT, AS_OF, *rules.not_null, *rules.nonnegative)
        if c not in df.columns
    ]
    if missing:
        raise KeyError(f"{table.qualified} ds={ds}: columns {missing} are missing")
    if table.name not in CONTRACTS:
        CONTRACTS[table.name] = Contract((), _feature_rules(rules))
    return _run(table, ds, {table.name: df}, window(ds, 0))
