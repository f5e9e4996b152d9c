"""What the DAG files share: Assets, default args, Params, settings from a run's conf.

DAG files stay declarative; anything they would otherwise compute lives here. The
dag-processor imports this module with every DAG file, again and again: nothing heavy
(Spark, MLflow, LightGBM, torch, Great Expectations, FAISS) at its top level, nor at that of
anything it imports; the jobs' modules are imported when a task runs (`lazy_job`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections.abc import Callable
from typing import Any

import pendulum
from airflow.sdk import Asset, Param
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

# Core's class, not airflow.sdk's: in Airflow 3.3 the SDK EventsTimetable fails to serialize
# ("Failed to serialize DAG ...: '_summary'", apache/airflow#69401).
from airflow.timetables.events import EventsTimetable

from jobs.common import NothingToDo, OutsideCalendar, check_day
from jobs.settings import Settings, SettingsError, available_profiles, load_settings
from warehouse.layout import DataRootError

log = logging.getLogger(__name__)

RAW_LOGS = Asset("feedrank://warehouse/raw")  # a day of raw logs passed its contracts
FEATURES = Asset("feedrank://warehouse/silver/impression_features")  # a day of features
RANKER = Asset("feedrank://mlflow/feedrank-ranker")  # a ranker version was registered and gated
RETRIEVAL = Asset("feedrank://mlflow/feedrank-retrieval")  # a two-tower version was gated
RETRIEVAL_INDEX = Asset("feedrank://artifacts/retrieval_index")  # a day's FAISS index published
FEEDS = Asset("feedrank://warehouse/gold/user_news_feed")  # a day's feeds passed their contract

DEFAULT_ARGS = {
    "owner": "feedrank",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
}


class LazyJob:
    """A `jobs/` module imported on its first attribute, in the task that uses it: the jobs
    import Spark, MLflow, LightGBM and torch, which would cost every parse of the DAG file
    seconds (and, on a busy machine, the dag-processor's timeout)."""

    def __init__(self, name: str) -> None:
        self.module_name = f"jobs.{name}"

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.module_name), attr)

    def __repr__(self) -> str:
        return f"LazyJob({self.module_name!r})"


def lazy_job(name: str) -> LazyJob:
    """`jobs.<name>`, imported when a task first uses it."""
    return LazyJob(name)


def params() -> dict[str, Param]:
    """Params a user sets when triggering a run from the UI."""
    return {
        "profile": Param(
            load_settings().profile,
            type="string",
            enum=available_profiles(),
            description=f"Settings profile: {profile_sizes()}. It must be the profile of "
            "the data root the UI runs on (a job refuses another profile's root).",
        ),
        "seed": Param(
            None,
            type=["null", "integer"],
            description="Override the simulator seed.",
        ),
    }


def training_params() -> dict[str, Param]:
    """Params of a training run, on top of `params()`: the window and the sampling rate."""
    return {
        **params(),
        "train_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Days of training data before the validation days (empty: all).",
        ),
        "negative_rate": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=1,
            description="Share of each task's negatives kept for training (empty: settings).",
        ),
    }


def features_params() -> dict[str, Param]:
    """Params of a features run, on top of `params()`: the last day of a backfill."""
    return {
        **params(),
        "to": Param(
            None,
            type=["null", "string"],
            description="Last day of a backfill, YYYY-MM-DD (empty: the run's day only): "
            "every calendar day from the logical date through it, oldest first, in one task "
            "(one Spark application), each day with its own contract and publish.",
        ),
    }


def _unset(kind: str, description: str, **limits: Any) -> Param:
    """An optional Param of a JSON type, empty (None) unless the user fills it in."""
    return Param(None, type=["null", kind], description=description, **limits)


def ingest_params() -> dict[str, Param]:
    """Params of a log ingest (`feedrank ingest`'s options): the log profile, its files and
    calendar."""
    logs = [p for p in available_profiles() if load_settings(p, environ={}).log.format]
    parsed = load_settings().profile
    return {
        "profile": Param(
            parsed if parsed in logs else logs[0],
            type="string",
            enum=logs,
            description="The log's profile (its format): it must be the data root's.",
        ),
        "path": _unset(
            "string",
            "The log's folder on the machine the task runs on (empty: the profile's log.path).",
        ),
        "behaviors": _unset(
            "string", "The impressions file in the folder (empty: the format's own)."
        ),
        "items": _unset(
            "string", "The item metadata file in the folder (empty: the format's own)."
        ),
        "first_day": _unset(
            "string",
            "The calendar's first day, YYYY-MM-DD, with `days` (empty: the log's own days).",
        ),
        "days": _unset("integer", "The log's days.", minimum=1),
        "max_missing_share": _unset(
            "number",
            "Share of impressions whose item has no metadata dropped before the log is "
            "refused (empty: settings, 0.01).",
            minimum=0,
            maximum=1,
        ),
    }


