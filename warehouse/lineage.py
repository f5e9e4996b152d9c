"""Which derived partitions are stale: built from an input partition that was republished.

Each version of a derived table (silver, gold) records in its `_COMMITTED` marker the
versions of the input partitions its writer read (`meta["inputs"]`: qualified table -> ds ->
{version, sha256}; Warehouse records them from the manifests and markers it resolved, so
recording reads no data and starts no Spark job). A partition is stale when an input moved:
the version its manifest names now is another one, with other files (sha256), e.g. a day
re-simulated with another seed or a feature day rebuilt; a day republished with the same
bytes (the same seed again) has not moved. It is stale too when an input it was built on is
itself stale (the features of a day whose raw moved make its training examples stale).

What is not lineage: a read of a later layer than the output's (the candidates' previous
generation of gold feeds, a feedback loop, not an input), a read of the output's own
(table, ds), and raw days (the log: a re-simulated day does not mark the next simulated
days stale, though the simulator drew their social proof from it). A version written
before markers recorded inputs is unknown, never stale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from warehouse.catalog import TABLES, Layer, Table

INPUTS = "inputs"  # the marker's meta key: {qualified table: {ds: version}}
LAYER_RANK = {Layer.RAW: 0, Layer.TRUTH: 1, Layer.SILVER: 2, Layer.GOLD: 3, Layer.SERVING: 4}
DERIVED = (Layer.SILVER, Layer.GOLD, Layer.SERVING)  # layers whose versions record inputs
# The job that rebuilds each derived table (silver.state_* tables: build_features).
WRITERS = {
    "silver.impression_features": "build_features",
    "silver.feed_candidates": "precompute_feeds",
    "gold.training_examples": "build_training_set",
    "gold.user_news_feed": "precompute_feeds",
}
ALLOW = "FEEDRANK__WAREHOUSE__ALLOW_STALE=true (or a job's --allow-stale)"


@dataclasses.dataclass(frozen=True)
class Read:
    """The version of an input partition a writer read, and its files' sha256."""

    version: str
    checksum: str

    @classmethod
    def parse(cls, recorded) -> Read:
        if isinstance(recorded, dict):
            return cls(str(recorded.get("version", "")), str(recorded.get("sha256", "")))
        return cls(str(recorded), "")


@dataclasses.dataclass(frozen=True)
class Moved:
    """An input partition whose current version is not the one recorded."""

    table: str  # qualified
    ds: str
    recorded: str  # the version the output was built from
    current: str | None  # the version its manifest names now (None: no longer committed)

    def __str__(self) -> str:
        now = self.current or "nothing (no longer committed)"
        return f"{self.table} ds={self.ds} moved from version {self.recorded} to {now}"


@dataclasses.dataclass(frozen=True)
class Stale:
    """A committed derived partition built on an input that has moved since."""

    table: str  # qualified
    ds: str
    version: str
    moved: Moved  # the input that moved (the first found, through `via`)
    via: tuple[tuple[str, str], ...] = ()  # the stale inputs between, (table, ds), nearest first

    def cause(self) -> str:
        """Why, e.g. `built on silver.state_x ds=D, itself built on raw.posts ds=D, which
        moved from version A to B`."""
        if not self.via:
            return f"its input {self.moved}"
        chain = ", itself built on ".join(f"{t} ds={d}" for t, d in self.via)
        return f"built on {chain}, whose input {self.moved}"

    def __str__(self) -> str:
        return f"{self.table} ds={self.ds} (version {self.version}) is stale: {self.cause()}"


def as_table(qualified: str) -> Table:
    """The catalog's table of a qualified name, or (feature state, named per tile) a
    schemaless one of that layer."""
    layer, name = qualified.split(".", 1)
    known = TABLES.get(name)
    return known if known is not None else Table(name, Layer(layer), None, (), "")


def rebuild_command(qualified: str, ds: str) -> str:
    """The job that rebuilds a derived table's day (`--profile` as the root's)."""
    job = "build_features" if qualified.startswith("silver.state_") else WRITERS.get(qualified)
    if job is None:
        return f"(no job writes {qualified}: rebuild what wrote it)"
    return f"spark-submit jobs/{job}.py --ds {ds}"


def inputs_to_record(
    reads: Mapping[tuple[str, str], Read], output: Table, ds: str
) -> dict[str, dict[str, dict[str, str]]]:
    """The reads, (qualified table, ds) -> what was read, that are inputs of `output` ds:
    the marker's `inputs`."""
    rank = LAYER_RANK[output.layer]
    inputs: dict[str, dict[str, dict[str, str]]] = {}
    for (qualified, day), read in sorted(reads.items()):
        layer = Layer(qualified.split(".", 1)[0])
        if LAYER_RANK[layer] > rank or (qualified, day) == (output.qualified, ds):
            continue
        inputs.setdefault(qualified, {})[day] = {"version": read.version, "sha256": read.checksum}
    return inputs


