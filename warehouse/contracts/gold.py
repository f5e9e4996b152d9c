"""Data contract of gold.training_examples: labels are 0/1, dwell goes with clicks, every
impression of the day is there once, and the sampling draw is a probability.

Column names of the labels come from the catalog (`label_column`); the feature columns were
checked by the silver contract before the labels were joined to them.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from warehouse.catalog import ACTIONS, TRAINING_EXAMPLES, C, label_column
from warehouse.contracts.report import ContractReport
from warehouse.contracts.rules import (
    CONTRACTS,
    DAY_END,
    DAY_START,
    MAX_DWELL_S,
    Contract,
    D,
    _between,
    _expect,
    _param,
    window,
)


def _rules() -> list[Any]:
    checks = [
        _between(C.SERVED_AT, _param(DAY_START), _param(DAY_END), strict_max=True),
        _expect("ExpectColumnValuesToNotBeNull", [C.POSITION], "position set", column=C.POSITION),
        _between(C.POSITION, 0),
        _between(C.DWELL_S, 0.0, MAX_DWELL_S),
        _expect(
            "ExpectColumnValuesToBeInSet",
            [C.DWELL_S],
            f"dwell_s set exactly when {label_column('click')} = 1",
            show=[label_column("click"), C.DWELL_S],
            column=D.DWELL_IFF_CLICK,
            value_set=[True],
        ),
        _between(C.SAMPLE_U, 0.0, 1.0, strict_max=True),
    ]
    for a in ACTIONS:
        col = label_column(a)
        checks.append(_expect("ExpectColumnValuesToNotBeNull", [col], f"{col} set", column=col))
        checks.append(_between(col, 0, 1))
    return checks


def _derive(df, frames):
    iff = F.col(C.DWELL_S).isNotNull() == (F.col(label_column("click")) == 1)
    return df.withColumn(D.DWELL_IFF_CLICK, iff)


def check_training_partition(ds: str, df) -> ContractReport:
    """Run the training set's contract on the partition ds (a Spark DataFrame)."""
    from warehouse.contracts.validate import _run

    needed = [C.IMPRESSION_ID, C.SERVED_AT, C.POSITION, C.DWELL_S, C.SAMPLE_U]
    missing = [c for c in (*needed, *map(label_column, ACTIONS)) if c not in df.columns]
    if missing:
        raise KeyError(f"{TRAINING_EXAMPLES.qualified} ds={ds}: columns {missing} are missing")
    CONTRACTS.setdefault(TRAINING_EXAMPLES.name, Contract((), _rules, _derive))
    return _run(TRAINING_EXAMPLES, ds, {TRAINING_EXAMPLES.name: df}, window(ds, 0))
