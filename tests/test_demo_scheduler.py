"""`feedrank demo --scheduler` (jobs/demo_scheduler.py) without Airflow running: what it reads
from a metadata DB, when the walk is over or failed, and what it refuses.

The walk itself (the scheduler building tiny's calendar) takes most of an hour on 2 cores:
`make scheduler-check` runs it and compares its outputs with `feedrank demo`'s."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest

from jobs import demo_scheduler as ds
from jobs.settings import load_settings

SCHEMA = """
CREATE TABLE dag (dag_id TEXT PRIMARY KEY, is_paused BOOLEAN, is_stale BOOLEAN);
CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, run_id TEXT, run_type TEXT,
    logical_date TIMESTAMP, state TEXT, queued_at TIMESTAMP, start_date TIMESTAMP,
    end_date TIMESTAMP);
CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, state TEXT,
    try_number INTEGER, map_index INTEGER DEFAULT -1);
"""


@pytest.fixture
def settings(tmp_path):
    s = load_settings("tiny", {"home": str(tmp_path / "root")})
    s.root.ensure()
    return s


def _db(settings, runs, tasks=()):
    con = sqlite3.connect(settings.root.airflow_home / "airflow.db")
    con.executescript(SCHEMA)
    con.executemany(
        "INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, state, queued_at, "
        "start_date, end_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        runs,
    )
    con.executemany(
        "INSERT INTO task_instance (dag_id, run_id, task_id, state, try_number, map_index) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(*t, -1) if len(t) == 5 else t for t in tasks],
    )
    con.commit()
    con.close()


def _scheduled(dag_id, day, state="success", start="2026-12-07 04:00:00.000000", secs=30):
    end = f"2026-12-07 04:00:{secs:02d}.500000" if state in ds.TERMINAL else None
    return (
        dag_id,
        f"scheduled__{day}T00:00:00+00:00",
        "scheduled",
        f"{day} 00:00:00.000000",
        state,
        start,
        start,
        end,
    )


def _calendar_runs(settings, state="success"):
    return [_scheduled(d, day, state) for d, pick in ds.SCHEDULED.items() for day in pick(settings)]


class FakeAirflow:
    def exited(self):
        return []


def test_runs_are_read_with_their_tasks_and_durations(settings):
    runs = [
        _scheduled("simulate_platform", "2026-01-05"),
        (
            "build_features",
            "asset_triggered__x",
            "asset_triggered",
            None,
            "success",
            "2026-12-07 04:01:00",
            "2026-12-07 04:01:00",
            "2026-12-07 04:03:00.250000",
        ),
    ]
    tasks = [("simulate_platform", runs[0][1], t, "success", 1) for t in ("inputs", "simulate")] + [
        ("build_features", "asset_triggered__x", "features", "skipped", 1)
    ]
    _db(settings, runs, tasks)
    got = ds.dag_runs(settings.root)
    assert [(r.dag_id, r.logical_date, r.state) for r in got] == [
        ("simulate_platform", "2026-01-05", "success"),
        ("build_features", None, "success"),
    ]
    assert got[0].seconds == pytest.approx(30.5) and got[1].seconds == pytest.approx(120.25)
    assert got[0].tasks == {"success": 2} and got[1].tasks == {"skipped": 1}
    table = ds.format_runs(got).splitlines()
    assert len(table) == 3 and "build_features" in table[2] and "skipped 1" in table[2]


def test_the_walk_waits_for_every_calendar_day_of_the_scheduled_dags(settings):
    _db(settings, [_scheduled("simulate_platform", "2026-01-05")])
    missing = ds.missing_scheduled(settings, ds.dag_runs(settings.root))
    days = settings.dates()
    assert missing == [f"simulate_platform {d}" for d in days[1:]] + [
        "train_rankers 2026-01-08",
        "train_retrieval 2026-01-08",
    ]
    with pytest.raises(ds.WalkFailed, match="not walked in 0 min"):
        ds.wait_for_calendar(settings, FakeAirflow(), timeout_s=0, quiet_s=0, echo=lambda _: 0)


def test_the_walk_is_over_when_every_run_ended(settings):
    _db(settings, _calendar_runs(settings))
    lines = []
    runs = ds.wait_for_calendar(settings, FakeAirflow(), 60, quiet_s=0, echo=lines.append)
    assert len(runs) == len(settings.dates()) + 2
    assert all(r.state == "success" for r in runs)
    assert len(lines) == len(runs)  # one line per run's state


def test_a_failed_run_fails_the_walk_naming_its_task_and_log(settings):
    runs = _calendar_runs(settings)
    runs[1] = _scheduled("simulate_platform", settings.dates()[1], "failed")
    run_id = runs[1][1]
    tasks = [
        ("simulate_platform", run_id, "simulate", "failed", 2),
        ("simulate_platform", run_id, "register", "failed", 10, 1),  # a mapped task
    ]
    _db(settings, runs, tasks)
    folder = settings.root.airflow_home / "logs/dag_id=simulate_platform" / f"run_id={run_id}"
    log = folder / "task_id=simulate/attempt=2.log"
    mapped = folder / "task_id=register/map_index=1/attempt=10.log"
    for path in (log, mapped, mapped.with_name("attempt=9.log")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("boom\n")
    with pytest.raises(ds.WalkFailed) as err:
        ds.wait_for_calendar(settings, FakeAirflow(), 60, quiet_s=0, echo=lambda _: 0)
    assert f"simulate_platform {run_id} failed" in str(err.value)
    assert f"simulate failed (try 2): {log}" in str(err.value)
    assert f"register[1] failed (try 10): {mapped}" in str(err.value)


def test_a_taken_port_is_refused_before_anything_starts(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        lines = []
        assert ds.demo_scheduler(settings, port=port, echo=lines.append) == 1
    assert any(f"port 127.0.0.1:{port} is taken" in line for line in lines)
    assert not list(settings.root.logs.glob("airflow-*.log"))  # nothing was started


def test_the_table_is_written_as_json(settings):
    _db(settings, _calendar_runs(settings))
    path = ds.write_runs(settings, ds.dag_runs(settings.root), "success", 12.34)
    data = json.loads(path.read_text())
    assert path == settings.root.reports / ds.RESULT_FILE
    assert data["outcome"] == "success" and data["walk_seconds"] == 12.3
    assert {r["dag_id"] for r in data["runs"]} == set(ds.SCHEDULED)
