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
import dataclasses
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
from warehouse.catalog import Layer  # noqa: E402
from warehouse.digest import column_differences, compare, producer_table, published_digests  # noqa: E402
from warehouse.layout import DataRoot  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

JOBS = ("simulate_platform", "build_features")
# A table-day whose bytes differ passes when every float differs by at most this, relative:
# a sum of doubles depends on the order its terms arrive in, which a shuffle between
# executors does not fix (a few ulps, ~1e-16); anything else must be identical.
REL_TOL = 1e-12


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
    a = published_digests(Warehouse(DataRoot(base / "embedded").warehouse))
    b = published_digests(Warehouse(DataRoot(base / "cluster").warehouse))
    differences = compare(a, b)
    print(
        f"days {days[0]} .. {days[-1]}; embedded (local[2]) {embedded_s:.0f} s, "
        f"cluster ({master}) {cluster_s:.0f} s; jobs' log {log}"
    )
    print(f"{'layer/table/ds':<60} {'rows':>8}  sha256 (first 16)  equal")
    for key in sorted(a.keys() | b.keys()):
        d = a.get(key) or b[key]
        print(f"{key:<60} {d.rows:>8}  {d.sha256[:16]}  {a.get(key) == b.get(key)}")
    beyond, columns = [], {}
    for line in differences:
        key = line.split(":")[0]
        if key not in a or key not in b:
            beyond.append(line)
            continue
        layer, name, ds = key.split("/")
        tab = producer_table(name, Layer(layer))
        wa, wb = (Warehouse(DataRoot(base / r).warehouse) for r in ("embedded", "cluster"))
        diffs = column_differences(
            wa.read_arrow(tab, ds[3:]), wb.read_arrow(tab, ds[3:]), tab.key or ("impression_id",)
        )
        columns[key] = [dataclasses.asdict(d) for d in diffs]
        for d in diffs:
            within = d.max_rel is not None and d.max_rel <= REL_TOL
            print(
                f"  {key}: {d.column}: {d.rows} rows differ, max abs {d.max_abs}, "
                f"max rel {d.max_rel} ({'within' if within else 'BEYOND'} {REL_TOL:g})"
            )
            if not within:
                beyond.append(f"{key}: {d.column}")
    result = {
        "days": days,
        "master": master,
        "embedded_s": round(embedded_s, 1),
        "cluster_s": round(cluster_s, 1),
        "table_days": len(a),
        "bytes_differ": differences,
        "columns_differ": columns,
        "beyond_tolerance": beyond,
        "rel_tol": REL_TOL,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(
        f"{len(a)} table-days compared: {len(a) - len(differences)} bit-identical, "
        f"{len(differences)} not, {len(beyond)} beyond the tolerance"
    )
    return 1 if beyond else 0


if __name__ == "__main__":
    sys.exit(main())