class Lineage:
    """One look at the lineage of a warehouse: manifests read once, markers once."""

    def __init__(self, store):
        self.store = store
        self._manifests: dict[tuple[Layer, str], dict[str, str]] = {}
        self._markers: dict[tuple[str, str, str], dict] = {}
        self._stale: dict[tuple[str, str, str], Stale | None] = {}

    def current(self, qualified: str, ds: str) -> Read | None:
        """The version of (table, ds) its layer's manifest names now, and its sha256."""
        table = as_table(qualified)
        key = (table.layer, ds)
        if key not in self._manifests:
            self._manifests[key] = self.store.manifest(table.layer, ds)
        version = self._manifests[key].get(table.name)
        if version is None:
            return None
        return Read(version, str(self._marker(qualified, ds, version).get("checksum", "")))

    def moved(self, qualified: str, ds: str, read: Read) -> Moved | None:
        """How an input moved since it was read, or None: the same version, or another
        with the same files (republished with the same bytes)."""
        now = self.current(qualified, ds)
        if now is not None and (
            now.version == read.version or (read.checksum and now.checksum == read.checksum)
        ):
            return None
        return Moved(qualified, ds, read.version, now.version if now else None)

    def inputs(self, qualified: str, ds: str, version: str) -> list[tuple[str, str, Read]]:
        """What a version's marker records it was built from ([] when it does not say)."""
        recorded = (self._marker(qualified, ds, version).get("meta") or {}).get(INPUTS)
        if not isinstance(recorded, dict):
            return []
        return [
            (table, day, Read.parse(read))
            for table, days in sorted(recorded.items())
            for day, read in sorted(days.items())
        ]

    def stale(self, qualified: str, ds: str, version: str) -> Stale | None:
        """Why a version of (table, ds) is stale, or None (current inputs, or unknown)."""
        key = (qualified, ds, version)
        if key not in self._stale:
            self._stale[key] = None  # a cycle (none is written) ends here
            self._stale[key] = self._find(qualified, ds, version)
        return self._stale[key]

    def stale_input(self, qualified: str, ds: str, read: Read) -> Moved | Stale | None:
        """Whether what was read of an input moved since, or (current) is stale itself."""
        moved = self.moved(qualified, ds, read)
        if moved is not None:
            return moved
        return self.stale(qualified, ds, self.current(qualified, ds).version)

    def _find(self, qualified: str, ds: str, version: str) -> Stale | None:
        for table, day, read in self.inputs(qualified, ds, version):
            found = self.stale_input(table, day, read)
            if isinstance(found, Moved):
                return Stale(qualified, ds, version, found)
            if found is not None:
                return Stale(qualified, ds, version, found.moved, ((table, day), *found.via))
        return None

    def _marker(self, qualified: str, ds: str, version: str) -> dict:
        key = (qualified, ds, version)
        if key not in self._markers:
            self._markers[key] = self.store.version_marker(as_table(qualified), ds, version)
        return self._markers[key]

    def refusal(self, output: Table, ds: str, reads: Mapping[tuple[str, str], Read]) -> str | None:
        """Why a job that read `reads` must not build `output` ds on them, or None."""
        for qualified, days in inputs_to_record(reads, output, ds).items():
            for day, recorded in days.items():
                found = self.stale_input(qualified, day, Read.parse(recorded))
                if found is None:
                    continue
                if isinstance(found, Moved):
                    why = f"{qualified} ds={day}, which {found}"
                    fix = f"rerun this job to read {qualified} ds={day} as it is now"
                else:
                    why = f"{qualified} ds={day}, which is stale: {found.cause()}"
                    fix = f"rebuild it first: {rebuild_command(qualified, day)}"
                return (
                    f"refusing to build {output.qualified} ds={ds} on {why}; {fix} "
                    f"(`feedrank verify` lists every stale partition and its command), or "
                    f"set {ALLOW} to build on it anyway"
                )
        return None


def stale_partitions(
    store, layers: Iterable[Layer] = DERIVED, days: Iterable[str] | None = None
) -> list[Stale]:
    """Every committed partition of the layers' days (all days when None) that is stale, by
    day, then layer order."""
    wanted = None if days is None else set(days)
    look, found = Lineage(store), []
    for layer in sorted(set(layers) & set(DERIVED), key=LAYER_RANK.__getitem__):
        for ds in store.manifest_days(layer):
            if wanted is not None and ds not in wanted:
                continue
            for name, version in sorted(store.manifest(layer, ds).items()):
                stale = look.stale(f"{layer.value}.{name}", ds, version)
                if stale is not None:
                    found.append(stale)
    return sorted(found, key=lambda s: (s.ds, LAYER_RANK[as_table(s.table).layer], s.table))
