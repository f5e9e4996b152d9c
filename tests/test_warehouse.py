"""Warehouse: partitions commit atomically, re-runs replace, crashes leave nothing partial."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
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
    first = wh.partition_dir(USERS, DS)
    wh.write_arrow(USERS, DS, users_frame(2, "br"))
    back = wh.read_pandas(USERS, DS)
    assert list(back["country"]) == ["br", "br"]  # nothing of the first write survives
    # The replaced version stays for readers that began on it, until collected.
    assert (first / MARKER).exists()
    assert wh.collect(USERS, DS, grace_s=0) == [first.name]
    assert not first.exists()
    assert list(wh.read_pandas(USERS, DS)["country"]) == ["br", "br"]


def test_staged_partition_is_invisible_until_published(wh):
    wh.write_arrow(USERS, DS, users_frame(4), publish=False)
    assert wh.partitions(USERS) == []
    with pytest.raises(WarehouseError, match="no committed partition"):
        wh.read_pandas(USERS, DS)
    assert len(wh.read_pandas(USERS, DS, staged=True)) == 4
    wh.accept(USERS, DS, by="a test")
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


def test_crash_before_the_manifest_is_replaced_keeps_the_old_partition(wh, monkeypatch):
    wh.write_arrow(USERS, DS, users_frame(3, "us"))
    wh.write_arrow(USERS, DS, users_frame(2, "br"), publish=False)
    wh.accept(USERS, DS, by="a test")

    def crash(*args, **kwargs):  # the commit is the manifest's rename: it never happens
        raise OSError("killed")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError):
        wh.publish(USERS, DS)
    monkeypatch.undo()
    assert wh.partitions(USERS) == [DS]  # the old one, rather than a mix or none
    assert list(wh.read_pandas(USERS, DS)["country"]) == ["us"] * 3
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


def test_publish_refuses_what_did_not_pass_its_contract(wh):
    wh.write_arrow(USERS, DS, users_frame(3), publish=False)
    with pytest.raises(WarehouseError, match=r"raw\.users ds=2026-01-05: .*has not passed its"):
        wh.publish(USERS, DS)
    assert wh.partitions(USERS) == []


def test_publish_refuses_files_changed_after_acceptance(wh):
    wh.write_arrow(USERS, DS, users_frame(3), publish=False)
    wh.accept(USERS, DS, by="a test")
    path = wh.partition_dir(USERS, DS, staged=True) / "part-00000.parquet"
    pq.write_table(pq.read_table(path).slice(0, 2), path)  # a row lost after the check
    with pytest.raises(WarehouseError, match=r"raw\.users ds=2026-01-05: the files .*changed"):
        wh.publish(USERS, DS)
    assert wh.partitions(USERS) == []


def test_publish_checks_the_rows_the_marker_claims(wh):
    wh.write_arrow(USERS, DS, users_frame(3), publish=False)
    wh.accept(USERS, DS, by="a test")
    marker = wh.partition_dir(USERS, DS, staged=True) / MARKER
    marker.write_text(marker.read_text().replace('"rows": 3', '"rows": 503'))
    with pytest.raises(WarehouseError, match="the files hold 3 rows, the commit marker says 503"):
        wh.publish(USERS, DS)


def test_a_day_of_a_layer_is_published_in_one_commit(wh, monkeypatch):
    for t, frame in ((USERS, users_frame(3)), (POSTS, posts_frame(2, DS))):
        wh.write_arrow(t, DS, frame, publish=False)
        wh.accept(t, DS, by="a test")
    # The first table's checks pass, the second's staged files were tampered with: neither
    # is published (the day is one unit), rather than users alone.
    path = wh.partition_dir(POSTS, DS, staged=True) / "part-00000.parquet"
    pq.write_table(pq.read_table(path).slice(0, 1), path)
    with pytest.raises(WarehouseError, match=r"raw\.posts"):
        wh.publish_day([USERS, POSTS], DS)
    assert wh.partitions(USERS) == wh.partitions(POSTS) == []
    wh.write_arrow(POSTS, DS, posts_frame(2, DS), publish=False)
    wh.accept(POSTS, DS, by="a test")
    infos = wh.publish_day([USERS, POSTS], DS)
    assert {name: info.rows for name, info in infos.items()} == {"users": 3, "posts": 2}
    assert wh.manifest(USERS.layer, DS) == {t.name: infos[t.name].version for t in (USERS, POSTS)}


def test_a_dropped_column_is_not_read_back_as_nulls(wh):
    wh.write_arrow(USERS, DS, users_frame(2))
    path = wh.partition_dir(USERS, DS) / "part-00000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["country"]), path)
    problems = wh.check_files(USERS, DS)
    assert [(p.column, p.check) for p in problems] == [("country", "expect_column_to_exist")]
    with pytest.raises(WarehouseError, match=r"raw\.users ds=2026-01-05: .*country"):
        wh.read_pandas(USERS, DS)


def test_the_writer_records_its_notes_in_the_commit(wh):
    wh.write_arrow(USERS, DS, users_frame(1), meta={"seed": 7})
    assert wh.info(USERS, DS).meta == {"seed": 7}


def test_a_second_lock_on_a_layer_day_fails_at_once(wh):
    with wh.lock(USERS.layer, DS, job="first run"):
        second = wh.lock(USERS.layer, DS, job="second run")
        with pytest.raises(WarehouseError, match=r"raw ds=2026-01-05 is being written by first"):
            second.__enter__()
        with wh.lock(USERS.layer, "2026-01-06", job="another day"):  # other days are free
            pass
    with wh.lock(USERS.layer, DS, job="after the first"):
        pass


@pytest.mark.spark
def test_a_reader_finishes_on_the_version_it_began_with(wh, spark):
    wh.write_arrow(USERS, DS, users_frame(3, "us"))
    reading = wh.read_spark(spark, USERS, DS)  # files listed now, read at collect
    wh.write_arrow(USERS, DS, users_frame(2, "br"))  # republished meanwhile
    assert sorted(r.country for r in reading.collect()) == ["us"] * 3
    assert [r.country for r in wh.read_spark(spark, USERS, DS).collect()] == ["br", "br"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], r"is not valid JSON \(truncated\?\)"),
        (lambda text: "{not json", r"is not valid JSON: Expecting property name"),
        (lambda text: '{"layer": "raw", "ds": "2026-01-05"}', r"has no 'tables' key"),
        (lambda text: "[1, 2]", r"is not a JSON object"),
        (lambda text: '{"tables": {"users": null}}', r"tables \['users'\] name no version"),
    ],
)
def test_a_damaged_manifest_is_named_with_what_is_wrong(wh, damage, message):
    wh.write_arrow(USERS, DS, users_frame(3))
    path = wh.root / "raw" / "_manifests" / f"ds={DS}.json"
    path.write_text(damage(path.read_text()))
    where = rf"the manifest of raw ds={DS} \({path}\) "
    for read in (lambda: wh.read_pandas(USERS, DS), lambda: wh.manifest(USERS.layer, DS)):
        with pytest.raises(WarehouseError, match=where.rstrip() + r"[ :].*" + message):
            read()
