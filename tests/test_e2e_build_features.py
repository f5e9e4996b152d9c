"""End to end on the tiny profile: the build_features DAG through dag.test(), incrementally,
checked against a from-scratch build on the whole raw history."""

from __future__ import annotations

import datetime as dt

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
    Layer,
)
from warehouse.contracts import DataContractError
from warehouse.store import Warehouse

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.spark]

DAYS = load_settings("tiny").dates()[:3]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """A data root of this module's own, so other end-to-end modules' days don't mix in; the
    DAG's tasks read FEEDRANK_HOME when they run."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(tmp_path_factory.mktemp("features-home")))
    yield load_settings("tiny")
    patch.undo()


@pytest.fixture(scope="module")
def store(settings):
    return Warehouse(settings.root.warehouse)


@pytest.fixture(scope="module")
def raw_days(settings, tiny_days):
    """The raw days the features read: the session's simulated days (raw and truth), copied."""
    tiny_days(settings.home, layers=(Layer.RAW, Layer.TRUTH))
    return DAYS


@pytest.fixture(scope="module")
def built(airflow_db, raw_days, store):
    """Each day's features through the DAG, oldest first: the first day as a nightly run
    does, the others as one backfill run (the Param `to`, as `feedrank demo` runs it)."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(airflow_db.dags_folder())).get_dag("build_features")
    states = {}
    for days, conf in (
        (raw_days[:1], {}),
        (raw_days[1:], {"to": raw_days[-1]}),
    ):
        logical = dt.datetime.fromisoformat(days[0]).replace(tzinfo=dt.UTC)
        run = dag.test(logical_date=logical, run_conf={"profile": "tiny", **conf})
        states |= dict.fromkeys(days, str(run.state))
    return states


def test_each_day_is_built_and_published(built, store):
    assert all(state == "success" for state in built.values()), built
    assert store.partitions(IMPRESSION_FEATURES) == DAYS
    for ds in DAYS:
        feats = store.read_pandas(IMPRESSION_FEATURES, ds)
        imps = store.read_pandas(IMPRESSIONS, ds)
        assert sorted(feats[C.IMPRESSION_ID]) == sorted(imps[C.IMPRESSION_ID])
        assert (feats[AS_OF] < feats[C.SERVED_AT]).all()
        for name in job.TILES:
            assert store.is_committed(reading.state_table(name), ds), name


def test_incremental_build_equals_a_from_scratch_build(built, settings, store, spark):
    """The last day, from per-day state, equals the features computed from raw history."""
    last, history = DAYS[-1], DAYS

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
