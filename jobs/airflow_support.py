"""What the DAG files share: Assets, default args, Params, settings from a run's conf.

DAG files stay declarative; anything they would otherwise compute lives here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, Param

from jobs.settings import Settings, available_profiles, load_settings

RAW_LOGS = Asset("feedrank://warehouse/raw")  # a day of raw logs passed its contracts
FEATURES = Asset("feedrank://warehouse/silver/impression_features")  # a day of features
RANKER = Asset("feedrank://mlflow/feedrank-ranker")  # a ranker version was registered and gated
RETRIEVAL = Asset("feedrank://mlflow/feedrank-retrieval")  # a two-tower version was gated
RETRIEVAL_INDEX = Asset("feedrank://artifacts/retrieval_index")  # a day's FAISS index published

DEFAULT_ARGS = {
    "owner": "feedrank",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
}


def params() -> dict[str, Param]:
    """Params a user sets when triggering a run from the UI."""
    return {
        "profile": Param(
            load_settings().profile,
            type="string",
            enum=available_profiles(),
            description="Settings profile (sizes in DESIGN.md).",
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


def settings_from(params: dict[str, Any]) -> Settings:
    """Settings for a task, from the run's Params."""
    overrides: dict[str, Any] = {}
    if params.get("seed") is not None:
        overrides["simulator"] = {"seed": int(params["seed"])}
    training = {k: params[k] for k in ("train_days", "negative_rate") if params.get(k) is not None}
    if training:
        overrides["training"] = training
    return load_settings(params.get("profile"), overrides)


def calendar() -> dict[str, Any]:
    """start_date and end_date of the scheduled runs: the default profile's simulated days."""
    cfg = load_settings().simulator
    start = dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=dt.UTC)
    return {"start_date": start, "end_date": start + dt.timedelta(days=cfg.days - 1)}


def mark_days(outlet_events, asset: Asset, days: list[str]) -> None:
    """Tag the asset event with the days it published, for the consumers."""
    outlet_events[asset].extra = {"days": list(days)}


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
