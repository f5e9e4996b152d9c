"""Truth and raw of a simulated day publish as one unit (issue 32): a crash between the two
layers' commits leaves a day that readers refuse, never one read half old, half new.

Real files under a tiny-profile data root: each table of the day is staged with a few
pandas-sized rows and accepted, then `simulate_platform.publish` commits it as the DAG's
publish task does; the crash is an error raised by the rename that commits the raw layer.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

import jobs.simulate_platform as job
from jobs import verify
from jobs.settings import load_settings
from warehouse import store as store_module
from warehouse.catalog import IMPRESSIONS, SIMULATED_TABLES, TRUTH_IMPRESSIONS, C, Layer, Table
from warehouse.store import Warehouse, WarehouseError

DS = load_settings("tiny").dates()[0]


def rows_of(t: Table, ids: range) -> pa.Table:
    """Rows that fit the catalog's schema of `t`; the int64 columns hold `ids` (so
    impressions and truth agree on impression ids), every other column one constant."""
    at = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    constant = {
        pa.types.is_int32: 1,
        pa.types.is_floating: 0.5,
        pa.types.is_boolean: False,
        pa.types.is_string: "x",
        pa.types.is_timestamp: at,
        pa.types.is_list: [],
    }
    columns = {}
    for f in t.schema:
        if pa.types.is_int64(f.type):
            columns[f.name] = pa.array(list(ids), f.type)
        else:
            value = next(v for test, v in constant.items() if test(f.type))
            columns[f.name] = pa.array([value] * len(ids), f.type)
    return pa.table(columns, schema=t.schema)


def stage_day(store: Warehouse, ids: range) -> None:
    """Stage and accept every simulated table of DS, as simulate + validate leave them."""
    for t in SIMULATED_TABLES:
        store.write_arrow(t, DS, rows_of(t, ids), publish=False)
        store.accept(t, DS, by="a test")


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    return load_settings("tiny")


def crash_at_raw_commit(monkeypatch) -> None:
    """The rename that commits raw's manifest dies: truth is committed, raw is not."""
    real = store_module.os.replace

    def replace(src, dst):
        if f"{Layer.RAW.value}/_manifests" in str(dst):
            raise OSError("killed between the truth and raw commits")
        return real(src, dst)

    monkeypatch.setattr(store_module.os, "replace", replace)


def impression_ids(store: Warehouse, t: Table) -> set[int]:
    return set(store.read_arrow(t, DS, columns=[C.IMPRESSION_ID])[C.IMPRESSION_ID].to_pylist())


def test_a_crash_between_truth_and_raw_of_a_resimulated_day_is_refused(settings, monkeypatch):
    store = settings.open_warehouse()
    stage_day(store, range(10))
    job.publish(settings, DS)
    assert impression_ids(store, TRUTH_IMPRESSIONS) == impression_ids(store, IMPRESSIONS)
    old = {t.name: store.version(t, DS) for t in SIMULATED_TABLES}

    stage_day(store, range(7))  # the day re-simulated: other impressions
    with monkeypatch.context() as patch:
        crash_at_raw_commit(patch)
        with pytest.raises(OSError, match="killed"):
            job.publish(settings, DS)
    new_truth = store.version(TRUTH_IMPRESSIONS, DS)
    assert new_truth != old[TRUTH_IMPRESSIONS.name]  # truth moved, raw did not
    assert store.version(IMPRESSIONS, DS) == old[IMPRESSIONS.name]

    # Evaluation (truth) and features (raw) both refuse the day, naming layers and versions.
    for t in (TRUTH_IMPRESSIONS, IMPRESSIONS):
        with pytest.raises(WarehouseError) as err:
            store.read_arrow(t, DS)
        message = str(err.value)
        assert f"ds={DS}" in message and "out of step" in message, message
        assert "simulate_platform.py" in message, message
    with pytest.raises(WarehouseError) as err:
        store.read_arrow(TRUTH_IMPRESSIONS, DS)
    assert old[IMPRESSIONS.name] in str(err.value)  # what raw's manifest still names
    with pytest.raises(WarehouseError) as err:
        store.read_arrow(IMPRESSIONS, DS)
    assert old[TRUTH_IMPRESSIONS.name] in str(err.value) and new_truth in str(err.value)

    # `feedrank verify` names the day as damage, with the command that rebuilds it.
    found = verify.run(settings)[1]
    assert [(r.table, r.damage[0].check) for r in found] == [
        ("raw.*", "out_of_step"),
        ("truth.*", "out_of_step"),
    ]
    assert found[0].command == f"spark-submit jobs/simulate_platform.py --profile tiny --ds {DS}"

    job.publish(settings, DS)  # the re-run finishes the unit with what was staged
    assert impression_ids(store, TRUTH_IMPRESSIONS) == impression_ids(store, IMPRESSIONS)
    assert impression_ids(store, IMPRESSIONS) == set(range(7))
    assert store.out_of_step(Layer.RAW, DS) is None
    assert verify.run(settings)[0].ok


def test_a_crash_in_the_first_publish_of_a_day_leaves_truth_unreadable(settings, monkeypatch):
    store = settings.open_warehouse()
    stage_day(store, range(5))
    with monkeypatch.context() as patch:
        crash_at_raw_commit(patch)
        with pytest.raises(OSError, match="killed"):
            job.publish(settings, DS)
    assert not store.is_committed(IMPRESSIONS, DS)
    with pytest.raises(WarehouseError, match=r"out of step.*raw\.impressions: the unit.s version"):
        store.read_arrow(TRUTH_IMPRESSIONS, DS)
    job.publish(settings, DS)
    assert impression_ids(store, TRUTH_IMPRESSIONS) == set(range(5))


def test_a_day_published_before_units_reads_as_it_did(settings):
    """A root written before this change: manifests without `paired` read as before."""
    store = settings.open_warehouse()
    stage_day(store, range(3))
    store.publish_day([TRUTH_IMPRESSIONS], DS)
    store.publish_day([t for t in SIMULATED_TABLES if t.layer is Layer.RAW], DS)
    assert "paired" not in store.manifest_record(Layer.RAW, DS)
    assert impression_ids(store, TRUTH_IMPRESSIONS) == impression_ids(store, IMPRESSIONS)
