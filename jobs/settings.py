"""One typed, strict settings object, loaded from a profile plus environment overrides.

    settings = load_settings()                      # FEEDRANK_PROFILE or "tiny"
    settings = load_settings("demo", {"simulator": {"seed": 3}})

A profile is a TOML file in jobs/profiles/. Environment overrides:
    FEEDRANK_PROFILE=demo            the profile
    FEEDRANK_HOME=/data/feedrank     the data root (default: .feedrank/<profile> in the repo)
    FEEDRANK_SEED=11                 shortcut for simulator.seed
    FEEDRANK__SPARK__MASTER=yarn     any field: FEEDRANK__<SECTION>__<FIELD>[__...]=value
Values are parsed as JSON when they parse, else taken as strings. Unknown keys, in a profile
or in the environment, raise.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from features.config import FeatureSettings
from jobs.airflow_env import AirflowSettings
from jobs.spark import SparkSettings
from jobs.stack import StackSettings
from models.feed.config import PrecomputeSettings
from models.ranking.config import MlflowSettings, TrainingSettings
from models.retrieval.config import RetrievalSettings
from simulator.config import SimulatorSettings
from warehouse.config import FeedSettings, WarehouseSettings
from warehouse.ingest.config import RECORDED, LogSettings
from warehouse.layout import DEFAULT_HOME, PROFILES_DIR, DataRoot, default_home, profile_file

if TYPE_CHECKING:
    from warehouse.store import Warehouse

log = logging.getLogger(__name__)

ENV_PREFIX = "FEEDRANK_"
_ENV_SHORTCUTS = {
    "FEEDRANK_PROFILE": None,  # read by load_settings itself
    "FEEDRANK_HOME": ("home",),
    "FEEDRANK_SEED": ("simulator", "seed"),
}


class SettingsError(ValueError):
    """A profile or override that does not fit the settings."""


class Settings(BaseModel):
    """Everything a job needs to know; see each area's class for its fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str  # the profile these settings came from
    home: Path = DEFAULT_HOME  # data root: warehouse, Airflow, MLflow, feed store
    simulator: SimulatorSettings = SimulatorSettings()
    spark: SparkSettings = SparkSettings()
    features: FeatureSettings = FeatureSettings()
    training: TrainingSettings = TrainingSettings()
    mlflow: MlflowSettings = MlflowSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    precompute: PrecomputeSettings = PrecomputeSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    feeds: FeedSettings = FeedSettings()
    airflow: AirflowSettings = AirflowSettings()
    stack: StackSettings = StackSettings()  # the local stack's ports and sizes (jobs/stack.py)
    log: LogSettings = LogSettings()  # a real log instead of the simulator (logs/)

    @property
    def root(self) -> DataRoot:
        return DataRoot(self.home)

    def open_warehouse(self) -> Warehouse:
        """The data root's warehouse, reading with the `warehouse` section's checks."""
        from warehouse.store import Warehouse  # pyarrow and pandas: not for every settings user

        return Warehouse(
            self.root.warehouse,
            checksum_tables=self.warehouse.checksum_tables,
            allow_stale=self.warehouse.allow_stale,
        )

    @property
    def tracking_uri(self) -> str:
        """MLflow's tracking store: the configured server, else SQLite in the data root."""
        return self.mlflow.tracking_uri or self.root.mlflow_tracking_uri

    def dates(self) -> list[str]:
        """The days of the calendar as ds strings: the simulated days, or the log's."""
        days = self.log.dates() if self.log.format else self.simulator.dates()
        if self.log.format and not days:
            raise SettingsError(self.not_ingested())
        return [d.isoformat() for d in days]

    @property
    def first_day(self) -> dt.date:
        """The calendar's first day: nothing before it exists in the warehouse."""
        if self.log.format and self.log.start_date is None:
            raise SettingsError(self.not_ingested())
        return self.log.start_date if self.log.format else self.simulator.start_date

    def not_ingested(self) -> str:
        """What to do when a job on a log profile finds no log's calendar."""
        return (
            f"no {self.log.format} log has been ingested into {self.home} yet (its calendar is "
            f"unknown): run `feedrank --profile {self.profile} ingest --format "
            f"{self.log.format} --path DIR` first"
        )

    @property
    def has_truth(self) -> bool:
        """Whether the raw days come with the simulator's truth (a real log has none)."""
        return self.log.format is None

    @property
    def recorded_tasks(self) -> tuple[str, ...] | None:
        """The ranker tasks the raw input records: a log's (warehouse.ingest.config.RECORDED),
        or None for the simulator, which records every task."""
        return RECORDED[self.log.format] if self.log.format else None


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_settings(
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings: profile file, then environment, then explicit overrides."""
    environ = os.environ if environ is None else environ
    profile = profile or environ.get("FEEDRANK_PROFILE") or "tiny"
    path = profile_file(profile)
    if not path.exists():
        raise SettingsError(f"unknown profile {profile!r}; choose one of {available_profiles()}")
    data = tomllib.loads(path.read_text())
    data["profile"] = profile
    data.setdefault("home", str(default_home(profile)))  # profiles never share a data root
    env, explicit = _env_overrides(environ), copy.deepcopy(dict(overrides or {}))
    _deep_merge(data, _remembered_log(data, env, explicit))
    _deep_merge(data, env)
    _deep_merge(data, explicit)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise SettingsError(f"invalid settings for profile {profile!r}:\n{err}") from None
    return settings.model_copy(update={"home": settings.home.expanduser().resolve()})


def _remembered_log(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The `log` section an ingest recorded in the data root the layers (profile, environment,
    overrides; the last wins) point at, to merge above the profile and below the rest; empty
    when there is none, or when the layers name another log format."""
    home = next(layer["home"] for layer in reversed(layers) if "home" in layer)
    remembered = DataRoot(Path(home).expanduser()).ingested_log()
    named = [layer["log"]["format"] for layer in layers if "format" in layer.get("log", {})]
    if not remembered or (named and named[-1] != remembered.get("format")):
        return {}
    return {"log": remembered}


def describe(settings: Settings) -> str:
    """The resolved settings as indented JSON, for logs and MLflow."""
    return settings.model_dump_json(indent=2)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        if name in _ENV_SHORTCUTS:
            keys = _ENV_SHORTCUTS[name]
        elif name.startswith(ENV_PREFIX + "_") and len(name) > len(ENV_PREFIX) + 1:
            keys = tuple(k.lower() for k in name[len(ENV_PREFIX) + 1 :].split("__"))
        else:
            raise SettingsError(
                f"unknown environment variable {name}; use one of {sorted(_ENV_SHORTCUTS)} "
                "or FEEDRANK__<SECTION>__<FIELD>"
            )
        if keys:
            _set_path(out, keys, _parse(raw))
    return out


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _set_path(data: dict, keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


def _deep_merge(base: dict, extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
