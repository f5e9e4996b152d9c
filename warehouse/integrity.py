"""Check what a data root's warehouse has committed, as `feedrank verify` does.

Every day of a layer that has a manifest is checked table by table, as a careful reader
would: the day agrees with the layers it was published with as one unit (truth and raw),
the version the manifest names is there with its `_COMMITTED` marker, its files agree
with the catalog, their Parquet footers hold the rows the marker records, their sha256 is
the marker's, and (where a contract accepted it) the one the contract passed. Each finding
is a `Damage` naming table, day, version and what is wrong; nothing is changed or repaired
here (jobs/verify.py says which job rebuilds the day).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from warehouse.catalog import TABLES, Layer, Table
from warehouse.store import MARKER, VALIDATED, Warehouse, WarehouseError


@dataclasses.dataclass(frozen=True)
class Damage:
    """One thing wrong with a committed version."""

    table: str  # qualified: layer.name
    ds: str
    version: str  # the version the manifest names ("" when the manifest itself is bad)
    check: str  # a short name: missing_folder, missing_marker, rows, checksum, ...
    detail: str  # what was found


@dataclasses.dataclass(frozen=True)
class Checked:
    """What a verification looked at and found."""

    partitions: int  # (table, day) versions checked
    rows: int  # rows the intact ones hold
    damage: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        return not self.damage


def verify(store: Warehouse, layers: Iterable[Layer], days: Iterable[str] | None = None) -> Checked:
    """Check every committed version of the layers' days (all their days when None)."""
    wanted = None if days is None else set(days)
    partitions, rows, damage = 0, 0, []
    for layer in layers:
        for ds in store.manifest_days(layer):
            if wanted is not None and ds not in wanted:
                continue
            try:
                manifest = store.manifest(layer, ds)
                out_of_step = store.out_of_step(layer, ds)
            except (ValueError, KeyError, WarehouseError) as err:  # unreadable or no "tables"
                damage.append(Damage(f"{layer.value}.*", ds, "", "manifest", str(err)))
                continue
            if out_of_step is not None:  # truth and raw of a day from different publishes
                damage.append(Damage(f"{layer.value}.*", ds, "", "out_of_step", out_of_step))
            for name, version in sorted(manifest.items()):
                partitions += 1
                found = list(_check_version(store, _table(name, layer), ds, version))
                damage += [d for d in found if isinstance(d, Damage)]
                rows += sum(n for n in found if isinstance(n, int))
    return Checked(partitions, rows, tuple(damage))


def _table(name: str, layer: Layer) -> Table:
    """The catalog's table, or (feature state tables, named per tile) a schemaless one."""
    known = TABLES.get(name)
    return known if known is not None else Table(name, layer, None, (), "")


def _check_version(store: Warehouse, t: Table, ds: str, version: str) -> Iterator[Damage | int]:
    """The damage of one committed version; then its row count if it is intact."""
    folder = store.version_dir(t, ds, version)

    def damage(check: str, detail: str) -> Damage:
        return Damage(t.qualified, ds, version, check, detail)

    if not folder.is_dir():
        yield damage("missing_folder", f"the version folder {folder} is gone")
        return
    try:
        marker = json.loads((folder / MARKER).read_text())
        rows, checksum = int(marker["rows"]), str(marker["checksum"])
    except FileNotFoundError:
        yield damage("missing_marker", f"{folder} has no {MARKER} marker")
        return
    except (ValueError, KeyError, TypeError) as err:
        yield damage("bad_marker", f"{folder / MARKER} is unreadable: {err!r}")
        return
    try:
        problems = store.check_files(t, ds)
        held = store.footer_rows(t, ds, version)
    except WarehouseError as err:
        yield damage("unreadable", str(err))
        return
    for p in problems:
        yield damage("schema", f"{p.column or 'file'}: {p.check} ({p.detail})")
    if held != rows:
        yield damage("rows", f"the files hold {held} rows, the marker says {rows}")
    actual = store.files_checksum(folder)
    if actual != checksum:
        yield damage(
            "checksum", f"sha256 of the files {actual[:12]}, the marker says {checksum[:12]}"
        )
    accepted = _accepted_checksum(folder / VALIDATED)
    if accepted is not None and accepted != checksum:
        yield damage(
            "validated", f"its contract passed {accepted[:12]}, the marker says {checksum[:12]}"
        )
    if not problems and held == rows and actual == checksum:
        yield held


def _accepted_checksum(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["checksum"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return "(unreadable)"
