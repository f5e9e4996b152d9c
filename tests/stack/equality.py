"""The same jobs on the local Spark and on a standalone cluster give the same warehouse.

    python tests/stack/equality.py --days 2                    # its own cluster, then down
    python tests/stack/equality.py --days 2 --master spark://127.0.0.1:7077

Runs tiny's `simulate_platform` and `build_features` for the first `--days` days twice, each
job a process of its own (as spark-submit would run it): into an embedded root (the
profile's local[2]) and into a cluster root (FEEDRANK__SPARK__MASTER). Then it compares the
published content of every (layer, table, ds) of the two roots (warehouse.digest: rows
sorted, values exact) and prints one line per table-day and the time of each run; exit 1 on
any difference. Without --master it brings up the stack's Spark group (master + 2 workers of
1 core) in a root of its own and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.processes import free_port  # noqa: E402
from jobs.settings import load_settings  # noqa: E402
from jobs.stack import Stack  # noqa: E402
from tests.stack.compare import REL_TOL, compare_roots  # noqa: E402
from warehouse.layout import DataRoot  # noqa: E402

JOBS = ("simulate_platform", "build_features")


def run_jobs(home: Path, days: list[str], extra_env: dict[str, str], log: Path) -> float:
    """Each job over the days, in its own process; returns the seconds they took."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
    env.update({"FEEDRANK_HOME": str(home), "FEEDRANK_PROFILE": "tiny", **extra_env})
    env["PYTHONPATH"] = str(ROOT)
    began = time.monotonic()
    with log.open("ab") as out:
        for job in JOBS:
            argv = [sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--profile", "tiny"]
            argv += ["--from", days[0], "--to", days[-1]]
            done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"{job} failed on {home} (exit {done.returncode}): see {log}")
    return time.monotonic() - began


def spark_stack(home: Path) -> Stack:
    """The stack's Spark group on free ports, in a root of its own."""
    ports = {
        "spark_master_port": free_port(),
        "spark_ui_port": free_port(),
        "spark_worker_port": free_port(),
    }
    cfg = load_settings("tiny", {"home": str(home), "stack": ports}).stack
    return Stack(DataRoot(home), cfg, "tiny")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2, help="tiny's first N days")
    parser.add_argument("--master", help="a running cluster (default: start one)")
    parser.add_argument("--base", type=Path, help="where the roots go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the result here too")
    parser.add_argument(
        "--compare-only", action="store_true", help="compare the roots already in --base"
    )
    args = parser.parse_args(argv)
    base = args.base or Path(tempfile.mkdtemp(prefix="feedrank-equality-"))
    base.mkdir(parents=True, exist_ok=True)
    days = load_settings("tiny", {"home": str(base / "embedded")}).dates()[: args.days]
    log = base / "jobs.log"
    stack, embedded_s, cluster_s = None, 0.0, 0.0
    if args.compare_only:
        args.master = args.master or "(earlier run)"
    elif args.master is None:
        stack = spark_stack(base / "cluster-stack")
        stack.up(("spark",))
    master = args.master or stack.spark_url
    try:
        if not args.compare_only:
            embedded_s = run_jobs(base / "embedded", days, {}, log)
            cluster_env = {"FEEDRANK__SPARK__MASTER": master, "SPARK_LOCAL_IP": "127.0.0.1"}
            cluster_s = run_jobs(base / "cluster", days, cluster_env, log)
    finally:
        if stack is not None:
            stack.down()
    cmp = compare_roots(base / "embedded", base / "cluster")
    print(
        f"days {days[0]} .. {days[-1]}; embedded (local[2]) {embedded_s:.0f} s, "
        f"cluster ({master}) {cluster_s:.0f} s; jobs' log {log}"
    )
    print(f"{'layer/table/ds':<60} {'rows':>8}  bit-identical")
    for key in cmp.both:
        print(f"{key:<60} {cmp.rows[key]:>8}  {key in cmp.identical}")
    for key in cmp.only_first + cmp.only_second:
        print(f"{key}: in one root only")
    result = {
        "days": days,
        "master": master,
        "embedded_s": round(embedded_s, 1),
        "cluster_s": round(cluster_s, 1),
        "table_days": len(cmp.both),
        "bit_identical": len(cmp.identical),
        "columns_differ": cmp.columns,
        "beyond_tolerance": cmp.beyond,
        "in_one_root_only": cmp.only_first + cmp.only_second,
        "rel_tol": REL_TOL,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(
        f"{len(cmp.both)} table-days compared: {len(cmp.identical)} bit-identical, "
        f"{len(cmp.beyond)} beyond the tolerance"
    )
    return 1 if cmp.beyond or cmp.only_first or cmp.only_second else 0


if __name__ == "__main__":
    sys.exit(main())
