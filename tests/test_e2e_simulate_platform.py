"""End to end on the tiny profile: the simulate_platform DAG through Airflow's dag.test()."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

import jobs.simulate_platform as job
from jobs.settings import load_settings
from warehouse.catalog import ENGAGEMENTS, IMPRESSIONS, SIMULATED_TABLES, C
from warehouse.contracts import DataContractError
from warehouse.store import Warehouse

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.spark]

SETTINGS = load_settings("tiny")
DAYS = SETTINGS.dates()


@pytest.fixture(scope="module")
def dag(airflow_db, spark):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(airflow_db.dags_folder()))
    return bag.get_dag("simulate_platform")


@pytest.fixture(scope="module")
def store(data_root):
    return Warehouse(data_root.warehouse)


def run_day(dag, ds):
    logical = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    return dag.test(logical_date=logical, run_conf={"profile": "tiny", "seed": None})


def test_days_are_simulated_validated_and_published(dag, store):
    for ds in DAYS[:2]:
        assert str(run_day(dag, ds).state) == "success"
    for tbl in SIMULATED_TABLES:
        assert store.partitions(tbl) == DAYS[:2], tbl.name
    impressions = store.read_pandas(IMPRESSIONS, DAYS[:2])
    engagements = store.read_pandas(ENGAGEMENTS, DAYS[:2])
    day_start = pd.to_datetime(impressions[C.DS]).dt.tz_localize("UTC")
    assert (impressions[C.SERVED_AT] >= day_start).all()
    assert (impressions[C.SERVED_AT] < day_start + pd.Timedelta(days=1)).all()
    assert set(engagements[C.IMPRESSION_ID]) <= set(impressions[C.IMPRESSION_ID])
    ctr = (engagements[C.ACTION] == "click").sum() / len(impressions)
    assert 0.01 < ctr < 0.10


def test_rerunning_a_day_leaves_the_same_data(dag, store):
    before = {t.name: store.read_pandas(t, DAYS[1]) for t in SIMULATED_TABLES}
    assert str(run_day(dag, DAYS[1]).state) == "success"
    for tbl in SIMULATED_TABLES:
        pd.testing.assert_frame_equal(store.read_pandas(tbl, DAYS[1]), before[tbl.name])


def test_a_day_that_fails_its_contract_is_never_published(dag, store, monkeypatch):
    real = job.simulate_day

    def engagement_before_impression(*args, **kwargs):
        logs = real(*args, **kwargs)
        bad = logs.engagements.copy()
        bad.loc[bad.index[0], C.EVENT_TS] = pd.Timestamp(DAYS[2], tz="UTC")  # before serving
        return dataclasses.replace(logs, engagements=bad)

    monkeypatch.setattr(job, "simulate_day", engagement_before_impression)
    for t in dag.tasks:
        t.retries = 0  # fail now rather than after the retry delays
    run = run_day(dag, DAYS[2])
    assert str(run.state) == "failed"
    assert DAYS[2] not in store.partitions(ENGAGEMENTS)
    assert DAYS[2] not in store.partitions(IMPRESSIONS)  # the whole day is held back
    # What failed stays staged for inspection, and the error names table, column and check.
    with pytest.raises(DataContractError, match=r"engagements.*event_ts.*expect_"):
        job.validate(SETTINGS, DAYS[2])
