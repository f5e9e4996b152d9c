"""`feedrank demo --scheduler`: the profile's calendar built by Airflow's own scheduler.

`feedrank demo` calls `dag.test()` day by day; this mode runs the pipeline the way a team
would: it starts Airflow's parts on the profile's data root (scheduler, dag-processor,
triggerer and api-server, as `feedrank airflow-ui` does, their logs under the root's logs/),
waits until the dag-processor has stored every DAG, unpauses them and lets the scheduler walk
the calendar: `simulate_platform` day by day (its schedule is the calendar, with catch-up),
the features, retrains, index, feeds and A/B reports through the Asset chain and the
retrains' own calendar days. It shows each run as its state changes and, once every run has
ended and nothing new was created for `quiet_s`, prints one line per DAG run (dag, run id,
logical date, state, its tasks' states, duration) and writes them as JSON under the data
root's reports/. Exit 1 when a run failed (named, with its failed tasks' log files), or
when the calendar was not walked within the time limit. Every part it started is stopped on
the way out, also on Ctrl-C or `kill`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from jobs import processes
from jobs.airflow_env import is_loopback, prepare_airflow, ui_commands
from jobs.common import nightly_days, retrieval_days
from jobs.settings import Settings
from warehouse.layout import DataRoot, executable

DEFAULT_PORT = 8080
TERMINAL = {"success", "failed"}
# The DAGs scheduled on the calendar (or on some of its days): a run for each of those days
# must exist before the walk can be over; the others follow through Assets.
SCHEDULED = {
    "simulate_platform": lambda s: list(s.dates()),
    "train_rankers": nightly_days,
    "train_retrieval": retrieval_days,
}
RESULT_FILE = "scheduler_runs.json"


class WalkFailed(RuntimeError):
    """A run failed, a part of Airflow exited, or the calendar was not walked in time."""


@dataclasses.dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    run_type: str
    logical_date: str | None  # YYYY-MM-DD, None for an asset-triggered run
    state: str
    start: str | None
    end: str | None
    seconds: float | None
    tasks: dict[str, int]  # task state -> count ("skipped": a day with nothing to do)


@dataclasses.dataclass
class Airflow:
    """Airflow's parts started on a data root; `stop()` ends them all."""

    root: DataRoot
    port: int
    env: dict[str, str]  # the parts' environment (for `airflow` commands on the same root)
    running: list[processes.Running]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exited(self) -> list[str]:
        return [r.service for r in self.running if not r.alive]

    def stop(self) -> None:
        for part in reversed(self.running):
            processes.stop(part, timeout_s=30)
        self.running.clear()


def airflow_parts_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment of Airflow's parts on this root: the profile's DAGs and MLflow store,
    the api-server on `port`, which the tasks reach for the execution API."""
    env = {**os.environ, **prepare_airflow(settings.root)}
    host = settings.airflow.api_host
    env.update(
        {
            "FEEDRANK_PROFILE": settings.profile,
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__EXPOSE_STACKTRACE": str(is_loopback(host)),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # the parts start `airflow` (tasks, the dag-processor's children) from PATH
            "PATH": f"{executable('airflow').parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def start_airflow(settings: Settings, port: int = DEFAULT_PORT, wait_s: float = 300) -> Airflow:
    """Start the scheduler, dag-processor, triggerer and api-server (no log servers) on the
    settings' root, each in its own process group with its log under the root's logs/;
    returns once the api-server answers. Fails, naming the port, if something holds it."""
    host = settings.airflow.api_host
    if processes.port_taken(host, port):
        raise WalkFailed(
            f"port {host}:{port} is taken (another Airflow UI?): stop it or pass --port"
        )
    env = airflow_parts_env(settings, port)
    airflow = str(executable("airflow"))
    pids = settings.root.airflow_home / "pids"
    started = Airflow(settings.root, port, env, [])
    try:
        for cmd in ui_commands(host):
            name = f"airflow-{cmd[0]}"
            started.running.append(
                processes.start(
                    name,
                    [airflow, *cmd],
                    env=env,
                    log=settings.root.logs / f"{name}.log",
                    pid_file=pids / f"{name}.pid",
                    port=port if cmd[0] == "api-server" else None,
                )
            )
        api = started.running[-1]
        processes.wait_until(api, lambda: _healthy(started.url), wait_s, f"api-server :{port}")
    except BaseException:
        started.stop()
        raise
    return started


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as resp:
        return resp.status == 200


def dag_ids(root: DataRoot) -> list[str]:
    """The DAGs of the dags folder (one per file, named as it)."""
    return sorted(p.stem for p in root.dags_folder().glob("*.py") if not p.stem.startswith("_"))


@contextlib.contextmanager
def _db(root: DataRoot) -> Iterator[sqlite3.Connection]:
    """Airflow's metadata DB, read-only (the scheduler writes it)."""
    path = (root.airflow_home / "airflow.db").resolve()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield con
    finally:
        con.close()


