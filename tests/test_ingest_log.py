"""Real logs as the raw input: the MIND and EB-NeRD readers, the mapping into the raw tables,
the ingest job's write -> audit -> publish, and features -> training -> evaluation on a log.

The MIND files are hand-written under tests/data/mind (16 requests over 4 days, 2019-11-09 ..
11-12): user U5 has no history; N7 is shown in 10 requests and never clicked; request 7 (line
7) clicks N99, which news.tsv lacks; N50 is in news.tsv but never shown. The EB-NeRD files
are written below from literal rows (Parquet is binary), with the same kinds of cases.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.settings import load_settings
from warehouse.catalog import ENGAGEMENTS, FOLLOWS, IMPRESSIONS, POSTS, USERS, C
from warehouse.ingest import ebnerd, mind
from warehouse.ingest.common import MAX_IN_VIEW, LogFormatError
from warehouse.ingest.mapping import IngestError, raw_days

DATA = Path(__file__).resolve().parent / "data"
MIND_DAYS = [dt.date(2019, 11, 9) + dt.timedelta(days=i) for i in range(4)]
EB_DAYS = [dt.date(2023, 5, 18) + dt.timedelta(days=i) for i in range(4)]


def read_mind(folder: Path = DATA / "mind"):
    return mind.read(folder / "behaviors.tsv", folder / "news.tsv", block_bytes=1 << 10)


def settings_for(fmt: str, home: Path, path: Path, days: list[dt.date] | None, **log):
    """A log profile's settings on `home`; `days` None: no calendar given (the log's own, or
    the one an ingest recorded in `home`)."""
    calendar = {"start_date": days[0].isoformat(), "days": len(days)} if days else {}
    overrides = {
        "home": str(home),
        "log": {"path": str(path), **calendar, **log},
        "spark": {"shuffle_partitions": 1},
        # GBDT only: this branch has no models.ranking.dnn.train (the dnn branch brings it)
        "training": {
            "gbdt": {"min_child_samples": 5, "early_stopping_rounds": 5},
            "kinds": ["gbdt"],
        },
    }
    return load_settings(fmt, overrides)


# --- MIND: reading ---------------------------------------------------------------------------


def test_mind_reads_every_request_and_only_the_shown_items():
    data = read_mind()  # 1 KiB blocks: the 16 lines come in several streamed batches
    assert data.requests.num_rows == 16
    # 4 + 3 + 3 + 3 (day 1), 4 + 3 + 3 + 3, 3 + 3 + 3 + 3, 3 + 3 + 3 + 3 items in view
    assert data.shown.num_rows == 50
    assert sorted(data.items.column("post_id").to_pylist()) == [1, 2, 3, 4, 5, 6, 7, 8]
    shown = data.shown.to_pandas()
    first = shown[shown["request_id"] == 1].sort_values("position")
    assert first["post_id"].tolist() == [1, 2, 3, 7]  # the list's order is the position
    assert first["clicked"].tolist() == [True, False, False, False]
    req = data.requests.to_pandas().set_index("request_id")
    assert req.loc[3, "served_at"] == pd.Timestamp("2019-11-09 23:15:00", tz="UTC")  # 11:15 PM
    assert req.loc[3, "user_id"] == 5  # U5: no history, read like anyone else
    items = data.items.to_pandas().set_index("post_id")
    # subcategory, then the title's and abstract's entity ids
    assert items.loc[1, "hashtags"].tolist() == ["newsus", "Q812"]
    assert items.loc[2, "hashtags"].tolist() == ["football_nfl", "Q1215884"]
    assert items.loc[4, "media_type"] == "video" and items.loc[3, "media_type"] == "text"
    assert items.loc[3, "length"] == len("Stocks rise")  # title + (empty) abstract
    assert items.loc[2, "topic"] == items.loc[8, "topic"]  # both sports


def _broken(tmp_path: Path, file: str, line: int, text: str) -> Path:
    folder = tmp_path / "mind"
    shutil.copytree(DATA / "mind", folder)
    lines = (folder / file).read_text().splitlines()
    lines[line - 1] = text
    (folder / file).write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("file", "line", "text", "field", "detail"),
    [
        # a missing tab: 4 fields, the 4th an impressions list: the (empty) history is missing
        ("behaviors.tsv", 5, "5\tU1\t11/10/2019 7:45:00 AM\tN5-1 N6-0", "history", "found 4"),
        # the same without the impressions: the history reads as one, the impressions miss
        ("behaviors.tsv", 5, "5\tU1\t11/10/2019 7:45:00 AM\tN5 N6", "impressions", "found 4"),
        # the time's tab missing: only an absent time lets the rest read as their kinds
        ("behaviors.tsv", 6, "6\tU2 11/10/2019 9:00:00 AM\tN1\tN6-0 N7-1", "time", "found 4"),
        # the title and abstract run together: the first field that can be absent is named
        ("news.tsv", 5, "N5\tnews\tnewsworld\tA summit\thttps://u\t[]\t[]", "title", "found 7"),
        ("behaviors.tsv", 9, "9\tU5\t2019-11-11 06:00\t\tN8-1", "time", "'2019-11-11 06:00'"),
        (
            "behaviors.tsv",
            11,
            "11\tU4\t11/11/2019 5:30:00 PM\tN2\tN7-0 N8-2",
            "impressions",
            "'N8-2'",
        ),
        ("behaviors.tsv", 12, "12\tuser2\t11/11/2019 8:45:00 PM\tN3\tN2-0", "user_id", "'user2'"),
        ("behaviors.tsv", 14, "14\tU1\t11/12/2019 11:30:00 AM\tN1 x\tN6-1", "history", "'x'"),
        ("behaviors.tsv", 8, "", "impression_id", "''"),  # an empty line
        ("behaviors.tsv", 10, "9\tU1\t11/11/2019 9:00:00 AM\t\tN6-1", "request_id", "repeats id 9"),
        ("news.tsv", 3, "N3\tfinance\tmarkets\tStocks\t\tu\t[{oops\t[]", "title_entities", "JSON"),
        ("news.tsv", 6, "N6\t\tlifestyleroyals\tA royal visit\t\tu\t[]\t[]", "category", "empty"),
    ],
)
def test_mind_malformed_lines_name_file_line_and_field(tmp_path, file, line, text, field, detail):
    folder = _broken(tmp_path, file, line, text)
    with pytest.raises(LogFormatError) as err:
        read_mind(folder)
    message = str(err.value)
    assert message.startswith(f"{file}: line {line}, field {field}: "), message
    assert detail in message
    assert (err.value.file, err.value.where, err.value.field) == (file, f"line {line}", field)


@pytest.mark.parametrize("file", ["behaviors.tsv", "news.tsv"])
def test_an_empty_file_is_named(tmp_path, file):
    folder = tmp_path / "mind"
    shutil.copytree(DATA / "mind", folder)
    (folder / file).write_text("")
    with pytest.raises(LogFormatError, match=rf"^{file}: the file is empty$"):
        read_mind(folder)
    (folder / file).write_text("\n\n")
    with pytest.raises(LogFormatError, match=rf"^{file}: the file holds only blank lines$"):
        read_mind(folder)


@pytest.mark.parametrize("ending", ["\n\n", "\n\n\n", "", "\n"])
def test_trailing_blank_lines_and_no_final_newline_read_as_the_file(tmp_path, ending):
    folder = tmp_path / "mind"
    shutil.copytree(DATA / "mind", folder)
    for name in ("behaviors.tsv", "news.tsv"):
        text = (folder / name).read_text().rstrip("\n")
        (folder / name).write_text(text + ending)
    data, want = read_mind(folder), read_mind()
    assert data.requests.equals(want.requests) and data.shown.equals(want.shown)
    assert data.items.equals(want.items)


def test_a_blank_line_amid_others_is_still_an_error(tmp_path):
    folder = tmp_path / "mind"
    shutil.copytree(DATA / "mind", folder)
    lines = (folder / "behaviors.tsv").read_text().splitlines()
    (folder / "behaviors.tsv").write_text("\n".join([*lines[:15], "", lines[15]]) + "\n")
    with pytest.raises(LogFormatError, match=r"^behaviors.tsv: line 16, field impression_id"):
        read_mind(folder)


# --- MIND: mapping into the raw tables -------------------------------------------------------


def test_mind_maps_into_raw_days():
    days, dropped = raw_days(read_mind(), MIND_DAYS, max_missing_share=0.05)
    assert sorted(days) == [d.isoformat() for d in MIND_DAYS]
    # Handled, not rejected: line 7's click on N99 (no metadata) is dropped with its row.
    assert (dropped.impressions, dropped.clicks, dropped.items) == (1, 1, (99,))
    assert dropped.where == ("line 7",)
    imps = pd.concat([t[IMPRESSIONS.name] for t in days.values()])
    clicks = pd.concat([t[ENGAGEMENTS.name] for t in days.values()])
    assert len(imps) == 49 and len(clicks) == 15  # 50 shown, 16 clicked, less N99's
    assert 99 not in set(imps[C.POST_ID])
    # N7: shown on every day (lines 1 3 5 8 9 11 13 14 15 16), never clicked: a post all the same
    assert (imps[C.POST_ID] == 7).sum() == 10 and 7 not in set(clicks[C.POST_ID])
    # request 2, position 1 -> impression 2 * 10,000 + 1, at the request's time
    row = imps.set_index(C.IMPRESSION_ID).loc[2 * MAX_IN_VIEW + 0]
    assert row[C.POST_ID] == 2 and row[C.POSITION] == 0
    assert row[C.SERVED_AT] == pd.Timestamp("2019-11-09 09:30", tz="UTC")
    assert set(imps[C.SOURCE]) == {"popular"} and imps[C.DEVICE].isna().all()
    assert set(clicks[C.ACTION]) == {"click"} and clicks[C.DWELL_S].isna().all()  # no dwell
    click = clicks.set_index(C.IMPRESSION_ID).loc[1 * MAX_IN_VIEW + 0]
    assert click[C.EVENT_TS] == pd.Timestamp("2019-11-09 08:00:01", tz="UTC")  # served + 1 s
    # no publish time: created one second before the first time shown, in that day's part
    posts = pd.concat([t[POSTS.name].assign(ds=ds) for ds, t in days.items()])
    n8 = posts.set_index(C.POST_ID).loc[8]
    assert n8[C.CREATED_AT] == pd.Timestamp("2019-11-10 22:09:59", tz="UTC")
    assert n8["ds"] == "2019-11-10"
    assert posts[C.POST_ID].is_unique and sorted(posts[C.POST_ID]) == [1, 2, 3, 4, 5, 6, 7, 8]
    # first shown at 08:00:00 on the first day: 07:59:59 is still that day
    assert posts.set_index(C.POST_ID).loc[1, "ds"] == "2019-11-09"
    assert days["2019-11-09"][FOLLOWS.name].num_rows == 0
    # users: a cumulative snapshot; U4 is first served on day 2
    first_users = days["2019-11-09"][USERS.name]
    assert sorted(first_users[C.USER_ID]) == [1, 2, 3, 5]
    last_users = days["2019-11-12"][USERS.name].set_index(C.USER_ID)
    assert sorted(last_users.index) == [1, 2, 3, 4, 5]
    assert last_users.loc[4, C.CREATED_AT] == pd.Timestamp("2019-11-10 12:00", tz="UTC")
    assert last_users[[C.COUNTRY, C.AGE_BUCKET, C.PRIMARY_DEVICE]].isna().all().all()
    authors = days["2019-11-12"]["authors"]
    assert len(authors) == 8 and set(authors[C.KIND]) == {"page"}  # 8 sections


def test_mind_too_many_items_without_metadata_refuse_the_log():
    with pytest.raises(IngestError, match=r"1 of 50 impressions \(2.00%, 1 clicked\)") as err:
        raw_days(read_mind(), MIND_DAYS, max_missing_share=0.01)
    assert "behaviors.tsv line 7" in str(err.value) and "news.tsv" in str(err.value)
    assert "e.g. N99 at" in str(err.value)  # the id as the file writes it


def test_the_calendar_is_the_logs_own_when_not_given():
    days, _ = raw_days(read_mind(), None, max_missing_share=0.05)
    assert sorted(days) == [d.isoformat() for d in MIND_DAYS]


def test_a_log_outside_the_calendar_is_refused():
    with pytest.raises(IngestError, match=r"2019-11-09 .. 2019-11-12.*2019-11-10 .. 2019-11-14"):
        raw_days(read_mind(), [dt.date(2019, 11, 10 + i) for i in range(5)], max_missing_share=1)


# --- the ingest job: write -> audit -> publish -----------------------------------------------


@pytest.fixture(scope="module")
def mind_root(tmp_path_factory, spark):
    """The MIND test log ingested into a data root of its own (max_missing_share lets N99's
    impression be dropped): (settings, what the ingest returned)."""
    from jobs import ingest_log

    home = tmp_path_factory.mktemp("mind-root")
    # No calendar given: the ingest takes the log's own days and records them in the root.
    settings = settings_for("mind", home, DATA / "mind", None, max_missing_share=0.05)
    ingested = ingest_log.run(settings)
    return settings_for("mind", home, DATA / "mind", None, max_missing_share=0.05), ingested


@pytest.mark.spark
def test_ingest_publishes_every_day_of_the_log(mind_root):
    from warehouse.catalog import RAW_TABLES, TRUTH_IMPRESSIONS
    from warehouse.store import Warehouse

    settings, ingested = mind_root
    store = Warehouse(settings.root.warehouse)
    days = [d.isoformat() for d in MIND_DAYS]
    assert list(ingested.days) == days
    for t in RAW_TABLES:
        assert store.partitions(t) == days, t.name
    assert store.partitions(TRUTH_IMPRESSIONS) == []  # a log has no truth
    assert ingested.rows[IMPRESSIONS.name] == 49 and ingested.rows[ENGAGEMENTS.name] == 15
    assert ingested.rows[FOLLOWS.name] == 0  # empty, and its contract accepted it
    imps = store.read_pandas(IMPRESSIONS, days)
    assert len(imps) == 49 and imps[C.IMPRESSION_ID].is_unique
    # Later jobs read the files and the calendar from the root: nothing to repeat.
    assert settings.dates() == days
    assert settings.root.ingested_log() == {
        "format": "mind",
        "path": str((DATA / "mind").resolve()),
        "behaviors": "behaviors.tsv",
        "items": "news.tsv",
        "start_date": days[0],
        "days": 4,
    }
    later = load_settings("mind", environ={"FEEDRANK_HOME": str(settings.home)})
    assert later.dates() == days and later.log.path == (DATA / "mind").resolve()


def _ingest_dag_run(airflow_db, home: Path, monkeypatch, **conf):
    """The ingest_log DAG through dag.test on `home`, with these Params."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("FEEDRANK_HOME", str(home))
    monkeypatch.setenv("FEEDRANK__SPARK__SHUFFLE_PARTITIONS", "1")
    dag = DagBag(dag_folder=str(airflow_db.dags_folder())).get_dag("ingest_log")
    return dag.test(run_conf={"profile": "mind", **conf})


