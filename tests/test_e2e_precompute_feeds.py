"""End to end on the tiny profile: precompute_feeds through dag.test() for the day before the
last (so that the last day evaluates it), on logs, features, a champion ranker and a
retrieval index built by the jobs; the skew test; the feed contract on broken feeds."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

import jobs.precompute_feeds as job
from features import candidates as fc
from features import registry as R
from features.pit import as_of_col, graph_cutoff
from features.tiles import TILES
from jobs import build_training_set, simulate_platform, train_rankers, train_retrieval
from jobs.common import EVALUATE_FEEDS, days_before, use_tracking
from jobs.reading import read_raw, read_state
from jobs.settings import load_settings
from models.ranking.dataset import feature_frame
from models.registry import runs as tracking
from models.registry import versions as reg
from models.registry.tags import AB_STAGE, DS_TAG, FEEDS_STAGE
from warehouse.catalog import (
    ENGAGEMENTS,
    FEED_CANDIDATES,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    POSTS,
    SIMULATED_TABLES,
    USER_NEWS_FEED,
    USERS,
    C,
)
from warehouse.contracts import DataContractError, enforce
from warehouse.contracts.feeds import MODEL_VERSIONS, check_feed_partition
from warehouse.feeds.open import open_store
from warehouse.feeds.reader import FeedReader
from warehouse.store import Warehouse, WarehouseError

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.spark]


def pool_days(settings, ds: str) -> list[str]:
    """ds and the simulated days of the 72 h pool before it."""
    return [*days_before(settings.simulator.start_date, ds, 3), ds]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(tmp_path_factory.mktemp("feeds-home")))
    # The GBDT kind alone, so the champion whose feeds these tests check is a GBDT.
    patch.setenv("FEEDRANK__TRAINING__KINDS", '["gbdt"]')
    yield load_settings("tiny")
    patch.undo()


@pytest.fixture(scope="module")
def store(settings):
    return Warehouse(settings.root.warehouse)


@pytest.fixture(scope="module")
def ds(settings, tiny_days):
    """Logs and features of every tiny day (the session's build, copied), a champion ranker
    and two-tower, and the retrieval index of the day before the last: the day the feeds are
    generated from."""
    tiny_days(settings.home)
    days = settings.dates()
    build_training_set.run_up_to(settings, days[-1])
    train_rankers.run(settings, days[-1])
    train_retrieval.run(settings, days[-1])
    train_retrieval.build_index(settings, days[-2])
    return days[-2]


@pytest.fixture(scope="module")
def dag_run(airflow_db, settings, ds):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(airflow_db.dags_folder())).get_dag("precompute_feeds")
    logical = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    return str(dag.test(logical_date=logical, run_conf={"profile": "tiny"}).state)


@pytest.fixture(scope="module")
def feeds(dag_run, store, ds) -> pd.DataFrame:
    return store.read_pandas(USER_NEWS_FEED, ds)


def test_every_active_user_gets_a_validated_feed(dag_run, feeds, store, ds, settings):
    assert dag_run == "success"
    assert store.is_committed(USER_NEWS_FEED, ds)
    served = store.read_pandas(IMPRESSIONS, ds, columns=[C.USER_ID])  # active_days = 1
    assert set(feeds[C.USER_ID]) == set(served[C.USER_ID])
    sizes = feeds.groupby(C.USER_ID).size()
    assert sizes.max() <= settings.precompute.feed_size
    ranks = feeds.sort_values([C.USER_ID, C.RANK]).groupby(C.USER_ID)[C.RANK]
    assert all((r.to_numpy() == range(1, len(r) + 1)).all() for _, r in ranks)
    at = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(days=1)
    assert (feeds[C.GENERATED_AT] == at).all()
    use_tracking(settings)
    assert set(feeds[C.MODEL_VERSION]) == {reg.champion_version(settings.mlflow.registered_model)}
    assert feeds[C.SOURCES].map(len).min() >= 1


def test_no_feed_item_was_seen_or_is_from_the_future(feeds, store, ds, settings):
    at = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(days=1)
    days = pool_days(settings, ds)
    seen = store.read_pandas(IMPRESSIONS, days, columns=[C.USER_ID, C.POST_ID, C.SERVED_AT])
    seen = seen[seen[C.SERVED_AT] < at]
    clash = feeds.merge(seen, on=[C.USER_ID, C.POST_ID])
    assert clash.empty
    posts = store.read_pandas(POSTS, days, columns=[C.POST_ID, C.CREATED_AT])
    created = feeds.merge(posts, on=C.POST_ID)
    assert len(created) == len(feeds) and (created[C.CREATED_AT] < at).all()


def test_the_evaluation_is_logged_against_the_oracle(dag_run, settings, ds):
    use_tracking(settings)
    run = tracking.latest_run(settings.mlflow.experiment, ds, stage=FEEDS_STAGE)
    assert run is not None, "no feed evaluation run"
    m = run.data.metrics
    k = settings.precompute.quality_k
    rankings = ("feed", "value_before_rerank", "reverse_chron", "popularity")
    for ranking in rankings:  # the oracle's order of the same candidates is the ceiling
        assert m[f"feeds/value_at_{k}/{ranking}"] <= m[f"feeds/value_at_{k}/oracle"] + 1e-9
    assert 0 < m["feeds/recall/all"] <= 1
    # As lists, read slot by slot, the same top k are worth at most what each post is worth
    # alone at the top (examination only lowers the positive actions); the oracle's list is the
    # greedy best one.
    for ranking in (*rankings, "oracle"):
        as_list = m[f"feeds/list_value_at_{k}/{ranking}"]
        assert 0 < as_list <= m[f"feeds/value_at_{k}/{ranking}"] + 1e-9, ranking
    assert m["feeds/list_share_of_oracle/oracle"] == 1.0
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "feeds")}
    assert {"feeds/quality.png", "feeds/list_value.json"} <= artifacts
    assert settings.root.report_folder(EVALUATE_FEEDS, ds).file("report.md").exists()


def test_rerank_tuning_starts_from_the_published_feeds_and_their_evaluation(dag_run, settings, ds):
    """jobs/tune_rerank.py re-ranks the published feeds' posts under other weights: under the
    profile's weights it gives back the published order, and its list values of the feed and
    of the value order are the evaluation's (two code paths: the feed's ranks there, the
    re-ranker run again here)."""
    from jobs import tune_rerank
    from models.feed.config import RerankSettings

    use_tracking(settings)
    evaluation = tracking.latest_run(settings.mlflow.experiment, ds, stage=FEEDS_STAGE)
    m, k = evaluation.data.metrics, settings.precompute.quality_k
    tuning = tune_rerank.Tuning(settings, ds)
    assert tuning.reproduced() == 1.0
    for weights, ranking in (
        (settings.precompute.rerank, "feed"),
        (tune_rerank.NEUTRAL, "value_before_rerank"),
    ):
        assert tuning.value(weights) == pytest.approx(
            m[f"feeds/list_value_at_{k}/{ranking}"], rel=1e-12
        )
    assert tuning.ceiling == pytest.approx(m[f"feeds/list_value_at_{k}/oracle"], rel=1e-12)
    tried = tune_rerank.search(tuning, settings.precompute.rerank, rounds=1)
    assert not tried.duplicated(list(RerankSettings.model_fields)).any()
    assert len(tried) > len(tune_rerank.GRID)
    assert tried[f"list_value_at_{k}"].nunique() > 1  # the weights do move the lists' value


def test_serving_features_equal_the_training_features(spark, settings, store, ds, dag_run):
    """The skew test: a day's logged impressions built again as candidates generated at
    their request's time (on the request's device) get the same model inputs as the
    training set. The logged request itself is taken out of the request tile: when a feed is
    generated, that request has not happened yet."""
    imps = store.read_spark(spark, IMPRESSIONS, ds).drop(C.DS)
    start = imps.groupBy(C.REQUEST_ID).agg(F.min(C.SERVED_AT).alias(C.GENERATED_AT))
    imps = imps.join(start, C.REQUEST_ID)
    # Items served in another hour than their request began have another as_of and ctx_hour.
    same_hour = as_of_col(C.SERVED_AT) == as_of_col(C.GENERATED_AT)
    imps = imps.where(same_hour & (F.hour(C.SERVED_AT) == F.hour(C.GENERATED_AT)))
    imps = imps.where(F.xxhash64(C.REQUEST_ID) % 4 == 0).cache()  # a quarter of the requests
    raw = read_raw(spark, store, settings.first_day, ds)
    tiles = {t: read_state(spark, store, settings.first_day, t, ds, staged=False) for t in TILES}
    logged_requests = imps.select(C.REQUEST_ID).distinct()
    tiles["requests"] = tiles["requests"].join(logged_requests, C.REQUEST_ID, "left_anti")
    cands = imps.select(C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.GENERATED_AT, C.DEVICE)
    serving = fc.serving_features(
        fc.as_impressions(cands, raw.users),
        tiles,
        raw.posts,
        raw.follows,
        raw.users,
        raw.authors,
        graph_cutoff(ds),
        small_entities=True,  # the precompute's join layout (featurize_candidates)
        **settings.features.model_dump(),
    ).withColumnRenamed(C.SERVED_AT, C.GENERATED_AT)
    keys = [C.USER_ID, C.POST_ID, C.GENERATED_AT]
    logged = store.read_spark(spark, IMPRESSION_FEATURES, ds).drop(C.DS, C.SERVED_AT)
    logged = logged.join(imps.select(C.IMPRESSION_ID, C.GENERATED_AT), C.IMPRESSION_ID)
    order = [(k, "ascending") for k in keys]
    a, b = (df.toArrow().sort_by(order) for df in (serving, logged))
    assert a.num_rows == b.num_rows == imps.count() > 100
    assert a.select(keys).equals(b.select(keys))
    # Equal up to the order of floating-point sums: Spark does not fix the order in which a
    # shuffle's blocks reach an aggregation, so a decayed total may differ in its last bit.
    pd.testing.assert_frame_equal(feature_frame(a), feature_frame(b), rtol=1e-12, atol=1e-12)
    # The history lists are no ranker input here (models.ranking.dataset._LISTS): compared as lists.
    for col in (R.USER_HIST_TOPICS, R.USER_HIST_AUTHORS, R.USER_HIST_MEDIA):
        assert a.column(col).to_pylist() == b.column(col).to_pylist(), col


def test_a_broken_feed_is_refused_naming_table_column_and_check(spark, settings, store, ds, feeds):
    feed = store.read_spark(spark, USER_NEWS_FEED, ds).drop(C.DS)
    user = int(feeds[C.USER_ID].iloc[0])
    seen = store.read_pandas(IMPRESSIONS, ds, columns=[C.USER_ID, C.POST_ID])
    seen_post = int(seen.loc[seen[C.USER_ID] == user, C.POST_ID].iloc[0])
    target = (F.col(C.USER_ID) == user) & (F.col(C.RANK) == 1)
    broken = feed.withColumns(
        {
            C.POST_ID: F.when(target, F.lit(seen_post)).otherwise(F.col(C.POST_ID)),
            "p_click": F.when(target, F.lit(1.5)).otherwise(F.col("p_click")),
            C.RANK: F.when(target, F.lit(7)).otherwise(F.col(C.RANK)),
        }
    )
    days = pool_days(settings, ds)
    frames = {
        USER_NEWS_FEED.name: broken,
        POSTS.name: store.read_spark(spark, POSTS, days).drop(C.DS),
        USERS.name: store.read_spark(spark, USERS, ds).drop(C.DS),
        IMPRESSIONS.name: store.read_spark(spark, IMPRESSIONS, days).drop(C.DS),
        ENGAGEMENTS.name: store.read_spark(spark, ENGAGEMENTS, days).drop(C.DS),
        MODEL_VERSIONS: spark.createDataFrame([("999",)], "version string"),
    }
    p = settings.precompute
    with pytest.raises(DataContractError) as err:
        enforce(check_feed_partition(ds, frames, p.feed_size, pool_hours=p.pool_hours))
    text = str(err.value)
    assert "gold.user_news_feed" in text
    assert "post not served to the user before generated_at" in text
    assert "rank runs 1..n within each user" in text
    assert "0.0 <= p_click <= 1.0" in text
    assert "model_version is a version of the registered ranker" in text


LOOP = {"simulator": {"serving": {"loop_days": 1}}}  # the last tiny day is a closed-loop day


@pytest.fixture(scope="module")
def loop(settings, store, ds, dag_run, airflow_db, tmp_path_factory):
    """A second data root whose last day is served by the closed loop, run through the DAGs
    as the demo runs it: the days before it and the feeds of the day before copied from this
    module's root, then `publish_feeds` for those feeds, `simulate_platform` for the loop day
    (treatment reads them through the read path) and `ab_report`. The DAGs' tasks read the
    loop setting from the environment, as a user's override would reach them. Returns
    (settings, feed version, report metrics)."""
    from airflow.dag_processing.dagbag import DagBag

    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(tmp_path_factory.mktemp("loop-home")))
    patch.setenv("FEEDRANK__SIMULATOR__SERVING__LOOP_DAYS", "1")
    bag = DagBag(dag_folder=str(airflow_db.dags_folder()))

    def run_dag(dag_id: str, day: str) -> None:
        logical = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
        state = bag.get_dag(dag_id).test(logical_date=logical, run_conf={"profile": "tiny"}).state
        assert str(state) == "success", f"{dag_id} ds={day} ended {state}"

    try:
        loop_settings = load_settings("tiny")
        assert loop_settings.simulator.serving.loop_days == 1
        loop_settings.root.claim("tiny")
        target = Warehouse(loop_settings.root.warehouse)
        for day in [*days_before(settings.simulator.start_date, ds, 3), ds]:
            for t in SIMULATED_TABLES:
                target.write_arrow(t, day, store.read_arrow(t, day), publish=True)
        for t in (FEED_CANDIDATES, USER_NEWS_FEED):
            meta = store.info(t, ds).meta
            target.write_arrow(t, ds, store.read_arrow(t, ds), publish=True, meta=meta)
        run_dag("publish_feeds", ds)
        feed_store = open_store(loop_settings.feeds, loop_settings.root)
        try:
            version = feed_store.status().current.version
        finally:
            feed_store.close()
        loop_day = job.shift_ds(ds, 1)
        run_dag("simulate_platform", loop_day)
        run_dag("ab_report", loop_day)
        use_tracking(loop_settings)
        run = tracking.latest_run(loop_settings.mlflow.experiment, loop_day, stage=AB_STAGE)
        assert run is not None, "ab_report logged no run"
        yield loop_settings, version, run.data.metrics
    finally:
        patch.undo()


def test_a_loop_day_refuses_to_start_without_the_feeds_of_the_day_before(settings, ds, dag_run):
    """This module's root has the feeds in the warehouse but none in its feed store."""
    looped = settings.model_copy(update={"simulator": load_settings("tiny", LOOP).simulator})
    with pytest.raises(WarehouseError, match=f"serve the feeds of {ds}.*publish_feeds"):
        simulate_platform.simulate(looped, job.shift_ds(ds, 1))


