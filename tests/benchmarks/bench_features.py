"""Benchmark: the incremental features job (jobs/build_features.py), candidate featurization,
and a DuckDB reference, at growing sizes; one table for several labels (before / after).

    .venv/bin/python tests/benchmarks/bench_features.py               # tiny: a minute or two
    .venv/bin/python tests/benchmarks/bench_features.py --sizes demo --candidates 1000 5000 10000
    # "before": the same script on a checkout of the base commit, into the same results file
    git worktree add /tmp/base <commit> && cd /tmp/base && PYTHONPATH=/tmp/base \\
      .venv/bin/python <this checkout>/tests/benchmarks/bench_features.py --label before \\
      --results <this checkout>/tests/benchmarks/results/bench_features.json

For each size: simulates `days` days into a temporary data root (simulate_platform.run,
with its raw contracts, untimed here; bench_contracts.py times them), builds the features of
every day in order with a Spark event log, and reports the last day: wall time (state +
features + contract + publish), impressions per second, Spark's busy seconds per step
(tests/benchmarks/spark_profile.py on the bench's own event log), the peak resident memory
of this process and its children (the Spark JVM, sampled every 0.2 s) and the load average
(the machine may be shared). Then:
  - candidates: N users x `--posts` posts at the end of the last day, featurized by the
    feeds job's serving_frame (features.candidates) into Spark's no-op sink: rows/s;
  - DuckDB: a subset of the same features (post window counts and decayed totals, the
    user's 7d impressions) for the last day's impressions from the raw Parquet, against the
    same subset in Spark from the tiles (features.post / features.user), both timed here, and
    their agreement.
`demo2x` and `demo4x` are the demo profile with twice and four times the users, authors and
posts: steps towards `large`. A label run at two sizes or more gets a line of its own: the
least-squares fit of a day's seconds on its impressions, a fixed cost per day and a marginal
cost per 1,000 impressions. The Spark master is the settings' (FEEDRANK__SPARK__MASTER, e.g.
a standalone cluster's `spark://127.0.0.1:7077`), and each result records it.
Prints the tables of every label in the results file; writes results/bench_features.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import psutil
from spark_profile import event_log_conf, step_breakdown

from features import registry as R
from jobs import build_features, reading, simulate_platform
from jobs.common import configure_logging, days_before
from jobs.settings import load_settings
from jobs.spark import get_spark
from warehouse.catalog import ENGAGEMENTS, IMPRESSIONS, POSTS, USERS, C
from warehouse.store import Warehouse

RESULTS = Path(__file__).parent / "results" / "bench_features.json"
SIZES = {
    "tiny": ("tiny", {}),
    "demo": ("demo", {}),
    "demo2x": (
        "demo",
        {
            "n_users": 20_000,
            "n_person_authors": 16_000,
            "n_authors": 100_000,
            "posts_per_day": 14_400,
        },
    ),
    "demo4x": (
        "demo",
        {
            "n_users": 40_000,
            "n_person_authors": 32_000,
            "n_authors": 200_000,
            "posts_per_day": 28_800,
        },
    ),
}
STEPS = ("state", "features", "contract", "publish")


class PeakMemory:
    """Peak RSS of this process plus its children, sampled in a thread."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            procs = [me, *me.children(recursive=True)]
            rss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):  # a child may exit between the two calls
                    rss += p.memory_info().rss
            self.peak = max(self.peak, rss)
            time.sleep(self.every_s)


