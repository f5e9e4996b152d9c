"""End to end on the tiny profile: train_retrieval through dag.test() on four days of raw logs,
then build_retrieval_index for the last day; the MLflow run, the registry and the artifact."""

from __future__ import annotations

import datetime as dt

import pytest
from mlflow.tracking import MlflowClient

import jobs.train_retrieval as job
from jobs.settings import load_settings
from models.registry.versions import CHALLENGER, champion_version
from models.retrieval import index as ix
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.spark]

NAME = "feedrank-retrieval"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(tmp_path_factory.mktemp("retrieval-home")))
    yield load_settings("tiny")
    patch.undo()


@pytest.fixture(scope="module")
def days(settings, tiny_days):
    """Every tiny day's raw logs (the retrieval model reads only those; the session's build,
    copied)."""
    tiny_days(settings.home)
    return settings.dates()


def _dag_test(folder, dag_id: str, ds: str) -> str:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(folder)).get_dag(dag_id)
    logical = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    return str(dag.test(logical_date=logical, run_conf={"profile": "tiny"}).state)


@pytest.fixture(scope="module")
def trained(airflow_db, days, settings):
    state = _dag_test(airflow_db.dags_folder(), "train_retrieval", days[-1])
    job.use_tracking(settings)
    client = MlflowClient()
    version = client.get_model_version_by_alias(NAME, CHALLENGER)
    return {"state": state, "version": version, "run": client.get_run(version.run_id)}


def test_dag_trains_evaluates_and_registers(trained):
    assert trained["state"] == "success"
    metrics = trained["run"].data.metrics
    for scorer in ("two_tower", "popularity", "followees_newest", "random"):
        for k in (50, 200, 500):
            assert 0.0 <= metrics[f"test/{scorer}/recall_at_{k}"] <= 1.0
            assert metrics[f"val/{scorer}/recall_at_{k}"] <= metrics[f"val/{scorer}/recall_at_500"]
    assert "test/two_tower/cold_recall_at_500" in metrics
    # the towers learn something: above popularity and a random pick from the same pool
    tower = metrics["test/two_tower/recall_at_500"]
    assert tower > metrics["test/popularity/recall_at_500"]
    assert tower > metrics["test/random/recall_at_500"]
    tags = trained["version"].tags
    assert tags["feedrank.promotion"] in ("promoted", "not promoted")
    assert "popularity" in tags["feedrank.promotion_reason"]


def test_index_dag_publishes_the_days_index(trained, airflow_db, days, settings):
    job.use_tracking(settings)
    assert champion_version(NAME) is not None, "the tiny model did not beat popularity"
    assert _dag_test(airflow_db.dags_folder(), "build_retrieval_index", days[-1]) == "success"
    store = ArtifactStore(settings.root.artifacts)
    assert store.versions(RETRIEVAL_INDEX) == [days[-1]]
    pub = job.load_published(settings)
    assert pub.meta["kind"] == "flat" and pub.meta["recall_at_500_vs_exact"] >= 0.95
    index, post_ids, users = pub.index, pub.post_ids, pub.user_vectors
    assert index.ntotal == len(post_ids) == pub.meta["posts"]
    assert len(users) == len(pub.user_ids) == pub.meta["users"] > 0
    rows = index.search(users[:5], 50)[1]
    assert (rows >= 0).all() and len(set(post_ids[rows[0]])) == 50


def test_index_below_the_recall_floor_publishes_nothing(trained, days, settings):
    strict = settings.model_copy(
        update={
            "retrieval": settings.retrieval.model_copy(
                update={
                    "index": settings.retrieval.index.model_copy(
                        update={"flat_max": 10, "kind": "ivf", "nlist": 64, "nprobe": 1}
                    )
                }
            )
        }
    )
    before = ArtifactStore(settings.root.artifacts).versions(RETRIEVAL_INDEX)
    with pytest.raises(ix.IndexRecallError, match="min_recall"):
        job.build_index(strict, days[-2])
    assert ArtifactStore(settings.root.artifacts).versions(RETRIEVAL_INDEX) == before
