"""End to end on the tiny profile: the build_features DAG through dag.test(), incrementally,
checked against a from-scratch build on the whole raw history.

The DAG's build is the session's (tests/conftest.py, TinyDays): every other end-to-end module
starts from the features it builds, so they are built once per run; this module checks them
and then rebuilds a day of its copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jobs.build_features as job
from features.assemble import point_in_time_features
from features.pit import graph_cutoff
from features.registry import AS_OF
from jobs import reading
from jobs.settings import load_settings
from warehouse.catalog import (
    AUTHORS,
    ENGAGEMENTS,
    FOLLOWS,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    POSTS,
    USERS,
    C,
)
from warehouse.contracts import DataContractError
from warehouse.store import Warehouse

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.spark]

DAYS = load_settings("tiny").dates()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """A data root of this module's own, so other end-to-end modules' days don't mix in."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(tmp_path_factory.mktemp("features-home")))
    yield load_settings("tiny")
    patch.undo()


@pytest.fixture(scope="module")
def store(settings, built):
    return Warehouse(settings.root.warehouse)


@pytest.fixture(scope="module")
def built(tiny_days, settings):
    """A copy of the session's days, whose features the DAG built oldest first: the first day
    as a nightly run does, the others as one backfill run (the Param `to`); a run that did
    not succeed fails the build."""
    tiny_days(settings.home)


def test_each_day_is_built_and_published(built, store):
    assert store.partitions(IMPRESSION_FEATURES) == DAYS
    for ds in DAYS:
        feats = store.read_pandas(IMPRESSION_FEATURES, ds)
        imps = store.read_pandas(IMPRESSIONS, ds)
        assert sorted(feats[C.IMPRESSION_ID]) == sorted(imps[C.IMPRESSION_ID])
        assert (feats[AS_OF] < feats[C.SERVED_AT]).all()
        for name in job.TILES:
            assert store.is_committed(reading.state_table(name), ds), name


def test_incremental_build_equals_a_from_scratch_build(built, settings, store, spark):
    """The third day, from per-day state, equals the features computed from raw history."""
    last, history = DAYS[2], DAYS[:3]

    def raw(tbl, days):
        return store.read_spark(spark, tbl, days).drop(C.DS)

    scratch = point_in_time_features(
        raw(IMPRESSIONS, [last]),
        raw(POSTS, history),
        raw(ENGAGEMENTS, history),
        raw(FOLLOWS, [last]),
        raw(USERS, [last]),
        raw(AUTHORS, [last]),
        graph_cutoff(last),
        history_impressions=raw(IMPRESSIONS, history),
        **settings.features.model_dump(),
    ).toPandas()
    published = store.read_pandas(IMPRESSION_FEATURES, last).drop(columns=C.DS)
    assert sorted(scratch.columns) == sorted(published.columns)
    scratch = scratch.sort_values(C.IMPRESSION_ID).reset_index(drop=True)
    published = published.sort_values(C.IMPRESSION_ID).reset_index(drop=True)[scratch.columns]
    for col in scratch.columns:
        a, b = scratch[col], published[col]
        if pd.api.types.is_datetime64_any_dtype(a):  # Spark hands out naive UTC, Parquet aware
            a, b = pd.to_datetime(a, utc=True), pd.to_datetime(b, utc=True)
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(a, b, rtol=1e-9, equal_nan=True, err_msg=col)
        else:
            assert a.map(_plain).tolist() == b.map(_plain).tolist(), col


def _plain(value):
    """Arrays come back as numpy arrays from Parquet and lists from Spark."""
    return list(value) if isinstance(value, list | np.ndarray) else value


def test_a_day_that_fails_its_contract_is_not_published(built, settings, store, monkeypatch):
    real = job.features_from_tiles

    def from_the_future(*args, **kwargs):
        from pyspark.sql import functions as F

        return real(*args, **kwargs).withColumn(AS_OF, F.col(C.SERVED_AT))  # a leak

    monkeypatch.setattr(job, "features_from_tiles", from_the_future)
    before = store.info(IMPRESSION_FEATURES, DAYS[1])
    with pytest.raises(DataContractError, match=r"impression_features.*as_of"):
        job.run(settings, DAYS[1])
    assert store.info(IMPRESSION_FEATURES, DAYS[1]) == before  # the old day still stands
