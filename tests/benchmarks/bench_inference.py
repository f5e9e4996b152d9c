"""Benchmark: scoring one feed request (500 candidates) on CPU, per scorer and thread count.

    .venv/bin/python tests/benchmarks/bench_inference.py [--requests 1000] [--threads 1 2]
    .venv/bin/python tests/benchmarks/bench_inference.py --ranker-folder PATH  # a saved Ranker

A request is 500 candidate rows of one viewer as the feed precompute hands them to scoring:
an Arrow table of feature rows (inference_data: heavy-tailed counts, the viewer's columns
repeated, categories with missing values). Each scorer is timed per request over
--requests requests (p50, p99, mean; after warm-up requests) and on one bulk table of
--bulk-rows rows (rows/s), at each --threads (OpenMP and torch thread limits).

Scorers (SCORERS; each factory returns rows, or a note saying why it has none):
  gbdt predict      Ranker.predict(feature_frame(table)): the precompute's call, all 7 models
  gbdt boosters     the 7 boosters alone on the model matrix (no pandas)
  gbdt compiled     models.ranking.compiled, when adopted and importable
  dnn eager/export  models.ranking.dnn.ranker, when it exists and --dnn-folder holds a saved
  DnnRanker

The ranker: --ranker-folder when it holds one (Ranker.save's ranker.json); else one is
trained by models.ranking.gbdt.fit_ranker on synthetic examples (150k impressions, 63 leaves,
learning rate 0.02, early stopping within 600 rounds: hundreds of trees per task) and saved
there for the next run. The goal (issue 12): the champion at <= 5 ms p99 on one thread.
Latencies depend on the machine's load: the load average is printed with every row.
Prints a table; writes tests/benchmarks/results/bench_inference.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from inference_data import examples, requests
from threadpoolctl import threadpool_limits

from jobs.common import configure_logging
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import feature_frame
from models.ranking.gbdt import Ranker, fit_ranker
from warehouse.layout import Folder

RESULTS = Path(__file__).parent / "results"
REQUEST_ROWS = 500
WARMUP = 20
POOL = 50  # distinct requests, cycled through


@dataclasses.dataclass(frozen=True)
class Scorer:
    """One row of the table: `prepare` (untimed) turns a request into the scorer's input,
    `score` (timed) scores it."""

    name: str
    score: Callable[[Any], Any]
    prepare: Callable[[pa.Table], Any] = lambda table: table


Factory = Callable[[argparse.Namespace, Ranker, int], "list[Scorer] | str"]


def predict_and_boosters(name: str, ranker: Ranker) -> list[Scorer]:
    """`<name> predict`, the precompute's call, and `<name> boosters`, the trees alone on the
    model matrix (no pandas), of a Ranker or a CompiledRanker."""
    return [
        Scorer(f"{name} predict", lambda t: ranker.predict(feature_frame(t))),
        Scorer(
            f"{name} boosters",
            ranker.task_outputs,
            prepare=lambda t: ranker.model_matrix(feature_frame(t)),
        ),
    ]


def gbdt_scorers(args: argparse.Namespace, ranker: Ranker, threads: int) -> list[Scorer]:
    return predict_and_boosters("gbdt", ranker)


def compiled_scorers(args: argparse.Namespace, ranker: Ranker, threads: int) -> list[Scorer] | str:
    if importlib.util.find_spec("models.ranking.compiled") is None:
        return "gbdt compiled: models.ranking.compiled absent (no compiled GBDT adopted)"
    if args.only and not any(name.startswith("gbdt compiled") for name in args.only):
        return "gbdt compiled: not in --only"
    from models.ranking.compiled import CompiledRanker

    started = time.perf_counter()
    folder = Folder(Path(args.ranker_folder) / "compiled")  # reused by the next run
    compiled = CompiledRanker.compile(ranker, folder, threads=threads)
    print(f"gbdt compiled: ready in {time.perf_counter() - started:.0f} s")
    return predict_and_boosters("gbdt compiled", compiled)


def dnn_scorers(args: argparse.Namespace, ranker: Ranker, threads: int) -> list[Scorer] | str:
    """DnnRanker has Ranker's interface (load, predict); `engine="onnx"` scores through the
    exported graph it saved (dnn.onnx) with onnxruntime."""
    if not args.dnn_folder:
        return "dnn eager, dnn exported: no --dnn-folder (a saved DnnRanker)"
    from models.ranking.dnn.ranker import DnnRanker

    dnn = DnnRanker.load(Folder(Path(args.dnn_folder)))
    return [
        Scorer("dnn eager", lambda t: dnn.predict(feature_frame(t))),
        Scorer("dnn exported", lambda t: dnn.predict(feature_frame(t), engine="onnx")),
    ]


SCORERS: list[Factory] = [gbdt_scorers, compiled_scorers, dnn_scorers]


@contextlib.contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """OpenMP/BLAS pools (LightGBM, numpy) and torch's intra-op pool at n threads."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    with threadpool_limits(limits=n):
        if torch:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch:
                torch.set_num_threads(before)


