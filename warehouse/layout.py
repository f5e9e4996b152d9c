"""Where local state lives: everything under one data root, FEEDRANK_HOME.

This module and warehouse/store.py are the only places that build paths.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / ".feedrank"  # git-ignored


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
    def artifacts(self) -> Path:
        """Versioned model artifacts by ds (warehouse.artifacts), e.g. the retrieval index."""
        return self.home / "artifacts"

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
