"""Lineage (issue 32): a derived partition records the input versions it was built from; an
input republished since makes it stale, `feedrank verify` lists it, and a job refuses to
build on it unless told.

Real files, pandas-sized: raw users written and published, a silver feature day built by a
"job" (its own Warehouse object) that read them, a gold day built on that, as the jobs do
through the same reads and writes; no Spark.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jobs import cli, publish_feed
from jobs.common import job_args, range_args
from jobs.settings import load_settings
from warehouse import lineage
from warehouse.catalog import IMPRESSION_FEATURES, TRAINING_EXAMPLES, USER_NEWS_FEED, USERS, Layer
from warehouse.store import MARKER, StaleInput, Warehouse

D1, D2 = load_settings("tiny").dates()[:2]


def users(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": range(n),
            "created_at": pd.Timestamp("2025-06-01", tz="UTC"),
            "country": "us",
            "age_bucket": "25-34",
            "gender": "f",
            "primary_device": "mobile",
            "is_person_author": False,
        }
    )


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    return load_settings("tiny")


def job(settings, **kwargs) -> Warehouse:
    """A job's own view of the warehouse (it records what it reads)."""
    return Warehouse(settings.root.warehouse, **kwargs)


def build_features(settings, ds: str, **kwargs) -> None:
    store = job(settings, **kwargs)
    seen = store.read_pandas(USERS, ds)
    store.write_arrow(IMPRESSION_FEATURES, ds, pd.DataFrame({"n_users": [len(seen)]}))


def build_training(settings, ds: str, **kwargs) -> None:
    store = job(settings, **kwargs)
    feats = store.read_pandas(IMPRESSION_FEATURES, ds).drop(columns="ds")
    store.write_arrow(TRAINING_EXAMPLES, ds, feats.assign(label_click=1))


@pytest.fixture
def built(settings):
    """Two days of raw users, features and training examples, all current."""
    raw = job(settings)
    for ds in (D1, D2):
        raw.write_arrow(USERS, ds, users(3))
        build_features(settings, ds)
        build_training(settings, ds)
    return raw


def read_of(store: Warehouse, t, ds: str) -> dict[str, str]:
    info = store.info(t, ds)
    return {"version": info.version, "sha256": info.checksum}


def test_a_derived_day_records_the_versions_it_read(settings, built):
    store = job(settings)
    inputs = store.info(IMPRESSION_FEATURES, D1).meta[lineage.INPUTS]
    assert inputs == {"raw.users": {D1: read_of(store, USERS, D1)}}
    inputs = store.info(TRAINING_EXAMPLES, D1).meta[lineage.INPUTS]
    assert inputs == {"silver.impression_features": {D1: read_of(store, IMPRESSION_FEATURES, D1)}}
    assert lineage.stale_partitions(store) == []


def test_a_day_republished_with_the_same_bytes_has_not_moved(settings, built):
    """The same seed again: a new version of the same files marks nothing stale."""
    old = built.version(USERS, D1)
    built.write_arrow(USERS, D1, users(3))
    assert built.version(USERS, D1) != old
    assert lineage.stale_partitions(job(settings)) == []
    build_training(settings, D1)  # not refused


def test_a_republished_input_makes_its_downstream_stale(settings, built):
    old = built.version(USERS, D1)
    built.write_arrow(USERS, D1, users(5))  # the day re-simulated: other users
    new = built.version(USERS, D1)
    stale = lineage.stale_partitions(job(settings))
    assert [(s.table, s.ds) for s in stale] == [
        ("silver.impression_features", D1),
        ("gold.training_examples", D1),
    ]  # D2 was built from D2's users only: current
    features, training = stale
    assert features.moved == lineage.Moved("raw.users", D1, old, new) and features.via == ()
    assert training.moved == features.moved
    assert training.via == (("silver.impression_features", D1),)
    assert f"raw.users ds={D1} moved from version {old} to {new}" in training.cause()


def test_a_job_refuses_to_build_on_a_stale_input_unless_told(settings, built):
    built.write_arrow(USERS, D1, users(5))
    before = job(settings).version(TRAINING_EXAMPLES, D1)
    with pytest.raises(StaleInput) as err:
        build_training(settings, D1)
    message = str(err.value)
    assert f"refusing to build gold.training_examples ds={D1}" in message, message
    assert f"silver.impression_features ds={D1}, which is stale" in message, message
    assert f"raw.users ds={D1} moved from version" in message, message
    assert f"spark-submit jobs/build_features.py --ds {D1}" in message, message
    assert "FEEDRANK__WAREHOUSE__ALLOW_STALE=true" in message and "--allow-stale" in message
    assert job(settings).version(TRAINING_EXAMPLES, D1) == before  # nothing was written
    build_training(settings, D1, allow_stale=True)  # told: built, and still stale
    assert [s.table for s in lineage.stale_partitions(job(settings), days=[D1])] == [
        "silver.impression_features",
        "gold.training_examples",
    ]


def test_rebuilding_in_order_leaves_nothing_stale(settings, built):
    built.write_arrow(USERS, D1, users(5))
    build_features(settings, D1)  # raw is not derived: the features job reads it freely
    stale = lineage.stale_partitions(job(settings))
    assert [(s.table, s.ds, s.via) for s in stale] == [("gold.training_examples", D1, ())]
    assert stale[0].moved.table == "silver.impression_features"
    build_training(settings, D1)
    assert lineage.stale_partitions(job(settings)) == []
    assert job(settings).read_pandas(TRAINING_EXAMPLES, D1)["n_users"].tolist() == [5]


