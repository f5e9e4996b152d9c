"""Data contracts of the raw tables, checked with Great Expectations (GX 1.x) on Spark.

Each raw table has one expectation suite (`rules`), run on one derived frame: the partition
plus columns joined in from the tables it is checked against, so cross-table rules are plain
column expectations (`validate`). A run returns a ContractReport; `enforce` and
`enforce_all` turn failures into a DataContractError whose message names, per failed check,
the table, ds, column, expectation, unexpected count and sample rows:

    raw.engagements ds=2026-01-05: column event_ts failed
    expect_column_pair_values_a_to_be_greater_than_b (event_ts > its impression's served_at):
    3 unexpected, e.g. [impression_id=7 action='like' event_ts=... _imp_served_at=...]

Contracts do no I/O and open no SparkSession: the caller reads the partition and the
partitions of its REFERENCES (`reference_days` lists them) and passes them in `frames`
(warehouse.audit does, for a staged day). `run_contract(table, ds, contract, frames, params)`
runs any `Contract` (expectations.py has the building blocks); `check_*_partition` are the
tables' own: raw (rules.py), truth (truth.py), silver (silver.py) and gold (gold.py).
"""

from warehouse.contracts.expectations import MAX_DWELL_S, Contract, LogRules
from warehouse.contracts.report import (
    CheckFailure,
    ContractReport,
    DataContractError,
    enforce,
    enforce_all,
)
from warehouse.contracts.rules import REFERENCES, reference_days
from warehouse.contracts.validate import check_raw_partition, run_contract

__all__ = [
    "MAX_DWELL_S",
    "REFERENCES",
    "CheckFailure",
    "Contract",
    "ContractReport",
    "DataContractError",
    "LogRules",
    "check_raw_partition",
    "enforce",
    "enforce_all",
    "reference_days",
    "run_contract",
]