@pytest.mark.spark
@pytest.mark.airflow
def test_the_ingest_dag_publishes_the_log_and_names_its_days_on_the_raw_asset(
    tmp_path, spark, airflow_db, monkeypatch
):
    """Triggered with the Params `feedrank ingest` takes: the log's days published, and the
    raw Asset's event names them (build_features builds the days an event names)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from jobs.airflow_support import RAW_LOGS
    from warehouse.layout import DataRoot
    from warehouse.store import Warehouse

    run = _ingest_dag_run(
        airflow_db, tmp_path, monkeypatch, path=str(DATA / "mind"), max_missing_share=0.05
    )
    assert str(run.state) == "success"
    days = [d.isoformat() for d in MIND_DAYS]
    assert Warehouse(DataRoot(tmp_path).warehouse).partitions(IMPRESSIONS) == days
    with create_session() as session:
        extras = session.scalars(
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == RAW_LOGS.uri, AssetEvent.source_run_id == run.run_id)
        ).all()
    assert [e["days"] for e in extras] == [days]


@pytest.mark.airflow
def test_the_ingest_dag_fails_a_bad_file_at_once_and_publishes_nothing(
    tmp_path, airflow_db, monkeypatch
):
    """A malformed file is the user's to fix: the task fails on its first try (no retries
    a minute apart), nothing is published and no Asset event starts the features."""
    from warehouse.layout import DataRoot
    from warehouse.store import Warehouse

    folder = _broken(tmp_path, "behaviors.tsv", 12, "12\tuser2\t11/11/2019 8:45:00 PM\tN3\tN2-0")
    run = _ingest_dag_run(airflow_db, tmp_path / "home", monkeypatch, path=str(folder))
    (ti,) = run.get_task_instances()
    assert (str(run.state), str(ti.state), ti.try_number) == ("failed", "failed", 1)
    assert Warehouse(DataRoot(tmp_path / "home").warehouse).partitions(IMPRESSIONS) == []


@pytest.mark.spark
def test_a_malformed_file_publishes_nothing(tmp_path, spark):
    from jobs import ingest_log
    from warehouse.catalog import RAW_TABLES
    from warehouse.store import Warehouse

    folder = _broken(tmp_path, "behaviors.tsv", 13, "13\tU3\t11/12/2019 10:00:00 AM\tN1\tN8-1 N5")
    settings = settings_for("mind", tmp_path / "root", folder, MIND_DAYS, max_missing_share=0.05)
    with pytest.raises(LogFormatError, match=r"^behaviors.tsv: line 13, field impressions: 'N5'"):
        ingest_log.run(settings)
    store = Warehouse(settings.root.warehouse)
    assert all(store.partitions(t) == [] for t in RAW_TABLES)


@pytest.mark.spark
def test_contracts_still_reject_bad_rows_of_a_log(tmp_path, spark):
    """A log's day that reads well but breaks a contract (a click with dwell on an impression
    served after it, here: a negative position) is staged, fails, and is not published."""
    from jobs import ingest_log
    from warehouse.catalog import RAW_TABLES
    from warehouse.contracts import DataContractError
    from warehouse.store import Warehouse

    settings = settings_for("mind", tmp_path, DATA / "mind", MIND_DAYS, max_missing_share=0.05)
    days, _ = raw_days(read_mind(), MIND_DAYS, max_missing_share=0.05)
    day = days["2019-11-09"]
    imps = day[IMPRESSIONS.name].copy()
    imps.loc[imps.index[0], C.POSITION] = -1
    day[IMPRESSIONS.name] = imps
    store = Warehouse(settings.root.warehouse)
    ingest_log.stage(store, days)
    with pytest.raises(DataContractError) as err:
        ingest_log.validate(settings, store, sorted(days))
    message = str(err.value)
    assert "raw.impressions ds=2019-11-09" in message and "column position" in message
    assert "expect_column_values_to_be_between" in message
    assert all(store.partitions(t) == [] for t in RAW_TABLES)


# --- end to end: features -> training -> evaluation on a log ---------------------------------


@pytest.mark.spark
@pytest.mark.e2e
def test_features_training_and_evaluation_run_on_a_log(mind_root):
    """The ingested MIND log through the unchanged jobs: features of every day, then the
    training set, a time split (train 11-09 + 11-10, validation 11-11, test 11-12), the click
    model (MIND records no other action and no dwell), and an evaluation against the
    popularity, recency and logged-order baselines with no oracle anywhere."""
    import mlflow

    from features import registry as R
    from jobs import build_features, build_training_set, train_rankers
    from jobs.common import ranker_report_folder
    from models.registry import versions as registry
    from warehouse.catalog import IMPRESSION_FEATURES, TRAINING_EXAMPLES
    from warehouse.store import Warehouse

    settings, _ = mind_root
    days = settings.dates()
    build_features.run_days(settings, days)
    store = Warehouse(settings.root.warehouse)
    feats = store.read_pandas(IMPRESSION_FEATURES, days)
    assert len(feats) == 49
    # No follow graph: the network family is zero, the graph features carry nothing.
    network = R.feature_columns("network")
    assert (feats[network] == 0).all().all()
    assert (feats[R.AUTHOR_FOLLOWERS].fillna(0) == 0).all()
    assert (feats[R.UA_FOLLOWS].fillna(0) == 0).all()
    # Clicks only: the other actions' counts are zero, the click counts are not.
    assert (feats[R.post_count("like", "7d")] == 0).all()
    assert feats[R.post_count("click", "7d")].sum() > 0

    build_training_set.run_up_to(settings, days[-1])
    (promotion,) = train_rankers.run(settings, days[-1]).promotions
    assert store.partitions(TRAINING_EXAMPLES) == days
    run = mlflow.get_run(promotion.run_id)
    metrics = run.data.metrics
    assert "test/model/click/auc" in metrics
    for baseline in ("popularity", "reverse_chron", "logged"):
        assert f"test/{baseline}/value/ndcg_at_10" in metrics
        assert f"val/{baseline}/click/auc" in metrics
    assert not [m for m in metrics if "oracle" in m]
    assert not [m for m in metrics if m.startswith("test/model/like/")]  # not in the log
    assert registry.load_split(promotion.run_id)["test"] == [days[-1]]
    report_file = ranker_report_folder(settings, days[-1], "gbdt").file("report.md")
    report = report_file.read_text()
    assert "oracle" not in report and "popularity" in report
    # The MIND protocol beside ours, with intervals; no dwell table (MIND has no dwell).
    for scorer in ("model", "popularity"):
        for metric in ("group_auc", "mrr", "ndcg_at_5", "ndcg_at_10"):
            assert f"test/{scorer}/click/{metric}_lo" in metrics
    assert "## test: MIND protocol (clicks per request)" in report and "dwell" not in report
    # The gate reads group AUC on a log and refuses a decision on 4 validation requests.
    assert not promotion.promoted
    assert "validation sample is too small to decide: 4 requests" in promotion.reason
    assert "validation group AUC of clicks" in promotion.reason
    ranker = registry.load_ranker(promotion.model_uri)
    assert set(ranker.absent) == {"like", "comment", "share", "hide", "report", "dwell"}


# --- EB-NeRD ---------------------------------------------------------------------------------


def _ts(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2023, 5, day, hour, minute)  # naive, as in the files


# impression_id, user_id, impression_time, in view, clicked, device_type, gender, age,
# next_read_time. 4 days; user 13 is in no history; 107 is shown 9 times, never clicked;
# request 5 clicks 999, which articles lacks; request 3 clicks twice (which read is whose is
# unknown); request 2 read for 5000 s (over the dwell cap); request 6 has no read time.
EB_BEHAVIORS = [
    (1, 10, _ts(18, 7), [101, 102, 104], [102], 1, 0, 20, 30.0),
    (2, 11, _ts(18, 9), [104, 101, 105], [101], 2, 1, 50, 5000.0),
    (3, 12, _ts(18, 21), [105, 102, 107], [105, 102], 3, None, None, 12.0),
    (4, 10, _ts(19, 8), [103, 104, 106], [106], 1, 0, 20, 45.0),
    (5, 13, _ts(19, 10), [999, 103, 107], [999], 0, None, None, 10.0),
    (6, 11, _ts(19, 18), [106, 107, 101], [106], 2, 1, 50, None),
    (7, 12, _ts(20, 7, 30), [108, 106, 107], [108], 2, None, None, 20.0),
    (8, 10, _ts(20, 12), [108, 103, 107], [103], 1, 0, 20, 60.0),
    (9, 13, _ts(20, 20), [104, 108, 107], [104], 2, None, None, 8.0),
    (10, 11, _ts(21, 6), [108, 106, 107], [106], 2, 1, 50, 15.0),
    (11, 12, _ts(21, 9), [103, 108, 107], [108], 3, None, None, 25.0),
    (12, 10, _ts(21, 23), [101, 106, 107], [101], 1, 0, 20, 40.0),
]
# article_id, published_time, category, category_str, subcategory, article_type, topics
EB_ARTICLES = [
    (101, _ts(10, 12), 118, "nyheder", [133], "article_default", ["Kriminalitet"]),
    (102, _ts(18, 6), 142, "sport", [196, 271], "article_video_standalone", ["Sport"]),
    (103, _ts(19, 12), 118, "nyheder", [], "article_default", []),  # after it was shown
    (104, _ts(17, 23), 414, "underholdning", [432], "article_default", []),
    (105, _ts(18, 8, 30), 142, "sport", [196], "article_gallery", []),
    (106, _ts(19, 7), 118, "nyheder", [133], "article_default", []),
    (107, _ts(18, 20), 414, "underholdning", [], "article_default", []),
    (108, _ts(20, 7), 142, "sport", [], "article_default", []),
    (109, _ts(20, 9), 142, "sport", [], "article_default", []),  # never shown
]


def write_ebnerd(folder: Path, behaviors=EB_BEHAVIORS, drop: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(zip(*behaviors, strict=True))
    table = pa.table(
        {
            "impression_id": pa.array(cols[0], pa.uint32()),
            "article_id": pa.nulls(len(behaviors), pa.int32()),
            "impression_time": pa.array(cols[2], pa.timestamp("us")),
            "read_time": pa.array([10.0] * len(behaviors), pa.float32()),
            "scroll_percentage": pa.nulls(len(behaviors), pa.float32()),
            "device_type": pa.array(cols[5], pa.int8()),
            "article_ids_inview": pa.array(cols[3], pa.list_(pa.int32())),
            "article_ids_clicked": pa.array(cols[4], pa.list_(pa.int32())),
            "user_id": pa.array(cols[1], pa.uint32()),
            "gender": pa.array(cols[6], pa.int8()),
            "age": pa.array(cols[7], pa.int8()),
            "next_read_time": pa.array(cols[8], pa.float32()),
        }
    )
    if drop:
        table = table.drop_columns([drop])
    pq.write_table(table, folder / "behaviors.parquet")
    arts = list(zip(*EB_ARTICLES, strict=True))
    pq.write_table(
        pa.table(
            {
                "article_id": pa.array(arts[0], pa.int32()),
                "title": [f"title {i}" for i in arts[0]],
                "subtitle": ["sub" for _ in arts[0]],
                "published_time": pa.array(arts[1], pa.timestamp("us")),
                "category": pa.array(arts[2], pa.int16()),
                "category_str": list(arts[3]),
                "subcategory": pa.array(arts[4], pa.list_(pa.int16())),
                "article_type": list(arts[5]),
                "topics": pa.array(arts[6], pa.list_(pa.string())),
            }
        ),
        folder / "articles.parquet",
    )
    return folder


def read_eb(folder: Path):
    return ebnerd.read(folder / "behaviors.parquet", folder / "articles.parquet", batch_rows=5)


def test_ebnerd_maps_into_raw_days(tmp_path):
    data = read_eb(write_ebnerd(tmp_path))  # batches of 5 rows: 3 batches
    assert data.requests.num_rows == 12 and data.shown.num_rows == 36
    days, dropped = raw_days(data, EB_DAYS, max_missing_share=0.05)
    assert (dropped.impressions, dropped.clicks, dropped.where) == (1, 1, ("row 5",))
    clicks = pd.concat([t[ENGAGEMENTS.name] for t in days.values()]).set_index(C.IMPRESSION_ID)
    dwell = clicks[C.DWELL_S]
    assert dwell[1 * MAX_IN_VIEW + 1] == 30.0  # request 1 clicked 102 at position 1
    assert dwell[2 * MAX_IN_VIEW + 1] == 3600.0  # 5000 s, capped
    assert dwell[[3 * MAX_IN_VIEW + 0, 3 * MAX_IN_VIEW + 1]].isna().all()  # two clicks
    assert np.isnan(dwell[6 * MAX_IN_VIEW + 0])  # no read time
    imps = pd.concat([t[IMPRESSIONS.name] for t in days.values()])
    assert len(imps) == 35 and 107 not in set(clicks[C.POST_ID])
    assert (imps[C.POST_ID] == 107).sum() == 9
    posts = pd.concat([t[POSTS.name].assign(ds=ds) for ds, t in days.items()]).set_index(C.POST_ID)
    # published before the log: kept, in the first day's partition (the backlog)
    assert posts.loc[101, C.CREATED_AT] == pd.Timestamp("2023-05-10 12:00", tz="UTC")
    assert posts.loc[101, "ds"] == posts.loc[104, "ds"] == "2023-05-18"
    # "published" after it was first shown (05-19 08:00): one second before that instead
    assert posts.loc[103, C.CREATED_AT] == pd.Timestamp("2023-05-19 07:59:59", tz="UTC")
    assert posts.loc[102, C.MEDIA_TYPE] == "video" and posts.loc[105, C.MEDIA_TYPE] == "photo"
    assert posts.loc[102, C.HASHTAGS].tolist() == ["sub196", "sub271", "Sport"]
    assert posts.loc[102, C.TOPIC] == 142 and 109 not in posts.index
    users = days["2023-05-21"][USERS.name].set_index(C.USER_ID)
    assert users.loc[10, C.GENDER] == "m" and users.loc[11, C.GENDER] == "f"
    assert users.loc[10, C.AGE_BUCKET] == "25-34" and users.loc[11, C.AGE_BUCKET] == "55+"
    assert users.loc[12, C.PRIMARY_DEVICE] == "mobile"  # tablets count as mobile
    assert users.loc[13, C.PRIMARY_DEVICE] == "mobile"  # device 0 (unknown) is no vote
    assert users.loc[10, C.PRIMARY_DEVICE] == "desktop"
    device = imps.set_index(C.IMPRESSION_ID)[C.DEVICE]
    assert device[5 * MAX_IN_VIEW + 1] is None  # request 5: device_type 0


@pytest.mark.parametrize(
    ("row", "change", "field", "detail"),
    [
        (8, {4: [105]}, "article_ids_clicked", "clicks article 105"),
        (3, {1: None}, "user_id", "is null"),
        (11, {3: []}, "article_ids_inview", "is empty"),
        (7, {6: 5}, "gender", "unknown code 5"),
    ],
)
def test_ebnerd_malformed_rows_name_file_row_and_field(tmp_path, row, change, field, detail):
    rows = [list(r) for r in EB_BEHAVIORS]
    for index, value in change.items():
        rows[row - 1][index] = value
    with pytest.raises(LogFormatError) as err:
        read_eb(write_ebnerd(tmp_path, [tuple(r) for r in rows]))
    assert str(err.value).startswith(f"behaviors.parquet: row {row}, field {field}: ")
    assert detail in str(err.value)


def test_ebnerd_missing_column_is_named(tmp_path):
    with pytest.raises(LogFormatError, match=r"^behaviors.parquet: field next_read_time: column"):
        read_eb(write_ebnerd(tmp_path, drop="next_read_time"))


@pytest.mark.spark
def test_ebnerd_ingest_publishes_every_day_with_dwell(tmp_path, spark):
    from jobs import ingest_log
    from warehouse.catalog import RAW_TABLES, TRUTH_IMPRESSIONS
    from warehouse.store import Warehouse

    folder = write_ebnerd(tmp_path / "ebnerd")
    settings = settings_for(
        "ebnerd", tmp_path / "root", folder, EB_DAYS, behaviors="behaviors.parquet",
        max_missing_share=0.05,
    )  # fmt: skip
    ingested = ingest_log.run(settings)
    store = Warehouse(settings.root.warehouse)
    days = [d.isoformat() for d in EB_DAYS]
    assert list(ingested.days) == days
    for t in RAW_TABLES:
        assert store.partitions(t) == days, t.name
    assert store.partitions(TRUTH_IMPRESSIONS) == []
    imps = store.read_pandas(IMPRESSIONS, days)
    assert len(imps) == 35 and set(imps[C.POLICY]) == {"logged"}
    clicks = store.read_pandas(ENGAGEMENTS, days).set_index(C.IMPRESSION_ID)
    assert clicks.loc[1 * MAX_IN_VIEW + 1, C.DWELL_S] == 30.0  # dwell made it through
    assert clicks[C.DWELL_S].isna().sum() == 3  # two clicks of one request, one without read


def test_feedrank_ingest_reports_a_malformed_file(tmp_path, capsys, monkeypatch):
    from jobs.cli import main as feedrank

    folder = _broken(tmp_path, "news.tsv", 4, "N4\tvideo\tviral\tA dog surfs")
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path / "root"))
    assert feedrank(["ingest", "--format", "mind", "--path", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "feedrank ingest: news.tsv: line 4, field abstract: expected 8" in err


def test_feedrank_ingest_names_an_empty_file_in_one_line(tmp_path, capsys, monkeypatch):
    from jobs.cli import main as feedrank

    folder = tmp_path / "log"
    shutil.copytree(DATA / "mind", folder)
    (folder / "clicks.tsv").write_text("")  # the impressions under another name, empty
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path / "root"))
    args = ["ingest", "--format", "mind", "--path", str(folder), "--behaviors", "clicks.tsv"]
    assert feedrank(args) == 2
    assert capsys.readouterr().err == "feedrank ingest: clicks.tsv: the file is empty\n"
    # A calendar the log does not cover is refused before anything is written.
    monkeypatch.setenv("FEEDRANK__LOG__MAX_MISSING_SHARE", "0.05")  # N99 may be dropped
    args = [*args[:-1], "behaviors.tsv", "--first-day", "2019-11-10", "--days", "2"]
    assert feedrank(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("feedrank ingest: behaviors.tsv: the log's requests fall on 4 days")
    assert "--first-day, --days" in err and err.count("\n") == 1


# --- raw: bring your own log -----------------------------------------------------------------


def write_raw(folder: Path, suffix: str = "csv") -> Path:
    """The MIND test log rewritten in the raw format (warehouse.ingest.raw), one row per item
    in view, with a read time on each click of the first day."""
    data = read_mind()
    shown = data.shown.to_pandas().merge(data.requests.to_pandas(), on="request_id")
    imps = pd.DataFrame(
        {
            "request_id": shown["request_id"],
            "user_id": shown["user_id"],
            "served_at": shown["served_at"],
            "position": shown["position"],
            "post_id": shown["post_id"],
            "clicked": shown["clicked"],
            "dwell_s": np.where(shown["clicked"] & (shown["request_id"] <= 4), 42.0, np.nan),
        }
    )
    items = data.items.to_pandas()
    posts = pd.DataFrame(
        {
            "post_id": items["post_id"],
            "author_id": items["topic"] + 100,
            "topic": items["topic"],
            "media_type": items["media_type"],
            "length": items["length"],
            "hashtags": items["hashtags"].map(list),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    if suffix == "csv":
        imps["served_at"] = imps["served_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        imps["dwell_s"] = imps["dwell_s"].map(lambda v: "" if np.isnan(v) else str(v))
        posts["hashtags"] = posts["hashtags"].map(" ".join)
        imps.to_csv(folder / "impressions.csv", index=False)
        posts.to_csv(folder / "posts.csv", index=False)
    else:
        imps.to_parquet(folder / "impressions.parquet", index=False)
        posts.to_parquet(folder / "posts.parquet", index=False)
    return folder


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_raw_reads_what_the_same_log_in_mind_reads(tmp_path, suffix):
    from warehouse.ingest import raw

    folder = write_raw(tmp_path / "raw", suffix)
    data = raw.read(folder / f"impressions.{suffix}", folder / f"posts.{suffix}")
    want = read_mind()
    assert data.shown.sort_by([("request_id", "ascending"), ("position", "ascending")]).equals(
        want.shown.sort_by([("request_id", "ascending"), ("position", "ascending")])
    )
    got_req = data.requests.to_pandas().set_index("request_id").sort_index()
    want_req = want.requests.to_pandas().set_index("request_id").sort_index()
    pd.testing.assert_series_equal(got_req["served_at"], want_req["served_at"])
    assert (got_req["user_id"] == want_req["user_id"]).all()
    assert got_req.loc[1, "dwell_s"] == 42.0 and np.isnan(got_req.loc[5, "dwell_s"])
    items = data.items.to_pandas().set_index("post_id").sort_index()
    assert items.loc[1, "hashtags"].tolist() == ["newsus", "Q812"]
    assert items.loc[1, "section"] == "raw:110"  # news is topic 10: author 110
    days, _ = raw_days(data, None, max_missing_share=0.05)  # N99 has no post row either
    assert sorted(days) == [d.isoformat() for d in MIND_DAYS]


@pytest.mark.parametrize(
    ("file", "row", "column", "value", "detail"),
    [
        ("impressions", 3, "request_id", "x1", "'x1' is not an integer"),
        ("impressions", 5, "served_at", "yesterday", "'yesterday' is not a timestamp"),
        ("impressions", 6, "clicked", "yes", "'yes' is not a boolean"),
        ("impressions", 2, "user_id", "77", "differs from its request's first row"),
        ("impressions", 5, "position", "0", "repeats a position of its request"),
        ("impressions", 7, "position", "-1", "'-1' is below 0"),
        ("impressions", 9, "post_id", "", "is missing"),
        ("posts", 4, "media_type", "gif", "'gif' is not one of text, photo, video, link"),
        ("posts", 2, "length", "3.5", "'3.5' is not an integer"),
    ],
)
def test_raw_bad_values_name_file_line_and_column(tmp_path, file, row, column, value, detail):
    """Rows are 0-based here; the message counts the header as line 1 (row 0 is line 2)."""
    from warehouse.ingest import raw

    folder = write_raw(tmp_path / "raw")
    frame = pd.read_csv(folder / f"{file}.csv", dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(folder / f"{file}.csv", index=False)
    with pytest.raises(LogFormatError) as err:
        raw.read(folder / "impressions.csv", folder / "posts.csv")
    assert str(err.value).startswith(f"{file}.csv: line {row + 2}, field {column}: "), err.value
    assert detail in str(err.value)


def test_raw_missing_column_and_parquet_rows_are_named(tmp_path):
    from warehouse.ingest import raw

    folder = write_raw(tmp_path / "raw", "parquet")
    imps = pd.read_parquet(folder / "impressions.parquet")
    imps.drop(columns=["clicked"]).to_parquet(folder / "impressions.parquet")
    with pytest.raises(LogFormatError, match=r"^impressions.parquet: field clicked: column miss"):
        raw.read(folder / "impressions.parquet", folder / "posts.parquet")
    imps.assign(position=imps["position"].where(imps.index != 10, 10_000)).to_parquet(
        folder / "impressions.parquet"
    )
    with pytest.raises(LogFormatError, match=r"^impressions.parquet: row 11, field position"):
        raw.read(folder / "impressions.parquet", folder / "posts.parquet")


def test_raw_csv_line_with_a_field_too_few_is_named(tmp_path):
    from warehouse.ingest import raw

    folder = write_raw(tmp_path / "raw")
    lines = (folder / "impressions.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0]  # line 5 loses its last field (dwell_s)
    (folder / "impressions.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        LogFormatError, match=r"^impressions.csv: line 5, field dwell_s: expected 7"
    ):
        raw.read(folder / "impressions.csv", folder / "posts.csv")
