"""`make scheduler-check`: a calendar walked by Airflow's scheduler gives what `dag.test` gives.

    python tests/stack/scheduler_equality.py --scheduler ROOT_A --dagtest ROOT_B [--json F]

ROOT_A was built by `feedrank demo --scheduler`, ROOT_B by `feedrank demo` (same profile and
seed). Compared:
- the warehouse: every published (layer, table, ds) of both roots (warehouse.digest: rows
  sorted, values exact; floats within tests/stack/compare.REL_TOL), and what only one holds;
- MLflow: every run of both tracking stores by experiment and run name, all its metrics
  (their last values);
- the model registry: each model's versions and the run (by name) each alias points to;
- the feed store: each published version (ds, users, items, state) and the content of its
  feeds (every row of feed_users and feed_items but the generation time).
Prints one line per check, writes JSON with the details; exit 1 on any difference but the one
the two paths differ in by design: the day of the feeds (the scheduler's `precompute_feeds`
takes the day its Asset event names, the last; `feedrank demo` the day before it, which the
last day then evaluates), so each root holds the candidates, feeds, feed-store version and,
in the dag.test root, the evaluation run of its own feeds day only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.stack.compare import REL_TOL, compare_roots  # noqa: E402
from warehouse.layout import DataRoot  # noqa: E402


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def mlflow_runs(home: Path) -> dict[str, dict[str, float]]:
    """'experiment / run name' -> {metric: last value} of a root's tracking store."""
    rows = _rows(
        home / "mlflow" / "mlflow.db",
        "SELECT e.name, r.name, m.key, m.value FROM runs r "
        "JOIN experiments e ON e.experiment_id = r.experiment_id "
        "LEFT JOIN latest_metrics m ON m.run_uuid = r.run_uuid "
        "WHERE r.lifecycle_stage = 'active'",
    )
    out: dict[str, dict[str, float]] = {}
    for exp, run, key, value in rows:
        metrics = out.setdefault(f"{exp} / {run}", {})
        if key is not None:
            metrics[key] = value
    return out


def registry(home: Path) -> dict[str, object]:
    """model -> its number of versions and, per alias, the name of the run behind it."""
    db = home / "mlflow" / "mlflow.db"
    versions = _rows(db, "SELECT name, COUNT(*) FROM model_versions GROUP BY name")
    aliases = _rows(
        db,
        "SELECT a.name, a.alias, r.name FROM registered_model_aliases a "
        "JOIN model_versions v ON v.name = a.name AND v.version = a.version "
        "JOIN runs r ON r.run_uuid = v.run_id",
    )
    out: dict[str, object] = {f"{m} versions": n for m, n in versions}
    out.update({f"{m} @{alias}": run for m, alias, run in aliases})
    return out


