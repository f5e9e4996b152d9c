"""Shared fixtures: one SparkSession for the whole run; Airflow and the data root in a temp dir.

The environment is set at import, before anything imports airflow (it reads its config then).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import filelock
import pytest

# A pytest-xdist worker's __main__ has neither __spec__ nor __file__, which pyspark.sql.connect
# (imported by Great Expectations) takes for a doctest run without Spark Connect's packages,
# and exits the worker: it gets an empty file, which spawned processes run as __mp_main__.
_MAIN = sys.modules["__main__"]
if getattr(_MAIN, "__spec__", None) is None and not hasattr(_MAIN, "__file__"):
    _MAIN.__file__ = str(Path(__file__).with_name("xdist_main.py"))

_HOME = Path(tempfile.mkdtemp(prefix="feedrank-tests-"))
for _name in list(os.environ):
    if _name.startswith("FEEDRANK_"):  # a developer's overrides must not leak into tests
        del os.environ[_name]
os.environ["FEEDRANK_HOME"] = str(_HOME)
os.environ["FEEDRANK_PROFILE"] = "tiny"
# A DAG run whose inputs never come (a test's mistake) is skipped in two minutes, not 12 h.
os.environ["FEEDRANK__AIRFLOW__INPUTS_POKE_S"] = "5"
os.environ["FEEDRANK__AIRFLOW__INPUTS_TIMEOUT_S"] = "120"

from jobs.airflow_env import airflow_environ  # noqa: E402
from jobs.spark import SparkSettings, get_spark  # noqa: E402
from warehouse.catalog import Layer  # noqa: E402
from warehouse.layout import DataRoot  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

os.environ.update(airflow_environ(DataRoot(_HOME).ensure()))
logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO at exit hits closed streams


# On the tests' small inputs Spark spends more time generating and compiling Java for each
# stage (whole-stage code generation, then Janino per expression) than running it: with both
# off, the expressions are interpreted. Measured on tests/test_features_leakage.py and
# test_features_windows.py at load average 13-15 (a demo beside them): 163 and 173 s with
# Spark's defaults, 135 and 137 s with both off, 195 s with whole-stage generation alone
# off. The same plans, the same results; `make demo`, the jobs and the benchmarks keep
# Spark's defaults (compiled code wins on their sizes), so the tests do not time those.
TEST_SPARK_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for every Spark test: two cores, one shuffle partition, and
    expressions interpreted rather than compiled (TEST_SPARK_CONF)."""
    session = get_spark(
        SparkSettings(
            master="local[2]",
            app_name="feedrank-tests",
            shuffle_partitions=1,
            conf=TEST_SPARK_CONF,
        )
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def data_root() -> DataRoot:
    """The tests' data root (FEEDRANK_HOME): warehouse, Airflow DB, MLflow."""
    return DataRoot(_HOME)


@pytest.fixture(scope="session")
def airflow_db(data_root):
    """A migrated Airflow metadata DB (SQLite) in the tests' data root."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return data_root


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A redis-server of this test session on a free loopback port, stopped at the end."""
    import shutil
    import socket
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `make redis` installs it (Debian package)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--maxmemory-policy", "volatile-lru", "--dir", str(folder)]
    server = subprocess.Popen(
        [binary, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    client.close()
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_days(tmp_path_factory, spark, airflow_db):
    """Every tiny day's raw logs (simulated by the job) and features (built by the
    build_features DAG through dag.test: test_e2e_build_features checks that build); call it
    with a module's data root to start from a copy, of some layers only if given
    (`layers=(Layer.RAW, Layer.TRUTH)`: the simulated days alone). No absolute paths are
    stored in a warehouse, so a copy is a root of its own.

    Built once per test run, not once per pytest-xdist worker: the workers share the run's
    common temp folder, where the first to need a stage builds it (`TinyDays`)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # each worker's basetemp is a folder of the run's
    return TinyDays(shared / "tiny-days")


class TinyDays:
    """The session's tiny days in two stages, each a data root built when a test first needs
    it: the simulated days (raw and truth), then a copy of them with every day's features.
    A stage is built under its own file lock, shared by the workers, and marked done only
    once whole, so the others wait for it and copy; a failed build leaves nothing behind.

    The features are built as `feedrank demo` builds them: the build_features DAG's run of
    the first day (a nightly run), then one backfill run of the others (the Param `to`); a
    run that does not succeed fails the stage."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def __call__(self, home: Path, layers: Sequence[Layer] | None = None) -> None:
        simulated = layers is not None and set(layers) <= {Layer.RAW, Layer.TRUTH}
        root = self.stage("simulated" if simulated else "features")
        target = DataRoot(home)
        if layers is None:
            shutil.copytree(root.warehouse, target.warehouse)
        else:
            source, copy = Warehouse(root.warehouse), Warehouse(target.warehouse)
            for layer in layers:
                shutil.copytree(source.layer_dir(layer), copy.layer_dir(layer))
        shutil.copy2(root.owner_file, target.owner_file)

    def stage(self, name: str) -> DataRoot:
        """A stage's data root, built first if no worker has built it yet."""
        root, done = DataRoot(self.folder / name), self.folder / f"{name}.done"
        with filelock.FileLock(self.folder / f"{name}.lock"):
            if not done.exists():
                shutil.rmtree(root.home, ignore_errors=True)
                try:
                    self.build(name, root)
                except BaseException:
                    shutil.rmtree(root.home, ignore_errors=True)
                    raise
                done.touch()
        return root

    def build(self, name: str, root: DataRoot) -> None:
        from jobs import simulate_platform
        from jobs.settings import load_settings

        if name == "features":
            shutil.copytree(self.stage("simulated").home, root.home)
        patch = pytest.MonkeyPatch()
        patch.setenv("FEEDRANK_HOME", str(root.home))  # the DAG's tasks read it when they run
        try:
            settings = load_settings("tiny")
            if name == "simulated":
                for ds in settings.dates():
                    simulate_platform.run(settings, ds)
                return
            states = _features_through_the_dag(settings.dates())
        finally:
            patch.undo()
        if any(state != "success" for state in states.values()):
            raise RuntimeError(f"the build_features DAG runs of the tiny days: {states}")


def _features_through_the_dag(days: Sequence[str]) -> dict[str, str]:
    """Build the days' features with the build_features DAG (dag.test, in this process): the
    first day as a nightly run does, the others as one backfill run (the Param `to`, as
    `feedrank demo` runs it); each day's run state."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DataRoot.dags_folder())).get_dag("build_features")
    states = {}
    for part, conf in ((days[:1], {}), (days[1:], {"to": days[-1]})):
        logical = dt.datetime.fromisoformat(part[0]).replace(tzinfo=dt.UTC)
        run = dag.test(logical_date=logical, run_conf={"profile": "tiny", **conf})
        states |= dict.fromkeys(part, str(run.state))
    return states


TINY_FIXTURE = "tiny_days"


@functools.cache
def starts_from_tiny_days(path: Path) -> bool:
    """Whether a test file uses the session's tiny days (its text names the fixture)."""
    return TINY_FIXTURE in path.read_text()


# The longest files that need no tiny day: the second worker runs them while the first
# builds the tiny days (about 4 minutes), instead of waiting for them.
BESIDE_THE_BUILD = ("test_ingest_log.py", "test_contracts.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The files that start from the session's tiny days run first, the longest files, and
    the first of them builds those days while the other worker runs BESIDE_THE_BUILD.

    `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`: a file runs on one
    worker, its module fixtures built once, and each worker takes the next file in this
    order when it has two tests or fewer left. The first worker takes the first tiny file
    (three tests: it takes nothing more before they end) and builds the days under the
    stage's lock; the second takes BESIDE_THE_BUILD, then the other tiny files, when the
    days are about built. Before, it took a tiny file at once and waited on the lock."""
    tiny = sorted({item.path for item in items if starts_from_tiny_days(item.path)})

    def rank(item) -> tuple[int, int]:
        if tiny and item.path == tiny[0]:
            return 0, 0
        if item.path.name in BESIDE_THE_BUILD:
            return 1, BESIDE_THE_BUILD.index(item.path.name)
        return (2 if item.path in tiny else 3), 0

    items.sort(key=rank)
    # The browser tests need a data root the scheduler walked and a chromium (`make
    # browser-test`): only a run that asks for them (`-m browser`) collects them.
    if "browser" not in (config.getoption("markexpr") or ""):
        browser = [item for item in items if item.get_closest_marker("browser")]
        if browser:
            config.hook.pytest_deselected(items=browser)
            items[:] = [item for item in items if not item.get_closest_marker("browser")]
