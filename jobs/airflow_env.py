"""The environment that points Airflow at this repo's dags/ and the data root's SQLite DB,
and the `airflow` settings section (how the DAGs are scheduled, where the local UI listens).

Must be applied before `airflow` is imported: Airflow reads its configuration on import.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
import signal
import subprocess
import sys
import time

from pydantic import BaseModel, ConfigDict, Field

from warehouse.layout import DataRoot, executable

log = logging.getLogger(__name__)

# The dag-processor on a busy 2-core laptop (Spark and training beside it). A DAG file parses
# in 1-4 s there (tests/test_dag_integrity.py prints it: it imports no job), so:
# - the import of one file may take DAGBAG_IMPORT_TIMEOUT_S, and a slower one ends as an
#   import error the UI shows; the processor's whole run (its start, the import, writing the
#   DAG to the DB) gets far more, so it is not killed first with the DAG left unexplained:
#   a run took 28-57 s under a load average of 35 on 2 cores (Airflow's 50 s would have
#   killed 6 of 37), and over 200 s at a load of 74;
# - each file is re-parsed every PARSE_INTERVAL_S, not 30 s: 8 files cost a few CPU seconds
#   every two minutes instead of most of a core;
# - a DAG is deactivated only when its file went STALE_DAG_THRESHOLD_S without parsing it,
#   which takes more than two parse cycles that failed in a row (Airflow's 50 s deactivated
#   a DAG after one slow parse, and it vanished from the UI with no error shown).
DAGBAG_IMPORT_TIMEOUT_S = 60
DAG_FILE_PROCESSOR_TIMEOUT_S = 300
PARSE_INTERVAL_S = 120
STALE_DAG_THRESHOLD_S = 1800
# A task talks to the api-server (one worker, on SQLite) through the execution API; Airflow's
# 5 s failed the first tries of tasks under a load average of 35 on 2 cores (ReadTimeout).
EXECUTION_API_TIMEOUT_S = 30


class AirflowSettings(BaseModel):
    """How the DAGs run in Airflow, read when Airflow parses them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unpausing the calendar's DAGs (simulate_platform, the nightly retrains) runs their days
    # of the calendar, in order; false: only the days a user triggers.
    catchup: bool = True
    # How often a scheduled day checks that its inputs exist (the day before, its features,
    # the feeds a closed-loop day serves), and how long it waits before it is skipped.
    inputs_poke_s: int = Field(60, ge=5)
    inputs_timeout_s: int = Field(12 * 3600, ge=60)
    asset_dags_unpaused: bool = True  # DAGs scheduled on Assets start unpaused: one trigger chains
    api_host: str = Field("127.0.0.1", min_length=1)  # the local api-server (UI); 0.0.0.0: all


def airflow_environ(root: DataRoot, api_host: str = AirflowSettings().api_host) -> dict[str, str]:
    return {
        "AIRFLOW__API__HOST": api_host,
        "AIRFLOW_HOME": str(root.airflow_home.resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root.dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": root.airflow_db_url,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(DAGBAG_IMPORT_TIMEOUT_S),
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": str(DAG_FILE_PROCESSOR_TIMEOUT_S),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(PARSE_INTERVAL_S),
        "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": str(STALE_DAG_THRESHOLD_S),
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": str(EXECUTION_API_TIMEOUT_S),
        # On a UI only this machine reaches, a refused request shows the database's reason
        # (triggering a day that has a run: "UNIQUE constraint failed: dag_run.dag_id,
        # dag_run.logical_date") instead of "statement: hidden, orig_error: hidden"; never on
        # a UI open to the network, as it also shows the statement and the stack.
        "AIRFLOW__API__EXPOSE_STACKTRACE": str(is_loopback(api_host)),
        "FEEDRANK_HOME": str(root.home.resolve()),
        "MLFLOW_TRACKING_URI": root.mlflow_tracking_uri,
    }


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to listen on) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


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


def shell_exports(profile: str, root: DataRoot, api_host: str, tracking_uri: str) -> str:
    """`export` lines for a shell that runs the Airflow or MLflow UI on this profile's data
    root: the DAGs parse with the profile's calendar and Params, and MLflow uses
    `tracking_uri`."""
    env = {
        "FEEDRANK_PROFILE": profile,
        **airflow_environ(root, api_host),
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def ui_commands(api_host: str) -> list[list[str]]:
    """The parts `airflow standalone` starts, as `airflow` command lines, without the log
    servers: the scheduler's (LocalExecutor's, port 8793) and the triggerer's (8794) listen
    on every interface, and Airflow 3.3 has no setting for their host. On one machine the UI
    reads the task logs from their files instead."""
    return [
        ["scheduler", "--skip-serve-logs"],
        ["dag-processor"],
        ["triggerer", "--skip-serve-logs"],
        ["api-server", "--host", api_host],
    ]


def run_ui(root: DataRoot, api_host: str) -> int:
    """Migrate the DB and run Airflow's parts on this data root until one exits or the user
    interrupts (then every part is stopped); prints where the login is."""
    env = {**os.environ, **prepare_airflow(root), "AIRFLOW__API__HOST": api_host}
    env["AIRFLOW__API__EXPOSE_STACKTRACE"] = str(is_loopback(api_host))
    airflow = str(executable("airflow"))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` stops every part, as Ctrl-C does
    parts = {cmd[0]: subprocess.Popen([airflow, *cmd], env=env) for cmd in ui_commands(api_host)}
    port = env.get("AIRFLOW__API__PORT", "8080")
    logins = root.airflow_home / "simple_auth_manager_passwords.json.generated"
    log.info("Airflow UI on http://%s:%s; user and password in %s", api_host, port, logins)
    try:
        while not (ended := [n for n, p in parts.items() if p.poll() is not None]):
            time.sleep(1)
        log.error("airflow %s exited (%s): stopping the others", ended[0], parts[ended[0]].poll())
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in parts.values():
            proc.terminate()
        for proc in parts.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