def test_versions_without_lineage_records_are_unknown_not_stale(settings, built):
    """A root written before versions recorded inputs (markers without `inputs`): nothing
    is stale, nothing refused."""
    store = job(settings)
    for t in (IMPRESSION_FEATURES, TRAINING_EXAMPLES):
        marker = store.partition_dir(t, D1) / MARKER
        body = json.loads(marker.read_text())
        del body["meta"][lineage.INPUTS]
        marker.write_text(json.dumps(body))
    built.write_arrow(USERS, D1, users(4))
    assert lineage.stale_partitions(job(settings)) == []
    build_training(settings, D1)  # not refused
    assert cli.main(["--profile", "tiny", "verify"]) == 0


def test_feedback_reads_of_a_later_layer_are_not_inputs(settings, built):
    """The candidates (silver) read earlier gold feeds: a feedback loop, not lineage; and a
    job's read of its own table's day (its previous version) is not an input either."""
    store = job(settings)
    store.read_pandas(TRAINING_EXAMPLES, D1)
    store.read_pandas(IMPRESSION_FEATURES, D2)
    store.read_pandas(USERS, D2)
    store.write_arrow(IMPRESSION_FEATURES, D2, pd.DataFrame({"n_users": [3]}))
    assert store.info(IMPRESSION_FEATURES, D2).meta[lineage.INPUTS] == {
        "raw.users": {D2: read_of(store, USERS, D2)}
    }
    assert lineage.stale_partitions(job(settings), layers=[Layer.SILVER]) == []


def test_verify_lists_stale_outputs_and_exits_non_zero(settings, built, capsys):
    assert cli.main(["--profile", "tiny", "verify"]) == 0
    assert "nothing stale" in capsys.readouterr().out
    old = built.version(USERS, D1)
    built.write_arrow(USERS, D1, users(5))
    new = built.version(USERS, D1)
    assert cli.main(["--profile", "tiny", "verify"]) == 1
    out = capsys.readouterr().out
    assert "2 stale partitions" in out, out
    assert f"silver.impression_features ds={D1} version" in out, out
    assert f"its input raw.users ds={D1} moved from version {old} to {new}" in out, out
    assert f"gold.training_examples ds={D1} version" in out, out
    assert f"build_features.py --profile tiny --ds {D1}" in out, out
    assert f"build_training_set.py --profile tiny --ds {D1}" in out, out
    assert f"ds={D2}" not in out, out


def test_publishing_stale_feeds_to_the_feed_store_is_refused(settings, built):
    """A job whose output is not a warehouse table (the feed store) refuses too."""
    store = job(settings)
    store.read_pandas(USERS, D1)
    feed = {f.name: [None] for f in USER_NEWS_FEED.schema}
    at = pd.Timestamp("2026-01-05", tz="UTC")
    feed |= {"user_id": [0], "rank": [1], "post_id": [7], "generated_at": [at], "sources": [[]]}
    feed |= {k: [0.5] for k, v in feed.items() if v == [None] and k != "model_version"}
    store.write_arrow(USER_NEWS_FEED, D1, pd.DataFrame(feed | {"model_version": ["1"]}))
    built.write_arrow(USERS, D1, users(5))
    with pytest.raises(StaleInput, match=f"refusing to publish feeds.*ds={D1}.*raw.users"):
        publish_feed.run(settings, D1)


def test_allow_stale_from_a_flag_or_the_environment(settings, monkeypatch):
    ds = ["--ds", D1, "--profile", "tiny"]
    assert range_args("x", ds)[0].open_warehouse().allow_stale is False
    assert range_args("x", [*ds, "--allow-stale"])[0].open_warehouse().allow_stale is True
    assert job_args("x", [*ds, "--allow-stale"])[0].open_warehouse().allow_stale is True
    monkeypatch.setenv("FEEDRANK__WAREHOUSE__ALLOW_STALE", "true")
    assert load_settings("tiny").open_warehouse().allow_stale is True


def test_a_features_rebuild_carries_forward_through_the_days_built_on_it(settings, monkeypatch):
    """jobs.build_features.run_days (a run of the DAG, or `spark-submit ... --ds D`) rebuilds
    its days, then each later day whose features became stale, oldest first, until none is:
    here each day's features read the day before's, as the feature state's lookback does."""
    import jobs.build_features as job_module

    days = load_settings("tiny").dates()[:3]
    calls = []

    def features_day(s, ds: str) -> int:  # a day's users and the day before's features
        store = job(s)
        before = [d for d in store.partitions(IMPRESSION_FEATURES) if d < ds]
        carried = (
            store.read_pandas(IMPRESSION_FEATURES, before[-1])["n_users"].iloc[0] if before else 0
        )
        n = len(store.read_pandas(USERS, ds)) + carried
        store.write_arrow(IMPRESSION_FEATURES, ds, pd.DataFrame({"n_users": [n]}))
        calls.append(ds)
        return 1

    raw = job(settings)
    for ds in days:
        raw.write_arrow(USERS, ds, users(3))
        features_day(settings, ds)
    assert lineage.stale_partitions(job(settings)) == []
    raw.write_arrow(USERS, days[0], users(5))  # the first day republished, other content
    assert [s.ds for s in lineage.stale_partitions(job(settings))] == days  # d2, d3: through d1
    monkeypatch.setattr(job_module, "run", features_day)
    calls.clear()
    assert job_module.run_days(settings, [days[0]]) == 3
    assert calls == days
    assert job(settings).read_pandas(IMPRESSION_FEATURES, days[-1])["n_users"].iloc[0] == 11
    assert lineage.stale_partitions(job(settings)) == []
