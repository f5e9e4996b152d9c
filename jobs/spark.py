"""The one SparkSession factory. Only jobs/ open sessions, and only through here."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)


class SparkSettings(BaseModel):
    """How to reach Spark; local by default, a cluster by setting `master`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str = "local[*]"  # e.g. spark://host:7077, yarn, k8s://...
    app_name: str = "feedrank"  # shown in the Spark UI
    shuffle_partitions: int = 8  # small data locally; raise on a cluster
    # adaptive query execution: coalesces small shuffles, turns joins into broadcasts at run
    # time; it also makes each exchange its own job (a tiny day: 122 jobs on, 45 off), which
    # costs nothing that shows: with it and broadcasts, a quiet demo day's features took 75.6 s,
    # without both 100-110 s, a tiny day about the same (README, Benchmarks)
    adaptive: bool = True
    # joins whose smaller side is estimated below this are broadcast (Spark's default 10)
    broadcast_mb: int = 10
    driver_memory: str = "4g"  # local mode runs everything in the driver
    ui_enabled: bool = False  # the local UI costs start-up time and a port
    conf: dict[str, str] = {}  # any other spark.* setting, passed through
    # On a cluster, send the driver's own packages to the executors (a zip, like
    # spark-submit --py-files), so that they run the driver's code, not whatever copy of the
    # packages their Python finds; off only where the workers' image carries the same code.
    ship_code: bool = True


def get_spark(settings: SparkSettings):
    """Return the process's SparkSession, creating it from settings on first use."""
    from pyspark.sql import SparkSession

    # Workers must run the same interpreter as the driver (a .venv, not the system python).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(settings.master)
        .appName(settings.app_name)
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.sql.adaptive.enabled", str(settings.adaptive).lower())
        .config("spark.sql.autoBroadcastJoinThreshold", f"{settings.broadcast_mb}m")
        .config("spark.sql.adaptive.autoBroadcastJoinThreshold", f"{settings.broadcast_mb}m")
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.ui.enabled", str(settings.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")  # progress bars garble task logs
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    if settings.master.startswith("local"):
        # One executor, the driver: no other host to wait for before giving up locality.
        builder = builder.config("spark.locality.wait", "0s")
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if settings.ship_code and not settings.master.startswith("local"):
        _ship_code(spark.sparkContext)
    log.info("spark session on %s (Spark %s)", settings.master, spark.version)
    return spark


# The packages executors import (features' UDFs, the simulator, models' scoring); jobs and
# warehouse too, for functions defined there and shipped inside closures.
CODE_PACKAGES = ("jobs", "features", "models", "warehouse", "simulator")
_shipped: set[str] = set()  # application ids that have the code already


def _ship_code(sc) -> None:
    """Zip the packages from the driver's checkout and add the zip to the application's
    Python path on every executor (SparkContext.addPyFile), once per application."""
    from warehouse.layout import REPO_ROOT

    if sc.applicationId in _shipped:
        return
    folder = tempfile.mkdtemp(prefix="feedrank-code-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "feedrank_code.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in CODE_PACKAGES:
            for file in sorted((REPO_ROOT / package).rglob("*")):
                if file.suffix in (".py", ".toml") and "__pycache__" not in file.parts:
                    zf.write(file, file.relative_to(REPO_ROOT).as_posix())
    sc.addPyFile(path)
    # addPyFile also puts the zip on the driver's own path: the driver keeps its checkout.
    sys.path[:] = [p for p in sys.path if not p.endswith(os.sep + "feedrank_code.zip")]
    _shipped.add(sc.applicationId)
    log.info("shipped %s to the executors (%d KiB)", path, os.path.getsize(path) // 1024)


@contextlib.contextmanager
def shipped_folder(spark, folder: Path | str) -> Iterator[str]:
    """Send a local folder to every Spark worker; yields the name under which a task finds
    its copy: `pyspark.SparkFiles.get(name)` is the folder, its files and subfolders as they
    are. The name is the folder's, and must be new to the application.

    The folder travels as a zip (SparkContext.addArchive, unpacked on each worker under that
    name), not as a folder: SparkContext.addFile takes a local folder only with a local
    master, and a cluster refuses it (UNSUPPORTED_ADD_FILE.LOCAL_DIRECTORY: the feed
    precompute's index and ranker failed so on the standalone stack). The zip is written
    beside the folder and removed when the context closes, after the jobs that read it."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix=".shipped-", dir=folder.parent) as tmp:
        archive = shutil.make_archive(os.path.join(tmp, folder.name), "zip", root_dir=folder)
        spark.sparkContext.addArchive(f"{archive}#{folder.name}")
        yield folder.name
