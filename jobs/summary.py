"""A short report of what the warehouse holds: rows per table, action rates, dwell."""

from __future__ import annotations

import pyarrow.compute as pc

from jobs.settings import Settings
from warehouse.catalog import (
    ACTIONS,
    ENGAGEMENTS,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    SIMULATED_TABLES,
    C,
)
from warehouse.store import Warehouse


def raw_summary(settings: Settings) -> dict:
    """Rows per table over all committed days, and each action's rate per impression."""
    store = Warehouse(settings.root.warehouse)
    rows, days = {}, {}
    for tbl in (*SIMULATED_TABLES, IMPRESSION_FEATURES):
        parts = store.partitions(tbl)
        days[tbl.name] = len(parts)
        rows[tbl.name] = sum(store.info(tbl, ds).rows for ds in parts)
    impressions = rows[IMPRESSIONS.name]
    actions = store.read_arrow(ENGAGEMENTS, store.partitions(ENGAGEMENTS))
    counts = {v["values"]: v["counts"] for v in pc.value_counts(actions[C.ACTION]).to_pylist()}
    rates = {a: counts.get(a, 0) / impressions if impressions else 0.0 for a in ACTIONS}
    dwell = pc.mean(actions[C.DWELL_S]).as_py() if actions.num_rows else None
    return {"days": days, "rows": rows, "rates": rates, "mean_dwell_s": dwell}


def format_summary(summary: dict, seconds: float | None = None) -> str:
    lines = ["table                 days        rows"]
    for name, n in summary["rows"].items():
        lines.append(f"{name:<20} {summary['days'][name]:>5} {n:>11,}")
    lines.append("")
    lines.append(
        "action rates per impression: "
        + ", ".join(f"{a} {r:.2%}" for a, r in summary["rates"].items())
    )
    if summary["mean_dwell_s"] is not None:
        lines.append(f"mean dwell of a click: {summary['mean_dwell_s']:.1f} s")
    if seconds is not None:
        lines.append(f"time taken: {seconds / 60:.1f} min ({seconds:.0f} s)")
    return "\n".join(lines)
