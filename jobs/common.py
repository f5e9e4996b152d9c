"""What every job shares: logging, the command line of `spark-submit jobs/x.py`, ds dates."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence

from jobs.settings import Settings, describe, load_settings
from warehouse.layout import Folder

log = logging.getLogger("feedrank")

# Job names that other modules need (the summary reads their reports): each names the job's
# log lines, MLflow run names and report folder, reports/<job>/<ds>/ (warehouse.layout).
TRAIN_RANKERS, EVALUATE_FEEDS, AB_REPORT = "train_rankers", "evaluate_feeds", "ab_report"


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "great_expectations", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def use_tracking(settings: Settings) -> None:
    """MLflow on the settings' tracking store, in the pipeline's experiment: a SQLite file
    and an artifact folder in the data root, or the configured server (which then decides
    where artifacts go)."""
    from models.registry import versions as registry

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    local = settings.mlflow.tracking_uri is None
    artifacts = settings.root.ensure().mlflow_artifacts if local else None
    registry.use_tracking(settings.tracking_uri, settings.mlflow.experiment, artifacts)


def log_settings(job: str, settings: Settings, ds: str | None = None) -> None:
    """Every job calls this first: it logs the resolved settings and claims the data root for
    the profile, so a job never writes into a root that another profile owns
    (warehouse.layout.DataRootError names both profiles and the root)."""
    log.info("%s ds=%s profile=%s\n%s", job, ds, settings.profile, describe(settings))
    settings.root.claim(settings.profile)


class OutsideCalendar(ValueError):
    """A day that is not one of the profile's simulated days."""


def check_day(settings: Settings, ds: str | None) -> str:
    """`ds` if it is a day of the profile's calendar; else OutsideCalendar saying which are."""
    days = settings.dates()
    if ds in days:
        return ds
    what = f"ds={ds} is not" if ds else "no logical date: pick"
    raise OutsideCalendar(
        f"{what} a day of the calendar of profile {settings.profile!r}: {len(days)} days, "
        f"{days[0]} .. {days[-1]} (set the run's logical date to one of them)"
    )


def job_args(description: str, argv: Sequence[str] | None = None) -> tuple[Settings, str]:
    """Parse `--ds` and the settings flags shared by every `spark-submit jobs/x.py`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--ds", required=True, type=parse_ds, help="partition day, YYYY-MM-DD")
    parser.add_argument("--profile", help="tiny | demo | large (default: FEEDRANK_PROFILE)")
    _settings_flags(parser)
    args = parser.parse_args(argv)
    return load_settings(args.profile, _overrides(args)), args.ds


def range_args(description: str, argv: Sequence[str] | None = None) -> tuple[Settings, list[str]]:
    """Parse `--ds D` or `--from D1 --to D2` (every calendar day of the range, in order) and
    the settings flags of job_args; each day must be one of the profile's calendar."""
    parser = argparse.ArgumentParser(description=description)
    one = parser.add_mutually_exclusive_group(required=True)
    one.add_argument("--ds", type=parse_ds, help="one partition day, YYYY-MM-DD")
    one.add_argument("--from", dest="first", type=parse_ds, help="first day of a range")
    parser.add_argument("--to", type=parse_ds, help="last day of the range (with --from)")
    parser.add_argument("--profile", help="tiny | demo | large (default: FEEDRANK_PROFILE)")
    _settings_flags(parser)
    args = parser.parse_args(argv)
    if (args.first is None) != (args.to is None):
        parser.error("--from and --to go together")
    settings = load_settings(args.profile, _overrides(args))
    if args.ds is not None:
        return settings, [args.ds]
    if args.to < args.first:
        parser.error(f"--to {args.to} is before --from {args.first}")
    days = [d for d in settings.dates() if args.first <= d <= args.to]
    for ds in (args.first, args.to):
        check_day(settings, ds)
    return settings, days


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="override simulator.seed")
    parser.add_argument(
        "--allow-stale",
        action="store_true",
        help="build on inputs that are stale (warehouse.allow_stale; refused by default)",
    )


