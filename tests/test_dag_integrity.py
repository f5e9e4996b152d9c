"""Every DAG file imports cleanly and follows the house rules; no network, no connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

DAG_FILES = sorted(p for p in (Path(__file__).parent.parent / "dags").glob("*.py"))
# What the dag-processor must never import to parse a DAG file (each costs seconds, and a
# busy 2-core machine turns seconds into the processor's timeout): the tasks import them.
HEAVY = ("pyspark", "torch", "lightgbm", "mlflow", "great_expectations", "faiss", "sklearn")
# Parse each DAG file as the dag-processor does: one interpreter imports Airflow, then forks
# a child per file that parses it (a DagBag of the file) and reports the seconds of the file
# itself and every top-level module it then holds.
_PARSE = """
import json, os, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
airflow_s = time.perf_counter() - started
for path in sys.argv[1:]:
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        began = time.perf_counter()
        bag = DagBag(dag_folder=path)
        report = {
            "path": path,
            "airflow_s": airflow_s,
            "file_s": time.perf_counter() - began,
            "dags": sorted(bag.dag_ids),
            "errors": {str(k): v for k, v in bag.import_errors.items()},
            "modules": sorted({m.split(".")[0] for m in sys.modules}),
        }
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(report))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as source:
        print(source.read())
    os.wait()
"""


@pytest.fixture(scope="module")
def parsed(airflow_db) -> dict[str, dict]:
    """Each DAG file's parse report, by file name."""
    out = subprocess.run(
        [sys.executable, "-c", _PARSE, *map(str, DAG_FILES)],
        env={**os.environ, "PYTHONPATH": str(DAG_FILES[0].parent.parent)},
        check=True,
        capture_output=True,
        text=True,
    )
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {Path(r["path"]).name: r for r in reports}


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(airflow_db.dags_folder()))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_dag_per_file(dagbag):
    files = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert len(dagbag.dags) == len(DAG_FILES)
    assert files == {p.name for p in DAG_FILES}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_rules(dagbag, path):
    (dag,) = [d for d in dagbag.dags.values() if Path(d.fileloc) == path]
    assert dag.dag_id == path.stem  # the file is named after its DAG
    assert dag.tags, "every DAG has tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, "the module docstring is the doc_md"
    assert dag.max_active_runs == 1
    for t in dag.tasks:
        assert t.retries >= 1, f"{t.task_id} has no retries"
        assert t.owner == "feedrank"
    # A DAG is acyclic by construction; topological_sort raises on a cycle.
    assert len(dag.topological_sort()) == len(dag.tasks)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_a_dag_file_parses_without_heavy_imports(parsed, path):
    """Each DAG file, parsed alone in a child of an interpreter that imported only Airflow,
    imports none of HEAVY; its parse time is printed (`pytest -s`), never asserted: it
    depends on the machine's load."""
    report = parsed[path.name]
    assert report["errors"] == {} and report["dags"] == [path.stem]
    assert sorted(set(HEAVY) & set(report["modules"])) == []
    print(
        f"\n{path.name}: airflow import {report['airflow_s']:.2f}s, "
        f"the file {report['file_s']:.2f}s"
    )


def test_dag_files_stay_declarative():
    """DAG files hold no paths, SQL or Spark: they wire tasks to jobs/."""
    for path in DAG_FILES:
        text = path.read_text()
        for forbidden in ("SparkSession", "open(", "Path(", "SELECT ", ".parquet", "os.path"):
            assert forbidden not in text, f"{path.name} contains {forbidden!r}"