def log_settings_from(params: dict[str, Any]) -> Settings:
    """Settings of a log ingest from the run's Params (ingest_params) on a data root the
    profile owns. A bad setting fails the task at once: retrying cannot fix it."""
    given = {k: params.get(k) for k in ("path", "behaviors", "items", "max_missing_share")}
    log_section = {k: v for k, v in given.items() if v is not None}
    # The calendar is the run's (or the log's own), never an earlier ingest's.
    log_section |= {"start_date": params.get("first_day"), "days": params.get("days")}
    try:
        settings = load_settings(params.get("profile"), {"log": log_section})
        settings.root.claim(settings.profile)
    except (SettingsError, DataRootError, ValueError) as err:
        raise AirflowFailException(str(err)) from None
    return settings


def run_ingest(params: dict[str, Any]):
    """The ingest task: jobs.ingest_log.run on the Params' settings. A bad file, a log that
    does not fit its calendar or fails a contract fails the task at once with the job's
    one-line message naming the file (retrying cannot fix a file); nothing is published."""
    from warehouse.contracts import DataContractError
    from warehouse.ingest.common import LogFormatError
    from warehouse.ingest.mapping import IngestError

    settings = log_settings_from(params)
    try:
        return lazy_job("ingest_log").run(settings)
    except (LogFormatError, IngestError, DataContractError, FileNotFoundError) as err:
        raise AirflowFailException(str(err)) from None


def backfill_days(settings: Settings, days: list[str], to: str | None) -> list[str]:
    """The days a features run builds: `days` (days_to_build), or, with the Param `to`, every
    calendar day from the first of them through `to`; a `to` before it fails the run."""
    if not to:
        return days
    if to < days[0]:
        raise AirflowFailException(f"Param to={to} is before the run's day {days[0]}")
    return [d for d in settings.dates() if days[0] <= d <= to]


def precompute_params() -> dict[str, Param]:
    """Params of a feed precompute, on top of `params()`: when, and how many candidates."""
    return {
        **params(),
        "generated_at": Param(
            None,
            type=["null", "string"],
            description="Generation time, ISO (e.g. 2026-01-17T15:00:00Z), within the run's "
            "day; empty: the end of the day. Only what was known then is used.",
        ),
        "max_candidates": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=5000,
            description="Candidates scored per user (empty: settings, 500).",
        ),
    }


def profile_sizes() -> str:
    """Each profile's size and calendar (Settings.dates: the simulated days, or the log's),
    for the `profile` Param's description."""
    out = []
    for name in available_profiles():
        s = load_settings(name, environ={})
        what = (
            f"{s.simulator.n_users:,} simulated users" if s.has_truth else f"the {s.log.format} log"
        )
        try:
            days = s.dates()
        except SettingsError:  # a log's calendar is known once it is ingested into its root
            out.append(f"{name} ({what}, its calendar from `feedrank ingest`)")
            continue
        out.append(f"{name} ({what}, {len(days)} days, {days[0]} .. {days[-1]})")
    return "; ".join(out)


def settings_from(params: dict[str, Any], *days: str | None) -> Settings:
    """Settings for a task, from the run's Params, on a data root the profile owns (claimed
    on first use) and, for each of `days`, a day of the profile's calendar. Either failure
    fails the task at once: retrying cannot fix the run's input."""
    overrides: dict[str, Any] = {}
    if params.get("seed") is not None:
        overrides["simulator"] = {"seed": int(params["seed"])}
    training = {k: params[k] for k in ("train_days", "negative_rate") if params.get(k) is not None}
    if training:
        overrides["training"] = training
    if params.get("max_candidates") is not None:
        overrides["precompute"] = {"max_candidates": int(params["max_candidates"])}
    settings = load_settings(params.get("profile"), overrides)
    try:
        for ds in days:
            check_day(settings, ds)
        settings.root.claim(settings.profile)
    except (OutsideCalendar, DataRootError) as err:
        raise AirflowFailException(str(err)) from None
    return settings