def _stop_spark() -> None:
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def bench(
    size: str,
    days: int,
    label: str,
    candidates: list[int],
    posts: int,
    duck: bool,
    conf: dict[str, str] | None = None,
):
    profile, sim = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="feedrank-bench-") as home:
        try:
            events = Path(home) / "spark-events"
            spark_conf = {**event_log_conf(events), **(conf or {})}
            overrides = {"home": home, "simulator": sim, "spark": {"conf": spark_conf}}
            settings = load_settings(profile, overrides)
            dates = settings.dates()[:days]
            for ds in dates:
                simulate_platform.run(settings, ds)  # publish refuses a day not validated
            per_day, loads = [], [_load()]
            with PeakMemory() as mem:
                for ds in dates:
                    started = time.perf_counter()
                    rows = build_features.run(settings, ds)
                    per_day.append((time.perf_counter() - started, rows))
            loads.append(_load())
            last = dates[-1]
            breakdown = step_breakdown(events)
            steps = {
                name: row["job_s"]
                for desc, row in breakdown.items()
                for name in STEPS
                if desc == f"build_features ds={last}: {name}"
            }
            # every Spark job the day ran (each step is tagged; AQE makes each exchange a job)
            day = [
                row
                for desc, row in breakdown.items()
                if desc.startswith(f"build_features ds={last}:")
            ]
            state = [
                row for desc, row in breakdown.items() if desc == f"build_features ds={last}: state"
            ]
            seconds, rows = per_day[-1]
            out = {
                "label": label,
                "size": size,
                "master": settings.spark.master,
                "days_built": len(dates),
                "impressions_last_day": rows,
                "seconds_last_day": round(seconds, 1),
                "impressions_per_s": round(rows / seconds),
                "seconds_per_day": [round(s, 1) for s, _ in per_day],
                "busy_s_per_step": {k: round(v, 1) for k, v in steps.items()},
                "spark_jobs_last_day": sum(row["jobs"] for row in day),
                # the state step's writes (a tile each) apart: the goal counts the rest
                "spark_jobs_state_last_day": sum(row["jobs"] for row in state),
                "spark_stages_last_day": sum(row["stages"] for row in day),
                "peak_rss_mib": round(mem.peak / 2**20),
                "load_avg_1m": loads,
            }
            out["candidates"] = [bench_candidates(settings, last, n, posts) for n in candidates]
            if duck:
                out["duckdb"] = bench_duckdb(settings, last)
        finally:
            # Stopped inside the folder's lifetime: Spark closes its event log there on stop,
            # and the next size gets a session of its own with its own event log.
            _stop_spark()
    return out


def bench_candidates(settings, ds: str, n_users: int, n_posts: int) -> dict:
    """Featurize n_users x n_posts (user, post) rows at the end of ds (no impressions)."""
    from pyspark.sql import functions as F

    from jobs.precompute_feeds import generation_time, serving_frame

    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    at = generation_time(ds)
    users = store.read_pandas(USERS, ds, columns=[C.USER_ID])[C.USER_ID].drop_duplicates()
    users = sorted(users)[:n_users]
    days = [*days_before(settings.first_day, ds, 2), ds]
    pool = store.read_pandas(POSTS, days, columns=[C.POST_ID, C.AUTHOR_ID, C.CREATED_AT])
    pool = pool[pool[C.CREATED_AT] < at].nlargest(n_posts, [C.CREATED_AT, C.POST_ID])
    pairs = spark.createDataFrame([(int(u),) for u in users], f"{C.USER_ID} long").crossJoin(
        spark.createDataFrame(pool[[C.POST_ID, C.AUTHOR_ID]])
    )
    table = pairs.withColumn(C.GENERATED_AT, F.lit(at).cast("timestamp"))
    load = _load()
    started = time.perf_counter()
    serving_frame(spark, store, settings.first_day, settings.features, ds, table, at).write.format(
        "noop"
    ).mode("overwrite").save()
    seconds = time.perf_counter() - started
    rows = len(users) * len(pool)
    return {
        "users": len(users),
        "posts": len(pool),
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "load_avg_1m": [load, _load()],
    }


# The subset: post window counts of every kind and decayed totals (exact 1/(t+1) here; the
# Spark side's 4-term series is <= 2.6e-6 under it), and the user's impressions in 7d.
_DUCK_SQL = """
WITH t AS (SELECT impression_id, user_id, post_id,
                  date_trunc('hour', served_at - INTERVAL 1 MICROSECOND) AS as_of
           FROM imps_day),
ev AS (SELECT post_id, action AS kind, event_ts AS ts FROM eng WHERE action IN ({counted})
       UNION ALL SELECT post_id, 'impression', served_at FROM imps),
need AS (SELECT DISTINCT post_id, as_of FROM t),
j AS (SELECT n.post_id, n.as_of, e.kind, epoch(n.as_of - e.ts) / 3600.0 AS age_h
      FROM need n JOIN ev e ON e.post_id = n.post_id
      AND e.ts < n.as_of AND e.ts >= n.as_of - INTERVAL 7 DAY),
p AS (SELECT post_id, as_of, {post_cols} FROM j GROUP BY ALL),
un AS (SELECT DISTINCT user_id, as_of FROM t),
u AS (SELECT n.user_id, n.as_of, count(i.user_id) AS user_imp_7d FROM un n
      LEFT JOIN imps i ON i.user_id = n.user_id
      AND i.served_at < n.as_of AND i.served_at >= n.as_of - INTERVAL 7 DAY GROUP BY ALL)
SELECT t.impression_id, p.* EXCLUDE (post_id, as_of), u.user_imp_7d
FROM t LEFT JOIN p USING (post_id, as_of) LEFT JOIN u USING (user_id, as_of)
ORDER BY t.impression_id
"""


