"""Benchmark: the feed precompute's throughput per stage, at 1x and 2x the (user, generation)
pairs, with peak memory.

    .venv/bin/python tests/benchmarks/bench_precompute.py [--profile demo] [--ds 2026-01-17]

Needs a data root where the precompute can run for ds (what `make demo` leaves): logs and
features up to ds, a champion ranker and the day's retrieval index. Stages:
  candidates  jobs.precompute_feeds.candidates (reads logs, the index; writes the table)
  features    serving-time features of every candidate
  scoring     the champion ranker per Spark worker
  rerank      the re-ranker per user
  write       the feeds as Parquet
Each stage's input is persisted on local disk first, so each is computed once and timed
alone (the cache's own writes count in the stage that fills it). 2x doubles
the candidate rows by generating every feed twice (generated_at and 1 us later: the same
as_of), which doubles the per-pair work; per-user work is shared; candidate selection is
timed at 1x only (2x copies its output). Peak memory is the largest
resident size of this process, the JVM and the Python workers together, sampled every 0.2 s
(Spark's own page cache of the persisted stages is not resident memory).
The moonshot (issue 13): 1,000 users/s with 500 candidates each on 2 cores.
Prints a table; writes tests/benchmarks/results/bench_precompute.json.

    .venv/bin/python tests/benchmarks/bench_precompute.py --synthetic 1000 --label after

`--synthetic USERS` needs no data root: the stages of issue 26 on synthetic candidates
(tests/benchmarks/inference_data.py, `--candidates` per user) in a local[2] session, at 1x
and 2x USERS, after a warm-up pass on 50 users (workers started, shipped files loaded): the
interest search (the day's index searched on the driver, as before, and in the workers,
where the code has it), scoring (a GBDT of demo's size, compiled where the code compiles
it; the compile, once per version, is timed apart) and the re-rank. The same file runs
against an older checkout (PYTHONPATH=<checkout>) for a before/after table; it writes
results/bench_precompute_synthetic_<label>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from inference_data import examples, requests
from pyspark import StorageLevel
from pyspark.sql import functions as F

import jobs.precompute_feeds as job
from jobs.common import configure_logging, use_tracking
from jobs.settings import load_settings
from jobs.spark import SparkSettings, get_spark
from models.feed.config import RerankSettings
from models.feed.scoring import rerank_feeds, score_candidates
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.gbdt import fit_ranker
from models.registry import versions as reg
from models.retrieval.config import IndexSettings
from models.retrieval.index import make_index
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import FEED_CANDIDATES, IMPRESSION_FEATURES, C
from warehouse.layout import Folder
from warehouse.store import Warehouse

RESULTS = Path(__file__).parent / "results"


class PeakMemory:
    """Largest summed RSS of this process and its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every_s)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(settings, ds: str, copies: int) -> dict:
    """Each stage once, its input cached on disk, so that a stage's time is its own."""
    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    t0 = time.perf_counter()
    cands = job.candidates(settings, ds)
    t_cand = time.perf_counter() - t0
    at = dt.datetime.fromisoformat(cands.generated_at)
    table = store.read_spark(spark, FEED_CANDIDATES, ds).drop(C.DS)
    copies_df = [
        table.withColumn(C.GENERATED_AT, F.lit(at + dt.timedelta(microseconds=i)).cast("timestamp"))
        for i in range(copies)
    ]
    table = copies_df[0]
    for extra in copies_df[1:]:
        table = table.unionByName(extra)
    table = table.persist(StorageLevel.DISK_ONLY)
    rows = table.count()
    feats = job.serving_frame(
        spark, store, settings.first_day, settings.features, ds, table, at
    ).persist(StorageLevel.DISK_ONLY)
    p = settings.precompute
    with (
        job.shipped_champion(spark, settings) as (_, ranker_file),
        settings.root.scratch("bench") as out,
    ):
        t_feat = _timed(feats.count)
        scored = score_candidates(feats, ranker_file).persist(StorageLevel.DISK_ONLY)
        t_score = _timed(scored.count)
        sources = table.select(C.USER_ID, C.POST_ID, C.SOURCES)
        feeds = rerank_feeds(scored, sources, p.rerank, p.feed_size)
        feeds = feeds.persist(StorageLevel.DISK_ONLY)
        t_rerank = _timed(feeds.count)
        t_write = _timed(lambda: feeds.write.parquet(str(out.path / "feeds")))
        for df in (feeds, scored, feats, table):
            df.unpersist()
    stages = {
        # 2x copies one generation's candidates, selected once: not a 2x selection.
        "candidates": t_cand if copies == 1 else float("nan"),
        "features": t_feat,
        "scoring": t_score,
        "rerank": t_rerank,
        "write": t_write,
    }
    return {"copies": copies, "users": cands.users * copies, "rows": rows, "stages_s": stages}


# --- synthetic: the stages of issue 26 without a data root -----------------------------------

DIM, POSTS = 32, 60_000  # the interest index: demo's tower width and a pool above flat_max


