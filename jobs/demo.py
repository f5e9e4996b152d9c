"""`feedrank demo`: the pipeline end to end through Airflow, for every day of a profile.

For each day before the closed loop, `simulate_platform` runs with `dag.test()`; then
`build_features` builds all of those days in one run (a backfill: its Param `to`, one Spark
application, each day its own contract and publish); then `train_rankers` and
`train_retrieval` run once on the last of them. Then,
with a closed loop (`simulator.serving.loop_days`), for each loop day: the retrieval index,
the precomputed feeds of the day before and their publication to the feed store, the loop
day itself (treatment reads those feeds), its features and the A/B report; after the last
loop day, `train_rankers` again: the nightly retrain on logs the ranker helped shape.
Without one: the index, feeds and publication of the day before the last (evaluated on the
last day). The
terminal shows one line per day with each stage's time, then a summary; everything else
(Airflow's task logs, Spark's, the jobs' own) goes to a log file under the data root, named on
the first line. On a failure the end of that log is shown.

On a data root built before, every day is rebuilt in this order (a day re-simulated with the
same seed has the same bytes and marks nothing stale), so what an earlier run left stale is
rebuilt; a job never builds on a stale input (warehouse.lineage), and the run ends by
checking that nothing it leaves is stale, else it fails naming `feedrank verify`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner

from jobs.settings import Settings
from jobs.summary import (
    ab_summary,
    feeds_summary,
    first_page,
    format_summary,
    ranker_summary,
    raw_summary,
)
from warehouse.catalog import IMPRESSION_FEATURES, SIMULATED_TABLES

# Run in this order for each day, and what each must have published for it.
PIPELINE = {
    "simulate_platform": SIMULATED_TABLES,
    "build_features": (IMPRESSION_FEATURES,),
}
SIMULATE, FEATURES_DAG = ("simulate_platform",), "build_features"
TRAINING_DAG = "train_rankers"  # then once, on every day: training set, rankers, registry
# Then retrieval on every day, and the feeds of the day before the last (the last day is the
# one their quality is measured on), published to the feed store.
RETRIEVAL_DAG = "train_retrieval"
FEED_DAGS = ("build_retrieval_index", "precompute_feeds", "publish_feeds")
AB_DAG = "ab_report"
TAIL_LINES = 40  # lines of the log shown when a step fails


class StepFailed(RuntimeError):
    """A DAG run that did not succeed, or published nothing."""


def demo(settings: Settings, seed: int | None = None) -> int:
    """Run every DAG of the pipeline for each day of the profile; 0 when all succeeded."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = settings.root.log_file(f"demo-{stamp}")
    with _output_to(log_path) as terminal:
        console = Console(file=terminal, highlight=False, soft_wrap=True)
        console.print(
            f"feedrank demo, profile [bold]{settings.profile}[/], data root {settings.home}\n"
            f"detailed logs: {log_path}"
        )
        try:
            _run(settings, seed, console)
        except StepFailed as err:
            console.print(f"[red]{err}[/]; the end of the log:")
            console.print(_tail(log_path), markup=False, highlight=False)
            console.print(f"[red]failed[/]; the whole log: {log_path}")
            return 1
    return 0