def load_or_train(folder: Path) -> Ranker:
    if (folder / "ranker.json").exists():
        return Ranker.load(Folder(folder))
    print(f"training a ranker into {folder} (once; later runs load it)")
    rng = np.random.default_rng(1)
    train, val = examples(rng, 3000, 50), examples(rng, 600, 50)
    gbdt = GbdtSettings(
        learning_rate=0.02,
        min_child_samples=20,
        max_rounds=600,
        early_stopping_rounds=600,
        num_threads=1,  # OpenMP threads spin against each other on a shared machine
    )
    ranker, _ = fit_ranker(train, val, TrainingSettings(negative_rate=0.5, gbdt=gbdt))
    return Ranker.load(ranker.save(Folder(folder)))


def latency(scorer: Scorer, pool: list[pa.Table], n: int) -> dict:
    inputs = [scorer.prepare(t) for t in pool]
    for i in range(WARMUP):
        scorer.score(inputs[i % len(inputs)])
    seconds = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        scorer.score(inputs[i % len(inputs)])
        seconds[i] = time.perf_counter() - started
    ms = seconds * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def bulk(scorer: Scorer, table: pa.Table) -> float:
    """Rows per second on one large table, the best of 3 (prepare untimed)."""
    data = scorer.prepare(table)
    best = min(_timed(lambda: scorer.score(data)) for _ in range(3))
    return table.num_rows / best


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per row")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bulk-rows", type=int, default=100_000)
    parser.add_argument(
        "--ranker-folder",
        default=str(RESULTS / "bench_inference_ranker"),
        help="a saved Ranker (Ranker.save); trained and saved there when it holds none",
    )
    parser.add_argument(
        "--dnn-folder", help="a saved DnnRanker (models.ranking.dnn.ranker), for the DNN rows"
    )
    parser.add_argument("--only", nargs="+", help="scorer names to run (default: all)")
    parser.add_argument("--out", default=str(RESULTS / "bench_inference.json"))
    args = parser.parse_args(argv)
    configure_logging()
    ranker = load_or_train(Path(args.ranker_folder))
    trees = {task: b.num_trees() for task, b in ranker.boosters.items()}
    print(f"ranker: {sum(trees.values())} trees {trees}, {len(ranker.features)} features")
    rng = np.random.default_rng(5)
    pool = requests(rng, POOL, REQUEST_ROWS)
    table = pa.concat_tables(requests(rng, -(-args.bulk_rows // REQUEST_ROWS), REQUEST_ROWS))
    results = []
    for n in args.threads:
        with thread_limit(n):
            scorers = _scorers(args, ranker, n)
            # As a serving process does once its models are loaded: what exists now is never
            # garbage, and a full collection walking it made 1% of GBDT requests 2-3x slower.
            gc.collect()
            gc.freeze()
            for scorer in scorers:
                row = {"scorer": scorer.name, "threads": n, "requests": args.requests}
                row |= latency(scorer, pool, args.requests)
                row["bulk_rows_per_s"] = bulk(scorer, table)
                row["load_avg_1m"] = os.getloadavg()[0]
                results.append(row)
                print(_line(row), flush=True)
    print()
    print(f"{REQUEST_ROWS} candidates per request, {args.requests} requests, {os.cpu_count()} CPUs")
    print(_header())
    print("\n".join(_line(r) for r in results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"rows_per_request": REQUEST_ROWS, "trees": trees, "cpus": os.cpu_count()}
    out.write_text(json.dumps(meta | {"results": results}, indent=2))
    print(f"wrote {out}")
    return 0


def _scorers(args: argparse.Namespace, ranker: Ranker, threads: int) -> list[Scorer]:
    scorers: list[Scorer] = []
    for factory in SCORERS:
        made = factory(args, ranker, threads)
        if isinstance(made, str):
            print(f"not run: {made}")
        else:
            scorers += [s for s in made if not args.only or s.name in args.only]
    return scorers


def _header() -> str:
    return (
        f"{'scorer':<24} {'thr':>3} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
        f"{'bulk rows/s':>12} {'load 1m':>8}"
    )


def _line(r: dict) -> str:
    return (
        f"{r['scorer']:<24} {r['threads']:>3} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
        f"{r['mean_ms']:8.2f} {r['bulk_rows_per_s']:12,.0f} {r['load_avg_1m']:8.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
