"""`make stack-e2e`: tiny from simulate to publish_feeds driven by the stack's scheduler, its
outputs compared with the embedded run's.

    python tests/stack/e2e.py [--base DIR] [--timeout-min 120]
    python tests/stack/e2e.py --base DIR --stack-home ROOT   # a stack already up on ROOT

1. The embedded reference: `feedrank --profile tiny demo` (local Spark, Airflow's dag.test on
   SQLite, MLflow on SQLite, the SQLite feed store) into <base>/embedded, unless it is there.
2. The stack on free loopback ports in <base>/stack: `feedrank stack up` (every group); the
   DAGs start unpaused, so the scheduler walks tiny's calendar and the Assets chain the rest
   (features, training, retrieval, the index, the feeds, their publication to Redis) with
   every Spark job on the standalone cluster and every run on the MLflow server. It waits
   until `publish_feeds` has succeeded (or a DAG run failed, or the timeout).
3. The feed days only the stack precomputed (its asset chain precomputes the day it trained
   on, the demo the day before its last) built in the embedded root too.
4. The comparison: the published content of every (layer, table, ds) both roots hold
   (warehouse.digest: rows sorted, values exact), what only one holds, and the champion's
   test metrics in each registry; the stack's aliases and the feed store's version.
Then `stack down`. Prints a table, writes <base>/e2e.json; exit 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.processes import free_port  # noqa: E402
from jobs.settings import load_settings  # noqa: E402
from jobs.stack import Stack  # noqa: E402
from tests.stack.compare import REL_TOL, compare_roots  # noqa: E402
from warehouse.catalog import USER_NEWS_FEED, Layer  # noqa: E402
from warehouse.layout import DataRoot  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

LAYERS = (Layer.RAW, Layer.TRUTH, Layer.SILVER, Layer.GOLD)
RANKER = "feedrank-ranker"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDRANK_", "AIRFLOW"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def embedded(home: Path) -> float:
    if (home / "warehouse" / "raw").exists():
        print(f"embedded reference: {home} (already there)")
        return 0.0
    began = time.monotonic()
    env = clean_env(FEEDRANK_HOME=str(home))
    argv = [sys.executable, "-m", "jobs.cli", "--profile", "tiny", "demo"]
    with (home.parent / "embedded.log").open("ab") as out:
        done = subprocess.run(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"the embedded demo failed: {home.parent / 'embedded.log'}")
    return time.monotonic() - began


def embedded_feeds_like(home: Path, stack_home: Path) -> list[str]:
    """The embedded demo precomputes the feeds of the day before its last (the last is the
    one they are evaluated on); the scheduler's asset chain those of the day it trained on.
    Build in the embedded root the feed days only the stack has (the index, then the
    precompute), so that the feeds are compared too; returns those days."""
    feeds = [Warehouse(DataRoot(h).warehouse) for h in (home, stack_home)]
    days = sorted(
        set(feeds[1].partitions(USER_NEWS_FEED)) - set(feeds[0].partitions(USER_NEWS_FEED))
    )
    for ds in days:
        # A file, not `python -c`: pyspark.sql.connect takes a __main__ without a file for
        # its doctests and exits 0 at import, in the middle of the job.
        script = home.parent / f"embedded_feeds_{ds}.py"
        script.write_text(
            "from jobs.settings import load_settings\n"
            "from jobs import precompute_feeds, train_retrieval\n"
            f"s = load_settings('tiny', {{'home': {str(home)!r}}})\n"
            f"train_retrieval.build_index(s, {ds!r})\n"
            f"precompute_feeds.run(s, {ds!r})\n"
        )
        print(f"embedded reference: the feeds of {ds}, as the stack precomputed them")
        env = clean_env(FEEDRANK_HOME=str(home))
        with (home.parent / "embedded.log").open("ab") as out:
            done = subprocess.run(
                [sys.executable, str(script)], env=env, cwd=ROOT, stdout=out, stderr=out
            )
        if done.returncode or ds not in feeds[0].partitions(USER_NEWS_FEED):
            raise SystemExit(f"the embedded feeds of {ds} failed: {home.parent / 'embedded.log'}")
    return days


def make_stack(home: Path) -> Stack:
    names = ("spark_master", "spark_ui", "spark_worker", "postgres", "mlflow", "airflow", "redis")
    ports = {f"{n}_port": free_port() for n in names}
    settings = load_settings("tiny", {"home": str(home), "stack": ports})
    return Stack(settings.root, settings.stack, "tiny")


def dag_runs(stack: Stack) -> list[tuple]:
    return stack._query("airflow", "select dag_id, state, count(*) from dag_run group by 1, 2")


def wait_for_feeds(stack: Stack, timeout_s: float) -> float:
    began = time.monotonic()
    last = None
    while time.monotonic() - began < timeout_s:
        runs = sorted(dag_runs(stack))
        if runs != last:
            print(
                f"  {time.monotonic() - began:6.0f} s  "
                + ", ".join(f"{d} {s} {n}" for d, s, n in runs)
            )
            last = runs
        if any(state == "failed" for _, state, _ in runs):
            raise SystemExit(f"a DAG run failed: {runs}; logs under {stack.root.airflow_home}")
        if any(d == "publish_feeds" and s == "success" for d, s, _ in runs):
            return time.monotonic() - began
        time.sleep(20)
    raise SystemExit(f"publish_feeds did not succeed within {timeout_s:.0f} s")


def champion_metrics(tracking_uri: str) -> tuple[dict, dict]:
    """The champion ranker's test metrics and the registry's aliases; empty when there is
    no champion (yet)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    try:
        version = client.get_model_version_by_alias(RANKER, "champion")
    except mlflow.exceptions.MlflowException:
        return {}, {}
    metrics = client.get_run(version.run_id).data.metrics
    aliases = client.get_registered_model(RANKER).aliases
    return {k: v for k, v in metrics.items() if k.startswith("test/")}, dict(aliases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--timeout-min", type=float, default=120)
    parser.add_argument(
        "--no-wait", action="store_true", help="compare what the stack has published so far"
    )
    parser.add_argument(
        "--stack-home",
        type=Path,
        help="use the stack running on this root (its settings from "
        "the environment); neither started nor stopped here",
    )
    args = parser.parse_args(argv)
    base = args.base or Path(tempfile.mkdtemp(prefix="feedrank-e2e-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)  # as root, Postgres runs as `postgres` and must enter the stack's root
    embedded_s = embedded(base / "embedded")
    if args.stack_home:
        settings = load_settings("tiny", {"home": str(args.stack_home)})
        stack = Stack(settings.root, settings.stack, "tiny")
    else:
        stack = make_stack(base / "stack")
    try:
        if not args.stack_home:
            stack.up()
        scheduled_s = None if args.no_wait else wait_for_feeds(stack, args.timeout_min * 60)
        runs = sorted(dag_runs(stack))
        stack_metrics, aliases = champion_metrics(stack.mlflow_url)
        store_version = feed_store_version(stack)
    finally:
        if not args.stack_home:
            stack.down()
    feed_days = embedded_feeds_like(base / "embedded", stack.root.home)
    cmp = compare_roots(base / "embedded", stack.root.home, LAYERS)
    ref_metrics, _ = champion_metrics(DataRoot(base / "embedded").mlflow_tracking_uri)
    print(f"embedded demo {embedded_s:.0f} s; scheduler on the stack {scheduled_s} s")
    print(f"{'layer/table/ds':<58} {'rows':>8}  bit-identical")
    for key in cmp.both:
        print(f"{key:<58} {cmp.rows[key]:>8}  {key in cmp.identical}")
    metric_diff = {
        k: (ref_metrics.get(k), stack_metrics.get(k))
        for k in ref_metrics.keys() | stack_metrics.keys()
        if stack_metrics and ref_metrics.get(k) != stack_metrics.get(k)
    }
    result = {
        "embedded_s": round(embedded_s),
        "scheduled_s": scheduled_s and round(scheduled_s),
        "dag_runs": runs,
        "table_days_compared": len(cmp.both),
        "bit_identical": len(cmp.identical),
        "columns_differ": cmp.columns,
        "beyond_tolerance": cmp.beyond,
        "rel_tol": REL_TOL,
        "feed_days_built_in_embedded": feed_days,
        "only_embedded": cmp.only_first,
        "only_stack": cmp.only_second,
        "champion_test_metrics": len(stack_metrics),
        "metric_differences": metric_diff,
        "stack_aliases": aliases,
        "stack_feed_store_version": store_version,
    }
    print(json.dumps(result, indent=2, default=str))
    (base / "e2e.json").write_text(json.dumps(result, indent=2, default=str))
    done = scheduled_s is not None and stack_metrics
    return 1 if cmp.beyond or metric_diff or not done else 0


def feed_store_version(stack: Stack):
    from warehouse.feeds.open import open_store

    settings = load_settings(
        "tiny", {"home": str(stack.root.home), "feeds": {"store_url": stack.redis_url}}
    )
    store = open_store(settings.feeds, settings.root)
    try:
        return store.status().current
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
