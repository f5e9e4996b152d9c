"""The `feedrank` command.

feedrank demo [--profile demo]   run the pipeline end to end through Airflow: logs and
                                 features day by day, then the nightly training once
feedrank summary                 what the warehouse holds
feedrank env                     export lines for Airflow and MLflow on this data root
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time

from jobs.common import configure_logging
from jobs.settings import Settings, available_profiles, load_settings
from jobs.summary import format_summary, ranker_summary, raw_summary
from warehouse.catalog import IMPRESSION_FEATURES, SIMULATED_TABLES
from warehouse.store import Warehouse

log = logging.getLogger("feedrank")

# Run in this order for each day, and what each must have published for it.
PIPELINE = {
    "simulate_platform": SIMULATED_TABLES,
    "build_features": (IMPRESSION_FEATURES,),
}
TRAINING_DAG = "train_rankers"  # then once, on every day: training set, rankers, registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feedrank", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", choices=available_profiles(), help="default: FEEDRANK_PROFILE or tiny"
    )
    parser.add_argument("--seed", type=int, help="override simulator.seed")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="logs and features for every day, then the rankers")
    sub.add_parser("summary", help="rows per table and action rates")
    sub.add_parser("env", help="print export lines for the Airflow and MLflow UIs")
    args = parser.parse_args(argv)
    configure_logging()
    overrides = {"simulator": {"seed": args.seed}} if args.seed is not None else None
    settings = load_settings(args.profile, overrides)
    if args.command == "demo":
        return demo(settings, seed=args.seed)
    if args.command == "summary":
        print(format_summary(raw_summary(settings)))
        return 0
    from jobs.airflow_env import shell_exports
    from warehouse.layout import DataRootError

    try:  # the UI's DAGs will write into the root: claim it for this profile, or refuse
        settings.root.claim(settings.profile)
    except DataRootError as err:
        print(f"feedrank env: {err}", file=sys.stderr)
        return 2
    a = settings.airflow
    print(shell_exports(settings.profile, settings.root, a.api_host, settings.tracking_uri))
    return 0


def demo(settings: Settings, seed: int | None = None) -> int:
    """Run every DAG of the pipeline for each day of the profile, with `dag.test()`."""
    from jobs.airflow_env import prepare_airflow

    started = time.perf_counter()
    # DAG files read the profile at parse time (calendar, Param defaults): parse them with ours.
    os.environ["FEEDRANK_PROFILE"] = settings.profile
    prepare_airflow(settings.root)
    from airflow.dag_processing.dagbag import DagBag  # only after the environment is set

    bag = DagBag(dag_folder=str(settings.root.dags_folder()))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {json.dumps(bag.import_errors, indent=2)}")
    conf = {"profile": settings.profile, "seed": seed}
    store = Warehouse(settings.root.warehouse)
    days = settings.dates()
    for i, ds in enumerate(days, 1):
        logical = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
        for dag_id, outputs in PIPELINE.items():
            t0 = time.perf_counter()
            run = bag.get_dag(dag_id).test(logical_date=logical, run_conf=conf)
            state = str(getattr(run, "state", "unknown"))
            print(
                f"[{i}/{len(days)}] {dag_id} ds={ds}: {state} in {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
            if "success" not in state:
                print(f"{dag_id} failed for ds={ds}; see the task logs above", file=sys.stderr)
                return 1
            missing = [t.name for t in outputs if not store.is_committed(t, ds)]
            if missing:  # a run outside the DAG's calendar succeeds without running a task
                print(f"{dag_id} ds={ds} published nothing for {missing}", file=sys.stderr)
                return 1
    t0 = time.perf_counter()
    last = dt.datetime.fromisoformat(days[-1]).replace(tzinfo=dt.UTC)
    run = bag.get_dag(TRAINING_DAG).test(logical_date=last, run_conf=conf)
    state = str(getattr(run, "state", "unknown"))
    print(f"{TRAINING_DAG} ds={days[-1]}: {state} in {time.perf_counter() - t0:.0f}s", flush=True)
    if "success" not in state:
        print(f"{TRAINING_DAG} failed; see the task logs above", file=sys.stderr)
        return 1
    print()
    print(f"feedrank demo, profile {settings.profile}, data root {settings.home}")
    print(format_summary(raw_summary(settings), time.perf_counter() - started))
    print(ranker_summary(settings, days[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
