"""A short report of what the warehouse holds: rows per table, action rates, dwell."""

from __future__ import annotations

import pyarrow.compute as pc

from jobs.settings import Settings
from models.registry.tags import AB_STAGE, FEEDS_STAGE, PROMOTION_REASON_TAG, PROMOTION_TAG
from warehouse.catalog import (
    ACTIONS,
    ENGAGEMENTS,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    SIMULATED_TABLES,
    TRAINING_EXAMPLES,
    C,
)


def raw_summary(settings: Settings) -> dict:
    """Rows per table over all committed days, and each action's rate per impression."""
    store = settings.open_warehouse()
    rows, days = {}, {}
    for tbl in (*SIMULATED_TABLES, IMPRESSION_FEATURES, TRAINING_EXAMPLES):
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


def ranker_summary(settings: Settings, ds: str) -> str:
    """Each ranker kind's test metrics side by side (the newest run of each kind trained up
    to ds, from MLflow), each version's gate outcome and why, and the champion."""
    from jobs.common import ranker_report_folder, use_tracking
    from models.evaluation import report
    from models.registry import runs as tracking
    from models.registry import versions as registry

    use_tracking(settings)
    runs = tracking.latest_runs_by_kind(settings.mlflow.experiment, ds)
    if not runs:
        return f"no training run up to {ds} in MLflow experiment {settings.mlflow.experiment}"
    name = settings.mlflow.registered_model
    k = settings.training.ranking_k
    table = report.kinds_summary({kind: r.data.metrics for kind, r in runs.items()}, "test", k)
    first = next(iter(runs.values()))
    lines = [
        f"test day {first.data.params.get(registry.window_param('test'))}, kinds "
        + ", ".join(f"{kind} (MLflow run {r.info.run_id})" for kind, r in runs.items())
        + ":",
        table,
    ]
    for kind, r in runs.items():
        outcome = r.data.tags.get(PROMOTION_TAG, "not gated")
        reason = r.data.tags.get(PROMOTION_REASON_TAG, "")
        lines.append(f"gate, {kind}: {outcome}{': ' + reason if reason else ''}")
    champion = registry.champion_version(name)
    kind = registry.version_kind(name, champion) if champion is not None else None
    lines.append(
        f"registered model {name}: champion is version {champion}" + (f" ({kind})" if kind else "")
    )
    reports = [str(ranker_report_folder(settings, ds, kind).file(tracking.REPORT)) for kind in runs]
    lines.append(f"full reports: {', '.join(reports)}")
    return "\n".join(lines)


def feeds_summary(settings: Settings, ds: str) -> str:
    """The feeds generated from ds: sizes and offline quality (from MLflow), and how to read
    them."""
    from jobs.common import EVALUATE_FEEDS, use_tracking
    from models.registry import runs as tracking

    use_tracking(settings)
    run = tracking.latest_run(settings.mlflow.experiment, ds, stage=FEEDS_STAGE)
    folder = settings.root.report_folder(EVALUATE_FEEDS, ds)
    if run is None:
        return f"no feed evaluation of ds={ds} in MLflow (see {folder.file(tracking.REPORT)})"
    m, k = run.data.metrics, settings.precompute.quality_k
    values = {n.split("/")[-1]: v for n, v in m.items() if n.startswith(f"feeds/value_at_{k}/")}
    oracle = values.get("oracle") or float("nan")
    rows = [f"  {name:<20} {v:8.3f}  ({v / oracle:6.1%} of oracle)" for name, v in values.items()]
    recall = {n.split("/")[-1]: v for n, v in m.items() if n.startswith("feeds/recall_existing/")}
    return "\n".join(
        [
            f"feeds generated at the end of {ds}: {m.get('feeds/users', 0):.0f} users, "
            f"{m.get('feeds/items', 0):.0f} items, MLflow run {run.info.run_id}",
            f"mean true value of the top {k} per user (users with sessions the next day):",
            *rows,
            "candidate recall of next-day engaged posts (that existed at generation): "
            + ", ".join(f"{s} {v:.2f}" for s, v in recall.items()),
            f"full report: {folder.file(tracking.REPORT)}",
            f"read them: `feedrank --profile {settings.profile} feed <user_id>` or "
            f"`feedrank --profile {settings.profile} serve`",
        ]
    )


def ab_summary(settings: Settings, ds: str) -> str:
    """The closed loop's A/B test up to ds (from MLflow): the lifts and their intervals."""
    from jobs.common import AB_REPORT, use_tracking
    from models.registry import runs as tracking

    use_tracking(settings)
    run = tracking.latest_run(settings.mlflow.experiment, ds, stage=AB_STAGE)
    folder = settings.root.report_folder(AB_REPORT, ds)
    if run is None:
        return f"no A/B report of ds={ds} in MLflow (see {folder.file(tracking.REPORT)})"
    m = run.data.metrics
    rows = []
    for metric in ("value_per_user", "ctr", "negative_rate", "dwell_per_session"):
        if f"ab/{metric}/lift" not in m:
            continue
        lift, lo, hi, p = (m[f"ab/{metric}/{s}"] for s in ("lift", "ci_low", "ci_high", "p_value"))
        aa = m.get(f"aa/{metric}/lift", float("nan"))
        rows.append(
            f"  {metric:<18} {lift:+8.1%}  95% CI [{lo:+.1%}, {hi:+.1%}]  p={p:.2g}"
            f"   (A/A before the loop: {aa:+.1%})"
        )
    return "\n".join(
        [
            f"A/B test of the closed loop up to {ds}: treatment (ranked feeds) vs control "
            f"(chronological), MLflow run {run.info.run_id}",
            *rows,
            f"full report: {folder.file(tracking.REPORT)}",
        ]
    )


def first_page(settings: Settings, user_id: int | None = None, limit: int = 10) -> str:
    """One user's first feed page as the read path returns it (the first user with a feed
    of their own, unless one is named)."""
    from warehouse.feeds.open import open_store
    from warehouse.feeds.reader import FeedReader, format_page

    store = open_store(settings.feeds, settings.root)
    try:
        reader = FeedReader(store, settings.feeds.model_copy(update={"log_served": False}))
        users = [user_id] if user_id is not None else range(settings.simulator.n_users)
        for uid in users:
            page = reader.page(uid, limit)
            if not page.fallback or user_id is not None:
                return format_page(page)
        return "no user has a feed of their own"
    finally:
        store.close()
