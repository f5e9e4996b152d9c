"""Warehouse: partitions commit atomically, re-runs replace, crashes leave nothing partial."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from warehouse import store as store_module
from warehouse.catalog import POSTS, USERS
from warehouse.store import MARKER, Warehouse, WarehouseError

DS = "2026-01-05"


def users_frame(n: int, country: str = "us") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": range(n),
            "created_at": pd.Timestamp("2025-06-01", tz="UTC"),
            "country": country,
            "age_bucket": "25-34",
            "gender": "f",
            "primary_device": "mobile",
            "is_person_author": False,
        }
    )


@pytest.fixture
def wh(tmp_path):
    return Warehouse(tmp_path / "warehouse")


def test_write_then_read_round_trips_with_ds(wh):
    info = wh.write_arrow(USERS, DS, users_frame(3))
    assert info.rows == 3
    assert wh.partitions(USERS) == [DS]
    back = wh.read_pandas(USERS, DS)
    assert list(back["user_id"]) == [0, 1, 2]
    assert set(back["ds"]) == {DS}
    assert str(back["created_at"].dt.tz) == "UTC"


def test_rerun_of_a_day_replaces_it_exactly(wh):
    wh.write_arrow(USERS, DS, users_frame(5, "us"))
    wh.write_arrow(USERS, DS, users_frame(2, "br"))
    back = wh.read_pandas(USERS, DS)
    assert list(back["country"]) == ["br", "br"]  # nothing of the first write survives
    assert not (wh.table_dir(USERS) / "_trash").exists() or not any(
        (wh.table_dir(USERS) / "_trash").iterdir()
    )


def test_staged_partition_is_invisible_until_published(wh):
    wh.write_arrow(USERS, DS, users_frame(4), publish=False)
    assert wh.partitions(USERS) == []
    with pytest.raises(WarehouseError, match="no committed partition"):
        wh.read_pandas(USERS, DS)
    assert len(wh.read_pandas(USERS, DS, staged=True)) == 4
    wh.publish(USERS, DS)
    assert len(wh.read_pandas(USERS, DS)) == 4


def test_crash_mid_write_keeps_the_old_partition(wh, monkeypatch):
    wh.write_arrow(USERS, DS, users_frame(3, "us"))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module.pq, "write_table", crash)
    with pytest.raises(OSError):
        wh.write_arrow(USERS, DS, users_frame(9, "br"))
    assert list(wh.read_pandas(USERS, DS)["country"]) == ["us"] * 3
    # The interrupted write has no marker, so it can never be published by mistake.
    assert not wh.is_committed(USERS, DS, staged=True)
    with pytest.raises(WarehouseError, match="nothing complete is staged"):
        wh.publish(USERS, DS)


def test_crash_between_the_two_renames_leaves_no_partial_partition(wh, monkeypatch):
    wh.write_arrow(USERS, DS, users_frame(3, "us"))
    wh.write_arrow(USERS, DS, users_frame(2, "br"), publish=False)
    real_rename = type(wh.root).rename
    calls = []

    def rename_then_crash(self, target):
        calls.append(self)
        if len(calls) == 2:  # the old partition went to the trash; the new one never arrives
            raise OSError("killed")
        return real_rename(self, target)

    monkeypatch.setattr(type(wh.root), "rename", rename_then_crash)
    with pytest.raises(OSError):
        wh.publish(USERS, DS)
    monkeypatch.undo()
    assert wh.partitions(USERS) == []  # none, rather than a mix
    wh.publish(USERS, DS)  # the staged write is intact and publishes on retry
    assert list(wh.read_pandas(USERS, DS)["country"]) == ["br", "br"]


def test_folder_without_marker_is_ignored_by_readers(wh):
    wh.write_arrow(USERS, DS, users_frame(2))
    (wh.partition_dir(USERS, DS) / MARKER).unlink()
    assert wh.partitions(USERS) == []


def test_schema_mismatch_names_table_and_column(wh):
    bad = users_frame(2).drop(columns="country")
    with pytest.raises(WarehouseError, match=r"raw\.users.*missing \['country'\]"):
        wh.write_arrow(USERS, DS, bad)
    wrong_type = users_frame(2).assign(user_id=["a", "b"])
    with pytest.raises(WarehouseError, match=r"raw\.users"):
        wh.write_arrow(USERS, DS, wrong_type)


def test_bad_ds_is_refused(wh):
    with pytest.raises(WarehouseError, match="YYYY-MM-DD"):
        wh.write_arrow(USERS, "05/01/2026", users_frame(1))


def posts_frame(n: int, day: str) -> pd.DataFrame:
    created = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=1)
    return pd.DataFrame(
        {
            "post_id": range(n),
            "author_id": 1,
            "created_at": created,
            "topic": 3,
            "hashtags": [["#a", "#b"]] * n,
            "media_type": "text",
            "length": 120,
            "has_url": False,
        }
    )


@pytest.mark.spark
def test_spark_write_and_read_agree_with_arrow(wh, spark):
    next_day = (dt.date.fromisoformat(DS) + dt.timedelta(days=1)).isoformat()
    wh.write_arrow(POSTS, DS, posts_frame(3, DS))
    df = wh.read_spark(spark, POSTS, DS).drop("ds")
    info = wh.write_spark(POSTS, next_day, df)
    assert info.rows == 3
    both = wh.read_spark(spark, POSTS, [DS, next_day])
    assert sorted(r.ds for r in both.select("ds").distinct().collect()) == [DS, next_day]
    assert both.schema["hashtags"].dataType.simpleString() == "array<string>"
    assert wh.read_pandas(POSTS, next_day)["hashtags"].map(list).tolist() == [["#a", "#b"]] * 3


@pytest.mark.spark
def test_spark_write_with_wrong_type_is_refused(wh, spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame(posts_frame(1, DS)).withColumn("length", F.lit("long"))
    with pytest.raises(WarehouseError, match="length is string"):
        wh.write_spark(POSTS, DS, df)
