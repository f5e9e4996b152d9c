"""Where local state lives: everything under one data root, FEEDRANK_HOME.

This module and warehouse/store.py are the only places that build paths.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / ".feedrank"  # git-ignored


class DataRootError(RuntimeError):
    """A data root that belongs to another settings profile."""


@dataclasses.dataclass(frozen=True)
class DataRoot:
    """The folders and files of one data root."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def airflow_db_url(self) -> str:
        return f"sqlite:///{(self.airflow_home / 'airflow.db').resolve()}"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{(self.home / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def feed_store(self) -> Path:
        return self.home / "feeds.sqlite"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @staticmethod
    def dags_folder() -> Path:
        return REPO_ROOT / "dags"

    def ensure(self) -> DataRoot:
        for folder in (self.warehouse, self.airflow_home, self.mlflow_artifacts, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def profile_file(self) -> Path:
        """Names the settings profile that owns this root (written on first use)."""
        return self.home / "profile"

    def owner(self) -> str | None:
        """The profile this root belongs to, or None while no job has used it."""
        try:
            return self.profile_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def check_profile(self, profile: str) -> None:
        """Raise DataRootError if another profile owns this root; never writes."""
        owner = self.owner()
        if owner is not None and owner != profile:
            raise DataRootError(
                f"data root {self.home} belongs to profile {owner!r}, not {profile!r}: refusing "
                f"to run {profile!r} on it. Use profile {owner!r} (--profile, FEEDRANK_PROFILE "
                f"or the DAG's `profile` Param), or give {profile!r} its own root (unset "
                f"FEEDRANK_HOME for the default {DEFAULT_HOME / profile}, or an empty folder)."
            )

    def claim(self, profile: str) -> DataRoot:
        """Record `profile` as this root's owner if it has none; raise DataRootError if it
        belongs to another. Call before writing anything into the root."""
        self.check_profile(profile)
        if self.owner() is None:
            self.home.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".profile-")
            with os.fdopen(fd, "w") as out:
                out.write(profile + "\n")
            try:  # link fails if a concurrent first job claimed the root meanwhile
                os.link(tmp, self.profile_file)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            self.check_profile(profile)
        return self
