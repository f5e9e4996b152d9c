"""Every DAG file imports cleanly and follows the house rules; no network, no connections."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

DAG_FILES = sorted(p for p in (Path(__file__).parent.parent / "dags").glob("*.py"))


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


def test_dag_files_stay_declarative():
    """DAG files hold no paths, SQL or Spark: they wire tasks to jobs/."""
    for path in DAG_FILES:
        text = path.read_text()
        for forbidden in ("SparkSession", "open(", "Path(", "SELECT ", ".parquet", "os.path"):
            assert forbidden not in text, f"{path.name} contains {forbidden!r}"
