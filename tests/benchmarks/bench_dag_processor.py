"""The dag-processor under a CPU-bound neighbour: no DAG killed, none deactivated.

    python tests/benchmarks/bench_dag_processor.py [--minutes 30] [--home ROOT]
    python tests/benchmarks/bench_dag_processor.py --attach ROOT   # parts already running

Starts Airflow's parts (as `feedrank airflow-ui`: scheduler, dag-processor, triggerer,
api-server) on a tiny root with the DAGs (default: a fresh root under
tests/benchmarks/results/), or, with --attach, watches the parts already running on ROOT (e.g.
a `feedrank demo --scheduler` walking the calendar: the walk plus the neighbour). Then runs
`--neighbours` (default: one per core) `while 1: pass` processes at normal priority for
`--minutes`, and every `--every` seconds reads from Airflow's metadata DB which DAGs are
listed (not stale, no import error) and when each file was last parsed and how long it took.
At the end it counts, in the dag-processor's log since the start, the parses killed for the
processor timeout ("exceeding the timeout ... Killing it") and the DAGs deactivated
("Deactivating stale DAG"), prints a table per DAG and writes JSON under
tests/benchmarks/results/. Exit 1 when a parse was killed, a DAG deactivated or missing from
the list at any sample.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.demo_scheduler import dag_ids, start_airflow  # noqa: E402
from jobs.processes import free_port  # noqa: E402
from jobs.settings import load_settings  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results"
KILLED = re.compile(r"exceeding the timeout.*Killing it", re.IGNORECASE)
DEACTIVATED = re.compile(r"Deactivating (stale DAG|Dag)|Deactivated \d+ DAGs", re.IGNORECASE)
PROCESSOR_LOG = "airflow-dag-processor.log"


def sample(db: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(
            "SELECT dag_id, is_stale, COALESCE(has_import_errors, 0), last_parsed_time, "
            "last_parse_duration FROM dag"
        ).fetchall()
    finally:
        con.close()


def neighbours(n: int) -> list[subprocess.Popen]:
    """n CPU-bound processes at our priority (run this at normal priority, as `make` does)."""
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--neighbours", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--home", type=Path, help="the tiny root to start Airflow on")
    parser.add_argument("--attach", type=Path, help="a root whose Airflow parts already run")
    parser.add_argument("--json", type=Path, default=RESULTS / "dag_processor.json")
    args = parser.parse_args(argv)
    home = args.attach or args.home or RESULTS / "dag-processor-root"
    settings = load_settings("tiny", {"home": str(home)})
    settings.root.claim(settings.profile)
    db = (settings.root.airflow_home / "airflow.db").resolve()
    log = settings.root.logs / PROCESSOR_LOG
    airflow = None
    if not args.attach:
        airflow = start_airflow(settings, free_port())
    offset = log.stat().st_size if log.exists() else 0
    expected = dag_ids(settings.root)
    samples, loads = [], []
    began = time.monotonic()
    busy = neighbours(args.neighbours)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while time.monotonic() - began < args.minutes * 60:
            if airflow and (gone := airflow.exited()):
                raise SystemExit(f"airflow {gone[0]} exited: see {settings.root.logs}")
            load = os.getloadavg()[0]
            try:
                rows = sample(db)
            except sqlite3.Error as err:  # locked for longer than 30 s: note it, go on
                rows = []
                print(f"{time.strftime('%H:%M:%S')} DB not readable: {err}")
            listed = sorted(d for d, stale, errors, *_ in rows if not stale and not errors)
            samples.append({"t": round(time.monotonic() - began), "load1": load, "rows": rows})
            loads.append(load)
            print(
                f"{time.strftime('%H:%M:%S')} {len(listed)}/{len(expected)} DAGs listed, "
                f"load {load:.1f}"
            )
            time.sleep(args.every)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        if airflow:
            airflow.stop()
    text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
    killed = [line for line in text.splitlines() if KILLED.search(line)]
    deactivated = [line for line in text.splitlines() if DEACTIVATED.search(line)]
    per_dag = {}
    for dag in expected:
        parses = {
            (r[3], r[4]) for s in samples for r in s["rows"] if r[0] == dag and r[3] is not None
        }
        durations = sorted(d for _, d in parses if d is not None)
        missing = sum(
            1 for s in samples if not any(r[0] == dag and not r[1] and not r[2] for r in s["rows"])
        )
        per_dag[dag] = {
            "parses_seen": len(parses),
            "parse_s_median": round(statistics.median(durations), 2) if durations else None,
            "parse_s_max": round(max(durations), 2) if durations else None,
            "samples_not_listed": missing,
        }
    print(f"\n{'dag':<24} {'parses':>6} {'median s':>9} {'max s':>7} {'not listed':>11}")
    for dag, r in per_dag.items():
        print(
            f"{dag:<24} {r['parses_seen']:>6} {r['parse_s_median'] or '-':>9} "
            f"{r['parse_s_max'] or '-':>7} {r['samples_not_listed']:>11}"
        )
    ld = sorted(loads)
    print(
        f"\n{args.minutes:g} min, {args.neighbours} CPU-bound neighbours, {len(samples)} samples;"
        f" load average (1 min) min {ld[0]:.1f}, median {statistics.median(ld):.1f}, "
        f"max {ld[-1]:.1f}"
    )
    print(f"parses killed for the timeout: {len(killed)}; DAGs deactivated: {len(deactivated)}")
    for line in (killed + deactivated)[:20]:
        print("  " + line[:200])
    result = {
        "root": str(home),
        "attached": bool(args.attach),
        "minutes": args.minutes,
        "neighbours": args.neighbours,
        "cpu_count": os.cpu_count(),
        "samples": len(samples),
        "load1": {"min": ld[0], "median": statistics.median(ld), "max": ld[-1]},
        "killed": killed,
        "deactivated": deactivated,
        "dags": per_dag,
        "listed_over_time": [
            {
                "t": s["t"],
                "load1": s["load1"],
                "listed": sum(1 for r in s["rows"] if not r[1] and not r[2]),
            }
            for s in samples
        ],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"JSON: {args.json}")
    bad = killed or deactivated or any(r["samples_not_listed"] for r in per_dag.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