def stored_dags(root: DataRoot) -> dict[str, dict]:
    """dag_id -> {paused, stale} as the metadata DB holds them now."""
    with _db(root) as con:
        rows = con.execute("SELECT dag_id, is_paused, is_stale FROM dag").fetchall()
    return {d: {"paused": bool(p), "stale": bool(s)} for d, p, s in rows}


def dag_runs(root: DataRoot) -> list[DagRun]:
    """Every DAG run of the root, oldest first, with its tasks' states."""
    with _db(root) as con:
        runs = con.execute(
            "SELECT dag_id, run_id, run_type, logical_date, state, start_date, end_date, id "
            "FROM dag_run ORDER BY COALESCE(start_date, queued_at), id"
        ).fetchall()
        tis = con.execute(
            "SELECT dag_id, run_id, COALESCE(state, 'none'), COUNT(*) FROM task_instance "
            "GROUP BY dag_id, run_id, state"
        ).fetchall()
    tasks: dict[tuple[str, str], dict[str, int]] = {}
    for dag_id, run_id, state, n in tis:
        tasks.setdefault((dag_id, run_id), {})[state] = n
    out = []
    for dag_id, run_id, run_type, logical, state, start, end, _ in runs:
        seconds = None
        if start and end:
            seconds = (_ts(end) - _ts(start)).total_seconds()
        out.append(
            DagRun(
                dag_id,
                run_id,
                run_type,
                logical[:10] if logical else None,
                state,
                start,
                end,
                seconds,
                dict(sorted(tasks.get((dag_id, run_id), {}).items())),
            )
        )
    return out


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def failed_task_logs(root: DataRoot, run: DagRun) -> list[str]:
    """The failed (or upstream-failed) tasks of a run, each with its last attempt's log (a
    mapped task's under map_index=N)."""
    with _db(root) as con:
        rows = con.execute(
            "SELECT task_id, map_index, state, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND state IN ('failed', 'upstream_failed') "
            "ORDER BY task_id, map_index",
            (run.dag_id, run.run_id),
        ).fetchall()
    out = []
    folder = root.airflow_home / "logs" / f"dag_id={run.dag_id}" / f"run_id={run.run_id}"
    for task_id, map_index, state, tries in rows:
        task = folder / f"task_id={task_id}"
        if map_index is not None and map_index >= 0:
            task = task / f"map_index={map_index}"
        logs = sorted(task.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1]))
        where = logs[-1] if logs else f"no log under {task}"
        name = task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"
        out.append(f"{name} {state} (try {tries}): {where}")
    return out


def missing_scheduled(settings: Settings, runs: list[DagRun]) -> list[str]:
    """'dag ds' of each calendar day a scheduled DAG has no run for yet."""
    have = {(r.dag_id, r.logical_date) for r in runs}
    return [
        f"{dag_id} {ds}"
        for dag_id, days in SCHEDULED.items()
        for ds in days(settings)
        if (dag_id, ds) not in have
    ]


def format_runs(runs: list[DagRun]) -> str:
    """One line per DAG run: dag, run id, logical date, state, tasks, duration."""
    lines = [f"{'dag':<22} {'run id':<58} {'date':<10} {'state':<8} {'sec':>6}  tasks"]
    for r in runs:
        secs = f"{r.seconds:.0f}" if r.seconds is not None else "-"
        tasks = ", ".join(f"{k} {n}" for k, n in r.tasks.items())
        lines.append(
            f"{r.dag_id:<22} {r.run_id:<58} {r.logical_date or '-':<10} {r.state:<8} "
            f"{secs:>6}  {tasks}"
        )
    return "\n".join(lines)


