"""Warehouse: partitions commit atomically, re-runs replace, crashes leave nothing partial."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import store as store_module
from warehouse.catalog import POSTS, TRAINING_EXAMPLES, USER_NEWS_FEED, USERS
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
    before = sorted(p.name for p in wh.partition_dir(USERS, DS).parent.iterdir())
    with pytest.raises(OSError):
        wh.write_arrow(USERS, DS, users_frame(9, "br"))
    assert list(wh.read_pandas(USERS, DS)["country"]) == ["us"] * 3
    # The failed write's version folder is gone at once, not at the next collection.
    assert sorted(p.name for p in wh.partition_dir(USERS, DS).parent.iterdir()) == before
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


def test_a_staged_folder_without_marker_is_ignored_by_readers(wh):
    wh.write_arrow(USERS, DS, users_frame(2), publish=False)
    (wh.partition_dir(USERS, DS, staged=True) / MARKER).unlink()
    assert not wh.is_committed(USERS, DS, staged=True)
    assert wh.partitions(USERS) == []


# -- verify on read (issue 28): a committed version is checked, not trusted ----------------
# On the base code (c744a08) each of these read the damaged version without a word.


def test_a_committed_version_without_its_marker_is_an_error_not_a_missing_day(wh):
    wh.write_arrow(USERS, DS, users_frame(2))
    version = wh.version(USERS, DS)
    (wh.partition_dir(USERS, DS) / MARKER).unlink()
    for read in (wh.partitions, lambda t: wh.read_pandas(t, DS), lambda t: wh.is_committed(t, DS)):
        with pytest.raises(WarehouseError, match=rf"raw\.users ds={DS}: .*{version}.*marker"):
            read(USERS)


def test_a_deleted_version_folder_names_table_day_and_version(wh):
    wh.write_arrow(USERS, DS, users_frame(2))
    folder = wh.partition_dir(USERS, DS)
    shutil.rmtree(folder)
    message = rf"raw\.users ds={DS}: the layer's manifest names version {folder.name}, but its"
    with pytest.raises(WarehouseError, match=message + " folder is missing") as err:
        wh.partitions(USERS)
    assert "rebuild the day" in str(err.value)
    with pytest.raises(WarehouseError, match=message):
        wh.read_arrow(USERS, DS)


def test_a_read_checks_the_files_rows_against_the_marker(wh):
    wh.write_arrow(USERS, DS, users_frame(6))
    path = wh.partition_dir(USERS, DS) / "part-00000.parquet"
    pq.write_table(pq.read_table(path).slice(0, 3), path)  # half the rows, same schema
    message = r"raw\.users ds=2026-01-05: the files of version v-\S+ hold 3 rows, its commit"
    with pytest.raises(WarehouseError, match=message + " marker says 6"):
        wh.read_pandas(USERS, DS)
    with pytest.raises(WarehouseError, match=message):
        list(wh.iter_batches(USERS, DS))


def test_a_marker_edited_to_other_rows_is_refused_on_read(wh):
    wh.write_arrow(USERS, DS, users_frame(4))
    marker = wh.partition_dir(USERS, DS) / MARKER
    marker.write_text(marker.read_text().replace('"rows": 4', '"rows": 1'))
    with pytest.raises(WarehouseError, match="hold 4 rows, its commit marker says 1"):
        wh.read_arrow(USERS, DS)


def test_rewritten_files_fail_the_checksum_where_it_is_asked_for(tmp_path):
    default = Warehouse(tmp_path / "warehouse")
    default.write_arrow(USERS, DS, users_frame(3, "us"))
    path = default.partition_dir(USERS, DS) / "part-00000.parquet"
    pq.write_table(pa.Table.from_pandas(users_frame(3, "br"), schema=USERS.schema), path)
    # The same rows, other values: only the sha256 tells. raw.users is not a checksummed
    # table by default; a read that asks, or a warehouse configured for it, checks it.
    assert "users" not in store_module.CHECKSUM_TABLES
    assert list(default.read_pandas(USERS, DS)["country"]) == ["br"] * 3
    message = r"raw\.users ds=2026-01-05: the files of version \S+ changed after they were"
    with pytest.raises(WarehouseError, match=message):
        default.read_arrow(USERS, DS, verify=True)
    for checksum_tables in (["users"], ["*"]):
        strict = Warehouse(tmp_path / "warehouse", checksum_tables=checksum_tables)
        with pytest.raises(WarehouseError, match=message):
            strict.read_arrow(USERS, DS)


def test_the_training_set_and_the_feeds_are_checksummed_by_default(wh):
    assert set(store_module.CHECKSUM_TABLES) == {TRAINING_EXAMPLES.name, USER_NEWS_FEED.name}
    frame = pa.table({"impression_id": [1, 2], "label_click": [0, 1]})
    wh.write_arrow(TRAINING_EXAMPLES, DS, frame)
    path = wh.partition_dir(TRAINING_EXAMPLES, DS) / "part-00000.parquet"
    pq.write_table(pa.table({"impression_id": [1, 2], "label_click": [1, 1]}), path)
    with pytest.raises(WarehouseError, match=r"gold\.training_examples .*changed after"):
        wh.read_arrow(TRAINING_EXAMPLES, DS)
    with pytest.raises(WarehouseError, match=r"gold\.training_examples .*changed after"):
        list(wh.iter_batches(TRAINING_EXAMPLES, DS))


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
def test_spark_write_sorts_each_file_by_the_tables_key(wh, spark):
    """Rows arriving in another order (a shuffle's fetch order differs between a local master
    and a cluster) give files of the same rows in the same order: by the table's key."""
    wh.write_arrow(POSTS, DS, posts_frame(50, DS))
    df = wh.read_spark(spark, POSTS, DS).drop("ds")
    scrambled = {
        "2026-02-01": df.orderBy(df["post_id"].desc()).coalesce(1),
        "2026-02-02": df.repartition(3),  # round robin: each file's rows interleaved
    }
    for day, rows in scrambled.items():
        wh.write_spark(POSTS, day, rows)
        for f in sorted(wh.partition_dir(POSTS, day).glob("*.parquet")):
            ids = pq.read_table(f, columns=["post_id"]).column(0).to_pylist()
            assert ids == sorted(ids), (day, f.name)
        assert sorted(wh.read_pandas(POSTS, day)["post_id"]) == list(range(50))


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


