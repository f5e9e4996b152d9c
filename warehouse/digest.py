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

import pyarrow as pa

from warehouse.catalog import Layer, table
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
                data = warehouse.read_arrow(table(name), ds)
                out[f"{layer.value}/{name}/ds={ds}"] = table_digest(data)
    return out


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