def _run(settings: Settings, seed: int | None, console: Console) -> None:
    from jobs.airflow_env import prepare_airflow

    started = time.perf_counter()
    # DAG files read the profile at parse time (calendar, Param defaults): parse them with ours.
    os.environ["FEEDRANK_PROFILE"] = settings.profile
    with _status(console, "preparing Airflow (db migrate) and parsing the DAGs"):
        prepare_airflow(settings.root)
        from airflow.dag_processing.dagbag import DagBag  # only after the environment is set

        bag = DagBag(dag_folder=str(settings.root.dags_folder()))
    if bag.import_errors:
        raise StepFailed(f"DAG import errors: {json.dumps(bag.import_errors, indent=2)}")
    conf = {"profile": settings.profile, "seed": seed}
    days = settings.dates()
    loop = [d.isoformat() for d in settings.simulator.loop_dates()]
    before = days[: len(days) - len(loop)]
    for i, ds in enumerate(before, 1):
        _day(console, bag, conf, settings, ds, f"[{i:>2}/{len(days)}] {ds}", SIMULATE)
    _backfill(console, bag, conf, settings, before)
    trained = before[-1]
    _step(console, bag, conf, TRAINING_DAG, trained, f"on the days up to {trained}")
    _step(console, bag, conf, RETRIEVAL_DAG, trained)
    if loop:
        for i, ds in enumerate(loop, len(before) + 1):
            feeds_day = days[i - 2]
            for dag_id in FEED_DAGS:
                _step(console, bag, conf, dag_id, feeds_day)
            _day(console, bag, conf, settings, ds, f"[{i:>2}/{len(days)}] {ds} (closed loop)")
            _step(console, bag, conf, AB_DAG, ds)
        # The nightly retrain after the loop: it trains on logs the ranker helped shape, and
        # its gate compares it with the champion on held-out days, as every night.
        what = f"on the days up to {loop[-1]} (the nightly retrain, on the loop's logs)"
        _step(console, bag, conf, TRAINING_DAG, loop[-1], what)
    else:
        feeds_day = days[-2] if len(days) > 1 else None
        for dag_id in FEED_DAGS if feeds_day else ():
            _step(console, bag, conf, dag_id, feeds_day)
    _check_current(settings)
    console.print()
    console.print(format_summary(raw_summary(settings), time.perf_counter() - started))
    console.print()
    console.print(ranker_summary(settings, trained), markup=False)
    if feeds_day:
        console.print()
        console.print(feeds_summary(settings, feeds_day), markup=False)
    if loop:
        console.print()
        console.print(ab_summary(settings, loop[-1]), markup=False)
        console.print("\nthe nightly retrain on the loop's logs:")
        console.print(ranker_summary(settings, loop[-1]), markup=False)
        console.print("\nthe first page of a user's feed, as the read path returns it:")
        console.print(first_page(settings), markup=False)
    p = settings.profile
    console.print(
        f"\nnext: `make airflow-ui PROFILE={p}` (http://localhost:8080), "
        f"`make mlflow-ui PROFILE={p}` (http://localhost:5000), "
        f"`feedrank --profile {p} serve` (the feeds over HTTP)"
    )


def _day(
    console, bag, conf, settings: Settings, ds: str, line: str, dag_ids=tuple(PIPELINE)
) -> None:
    """The day's logs and features (or the DAGs named), each DAG checked to have published
    its tables."""
    for dag_id in dag_ids:
        with _status(console, f"{line}  {dag_id} ..."):
            seconds = _test(bag.get_dag(dag_id), ds, conf)
        _check_published(settings, dag_id, [ds])
        line += f"  {dag_id} {seconds:>3.0f}s"
    console.print(line)


def _backfill(console, bag, conf, settings: Settings, days: list[str]) -> None:
    """The features of `days` (consecutive, logs published) in one build_features run: its
    Param `to`, one task and one Spark application, each day its own contract and publish."""
    dag_id = FEATURES_DAG
    what = f"{days[0]} .. {days[-1]} ({len(days)} days, one run)"
    with _status(console, f"{dag_id} {what} ..."):
        seconds = _test(bag.get_dag(dag_id), days[0], {**conf, "to": days[-1]})
    _check_published(settings, dag_id, days)
    console.print(f"{dag_id} {what}  {seconds:.0f}s")


def _check_published(settings: Settings, dag_id: str, days: list[str]) -> None:
    store = settings.open_warehouse()
    for ds in days:
        missing = [t.name for t in PIPELINE[dag_id] if not store.is_committed(t, ds)]
        if missing:  # a run outside the DAG's calendar succeeds without running a task
            raise StepFailed(f"{dag_id} ds={ds} published nothing for {missing}")