def write_runs(settings: Settings, runs: list[DagRun], outcome: str, seconds: float) -> Path:
    path = settings.root.reports / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    payload = {
        "profile": settings.profile,
        "root": str(settings.home),
        "outcome": outcome,
        "walk_seconds": round(seconds, 1),
        "runs": [dataclasses.asdict(r) for r in runs],
    }
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def unpause_all(settings: Settings, airflow: Airflow, wait_s: float, echo) -> None:
    """Wait until the dag-processor has stored every DAG of the folder, then unpause them."""
    want = dag_ids(settings.root)
    deadline = time.monotonic() + wait_s
    while True:
        stored = {d for d, s in _safe(stored_dags, settings.root, {}).items() if not s["stale"]}
        if set(want) <= stored:
            break
        if exited := airflow.exited():
            raise WalkFailed(f"airflow {exited[0]} exited: see {settings.root.logs}")
        if time.monotonic() > deadline:
            missing = sorted(set(want) - stored)
            log = settings.root.logs / "airflow-dag-processor.log"
            raise WalkFailed(f"DAGs {missing} not parsed within {wait_s:.0f} s: see {log}")
        time.sleep(3)
    echo(f"{len(want)} DAGs parsed; unpausing them")
    pattern = "^(" + "|".join(want) + ")$"
    subprocess.run(
        [str(executable("airflow")), "dags", "unpause", "-y", "--treat-dag-id-as-regex", pattern],
        env=airflow.env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    paused = [d for d, s in stored_dags(settings.root).items() if d in want and s["paused"]]
    if paused:
        raise WalkFailed(f"DAGs still paused after `airflow dags unpause`: {paused}")


def _safe(fn, arg, default):
    """fn(arg), or `default` while the DB is not there or is locked."""
    try:
        return fn(arg)
    except sqlite3.Error:
        return default


def wait_for_calendar(
    settings: Settings, airflow: Airflow, timeout_s: float, quiet_s: float, echo
) -> list[DagRun]:
    """Poll the runs until every calendar run exists, all runs have ended and none was
    created or changed for `quiet_s`; echo each run's state changes. WalkFailed on a failed
    run, a part that exited, or `timeout_s`."""
    began = time.monotonic()
    seen: dict[str, str] = {}
    last_change = time.monotonic()
    last_status = 0.0
    while True:
        runs = _safe(dag_runs, settings.root, None)
        if runs is None:
            time.sleep(5)
            continue
        now = time.monotonic()
        for r in runs:
            key = f"{r.dag_id} {r.run_id}"
            if seen.get(key) != r.state:
                seen[key] = r.state
                last_change = now
                took = f" in {r.seconds:.0f}s" if r.seconds is not None else ""
                echo(
                    f"{time.strftime('%H:%M:%S')} {r.dag_id:<22} {r.logical_date or 'assets':<10}"
                    f" {r.state}{took}"
                )
        if failed := [r for r in runs if r.state == "failed"]:
            lines = [f"{r.dag_id} {r.run_id} failed" for r in failed]
            for r in failed:
                lines += ["  " + t for t in failed_task_logs(settings.root, r)]
            raise WalkFailed("\n".join(lines))
        if exited := airflow.exited():
            raise WalkFailed(f"airflow {exited[0]} exited: see {settings.root.logs}")
        missing = missing_scheduled(settings, runs)
        open_runs = [r for r in runs if r.state not in TERMINAL]
        if not missing and not open_runs and now - last_change >= quiet_s:
            return runs
        if now - began > timeout_s:
            raise WalkFailed(
                f"the calendar was not walked in {timeout_s / 60:.0f} min: "
                f"{len(open_runs)} runs not ended, no run yet for {missing or 'none'}"
            )
        if now - last_status >= 60:
            last_status = now
            ended = sum(r.state in TERMINAL for r in runs)
            echo(
                f"{time.strftime('%H:%M:%S')} ... {(now - began) / 60:.0f} min: "
                f"{ended}/{len(runs)} runs ended, running: "
                f"{', '.join(_name(r) for r in open_runs)}"
                f"{'; not yet scheduled: ' + ', '.join(missing) if missing else ''}"
            )
        time.sleep(5)


def _name(run: DagRun) -> str:
    return f"{run.dag_id} {run.logical_date}" if run.logical_date else run.dag_id


def demo_scheduler(
    settings: Settings,
    port: int = DEFAULT_PORT,
    timeout_s: float = 4 * 3600,
    quiet_s: float = 90,
    echo=print,
) -> int:
    """Walk the profile's calendar with Airflow's scheduler; 0 when every run succeeded."""
    settings.root.claim(settings.profile)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the parts as Ctrl-C
    began = time.monotonic()
    airflow = None
    runs: list[DagRun] = []
    outcome = "interrupted"
    try:
        echo(
            f"feedrank demo --scheduler, profile {settings.profile}, data root {settings.home}\n"
            f"Airflow's logs: {settings.root.logs}/airflow-*.log, task logs under "
            f"{settings.root.airflow_home / 'logs'}"
        )
        airflow = start_airflow(settings, port)
        echo(f"Airflow UI on {airflow.url} (login in {_logins(settings.root)})")
        unpause_all(settings, airflow, 600, echo)
        runs = wait_for_calendar(settings, airflow, timeout_s, quiet_s, echo)
        outcome = "success"
        return 0
    except (WalkFailed, processes.StackError) as err:
        outcome = "failed"
        echo(f"FAILED: {err}")
        return 1
    except KeyboardInterrupt:
        echo("interrupted: stopping Airflow")
        return 130
    except Exception as err:  # a bug or a broken DB: still stop every part, then say it
        outcome = "error"
        echo(f"ERROR: {type(err).__name__}: {err}")
        raise
    finally:
        if airflow is not None:
            airflow.stop()
        signal.signal(signal.SIGTERM, previous)
        runs = _safe(dag_runs, settings.root, runs)
        if runs:
            echo("\n" + format_runs(runs))
            path = write_runs(settings, runs, outcome, time.monotonic() - began)
            echo(f"\n{outcome}: {len(runs)} DAG runs in {(time.monotonic() - began) / 60:.1f} min")
            echo(f"the runs as JSON: {path}")


def _logins(root: DataRoot) -> Path:
    return root.airflow_home / "simple_auth_manager_passwords.json.generated"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