def _duck_sql() -> str:
    cols = []
    for k in R.POST_KINDS:
        for w, h in R.WINDOWS_H.items():
            cols.append(f"count(*) FILTER (WHERE kind = '{k}' AND age_h <= {h}) AS \"{w}_{k}\"")
        cols.append(f"sum(1 / (1 + age_h / 24)) FILTER (WHERE kind = '{k}') AS \"decay_{k}\"")
    counted = ", ".join(f"'{a}'" for a in R.COUNTED_ACTIONS)
    return _DUCK_SQL.format(counted=counted, post_cols=",\n  ".join(cols))


def bench_duckdb(settings, ds: str) -> dict:
    """The subset in DuckDB from the raw Parquet and in Spark from the tiles, timed, and
    how many impressions agree on every column of it."""
    store = Warehouse(settings.root.warehouse)
    days = [*days_before(settings.first_day, ds, R.LOOKBACK_H // 24 + 1), ds]
    load = _load()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    imp_cols = [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.SERVED_AT]
    con.register("imps", store.read_arrow(IMPRESSIONS, days, columns=imp_cols))
    con.register("imps_day", store.read_arrow(IMPRESSIONS, ds, columns=imp_cols))
    eng_cols = [C.POST_ID, C.ACTION, C.EVENT_TS]
    con.register("eng", store.read_arrow(ENGAGEMENTS, days, columns=eng_cols))
    ref = con.execute(_duck_sql()).df()
    duck_s = time.perf_counter() - started
    spark_s, got = _spark_subset(settings, ds)
    got = got.sort_values(C.IMPRESSION_ID).reset_index(drop=True)
    same = got[C.IMPRESSION_ID].to_numpy() == ref[C.IMPRESSION_ID].to_numpy()
    for k in R.POST_KINDS:
        for w in R.WINDOWS_H:
            same &= got[R.post_count(k, w)].to_numpy() == ref[f"{w}_{k}"].fillna(0).to_numpy()
        exact = ref[f"decay_{k}"].fillna(0.0).to_numpy()
        same &= np.isclose(got[R.post_decayed(k)].to_numpy(), exact, rtol=3e-6, atol=0)
    same &= got[R.USER_IMPRESSIONS_7D].to_numpy() == ref.user_imp_7d.to_numpy()
    return {
        "impressions": len(ref),
        "duckdb_s": round(duck_s, 2),
        "spark_s": round(spark_s, 2),
        "spark_over_duckdb": round(spark_s / duck_s, 1),
        "agree": int(same.sum()),
        "load_avg_1m": [load, _load()],
    }


def _spark_subset(settings, ds: str):
    """The same subset in Spark (post_interactions, user_activity on ds's merged tiles)."""
    from features.pit import with_as_of
    from features.post import post_interactions
    from features.tiles import merge_tile
    from features.user import user_activity

    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    started = time.perf_counter()
    imps = with_as_of(store.read_spark(spark, IMPRESSIONS, ds).drop(C.DS))
    posts_days = [*days_before(settings.first_day, ds, R.HISTORY_BOUND_D), ds]
    posts = store.read_spark(spark, POSTS, posts_days).drop(C.DS)

    def tile(name):
        state = reading.read_state(spark, store, settings.first_day, name, ds, staged=False)
        return merge_tile(name, state)

    f = settings.features
    post = post_interactions(imps, tile("post_hourly"), posts, f.prior_rate, f.prior_strength)
    user_req = imps.select(C.USER_ID, R.AS_OF).distinct()
    user = user_activity(user_req, tile("user_hourly"), tile("requests"))
    keep = [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, R.AS_OF]
    out = (
        imps.select(*keep)
        .join(post, [C.POST_ID, R.AS_OF], "left")
        .join(user.select(C.USER_ID, R.AS_OF, R.USER_IMPRESSIONS_7D), [C.USER_ID, R.AS_OF], "left")
    )
    pdf = out.toPandas()
    return time.perf_counter() - started, pdf


# The columns of a sub-table between each result's label and size and its load average:
# (heading, key in the record, format spec; a ',' groups thousands and is not the heading's).
CANDIDATE_COLUMNS = (
    ("users", "users", ">6"),
    ("posts", "posts", ">6"),
    ("rows", "rows", ">10,"),
    ("s", "seconds", ">7"),
    ("rows/s", "rows_per_s", ">8,"),
)
DUCKDB_COLUMNS = (
    ("impr", "impressions", ">7,"),
    ("duckdb s", "duckdb_s", ">9"),
    ("spark s", "spark_s", ">8"),
    ("ratio", "spark_over_duckdb", ">6"),
    ("agree", "agree", ">7,"),
)


def _section(
    title: str, columns: tuple[tuple[str, str, str], ...], rows: list[tuple[dict, dict]]
) -> list[str]:
    """A sub-table after a blank line: `title`, a header, and a line per (result, record):
    the result's label and size, the record's `columns`, the record's load average."""
    head = [f"{h:{spec.rstrip(',')}}" for h, _, spec in columns]
    lines = ["", title, " ".join([f"{'label':<8}", f"{'size':<7}", *head, f"{'load 1m':>12}"])]
    for r, record in rows:
        cells = [f"{record[key]:{spec}}" for _, key, spec in columns]
        load = f"{record['load_avg_1m']!s:>12}"
        lines.append(" ".join([f"{r['label']:<8}", f"{r['size']:<7}", *cells, load]))
    return lines


def _jobs_cells(r: dict) -> str:
    """The day's Spark jobs outside the state step, the state step's, and the stages run
    (a result from before the split shows its total and '-')."""
    total, state = r.get("spark_jobs_last_day"), r.get("spark_jobs_state_last_day")
    rest = "-" if total is None else total if state is None else total - state
    state = "-" if state is None else state
    return f"{rest:>5} {state:>5} {r.get('spark_stages_last_day', '-'):>6}"


def _growth(results: list[dict]) -> list[str]:
    """Per label run at two sizes or more: a day's seconds fitted on its impressions by least
    squares (seconds = fixed + marginal x impressions) and the largest residual."""
    lines = []
    for label in dict.fromkeys(r["label"] for r in results):
        runs = [r for r in results if r["label"] == label]
        if len({r["impressions_last_day"] for r in runs}) < 2:
            continue
        x = np.array([r["impressions_last_day"] for r in runs], dtype=float)
        y = np.array([r["seconds_last_day"] for r in runs])
        marginal, fixed = np.polyfit(x, y, 1)
        worst = float(np.max(np.abs(y - (fixed + marginal * x))))
        if not lines:
            lines += ["", "how a day's time grows (least squares over the sizes of a label)"]
        sizes = "/".join(r["size"] for r in runs)
        lines.append(
            f"{label:<8} {sizes}: {fixed:.1f} s fixed + {marginal * 1000:.3f} s per 1,000 "
            f"impressions (largest residual {worst:.1f} s)"
        )
    return lines


def _table(results: list[dict]) -> str:
    head = f"{'label':<8} {'size':<7} {'impr/day':>9} {'s/day':>6} {'impr/s':>7} "
    head += f"{'jobs':>5} {'state':>5} {'stages':>6} "
    head += " ".join(f"{s[:8]:>8}" for s in STEPS) + f" {'peak MiB':>9} {'load 1m':>12}"
    lines = [
        "build_features, last day (jobs: Spark's that day from the event log, the state step's"
        " apart; stages run; step: Spark busy s)",
        head,
    ]
    for r in results:
        steps = " ".join(f"{r['busy_s_per_step'].get(s, 0.0):>8}" for s in STEPS)
        jobs = _jobs_cells(r)
        lines.append(
            f"{r['label']:<8} {r['size']:<7} {r['impressions_last_day']:>9,} "
            f"{r['seconds_last_day']:>6} {r['impressions_per_s']:>7,} "
            f"{jobs} {steps} "
            f"{r['peak_rss_mib']:>9} {r['load_avg_1m']!s:>12}"
        )
    lines += _growth(results)
    candidates = [(r, c) for r in results for c in r.get("candidates", [])]
    compared = [(r, r["duckdb"]) for r in results if r.get("duckdb")]
    lines += _section("candidates at one as_of (users x posts)", CANDIDATE_COLUMNS, candidates)
    lines += _section(
        "subset (post windows + decay, user 7d impressions): DuckDB raw vs Spark tiles",
        DUCKDB_COLUMNS,
        compared,
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"], choices=list(SIZES))
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--label", default="after", help="names this run's rows in the table")
    parser.add_argument("--candidates", nargs="*", type=int, default=[200], help="users")
    parser.add_argument("--posts", type=int, default=500, help="candidate posts per user")
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB reference")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--conf",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra spark.* settings, e.g. spark.sql.adaptive.enabled=false",
    )
    args = parser.parse_args()
    configure_logging()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    new = [
        bench(
            size,
            args.days,
            args.label,
            args.candidates,
            args.posts,
            not args.no_duckdb,
            dict(kv.split("=", 1) for kv in args.conf),
        )
        | {"at": started}
        for size in args.sizes
    ]
    old = json.loads(args.results.read_text()) if args.results.exists() else []
    ran = {(r["label"], r["size"]) for r in new}
    results = [r for r in old if (r["label"], r["size"]) not in ran] + new
    print(_table(results))
    args.results.parent.mkdir(exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