def test_a_write_that_dies_half_way_leaves_no_folder(wh, monkeypatch):
    """A write that fails after its data file (the marker's disk write fails: a full disk)
    removes its version at once; on the base code the folder stayed until a collection."""
    real = store_module._atomic_write

    def full_disk(path, text):
        if path.name == MARKER:
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(store_module, "_atomic_write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        wh.write_arrow(USERS, DS, users_frame(3))
    day = wh.root / "raw" / "users" / f"ds={DS}"
    assert not day.exists() or list(day.iterdir()) == []
    monkeypatch.undo()
    assert wh.write_arrow(USERS, DS, users_frame(3)).rows == 3  # the rerun succeeds


@pytest.mark.spark
def test_a_failed_spark_write_removes_its_partial_version(wh, spark):
    from pyspark.sql import functions as F

    next_day = (dt.date.fromisoformat(DS) + dt.timedelta(days=1)).isoformat()
    wh.write_arrow(POSTS, DS, posts_frame(4, DS))
    df = wh.read_spark(spark, POSTS, DS).drop("ds")
    boom = F.udf(lambda n: 1 // (n - 3), "int")  # fails on the row where post_id == 3
    bad = df.withColumn("length", boom(F.col("post_id")))
    with pytest.raises(Exception, match=r"ZeroDivisionError"):
        wh.write_spark(POSTS, next_day, bad)
    day = wh.root / "raw" / "posts" / f"ds={next_day}"
    assert not day.exists() or list(day.iterdir()) == []


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


@pytest.mark.spark
def test_a_silver_table_reads_back_with_the_schema_spark_wrote_and_no_job(wh, spark):
    """A table without a catalog schema is read with the schema its Spark writer recorded
    in the footer: the one Spark would infer, without the inference job per read."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from warehouse.catalog import feature_state_table

    tile = feature_state_table("bench_tile", ("post_id", "bucket"), "a tile")
    df = spark.range(4).select(
        F.col("id").alias("post_id"),
        F.timestamp_micros(F.col("id") * 3_600_000_000).alias("bucket"),
        F.count(F.lit(1)).over(Window.partitionBy(F.lit(0))).alias("n"),  # not nullable
        F.array(F.col("id").cast("int")).alias("tags"),
    )
    wh.write_spark(tile, DS, df)
    folder = wh.partition_dir(tile, DS)
    inferred = spark.read.option("basePath", str(wh.table_dir(tile))).parquet(str(folder)).schema
    sc = spark.sparkContext
    sc.setJobGroup("silver_read", "the read of a silver table")
    try:
        got = wh.read_spark(spark, tile, DS)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert got.schema == inferred
    assert sc.statusTracker().getJobIdsForGroup("silver_read") == []
    assert got.orderBy("post_id").select("n", "tags").collect()[3] == (4, [3])
