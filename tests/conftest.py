"""Shared fixtures: one SparkSession for the whole run, tiny settings under a temp home."""

from __future__ import annotations

import pytest

from jobs.spark import SparkSettings, get_spark


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for every Spark test: two cores, one shuffle partition."""
    session = get_spark(
        SparkSettings(master="local[2]", app_name="feedrank-tests", shuffle_partitions=1)
    )
    yield session
    session.stop()