def test_the_loop_day_serves_treatment_from_the_published_feeds(loop, store, ds):
    loop_settings, version, _ = loop
    day = job.shift_ds(ds, 1)
    imps = Warehouse(loop_settings.root.warehouse).read_pandas(IMPRESSIONS, day)
    t, c = imps[imps[C.BUCKET] == "treatment"], imps[imps[C.BUCKET] == "control"]
    assert set(t[C.POLICY]) == {"ranked"} and set(c[C.POLICY]) == {"chronological"}
    assert (t[C.FEED_VERSION] == version).all() and c[C.FEED_VERSION].isna().all()
    feeds = store.read_pandas(USER_NEWS_FEED, ds, columns=[C.USER_ID, C.POST_ID, C.MODEL_VERSION])
    assert set(t[C.MODEL_VERSION]) == set(feeds[C.MODEL_VERSION])
    # A treatment user with a feed reads it; one without (not active on ds) reads the
    # version's fallback, logged as `fallback`, never as `ranked`.
    has_feed = t[C.USER_ID].isin(feeds[C.USER_ID])
    assert (t.loc[has_feed, C.SOURCE] != "fallback").all()
    assert (t.loc[~has_feed, C.SOURCE] != "ranked").all()
    from_feed = t[has_feed & t[C.SOURCE].isin(["ranked", "explore"])]
    assert len(from_feed) > 0
    assert len(from_feed.merge(feeds, on=[C.USER_ID, C.POST_ID])) == len(from_feed)
    from_fallback = t[~has_feed & t[C.SOURCE].isin(["fallback", "explore"])]
    assert len(from_fallback) > 0  # tiny: a few treatment users were not active on ds
    quiet = loop_settings.feeds.model_copy(update={"log_served": False})
    reader = FeedReader(open_store(quiet, loop_settings.root), quiet)
    page = reader.page(int(from_fallback[C.USER_ID].iloc[0]), quiet.max_limit)
    assert page.fallback
    assert from_fallback[C.POST_ID].isin([item[C.POST_ID] for item in page.items]).all()
    assert t[C.PROPENSITY].between(0, 1, inclusive="right").all()