@pytest.fixture(scope="module")
def synced(dagbag):
    """The DAGs written to the metadata DB the way the dag-processor writes them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)
    return dagbag


def test_a_raw_event_queues_features_and_the_ab_report_without_unpausing_them(synced):
    """DAGs start paused (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION), except those scheduled
    on Assets (jobs.airflow_support.asset_scheduled): the raw event of a triggered
    simulate_platform run queues build_features and ab_report."""
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.models.dag import DagModel
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from jobs.airflow_support import RAW_LOGS

    on_assets = {
        i for i, d in synced.dags.items() if isinstance(d.timetable, AssetTriggeredTimetable)
    }
    assert {"build_features", "ab_report"} <= on_assets and "simulate_platform" not in on_assets
    with create_session() as session:
        paused = dict(session.execute(select(DagModel.dag_id, DagModel.is_paused)).all())
        assert paused == {dag_id: dag_id not in on_assets for dag_id in synced.dags}
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == RAW_LOGS.uri))
        AssetManager.register_asset_change(
            asset=asset, extra={"days": ["2026-01-05"]}, session=session
        )
        session.flush()
        queued = session.scalars(
            select(AssetDagRunQueue.target_dag_id).where(AssetDagRunQueue.asset_id == asset.id)
        ).all()
        session.rollback()  # leave the tests' DB as it was
    assert sorted(queued) == ["ab_report", "build_features"]


def test_the_calendar_is_the_schedule_with_catch_up(dagbag):
    """simulate_platform runs every day of the profile's calendar, the nightly retrains the
    data days they are needed on; no time-scheduled DAG has a run outside the calendar, so
    unpausing one starts nothing there."""
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    from jobs.common import nightly_days, retrieval_days
    from jobs.settings import load_settings

    settings = load_settings()  # the profile the DAGs were parsed with (FEEDRANK_PROFILE)

    def days(dag_id: str) -> list[str]:
        return [d.date().isoformat() for d in dagbag.get_dag(dag_id).timetable.event_dates]

    assert days("simulate_platform") == settings.dates()
    assert days("train_rankers") == nightly_days(settings) == [settings.dates()[-1]]  # no loop
    assert days("train_retrieval") == retrieval_days(settings)
    on_assets = AssetTriggeredTimetable
    by_hand = {i for i, d in dagbag.dags.items() if type(d.timetable).__name__ == "NullTimetable"}
    assert by_hand == {"ingest_log"}  # a real log is ingested when a user triggers it
    timed = {
        i: d
        for i, d in dagbag.dags.items()
        if not isinstance(d.timetable, on_assets) and i not in by_hand
    }
    assert sorted(timed) == ["simulate_platform", "train_rankers", "train_retrieval"]
    for dag in timed.values():
        assert dag.catchup is settings.airflow.catchup is True  # unpausing walks the days
        assert dag.end_date is None  # a run after an end_date would get no tasks: "success"
        assert dag.start_date.date().isoformat() == settings.dates()[0]  # else: no tasks
        assert [t.task_id for t in dag.tasks if not t.upstream_task_ids] == ["inputs"]
        assert dag.params.get_param("profile").value == settings.profile


def test_a_trigger_outside_the_calendar_is_skipped(dagbag, data_root):
    """The form's default logical date (now) is outside every profile's calendar: the run's
    `inputs` is skipped, saying why, and so is every task after it (no Asset event); it
    writes nothing."""
    import datetime as dt

    from warehouse.catalog import IMPRESSIONS
    from warehouse.store import Warehouse

    dag = dagbag.get_dag("simulate_platform")
    run = dag.test(
        logical_date=dt.datetime(2026, 11, 23, tzinfo=dt.UTC), run_conf={"profile": "tiny"}
    )
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == dict.fromkeys(["inputs", "simulate", "validate", "publish"], "skipped")
    assert "2026-11-23" not in Warehouse(data_root.warehouse).partitions(IMPRESSIONS)


def test_a_retrain_on_a_day_too_early_for_its_split_is_skipped(dagbag):
    import datetime as dt

    dag = dagbag.get_dag("train_rankers")
    run = dag.test(
        logical_date=dt.datetime(2026, 1, 5, tzinfo=dt.UTC), run_conf={"profile": "tiny"}
    )
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["inputs"] == "skipped"
    assert set(states.values()) == {"skipped"}  # promote too: no feedrank-ranker event


def test_the_dags_trigger_each_other_through_assets_in_pipeline_order(dagbag):
    """Producer -> consumer edges read from the DagBag: each Asset a DAG's tasks update
    schedules the DAGs that read it, and the chain runs logs -> features -> feeds -> store,
    with the A/B report on each day of logs."""
    from airflow.sdk import Asset

    def assets(node) -> set[str]:
        if isinstance(node, Asset):
            return {node.uri}
        return set().union(*(assets(o) for o in getattr(node, "objects", ())))

    produces = {
        i: {o.uri for t in d.tasks for o in t.outlets if isinstance(o, Asset)}
        for i, d in dagbag.dags.items()
    }
    consumes = {i: assets(d.timetable.asset_condition) for i, d in dagbag.dags.items()
                if hasattr(d.timetable, "asset_condition")}  # fmt: skip
    edges = {(p, c) for p, outs in produces.items() for c, ins in consumes.items() if outs & ins}
    assert edges == {
        ("simulate_platform", "build_features"),
        ("simulate_platform", "ab_report"),
        ("ingest_log", "build_features"),
        ("ingest_log", "ab_report"),
        ("build_features", "precompute_feeds"),
        ("train_rankers", "precompute_feeds"),
        ("train_retrieval", "build_retrieval_index"),
        ("precompute_feeds", "publish_feeds"),
    }


def test_the_demo_starts_each_dag_test_from_the_params_as_parsed(dagbag):
    """dag.test() resolves a run's conf into the DAG's own Param objects (in this process):
    `feedrank demo`'s backfill `to` must not become the next features run's default."""
    from airflow.sdk.definitions.param import process_params

    from jobs import demo

    dag = dagbag.get_dag("build_features")
    demo._reset_params(dag)  # the values as parsed are recorded on the first reset
    task = dag.tasks[0]
    process_params(dag, task, {"to": "2026-01-08"}, suppress_exception=False)
    # What made the demo's loop day fail: the next run's params, with no conf, keep it.
    assert process_params(dag, task, {}, suppress_exception=False)["to"] == "2026-01-08"
    demo._reset_params(dag)
    assert process_params(dag, task, {}, suppress_exception=False)["to"] is None
