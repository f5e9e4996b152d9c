"""Parquet partitions with atomic, idempotent commits (write -> audit -> publish).

Layout of a table under the warehouse root:

    <layer>/<table>/ds=2026-01-05/part-*.parquet + _COMMITTED     committed, what readers see
    <layer>/<table>/_staging/ds=2026-01-05/...                     written, not yet published
    <layer>/<table>/_trash/...                                     replaced, being deleted

A write goes to the staging folder and ends by writing the `_COMMITTED` marker there; a
staged partition without a marker is an interrupted write and is never published. Publishing
renames the old partition to the trash and the staged one into place (each rename atomic on a
POSIX filesystem or HDFS), so a crash at any point leaves the old partition, or none, never a
partial one. Readers only read folders that carry a marker. Re-writing a ds replaces it.

One writer per (table, ds) at a time: the DAGs run one active run each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.catalog import C, Table

log = logging.getLogger(__name__)

MARKER = "_COMMITTED"


class WarehouseError(RuntimeError):
    """A read or write the warehouse refuses, with the table and partition named."""


@dataclasses.dataclass(frozen=True)
class PartitionInfo:
    """What a commit marker records."""

    table: str
    ds: str
    rows: int
    written_at: str


class Warehouse:
    """Reads and writes catalog tables under one root folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------
    def table_dir(self, table: Table) -> Path:
        return self.root / table.layer.value / table.name

    def partition_dir(self, table: Table, ds: str, *, staged: bool = False) -> Path:
        base = self.table_dir(table) / "_staging" if staged else self.table_dir(table)
        return base / f"{table.partition_by}={_check_ds(ds)}"

    # -- state ---------------------------------------------------------------------------
    def partitions(self, table: Table) -> list[str]:
        """The committed partitions of a table, oldest first."""
        prefix = f"{table.partition_by}="
        folder = self.table_dir(table)
        if not folder.exists():
            return []
        return sorted(
            p.name[len(prefix) :]
            for p in folder.iterdir()
            if p.name.startswith(prefix) and (p / MARKER).exists()
        )

    def is_committed(self, table: Table, ds: str, *, staged: bool = False) -> bool:
        return (self.partition_dir(table, ds, staged=staged) / MARKER).exists()

    def info(self, table: Table, ds: str, *, staged: bool = False) -> PartitionInfo:
        marker = self.partition_dir(table, ds, staged=staged) / MARKER
        if not marker.exists():
            where = "staged" if staged else "committed"
            raise WarehouseError(f"{table.qualified} has no {where} ds={ds}")
        return PartitionInfo(**json.loads(marker.read_text()))

    # -- writes --------------------------------------------------------------------------
    def write_arrow(
        self, table: Table, ds: str, data: pa.Table | pd.DataFrame, *, publish: bool = True
    ) -> PartitionInfo:
        """Write one partition from Arrow or pandas; publish it unless `publish=False`."""
        arrow = _conform(table, data)
        staged = self._fresh_staging(table, ds)
        pq.write_table(arrow, staged / "part-00000.parquet", compression="zstd")
        info = self._mark(table, ds, staged, arrow.num_rows)
        return self.publish(table, ds) if publish else info

    def write_spark(self, table: Table, ds: str, df, *, publish: bool = True) -> PartitionInfo:
        """Write one partition from a Spark DataFrame (without its ds column)."""
        df = _conform_spark(table, df)
        staged = self._fresh_staging(table, ds)
        df.write.mode("overwrite").option("compression", "zstd").parquet(str(staged))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in staged.glob("*.parquet"))
        info = self._mark(table, ds, staged, rows)
        return self.publish(table, ds) if publish else info

    def publish(self, table: Table, ds: str) -> PartitionInfo:
        """Swap the staged partition in, replacing any committed one."""
        staged = self.partition_dir(table, ds, staged=True)
        if not (staged / MARKER).exists():
            raise WarehouseError(
                f"{table.qualified} ds={ds}: nothing complete is staged "
                "(missing or interrupted write); refusing to publish"
            )
        final = self.partition_dir(table, ds)
        trash = self.table_dir(table) / "_trash" / f"{final.name}.{uuid.uuid4().hex}"
        if final.exists():
            trash.parent.mkdir(parents=True, exist_ok=True)
            final.rename(trash)
        staged.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
        info = self.info(table, ds)
        log.info("published %s ds=%s (%d rows)", table.qualified, ds, info.rows)
        return info

    def discard_staged(self, table: Table, ds: str) -> None:
        shutil.rmtree(self.partition_dir(table, ds, staged=True), ignore_errors=True)

    def _fresh_staging(self, table: Table, ds: str) -> Path:
        staged = self.partition_dir(table, ds, staged=True)
        shutil.rmtree(staged, ignore_errors=True)  # left over from an interrupted write
        staged.mkdir(parents=True)
        return staged

    def _mark(self, table: Table, ds: str, staged: Path, rows: int) -> PartitionInfo:
        info = PartitionInfo(table.name, ds, rows, dt.datetime.now(dt.UTC).isoformat())
        (staged / MARKER).write_text(json.dumps(dataclasses.asdict(info)))
        return info

    # -- reads ---------------------------------------------------------------------------
    def read_arrow(
        self,
        table: Table,
        ds: str | Sequence[str],
        *,
        staged: bool = False,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Committed (or staged) partitions as one Arrow table, with the ds column.

        `columns` reads only those (and ds); a column the table lacks raises.
        """
        parts = []
        for day in self._existing(table, _as_list(ds), staged):
            folder = self.partition_dir(table, day, staged=staged)
            first = next(folder.glob("*.parquet"), None)
            if columns is not None and first is not None:
                have = pq.read_schema(first).names
                missing = [c for c in columns if c not in have]
                if missing:
                    raise WarehouseError(f"{table.qualified} ds={day} has no columns {missing}")
            data = pq.read_table(folder, schema=table.schema, columns=columns)
            parts.append(data.append_column(C.DS, pa.array([day] * data.num_rows, pa.string())))
        if not parts:
            if table.schema is None:
                raise WarehouseError(f"{table.qualified} has no committed partition in {ds}")
            schema = _with_ds(table.schema)
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in (*columns, C.DS)])
            return schema.empty_table()
        return pa.concat_tables(parts)

    def read_pandas(self, table: Table, ds: str | Sequence[str], **kwargs) -> pd.DataFrame:
        return self.read_arrow(table, ds, **kwargs).to_pandas()

    def read_spark(self, spark, table: Table, ds: str | Sequence[str], *, staged: bool = False):
        """Committed (or staged) partitions as a Spark DataFrame, with the ds column."""
        from pyspark.sql.pandas.types import from_arrow_schema

        days = self._existing(table, _as_list(ds), staged)
        if not days:
            return spark.createDataFrame([], from_arrow_schema(_with_ds(table.schema)))
        base = self.partition_dir(table, days[0], staged=staged).parent
        paths = [str(self.partition_dir(table, d, staged=staged)) for d in days]
        reader = spark.read.option("basePath", str(base))
        if table.schema is not None:
            reader = reader.schema(from_arrow_schema(_with_ds(table.schema)))
        return reader.parquet(*paths)

    def _existing(self, table: Table, days: Iterable[str], staged: bool) -> list[str]:
        days = list(days)
        if not days and table.schema is None:  # an empty result needs a schema to have
            raise WarehouseError(f"{table.qualified}: no partitions asked for, and no fixed schema")
        missing = [d for d in days if not self.is_committed(table, d, staged=staged)]
        if missing:
            where = "staged" if staged else "committed"
            raise WarehouseError(f"{table.qualified}: no {where} partition for ds={missing}")
        return days


def _check_ds(ds: str) -> str:
    try:
        dt.date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise WarehouseError(f"ds must be YYYY-MM-DD, got {ds!r}") from None
    return ds


def _as_list(ds: str | Sequence[str]) -> list[str]:
    return [ds] if isinstance(ds, str) else list(ds)


def _with_ds(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(C.DS, pa.string(), nullable=False))


def _conform(table: Table, data: pa.Table | pd.DataFrame) -> pa.Table:
    """Cast to the catalog schema, naming the table and column when it does not fit."""
    if table.schema is None:
        arrow = (
            pa.Table.from_pandas(data, preserve_index=False)
            if isinstance(data, pd.DataFrame)
            else data
        )
        _check_no_partition_column(table, arrow.column_names)
        return arrow
    columns = list(data.columns) if isinstance(data, pd.DataFrame) else data.column_names
    _check_columns(table, columns)
    try:
        if isinstance(data, pd.DataFrame):
            return pa.Table.from_pandas(
                data[table.columns], schema=table.schema, preserve_index=False
            )
        return data.select(table.columns).cast(table.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as err:
        raise WarehouseError(f"{table.qualified}: {err}") from None


def _conform_spark(table: Table, df):
    from pyspark.sql.pandas.types import from_arrow_schema

    if table.schema is None:  # the producer owns the schema; only the partition column is ours
        _check_no_partition_column(table, df.columns)
        return df
    _check_columns(table, df.columns)
    expected = {f.name: f.dataType for f in from_arrow_schema(table.schema).fields}
    wrong = [
        f"{f.name} is {f.dataType.simpleString()}, catalog says {expected[f.name].simpleString()}"
        for f in df.schema.fields
        if f.name in expected and f.dataType != expected[f.name]
    ]
    if wrong:
        raise WarehouseError(f"{table.qualified}: " + "; ".join(wrong))
    return df.select(*table.columns)


def _check_no_partition_column(table: Table, columns: Iterable[str]) -> None:
    if table.partition_by in columns:
        raise WarehouseError(f"{table.qualified}: drop {table.partition_by} before writing")


def _check_columns(table: Table, columns: Iterable[str]) -> None:
    columns = set(columns) - {table.partition_by}
    missing, extra = set(table.columns) - columns, columns - set(table.columns)
    if missing or extra:
        raise WarehouseError(
            f"{table.qualified}: columns do not match the catalog "
            f"(missing {sorted(missing)}, unexpected {sorted(extra)})"
        )