def _overrides(args: argparse.Namespace) -> dict | None:
    overrides: dict = {}
    if args.seed is not None:
        overrides["simulator"] = {"seed": args.seed}
    if args.allow_stale:
        overrides["warehouse"] = {"allow_stale": True}
    return overrides or None


def run_range_job(
    run_days: Callable[[Settings, list[str]], object], doc: str, argv: Sequence[str] | None
) -> int:
    """`main` of a job that builds a range of days in one process (one Spark application):
    `--ds D` is the one-day case of `--from D --to D`. Each day keeps its own contracts and
    atomic publish; a failing day stops the range, the days before it stay published."""
    configure_logging()
    settings, days = range_args(doc.splitlines()[0], argv)
    run_days(settings, days)
    return 0


def run_job(run: Callable[[Settings, str], object], doc: str, argv: Sequence[str] | None) -> int:
    """`main` of a job script: parse the command line, run the day, exit 0."""
    configure_logging()
    settings, ds = job_args(doc.splitlines()[0], argv)
    run(settings, ds)
    return 0


def parse_ds(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"ds must be YYYY-MM-DD, got {value!r}") from None


def shift_ds(ds: str, days: int) -> str:
    return (dt.date.fromisoformat(ds) + dt.timedelta(days=days)).isoformat()


def days_before(first: dt.date, ds: str, days: int) -> list[str]:
    """The up to `days` days before ds, oldest first, that are not before `first`."""
    back = max(0, min(days, (dt.date.fromisoformat(ds) - first).days))
    return [shift_ds(ds, -k) for k in range(back, 0, -1)]


def log_days(first_day: dt.date, ds: str, hours: int) -> list[str]:
    """The days of logs that cover `hours` before the end of ds (posts, impressions, actions),
    none before `first_day`."""
    return [*days_before(first_day, ds, math.ceil(hours / 24)), ds]


def ranker_report_folder(settings: Settings, ds: str, kind: str) -> Folder:
    """Each ranker kind's training report and figures: reports/train_rankers/<ds>/<kind>/."""
    return settings.root.report_folder(TRAIN_RANKERS, ds).sub(kind)


class NothingToDo(Exception):
    """A day a job has nothing to do on, and never will (outside its calendar, too early for
    its split): the DAG's task is skipped, saying why, rather than failed or "success"."""


def calendar_day(settings: Settings, ds: str | None) -> str:
    """check_day, as NothingToDo: for a scheduled or triggered run whose logical date is not
    a data day (the trigger form's default is now)."""
    try:
        return check_day(settings, ds)
    except OutsideCalendar as err:
        raise NothingToDo(str(err)) from None


def nightly_days(settings: Settings) -> list[str]:
    """The data days the nightly ranker retrain runs on: the last day before the closed loop
    (its champion serves the loop's feeds) and, with a loop, the loop's last day (the retrain
    on logs the ranker helped shape). `feedrank demo` trains on the same days."""
    days = settings.dates()
    loop = len(settings.simulator.loop_dates()) if settings.has_truth else 0
    before = days[: len(days) - loop]
    return [before[-1], days[-1]] if loop else [before[-1]]


def retrieval_days(settings: Settings) -> list[str]:
    """The data days the two-tower retrain runs on: the last day before the closed loop."""
    return nightly_days(settings)[:1]


def check_split(settings: Settings, ds: str) -> None:
    """NothingToDo when the calendar has too few days up to ds for the training split
    (train, `training.val_days`, `training.test_days`): no run on ds can ever train."""
    t, days = settings.training, settings.dates()
    need, have = t.val_days + t.test_days + 1, days.index(calendar_day(settings, ds)) + 1
    if have < need:
        raise NothingToDo(
            f"ds={ds} is day {have} of the calendar: a time split with {t.val_days} "
            f"validation and {t.test_days} test days needs {need} days up to it; "
            f"the first day a model can train on is {days[need - 1]}"
        )
