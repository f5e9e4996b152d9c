"""The `feedrank` command.

feedrank demo [--profile demo]   run the pipeline end to end through Airflow: logs and
                                 features day by day, then the nightly training once
feedrank demo --scheduler [--port P]
                                 the same calendar built by Airflow's scheduler: starts its
                                 parts on the data root, unpauses the DAGs, waits for every
                                 run, prints and saves a table of them (jobs/demo_scheduler.py)
feedrank summary [--ds DS]       what the warehouse holds; with --ds, the rankers trained up
                                 to DS: each kind's test metrics, the gate, the champion
feedrank env                     export lines for Airflow and MLflow on this data root
feedrank airflow-ui              Airflow's scheduler, dag-processor, triggerer and UI on this
                                 data root (`make airflow-ui`), without the log servers
feedrank stack up|down|status|env [--only GROUP ...]
                                 the production-like stack on this machine, on loopback:
                                 Spark standalone (master + workers), Postgres, an MLflow
                                 server, Airflow (LocalExecutor) and Redis (jobs/stack.py);
                                 `env` prints the exports that point jobs at it
feedrank feed | feeds | serve    the feed store and its read path (jobs/feeds_cli.py)
feedrank ingest --format mind --path DIR [--behaviors F] [--items F] [--first-day D --days N]
                                 load a real log (MIND, EB-NeRD, raw) into the raw tables; the
                                 profile defaults to the format's; the calendar to the log's
                                 own days; what it loaded is recorded in the data root, so
                                 later jobs need none of it again (jobs/ingest_log.py)
feedrank verify [--layer L] [--ds DS]
                                 check every committed version of the warehouse (folder,
                                 marker, schema, rows, sha256, truth and raw in step), list
                                 stale silver and gold days (built from inputs republished
                                 since) and say how to rebuild them (jobs/verify.py); exit 1
                                 if any is damaged or stale
feedrank gap --ds DS --ranker-folder DIR
                                 where a saved ranker's AUC gap to the oracle comes from on
                                 DS: the oracle with latents hidden, and the gap by cohorts
                                 of history (jobs/gap.py); a report under reports/gap/DS/
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from jobs import feeds_cli
from jobs.common import configure_logging, parse_ds
from jobs.settings import SettingsError, available_profiles, load_settings
from jobs.stack import GROUPS as STACK_GROUPS
from jobs.summary import format_summary, ranker_summary, raw_summary
from warehouse.catalog import Layer
from warehouse.ingest.config import FORMATS
from warehouse.store import WarehouseError

log = logging.getLogger("feedrank")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feedrank", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", choices=available_profiles(), help="default: FEEDRANK_PROFILE or tiny"
    )
    parser.add_argument("--seed", type=int, help="override simulator.seed")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the whole pipeline: logs, features, rankers, retrieval, feeds"
    )
    demo.add_argument(
        "--scheduler", action="store_true", help="walk the calendar with Airflow's scheduler"
    )
    demo.add_argument("--port", type=int, default=8080, help="--scheduler: the api-server's port")
    demo.add_argument(
        "--timeout-min", type=float, default=240, help="--scheduler: give up after this long"
    )
    summary = sub.add_parser("summary", help="rows per table and action rates")
    summary.add_argument("--ds", help="also the rankers trained up to this day (MLflow)")
    sub.add_parser("env", help="print export lines for the Airflow and MLflow UIs")
    sub.add_parser("airflow-ui", help="run Airflow (UI on airflow.api_host:8080) on this root")
    ingest = sub.add_parser("ingest", help="load a real impression log (MIND, EB-NeRD, raw)")
    ingest.add_argument("--format", choices=FORMATS, help="default: the profile's log.format")
    ingest.add_argument("--path", help="the log's folder (default: the profile's log.path)")
    ingest.add_argument("--behaviors", help="the impressions file in the folder")
    ingest.add_argument("--items", help="the item metadata file in the folder")
    ingest.add_argument(
        "--first-day", type=parse_ds, help="the log's first day (default: its first request's)"
    )
    ingest.add_argument("--days", type=int, help="the log's days (default: to its last request)")
    gap = sub.add_parser("gap", help="a ranker's AUC gap to the oracle: latents and cohorts")
    gap.add_argument("--ds", required=True, type=parse_ds, help="the day, YYYY-MM-DD")
    gap.add_argument("--ranker-folder", required=True, help="a saved ranker (ranker.json)")
    gap.add_argument("--boot", type=int, default=200, help="bootstrap resamples of users")
    check = sub.add_parser("verify", help="check the committed data, say how to repair it")
    check.add_argument("--layer", action="append", choices=[la.value for la in Layer])
    check.add_argument("--ds", action="append", type=parse_ds, help="a day (repeatable)")
    stack = sub.add_parser("stack", help="start, stop or list the local production-like stack")
    stack.add_argument("action", choices=("up", "down", "status", "env"))
    stack.add_argument(
        "--only",
        action="append",
        choices=STACK_GROUPS,
        help="up: these groups and what they need; down: these groups",
    )
    feeds_cli.add_commands(sub)
    args = parser.parse_args(argv)
    configure_logging()
    overrides = {"simulator": {"seed": args.seed}} if args.seed is not None else None
    if args.command == "ingest":
        return _ingest(args)
    try:
        return _command(args, overrides)
    except SettingsError as err:  # e.g. a log profile's job before any ingest
        print(f"feedrank {args.command}: {err}", file=sys.stderr)
        return 2


def _command(args, overrides) -> int:
    settings = load_settings(args.profile, overrides)
    if args.command in feeds_cli.COMMANDS:
        return feeds_cli.run(args, settings)
    if args.command == "demo" and args.scheduler:
        from jobs.demo_scheduler import demo_scheduler

        if args.seed is not None:  # scheduled runs take the Params' defaults: the profile's seed
            print("feedrank demo --scheduler: --seed is not supported", file=sys.stderr)
            return 2
        return demo_scheduler(settings, port=args.port, timeout_s=args.timeout_min * 60)
    if args.command == "demo":
        from jobs.demo import demo

        return demo(settings, seed=args.seed)
    if args.command == "gap":
        return _gap(args, settings)
    if args.command == "stack":
        return _stack(args, settings)
    if args.command == "verify":
        from jobs import verify

        checked, repairs = verify.run(settings, args.layer, args.ds)
        stale = verify.stale(settings, args.layer, args.ds)
        print(verify.format_report(checked, repairs, settings, stale))
        return 0 if checked.ok and not stale else 1
    if args.command == "summary":
        try:
            print(format_summary(raw_summary(settings)))
        except WarehouseError as err:
            print(f"feedrank summary: {err}", file=sys.stderr)
            return 1
        if args.ds:
            print(f"\n{ranker_summary(settings, args.ds)}")
        return 0
    from jobs.airflow_env import run_ui, shell_exports
    from warehouse.layout import DataRootError

    try:  # the UI's DAGs will write into the root: claim it for this profile, or refuse
        settings.root.claim(settings.profile)
    except DataRootError as err:
        print(f"feedrank {args.command}: {err}", file=sys.stderr)
        return 2
    a = settings.airflow
    if args.command == "airflow-ui":
        # The DAGs parse with this profile's calendar and Params; MLflow on its store.
        os.environ["FEEDRANK_PROFILE"] = settings.profile
        os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
        return run_ui(settings.root, a.api_host)
    print(shell_exports(settings.profile, settings.root, a.api_host, settings.tracking_uri))
    return 0


def _stack(args, settings) -> int:
    """`feedrank stack ACTION`: exit 1 when a service failed to start or is unhealthy."""
    from jobs.processes import StackError
    from jobs.stack import Stack
    from warehouse.layout import DataRootError

    stack = Stack(settings.root, settings.stack, settings.profile)
    groups = tuple(args.only or STACK_GROUPS)
    if args.action == "env":
        print(stack.env_exports(groups))
        return 0
    if args.action == "status":
        rows = stack.status()
        print(f"{'service':<24} {'pid':>8} {'port':>6}  healthy")
        for r in rows:
            print(f"{r['service']:<24} {r['pid'] or '-':>8} {r['port'] or '-':>6}  {r['healthy']}")
        started = [r for r in rows if r["alive"]]
        return 0 if started and all(r["healthy"] for r in started) else 1
    if args.action == "down":
        stack.down(groups)
        return 0
    try:
        settings.root.claim(settings.profile)
        print(f"stack on {settings.stack.host}, state and logs in {stack.folder}")
        stack.up(groups)
    except (StackError, DataRootError) as err:
        print(f"feedrank stack up: {err}", file=sys.stderr)
        return 1
    print('\n# jobs on the stack: eval "$(feedrank stack env)", which prints:')
    print(stack.env_exports(groups))
    return 0


def _gap(args, settings) -> int:
    """`feedrank gap`: the report's tables on stdout, its path on stderr."""
    from pathlib import Path

    from jobs import gap
    from warehouse.layout import Folder

    folder = Folder(Path(args.ranker_folder).expanduser().resolve())
    try:
        done = gap.run(settings, args.ds, folder, n_boot=args.boot)
    except (ValueError, FileNotFoundError) as err:
        print(f"feedrank gap: {err}", file=sys.stderr)
        return 2
    print(done.report.read_text())
    print(f"report: {done.report}", file=sys.stderr)
    return 0


def _ingest(args) -> int:
    """`feedrank ingest`: the format's profile unless --profile names another."""
    from jobs import ingest_log
    from warehouse.contracts import DataContractError
    from warehouse.ingest.common import LogFormatError
    from warehouse.ingest.mapping import IngestError

    profile = args.profile or args.format
    given = (
        ("format", args.format),
        ("path", args.path),
        ("behaviors", args.behaviors),
        ("items", args.items),
    )
    # The calendar is this command's (or the log's own), never an earlier ingest's.
    log_section = {k: v for k, v in given if v} | {"start_date": args.first_day, "days": args.days}
    try:
        settings = load_settings(profile, {"log": log_section})
        done = ingest_log.run(settings)
    except (
        LogFormatError,
        IngestError,
        DataContractError,
        FileNotFoundError,
        SettingsError,
    ) as err:
        print(f"feedrank ingest: {err}", file=sys.stderr)
        return 2
    print(f"ingested {done.format}: {len(done.days)} days, {done.days[0]} .. {done.days[-1]}")
    print("rows: " + ", ".join(f"{name} {n:,}" for name, n in done.rows.items()))
    if done.dropped.impressions:
        print(f"dropped {done.dropped.impressions:,} impressions of items without metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
