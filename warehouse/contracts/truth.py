"""Data contract of truth.truth_impressions: one row per impression of the day, every
probability in [0, 1] and no NaN, expected dwell nonnegative. Evaluation reads this table
as the ceiling that models are measured against, so bad truth is as harmful as bad logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from warehouse.catalog import ACTIONS, IMPRESSIONS, TRUTH_IMPRESSIONS, C, truth_column
from warehouse.contracts.expectations import (
    Contract,
    between,
    exists,
    expect,
    param,
    window,
)
from warehouse.contracts.report import ContractReport
from warehouse.contracts.rules import D, attach

N_IMPRESSIONS = "n_impressions"  # suite parameter: the day's impressions


def _rules() -> list[Any]:
    rule = f"one row per impression of ds (${N_IMPRESSIONS})"
    checks = [
        expect("ExpectTableRowCountToEqual", [], rule, value=param(N_IMPRESSIONS)),
        exists(C.IMPRESSION_ID, D.IN_IMPRESSIONS, IMPRESSIONS),
        between(C.E_DWELL_S, 0.0),
    ]
    return checks + [between(truth_column(a), 0.0, 1.0) for a in ACTIONS]


def _derive(df, frames):
    imps = frames[IMPRESSIONS.name]
    key = C.IMPRESSION_ID
    return attach(df, imps, on=key, ref_key=key, marker=D.IN_IMPRESSIONS)


TRUTH_CONTRACT = Contract((IMPRESSIONS.name,), _rules, _derive)


def check_truth_partition(ds: str, frames: Mapping[str, Any]) -> ContractReport:
    """Run the truth table's contract on its partition ds: frames holds it and ds's
    impressions (Spark DataFrames with the catalog columns)."""
    from warehouse.contracts.validate import run_contract

    params = {**window(ds, 0), N_IMPRESSIONS: frames[IMPRESSIONS.name].count()}
    return run_contract(TRUTH_IMPRESSIONS, ds, TRUTH_CONTRACT, frames, params)
