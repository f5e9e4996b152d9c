"""Content digests of a warehouse's published days: two roots hold the same data when every
published (layer, table, ds) has the same rows, whatever the files, their row order, the
version ids or the engine (local Spark, a cluster) that wrote them.

    digests = published_digests(Warehouse(root_a))
    differences = compare(digests, published_digests(Warehouse(root_b)))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence

import pyarrow as pa

from warehouse.catalog import Layer, Table, table
from warehouse.store import Warehouse


@dataclasses.dataclass(frozen=True)
class Digest:
    rows: int
    sha256: str  # of the rows as canonical JSON lines, sorted


def table_digest(data: pa.Table) -> Digest:
    """The digest of an Arrow table's rows, independent of their order and of the column
    order; floats are taken exactly (repr), so equal digests mean bit-identical values."""
    lines = sorted(
        json.dumps(row, sort_keys=True, default=_plain, allow_nan=True)
        for row in (_canonical(r) for r in data.to_pylist())
    )
    sha = hashlib.sha256()
    for line in lines:
        sha.update(line.encode())
        sha.update(b"\n")
    return Digest(data.num_rows, sha.hexdigest())


def _canonical(value):
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _plain(value) -> str:
    return str(value)  # dates, timestamps, decimals, bytes: their exact text


def published_digests(warehouse: Warehouse, layers=tuple(Layer)) -> dict[str, Digest]:
    """`layer/table/ds=D` -> Digest for every version the layers' manifests publish."""
    out = {}
    for layer in layers:
        for ds in warehouse.manifest_days(layer):
            for name in sorted(warehouse.manifest(layer, ds)):
                data = warehouse.read_arrow(producer_table(name, layer), ds)
                out[f"{layer.value}/{name}/ds={ds}"] = table_digest(data)
    return out


def producer_table(name: str, layer: Layer) -> Table:
    """The catalog's entry, or one for a table its producer owns (the feature state's tiles,
    silver.state_*: their schema is the producer's, read as written)."""
    try:
        return table(name)
    except KeyError:
        return Table(name=name, layer=layer, schema=None, key=(), doc="producer-owned")


def compare(a: dict[str, Digest], b: dict[str, Digest]) -> list[str]:
    """What differs between two roots' digests, one line each; empty when they are equal."""
    out = [f"{key}: only in the first" for key in sorted(a.keys() - b.keys())]
    out += [f"{key}: only in the second" for key in sorted(b.keys() - a.keys())]
    for key in sorted(a.keys() & b.keys()):
        if a[key] != b[key]:
            out.append(
                f"{key}: {a[key].rows} rows {a[key].sha256[:12]} != {b[key].rows} rows "
                f"{b[key].sha256[:12]}"
            )
    return out


@dataclasses.dataclass(frozen=True)
class ColumnDifference:
    column: str
    rows: int  # rows whose values differ
    max_abs: float | None  # floats: the largest absolute difference; None: not a float
    max_rel: float | None  # floats: the largest difference relative to the value


def column_differences(a: pa.Table, b: pa.Table, key: Sequence[str]) -> list[ColumnDifference]:
    """Where two versions of a table-day differ, column by column, rows matched on `key`
    (floats: by how much; NaN equals NaN). Raises if the keys or the columns differ."""
    import numpy as np

    x = a.to_pandas().sort_values(list(key)).reset_index(drop=True)
    y = b.to_pandas().sort_values(list(key)).reset_index(drop=True)
    if list(x.columns) != list(y.columns) or not x[list(key)].equals(y[list(key)]):
        raise ValueError("the two tables do not hold the same keys and columns")
    out = []
    for column in x.columns:
        u, v = x[column], y[column]
        if u.dtype.kind == "f":
            same = (u.values == v.values) | (np.isnan(u.values) & np.isnan(v.values))
            if not same.all():
                gap = np.abs(u.values - v.values)[~same]
                rel = gap / np.maximum(np.abs(u.values[~same]), np.finfo(float).tiny)
                out.append(ColumnDifference(column, int((~same).sum()), gap.max(), rel.max()))
        else:
            same = u.astype(str).values == v.astype(str).values
            if not same.all():
                out.append(ColumnDifference(column, int((~same).sum()), None, None))
    return out
