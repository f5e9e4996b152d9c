"""Benchmark: `feedrank ingest` of a real log, step by step (read, map, stage, validate, publish).

    .venv/bin/python tests/benchmarks/bench_ingest_log.py [--format mind] [--path tests/data/mind]

Ingests the log into a temporary data root as jobs/ingest_log.py does, timing each step, the
Spark session's and the GX context's start apart (a DAG worker pays them once), and the peak
RSS of this process (the Spark JVM is not counted). The contracts run with each engine of
`--engines` in turn on the same staged days (spark: GX's Spark jobs per expectation, as
before; pandas: each table's day collected once, the default). Prints a table and writes
tests/benchmarks/results/bench_ingest_log.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import time
from pathlib import Path

from jobs import ingest_log as job
from jobs.common import configure_logging
from jobs.settings import load_settings
from jobs.spark import get_spark
from warehouse.catalog import Layer
from warehouse.contracts.validate import _context
from warehouse.ingest.mapping import raw_days
from warehouse.store import Warehouse

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1] / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="mind", choices=("mind", "ebnerd", "raw"))
    parser.add_argument("--path", default=str(DATA / "mind"))
    parser.add_argument("--max-missing-share", type=float, default=0.05)
    parser.add_argument("--engines", default="pandas,spark", help="contracts engines, in order")
    args = parser.parse_args()
    configure_logging()
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(step: str):
        started = time.perf_counter()
        yield
        timings[step] = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="feedrank-bench-") as home:
        log = {"path": args.path, "max_missing_share": args.max_missing_share}
        settings = load_settings(args.format, {"home": home, "log": log})
        with timed("spark session and GX context"):
            get_spark(settings.spark)
            _context()
        with timed("read"):
            data = job.read(settings)
        with timed("map"):
            days, _ = raw_days(data, None, max_missing_share=args.max_missing_share)
        store = Warehouse(settings.root.warehouse)
        with contextlib.ExitStack() as locks:
            for ds in days:
                locks.enter_context(store.lock(Layer.RAW, ds, job=job.JOB))
            with timed("stage"):
                job.stage(store, days)
            for engine in args.engines.split(","):
                log_settings = settings.log.model_copy(update={"contracts_engine": engine})
                with timed(f"validate ({engine})"):
                    job.validate(
                        settings.model_copy(update={"log": log_settings}), store, sorted(days)
                    )
            with timed("publish"):
                job.publish(store, sorted(days))
    engines = args.engines.split(",")
    steps = [k for k in timings if not k.startswith(("spark", "validate"))]
    total = {e: sum(timings[k] for k in steps) + timings[f"validate ({e})"] for e in engines}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(f.stat().st_size for f in Path(args.path).rglob("*") if f.is_file())
    print("| step | seconds |\n|---|---|")
    for step, seconds in timings.items():
        print(f"| {step} | {seconds:.1f} |")
    for engine, seconds in total.items():
        print(f"| ingest with {engine} contracts (without the session) | {seconds:.1f} |")
    print(f"\n{len(days)} days, {data.requests.num_rows:,} requests, log {size / 1e6:.1f} MB, "
          f"peak RSS of the Python process {peak_mib:.0f} MiB")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = {
        "format": args.format,
        "path": args.path,
        "days": len(days),
        "requests": data.requests.num_rows,
        "log_bytes": size,
        "seconds": timings,
        "ingest_s": total,
        "peak_rss_mib": peak_mib,
    }
    (RESULTS / "bench_ingest_log.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
