"""Parquet partitions as immutable versions, published a whole day of a layer at a time.

Layout of a layer under the warehouse root (DESIGN: only warehouse/ builds these paths):

    <layer>/<table>/ds=2026-01-05/v-<id>/part-*.parquet   one version of a partition; never edited
                                        /_COMMITTED       the write finished: rows, checksum, meta
                                        /_VALIDATED       its contract passed, for these bytes
                                        /_SUPERSEDED      when it stopped being current
    <layer>/<table>/_staging/ds=2026-01-05.json           the version staged for publishing
    <layer>/_manifests/ds=2026-01-05.json                 the layer's day: each table's version
    <layer>/_locks/ds=2026-01-05.lock                     held by the run that writes the day

Write -> audit -> publish:

1. A write goes to a fresh version folder, ends with its `_COMMITTED` marker (rows, a sha256
   of the data files, and what the writer records in `meta`), then points the table's
   staging pointer at it. A crash leaves an orphan folder, never a staged or visible one.
2. `accept` records that the staged version passed its contract (`_VALIDATED`, with the
   checksum it passed for); the job calls it after the contract, never before.
3. `publish_day` checks each staged version again (files' checksum and Parquet footers' row
   count against the marker and the acceptance) and then replaces the layer's day manifest
   in one atomic rename. That rename is the commit: readers resolve every partition through
   the manifest, so they see a day of a layer as it was, or whole as it is, never a mix.
4. A read checks again what it resolved: the version the manifest names must be there (else
   an error naming table, day and version), its footers must hold the marker's rows, and for
   `checksum_tables` its files the marker's sha256 (warehouse.integrity checks a whole root).

Two more records ride on these commits. A day of several layers published as one unit
(`publish_together`: the simulator's truth and raw) has each layer's manifest name the other
layers' versions (`paired`); a read refuses a day whose layers disagree (`out_of_step`: a
crash between the two commits). A write of a derived table (silver, gold) records in its
marker's meta the versions of what this Warehouse object read before it (`inputs`), and is
refused if one of them is stale (warehouse.lineage) unless `allow_stale`.

This is a small commit log of our own (Delta Lake and Iceberg do the same with theirs, but
their Spark connectors need jars from a registry we cannot reach). A reader that resolved a
version keeps reading it after a newer one is published: old versions stay until `collect`
removes those superseded more than `grace_s` ago (publishing collects the day it touched).

One run per (layer, ds) at a time: `lock` takes an exclusive flock, released when the
process ends however it ends, and an overlapping run fails at once with the holder named.
flock needs a local or POSIX filesystem; on an object store the scheduler's one-run-per-day
setting (max_active_runs=1) is the guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import lineage
from warehouse.catalog import C, Layer, Table
from warehouse.config import ALL_TABLES, CHECKSUM_TABLES

log = logging.getLogger(__name__)

MARKER = "_COMMITTED"  # in a version folder: the write finished
VALIDATED = "_VALIDATED"  # in a version folder: its contract passed for these bytes
SUPERSEDED = "_SUPERSEDED"  # in a version folder: replaced by a newer one at this time
GRACE_S = 6 * 3600  # a superseded version outlives its publish by this long, for its readers


class WarehouseError(RuntimeError):
    """A read or write the warehouse refuses, with the table and partition named."""


class StaleInput(WarehouseError):
    """A derived table's write refused: an input it read is stale (warehouse.lineage)."""


@dataclasses.dataclass(frozen=True)
class PartitionInfo:
    """What a commit marker records about one version of a partition."""

    table: str
    ds: str
    rows: int
    written_at: str
    version: str = ""  # the version folder's name
    checksum: str = ""  # sha256 of the data files, in name order
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # the writer's own notes


@dataclasses.dataclass(frozen=True)
class FileProblem:
    """A partition's files disagree with the catalog, found before reading any row."""

    column: str | None  # None for a problem with a whole file
    check: str  # named like the contracts' expectations, e.g. expect_column_to_exist
    detail: str  # what was found, naming the file