def calendar(select: Callable[[Settings], list[str]] | None = None) -> dict[str, Any]:
    """The schedule of a DAG that runs on data days: one run per day of the calendar (of the
    profile the DAGs are parsed with), or of the days `select` picks from it (the nightly
    retrains), each run's logical date the data day. With `airflow.catchup` (the default)
    unpausing the DAG runs its days, oldest first; nothing is ever scheduled outside them.

    The start_date is the calendar's first day, also for the retrains; no end_date. Airflow
    gives a run before a DAG's start_date, or after its end_date, no tasks: it would end
    "success" having done nothing. The timetable ends with the calendar instead, and a run
    triggered for a day after it, or between the retrains' days, is skipped by its first
    task, saying why. (A run triggered before the first day still gets no tasks.)"""
    settings = load_settings()
    try:
        settings.dates()
    except SettingsError:  # a log profile before its ingest: no calendar yet, runs by hand
        return {"schedule": None, "catchup": False}
    picked = select(settings) if select else settings.dates()
    days = [pendulum.datetime(d.year, d.month, d.day, tz="UTC") for d in map(_date, picked)]
    which = f"{len(days)} days, {days[0]:%Y-%m-%d} .. {days[-1]:%Y-%m-%d}"
    if select:
        which = f"{len(days)} of its days: " + ", ".join(f"{d:%Y-%m-%d}" for d in days)
    return {
        "schedule": EventsTimetable(
            days, presorted=True, description=f"{settings.profile}'s calendar, {which}"
        ),
        "start_date": pendulum.datetime(*_date(settings.dates()[0]).timetuple()[:3], tz="UTC"),
        "catchup": settings.airflow.catchup,
    }


def _date(ds: str) -> dt.date:
    return dt.date.fromisoformat(ds)


def wait_for_inputs() -> dict[str, Any]:
    """Arguments of a DAG's `inputs` sensor: it waits for the day's inputs without holding a
    worker slot, and is skipped (not failed) when they never come."""
    cfg = load_settings().airflow
    return {
        "mode": "reschedule",
        "poke_interval": cfg.inputs_poke_s,
        "timeout": cfg.inputs_timeout_s,
        "soft_fail": True,
    }


def inputs_ready(
    missing_inputs: Callable[[Settings, str], str | None], params: dict[str, Any], ds: str
) -> bool:
    """The body of an `inputs` sensor: True when the job's `missing_inputs` finds nothing
    missing for ds; False (poke again) when it names what the day waits for; skipped, with
    the job's reason, on a day the job can never run (NothingToDo: outside the calendar, too
    early), so the downstream tasks are skipped and no Asset is updated."""
    settings = settings_from(params)
    try:
        missing = missing_inputs(settings, ds)
    except NothingToDo as err:
        raise AirflowSkipException(str(err)) from None
    if missing:
        log.info("not yet: %s", missing)
        return False
    log.info("ds=%s: every input is there", ds)
    return True


def asset_scheduled() -> dict[str, Any]:
    """DAG arguments of a DAG scheduled on Assets: unpaused at creation (the default), so a
    user who triggers the first DAG sees the whole chain run."""
    unpaused = load_settings().airflow.asset_dags_unpaused
    return {"is_paused_upon_creation": False} if unpaused else {}


def mark_days(outlet_events, asset: Asset, days: list[str]) -> None:
    """Tag the asset event with the days it published, for the consumers."""
    outlet_events[asset].extra = {"days": list(days)}


def mark_promotion(outlet_events, asset: Asset, outcome) -> None:
    """Tag the asset event with the gate's outcome (a models.registry.handoff.Promotion) and the day
    the model trained up to (`days`, as mark_days: what a consumer builds)."""
    outlet_events[asset].extra = {
        "days": [outcome.ds],
        "version": outcome.version,
        "promoted": outcome.promoted,
        "champion": outcome.champion,
    }


def mark_gate(outlet_events, asset: Asset, gate) -> None:
    """Tag the asset event with a gate over several versions (a models.registry.handoff.Gate): the
    day the models trained up to, the version promoted (None if none) and the champion."""
    winner = gate.winner
    outlet_events[asset].extra = {
        "days": [gate.ds],
        "version": winner.version if winner else None,
        "promoted": winner is not None,
        "champion": gate.champion,
        "versions": [p.version for p in gate.promotions],
    }


def days_to_build(context: dict[str, Any]) -> list[str]:
    """The days an asset-triggered run builds: those its triggering events published.

    A run triggered by hand or by `dag.test()` with a logical date builds that date's day.
    """
    if context.get("logical_date") is not None:
        return [context["ds"]]
    events = context.get("triggering_asset_events") or {}
    days = {ds for evs in events.values() for e in evs for ds in (e.extra or {}).get("days", ())}
    if not days:
        raise ValueError("no logical date and no triggering asset event with a ds: nothing to do")
    return sorted(days)
