"""Data contract of gold.training_examples: labels are 0/1, dwell goes with clicks, every
impression of the day is there once, and the sampling draw is a probability.

Column names of the labels come from the catalog (`label_column`); the feature columns were
checked by the silver contract before the labels were joined to them.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from warehouse.catalog import ACTIONS, CLICK, TRAINING_EXAMPLES, C, label_column
from warehouse.contracts.expectations import (
    DAY_END,
    DAY_START,
    DWELL_IFF_CLICK,
    MAX_DWELL_S,
    Contract,
    LogRules,
    between,
    dwell_iff_click,
    dwell_iff_click_rule,
    not_null,
    param,
    window,
)
from warehouse.contracts.report import ContractReport

_CLICK_LABEL = label_column(CLICK)


def _rules() -> list[Any]:
    checks = [
        between(C.SERVED_AT, param(DAY_START), param(DAY_END), strict_max=True),
        not_null(C.POSITION),
        between(C.POSITION, 0),
        between(C.DWELL_S, 0.0, MAX_DWELL_S),
        dwell_iff_click_rule(_CLICK_LABEL, f"{_CLICK_LABEL} = 1"),
        between(C.SAMPLE_U, 0.0, 1.0, strict_max=True),
    ]
    for a in ACTIONS:
        checks += [not_null(label_column(a)), between(label_column(a), 0, 1)]
    return checks


def _derive(df, frames):
    return df.withColumn(DWELL_IFF_CLICK, dwell_iff_click(F.col(_CLICK_LABEL) == 1))


TRAINING_CONTRACT = Contract((), _rules, _derive)


def check_training_partition(ds: str, df, *, clicks_without_dwell: bool = False) -> ContractReport:
    """Run the training set's contract on the partition ds (a Spark DataFrame).
    `clicks_without_dwell`: the log does not record dwell on every click (real logs)."""
    from warehouse.contracts.validate import run_contract

    needed = [C.IMPRESSION_ID, C.SERVED_AT, C.POSITION, C.DWELL_S, C.SAMPLE_U]
    missing = [c for c in (*needed, *map(label_column, ACTIONS)) if c not in df.columns]
    if missing:
        raise KeyError(f"{TRAINING_EXAMPLES.qualified} ds={ds}: columns {missing} are missing")
    frames = {TRAINING_EXAMPLES.name: df}
    params = window(ds, 0, LogRules(clicks_without_dwell=clicks_without_dwell))
    return run_contract(TRAINING_EXAMPLES, ds, TRAINING_CONTRACT, frames, params)