def _check_current(settings: Settings) -> None:
    """Nothing the run leaves is stale (warehouse.lineage). The demo rebuilds every day in
    order, so a day it re-simulated has its features, training set and feeds rebuilt after
    it; what it does not rebuild (a day outside its calendar) is named with the fix."""
    from warehouse.lineage import stale_partitions

    stale = stale_partitions(settings.open_warehouse())
    if stale:
        listed = "; ".join(str(s) for s in stale[:3]) + ("; ..." if len(stale) > 3 else "")
        raise StepFailed(
            f"{len(stale)} partitions are stale after the run ({listed}): "
            f"`feedrank --profile {settings.profile} verify` lists them with the commands "
            "that rebuild them"
        )


def _step(console, bag, conf, dag_id: str, ds: str, what: str | None = None) -> None:
    with _status(console, f"{dag_id} {what or ds} ..."):
        seconds = _test(bag.get_dag(dag_id), ds, conf)
    console.print(f"{dag_id} {what or ds}  {seconds:.0f}s")


# Each DAG's Param values as parsed, by dag_id (see _test).
_PARSED_PARAMS: dict[str, dict[tuple[str | None, str], object]] = {}


def _test(dag, ds: str, conf: dict) -> float:
    """dag.test() for the day; its seconds, or StepFailed.

    dag.test() runs the tasks in this process, on the DAG object, and resolving a run's conf
    sets the value of the task's own Param objects (airflow.sdk's ParamsDict shares them with
    every run's): without a reset, the backfill's `to` became the default of the next
    build_features run, the loop day's, which then failed with "Param to=<the backfill's last
    day> is before the run's day". Each run starts from the values as parsed."""
    _reset_params(dag)
    t0 = time.perf_counter()
    logical = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    state = str(getattr(dag.test(logical_date=logical, run_conf=conf), "state", "unknown"))
    if "success" not in state:
        raise StepFailed(f"{dag.dag_id} ds={ds} ended {state}")
    return time.perf_counter() - t0


def _reset_params(dag) -> None:
    """Give the Params of the DAG and of each of its tasks (each task holds its own copies,
    which are the ones a run's conf is resolved into) the values they had when the DAG was
    first run here."""
    holders = {None: dag.params, **{t.task_id: t.params for t in dag.tasks}}
    parsed = _PARSED_PARAMS.setdefault(
        dag.dag_id,
        {(h, k): params.get_param(k).value for h, params in holders.items() for k in params},
    )
    for (holder, key), value in parsed.items():
        holders[holder].get_param(key).value = value


def _status(console: Console, text: str) -> Live:
    """A spinner line while a step runs. Unlike `console.status`, it leaves sys.stdout and
    sys.stderr alone, so what the step prints still goes to the log file."""
    spinner = Spinner("dots", text)
    return Live(
        spinner, console=console, transient=True, redirect_stdout=False, redirect_stderr=False
    )


@contextlib.contextmanager
def _output_to(path) -> Iterator[TextIO]:
    """Send this process's stdout and stderr (its children's and the JVM's too: file
    descriptors 1 and 2) to `path`; yield a stream to the original terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.ExitStack() as stack:
        log_file = stack.enter_context(open(path, "a", buffering=1))
        terminal = stack.enter_context(os.fdopen(os.dup(1), "w", buffering=1))
        for fd in (1, 2):  # restored last in, first out, even if a later step fails
            saved = os.dup(fd)
            stack.callback(os.close, saved)
            stack.callback(os.dup2, saved, fd)
            stack.callback(_flush)
            os.dup2(log_file.fileno(), fd)
        yield terminal


def _flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()


def _tail(path, lines: int = TAIL_LINES) -> str:
    with open(path, errors="replace") as f:
        return "".join(collections.deque(f, maxlen=lines)).rstrip()