class Warehouse:
    """Reads and writes catalog tables under one root folder.

    Every read of a committed version checks its Parquet footers' row count against its
    `_COMMITTED` marker (cheap: footers only). Reads of `checksum_tables` (default
    CHECKSUM_TABLES: what feeds a model or leaves the warehouse; the `warehouse` settings
    section) also check the files' sha256 against the marker, once per version and process;
    `"*"` checks every table, `()` none unless a read asks (`verify=True`).
    """

    def __init__(
        self,
        root: Path,
        *,
        checksum_tables: Collection[str] = CHECKSUM_TABLES,
        allow_stale: bool = False,
    ):
        self.root = Path(root)
        self.checksum_tables = frozenset(checksum_tables)
        self.allow_stale = allow_stale  # build derived tables on stale inputs (lineage)
        self._checksummed: set[Path] = set()  # versions whose sha256 this process checked
        # The committed versions this object read, (qualified table, ds) -> version: what a
        # derived table written through it records as its inputs (warehouse.lineage).
        self._reads: dict[tuple[str, str], lineage.Read] = {}

    # -- paths ---------------------------------------------------------------------------
    def layer_dir(self, layer: Layer) -> Path:
        """A layer's folder: its tables, day manifests and locks."""
        return self.root / layer.value

    def table_dir(self, table: Table) -> Path:
        return self.root / table.layer.value / table.name

    def partition_dir(self, table: Table, ds: str, *, staged: bool = False) -> Path:
        """The version folder readers of (table, ds) see: the committed one, or the staged."""
        version = self.version(table, ds, staged=staged)
        if version is None:
            where = "staged" if staged else "committed"
            raise WarehouseError(f"{table.qualified}: no {where} partition for ds={ds}")
        return self._day_dir(table, ds) / version

    def _day_dir(self, table: Table, ds: str) -> Path:
        return self.table_dir(table) / f"{table.partition_by}={_check_ds(ds)}"

    def _pointer(self, table: Table, ds: str) -> Path:
        return self.table_dir(table) / "_staging" / f"{table.partition_by}={_check_ds(ds)}.json"

    def _manifest_path(self, layer: Layer, ds: str) -> Path:
        return self.root / layer.value / "_manifests" / f"{C.DS}={_check_ds(ds)}.json"

    # -- state ---------------------------------------------------------------------------
    def manifest(self, layer: Layer, ds: str) -> dict[str, str]:
        """The committed version of each table of a layer's day; empty if none."""
        return self.manifest_record(layer, ds).get("tables", {})

    def manifest_record(self, layer: Layer, ds: str) -> dict[str, Any]:
        """A layer's day manifest as written: `tables`, and `paired` where the day was
        published with another layer's as one unit (publish_together); empty if none."""
        path = self._manifest_path(layer, ds)
        return _read_manifest(path, layer.value, ds) if path.exists() else {}

    def out_of_step(self, layer: Layer, ds: str) -> str | None:
        """Why a layer's day disagrees with the other layers it was published with as one
        unit (publish_together), or None: it agrees, or was published alone (older roots)."""
        for other, want in sorted(self.manifest_record(layer, ds).get("paired", {}).items()):
            have = self.manifest(Layer(other), ds)
            moved = [
                f"{other}.{name}: the unit's version {version}, "
                f"{other}'s manifest names {have.get(name) or 'none'}"
                for name, version in sorted(want.items())
                if have.get(name) != version
            ]
            if moved:
                return (
                    f"{layer.value} ds={ds} and {other} ds={ds} were published as one unit "
                    f"but are out of step ({'; '.join(moved)}): a publish stopped between "
                    f"the two layers' commits, or one layer was republished alone; refusing "
                    f"to read either. Re-run the day: `spark-submit jobs/simulate_platform.py "
                    f"--ds {ds}` (its publish step alone finishes an interrupted commit)"
                )
        return None

    def version(self, table: Table, ds: str, *, staged: bool = False) -> str | None:
        """The committed (or staged) version of (table, ds) that is complete, or None.
        A committed version that the manifest names but whose files are gone raises."""
        if staged:
            pointer = self._pointer(table, ds)
            version = json.loads(pointer.read_text())["version"] if pointer.exists() else None
        else:
            version = self.manifest(table.layer, ds).get(table.name)
        if version is None or (self._day_dir(table, ds) / version / MARKER).exists():
            return version
        if staged:  # an interrupted write: nothing is staged
            return None
        # The manifest is the commit: the version it names must be there, whole.
        folder = self._day_dir(table, ds) / version
        lost = "its _COMMITTED marker" if folder.exists() else "its folder"
        raise WarehouseError(
            f"{table.qualified} ds={ds}: the layer's manifest names version {version}, but "
            f"{lost} is missing ({folder}); the day's data is lost: rebuild the day "
            f"(`feedrank verify --layer {table.layer.value} --ds {ds}` says how)"
        )

    def manifest_days(self, layer: Layer) -> list[str]:
        """The days a layer has a manifest for, oldest first."""
        folder, prefix = self.root / layer.value / "_manifests", f"{C.DS}="
        return sorted(p.name[len(prefix) : -len(".json")] for p in folder.glob(f"{prefix}*.json"))

    def partitions(self, table: Table) -> list[str]:
        """The committed partitions of a table, oldest first. A day whose manifest names a
        version that is gone raises (see `version`): a reader never skips a lost day."""
        return [ds for ds in self.manifest_days(table.layer) if self.version(table, ds)]

    def version_dir(self, table: Table, ds: str, version: str) -> Path:
        """The folder of one version of (table, ds), whether or not it exists."""
        return self._day_dir(table, ds) / version

    def footer_rows(self, table: Table, ds: str, version: str) -> int:
        """The rows the Parquet footers of a version's files say they hold."""
        return self._footer_rows(table, ds, self.version_dir(table, ds, version))

    @staticmethod
    def files_checksum(folder: Path) -> str:
        """The sha256 of a version folder's data files, as its commit marker records it."""
        return _checksum(folder)

    def is_committed(self, table: Table, ds: str, *, staged: bool = False) -> bool:
        return self.version(table, ds, staged=staged) is not None

    def info(self, table: Table, ds: str, *, staged: bool = False) -> PartitionInfo:
        folder = self.partition_dir(table, ds, staged=staged)
        return PartitionInfo(**json.loads((folder / MARKER).read_text()))

    # -- writes --------------------------------------------------------------------------
    def write_arrow(
        self,
        table: Table,
        ds: str,
        data: pa.Table | pd.DataFrame,
        *,
        publish: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> PartitionInfo:
        """Write one partition from Arrow or pandas and stage it. `publish=True` is for
        tables without a contract: the writer vouches for the data and it is published."""
        arrow = _conform(table, data)
        meta = self._with_inputs(table, ds, meta)
        folder = self._fresh_version(table, ds)
        with _discarded_on_failure(folder):
            pq.write_table(arrow, folder / "part-00000.parquet", compression="zstd")
            info = self._stage(table, ds, folder, arrow.num_rows, meta)
        return self._published(table, ds, info, publish)

    def write_spark(
        self, table: Table, ds: str, df, *, publish: bool = True, meta: dict[str, Any] | None = None
    ) -> PartitionInfo:
        """Write one partition from a Spark DataFrame (without its ds column); see write_arrow.

        Each file's rows are sorted by the table's key, so the files hold the same rows in
        the same order wherever the job ran: a task's rows otherwise arrive in the order its
        shuffle fetched them, which differs between a local master and a cluster, and a
        reader that streams the files in order (the deep ranker's batches) would see
        another order and train another model."""
        df = _conform_spark(table, df).sortWithinPartitions(*table.key)
        meta = self._with_inputs(table, ds, meta)
        folder = self._fresh_version(table, ds)
        with _discarded_on_failure(folder):
            df.write.mode("overwrite").option("compression", "zstd").parquet(str(folder))
            info = self._stage(table, ds, folder, self._footer_rows(table, ds, folder), meta)
        return self._published(table, ds, info, publish)

    def accept(self, table: Table, ds: str, *, by: str) -> PartitionInfo:
        """Record that the staged partition passed its contract (`by` names it), for the
        bytes it holds now: publishing refuses files that changed after this."""
        info = self.info(table, ds, staged=True)
        folder = self.partition_dir(table, ds, staged=True)
        self._verify(table, ds, folder, info, info.checksum)
        record = {"checksum": info.checksum, "rows": info.rows, "by": by, "at": _now()}
        _atomic_write(folder / VALIDATED, json.dumps(record))
        return info

    def publish(self, table: Table, ds: str) -> PartitionInfo:
        """Publish one table's staged partition; see publish_day."""
        return self.publish_day([table], ds)[table.name]

    def publish_day(
        self,
        tables: Sequence[Table],
        ds: str,
        *,
        paired: Mapping[str, Mapping[str, str]] | None = None,
    ) -> dict[str, PartitionInfo]:
        """Publish the staged partitions of several tables of one layer as one commit: the
        layer's day manifest names all their new versions, or (after a crash) none.

        Each staged version must have passed its contract (`accept`) for the bytes it holds,
        and its Parquet footers must hold the rows its marker records. `paired` (other
        layer -> table -> version) is what publish_together records."""
        layers = {t.layer for t in tables}
        if len(layers) != 1:
            raise ValueError(f"publish_day commits one layer at a time, got {sorted(layers)}")
        staged = self.verify_staged(tables, ds)
        layer = layers.pop()
        before = self.manifest(layer, ds)
        tables_now = {**before, **{name: info.version for name, info in staged.items()}}
        self._commit_manifest(layer, ds, tables_now, paired)
        for t in tables:
            info = staged[t.name]
            self._after_publish(t, ds, info.version, before.get(t.name))
            log.info("published %s ds=%s (%d rows)", t.qualified, ds, info.rows)
        return staged

    def publish_together(
        self, groups: Sequence[Sequence[Table]], ds: str
    ) -> dict[str, PartitionInfo]:
        """Publish a day of several layers (the simulator's truth and raw) as one unit.

        Each group is one layer's tables, committed in the order given. Every layer's
        manifest records the versions the other layers' tables have in the unit (`paired`),
        so a crash between two layers' commits leaves a day that every read of either layer
        refuses (`out_of_step`, naming both versions), never one read half old, half new.
        Re-running finishes the unit: what an earlier try committed is no longer staged
        and keeps its version. Returns the info of every table of the unit."""
        tables = [t for group in groups for t in group]
        todo = [t for t in tables if self.is_committed(t, ds, staged=True)]
        self.verify_staged(todo, ds)  # every table is sound before the first commit
        for t in tables:
            if t not in todo and not self.is_committed(t, ds):
                raise WarehouseError(f"{t.qualified} ds={ds}: nothing staged or committed")
        unit = {
            group[0].layer.value: {
                t.name: self.version(t, ds, staged=t in todo) or "" for t in group
            }
            for group in groups
        }
        for group in groups:
            layer = group[0].layer
            paired = {other: v for other, v in unit.items() if other != layer.value}
            mine = [t for t in group if t in todo]
            if mine:
                self.publish_day(mine, ds, paired=paired)
            elif self.manifest_record(layer, ds).get("paired") != paired:
                self._commit_manifest(layer, ds, self.manifest(layer, ds), paired)
        return {t.name: self.info(t, ds) for t in tables}

    def _commit_manifest(self, layer: Layer, ds: str, tables, paired) -> None:
        body = {"layer": layer.value, "ds": ds, "tables": dict(tables), "published_at": _now()}
        if paired:
            body["paired"] = {k: dict(v) for k, v in paired.items()}
        _atomic_write(self._manifest_path(layer, ds), json.dumps(body, indent=1))  # the commit

    def verify_staged(self, tables: Sequence[Table], ds: str) -> dict[str, PartitionInfo]:
        """Each table's staged version, checked as publishing checks it: complete, accepted
        by its contract, its files unchanged since and holding the rows its marker says.
        A job publishing several layers checks them all before it commits the first."""
        staged = {}
        for t in tables:
            if not self.is_committed(t, ds, staged=True):
                raise WarehouseError(
                    f"{t.qualified} ds={ds}: nothing complete is staged "
                    "(missing or interrupted write); refusing to publish"
                )
            folder = self.partition_dir(t, ds, staged=True)
            passed = folder / VALIDATED
            if not passed.exists():
                raise WarehouseError(
                    f"{t.qualified} ds={ds}: the staged version {folder.name} has not passed "
                    "its contract; refusing to publish"
                )
            info = self.info(t, ds, staged=True)
            self._verify(t, ds, folder, info, json.loads(passed.read_text())["checksum"])
            staged[t.name] = info
        return staged

    @contextlib.contextmanager
    def lock(self, layer: Layer, ds: str, *, job: str) -> Iterator[None]:
        """Hold (layer, ds) for one run: an overlapping run fails at once, naming the holder."""
        path = self.root / layer.value / "_locks" / f"{C.DS}={_check_ds(ds)}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = path.read_text().strip() or "another run"
                raise WarehouseError(
                    f"{layer.value} ds={ds} is being written by {holder}; refusing to start "
                    f"an overlapping {job} (rerun it once that run is done)"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{job} (pid {os.getpid()}, since {_now()})".encode())
            yield
        finally:
            os.close(fd)  # releases the flock; so does the death of the process

    def collect(self, table: Table, ds: str, *, grace_s: float = GRACE_S) -> list[str]:
        """Delete versions of (table, ds) that are neither committed nor staged and were
        superseded (or, never published, written) more than grace_s ago; returns them."""
        keep = {self.version(table, ds), self.version(table, ds, staged=True)}
        day, removed = self._day_dir(table, ds), []
        if not day.exists():
            return removed
        for folder in day.iterdir():
            if folder.name in keep or not folder.is_dir():
                continue
            since = folder / SUPERSEDED
            at = since.stat().st_mtime if since.exists() else folder.stat().st_mtime
            if time.time() - at >= grace_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    def _with_inputs(self, table: Table, ds: str, meta: dict[str, Any] | None) -> dict[str, Any]:
        """The writer's meta, plus (for a derived table) the versions of the inputs this
        object read: refused, before anything is written, if one of them is stale."""
        meta = dict(meta or {})
        if table.layer not in lineage.DERIVED:
            return meta
        if not self.allow_stale and (why := lineage.Lineage(self).refusal(table, ds, self._reads)):
            raise StaleInput(why)
        return {**meta, lineage.INPUTS: lineage.inputs_to_record(self._reads, table, ds)}

    def refuse_stale(self, table: Table, days: Iterable[str], *, use: str) -> None:
        """For a job whose output is not a warehouse table (a model, the feed store): raise
        StaleInput if a committed day of `table` is stale, unless allow_stale."""
        if self.allow_stale:
            return
        look = lineage.Lineage(self)
        for ds in days:
            version = self.version(table, ds)
            found = look.stale(table.qualified, ds, version) if version else None
            if found is not None:
                raise StaleInput(
                    f"refusing to {use}: {found}; rebuild it first: "
                    f"{lineage.rebuild_command(table.qualified, ds)} (`feedrank verify` "
                    f"lists every stale partition and its command), or set {lineage.ALLOW} "
                    "to go on anyway"
                )

    def version_marker(self, table: Table, ds: str, version: str) -> dict[str, Any]:
        """A version's commit marker as written ({} if it is gone or unreadable)."""
        try:
            marker = json.loads((self.version_dir(table, ds, version) / MARKER).read_text())
        except (FileNotFoundError, ValueError):
            return {}  # `feedrank verify`'s integrity check names it
        return marker if isinstance(marker, dict) else {}

    def _fresh_version(self, table: Table, ds: str) -> Path:
        # Unstage first: if this write dies, nothing is staged rather than an older write.
        self._pointer(table, ds).unlink(missing_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        folder = self._day_dir(table, ds) / f"v-{stamp}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def _stage(self, table, ds, folder: Path, rows: int, meta) -> PartitionInfo:
        """Mark the written folder complete and point the table's staging pointer at it."""
        info = PartitionInfo(
            table.name, ds, rows, _now(), folder.name, _checksum(folder), dict(meta or {})
        )
        _atomic_write(folder / MARKER, json.dumps(dataclasses.asdict(info)))
        _atomic_write(self._pointer(table, ds), json.dumps({"version": folder.name}))
        return info

    def _published(self, table, ds, info: PartitionInfo, publish: bool) -> PartitionInfo:
        if not publish:
            return info
        self.accept(table, ds, by="its writer (no contract)")
        return self.publish(table, ds)

    def _verify(self, table, ds, folder: Path, info: PartitionInfo, accepted: str) -> None:
        """The staged files are the ones written and accepted, and hold the rows recorded."""
        checksum = _checksum(folder)
        if checksum != info.checksum or checksum != accepted:
            raise WarehouseError(
                f"{table.qualified} ds={ds}: the files of version {folder.name} changed after "
                f"they were written or validated (checksum {checksum[:12]}, written "
                f"{info.checksum[:12]}, validated {accepted[:12]}); refusing to publish"
            )
        rows = self._footer_rows(table, ds, folder)
        if rows != info.rows:
            raise WarehouseError(
                f"{table.qualified} ds={ds}: the files hold {rows} rows, the commit marker "
                f"says {info.rows}; refusing to publish"
            )

    def _footer_rows(self, table: Table, ds: str, folder: Path) -> int:
        try:
            return sum(pq.ParquetFile(f).metadata.num_rows for f in _data_files(folder))
        except (pa.ArrowInvalid, OSError) as err:
            raise WarehouseError(f"{table.qualified} ds={ds}: unreadable Parquet: {err}") from None

    def _after_publish(self, table: Table, ds: str, version: str, old: str | None) -> None:
        pointer = self._pointer(table, ds)
        if pointer.exists() and json.loads(pointer.read_text())["version"] == version:
            pointer.unlink(missing_ok=True)
        if old is not None and old != version and (self._day_dir(table, ds) / old).exists():
            _atomic_write(self._day_dir(table, ds) / old / SUPERSEDED, _now())
        self.collect(table, ds)

    # -- reads ---------------------------------------------------------------------------
    def check_files(self, table: Table, ds: str, *, staged: bool = False) -> list[FileProblem]:
        """Compare each data file's own schema (its footer) with the catalog, before any
        reader projects the files onto the catalog schema (which fills an absent column
        with nulls and would hide it). Tables the producer owns are checked for readability."""
        folder = self.partition_dir(table, ds, staged=staged)
        problems: dict[tuple[str | None, str], list[str]] = {}
        for f in _data_files(folder):
            try:
                schema = pq.read_schema(f)
            except (pa.ArrowInvalid, OSError) as err:
                problems.setdefault((None, "parquet_file_readable"), []).append(f"{f.name}: {err}")
                continue
            if table.schema is None:
                continue
            for want in table.schema:
                if want.name not in schema.names:
                    problems.setdefault((want.name, "expect_column_to_exist"), []).append(
                        f"absent from {f.name}"
                    )
                elif not _same_type(schema.field(want.name).type, want.type):
                    got = schema.field(want.name).type
                    problems.setdefault(
                        (want.name, "expect_column_values_to_be_of_type"), []
                    ).append(f"{f.name} has {got}, the catalog says {want.type}")
            for extra in sorted(set(schema.names) - set(table.columns)):
                problems.setdefault((extra, "expect_table_columns_to_match_set"), []).append(
                    f"{f.name} has it, the catalog does not"
                )
        return [FileProblem(col, check, "; ".join(seen)) for (col, check), seen in problems.items()]

    def _checked_dir(self, table: Table, ds: str, staged: bool, verify: bool | None) -> Path:
        """The version folder to read, checked: its files agree with the catalog and, for a
        committed version, their footers hold the rows its marker records and, where
        `verify` (default: the table is one of checksum_tables), their sha256 is the
        marker's. (A staged version is its writer's, checked by `accept` and publishing;
        its contract reads it first, to name bad rows.) A committed day published with
        another layer's as one unit must agree with it (`out_of_step`)."""
        folder = self.partition_dir(table, ds, staged=staged)
        if not staged and (why := self.out_of_step(table.layer, ds)) is not None:
            raise WarehouseError(why)
        problems = self.check_files(table, ds, staged=staged)
        if problems:
            found = "; ".join(f"{p.column or 'file'}: {p.check} ({p.detail})" for p in problems)
            raise WarehouseError(
                f"{table.qualified} ds={ds}: files disagree with the catalog: {found}"
            )
        if staged and not verify:
            return folder
        info = self.info(table, ds, staged=staged)
        if not staged:  # an input of what this object writes next (warehouse.lineage)
            self._reads[table.qualified, ds] = lineage.Read(info.version, info.checksum)
        rows = self._footer_rows(table, ds, folder)
        if rows != info.rows:
            raise WarehouseError(
                f"{table.qualified} ds={ds}: the files of version {folder.name} hold {rows} "
                f"rows, its commit marker says {info.rows}; refusing to read them "
                f"(rebuild the day; `feedrank verify --ds {ds}` checks the others)"
            )
        if verify is None:
            verify = ALL_TABLES in self.checksum_tables or table.name in self.checksum_tables
        if verify and folder not in self._checksummed:
            checksum = _checksum(folder)
            if checksum != info.checksum:
                raise WarehouseError(
                    f"{table.qualified} ds={ds}: the files of version {folder.name} changed "
                    f"after they were written (sha256 {checksum[:12]}, its commit marker says "
                    f"{info.checksum[:12]}); refusing to read them (rebuild the day)"
                )
            self._checksummed.add(folder)
        return folder

    def read_arrow(
        self,
        table: Table,
        ds: str | Sequence[str],
        *,
        staged: bool = False,
        columns: Sequence[str] | None = None,
        verify: bool | None = None,
    ) -> pa.Table:
        """Committed (or staged) partitions as one Arrow table, with the ds column.

        `columns` reads only those (and ds); a column the table lacks raises. `verify`
        checks the files' sha256 (default: for checksum_tables).
        """
        parts = []
        for day in self._existing(table, _as_list(ds), staged):
            folder = self._checked_dir(table, day, staged, verify)
            first = next(iter(_data_files(folder)), None)
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

    def iter_batches(
        self,
        table: Table,
        ds: str | Sequence[str],
        *,
        columns: Sequence[str] | None = None,
        batch_rows: int = 65_536,
        verify: bool | None = None,
    ) -> Iterator[pa.Table]:
        """Committed partitions as Arrow tables of at most `batch_rows` rows, day by day and
        file by file in name order (the same order on every pass), without the ds column:
        a reader streams days it could not hold in memory. A column a day lacks raises."""
        for day in self._existing(table, _as_list(ds), False):
            for f in _data_files(self._checked_dir(table, day, False, verify)):
                parquet = pq.ParquetFile(f)
                missing = [c for c in columns or () if c not in parquet.schema_arrow.names]
                if missing:
                    raise WarehouseError(f"{table.qualified} ds={day} has no columns {missing}")
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                    yield pa.Table.from_batches([batch])

    def read_pandas(self, table: Table, ds: str | Sequence[str], **kwargs) -> pd.DataFrame:
        return self.read_arrow(table, ds, **kwargs).to_pandas()

    def read_spark(
        self,
        spark,
        table: Table,
        ds: str | Sequence[str],
        *,
        staged: bool | Collection[str] = False,
        verify: bool | None = None,
    ):
        """Committed (or staged) partitions as a Spark DataFrame, with the ds column.

        `staged` is True (every day staged), False (every day committed), or the days to
        read staged while the others are read committed (a job checking its new day against
        the ones before it)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        days = _as_list(ds)
        from_staging = set(days) if staged is True else set(staged or ())
        paths = []
        for flag in (True, False):
            group = [d for d in days if (d in from_staging) == flag]
            if group or not days:  # no day at all: _existing says whether that can be read
                found = self._existing(table, group, flag)
                paths += [str(self._checked_dir(table, d, flag, verify)) for d in found]
        if not paths:
            return spark.createDataFrame([], from_arrow_schema(_with_ds(table.schema)))
        # The version folders sit under ds=...: Spark takes ds from the path below basePath.
        reader = spark.read.option("basePath", str(self.table_dir(table)))
        if table.schema is not None:
            reader = reader.schema(from_arrow_schema(_with_ds(table.schema)))
        elif (written := _written_spark_schema(table, Path(paths[0]))) is not None:
            reader = reader.schema(written)
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


_SPARK_ROW_METADATA = b"org.apache.spark.sql.parquet.row.metadata"


def _written_spark_schema(table: Table, folder: Path):
    """The Spark schema of a table without a catalog schema (silver: its producer's), plus
    ds: what Spark infers from one data file's footer (the row schema Spark wrote there),
    read here on the driver. Handed to the reader, it saves Spark's inference, a job per
    read. None for files Spark did not write: Spark infers theirs."""
    from pyspark.sql import types as T

    files = _data_files(folder)
    if not files:
        return None
    try:
        meta = pq.read_metadata(files[0])
    except (pa.ArrowInvalid, OSError) as err:
        raise WarehouseError(f"{table.qualified}: unreadable Parquet {files[0]}: {err}") from None
    written = (meta.metadata or {}).get(_SPARK_ROW_METADATA)
    if written is None:
        return None
    schema = T.StructType.fromJson(json.loads(written))
    return T.StructType([*schema.fields, T.StructField(C.DS, T.StringType())])


@contextlib.contextmanager
def _discarded_on_failure(folder: Path) -> Iterator[None]:
    """Remove a version folder at once if its write fails (a full disk, a killed Spark
    job): the partial files would otherwise wait for a later `collect`. The staging pointer
    was removed before the write began, so nothing points at the folder."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("write of %s failed: removed its partial version", folder)
        raise


def _read_manifest(path: Path, layer: str, ds: str) -> dict[str, Any]:
    """A layer's day manifest, checked; a WarehouseError naming the file and what is wrong."""
    where = f"the manifest of {layer} ds={ds} ({path})"
    text = path.read_text()
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        ends = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        cut = " (truncated?)" if ends else ""
        raise WarehouseError(
            f"{where} is not valid JSON{cut}: {err.msg} (line {err.lineno}, column "
            f"{err.colno}); restore it from a backup or rebuild the day"
        ) from None
    tables = body.get("tables") if isinstance(body, dict) else None
    if not isinstance(tables, dict):
        problem = "has no 'tables' key" if isinstance(body, dict) else "is not a JSON object"
        raise WarehouseError(f"{where} {problem}; restore it from a backup or rebuild the day")
    bad = sorted(k for k, v in tables.items() if not isinstance(v, str) or not v)
    if bad:
        raise WarehouseError(f"{where}: tables {bad} name no version (a non-empty string)")
    paired = body.get("paired", {})
    if not isinstance(paired, dict) or not all(isinstance(v, dict) for v in paired.values()):
        raise WarehouseError(f"{where}: 'paired' is not an object of layers' tables")
    return body


def _check_ds(ds: str) -> str:
    try:
        dt.date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise WarehouseError(f"ds must be YYYY-MM-DD, got {ds!r}") from None
    return ds


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _data_files(folder: Path) -> list[Path]:
    """The Parquet files of a version folder, in name order (Spark's .crc files and the
    markers are not data)."""
    return sorted(f for f in folder.glob("*.parquet") if not f.name.startswith((".", "_")))


def _checksum(folder: Path) -> str:
    digest = hashlib.sha256()
    for f in _data_files(folder):
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    """Write a small file so that readers see the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    """Equal as data, ignoring list item names ('element' from Spark, 'item' from Arrow)."""
    if pa.types.is_list(got) and pa.types.is_list(want):
        return _same_type(got.value_type, want.value_type)
    return got.equals(want)


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
    differ = [f for f in df.schema.fields if f.dataType != expected[f.name]]
    # The same type but for the nullability of nested elements (collect_set's arrays hold no
    # null, the catalog's may): cast to the catalog's, which changes no value.
    wrong = [
        f"{f.name} is {f.dataType.simpleString()}, catalog says {expected[f.name].simpleString()}"
        for f in differ
        if f.dataType.simpleString() != expected[f.name].simpleString()
    ]
    if wrong:
        raise WarehouseError(f"{table.qualified}: " + "; ".join(wrong))
    casts = {f.name: df[f.name].cast(expected[f.name]) for f in differ}
    return (df.withColumns(casts) if casts else df).select(*table.columns)


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
