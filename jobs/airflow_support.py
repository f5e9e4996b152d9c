"""What the DAG files share: Assets, default args, Params, settings from a run's conf.

DAG files stay declarative; anything they would otherwise compute lives here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, Param

from jobs.settings import Settings, available_profiles, load_settings

RAW_LOGS = Asset(
    "feedrank://warehouse/raw",
    extra={"tables": "users,authors,follows,posts,impressions,engagements"},
)

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


def settings_from(params: dict[str, Any]) -> Settings:
    """Settings for a task, from the run's Params."""
    overrides = {}
    if params.get("seed") is not None:
        overrides["simulator"] = {"seed": int(params["seed"])}
    return load_settings(params.get("profile"), overrides)


def calendar() -> dict[str, Any]:
    """start_date and end_date of the scheduled runs: the default profile's simulated days."""
    cfg = load_settings().simulator
    start = dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=dt.UTC)
    return {"start_date": start, "end_date": start + dt.timedelta(days=cfg.days - 1)}
