"""`feedrank verify [--layer L] [--ds D]`: check a data root's committed data, say how to repair.

Every committed version of the chosen layers and days is checked (warehouse.integrity): its
folder and `_COMMITTED` marker are there, its files agree with the catalog and hold the rows
and the sha256 the marker records. The report lists each damaged (table, day), what is wrong,
and the job that rebuilds it; days built from a damaged day are rebuilt after it, in layer
order (raw -> silver -> gold). Exit status: 0 all intact, 1 damage found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jobs.settings import Settings
from warehouse.catalog import Layer
from warehouse.integrity import Checked, Damage, verify

# The order a day is rebuilt in: a layer is built from the ones before it.
LAYER_ORDER = (Layer.RAW, Layer.TRUTH, Layer.SILVER, Layer.GOLD)
_SCRIPT = "spark-submit jobs/{job}.py --profile {profile} --ds {ds}"
# The job that writes each table (silver state_* tables: build_features).
_WRITER = {
    "silver.impression_features": "build_features",
    "silver.feed_candidates": "precompute_feeds",
    "gold.training_examples": "build_training_set",
    "gold.user_news_feed": "precompute_feeds",
}


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
        job = _WRITER.get(table, "")
        if not job:
            return f"(no job writes {table}: delete {ds}'s manifest entry and rebuild the layer)"
    command = _SCRIPT.format(job=job, profile=settings.profile, ds=ds)
    if table == "gold.user_news_feed":  # and put the rebuilt feeds in the store
        command += f" && feedrank --profile {settings.profile} feeds publish --ds {ds}"
    return command


def format_report(checked: Checked, found: Sequence[Repair], settings: Settings) -> str:
    """The doctor's summary: what was checked, what is wrong, how to repair it."""
    head = (
        f"checked {checked.partitions} committed versions ({checked.rows:,} rows) under "
        f"{settings.root.warehouse}"
    )
    if checked.ok:
        return f"{head}: all intact"
    n = len(checked.damage)
    lines = [f"{head}: {n} problem{'s' * (n != 1)} in {len(found)} (table, day) to rebuild", ""]
    for r in found:
        version = r.damage[0].version or "(manifest)"
        lines.append(f"{r.table} ds={r.ds} version {version}")
        lines += [f"  - {d.check}: {d.detail}" for d in r.damage]
        lines.append(f"  repair: {r.command}")
    lines += [
        "",
        "Rebuild each day above, oldest first and raw before silver before gold; then rebuild",
        "what was built from it (features, training examples, feeds of that day and later),",
        "and rerun `feedrank verify`. A rebuilt day is published as a new version; the",
        "damaged one is collected after the grace period.",
    ]
    return "\n".join(lines)
