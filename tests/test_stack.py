"""`feedrank stack` for real, small: the Spark master with one worker, Postgres and the
MLflow server on free loopback ports in a root of the test's own. A Spark job runs on the
cluster (its executors import the code the driver shipped, and read a folder shipped as the
feed precompute ships its index and ranker), one MLflow run goes to the server (its artifact
lands under the data root), and `down` leaves no process and no port behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from jobs.processes import StackError, free_port, group_alive, port_taken
from jobs.settings import load_settings
from jobs.stack import Stack
from warehouse.layout import REPO_ROOT, DataRoot

pytestmark = pytest.mark.stack


def _stack(home: Path, workers: int = 1) -> Stack:
    ports = {
        f"{name}_port": free_port()
        for name in ("spark_master", "spark_ui", "spark_worker", "postgres", "mlflow", "redis")
    }
    # worker_memory stays Spark's executor default (1g): a smaller worker never gets one
    stack = {**ports, "spark_workers": workers, "health_timeout_s": 240}
    settings = load_settings("tiny", {"home": str(home), "stack": stack})
    return Stack(settings.root, settings.stack, settings.profile)


@pytest.fixture
def home():
    # As root, Postgres runs as the `postgres` user, who must be able to enter the root:
    # a folder of its own that others may traverse but not list.
    folder = Path(tempfile.mkdtemp(prefix="feedrank-stack-"))
    folder.chmod(0o711)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


# Runs as its own process: the test session's local SparkSession would be reused otherwise.
JOB = textwrap.dedent(
    """
    import json, pathlib, sys
    import mlflow
    from jobs.spark import SparkSettings, get_spark, shipped_folder

    master, tracking_uri, out, folder = sys.argv[1:5]
    spark = get_spark(SparkSettings(master=master, app_name="stack-test", shuffle_partitions=2))

    def where(rows):
        import features  # from the zip the driver shipped, not from a checkout
        return [(features.__file__, sum(rows))]

    found = spark.sparkContext.parallelize(range(100), 2).mapPartitions(where).collect()

    with shipped_folder(spark, folder) as name:  # a cluster refuses addFile of a folder
        def read(rows):
            from pyspark import SparkFiles
            copy = pathlib.Path(SparkFiles.get(name))
            yield (str(copy), (copy / "sub" / "note.txt").read_text(), sum(rows))

        shipped = spark.sparkContext.parallelize(range(10), 2).mapPartitions(read).collect()
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    spark.stop()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("stack-test")
    with mlflow.start_run() as run:
        mlflow.log_param("master", master)
        mlflow.log_metric("total", sum(t for _, t in found))
        mlflow.log_text("hello from the stack test", "note.txt")
    result = {"found": found, "shipped": shipped, "executors": executors, "run_id": run.info.run_id}
    json.dump(result, open(out, "w"))
    """
)


def test_stack_runs_a_spark_job_and_an_mlflow_run_then_stops_everything(home, tmp_path):
    stack = _stack(home)
    groups = ("spark", "mlflow")  # mlflow brings Postgres
    try:
        stack.up(groups)  # its lines (service, pid, port, seconds) show with -s
        rows = {r["service"]: r for r in stack.status()}
        started = ["postgres", "spark-master", "spark-worker-1", "mlflow"]
        assert all(rows[name]["healthy"] and rows[name]["pid"] for name in started), rows
        assert not rows["airflow-api"]["alive"] and not rows["redis"]["alive"]
        for name in started:  # listening on loopback only: taken there
            assert port_taken("127.0.0.1", rows[name]["port"])

        # A second `up` with a port taken by a stranger names the service and the port.
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", stack.cfg.redis_port))
        blocker.listen()
        with pytest.raises(StackError, match=f"redis: port {stack.cfg.redis_port} .* taken"):
            stack.up(("redis",), echo=lambda line: None)
        blocker.close()

        out, folder = tmp_path / "job.json", tmp_path / "ship-me"
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "note.txt").write_text("shipped to the workers")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
        env.update(stack.client_env(groups), PYTHONPATH=str(REPO_ROOT))
        done = subprocess.run(
            [sys.executable, "-c", JOB, stack.spark_url, stack.mlflow_url, str(out), str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(out.read_text())
        # Both partitions ran on the cluster's one executor, importing the shipped zip.
        assert result["executors"] == 1
        assert sorted(total for _, total in result["found"]) == [
            sum(range(50)),
            sum(range(50, 100)),
        ]
        assert all("feedrank_code.zip" in path for path, _ in result["found"]), result
        # Each task read the folder's copy on the worker, not the driver's folder.
        assert sorted(total for *_, total in result["shipped"]) == [
            sum(range(5)),
            sum(range(5, 10)),
        ]
        for copy, text, _ in result["shipped"]:
            assert text == "shipped to the workers" and copy != str(folder), result
        assert not list(tmp_path.glob(".shipped-*"))  # the zip is gone with the context

        import mlflow

        run = mlflow.MlflowClient(stack.mlflow_url).get_run(result["run_id"])
        assert run.data.metrics["total"] == sum(range(100))
        assert run.data.params["master"] == stack.spark_url
        notes = list(DataRoot(home).mlflow_artifacts.rglob("note.txt"))  # proxied to the root
        assert [p.read_text() for p in notes] == ["hello from the stack test"]
        assert stack._query("mlflow", "select count(*) from runs") == [(1,)]  # on Postgres
    finally:
        before = stack.running()
        stopped = stack.down(echo=lambda line: None)
    assert set(stopped) == {"postgres", "spark-master", "spark-worker-1", "mlflow"}
    assert stack.running() == {}  # no pid file left
    for running in before.values():
        assert not group_alive(running.pid), running
        assert running.port is None or not port_taken("127.0.0.1", running.port), running
    rows = stack.status()
    assert not any(r["alive"] or r["healthy"] for r in rows)


def test_status_and_down_on_a_root_without_a_stack(home):
    stack = _stack(home)
    assert stack.down(echo=lambda line: None) == []
    assert not any(r["alive"] for r in stack.status())


def test_the_scheduler_tasks_share_the_cluster_unless_told_otherwise(home, monkeypatch):
    """Each task's Spark application is capped at the cluster's cores over Airflow's task
    slots, so two tasks' jobs run side by side instead of one waiting for the other's
    executors; a cap or other settings of the user's own are kept."""
    monkeypatch.delenv("FEEDRANK__SPARK__CONF", raising=False)
    settings = load_settings(
        "tiny", {"home": str(home), "stack": {"spark_workers": 4, "airflow_parallelism": 2}}
    )
    stack = Stack(settings.root, settings.stack, settings.profile)
    assert stack.task_spark_conf() == {"spark.cores.max": "2"}
    env = stack.airflow_env(("spark",))
    assert json.loads(env["FEEDRANK__SPARK__CONF"]) == {"spark.cores.max": "2"}
    assert "FEEDRANK__SPARK__CONF" not in stack.airflow_env(("mlflow",))
    mine = {"spark.cores.max": "3", "spark.driver.host": "10.0.0.1"}
    monkeypatch.setenv("FEEDRANK__SPARK__CONF", json.dumps(mine))
    assert stack.task_spark_conf() == mine
    monkeypatch.setenv("FEEDRANK__SPARK__CONF", '{"spark.driver.host": "10.0.0.1"}')
    assert stack.task_spark_conf() == {"spark.cores.max": "2", "spark.driver.host": "10.0.0.1"}
    one_slot = Stack(
        settings.root, settings.stack.model_copy(update={"airflow_parallelism": 8}), "tiny"
    )
    assert one_slot.task_spark_conf()["spark.cores.max"] == "1"  # never 0