def _ranker(cache: Path):
    """A GBDT of demo's size (7 tasks, about 950 trees), trained once into `cache`, and the
    file name it is shipped under: compiled (once, timed) where the code compiles."""
    folder = Folder(cache / "ranker")
    if not folder.file("ranker.json").exists():
        rng = np.random.default_rng(1)
        gbdt = GbdtSettings(max_rounds=136, early_stopping_rounds=136, num_threads=1)
        train, val = examples(rng, 3000, 50), examples(rng, 600, 50)
        fit_ranker(train, val, TrainingSettings(negative_rate=0.5, gbdt=gbdt))[0].save(folder)
    try:
        from models.ranking.compiled import compile_saved
    except ImportError:  # the code before: LightGBM in the workers
        return folder, None
    return folder, _timed(lambda: compile_saved(folder))


def _candidates(spark, users: int, per_user: int, cache: Path):
    """Candidate feature rows (Parquet, read back as Spark reads a table) and their sources;
    authors from a few hundred, so that a user's list repeats authors as feeds do."""
    path = cache / f"candidates-{users}x{per_user}.parquet"
    if not path.exists():
        rng = np.random.default_rng(users)
        table = pa.concat_tables(requests(rng, users, per_user))
        n = table.num_rows
        table = table.set_column(
            table.schema.get_field_index(C.POST_ID), C.POST_ID, pa.array(np.arange(n))
        )
        table = table.set_column(
            table.schema.get_field_index(C.AUTHOR_ID),
            C.AUTHOR_ID,
            pa.array(rng.integers(0, 300, n)),
        )
        pq.write_table(table, path)
    features = spark.read.parquet(str(path))
    sources = features.select(
        C.USER_ID, C.POST_ID, F.array(F.lit("network"), F.lit("interest")).alias(C.SOURCES)
    )
    return features, sources


def _search_driver(spark, index, user_vectors, post_ids, k):
    """The search as the job ran it before: every user on the driver, then a DataFrame."""
    sims, rows = index.search(user_vectors, k)
    found = rows >= 0
    frame = pd.DataFrame(
        {
            C.USER_ID: np.repeat(np.arange(len(user_vectors)), k)[found.ravel()],
            C.POST_ID: post_ids[rows[found]],
            "similarity": sims[found].astype(np.float64),
        }
    )
    return spark.createDataFrame(frame)


