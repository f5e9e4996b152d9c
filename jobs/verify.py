"""`feedrank verify [--layer L] [--ds D]`: check a data root's committed data, say how to repair.

Every committed version of the chosen layers and days is checked (warehouse.integrity): its
folder and `_COMMITTED` marker are there, its files agree with the catalog and hold the rows
and the sha256 the marker records. The report lists each damaged (table, day), what is wrong,
and the job that rebuilds it; days built from a damaged day are rebuilt after it, in layer
order (raw -> silver -> gold). A day whose truth and raw came from different publishes is
damage too (`out_of_step`).

Then the stale partitions of the silver and gold layers (warehouse.lineage): each was built
from an input partition that has been republished since; the report names the input and its
versions, and the command that rebuilds the stale day. Exit status: 0 all intact and
current, 1 damage or stale partitions found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jobs.settings import Settings
from warehouse import lineage
from warehouse.catalog import Layer
from warehouse.integrity import Checked, Damage, verify
from warehouse.lineage import Stale

# The order a day is rebuilt in: a layer is built from the ones before it.
LAYER_ORDER = (Layer.RAW, Layer.TRUTH, Layer.SILVER, Layer.GOLD)
_SCRIPT = "spark-submit jobs/{job}.py --profile {profile} --ds {ds}"


@dataclasses.dataclass(frozen=True)
class Repair:
    """One day of one table to rebuild, the damage that asks for it, and the command."""

    table: str
    ds: str
    damage: tuple[Damage, ...]
    command: str


def run(
    settings: Settings, layers: Sequence[str] | None = None, days: Sequence[str] | None = None
) -> tuple[Checked, list[Repair]]:
    """Check the data root's warehouse; the findings and the repairs they ask for."""
    chosen = [Layer(name) for name in layers] if layers else list(LAYER_ORDER)
    checked = verify(settings.open_warehouse(), chosen, days)
    return checked, repairs(checked.damage, settings)


def stale(
    settings: Settings, layers: Sequence[str] | None = None, days: Sequence[str] | None = None
) -> list[Stale]:
    """The stale partitions of the chosen layers' days (silver and gold: what records inputs)."""
    chosen = [Layer(name) for name in layers] if layers else list(lineage.DERIVED)
    return lineage.stale_partitions(settings.open_warehouse(), chosen, days)


def repairs(damage: Sequence[Damage], settings: Settings) -> list[Repair]:
    """One repair per damaged (table, day), by day and then layer order."""
    found: dict[tuple[str, str], list[Damage]] = {}
    for d in damage:
        found.setdefault((d.table, d.ds), []).append(d)
    rank = {layer.value: i for i, layer in enumerate(LAYER_ORDER)}
    keys = sorted(found, key=lambda k: (k[1], rank.get(k[0].split(".")[0], 9), k[0]))
    return [Repair(t, ds, tuple(found[t, ds]), rebuild_command(t, ds, settings)) for t, ds in keys]


def rebuild_command(table: str, ds: str, settings: Settings) -> str:
    """The command that rebuilds `table` (qualified) on ds."""
    layer = table.split(".")[0]
    if layer in (Layer.RAW.value, Layer.TRUTH.value):
        if settings.log.format is not None:  # a real log: load it again
            return f"feedrank --profile {settings.profile} ingest"
        job = "simulate_platform"
    elif table.startswith("silver.state_"):
        job = "build_features"
    else:
        job = lineage.WRITERS.get(table, "")
        if not job:
            return f"(no job writes {table}: delete {ds}'s manifest entry and rebuild the layer)"
    command = _SCRIPT.format(job=job, profile=settings.profile, ds=ds)
    if table == "gold.user_news_feed":  # and put the rebuilt feeds in the store
        command += f" && feedrank --profile {settings.profile} feeds publish --ds {ds}"
    return command


def format_report(
    checked: Checked, found: Sequence[Repair], settings: Settings, stale: Sequence[Stale] = ()
) -> str:
    """The doctor's summary: what was checked, what is wrong or stale, how to repair it."""
    head = (
        f"checked {checked.partitions} committed versions ({checked.rows:,} rows) under "
        f"{settings.root.warehouse}"
    )
    if checked.ok and not stale:
        return f"{head}: all intact, nothing stale"
    lines = [head + (": all intact" if checked.ok else "")]
    if not checked.ok:
        n = len(checked.damage)
        lines[0] += f": {n} problem{'s' * (n != 1)} in {len(found)} (table, day) to rebuild"
        lines.append("")
        for r in found:
            version = r.damage[0].version or "(manifest)"
            lines.append(f"{r.table} ds={r.ds} version {version}")
            lines += [f"  - {d.check}: {d.detail}" for d in r.damage]
            lines.append(f"  repair: {r.command}")
        lines += [
            "",
            "Rebuild each day above, oldest first and raw before silver before gold; then",
            "rebuild what was built from it (features, training examples, feeds of that day",
            "and later), and rerun `feedrank verify`. A rebuilt day is published as a new",
            "version; the damaged one is collected after the grace period.",
        ]
    if stale:
        n = len(stale)
        lines += ["", f"{n} stale partition{'s' * (n != 1)}: built from inputs republished since"]
        by_command: dict[str, list[Stale]] = {}
        for s in stale:  # one command rebuilds a day's features and its state tables
            by_command.setdefault(stale_command(s, settings), []).append(s)
        for command, found in by_command.items():
            lines.append(f"rebuild: {command}")
            lines += [f"  - {s.table} ds={s.ds} version {s.version}: {s.cause()}" for s in found]
        lines += [
            "",
            "Rebuild them in the order listed (by day, silver before gold), then rerun",
            "`feedrank verify`: a rebuilt day can leave later days stale (their state",
            "lookback), which the next run lists. Jobs refuse to build on a stale input",
            "unless run with --allow-stale (FEEDRANK__WAREHOUSE__ALLOW_STALE=true).",
        ]
    return "\n".join(lines)


def stale_command(s: Stale, settings: Settings) -> str:
    """The command that rebuilds a stale partition (state tables: their features' job)."""
    table = "silver.impression_features" if s.table.startswith("silver.state_") else s.table
    return rebuild_command(table, s.ds, settings)
