"""Benchmark: the feed store's publish and page reads, directly and over HTTP on loopback.

    .venv/bin/python tests/benchmarks/bench_feed_store.py [--users 10000] [--items 500]
        [--redis-users 2000] [--reads 5000] [--http-requests 3000] [--clients 4]

1. publish: synthetic feeds (users x items) checked and split (prepare), then published to
   SQLite and to Redis (a redis-server this script starts on a free loopback port);
2. direct reads: `store.read` of 20-item pages at random users and random cursors;
3. HTTP: `feedrank serve` in its own process, `--clients` threads with keep-alive sending
   GET /feed/{user}?limit=20 (the pages of random users, following cursors), bounded by
   `--http-requests` and 60 s. Served pages are logged, as by default.
Goals (issues 14, 26): SQLite direct p99 <= 1 ms; HTTP p99 <= 5 ms at 1,000 req/s; publish
of 5M items: SQLite <= 30 s, Redis <= 60 s (`--users 10000 --redis-users 10000`). Prints a
table and writes tests/benchmarks/results/bench_feed_store.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from warehouse.catalog import ACTIONS, USER_NEWS_FEED, C, truth_column
from warehouse.config import FeedSettings
from warehouse.feeds.base import Anchor
from warehouse.feeds.batch import prepare_batch
from warehouse.feeds.open import open_store
from warehouse.layout import DataRoot

RESULTS = Path(__file__).parent / "results"
DS = "2026-01-05"
PAGE = 20


def synthetic_feeds(n_users: int, n_items: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = n_users * n_items
    data = {
        C.USER_ID: np.repeat(np.arange(n_users, dtype=np.int64), n_items),
        C.RANK: np.tile(np.arange(1, n_items + 1, dtype=np.int32), n_users),
        C.POST_ID: rng.integers(0, 100_000_000, n),
        C.SCORE: rng.random(n),
        C.VALUE: rng.random(n),
        **{truth_column(a): rng.random(n) for a in ACTIONS},
        C.E_DWELL_S: rng.random(n) * 60,
    }
    sources = pa.array([["network"], ["network", "interest"], ["popular"]])
    data[C.SOURCES] = sources.take(pa.array(rng.integers(0, 3, n)))
    data[C.MODEL_VERSION] = pa.array(["7"] * n)
    generated = dt.datetime(2026, 1, 5, 3, tzinfo=dt.UTC)
    data[C.GENERATED_AT] = pa.array([generated] * n, pa.timestamp("us", tz="UTC"))
    return pa.table(data).cast(USER_NEWS_FEED.schema)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    import redis

    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--maxmemory-policy", "volatile-lru", "--dir", str(folder)]
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", *args], stdout=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return server, url
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("redis-server did not start")


def summarize(latencies_s: list[float], wall_s: float) -> dict:
    ms = np.array(latencies_s) * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "pages_per_s": round(len(ms) / wall_s, 1),
    }


def bench_publish(store, feeds: pa.Table, trending: int) -> tuple[dict, object]:
    t0 = time.perf_counter()
    batch = prepare_batch(feeds, DS, None, trending)
    t1 = time.perf_counter()
    info = store.publish(batch)
    t2 = time.perf_counter()
    return {
        "users": info.users,
        "items": info.items,
        "prepare_s": round(t1 - t0, 1),
        "publish_s": round(t2 - t1, 1),
        "total_s": round(t2 - t0, 1),
    }, batch


def bench_direct(store, batch, n_reads: int, seed: int = 1) -> dict:
    """Pages of 20 at random users, half from the top, half after a random item (a cursor)."""
    rng = random.Random(seed)
    users, starts, lengths = batch.user_ids.tolist(), batch.starts, batch.lengths
    posts = batch.table.column("post_id").to_numpy()
    latencies = []
    started = time.perf_counter()
    for k in range(n_reads):
        i = rng.randrange(len(users))
        after = None
        if k % 2 and lengths[i] > PAGE:
            rank = rng.randrange(lengths[i] - PAGE) + 1
            after = Anchor(rank, int(posts[starts[i] + rank - 1]))
        t0 = time.perf_counter()
        snap = store.read(users[i], PAGE, after)
        latencies.append(time.perf_counter() - t0)
        assert snap is not None and snap.anchor in ("none", "rank")
    return summarize(latencies, time.perf_counter() - started)


def bench_http(home: Path, store_url: str | None, users: int, args) -> dict:
    port = free_port()
    env = {**os.environ, "FEEDRANK_HOME": str(home), "FEEDRANK_PROFILE": "tiny"}
    if store_url:
        env["FEEDRANK__FEEDS__STORE_URL"] = store_url
    feedrank = Path(sys.executable).with_name("feedrank")
    server = subprocess.Popen(
        [str(feedrank), "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        per_client = args.http_requests // args.clients
        latencies: list[float] = []
        errors = [0]
        deadline = time.monotonic() + 60
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng, mine, cursor, user = random.Random(seed), [], None, 0
            with httpx.Client(base_url=base) as http:
                for _ in range(per_client):
                    if cursor is None:
                        user = rng.randrange(users)
                    params = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
                    t0 = time.perf_counter()
                    response = http.get(f"/feed/{user}", params=params)
                    mine.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        errors[0] += 1
                        cursor = None
                    else:
                        cursor = response.json()["next_cursor"] if rng.random() < 0.8 else None
                    if time.monotonic() > deadline:
                        break
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client, args=(s,)) for s in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = summarize(latencies, time.perf_counter() - started)
        out["errors"] = errors[0]
        out["clients"] = args.clients
        return out
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--redis-users", type=int, default=2_000, help="users published to Redis")
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument("--http-requests", type=int, default=3_000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    results: dict = {"args": vars(args), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="feedrank-bench-") as tmp:
        home = Path(tmp)
        redis_server, redis_url = start_redis(home)
        try:
            for backend, n_users, url in (
                ("sqlite", args.users, None),
                ("redis", args.redis_users, redis_url),
            ):
                feeds = synthetic_feeds(n_users, args.items)
                store = open_store(FeedSettings(store_url=url), DataRoot(home))
                publish, batch = bench_publish(store, feeds, 100)
                del feeds
                direct = bench_direct(store, batch, args.reads)
                del batch
                store.close()
                http = bench_http(home, url, n_users, args)
                results[backend] = {"publish": publish, "direct": direct, "http": http}
                print(f"{backend}: {results[backend]}", flush=True)
        finally:
            redis_server.terminate()
            redis_server.wait(timeout=20)
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_feed_store.json").write_text(json.dumps(results, indent=2))


def print_table(results: dict) -> None:
    print(f"\nfeed store, {results['cpus']} CPUs, pages of {PAGE} items")
    print(f"{'store':<7} {'what':<34} {'p50 ms':>8} {'p99 ms':>8} {'pages/s':>9}")
    for backend in ("sqlite", "redis"):
        r = results[backend]
        d, h = r["direct"], r["http"]
        for what, m in (
            ("direct read", d),
            (f"HTTP, {h['clients']} clients ({h['errors']} errors)", h),
        ):
            print(
                f"{backend:<7} {what:<34} {m['p50_ms']:>8} {m['p99_ms']:>8} {m['pages_per_s']:>9}"
            )
    header = f"{'users':>7} {'items':>10} {'prepare s':>10} {'publish s':>10} {'total s':>8}"
    print(f"\n{'store':<7} {header}")
    for backend in ("sqlite", "redis"):
        p = results[backend]["publish"]
        print(
            f"{backend:<7} {p['users']:>7,} {p['items']:>10,} {p['prepare_s']:>10} "
            f"{p['publish_s']:>10} {p['total_s']:>8}"
        )


if __name__ == "__main__":
    main()
