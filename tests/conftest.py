"""Shared fixtures: one SparkSession for the whole run; Airflow and the data root in a temp dir.

The environment is set at import, before anything imports airflow (it reads its config then).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="feedrank-tests-"))
for _name in list(os.environ):
    if _name.startswith("FEEDRANK_"):  # a developer's overrides must not leak into tests
        del os.environ[_name]
os.environ["FEEDRANK_HOME"] = str(_HOME)
os.environ["FEEDRANK_PROFILE"] = "tiny"

from jobs.airflow_env import airflow_environ  # noqa: E402
from jobs.spark import SparkSettings, get_spark  # noqa: E402
from warehouse.layout import DataRoot  # noqa: E402

os.environ.update(airflow_environ(DataRoot(_HOME).ensure()))
logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO at exit hits closed streams


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for every Spark test: two cores, one shuffle partition."""
    session = get_spark(
        SparkSettings(master="local[2]", app_name="feedrank-tests", shuffle_partitions=1)
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def data_root() -> DataRoot:
    """The tests' data root (FEEDRANK_HOME): warehouse, Airflow DB, MLflow."""
    return DataRoot(_HOME)


@pytest.fixture(scope="session")
def airflow_db(data_root):
    """A migrated Airflow metadata DB (SQLite) in the tests' data root."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return data_root