def measure_synthetic(spark, args, users: int, ship: dict) -> dict:
    features, sources = _candidates(spark, users, args.candidates, args.cache)
    features = features.persist(StorageLevel.DISK_ONLY)
    rows = features.count()
    stages, k = {}, 200
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(users, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stages["search (driver)"] = _timed(
        lambda: _search_driver(spark, ship["index"], vectors, ship["post_ids"], k).count()
    )
    if ship["search"] is not None:
        np.save(ship["search"] / "user_vectors.npy", vectors)
        np.save(ship["search"] / "user_ids.npy", np.arange(users, dtype=np.int64))
        name = f"search-{users}-{time.time_ns()}"  # addFile: a new name for new files
        shutil.copytree(ship["search"], args.cache / name)
        spark.sparkContext.addFile(str(args.cache / name), recursive=True)
        active = spark.range(users).withColumnRenamed("id", C.USER_ID)
        search = ship["search_in_workers"]
        stages["search (workers)"] = _timed(lambda: search(active, name, k, 800).count())
    scored = score_candidates(features, ship["ranker"]).persist(StorageLevel.DISK_ONLY)
    stages["scoring"] = _timed(scored.count)
    feeds = rerank_feeds(scored, sources, RerankSettings(), 500).persist(StorageLevel.DISK_ONLY)
    stages["rerank"] = _timed(feeds.count)
    for df in (feeds, scored, features):
        df.unpersist()
    return {"users": users, "rows": rows, "stages_s": stages}


def run_synthetic(args) -> int:
    import faiss

    args.cache.mkdir(parents=True, exist_ok=True)
    spark = get_spark(SparkSettings(master="local[2]", app_name="bench", shuffle_partitions=4))
    folder, compile_s = _ranker(args.cache)
    ranker_name = f"ranker-{time.time_ns()}"
    shutil.copytree(folder.path, args.cache / ranker_name)
    spark.sparkContext.addFile(str(args.cache / ranker_name), recursive=True)
    posts = np.random.default_rng(3).normal(size=(POSTS, DIM)).astype(np.float32)
    posts /= np.linalg.norm(posts, axis=1, keepdims=True)
    index = make_index(posts, IndexSettings())  # HNSW: above flat_max
    index.hnsw.efSearch = 800
    faiss.omp_set_num_threads(2)
    ship = {"ranker": ranker_name, "index": index, "post_ids": np.arange(POSTS), "search": None}
    try:
        from models.retrieval.published import search_in_workers
    except ImportError:
        pass
    else:
        ship["search"] = args.cache / "search-files"
        ship["search"].mkdir(exist_ok=True)
        faiss.write_index(index, str(ship["search"] / "index.faiss"))
        np.save(ship["search"] / "post_ids.npy", np.arange(POSTS, dtype=np.int64))
        ship["search_in_workers"] = search_in_workers
    # Warm: the Python workers started and each shipped file loaded once (a job pays that once).
    measure_synthetic(spark, args, 50, ship)
    results = []
    for copies in (1, 2):
        with PeakMemory() as mem:
            r = measure_synthetic(spark, args, args.synthetic * copies, ship)
        r["peak_rss_gib"] = mem.peak / 2**30
        results.append(r)
    print(f"synthetic precompute, code: {args.label}; {args.candidates} candidates per user")
    print(f"compile once per version: {'-' if compile_s is None else f'{compile_s:.0f} s'}")
    print(f"{'stage':<18} {'users':>7} {'rows':>9} {'s':>7} {'users/s':>9} {'rows/s':>9} peak GiB")
    for r in results:
        for stage, sec in r["stages_s"].items():
            rows = r["users"] * 200 if stage.startswith("search") else r["rows"]
            print(
                f"{stage:<18} {r['users']:>7} {rows:>9} {sec:7.1f} {r['users'] / sec:9.0f} "
                f"{rows / sec:9.0f} {r['peak_rss_gib']:8.2f}"
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_precompute_synthetic_{args.label}.json"
    summary = {"label": args.label, "compile_s": compile_s, "results": results}
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


def prerequisites(settings, ds: str) -> str | None:
    """What the data root lacks for a precompute of ds, or None."""
    store = Warehouse(settings.root.warehouse)
    if not store.is_committed(IMPRESSION_FEATURES, ds):
        return f"no {IMPRESSION_FEATURES.qualified} ds={ds} under {settings.home}"
    if ArtifactStore(settings.root.artifacts).latest(RETRIEVAL_INDEX, upto=ds) != ds:
        return f"no {RETRIEVAL_INDEX.name} for ds={ds}"
    use_tracking(settings)
    if reg.champion_version(settings.mlflow.registered_model) is None:
        return "no champion ranker"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--ds", help="default: the day before the profile's last")
    parser.add_argument("--synthetic", type=int, metavar="USERS", help="no data root: see above")
    parser.add_argument("--candidates", type=int, default=250, help="--synthetic: per user")
    parser.add_argument("--label", default="after", help="--synthetic: the code measured")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_precompute"))
    args = parser.parse_args(argv)
    configure_logging()
    if args.synthetic:
        return run_synthetic(args)
    settings = load_settings(args.profile)
    ds = args.ds or settings.dates()[-2]
    missing = prerequisites(settings, ds)
    if missing:  # a benchmark that cannot run says why; `make bench` goes on with the others
        print(f"bench_precompute: not run, {missing}: run `make demo PROFILE={args.profile}` first")
        return 0
    results = []
    for copies in (1, 2):
        with PeakMemory() as mem:
            r = measure(settings, ds, copies)
        r["peak_rss_gib"] = mem.peak / 2**30
        results.append(r)
    header = f"{'x':>3} {'users':>8} {'rows':>10} " + " ".join(
        f"{s:>12}" for s in (*results[0]["stages_s"], "total")
    )
    lines = [header + f" {'peak GiB':>9}"]
    for r in results:
        known = [v for v in r["stages_s"].values() if v == v]
        total = sum(known)
        cells = [
            f"{r['users'] / v:10.0f}/s" if v == v and v > 0 else f"{'-':>12}"
            for v in r["stages_s"].values()
        ]
        cells.append(f"{r['users'] / total:10.0f}/s")
        lines.append(
            f"{r['copies']:>3} {r['users']:>8} {r['rows']:>10} "
            + " ".join(cells)
            + f" {r['peak_rss_gib']:9.2f}"
        )
        rows = [
            f"{r['rows'] / v:8.0f} r/s" if v == v and v > 0 else f"{'-':>12}"
            for v in r["stages_s"].values()
        ]
        lines.append(f"{'':>3} {'':>8} {'rows/s':>10} " + " ".join(rows))
        r["users_per_s"] = {
            k: (r["users"] / v if v == v and v > 0 else None) for k, v in r["stages_s"].items()
        }
        r["rows_per_s"] = {
            k: (r["rows"] / v if v == v and v > 0 else None) for k, v in r["stages_s"].items()
        }
        r["users_per_s_total"] = r["users"] / total
    print(f"precompute on {args.profile} ds={ds} (users/s and rows/s per stage; seconds in JSON)")
    print("\n".join(lines))
    one = results[0]
    slowest = min((v, k) for k, v in one["users_per_s"].items() if v)[1]
    print(
        f"moonshot 1,000 users/s: {one['users_per_s_total']:.0f} users/s at 1x; "
        f"slowest stage: {slowest}"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_precompute.json"
    out.write_text(json.dumps({"profile": args.profile, "ds": ds, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
