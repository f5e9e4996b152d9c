"""The environment that points Airflow at this repo's dags/ and the data root's SQLite DB.

Must be applied before `airflow` is imported: Airflow reads its configuration on import.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from warehouse.layout import DataRoot, executable

log = logging.getLogger(__name__)


def airflow_environ(root: DataRoot) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(root.airflow_home.resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root.dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": root.airflow_db_url,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "FEEDRANK_HOME": str(root.home.resolve()),
        "MLFLOW_TRACKING_URI": root.mlflow_tracking_uri,
    }


def prepare_airflow(root: DataRoot) -> dict[str, str]:
    """Set the environment for this process and migrate the Airflow DB if needed."""
    env = airflow_environ(root.ensure())
    os.environ.update(env)
    if "airflow" in sys.modules:
        log.warning("airflow was imported before its environment was set; settings may be stale")
    airflow_bin = executable("airflow")
    log.info("airflow db migrate (%s)", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    subprocess.run(
        [str(airflow_bin), "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def shell_exports(root: DataRoot, tracking_uri: str | None = None) -> str:
    """`export` lines for a shell that runs the Airflow or MLflow UI on this data root
    (MLflow on `tracking_uri` when one is configured)."""
    env = airflow_environ(root)
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return "\n".join(f"export {k}={v}" for k, v in env.items())
