"""Benchmark: FAISS indexes for retrieval: latency, recall@500 against exact, build time, memory.

    .venv/bin/python tests/benchmarks/bench_retrieval.py [--sizes 100000 1000000] [--threads 2]

Synthetic post vectors, dim 64, clustered like trained two-tower embeddings: 2,000 centres
(topic x author-style groups) drawn on the unit sphere, each post a centre plus isotropic noise
of norm ~0.6 (so a post's cosine to its centre is ~0.85), then L2-normalised; centre sizes are
Zipf-skewed (a few big topics). Queries (users) are drawn the same way from the same centres,
so their top-500 lie mostly in a few clusters, as real users' do. Exact (IndexFlatIP) gives
the reference top-500; each index's recall@500 is measured against it. Latency is the wall
time of one query at a time (single) and of 1,000 queries in one call divided by 1,000
(batched), with `--threads` OpenMP threads. Memory: the serialised index size and the process
peak RSS growth during the build. Prints a table; writes results/bench_retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import faiss
import numpy as np

from models.evaluation.metrics import recall_at_k
from models.retrieval.config import IndexSettings
from models.retrieval.index import make_index

RESULTS = Path(__file__).parent / "results"
DIM, K, CENTRES = 64, 500, 2000


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, weights) -> np.ndarray:
    which = rng.choice(len(centres), n, p=weights)
    noise = rng.normal(size=(n, DIM)).astype(np.float32) * (0.6 / math.sqrt(DIM))
    x = centres[which] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_search(index, queries: np.ndarray, n_single: int) -> tuple[float, float, np.ndarray]:
    """(ms per query one at a time, ms per query batched, batched ids)."""
    started = time.perf_counter()
    for q in queries[:n_single]:
        index.search(q[None, :], K)
    single = (time.perf_counter() - started) / n_single * 1000
    started = time.perf_counter()
    ids = index.search(queries, K)[1]
    batched = (time.perf_counter() - started) / len(queries) * 1000
    return single, batched, ids


def configs(n: int) -> list[tuple[str, str, IndexSettings, dict]]:
    nlist = int(4 * math.sqrt(n))
    out = [("flat", "flat", IndexSettings(), {})]
    for nprobe in (32, 64, 128, 256):
        cfg = IndexSettings(kind="ivf", nlist=nlist, nprobe=nprobe)
        out.append((f"ivf{nlist} nprobe={nprobe}", "ivf", cfg, {"nprobe": nprobe}))
    for ef in (500, 800, 1200):
        cfg = IndexSettings(kind="hnsw", hnsw_m=32, ef_construction=80, ef_search=ef)
        out.append((f"hnsw M=32 ef={ef}", "hnsw", cfg, {"ef": ef}))
    return out


def bench_size(n: int, threads: int, n_queries: int, n_single: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1 / np.arange(1, CENTRES + 1) ** 0.8
    weights /= weights.sum()
    posts = clustered(n, rng, centres, weights)
    queries = clustered(n_queries, rng, centres, weights)
    faiss.omp_set_num_threads(threads)
    rows, exact_ids, built = [], None, {}
    for label, kind, cfg, search in configs(n):
        cfg = cfg.model_copy(update={"threads": threads})
        key = (kind, cfg.nlist, cfg.hnsw_m)
        rss0 = peak_rss_mb()
        started = time.perf_counter()
        if key not in built:  # search settings share one built index
            built[key] = (make_index(posts, cfg, kind), time.perf_counter() - started)
        index, build_s = built[key]
        if kind == "ivf":
            index.nprobe = search["nprobe"]
        if kind == "hnsw":
            index.hnsw.efSearch = max(search["ef"], K)
        single, batched, ids = timed_search(index, queries, n_single)
        if exact_ids is None:
            exact_ids = ids
        row = {
            "posts": n,
            "index": label,
            "build_s": round(build_s, 2),
            "index_mb": round(faiss.serialize_index(index).nbytes / 2**20, 1),
            "peak_rss_growth_mb": round(peak_rss_mb() - rss0, 1),
            "ms_per_query_single": round(single, 3),
            "ms_per_query_batched": round(batched, 3),
            "recall_at_500": round(recall_at_k(ids, exact_ids), 4),
        }
        rows.append(row)
        print(" | ".join(str(v) for v in row.values()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        "posts | index | build_s | index_mb | peak_rss_growth_mb | ms/query single | "
        "ms/query batched | recall@500 vs exact"
    )
    rows = []
    for n in args.sizes:
        rows += bench_size(n, args.threads, args.queries, args.single, args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_retrieval.json"
    out.write_text(
        json.dumps({"threads": args.threads, "dim": DIM, "k": K, "rows": rows}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