def test_the_ab_report_logs_lift_interval_and_p_value(loop):
    loop_settings, _, metrics = loop
    for metric in ("value_per_user", "ctr", "sessions_per_user"):
        lift, lo, hi = (metrics[f"ab/{metric}/{s}"] for s in ("lift", "ci_low", "ci_high"))
        assert lo <= lift <= hi
        assert 0 <= metrics[f"ab/{metric}/p_value"] <= 1
        assert f"aa/{metric}/lift" in metrics
    assert 0 < metrics["ab/support/treatment_supported"] <= 1
    day = loop_settings.dates()[-1]
    report = loop_settings.root.report_folder("ab_report", day)
    text = report.file("report.md").read_text()
    assert "Closed loop" in text and "A/A" in text and "Ceiling" in text
    use_tracking(loop_settings)
    run = tracking.latest_run(loop_settings.mlflow.experiment, day, stage=AB_STAGE)
    assert run is not None and run.data.tags[DS_TAG] == day
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "ab")}
    assert {"ab/daily_lift.png", "ab/action_lift.png"} <= artifacts


def test_an_intra_day_refresh_sees_only_what_was_known(settings, store, ds, dag_run):
    """Generated at noon: no candidate created after noon, none served to its user before
    noon, and users are those active in the day before noon. (Runs last: it replaces the
    day's candidates.)"""
    noon = f"{ds}T12:00:00+00:00"
    at = pd.Timestamp(noon)
    cands = job.candidates(settings, ds, noon)
    assert cands.generated_at == noon and cands.users > 0
    assert cands.index_ds in (None, job.shift_ds(ds, -1))  # not ds's: it embeds users at 24:00
    table = store.read_pandas(job.FEED_CANDIDATES, ds)
    assert (table[C.GENERATED_AT] == at).all() and (table[C.CREATED_AT] < at).all()
    days = pool_days(settings, ds)
    served = store.read_pandas(IMPRESSIONS, days, columns=[C.USER_ID, C.POST_ID, C.SERVED_AT])
    before = served[served[C.SERVED_AT] < at]
    assert table.merge(before, on=[C.USER_ID, C.POST_ID]).empty
    recent = before[before[C.SERVED_AT] >= at - pd.Timedelta(days=1)]
    assert set(table[C.USER_ID]) <= set(recent[C.USER_ID])
    with pytest.raises(ValueError, match="not within ds"):
        job.candidates(settings, ds, f"{job.shift_ds(ds, 1)}T12:00:00+00:00")