def feed_store(home: Path) -> dict[str, object]:
    """Each published version of the SQLite feed store and a digest of its feeds."""
    db = DataRoot(home).feed_store
    if not db.exists():
        return {}
    out: dict[str, object] = {}
    versions = _rows(db, "SELECT vid, version, ds, users, items, state FROM versions ORDER BY vid")
    for vid, version, ds, users, items, state in versions:
        digest = hashlib.sha256()
        for sql in (  # everything but the generation time
            "SELECT user_id, model_version, n_items FROM feed_users WHERE vid = {} ORDER BY 1",
            "SELECT user_id, items, sources FROM feed_blobs WHERE vid = {} ORDER BY 1",
        ):
            for row in _rows(db, sql.format(int(vid))):
                digest.update(repr(row).encode())
        out[version] = {
            "ds": ds,
            "users": users,
            "items": items,
            "state": state,
            "sha256": digest.hexdigest(),
        }
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def compare_dicts(a: dict, b: dict) -> dict[str, object]:
    """Keys only in one, and the keys whose values differ (floats within REL_TOL are equal;
    nested dicts compared the same way)."""
    diff: dict[str, object] = {}
    for key in sorted(a.keys() | b.keys()):
        if key not in a or key not in b:
            diff[key] = {"only": "scheduler" if key in a else "dagtest"}
            continue
        va, vb = a[key], b[key]
        if isinstance(va, dict) and isinstance(vb, dict):
            sub = compare_dicts(va, vb)
            if sub:
                diff[key] = sub
        elif isinstance(va, float) or isinstance(vb, float):
            if not _close(va, vb):
                diff[key] = {"scheduler": va, "dagtest": vb}
        elif va != vb:
            diff[key] = {"scheduler": va, "dagtest": vb}
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", type=Path, required=True, help="feedrank demo --scheduler")
    parser.add_argument("--dagtest", type=Path, required=True, help="feedrank demo")
    parser.add_argument("--json", type=Path, help="where to write the result")
    args = parser.parse_args(argv)
    a, b = args.scheduler, args.dagtest
    cmp = compare_roots(a, b)
    checks = {
        "mlflow runs": compare_dicts(mlflow_runs(a), mlflow_runs(b)),
        "registry": compare_dicts(registry(a), registry(b)),
        "feed store": compare_dicts(feed_store(a), feed_store(b)),
    }
    counts = {
        "mlflow runs": len(mlflow_runs(a)),
        "registry": len(registry(a)),
        "feed store": len(feed_store(a)),
    }
    within = len(cmp.both) - len(cmp.identical) - len({k.split(":")[0] for k in cmp.beyond})
    print(
        f"warehouse: {len(cmp.both)} table-days in both roots, {len(cmp.identical)} bit-identical"
    )
    print(f"  {within} equal within {REL_TOL:g} relative, {len(cmp.beyond)} beyond")
    print(f"  only in the scheduler's root: {cmp.only_first or 'none'}")
    print(f"  only in the dag.test root: {cmp.only_second or 'none'}")
    for name, diff in checks.items():
        verdict = "equal" if not diff else f"{len(diff)} differ"
        print(f"{name}: {counts[name]} compared, {verdict}")
        for key, d in diff.items():
            print(f"  {key}: {json.dumps(d, default=str)[:300]}")
    unexpected = _unexpected(cmp, checks)
    result = {
        "scheduler_root": str(a),
        "dagtest_root": str(b),
        "rel_tol": REL_TOL,
        "table_days_compared": len(cmp.both),
        "bit_identical": len(cmp.identical),
        "columns_differ": cmp.columns,
        "beyond_tolerance": cmp.beyond,
        "only_scheduler": cmp.only_first,
        "only_dagtest": cmp.only_second,
        "compared": counts,
        "differences": checks,
        "unexpected": unexpected,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if unexpected:
        print(f"DIFFERENT: {json.dumps(unexpected, default=str)[:600]}")
        return 1
    print("EQUAL, but for the feeds' day (by design)")
    return 0


FEED_PARTITIONS = ("silver/feed_candidates/", "gold/user_news_feed/")


def _unexpected(cmp, checks: dict[str, dict]) -> dict[str, object]:
    """The differences that are not the feeds' day: partitions of other tables in one root
    only, values beyond tolerance, MLflow runs other than a feeds evaluation in one store
    only, and any registry or feed-store difference but a version one store alone holds."""
    out: dict[str, object] = {}
    for side, only in (("scheduler", cmp.only_first), ("dagtest", cmp.only_second)):
        other = [p for p in only if not p.startswith(FEED_PARTITIONS)]
        if other:
            out[f"only in {side}"] = other
    if cmp.beyond:
        out["beyond tolerance"] = cmp.beyond
    runs = {
        k: d
        for k, d in checks["mlflow runs"].items()
        if not (d == {"only": "dagtest"} and " / precompute_feeds " in k)
    }
    feeds = {k: d for k, d in checks["feed store"].items() if "only" not in d}
    for name, diff in (
        ("mlflow runs", runs),
        ("registry", checks["registry"]),
        ("feed store", feeds),
    ):
        if diff:
            out[name] = diff
    return out


if __name__ == "__main__":
    sys.exit(main())
